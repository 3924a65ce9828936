"""Safe loading: every checkpoint the Python binding writes loads with
torch's safe loader (plain torch.load with its defaults: weights_only=True on
torch >= 2.6), RNG state comes back exactly, files of the earlier format
still resume, and a checkpoint whose unpickling would run code is refused by
every ckptdb load (the code never runs, the catalog is unchanged) unless the
caller opts in with weights_only=False.  Plus the torch version guard."""

import os
import pickle
import random
import shlex
import subprocess
import sys

import numpy
import pytest
import torch

import ckptdb
from ckptdb import torch as ct
from torch_support import make_training


def make():
    return make_training(8, 16, 2)


def train(model, opt, steps=2):
    for _ in range(steps):
        opt.zero_grad()
        model(torch.randn(4, 8)).pow(2).mean().backward()
        opt.step()


@pytest.fixture
def world_of_one(tmp_path):
    """torch.distributed with one rank (gloo, a file store): what sharded
    saves need, in this process."""
    import torch.distributed as dist
    dist.init_process_group("gloo", init_method="file://" + str(tmp_path / "store"), rank=0, world_size=1)
    try:
        yield dist
    finally:
        dist.destroy_process_group()


SAFE_BY_DEFAULT = ct._version_tuple(torch.__version__) >= (2, 6)  # torch.load's default became weights_only=True


def plain_load(path):
    """torch.load with torch's defaults: no weights_only given (on a torch
    older than 2.6, whose default is unsafe, the safe loader explicitly)."""
    if not SAFE_BY_DEFAULT:
        return torch.load(path, weights_only=True)
    assert torch.load.__kwdefaults__["weights_only"] is None  # torch decides: True
    return torch.load(path)


def check_safe(path):
    st = plain_load(path)
    assert st["format"] == ct.FORMAT == "ckptdb.torch/2"
    rng = st["rng"]
    assert isinstance(rng["numpy"]["state"], torch.Tensor) and isinstance(rng["random"]["state"], torch.Tensor)
    return st


@pytest.mark.parametrize("async_save", [False, True])
def test_manager_checkpoints_load_with_plain_torch_load(tmp_path, async_save):
    model, opt, sched = make()
    with ct.CheckpointManager(tmp_path, model, opt, sched, every_epochs=1, signals=(),
                              async_save=async_save, extra={"note": "plain", "lr": [0.1, 0.2]}) as mgr:
        train(model, opt)
        assert not mgr.epoch_end(1, 2, metrics={"loss": 0.5})
        e = mgr.wait()
    st = check_safe(e.path)
    assert (st["epoch"], st["step"], st["extra"]) == (1, 2, {"note": "plain", "lr": [0.1, 0.2]})
    assert all(torch.equal(st["model"][k], v) for k, v in model.state_dict().items())


def test_sharded_checkpoints_load_with_torch_alone(tmp_path, world_of_one):
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save
    model, opt, sched = make()
    with ct.CheckpointManager(tmp_path / "ck", model, opt, sched, every_epochs=1, signals=(),
                              sharded=True) as mgr:
        train(model, opt)
        mgr.epoch_end(1, 2)
        e = mgr.last_saved
        assert (e.name, e.layout) == ("epoch_001", "dir")  # a DCP checkpoint
        # torch's own DCP tools read it; what they make of it loads with the safe loader
        whole = str(tmp_path / "whole.pt")
        dcp_to_torch_save(e.path, whole)
        st = plain_load(whole)
        common, mine = st["ckptdb"][0], st["rank0-of-1"]
        assert (common["format"], common["epoch"], common["step"]) == (ct.FORMAT, 1, 2)
        rng = mine["rng"][0]
        assert isinstance(rng["numpy"]["state"], torch.Tensor) and isinstance(rng["random"]["state"], torch.Tensor)
        assert all(torch.equal(mine["model"][k], v) for k, v in model.state_dict().items())
        # ... and the manager reads it back with the safe loader
        model2, opt2, sched2 = make()
        mgr.model, mgr.optimizer, mgr.scheduler = model2, opt2, sched2
        assert mgr.resume() == (1, 2)
        assert all(torch.equal(model2.state_dict()[k], v) for k, v in model.state_dict().items())


def draws():
    """What the process draws next from every RNG (the caches included:
    numpy's cached gaussian and random's gauss_next are used first)."""
    return (torch.rand(5), random.random(), random.gauss(0, 1), numpy.random.standard_normal(),
            numpy.random.rand(3), numpy.random.randint(0, 1 << 30, 4))


def same_draws(a, b):
    return (torch.equal(a[0], b[0]) and a[1:4] == b[1:4] and numpy.array_equal(a[4], b[4])
            and numpy.array_equal(a[5], b[5]))


