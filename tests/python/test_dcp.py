"""torch.distributed.checkpoint through the catalog (ckptdb.dcp): a DCP
save is one directory checkpoint, committed by the coordinator from the
ranks' seals; a load picks the newest one that verifies on rank 0 and
every rank reads it.  Resharding 4 -> 2 and 4 -> 4 ranks with FSDP2 on CPU
(gloo), a corrupt file falling back as a whole, a rank killed in the middle
of its write, and a single-process round trip."""

import json
import os
import re
import socket
import subprocess
import sys

import pytest
import torch
import torch.distributed.checkpoint as dcp

import ckptdb
from ckptdb import dcp as ckdcp
from ckptdb.distributed import DirFileWriter
from torch_support import same

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "dcp_worker.py")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(nproc, d, ref, args, die=None):
    env = dict(os.environ)
    env.pop("CKPTDB_TEST_DCP_DIE", None)
    if die:
        env["CKPTDB_TEST_DCP_DIE"] = die
    env["PYTHONPATH"] = HERE + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), "--nproc_per_node", str(nproc), "--monitor_interval", "0.2",
           WORKER, "--dir", str(d), "--ref", str(ref), *args]
    # A hang guard only: meson's timeout for the test (scaled by tests/run.sh) is the limit.
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200)
    return r.returncode, r.stdout, r.stderr


def loaded(out, nproc):
    """The (step, id) every rank loaded (one for all), and rank 0's verdict."""
    got = re.findall(r"^rank (\d+) loaded (\d+) (\d+)$", out, re.M)
    assert sorted(int(g[0]) for g in got) == list(range(nproc)), out
    assert len({g[1:] for g in got}) == 1, out
    step = int(got[0][1])
    assert re.search(r"^match %d True$" % step, out, re.M), out
    return step


def no_temp_dirs(d):
    return not [n for n in os.listdir(d) if n.startswith(".ckptdb-tmp")]


def test_single_process_round_trip(tmp_path):
    d = tmp_path / "ck"
    torch.manual_seed(0)
    state = {"w": torch.randn(5, 3), "b": torch.arange(7, dtype=torch.int64), "half": torch.randn(4).bfloat16(),
             "view": torch.randn(10)[2:6], "extra": {"epoch": 3, "names": ["a", "b"]}}
    w = ckdcp.Writer(d, kind="epoch", epoch=3, step=30, metrics={"loss": 0.5})
    dcp.save(state, storage_writer=w)
    c = w.checkpoint
    assert c is not None and c.layout == "dir" and c.name == "epoch_003" and c.status == "complete"
    assert sorted(os.listdir(c.path)) == [".metadata", ".metadata.json", "__0_0.distcp"]
    assert no_temp_dirs(d)
    with ckptdb.Catalog(d) as cat:
        assert [(f.rank, f.name) for f in cat.files(c.id)] == [(0, ".metadata"), (0, ".metadata.json"),
                                                               (0, "__0_0.distcp")]
        assert cat.get(c.id).metadata["loss"] == 0.5
        md = ckdcp.decode_metadata(cat.read(c.id, file=ckdcp.METADATA_FILE))
    assert md.storage_meta.checkpoint_id == "epoch_003"
    assert set(md.state_dict_metadata) == {"w", "b", "half", "view", "extra.epoch", "extra.names"}

    into = {"w": torch.zeros(5, 3), "b": torch.zeros(7, dtype=torch.int64), "half": torch.zeros(4).bfloat16(),
            "view": torch.zeros(4), "extra": {"epoch": 0, "names": []}}
    with ckptdb.Catalog(d) as cat:
        assert "resumed" not in [ev["event"] for ev in cat.events(c.id)]
    r = ckdcp.Reader(d)
    dcp.load(into, storage_reader=r)
    assert r.checkpoint.id == c.id
    with ckptdb.Catalog(d) as cat:  # the Reader recorded the resume, as CheckpointManager.resume does
        assert [ev["event"] for ev in cat.events(c.id)].count("resumed") == 1
    assert same(into, {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in state.items()})

    # The stock pickle .metadata is there for torch's own reader, which loads the same values.
    stock = {"w": torch.zeros(5, 3)}
    dcp.load(stock, storage_reader=dcp.FileSystemReader(c.path))
    assert torch.equal(stock["w"], state["w"])

    # A second save: the reader takes the newest; the first by id when asked.
    first_w = state["w"].clone()
    state["w"] += 1
    dcp.save(state, storage_writer=ckdcp.Writer(d, kind="epoch", epoch=4, step=40))
    into2 = {"w": torch.zeros(5, 3)}
    dcp.load(into2, storage_reader=ckdcp.Reader(d))
    assert torch.equal(into2["w"], state["w"])
    dcp.load(into2, storage_reader=ckdcp.Reader(d, id=c.id))
    assert torch.equal(into2["w"], first_w)

    # async_save (its thread executor): the save and the commit run in DCP's worker thread.
    dcp.async_save({"w": first_w * 2}, storage_writer=ckdcp.Writer(d, kind="epoch", epoch=5, step=50)).result()
    r = ckdcp.Reader(d)
    dcp.load(into2, storage_reader=r)
    assert r.checkpoint.epoch == 5 and torch.equal(into2["w"], first_w * 2)

    # Newer checkpoints that are no DCP checkpoint (a file, a directory without
    # the metadata) are passed over; a kind with none fails on every rank.
    with ckptdb.Catalog(d) as cat:
        cat.save_bytes(b"x", kind="epoch", epoch=9)
        with cat.begin_dir("epoch", epoch=10) as s:
            fw = DirFileWriter(d, s.temp_name, "a.bin", 0)
            fw.write(b"a")
            s.commit([fw.finish()])
            fw.free()
    r = ckdcp.Reader(d)
    dcp.load(into2, storage_reader=r)
    assert r.checkpoint.epoch == 5
    with pytest.raises(BaseException, match="no DCP checkpoint of kind 'step'"):
        dcp.load(into2, storage_reader=ckdcp.Reader(d, kind="step"))


