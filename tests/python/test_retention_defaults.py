"""CheckpointManager's default policy is the library's, asked for, never
repeated: its plan over a directory equals the plan of ckptdb_prune without
a policy (the library's defaults), and keep_epoch / keep_time change only
their own kind."""

import torch

import ckptdb
from ckptdb import torch as ct


def fill(d):
    """Checkpoints of every default kind and one the defaults do not name."""
    with ckptdb.Catalog(d) as cat:
        for e in range(1, 9):
            with cat.save(kind="epoch", epoch=e, step=e) as f:
                f.write(b"e")
        for kind in ("time", "preempt", "manual", "step"):
            for i in range(6):
                with cat.save(kind=kind, step=100 + i) as f:
                    f.write(b"x")


def library_plan(d):
    with ckptdb.Catalog(d) as cat:  # no policy on the handle: ckptdb_prune uses the library's defaults
        return [(p.name, p.rule) for p in cat.prune(dry_run=True)]


def manager_plan(d, **kw):
    model = torch.nn.Linear(2, 2)
    with ct.CheckpointManager(d, model, signals=(), **kw) as mgr:
        return [(p.name, p.rule) for p in mgr.cat.prune(dry_run=True)]  # the manager's policy


def test_the_manager_keeps_what_the_library_keeps(tmp_path):
    fill(tmp_path)
    want = library_plan(tmp_path)
    assert want  # the defaults let some go, so a drift would show
    assert manager_plan(tmp_path) == want


def test_keep_epoch_and_keep_time_change_only_their_kind(tmp_path):
    fill(tmp_path)
    defaults = library_plan(tmp_path)
    got = manager_plan(tmp_path, keep_epoch=2, keep_time=-1)
    epochs = [n for n, _ in got if n.startswith("epoch_")]
    assert epochs == ["epoch_%03d.pt" % e for e in range(1, 7)]  # 8 epoch checkpoints, keep 2
    assert all(r == "keep_last:epoch=2" for n, r in got if n.startswith("epoch_"))
    assert not [n for n, _ in got if n.startswith("time_")]  # -1: all kept
    # Every other kind is judged by the library's defaults.
    others = [x for x in got if not x[0].startswith(("epoch_", "time_"))]
    assert others == [x for x in defaults if not x[0].startswith(("epoch_", "time_"))]
    assert others  # preempt and manual checkpoints go by the defaults