def scramble():
    torch.manual_seed(999)
    random.seed(999)
    numpy.random.seed(999)


def test_rng_state_is_stored_as_tensors_and_restored_exactly(tmp_path):
    model, opt, sched = make()
    random.seed(3)
    numpy.random.seed(3)
    random.gauss(0, 1)  # leaves gauss_next set
    numpy.random.standard_normal()  # leaves a cached gaussian (has_gauss=1)
    with ct.CheckpointManager(tmp_path, model, opt, sched, every_epochs=1, signals=()) as mgr:
        mgr.epoch_end(1, 4)
        path = mgr.last_saved.path
    rng = plain_load(path)["rng"]
    assert rng["numpy"]["has_gauss"] == 1 and rng["random"]["gauss_next"] is not None
    assert rng["numpy"]["state"].dtype == torch.int64 and rng["numpy"]["state"].shape == (624,)
    want = draws()
    scramble()
    with ct.CheckpointManager(tmp_path, *make(), signals=()) as mgr:
        assert mgr.resume() == (1, 4)
    assert same_draws(draws(), want)


def old_format_state(model, opt):
    """A checkpoint as ckptdb.torch/1 wrote it: numpy's and random's state
    as Python objects (a numpy array inside a tuple)."""
    return {"format": "ckptdb.torch/1", "epoch": 2, "step": 8, "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "random": random.getstate(),
                    "numpy": numpy.random.get_state()}}


def test_files_of_the_earlier_format_still_resume_with_numpy_arrays_alone_allowed(tmp_path):
    model, opt, _ = make()
    train(model, opt)
    random.seed(4)
    numpy.random.seed(4)
    with ckptdb.Catalog(tmp_path) as cat:
        with cat.save(kind="epoch", epoch=2, step=8) as f:
            torch.save(old_format_state(model, opt), f)
        path = f.entry.path
    want = draws()
    with pytest.raises(pickle.UnpicklingError):
        plain_load(path)  # torch's safe loader alone refuses it: it is the old format
    scramble()
    model2, opt2, sched2 = make()
    if not hasattr(torch.serialization, "safe_globals"):  # torch < 2.5: no allowlist; the opt-in is the way
        with pytest.raises(ckptdb.UnsafeCheckpoint, match="weights_only=False"):
            with ct.CheckpointManager(tmp_path, model2, opt2, sched2, signals=()) as mgr:
                mgr.resume()
        return
    with ct.CheckpointManager(tmp_path, model2, opt2, sched2, signals=()) as mgr:
        assert mgr.resume() == (2, 8)
        assert mgr.cat.runs()[-1]["resumed_from"] == mgr.resumed_from.id
    assert same_draws(draws(), want)
    assert all(torch.equal(model2.state_dict()[k], v) for k, v in model.state_dict().items())
    # The allowlist serves that format only: another file holding a numpy
    # array is refused like any other object.
    with ckptdb.Catalog(tmp_path / "other") as cat:
        with cat.save(kind="manual") as f:
            torch.save({"model": model.state_dict(), "mask": numpy.zeros(3)}, f)
        with pytest.raises(ckptdb.UnsafeCheckpoint, match="weights_only=False"):
            cat.load_latest()
        st, _ = cat.load_latest(weights_only=False)
        assert numpy.array_equal(st["mask"], numpy.zeros(3))


