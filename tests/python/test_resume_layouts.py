"""Resume reads every checkpoint layout a user has (ckptdb's own dict, a
hand-written training dict, any subset of it and its common aliases, a bare
model state_dict, a LibTorch checkpoint) through auto_resume,
CheckpointManager.resume and Catalog.load_latest alike, decided by the one
rule of ckptdb.torch.checkpoint_layout; strict=False reports the model's
missing and unexpected keys; a strict mismatch or an unknown layout raises
before anything is loaded and leaves the catalog as it was."""

import random

import pytest
import torch

import ckptdb
from ckptdb import torch as ct
from torch_support import make_training, same


def make(width=16, extra_layer=False):
    return make_training(8, width, 2, extra_layer)


def trained():
    model, opt, sched = make()
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(4, 8)).pow(2).mean().backward()
        opt.step()
    sched.step()
    return model, opt, sched


def libtorch_layout(model, opt, sched, epoch, step):
    """What the LibTorch binding writes (bindings/torch/ckptdb_torch.hpp):
    model tensors under their state_dict names, optimizer.state_dict()'s
    layout, the scheduler's step counts, rng {"torch", "cuda"}, the scaler's
    plain values ({} when disabled) and free-form extras."""
    return {"epoch": epoch, "step": step, "model": dict(model.state_dict()), "optimizer": opt.state_dict(),
            "scheduler": {"last_epoch": sched.last_epoch, "_step_count": sched._step_count,
                          "_last_lr": sched.get_last_lr()},
            "rng": {"torch": torch.get_rng_state(), "cuda": []}, "scaler": {}, "extra": {"loss": 0.25}}


# name, builder(model, opt, sched) -> object to torch.save, layout, what it restores
LAYOUTS = [
    ("ckptdb", lambda m, o, s: ct.build_state(3, 12, m, o, s), "ckptdb", {"model", "optimizer", "scheduler"}),
    ("hand-written", lambda m, o, s: {"model": m.state_dict(), "optimizer": o.state_dict(),
                                      "scheduler": s.state_dict(), "epoch": 3, "step": 12},
     "training", {"model", "optimizer", "scheduler"}),
    ("hand-written subset", lambda m, o, s: {"model": m.state_dict(), "epoch": 3}, "training", {"model"}),
    ("aliases", lambda m, o, s: {"model_state_dict": m.state_dict(), "optimizer_state_dict": o.state_dict(),
                                 "epoch": 3, "global_step": 12}, "training", {"model", "optimizer"}),
    ("bare state_dict", lambda m, o, s: m.state_dict(), "state_dict", {"model"}),
    ("libtorch", lambda m, o, s: libtorch_layout(m, o, s, 3, 12), "training", {"model", "optimizer", "scheduler"}),
]


def save_raw(d, obj, epoch=3, step=12, kind="epoch"):
    with ckptdb.Catalog(d) as cat:
        with cat.save(kind=kind, epoch=epoch, step=step) as f:
            torch.save(obj, f)
        return f.entry


def resume_auto(d, m, o, s, **kw):
    with ckptdb.Catalog(d) as cat:
        return ct.auto_resume(cat, m, o, s, **kw)


def resume_manager(d, m, o, s, **kw):
    with ct.CheckpointManager(d, m, o, s, signals=()) as mgr:
        r = mgr.resume(**kw)
        assert mgr.resumed_from is not None and mgr.resumed_from.id == r.checkpoint.id
        return r


def resume_load_latest(d, m, o, s, **kw):
    """load_latest(normalize=True) gives every layout as one dict; apply_state
    loads it (the same rule, the same code)."""
    with ckptdb.Catalog(d) as cat:
        st, e = cat.load_latest(normalize=True)
        return ct.apply_state(st, m, o, s, **kw)


RESUMES = [resume_auto, resume_manager, resume_load_latest]


