"""examples/python/train.py killed at random moments (SIGKILL and SIGTERM,
synchronous and asynchronous saves) and restarted with the same command
until it finishes: its final state is bit-identical to a run that was never
interrupted, and after every kill the directory is consistent."""

import os
import random
import signal
import subprocess
import sys
import threading
import time

import ckptdb

TRAIN = os.path.join(os.environ["CKPTDB_EXAMPLES"], "train.py")
ARGS = ["--epochs", "5", "--steps-per-epoch", "20", "--save-every-epochs", "1", "--save-every-steps", "10",
        "--step-sleep", "0.02", "--width", "256"]


def start(d, extra=()):
    return subprocess.Popen([sys.executable, TRAIN, "--dir", str(d), *ARGS, *extra], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def collect(p, started):
    lines = []

    def pump():
        for line in p.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("resume:"):
                started.set()
        started.set()

    t = threading.Thread(target=pump, daemon=True)
    t.start()
    return lines, t


def digest_of(lines):
    done = [x for x in lines if x.startswith("done:")]
    assert len(done) == 1, lines
    return done[0].split("digest=")[1]


def test_kill_and_restart_until_done_is_bit_identical(tmp_path):
    ref = subprocess.run([sys.executable, TRAIN, "--dir", str(tmp_path / "ref"), *ARGS], capture_output=True,
                         text=True, timeout=120)
    assert ref.returncode == 0, ref.stderr
    want = digest_of(ref.stdout.splitlines())

    d = tmp_path / "killed"
    rng = random.Random(20261127)
    kills = {"SIGKILL": 0, "SIGTERM": 0}
    preempt_saves = 0
    final = None
    for round_ in range(40):
        extra = ["--async-save"] if round_ % 2 else []
        started = threading.Event()
        p = start(d, extra)
        lines, pump = collect(p, started)
        assert started.wait(60)
        # Kill at a random moment of training or saving, the first few rounds for sure.
        if round_ < 6:
            time.sleep(rng.uniform(0.1, 0.6))
            sig = signal.SIGKILL if round_ % 3 != 2 else signal.SIGTERM
            if p.poll() is None:
                p.send_signal(sig)
        rc = p.wait(timeout=120)
        pump.join(10)
        err = p.stderr.read()
        if any(x.startswith("done:") for x in lines):
            assert rc == 0, err
            final = digest_of(lines)
            break
        if rc == -signal.SIGKILL:
            kills["SIGKILL"] += 1
        else:
            # SIGTERM: the step in progress finishes, a "preempt" checkpoint is
            # committed and the program exits 0.
            assert rc == 0, (rc, err)
            assert any(x.startswith("stopped: signal=%d" % signal.SIGTERM) for x in lines), lines
            kills["SIGTERM"] += 1
            stop = [x for x in lines if x.startswith("stopped:")][0]
            step = int(stop.split("step=")[1])
            with ckptdb.Catalog(d, readonly=True) as cat:
                latest = cat.latest()
                assert latest.step == step, (latest, stop)
                preempt_saves += latest.kind == "preempt"
        # After any kill the next open recovers a consistent directory: the
        # newest complete checkpoint verifies and no temp file is left.
        with ckptdb.Catalog(d, last_link="last.pt") as cat:
            assert not [n for n in os.listdir(d) if n.startswith(".ckptdb-tmp")]
            checked, corrupt = cat.verify()
            assert corrupt == 0 and checked >= 0
            assert not cat.entries(status="writing")
    assert final is not None, "the trainer never finished"
    assert kills["SIGKILL"] >= 2 and kills["SIGTERM"] >= 2, kills
    assert preempt_saves >= 1
    assert final == want
    print("kills survived: %d (SIGKILL %d, SIGTERM %d); final state bit-identical (sha256 %s)" % (
        sum(kills.values()), kills["SIGKILL"], kills["SIGTERM"], final))