class RunsCode:
    """Unpickling this runs a shell command: it creates the marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, ("touch " + shlex.quote(self.marker),))


def commit_malicious(d, marker, model):
    """A checkpoint that looks like ckptdb's own, committed through the
    catalog (its checksum matches), with an object whose unpickling runs
    code."""
    with ckptdb.Catalog(d) as cat:
        with cat.save(kind="epoch", epoch=1, step=4) as f:
            torch.save({"format": ct.FORMAT, "epoch": 1, "step": 4, "model": model.state_dict(),
                        "extra": {"payload": RunsCode(marker)}}, f)
        return f.entry


def catalog_state(d):
    """The catalog as a resume could change it: every row, every event but
    the run bookkeeping of opening and closing a handle, and every run's
    resume point."""
    with ckptdb.Catalog(d, readonly=True) as cat:
        return ([(e.id, e.status, e.kind, e.pinned) for e in cat.entries()],
                [ev for ev in cat.events() if ev["event"] != "run_ended"],
                {r["id"]: r["resumed_from"] for r in cat.runs()})


def refuses(call, path, marker, d):
    rows, events, runs = catalog_state(d)
    with pytest.raises(ckptdb.UnsafeCheckpoint) as ei:
        call()
    msg = str(ei.value)
    assert path in msg and "weights_only=False" in msg and "posix.system" in msg, msg
    assert ei.value.path == path
    assert not os.path.exists(marker), "unpickling ran code"
    rows2, events2, runs2 = catalog_state(d)
    # nothing changed: no row marked corrupt, no "resumed" event, no resume recorded
    assert rows2 == rows and events2 == events
    assert all(runs2[k] == v for k, v in runs.items()) and not any(runs2[k] for k in runs2 if k not in runs)
    assert "resumed" not in [ev["event"] for ev in events2]


def test_a_checkpoint_whose_unpickling_runs_code_is_refused_by_every_resume(tmp_path):
    marker = str(tmp_path / "code-ran")
    model, opt, sched = make()
    d = str(tmp_path / "ck")
    e = commit_malicious(d, marker, model)

    def manager():
        with ct.CheckpointManager(d, model, opt, sched, signals=()) as mgr:
            mgr.resume()

    def auto():
        with ckptdb.Catalog(d) as cat:
            ct.auto_resume(cat, model, opt, sched)

    def latest():
        with ckptdb.Catalog(d) as cat:
            cat.load_latest()

    def latest_normalized():
        with ckptdb.Catalog(d) as cat:
            cat.load_latest(normalize=True)

    for call in (manager, auto, latest, latest_normalized):
        refuses(call, e.path, marker, d)
    with ckptdb.Catalog(d, readonly=True) as cat:
        assert cat.get(e.id).status == "complete" and cat.verify(e.id)


def test_load_sharded_refuses_it_too(tmp_path, world_of_one):
    from ckptdb import distributed as cd
    marker = str(tmp_path / "code-ran")
    model, opt, sched = make()
    d = str(tmp_path / "ck")
    with ckptdb.Catalog(d) as cat:
        writer = cd.ShardWriter(d, "evil.rank0-of-1.pt")
        torch.save({"format": ct.FORMAT, "epoch": 1, "step": 4, "x": RunsCode(marker)}, writer)
        e = cat.commit_shards([writer.finish()], kind="epoch", epoch=1, step=4)
        writer.free()
    [path] = [os.path.join(d, "evil.rank0-of-1.pt")]

    def sharded():
        with ckptdb.Catalog(d) as cat:
            cd.load_sharded(d, cat=cat)

    def manager():
        with ct.CheckpointManager(d, model, opt, sched, signals=(), sharded=True) as mgr:
            mgr.resume()

    refuses(sharded, path, marker, d)
    refuses(manager, path, marker, d)
    assert e.status == "complete"


def test_weights_only_false_is_an_explicit_opt_in_passed_through(tmp_path):
    """The control of the tests above: the file really runs code when it is
    fully unpickled, and weights_only=False reaches torch.load as given."""
    marker = str(tmp_path / "code-ran")
    model, opt, sched = make()
    d = str(tmp_path / "ck")
    e = commit_malicious(d, marker, model)
    with ckptdb.Catalog(d) as cat:
        st, got = cat.load_latest(weights_only=False)
    assert os.path.exists(marker) and got.id == e.id and st["extra"]["payload"] == 0  # os.system's status
    os.unlink(marker)
    with ct.CheckpointManager(d, model, opt, sched, signals=(), weights_only=False) as mgr:
        assert mgr.resume() == (1, 4)
    assert os.path.exists(marker)
    os.unlink(marker)
    with ckptdb.Catalog(d) as cat:
        assert ct.auto_resume(cat, model, weights_only=False) == (1, 4)
    assert os.path.exists(marker)


def import_in_child(tmp_path, prelude):
    code = prelude + (
        "\ntry:\n    import ckptdb.torch\nexcept ImportError as e:\n"
        "    import ckptdb.errors\n    assert isinstance(e, ckptdb.errors.UnsupportedTorch), type(e)\n"
        "    print('found=%s needed=%s' % (e.found, e.needed))\n    print(e)\n    raise SystemExit(3)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 3, (r.stdout, r.stderr)
    return r.stdout


def test_a_missing_or_old_torch_is_named_with_the_version_needed(tmp_path):
    fake = tmp_path / "fake" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("__version__ = '1.13.1'\n")
    out = import_in_child(tmp_path, "import sys; sys.path.insert(0, %r)" % str(tmp_path / "fake"))
    assert "found=1.13.1 needed=2.0" in out
    assert "needs PyTorch >= 2.0" in out and "found torch 1.13.1" in out
    out = import_in_child(tmp_path, "import sys; sys.modules['torch'] = None")
    assert "found=None needed=2.0" in out and "needs PyTorch >= 2.0" in out and "has no torch" in out