def test_refused_modes_and_a_metadata_file_that_names_no_torch_type(tmp_path):
    with pytest.raises(Exception, match="use_collectives=False"):
        dcp.save({"a": torch.zeros(2)}, storage_writer=ckdcp.Writer(tmp_path), use_collectives=False)
    with ckptdb.Catalog(tmp_path) as cat:
        assert not cat.entries(status="complete")
    assert no_temp_dirs(tmp_path)
    w = ckdcp.Writer(tmp_path)
    with pytest.raises(BaseException, match="plan caching"):
        dcp.save({"a": torch.zeros(2)}, storage_writer=w, planner=dcp.DefaultSavePlanner(enable_plan_caching=True))
    dcp.save({"a": torch.ones(2)}, storage_writer=w)
    with ckptdb.Catalog(tmp_path) as cat:
        doc = json.loads(cat.read(w.checkpoint.id, file=ckdcp.METADATA_FILE))
    doc["state_dict_metadata"]["a"]["dtype"] = "torch.load"  # a torch name that is no dtype
    with pytest.raises(ValueError, match="dtype"):
        ckdcp.decode_metadata(json.dumps(doc).encode())
    doc["state_dict_metadata"]["a"]["dtype"] = "os.system"
    with pytest.raises(ValueError, match="dtype"):
        ckdcp.decode_metadata(json.dumps(doc).encode())
    with pytest.raises(ValueError, match="ckptdb-dcp-metadata"):
        ckdcp.decode_metadata(b'{"format": "pickle"}')


def test_a_failed_write_leaves_an_aborted_save_and_no_temp_directory(tmp_path, monkeypatch):
    import ckptdb.distributed as cd
    orig = cd.DirFileWriter.write

    def failing(self, data):
        orig(self, data)
        raise OSError("disk on fire")

    w = ckdcp.Writer(tmp_path, kind="step", step=1)
    monkeypatch.setattr(cd.DirFileWriter, "write", failing)
    with pytest.raises(BaseException, match="disk on fire"):
        dcp.save({"a": torch.ones(3)}, storage_writer=w)
    monkeypatch.setattr(cd.DirFileWriter, "write", orig)
    # DCP called no finish: the save stays open until the writer is released
    # or saves again; either aborts it (its temp directory removed).
    dcp.save({"a": torch.ones(3)}, storage_writer=w)
    assert no_temp_dirs(tmp_path)
    with ckptdb.Catalog(tmp_path) as cat:
        assert [(e.step, e.status) for e in cat.entries()] == [(1, "aborted"), (1, "complete")]
    w2 = ckdcp.Writer(tmp_path, kind="step", step=2)
    monkeypatch.setattr(cd.DirFileWriter, "write", failing)
    with pytest.raises(BaseException, match="disk on fire"):
        dcp.save({"a": torch.ones(3)}, storage_writer=w2)
    w2.close()
    assert no_temp_dirs(tmp_path)
    with ckptdb.Catalog(tmp_path) as cat:
        assert [e.status for e in cat.entries()] == ["aborted", "complete", "aborted"]


