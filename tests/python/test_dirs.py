"""Directory checkpoints through the Python binding: Catalog.begin_dir,
DirFileWriter in other processes, DirSave.commit; the checkpoint reads,
verifies, falls back and rotates as one."""

import os
import subprocess
import sys

import pytest

import ckptdb
from ckptdb.distributed import DirFileWriter

WRITER = r"""
import json, sys
from ckptdb.distributed import DirFileWriter
directory, temp, name, rank, n = sys.argv[1:6]
w = DirFileWriter(directory, temp, name, int(rank))
w.write(bytes([int(rank) + 1]) * int(n))
print(json.dumps(w.finish()))
w.free()
"""


def write_in_processes(d, save, files):
    """Each (name, rank, size) written by its own process; their finish() results."""
    import json
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(d), save.temp_name, n, str(r), str(size)],
                              stdout=subprocess.PIPE, text=True) for n, r, size in files]
    out = []
    for p in procs:
        stdout, _ = p.communicate(timeout=120)
        assert p.returncode == 0
        out.append(json.loads(stdout))
    return out


def test_three_processes_write_one_directory_checkpoint(tmp_path):
    with ckptdb.Catalog(tmp_path) as cat:
        with cat.begin_dir("step", epoch=0, step=100) as save:
            assert save.name == "step_000100"
            assert os.path.isdir(tmp_path / save.temp_name)
            files = write_in_processes(tmp_path, save, [("__0_0.distcp", 0, 1000), ("__1_0.distcp", 1, 2000),
                                                        ("__2_0.distcp", 2, 3000)])
            assert [f["rank"] for f in files] == [0, 1, 2]
            c = save.commit(files)
        assert c.layout == "dir" and c.file_count == 3 and c.size == 6000
        assert c.path == str(tmp_path / "step_000100")
        assert sorted(os.listdir(c.path)) == ["__0_0.distcp", "__1_0.distcp", "__2_0.distcp"]
        assert cat.read(c.id, file="__1_0.distcp") == b"\x02" * 2000
        assert cat.verify(c.id)
        latest = cat.latest()
        assert latest is not None and latest.id == c.id and latest.layout == "dir"
        assert [(f.rank, f.name) for f in cat.files(c.id)] == [(0, "__0_0.distcp"), (1, "__1_0.distcp"),
                                                                (2, "__2_0.distcp")]
        assert not [n for n in os.listdir(tmp_path) if n.startswith(".ckptdb-tmp-")]


def test_a_bad_commit_changes_nothing_and_an_unreleased_save_is_aborted(tmp_path):
    with ckptdb.Catalog(tmp_path) as cat:
        save = cat.begin_dir("epoch", epoch=1, step=10)
        w = DirFileWriter(tmp_path, save.temp_name, "a.bin", 0)
        w.write(b"abc")
        f = w.finish()
        w.free()
        with pytest.raises(ckptdb.InvalidArgument, match="checksum"):
            save.commit([dict(f, checksum="0" * 32)])
        with pytest.raises(ckptdb.InvalidArgument):
            save.commit([dict(f, name="../a.bin")])
        temp = tmp_path / save.temp_name
        assert os.listdir(temp) == ["a.bin"]
        save.free()  # never committed: aborted
        assert not temp.exists()
        assert [c.status for c in cat.entries()] == ["aborted"]


def test_a_corrupt_directory_falls_back_as_a_whole_and_rotation_removes_directories(tmp_path):
    with ckptdb.Catalog(tmp_path, retention=ckptdb.Retention(keep_last={"epoch": 2})) as cat:
        ids = []
        for e in range(1, 4):
            with cat.begin_dir("epoch", epoch=e, step=e) as save:
                fs = []
                for name, rank in (("m.bin", 0), ("o.bin", 1)):
                    w = DirFileWriter(tmp_path, save.temp_name, name, rank)
                    w.write(bytes([e]) * 4096)
                    fs.append(w.finish())
                    w.free()
                ids.append(save.commit(fs).id)
        assert not (tmp_path / "epoch_001").exists()
        p = tmp_path / "epoch_003" / "o.bin"
        b = bytearray(p.read_bytes())
        b[100] ^= 1
        p.write_bytes(bytes(b))
        latest = cat.latest()
        assert latest is not None and latest.id == ids[1]
        assert cat.get(ids[2]).status == "corrupt"


def test_the_cli_and_sqlite3_show_a_directory_like_any_checkpoint(tmp_path):
    import json
    import sqlite3
    with ckptdb.Catalog(tmp_path) as cat:
        cat.save_bytes(b"x" * 10, kind="epoch", epoch=0)
        with cat.begin_dir("epoch", epoch=1, step=10) as save:
            w = DirFileWriter(tmp_path, save.temp_name, "a.bin", 0)
            w.write(b"a" * 50)
            save.commit([w.finish()])
            w.free()
    db = sqlite3.connect("file:%s/ckptdb.sqlite?mode=ro" % tmp_path, uri=True)
    assert db.execute("SELECT name, layout, size FROM history ORDER BY id").fetchall() == [
        ("epoch_000.pt", "file", 10), ("epoch_001", "dir", 50)]
    cli = os.environ.get("CKPTDB_CLI")
    if not cli:
        pytest.skip("the ckptdb command was not built")
    d = json.loads(subprocess.run([cli, "ls", "--json", str(tmp_path)], check=True, capture_output=True,
                                  text=True).stdout)
    assert [(c["name"], c["layout"], c["file_count"]) for c in d["checkpoints"]] == [
        ("epoch_000.pt", "file", 1), ("epoch_001", "dir", 1)]
    table = subprocess.run([cli, "ls", str(tmp_path)], check=True, capture_output=True, text=True).stdout
    assert " epoch_001/ " in table
    r = subprocess.run([cli, "verify", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 0 and "2 ok, 0 corrupt" in r.stdout
