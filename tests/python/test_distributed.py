"""torch.distributed with gloo on CPU, launched by torch.distributed.run:
replicated (DDP) training where rank 0 saves and every rank resumes from
the checkpoint rank 0 picked, and a rank SIGKILLed in the middle of a save:
the checkpoint never becomes complete, the previous one stays the resume
point, and a restart finishes bit-identical to an uninterrupted run."""

import os
import re
import subprocess
import sys

import ckptdb

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "dist_worker.py")
TRAIN = os.path.join(os.environ["CKPTDB_EXAMPLES"], "train.py")
DDP_ARGS = ["--epochs", "3", "--steps-per-epoch", "10", "--save-every-epochs", "0", "--save-every-steps", "5",
            "--width", "64"]


def torchrun(nproc, script, d, args, die=None):
    env = dict(os.environ)
    env.pop("CKPTDB_TEST_DIE", None)
    if die:
        env["CKPTDB_TEST_DIE"] = die
    # --redirects/--tee 1: the workers' stdout is copied to ours, each line
    # prefixed with "[defaultN]:" (the value 0 does not parse on Python 3.11).
    logs = os.path.join(str(d) + "-logs")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
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
    want = digest(out)

    d = tmp_path / "ck"
    rc, out, err = torchrun(2, TRAIN, d, DDP_ARGS, die="0:3")  # rank 0 dies inside its 3rd save (step 15)
    assert rc != 0
    latest, rows = consistent_after_recovery(d)
    assert [(e.step, e.status) for e in rows] == [(5, "complete"), (10, "complete"), (15, "aborted")]
    assert latest.step == 10

    rc, out, err = torchrun(2, TRAIN, d, DDP_ARGS)
    assert rc == 0, err[-3000:]
    [(ep, sp, _)] = resumes(out, 2)  # one agreed resume point, same weights on every rank
    assert (int(ep), int(sp)) == (latest.epoch, 10)
    assert digest(out) == want
    with ckptdb.Catalog(d, readonly=True) as cat:
        runs = cat.runs()
        assert runs[-1]["resumed_from"] == latest.id
        # the killed launch: one run (rank 0's), crashed after two saves
        assert (runs[0]["exit_reason"], runs[0]["saves"]) == ("crashed", 2)
        assert (runs[-1]["exit_reason"], runs[-1]["saves"]) == ("clean", 4)
