"""torch.distributed with gloo on CPU, launched by torch.distributed.run:
replicated (DDP) training where rank 0 saves and every rank resumes from
the checkpoint rank 0 picked, and a rank SIGKILLed in the middle of a save:
the checkpoint never becomes complete, the previous one stays the resume
point, and a restart finishes bit-identical to an uninterrupted run.
Sharded training (CheckpointManager(sharded=True): every rank's own state,
saved through DCP as one directory checkpoint) resumes from checkpoints
of the flat per-rank format of earlier ckptdb versions too."""

import os
import re
import socket
import subprocess
import sys

import torch

import ckptdb
from torch_support import same

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "dist_worker.py")
TRAIN = os.path.join(os.environ["CKPTDB_EXAMPLES"], "train.py")
DDP_ARGS = ["--epochs", "3", "--steps-per-epoch", "10", "--save-every-epochs", "0", "--save-every-steps", "5",
            "--width", "64"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(nproc, script, d, args, die=None, term=None, flat=False):
    env = dict(os.environ)
    env.pop("CKPTDB_TEST_DIE", None)
    env.pop("CKPTDB_TEST_TERM", None)
    env.pop("CKPTDB_TEST_FLAT", None)
    if flat:
        env["CKPTDB_TEST_FLAT"] = "1"
    if die:
        env["CKPTDB_TEST_DIE"] = die
    if term:
        env["CKPTDB_TEST_TERM"] = term
    # --redirects/--tee 1: the workers' stdout is copied to ours, each line
    # prefixed with "[defaultN]:" (the value 0 does not parse on Python 3.11).
    logs = os.path.join(str(d) + "-logs")
    # Not --standalone: it always listens on port 29400, so two launches at
    # once (meson runs tests side by side) would share one rendezvous.
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), "--nproc_per_node", str(nproc),
           "--monitor_interval", "0.2", "--redirects", "1", "--tee", "1", "--log_dir", logs,
           WORKER, script, "--dir", str(d), *args]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=150)
    out = re.sub(r"^\[default\d+\]:", "", r.stdout, flags=re.M)
    return r.returncode, out, r.stderr


def resumes(out, nproc):
    got = re.findall(r"^rank (\d+) resumed (\d+) (\d+) (\w+)$", out, re.M)
    assert sorted(int(g[0]) for g in got) == list(range(nproc)), out
    return {g[1:] for g in got}


def digest(out):
    m = re.findall(r"^done: .* digest=(\w+)$", out, re.M)
    assert len(m) == 1, out
    return m[0]


def consistent_after_recovery(d):
    with ckptdb.Catalog(d) as cat:  # the open runs recovery
        assert not [n for n in os.listdir(d) if n.startswith(".ckptdb-tmp")]
        assert not cat.entries(status="writing")
        assert cat.verify()[1] == 0
        return cat.latest(), cat.entries()


def test_ddp_rank0_saves_all_ranks_resume_alike_and_a_kill_mid_save_loses_only_that_save(tmp_path):
    rc, out, err = torchrun(2, TRAIN, tmp_path / "ref", DDP_ARGS)
    assert rc == 0, err[-3000:]
    assert resumes(out, 2) == {("0", "0", resumes(out, 2).pop()[2])}

    d = tmp_path / "ck"
    rc, out, err = torchrun(2, TRAIN, d, DDP_ARGS, die="0:3")  # rank 0 dies inside its 3rd save (step 15)
    assert rc != 0
    assert "save: id=2 " in out, out + err[-3000:]
    latest, rows = consistent_after_recovery(d)
    assert [(e.step, e.status) for e in rows] == [(5, "complete"), (10, "complete"), (15, "aborted")]
    assert latest.step == 10

    # Restart; SIGTERM reaches rank 1 alone after step 22: every rank saves
    # "preempt" at that step and exits 0.
    rc, out, err = torchrun(2, TRAIN, d, DDP_ARGS, term="1:22")
    assert rc == 0, err[-3000:]
    [(ep, sp, _)] = resumes(out, 2)  # one agreed resume point, same weights on every rank
    assert (int(ep), int(sp)) == (latest.epoch, 10)
    assert re.search(r"^stopped: signal=0 epoch=2 step=22$", out, re.M), out  # rank 0 saw no signal itself
    with ckptdb.Catalog(d, readonly=True) as cat:
        e = cat.latest()
        assert (e.kind, e.step) == ("preempt", 22)
        runs = cat.runs()
        assert runs[-1]["resumed_from"] == latest.id
        # the killed launch: one run (rank 0's), crashed after two saves
        assert (runs[0]["exit_reason"], runs[0]["saves"]) == ("crashed", 2)
        assert runs[-1]["saves"] == 3  # steps 15, 20 and the preempt save of 22

    # The resumed run went on bit-identically: its checkpoint of step 20 is
    # the uninterrupted run's, tensor for tensor (model, optimizer, every
    # rank's RNG).
    a = torch.load(os.path.join(tmp_path, "ref", "step_000020.pt"))
    b = torch.load(os.path.join(d, "step_000020.pt"))
    assert a.keys() == b.keys() and "rng_per_rank" in a
    assert same(a, b)