@pytest.mark.parametrize("name,build,layout,restores", LAYOUTS, ids=[x[0] for x in LAYOUTS])
@pytest.mark.parametrize("resume", RESUMES, ids=["auto_resume", "manager", "load_latest"])
def test_every_layout_resumes_through_every_entry_point(tmp_path, name, build, layout, restores, resume):
    model, opt, sched = trained()
    obj = build(model, opt, sched)
    assert ct.checkpoint_layout(obj) == layout
    e = save_raw(tmp_path, obj)
    m2, o2, s2 = make()
    fresh = {"optimizer": o2.state_dict(), "scheduler": s2.state_dict()}
    r = resume(str(tmp_path), m2, o2, s2)
    # epoch and step from the file, or from the catalog row when it has none
    assert r == (3, 12) and r.layout == layout and (r.missing_keys, r.unexpected_keys) == ([], [])
    assert same(m2.state_dict(), model.state_dict())
    if "optimizer" in restores:
        assert same(o2.state_dict(), opt.state_dict())
    else:
        assert same(o2.state_dict(), fresh["optimizer"])  # left as it was
    if "scheduler" in restores:
        assert s2.last_epoch == sched.last_epoch and s2.get_last_lr() == sched.get_last_lr()
    else:
        assert s2.state_dict() == fresh["scheduler"]
    with ckptdb.Catalog(tmp_path, readonly=True) as cat:
        assert cat.runs()[-1]["resumed_from"] == e.id


def test_auto_resume_of_a_bare_state_dict_regression(tmp_path):
    """auto_resume took dicts for bare state_dicts and the other way round
    ("Unexpected key(s)" on every restart)."""
    model, opt, sched = trained()
    save_raw(tmp_path / "bare", model.state_dict(), epoch=2, step=7)
    save_raw(tmp_path / "dict", {"epoch": 2, "step": 7, "model": model.state_dict(), "optimizer": opt.state_dict(),
                                 "scheduler": sched.state_dict()}, epoch=0, step=0)
    for d in ("bare", "dict"):
        m2, o2, s2 = make()
        assert resume_auto(tmp_path / d, m2, o2, s2) == (2, 7)
        assert same(m2.state_dict(), model.state_dict())


def test_a_ddp_prefix_is_taken_off_a_hand_written_state_dict(tmp_path):
    model, _, _ = trained()
    save_raw(tmp_path, {"module." + k: v for k, v in model.state_dict().items()})
    m2, o2, s2 = make()
    assert resume_auto(tmp_path, m2, o2, s2) == (3, 12)
    assert same(m2.state_dict(), model.state_dict())


def test_the_layout_rule(tmp_path):
    t = torch.zeros(1)
    assert ct.checkpoint_layout({"format": "ckptdb.torch/1", "epoch": 1}) == "ckptdb"
    assert ct.checkpoint_layout({"weight": t, "bias": t}) == "state_dict"
    # a tensor under a key named like a role is still a bare state_dict: every value is a tensor
    assert ct.checkpoint_layout({"step": t, "weight": t}) == "state_dict"
    assert ct.checkpoint_layout({"epoch": 4, "step": 10}) == "training"
    assert ct.checkpoint_layout({"optim": {"state": {}, "param_groups": []}}) == "training"
    bad = [([t], "holds a list"), ({}, r"keys \(none\)"), ({"weights": [t], "n": 1}, "'n', 'weights'"),
           ({"format": "ckptdb.torch/9"}, "format 'ckptdb.torch/9'"),
           ({"model": {}, "model_state_dict": {}}, "names its model twice"),
           ({"model": t, "epoch": 1}, "keys 'epoch', 'model'")]
    for obj, why in bad:
        with pytest.raises(ckptdb.UnknownLayout, match=why):
            ct.checkpoint_layout(obj, "x.pt")


def catalog_rows(d):
    with ckptdb.Catalog(d, readonly=True) as cat:
        return ([(e.id, e.status) for e in cat.entries()],
                [ev["event"] for ev in cat.events() if ev["event"] != "run_ended"],
                [r["resumed_from"] for r in cat.runs()])


def test_an_unknown_layout_changes_nothing(tmp_path):
    save_raw(tmp_path, [torch.zeros(2)])
    before = catalog_rows(tmp_path)
    m, o, s = make()
    want = {k: v.clone() for k, v in m.state_dict().items()}
    for resume in RESUMES:
        with pytest.raises(ckptdb.UnknownLayout, match=str(tmp_path)):
            resume(str(tmp_path), m, o, s)
    after = catalog_rows(tmp_path)
    assert after[:2] == before[:2] and not any(after[2])
    assert same(m.state_dict(), want)


