"""The PyTorch helpers: torch.save through the catalog, auto_resume with
verification and fallback, RNG state, the CheckpointManager (triggers,
rotation, preemption at the next step), asynchronous saves, and files that
load with plain torch.load where ckptdb is not installed."""

import os
import random
import signal
import subprocess
import sys

import numpy
import pytest
import torch

import ckptdb
from ckptdb import torch as ct
from torch_support import make_training, same


def make():
    return make_training(16, 32, 4)


def train(model, opt, sched, steps):
    for _ in range(steps):
        opt.zero_grad()
        model(torch.randn(8, 16)).pow(2).mean().backward()
        opt.step()
    sched.step()


class Scaler:
    def __init__(self):
        self.scale = 1024.0

    def state_dict(self):
        return {"scale": self.scale}

    def load_state_dict(self, st):
        self.scale = st["scale"]


@pytest.mark.parametrize("mode", ["write", "fd"])
def test_torch_save_through_the_catalog_and_load_latest(tmp_path, mode):
    model, opt, sched = make()
    with ckptdb.Catalog(tmp_path) as cat:
        assert cat.load_latest() is None
        with cat.save(kind="epoch", epoch=1, step=10, metrics={"loss": torch.tensor(0.5)}, mode=mode) as f:
            torch.save({"model": model.state_dict()}, f)
        st, e = cat.load_latest()
        assert e.metadata == {"loss": 0.5} and e.kind == "epoch"
        assert same(st["model"], model.state_dict())
        assert cat.runs()[0]["resumed_from"] == e.id


def test_a_failing_torch_save_aborts_and_leaves_nothing(tmp_path):
    with ckptdb.Catalog(tmp_path / "ck") as cat:
        before = sorted(os.listdir(tmp_path / "ck"))
        with pytest.raises(Exception):
            with cat.save(kind="epoch", epoch=1) as f:
                torch.save({"w": torch.zeros(1000), "bad": lambda: 0}, f)  # a lambda does not pickle
        assert sorted(os.listdir(tmp_path / "ck")) == before
        assert [e.status for e in cat.entries()] == ["aborted"]


def test_auto_resume_restores_everything_and_falls_back_past_a_corrupt_file(tmp_path):
    model, opt, sched = make()
    scaler = Scaler()
    with ckptdb.Catalog(tmp_path) as cat:
        assert ct.auto_resume(cat, model, opt, sched, scaler) == (0, 0)
        train(model, opt, sched, 3)
        scaler.scale = 512.0
        with cat.save(kind="epoch", epoch=1, step=3) as f:
            torch.save(ct.build_state(1, 3, model, opt, sched, scaler), f)
        good = ct.snapshot({"m": model.state_dict(), "o": opt.state_dict(), "s": sched.state_dict()})
        # what the saving process draws next, from every RNG
        torch_next, random_next, numpy_next = torch.rand(4), random.random(), numpy.random.rand(3)
        train(model, opt, sched, 2)
        with cat.save(kind="epoch", epoch=2, step=5) as f:
            torch.save(ct.build_state(2, 5, model, opt, sched, scaler), f)
        with open(f.entry.path, "r+b") as fh:
            fh.seek(200)
            fh.write(b"\0\1\2")
    model2, opt2, sched2 = make()
    train(model2, opt2, sched2, 7)  # some other state
    scaler2 = Scaler()
    torch.manual_seed(999)
    random.seed(5)
    numpy.random.seed(5)
    with ckptdb.Catalog(tmp_path) as cat:
        assert ct.auto_resume(cat, model2, opt2, sched2, scaler2) == (1, 3)
        assert cat.get(2).status == "corrupt"
    assert same(model2.state_dict(), good["m"])
    assert same(opt2.state_dict(), good["o"])
    assert sched2.state_dict() == good["s"]
    assert scaler2.scale == 512.0
    assert torch.equal(torch.rand(4), torch_next)
    assert random.random() == random_next
    assert numpy.array_equal(numpy.random.rand(3), numpy_next)