SHARD_ARGS = ["--epochs", "2", "--steps-per-epoch", "10", "--save-every-epochs", "0", "--save-every-steps", "5",
              "--width", "64", "--sharded"]


def shard_rows(d):
    with ckptdb.Catalog(d, readonly=True) as cat:
        return [(e.step, e.status, e.file_count) for e in cat.entries()]


DCP_FILES_2 = [(0, ".metadata"), (0, ".metadata.json"), (0, "__0_0.distcp"), (1, "__1_0.distcp")]


def test_sharded_two_ranks_a_rank_killed_mid_save_and_a_bit_identical_restart(tmp_path):
    rc, out, err = torchrun(2, TRAIN, tmp_path / "ref", SHARD_ARGS)
    assert rc == 0, err[-3000:]
    want = digest(out)
    with ckptdb.Catalog(tmp_path / "ref", readonly=True) as cat:
        e = cat.latest()
        files = cat.files(e.id)
        # one DCP directory checkpoint: each rank's file and the coordinator's metadata
        assert (e.name, e.layout) == ("step_000020", "dir")
        assert sorted((f.rank, f.name) for f in files) == DCP_FILES_2
        assert e.size == sum(f.size for f in files) and e.file_count == 4
        # rank 0 (the rank that opens the catalog) closed it before its
        # process left: its run ended clean, not open or taken for a crash
        assert [r["exit_reason"] for r in cat.runs()] == ["clean"]

    # The flat per-rank format (one file per rank, as ckptdb saved before
    # DCP), rank 1 killed inside its 3rd save (step 15).
    d = tmp_path / "ck"
    rc, out, err = torchrun(2, TRAIN, d, SHARD_ARGS, die="1:3", flat=True)
    assert rc != 0
    assert "save: id=2 " in out, out + err[-3000:]
    latest, rows = consistent_after_recovery(d)
    assert [(e.step, e.status, e.file_count, e.layout) for e in rows if e.status == "complete"] == [
        (5, "complete", 2, "file"), (10, "complete", 2, "file")]
    assert latest.step == 10
    assert not [n for n in os.listdir(d) if "step_000015" in n]  # no shard of the killed save remains

    # Today's code reads it on as many ranks, and goes on saving through DCP.
    rc, out, err = torchrun(2, TRAIN, d, SHARD_ARGS)
    assert rc == 0, err[-3000:]
    [(ep, sp, _)] = {(a, b, "") for a, b, _ in resumes(out, 2)}
    assert int(sp) == 10
    assert digest(out) == want
    with ckptdb.Catalog(d, readonly=True) as cat:
        assert cat.runs()[-1]["resumed_from"] == latest.id
        e = cat.latest()
        assert (e.step, e.layout) == (20, "dir")
        assert sorted((f.rank, f.name) for f in cat.files(e.id)) == DCP_FILES_2


def test_sharded_four_ranks_resume_falls_back_as_a_whole_past_a_corrupt_shard(tmp_path):
    d = tmp_path / "ck"
    rc, out, err = torchrun(4, TRAIN, d, SHARD_ARGS, die="0:4")  # rank 0 dies inside its 4th save (step 20)
    assert rc != 0
    assert "save: id=3 " in out, out + err[-3000:]
    latest, rows = consistent_after_recovery(d)
    assert [(e.step, e.file_count) for e in rows if e.status == "complete"] == [(5, 6), (10, 6), (15, 6)]
    assert latest.step == 15
    with ckptdb.Catalog(d, readonly=True) as cat:
        [victim] = [f for f in cat.files(latest.id) if f.rank == 3]  # __3_0.distcp
    with open(victim.path, "r+b") as f:  # one byte of rank 3's file of the newest checkpoint
        f.seek(100)
        b = f.read(1)
        f.seek(100)
        f.write(bytes([b[0] ^ 0xFF]))

    rc, out, err = torchrun(4, TRAIN, d, SHARD_ARGS)
    assert rc == 0, err[-3000:]
    got = resumes(out, 4)
    # every rank, from the same older checkpoint; step 10 ends epoch 1, and
    # train.py passes end_of_epoch, so it was saved by epoch_end(1, 10)
    assert {(a, b) for a, b, _ in got} == {("1", "10")}
    with ckptdb.Catalog(d, readonly=True) as cat:
        # found corrupt at the resume, then quarantined: rotation never deletes
        # a corrupt checkpoint (only an explicit `ckptdb prune --corrupt` does)
        assert cat.get(latest.id).status == "corrupt"
        assert [ev["event"] for ev in cat.events(latest.id)][-1] == "corrupt"
        assert len(os.listdir(os.path.join(d, "step_000015"))) == 6
        assert cat.latest().step == 20 and cat.latest().file_count == 6
        [ten] = [e for e in cat.entries(status="complete") if e.step == 10]
        assert cat.runs()[-1]["resumed_from"] == ten.id