@pytest.mark.parametrize("resume", RESUMES, ids=["auto_resume", "manager", "load_latest"])
def test_strict_false_returns_the_missing_and_unexpected_keys(tmp_path, resume):
    model, opt, sched = trained()
    sd = dict(model.state_dict())
    sd["head.weight"] = torch.ones(2)  # a key the model lacks
    save_raw(tmp_path, {"model": sd, "epoch": 3, "step": 12})
    m2, o2, s2 = make(extra_layer=True)  # parameters 3.weight/3.bias the file lacks
    r = resume(str(tmp_path), m2, None, None, strict=False)
    assert r == (3, 12)
    assert sorted(r.missing_keys) == ["3.bias", "3.weight"] and r.unexpected_keys == ["head.weight"]
    assert same(m2[0].weight, model[0].weight) and same(m2[2].bias, model[2].bias)


@pytest.mark.parametrize("resume", RESUMES, ids=["auto_resume", "manager", "load_latest"])
def test_a_strict_mismatch_names_the_keys_loads_nothing_and_changes_nothing(tmp_path, resume):
    model, opt, sched = trained()
    save_raw(tmp_path, ct.build_state(3, 12, model, opt, sched))
    before = catalog_rows(tmp_path)
    m2, o2, s2 = make(extra_layer=True)
    want = ({k: v.clone() for k, v in m2.state_dict().items()}, o2.state_dict(), s2.state_dict())
    torch.manual_seed(5)
    rng = torch.get_rng_state()
    with pytest.raises(ckptdb.StateMismatch) as ei:
        resume(str(tmp_path), m2, o2, s2)
    assert "missing keys ['3.weight', '3.bias']" in str(ei.value) and "strict=False" in str(ei.value)
    assert str(tmp_path) in str(ei.value) or resume is resume_load_latest
    assert ei.value.missing_keys == ["3.weight", "3.bias"] and isinstance(ei.value, RuntimeError)
    assert same(m2.state_dict(), want[0]) and same(o2.state_dict(), want[1]) and s2.state_dict() == want[2]
    assert torch.equal(torch.get_rng_state(), rng)  # the RNG was not restored either
    after = catalog_rows(tmp_path)
    if resume is not resume_load_latest:  # load_latest alone records the load before apply_state runs
        assert after[:2] == before[:2] and not any(after[2])


def test_a_tensor_of_another_shape_is_refused_even_when_not_strict(tmp_path):
    model, _, _ = trained()
    save_raw(tmp_path, model.state_dict())
    m2, o2, s2 = make(width=32)
    want = {k: v.clone() for k, v in m2.state_dict().items()}
    with pytest.raises(ckptdb.StateMismatch, match=r"size mismatch for 0\.weight: \(16, 8\) in the checkpoint, "
                                                   r"\(32, 8\) in the model"):
        resume_auto(tmp_path, m2, None, None, strict=False)
    assert same(m2.state_dict(), want)


def test_an_optimizer_of_other_parameter_groups_is_refused_before_the_model_loads(tmp_path):
    model, opt, sched = trained()
    save_raw(tmp_path, ct.build_state(3, 12, model, opt, sched))
    m2, _, _ = make()
    o2 = torch.optim.SGD([{"params": [m2[0].weight]}, {"params": [m2[0].bias, m2[2].weight, m2[2].bias]}], lr=0.1)
    want = {k: v.clone() for k, v in m2.state_dict().items()}
    with pytest.raises(ckptdb.StateMismatch, match=r"parameter groups of \[4\] parameters in the checkpoint, "
                                                   r"\[1, 3\] in the optimizer"):
        resume_auto(tmp_path, m2, o2, None)
    assert same(m2.state_dict(), want)


def test_a_libtorch_checkpoint_restores_the_torch_rng_and_skips_its_disabled_scaler(tmp_path):
    model, opt, sched = trained()
    torch.manual_seed(42)
    save_raw(tmp_path, libtorch_layout(model, opt, sched, 3, 12))
    want = torch.rand(3)
    torch.manual_seed(7)
    random.seed(1)

    class Scaler:
        def __init__(self):
            self.st = {"scale": 8.0}

        def state_dict(self):
            return self.st

        def load_state_dict(self, st):  # GradScaler refuses the {} of a disabled scaler
            raise AssertionError("an empty scaler state must not be loaded")

    m2, o2, s2 = make()
    sc = Scaler()
    with ckptdb.Catalog(tmp_path) as cat:
        r = ct.auto_resume(cat, m2, o2, s2, sc)
    assert r == (3, 12) and r.skipped == ["scaler"] and sc.st == {"scale": 8.0}
    assert torch.equal(torch.rand(3), want)