def test_manager_saves_by_trigger_rotates_and_stops_at_the_next_step_after_sigterm(tmp_path):
    model, opt, sched = make()
    mgr = ct.CheckpointManager(tmp_path, model, opt, sched, every_epochs=1, every_seconds=0, keep_epoch=2)
    assert mgr.resume() == (0, 0)
    step = 0
    for epoch in range(5):
        for _ in range(4):
            step += 1
            train(model, opt, sched, 1)
            assert not mgr.step(epoch, step)
        assert not mgr.epoch_end(epoch + 1, step, metrics={"loss": 0.1 * epoch})
    cat = mgr.cat
    assert [e.name for e in cat.entries(status="complete")] == ["epoch_004.pt", "epoch_005.pt"]
    assert cat.get("epoch_005.pt").metadata == {"loss": pytest.approx(0.4)}
    n = len(cat.entries())
    os.kill(os.getpid(), signal.SIGTERM)  # the handler only sets a flag: nothing saved, the process lives
    assert len(cat.entries()) == n and mgr.preempted == signal.SIGTERM
    step += 1
    assert mgr.step(5, step) is True  # the next step saves "preempt" and says stop
    e = cat.latest()
    assert (e.kind, e.epoch, e.step) == ("preempt", 5, step)
    mgr.close()
    # a new manager resumes from it with no flag
    model2, opt2, sched2 = make()
    ckptdb.clear_preempt()
    with ct.CheckpointManager(tmp_path, model2, opt2, sched2) as mgr2:
        assert mgr2.resume() == (5, step)
        assert mgr2.resumed_from.id == e.id
        assert same(model2.state_dict(), model.state_dict())


def test_sigint_is_a_preemption_too_not_a_keyboard_interrupt(tmp_path):
    model, opt, sched = make()
    with ct.CheckpointManager(tmp_path, model, opt, sched) as mgr:
        assert mgr.resume() == (0, 0)
        os.kill(os.getpid(), signal.SIGINT)
        assert mgr.preempted == signal.SIGINT
        assert mgr.step(0, 1) is True
        assert [(e.kind, e.step) for e in mgr.cat.entries()] == [("preempt", 1)]


def test_manager_time_trigger_with_an_injected_clock(tmp_path):
    now = [0.0]
    model, opt, sched = make()
    with ct.CheckpointManager(tmp_path, model, opt, sched, every_seconds=60, clock=lambda: now[0]) as mgr:
        mgr.resume()
        assert not mgr.step(0, 1)
        now[0] = 61.0
        assert not mgr.step(0, 2)
        assert [(e.kind, e.step) for e in mgr.cat.entries()] == [("time", 2)]


def test_async_save_snapshots_on_the_callers_thread_and_commits_in_the_background(tmp_path):
    with ckptdb.Catalog(tmp_path) as cat:
        saver = ct.AsyncSaver(cat)
        w = torch.arange(1 << 20, dtype=torch.float32)
        saver.save({"w": w}, "step", 0, 1, metrics={"n": 1})
        w.add_(1)  # the loop goes on changing the tensor at once
        e = saver.wait()
        assert e.step == 1 and e.status == "complete"
        assert torch.equal(torch.load(e.path)["w"], torch.arange(1 << 20, dtype=torch.float32))
        # one in flight: a second save waits for the first
        saver.save({"w": w}, "step", 0, 2)
        saver.save({"w": w}, "step", 0, 3)
        assert saver.in_flight or cat.get(3).status == "complete"
        assert saver.wait().step == 3
        assert [x.step for x in cat.entries(status="complete")] == [1, 2, 3]
        # an error of a background save surfaces at the next call
        saver.wait()
        saver.save({"w": w}, "step", 0, 4, name="step_000001.pt")  # the name is taken
        with pytest.raises(ckptdb.Exists):
            saver.save({"w": w}, "step", 0, 5)
        saver.wait()  # the error was raised once; the saver is usable again
        saver.save({"w": w}, "step", 0, 6)
        assert saver.wait().step == 6


def test_a_python_checkpoint_loads_with_torch_load_where_ckptdb_is_not_installed(tmp_path):
    model, opt, sched = make()
    with ct.CheckpointManager(tmp_path / "ck", model, opt, sched, every_epochs=1, signals=()) as mgr:
        mgr.epoch_end(1, 4)
        path = mgr.last_saved.path
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CKPTDB_LIBRARY")}
    code = ("import sys, torch\n"
            "try:\n    import ckptdb\n    sys.exit('ckptdb is importable here')\nexcept ImportError:\n    pass\n"
            "st = torch.load(sys.argv[1])\n"
            "print(st['epoch'], st['step'], sorted(st['model']))\n")
    r = subprocess.run([sys.executable, "-c", code, path], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split(None, 2)[:2] == ["1", "4"]
    assert "0.weight" in r.stdout
