"""The manager decides the kind once per step (a step that ends an epoch
and is due by time is saved once, as "epoch", on an injected clock; the old
two-call loop still gets its epoch checkpoint), examples/python/train.py's
simulated clock, and catalog events on the "ckptdb" logger and
CheckpointManager(on_event=...), a callback's exception reported."""

import logging
import os
import re
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

import ckptdb
from ckptdb import torch as ct

TRAIN = os.path.join(os.environ["CKPTDB_EXAMPLES"], "train.py")


def make():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    return model, torch.optim.SGD(model.parameters(), lr=0.1)


def run_loop(mgr, now, epochs, spe, seconds_per_step, end_of_epoch, start=(0, 0)):
    """The README's loop; the clock advances by seconds_per_step per step."""
    epoch, step = start
    while epoch < epochs:
        for _ in range(step - epoch * spe, spe):
            step += 1
            now[0] += seconds_per_step
            kw = {"end_of_epoch": step == (epoch + 1) * spe} if end_of_epoch else {}
            assert not mgr.step(epoch, step, **kw)
        epoch += 1
        assert not mgr.epoch_end(epoch, step)
    return [(e.kind, e.epoch, e.step) for e in mgr.cat.entries()]


def manager(d, now, **kw):
    model, opt = make()
    kw.setdefault("every_epochs", 2)
    kw.setdefault("every_seconds", 60)
    return ct.CheckpointManager(d, model, opt, signals=(), keep_epoch=-1, keep_time=-1, clock=lambda: now[0], **kw)


def test_a_step_ending_an_epoch_and_due_by_time_is_saved_once_as_epoch(tmp_path):
    # 15 s a step, 4 steps an epoch: every epoch's last step is due by time
    # (60 s); every 2nd epoch is also due as an epoch.
    now = [0.0]
    with manager(tmp_path, now) as mgr:
        got = run_loop(mgr, now, 3, 4, 15.0, end_of_epoch=True)
    # one save per step; the epoch number is the epoch just completed
    assert got == [("time", 1, 4), ("epoch", 2, 8), ("time", 3, 12)]


def test_time_saves_inside_an_epoch_are_unchanged(tmp_path):
    now = [0.0]
    with manager(tmp_path, now, every_epochs=1, every_seconds=45) as mgr:
        got = run_loop(mgr, now, 2, 4, 15.0, end_of_epoch=True)
    assert got == [("time", 0, 3), ("epoch", 1, 4), ("time", 1, 7), ("epoch", 2, 8)]


def test_the_old_two_call_loop_still_gets_its_epoch_checkpoint(tmp_path):
    now = [0.0]
    with manager(tmp_path, now) as mgr:
        got = run_loop(mgr, now, 3, 4, 15.0, end_of_epoch=False)
    # step() decides first (time, with the previous epoch number); epoch_end
    # at the same step still saves the epoch checkpoint that is due
    assert got == [("time", 0, 4), ("time", 1, 8), ("epoch", 2, 8), ("time", 2, 12)]


