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


def write_files(d, files):
    """The files written as any program writes them: plain open(), no ckptdb."""
    for n, data in files.items():
        with open(os.path.join(d, n), "wb") as f:
            f.write(data)


def test_an_in_place_save_takes_the_files_written_into_its_directory(tmp_path):
    with ckptdb.Catalog(tmp_path) as cat:
        with cat.begin_dir("step", epoch=0, step=500, name="checkpoint-500", in_place=True,
                           metrics={"loss": 9.0}) as save:
            assert save.in_place and save.name == save.temp_name == "checkpoint-500"
            assert save.path == str(tmp_path / "checkpoint-500") and os.path.isdir(save.path)
            assert cat.latest() is None  # not before the commit
            write_files(save.path, {"model.safetensors": b"m" * 3000, "config.json": b"{}",
                                    "trainer_state.json": b'{"global_step": 500}'})
            c = save.commit_in_place(metrics={"eval_loss": 0.25})
        assert c.layout == "dir" and c.file_count == 3 and c.size == 3000 + 2 + 20
        assert c.path == str(tmp_path / "checkpoint-500")
        assert c.metadata == {"eval_loss": 0.25}  # the commit's metrics replace the begin's
        latest = cat.latest()
        assert latest is not None and latest.id == c.id
        assert cat.verify(c.id)
        assert sorted((f.rank, f.name, f.size) for f in cat.files(c.id)) == [
            (0, "config.json", 2), (0, "model.safetensors", 3000), (0, "trainer_state.json", 20)]
        assert cat.read(c.id, file="trainer_state.json") == b'{"global_step": 500}'
        # A normal directory save is not committed in place, nor the other way round.
        with cat.begin_dir("step", epoch=0, step=600) as other:
            assert not other.in_place and other.path == str(tmp_path / other.temp_name)
            with pytest.raises(ckptdb.Error, match="not begun in place"):
                other.commit_in_place()
        # None and None keep the begin's metadata.
        with cat.begin_dir("step", epoch=0, step=700, name="checkpoint-700", in_place=True,
                           metadata={"loss": 1.5}) as save:
            write_files(save.path, {"a.bin": b"a"})
            with pytest.raises(ckptdb.Error, match="begun in place"):
                save.commit([{"name": "a.bin", "rank": 0, "size": 1, "checksum": "0" * 32}])
            assert save.commit_in_place().metadata == {"loss": 1.5}


def test_retention_by_a_metric_sees_the_metrics_given_at_the_commit(tmp_path):
    keep = ckptdb.Retention(keep_last={"step": 1}, best_metric="eval_loss", best_mode="min", best_k=1)
    with ckptdb.Catalog(tmp_path, retention=keep) as cat:
        for step, loss in ((100, 0.5), (200, 0.1), (300, 0.9)):
            with cat.begin_dir("step", step=step, name="checkpoint-%d" % step, in_place=True) as save:
                write_files(save.path, {"model.safetensors": bytes([step % 256]) * 10})
                save.commit_in_place(metrics={"eval_loss": loss})
        # The best (200) and the newest (300) are kept; 100 was rotated out.
        assert sorted(n for n in os.listdir(tmp_path) if n.startswith("checkpoint-")) == [
            "checkpoint-200", "checkpoint-300"]


def test_bad_entries_in_an_in_place_directory_change_nothing(tmp_path):
    with ckptdb.Catalog(tmp_path) as cat:
        save = cat.begin_dir("step", step=1, name="checkpoint-1", in_place=True)
        with pytest.raises(ckptdb.InvalidArgument, match="holds no file"):
            save.commit_in_place()
        write_files(save.path, {"model.safetensors": b"m" * 10})
        os.mkdir(os.path.join(save.path, "sub"))
        with pytest.raises(ckptdb.InvalidArgument, match="'.*checkpoint-1/sub' is not a regular file"):
            save.commit_in_place()
        os.rmdir(os.path.join(save.path, "sub"))
        os.symlink("/etc/passwd", os.path.join(save.path, "link"))
        with pytest.raises(ckptdb.InvalidArgument, match="'.*checkpoint-1/link' is not a regular file"):
            save.commit_in_place(metrics={"eval_loss": 1.0})
        # Nothing changed: the save is still writing, the files as they were.
        assert [(c.status, c.metadata) for c in cat.entries()] == [("writing", {})]
        assert sorted(os.listdir(save.path)) == ["link", "model.safetensors"]
        assert cat.latest() is None
        os.unlink(os.path.join(save.path, "link"))
        c = save.commit_in_place()
        assert c.status == "complete" and c.file_count == 1 and cat.verify(c.id)
        save.free()


def test_an_aborted_in_place_save_removes_its_directory(tmp_path):
    with ckptdb.Catalog(tmp_path) as cat:
        save = cat.begin_dir("step", step=1, name="checkpoint-1", in_place=True)
        write_files(save.path, {"model.safetensors": b"m" * 10, "optimizer.pt": b"o" * 10})
        save.abort()
        assert not (tmp_path / "checkpoint-1").exists()
        assert [c.status for c in cat.entries()] == ["aborted"]
        save.free()
        # Released without a commit: aborted and removed too.
        with pytest.raises(RuntimeError):
            with cat.begin_dir("step", step=2, name="checkpoint-2", in_place=True) as save:
                write_files(save.path, {"model.safetensors": b"m"})
                raise RuntimeError("the trainer failed")
        assert not (tmp_path / "checkpoint-2").exists()
        assert [c.status for c in cat.entries()] == ["aborted", "aborted"]


def test_an_in_place_save_never_takes_a_directory_it_did_not_make(tmp_path):
    with ckptdb.Catalog(tmp_path) as cat:
        foreign = tmp_path / "checkpoint-9"
        foreign.mkdir()
        (foreign / "model.safetensors").write_bytes(b"theirs")
        with pytest.raises(ckptdb.Exists, match="checkpoint-9"):
            cat.begin_dir("step", step=9, name="checkpoint-9", in_place=True)
        with pytest.raises(ckptdb.InvalidArgument, match="needs a name"):
            cat.begin_dir("step", step=9, in_place=True)
        assert os.listdir(foreign) == ["model.safetensors"]
        assert (foreign / "model.safetensors").read_bytes() == b"theirs"
        assert cat.entries() == []  # refused before any row was written