def test_fsdp2_four_ranks_reshard_to_two_and_after_a_corrupt_file_to_four_from_the_older(tmp_path):
    d, ref = tmp_path / "ck", tmp_path / "ref"
    rc, out, err = torchrun(4, d, ref, ["--mode", "save", "--steps", "1,2"])
    assert rc == 0, out + err[-4000:]
    with ckptdb.Catalog(d) as cat:
        latest = cat.latest()
        assert (latest.step, latest.layout) == (2, "dir")
        files = cat.files(latest.id)
        assert sorted(f.name for f in files) == [".metadata", ".metadata.json", "__0_0.distcp", "__1_0.distcp",
                                                 "__2_0.distcp", "__3_0.distcp"]
    assert no_temp_dirs(d)

    rc, out, err = torchrun(2, d, ref, ["--mode", "load"])
    assert rc == 0, out + err[-4000:]
    assert loaded(out, 2) == 2

    victim = [f for f in files if f.name == "__1_0.distcp"][0]
    with open(victim.path, "r+b") as f:  # one byte of rank 1's file of the newest checkpoint
        f.seek(victim.size // 2)
        b = f.read(1)
        f.seek(victim.size // 2)
        f.write(bytes([b[0] ^ 0xFF]))
    # On 4 ranks this time (one launch fewer on a busy machine: 4 -> 4 is
    # checked on the older checkpoint, as exactly as 4 -> 2 on the newer).
    rc, out, err = torchrun(4, d, ref, ["--mode", "load"])
    assert rc == 0, out + err[-4000:]
    assert loaded(out, 4) == 1  # every rank, from the older checkpoint
    with ckptdb.Catalog(d, readonly=True) as cat:
        assert cat.get(latest.id).status == "corrupt"


def test_a_rank_killed_mid_write_commits_nothing_and_the_restart_resumes_from_the_previous(tmp_path):
    d, ref = tmp_path / "ck", tmp_path / "ref"
    rc, out, err = torchrun(2, d, ref, ["--mode", "save", "--steps", "1,2"], die="1:2")
    assert rc != 0 and "SIGKILL" in err, err[-4000:]
    assert "rank 0 saved 1" in out and "rank 1 saved 1" in out and "saved 2" not in out, out + err[-4000:]
    with ckptdb.Catalog(d) as cat:  # the open's recovery ends the killed save
        assert no_temp_dirs(d)
        assert [(e.step, e.status) for e in cat.entries()] == [(1, "complete"), (2, "aborted")]
        assert cat.latest().step == 1
    rc, out, err = torchrun(2, d, ref, ["--mode", "load"])
    assert rc == 0, out + err[-4000:]
    assert loaded(out, 2) == 1


class _Payload:
    """An object a checkpoint may not carry into ckptdb's load: unpickling it
    would run code of the pickle's choosing."""

    def __reduce__(self):
        return (os.getpid, ())


def test_the_reader_never_unpickles_code_unless_told_the_checkpoint_is_trusted(tmp_path):
    d = tmp_path / "ck"
    dcp.save({"w": torch.ones(3), "extra": {"obj": _Payload()}},
             storage_writer=ckdcp.Writer(d, kind="epoch", epoch=1, step=1))
    into = {"w": torch.zeros(3), "extra": {"obj": None}}
    with pytest.raises(BaseException, match="safe loader"):
        dcp.load(into, storage_reader=ckdcp.Reader(d))
    assert into["extra"]["obj"] is None
    # Trusted by the caller: DCP's planner loads it.
    dcp.load(into, storage_reader=ckdcp.Reader(d, weights_only=False))
    assert into["extra"]["obj"] == os.getpid() and torch.equal(into["w"], torch.ones(3))


def catalog_state(d):
    with ckptdb.Catalog(d, readonly=True) as cat:
        return ([(e.id, e.name, e.status) for e in cat.entries()], cat.events(),
                [r["resumed_from"] for r in cat.runs()])


def test_manager_fsdp2_saves_through_dcp_on_four_ranks_and_resumes_on_two_past_a_flat_checkpoint(tmp_path):
    d, d2, ref = tmp_path / "ck", tmp_path / "flat-only", tmp_path / "ref"
    rc, out, err = torchrun(4, d, ref, ["--mode", "mgr-save", "--dir2", str(d2)])
    assert rc == 0, out + err[-4000:]
    assert sorted(re.findall(r"^rank (\d) saved 2 step_000002 True$", out, re.M)) == ["0", "1", "2", "3"], out
    ls = json.loads(subprocess.run([os.environ["CKPTDB_CLI"], "ls", "--json", str(d)], capture_output=True,
                                   text=True, check=True).stdout)
    rows = [(c["name"], c["step"], c["layout"]) for c in ls["checkpoints"]]
    assert ("step_000002", 2, "dir") in rows, rows
    with ckptdb.Catalog(d, readonly=True) as cat:
        dcp_ck, flat = cat.entries(status="complete")
        assert (dcp_ck.layout, flat.layout, flat.step, flat.file_count) == ("dir", "file", 3, 4)
        assert sorted(f.name for f in cat.files(dcp_ck.id)) == [
            ".metadata", ".metadata.json", "__0_0.distcp", "__1_0.distcp", "__2_0.distcp", "__3_0.distcp"]
    before = catalog_state(d2)

    rc, out, err = torchrun(2, d, ref, ["--mode", "mgr-load", "--dir2", str(d2)])
    assert rc == 0, out + err[-4000:]
    # Only a flat checkpoint of 4 ranks: refused on every rank, naming both world sizes.
    refused = re.findall(r"^rank (\d) refused: (.*)$", out, re.M)
    assert sorted(r for r, _ in refused) == ["0", "1"], out
    assert all("saved by 4 ranks, this job has 2" in m for _, m in refused), out
    assert catalog_state(d2)[:2] == before[:2] and not any(catalog_state(d2)[2]), out
    # The newer flat one is skipped with a warning; the DCP one reshards 4 -> 2, bit for bit.
    assert re.search(r"^warn: .*step_000003.*saved by 4 ranks, this job has 2", out, re.M), out
    assert loaded(out, 2) == 2
    with ckptdb.Catalog(d, readonly=True) as cat:
        assert cat.runs()[-1]["resumed_from"] == dcp_ck.id


def test_async_save_with_the_process_executor_pickles_a_writer_of_a_directory_and_refuses_one_of_a_catalog(tmp_path):
    d = tmp_path / "ck"
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), RANK="0", LOCAL_RANK="0",
               WORLD_SIZE="1", LOCAL_WORLD_SIZE="1")
    env["PYTHONPATH"] = HERE + os.pathsep + env.get("PYTHONPATH", "")
    # A process of its own (no torchrun): the executor spawns a save process, which imports the main module.
    r = subprocess.run([sys.executable, WORKER, "--dir", str(d), "--ref", str(tmp_path / "ref"), "--mode",
                        "async-process"], env=env, capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stdout + r.stderr[-4000:]
    assert re.search(r"^refused ckptdb.dcp.Writer: a Writer made with an open Catalog cannot be pickled.*"
                     r"make it with the checkpoint directory", r.stdout, re.M), r.stdout + r.stderr[-4000:]
    assert re.search(r"^process saved epoch_001$", r.stdout, re.M), r.stdout + r.stderr[-4000:]
    assert no_temp_dirs(d)
    with ckptdb.Catalog(d) as cat:
        assert [(e.name, e.status, e.layout) for e in cat.entries()] == [("epoch_001", "complete", "dir")]
    into = {"w": torch.zeros(6)}
    dcp.load(into, storage_reader=ckdcp.Reader(d))
    assert torch.equal(into["w"], torch.arange(6.0))


def test_manager_sharded_in_one_process_resumes_the_newest_that_fits_a_file_or_a_dcp_checkpoint(tmp_path, caplog):
    import logging

    import ckptdb.torch as ct
    d = tmp_path / "ck"

    def make(seed):
        torch.manual_seed(seed)
        m = torch.nn.Linear(4, 3)
        o = torch.optim.Adam(m.parameters(), lr=0.1)
        m(torch.randn(2, 4)).sum().backward()
        o.step()
        return m, o

    m1, o1 = make(1)
    with ct.CheckpointManager(d, m1, o1, sharded=True, signals=()) as mgr:
        dcp_ck = mgr.save("step", 0, 1)
    m2, o2 = make(2)
    with ct.CheckpointManager(d, m2, o2, signals=()) as mgr:  # sharded=False: one file
        file_ck = mgr.save("step", 0, 2)
    assert (dcp_ck.layout, file_ck.layout) == ("dir", "file")
    with ckptdb.Catalog(d) as cat:  # the newest: a directory that is no DCP checkpoint
        with cat.begin_dir("step", step=3) as s:
            fw = DirFileWriter(d, s.temp_name, "a.bin", 0)
            fw.write(b"a")
            other = s.commit([fw.finish()])
            fw.free()

    m, o = make(3)
    caplog.set_level(logging.WARNING, logger="ckptdb")
    with ct.CheckpointManager(d, m, o, sharded=True, signals=()) as mgr:
        r = mgr.resume()  # the file: every rank loads it as replicated state
    assert (r.step, r.layout, r.checkpoint.id) == (2, "ckptdb", file_ck.id)
    assert same(m.state_dict(), m2.state_dict()) and same(o.state_dict(), o2.state_dict())
    assert any(other.name in x.getMessage() and "no DCP checkpoint" in x.getMessage() for x in caplog.records)

    with ckptdb.Catalog(d) as cat:
        cat.pin(dcp_ck.id)
        cat.prune(ckptdb.Retention(keep_last={"step": 0}))  # only the pinned DCP one stays
    m, o = make(4)
    with ct.CheckpointManager(d, m, o, sharded=True, signals=()) as mgr:
        r = mgr.resume()
    assert (r.step, r.layout, r.checkpoint.id) == (1, "dcp", dcp_ck.id)
    assert same(m.state_dict(), m1.state_dict()) and same(o.state_dict(), o1.state_dict())