def test_an_epoch_checkpoint_is_not_dropped_after_resuming_from_the_same_step(tmp_path):
    # A two-call loop saved "time" at step 8 and died before epoch_end(2, 8).
    now = [0.0]
    with manager(tmp_path, now) as mgr:
        for step in range(1, 9):
            now[0] += 15.0
            mgr.step(step // 5, step)
        assert [(e.kind, e.step) for e in mgr.cat.entries()] == [("time", 4), ("time", 8)]
    now = [0.0]
    with manager(tmp_path, now) as mgr:
        assert mgr.resume() == (1, 8)
        got = run_loop(mgr, now, 3, 4, 15.0, end_of_epoch=True, start=(1, 8))
    assert got == [("time", 0, 4), ("time", 1, 8), ("epoch", 2, 8), ("time", 3, 12)]


def test_a_preemption_on_the_last_step_of_an_epoch_saves_at_once(tmp_path):
    now = [0.0]
    with manager(tmp_path, now) as mgr:
        for step in (1, 2, 3):
            assert not mgr.step(0, step, end_of_epoch=False)
        ckptdb.request_preempt(signal.SIGTERM)
        assert mgr.step(0, 4, end_of_epoch=True) is True
        assert [(e.kind, e.epoch, e.step) for e in mgr.cat.entries()] == [("preempt", 0, 4)]


def train_py(d, *args):
    r = subprocess.run([sys.executable, TRAIN, "--dir", str(d), "--width", "8", *args], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


def test_train_py_on_a_simulated_clock_saves_each_step_once(tmp_path):
    # 0.125 s a step, a time save every 0.25 s, an epoch save every 2 epochs
    # of 4 steps: step 4 ends epoch 1 (not due) and is due by time: "time"
    # with epoch 1; step 8 ends epoch 2 (due) and is due by time: "epoch",
    # once.
    lines = train_py(tmp_path, "--epochs", "2", "--steps-per-epoch", "4", "--save-every-epochs", "2",
                     "--save-every-seconds", "0.25", "--simulated-step-seconds", "0.125")
    saves = [re.search(r"kind=(\w+) epoch=(\d+) step=(\d+)", x).groups() for x in lines if x.startswith("save:")]
    assert saves == [("time", "0", "2"), ("time", "1", "4"), ("time", "1", "6"), ("epoch", "2", "8")]
    assert all(re.match(r"(resume|save|done): ", x) for x in lines), lines  # nothing new on stdout


# ---------------------------------------------------------------------------
# Events
# ---------------------------------------------------------------------------

def records(caplog):
    return [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "ckptdb"]


def test_events_reach_the_ckptdb_logger_and_on_event(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="ckptdb")
    got = []
    now = [0.0]
    model, opt = make()
    d = tmp_path / "ck"
    with ct.CheckpointManager(d, model, opt, signals=(), every_epochs=1, keep_epoch=1, clock=lambda: now[0],
                              on_event=got.append) as mgr:
        mgr.epoch_end(1, 4)
        mgr.epoch_end(2, 8)  # rotation prunes epoch 1 (keep 1)
        first, second = [e.id for e in mgr.cat.entries()]
    assert all(isinstance(ev, ckptdb.Event) for ev in got)
    assert [(ev.event, ev.checkpoint_id) for ev in got if ev.event != "begun"] == [
        ("committed", first), ("committed", second), ("pruned", first), ("run_ended", 0)]
    pruned = [ev for ev in got if ev.event == "pruned"][0]
    assert pruned.detail and pruned.directory == str(d)
    log = records(caplog)
    assert ("INFO", "ckptdb %s: committed checkpoint %d: %s" % (d, first, got[1].detail)) in log
    assert ("INFO", "ckptdb %s: pruned checkpoint %d (rule %s)" % (d, first, pruned.detail)) in log
    assert ("DEBUG", "ckptdb %s: begun checkpoint %d: %s" % (d, first, got[0].detail)) in log

    # resume: INFO; a corrupt file found on the way: WARNING
    with open(os.path.join(d, "epoch_002.pt"), "r+b") as f:
        f.seek(64)
        f.write(b"\xff\xff\xff")
    with ckptdb.Catalog(d) as cat:
        with cat.save(kind="epoch", epoch=1, step=4, name="again.pt") as f:
            torch.save(ct.build_state(1, 4, model, opt), f)
        with open(f.entry.path, "r+b") as fh:
            fh.seek(64)
            fh.write(b"\0\0\0")
    caplog.clear()
    got.clear()
    with ct.CheckpointManager(d, model, opt, signals=(), on_event=got.append) as mgr:
        with pytest.raises(LookupError):
            mgr.cat.get("nothing")
        assert mgr.resume() == (0, 0)  # both files are corrupt: a fresh start
    levels = {(lvl, m.split(": ", 1)[1].split(":")[0]) for lvl, m in records(caplog)}
    assert ("WARNING", "corrupt checkpoint 2") in levels and ("WARNING", "corrupt checkpoint 3") in levels
    assert [ev.event for ev in got] == ["corrupt", "corrupt"]


def test_resumed_is_logged_at_info(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="ckptdb")
    model, opt = make()
    with ct.CheckpointManager(tmp_path, model, opt, signals=(), every_epochs=1) as mgr:
        mgr.epoch_end(1, 4)
        cid = mgr.last_saved.id
    caplog.clear()
    with ct.CheckpointManager(tmp_path, model, opt, signals=()) as mgr:
        assert mgr.resume() == (1, 4)
    assert [(lvl, m.split(": ")[1]) for lvl, m in records(caplog)][0] == ("INFO", "resumed checkpoint %d" % cid)


def test_an_exception_in_on_event_is_logged_with_its_traceback_and_training_goes_on(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="ckptdb")
    model, opt = make()

    def bad(ev):
        if ev.event == "committed":
            raise ValueError("the user's callback broke on %d" % ev.checkpoint_id)

    for async_save in (False, True):  # the background save's thread reports it the same way
        caplog.clear()
        d = tmp_path / ("async" if async_save else "sync")
        with ct.CheckpointManager(d, model, opt, signals=(), every_epochs=1, on_event=bad,
                                  async_save=async_save) as mgr:
            assert not mgr.epoch_end(1, 4)
            e = mgr.wait()
            assert not mgr.epoch_end(2, 8)  # training goes on
            mgr.wait()
            assert [type(x) for x in mgr.cat.event_errors] == [ValueError, ValueError]
        errors = [r for r in caplog.records if r.name == "ckptdb" and r.levelno == logging.ERROR]
        assert len(errors) == 2
        assert "on_event callback" in errors[0].getMessage() and "'committed'" in errors[0].getMessage()
        assert errors[0].exc_info[0] is ValueError
        assert "the user's callback broke on %d" % e.id in caplog.text and "Traceback" in caplog.text
        assert e.status == "complete"


def test_a_callback_error_is_printed_even_where_logging_is_not_configured(tmp_path):
    code = textwrap.dedent("""
        import sys, ckptdb
        def bad(ev, cid, detail):
            raise RuntimeError("callback broke")
        with ckptdb.Catalog(sys.argv[1], on_event=bad) as cat:
            cat.save_bytes(b"x", kind="step", step=1)
        print("still running")
    """)
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout == "still running\n", r.stderr
    assert "RuntimeError: callback broke" in r.stderr and "on_event callback" in r.stderr


def test_recovered_and_requeued_events_are_warnings(tmp_path):
    """A child (fork+exec) leaves a save "writing" and is SIGKILLed; the next
    open recovers it.  Another commits a preempt checkpoint under a fake
    Slurm (SIGUSR1, SLURM_JOB_ID, a scontrol on PATH that succeeds)."""
    d = tmp_path / "ck"
    child = textwrap.dedent("""
        import os, signal, sys, ckptdb
        cat = ckptdb.Catalog(sys.argv[1])
        s = cat.save(kind="step", step=3)
        s.write(b"partial")
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    r = subprocess.run([sys.executable, "-c", child, str(d)])
    assert r.returncode == -signal.SIGKILL
    parent = textwrap.dedent("""
        import logging, signal, sys, ckptdb
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s", stream=sys.stdout)
        with ckptdb.Catalog(sys.argv[1], requeue_on_preempt=True) as cat:
            ckptdb.request_preempt(signal.SIGUSR1)
            cat.save_bytes(b"state", kind="preempt", step=9)
    """)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "scontrol").chmod(0o755)
    env = dict(os.environ, SLURM_JOB_ID="4242", PATH=str(bin_dir) + os.pathsep + os.environ["PATH"])
    r = subprocess.run([sys.executable, "-c", parent, str(d)], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert re.search(r"^WARNING ckptdb ckptdb %s: recovered checkpoint 1" % re.escape(str(d)), r.stdout, re.M), \
        r.stdout
    assert re.search(r"^WARNING ckptdb .*: run_ended: crashed$", r.stdout, re.M), r.stdout  # the killed child's
    assert re.search(r"^WARNING ckptdb .*: requeued: job 4242 requeued", r.stdout, re.M), r.stdout
    assert re.search(r"^INFO ckptdb .*: committed checkpoint 2", r.stdout, re.M), r.stdout
