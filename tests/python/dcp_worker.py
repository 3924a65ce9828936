"""A rank of test_dcp.py, started by torch.distributed.run (gloo, CPU).

A tiny MLP sharded with FSDP2 (fully_shard) over all ranks, trained with
Adam.  Modes:
  --mode save --steps 1,2   after each listed step, dcp.save of the model
                            and optimizer state (DTensors, get_state_dict)
                            and a plain value, through ckptdb.dcp.Writer;
                            rank 0 also keeps the gathered full state of
                            that step in REF/full_S.pt (outside the
                            checkpoint directory), for the test to compare.
  --mode mgr-save           CheckpointManager(sharded=True) saves step 2
                            (REF/full_2.pt as above); then ckptdb.distributed
                            .save_sharded writes a newer flat per-rank
                            checkpoint (step 3) into DIR and one into DIR2
  --mode mgr-load           CheckpointManager(sharded=True).resume() of DIR2
                            (every rank prints "rank R refused: MESSAGE"),
                            then of DIR ("rank R loaded S ID", "match S");
                            the "ckptdb" logger's warnings are printed as
                            "warn: MESSAGE"
  --mode async-process      (one process, no torchrun) dcp.async_save with
                            the process executor: a Writer of an open
                            Catalog is refused ("refused MESSAGE"); one of
                            the directory saves ("process saved NAME")
  --mode load               a fresh model and optimizer on this world size,
                            dcp.load through ckptdb.dcp.Reader (the newest
                            checkpoint that verifies), set_state_dict; rank
                            0 prints "match S True|False": the gathered
                            full state equals REF/full_S.pt exactly.
Every rank prints "rank R saved S" / "rank R loaded S ID".
Test hook: CKPTDB_TEST_DCP_DIE=R:S makes rank R SIGKILL itself inside
write_data of the save of step S, after the first part of its file was
written.
"""

import argparse
import os
import signal
import sys

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor

import ckptdb.distributed
from ckptdb import dcp as ckdcp
from torch_support import same

CURRENT = {"step": None, "writes": 0}


def die_in_save(step):
    orig = ckptdb.distributed.DirFileWriter.write

    def write(self, data):
        r = orig(self, data)
        if CURRENT["step"] == step:
            CURRENT["writes"] += 1
            if CURRENT["writes"] == 2:  # the file is partly written
                os.kill(os.getpid(), signal.SIGKILL)
        return r

    ckptdb.distributed.DirFileWriter.write = write


def say(line):
    os.write(1, (line + "\n").encode())  # one write: the ranks share the pipe


def build(world):
    mesh = init_device_mesh("cpu", (world,))
    torch.manual_seed(0)
    # Odd sizes: the shards are uneven (3,3,3,1 rows over 4 ranks; 2 over 2).
    model = torch.nn.Sequential(torch.nn.Linear(6, 10), torch.nn.ReLU(), torch.nn.Linear(10, 3))
    for layer in model:
        if isinstance(layer, torch.nn.Linear):
            fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    return model, opt


def train_step(model, opt, step):
    g = torch.Generator().manual_seed(1000 + step)
    x = torch.randn(8, 6, generator=g)
    opt.zero_grad()
    model(x).square().sum().backward()
    opt.step()


def full(x):
    """The state with every DTensor gathered to a full tensor (on every rank)."""
    if isinstance(x, DTensor):
        return x.full_tensor()
    if isinstance(x, dict):
        return {k: full(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(full(v) for v in x)
    if isinstance(x, torch.Tensor):
        return x.clone()
    return x


def state_of(model, opt, step):
    msd, osd = get_state_dict(model, opt)
    return {"model": msd, "optim": osd, "extra": {"step": step}}


def async_process(a):
    from torch.distributed.checkpoint.state_dict_saver import AsyncCheckpointerType
    process = AsyncCheckpointerType.PROCESS
    with ckptdb.Catalog(a.dir) as cat:
        try:
            dcp.async_save({"w": torch.zeros(2)}, storage_writer=ckdcp.Writer(cat, kind="epoch", epoch=9),
                           async_checkpointer_type=process).result()
            say("refused nothing")
        except TypeError as e:
            say("refused %s" % e)
    w = ckdcp.Writer(a.dir, kind="epoch", epoch=1, step=10)
    md = dcp.async_save({"w": torch.arange(6.0)}, storage_writer=w, async_checkpointer_type=process).result()
    say("process saved %s" % md.storage_meta.checkpoint_id)


def manager(a, model, opt, rank):
    import logging

    import ckptdb.torch as ct

    class Say(logging.Handler):
        def emit(self, record):
            say("warn: " + record.getMessage())

    logging.getLogger("ckptdb").addHandler(Say(logging.WARNING))
    kw = dict(sharded=True, signals=(), every_epochs=0, every_seconds=0)
    if a.mode == "mgr-save":
        for s in (1, 2):
            train_step(model, opt, s)
        mgr = ct.CheckpointManager(a.dir, model, opt, **kw)
        if rank == 0:
            os.makedirs(a.ref, exist_ok=True)
        f = full(state_of(model, opt, 2))
        if rank == 0:
            torch.save(f, os.path.join(a.ref, "full_2.pt"))
        e = mgr.save("step", 0, 2)
        say("rank %d saved 2 %s %s" % (rank, e.name, e.layout == "dir" and mgr.last_saved == e))
        flat = ct.build_state(0, 3, extra={"rank": rank}, rng=False)
        ckptdb.distributed.save_sharded(a.dir, flat, "step", 0, 3, cat=mgr.cat)
        mgr.close()
        cat2 = ckptdb.Catalog(a.dir2) if rank == 0 else None
        ckptdb.distributed.save_sharded(a.dir2, flat, "step", 0, 3, cat=cat2)
        if cat2 is not None:
            cat2.close()
        return
    mgr2 = ct.CheckpointManager(a.dir2, model, opt, **kw)
    try:
        mgr2.resume()
        say("rank %d resumed from %s" % (rank, a.dir2))
    except ckptdb.Error as e:
        say("rank %d refused: %s" % (rank, str(e).replace("\n", " ")))
    mgr2.close()
    mgr = ct.CheckpointManager(a.dir, model, opt, **kw)
    ep, sp = mgr.resume()
    e = mgr.resumed_from
    say("rank %d loaded %d %d" % (rank, sp, e.id))
    got = full(state_of(model, opt, sp))
    if rank == 0:
        want = torch.load(os.path.join(a.ref, "full_%d.pt" % sp), weights_only=False)
        say("match %d %s" % (sp, same(got, want)))
    mgr.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--ref", required=True)
    ap.add_argument("--dir2")
    ap.add_argument("--mode", choices=("save", "load", "mgr-save", "mgr-load", "async-process"), required=True)
    ap.add_argument("--steps", default="")
    a = ap.parse_args()
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    die = os.environ.get("CKPTDB_TEST_DCP_DIE")
    if die:
        r, s = (int(v) for v in die.split(":"))
        if r == rank:
            die_in_save(s)
    if a.mode == "async-process":
        async_process(a)
        leave()
    model, opt = build(world)
    if a.mode.startswith("mgr-"):
        manager(a, model, opt, rank)
    elif a.mode == "save":
        steps = [int(v) for v in a.steps.split(",")]
        for s in range(1, max(steps) + 1):
            train_step(model, opt, s)
            if s not in steps:
                continue
            st = state_of(model, opt, s)
            f = full(st)
            if rank == 0:
                os.makedirs(a.ref, exist_ok=True)
                torch.save(f, os.path.join(a.ref, "full_%d.pt" % s))
            CURRENT["step"] = s
            dcp.save(st, storage_writer=ckdcp.Writer(a.dir, kind="step", epoch=0, step=s))
            CURRENT["step"] = None
            say("rank %d saved %d" % (rank, s))
    else:
        st = state_of(model, opt, -1)
        reader = ckdcp.Reader(a.dir)
        dcp.load(st, storage_reader=reader)
        set_state_dict(model, opt, model_state_dict=st["model"], optim_state_dict=st["optim"])
        e = reader.checkpoint
        say("rank %d loaded %d %d" % (rank, e.step, e.id))
        got = full(state_of(model, opt, st["extra"]["step"]))
        if rank == 0:
            want = torch.load(os.path.join(a.ref, "full_%d.pt" % e.step), weights_only=False)
            say("match %d %s" % (e.step, same(got, want) and st["extra"]["step"] == e.step))
    leave()


def leave():
    """Every rank done (the barrier), the process group destroyed, then exit
    without the interpreter's finalization: there, a gloo worker thread still
    releasing a tensor that holds a Python object can abort the process
    ("terminate called without an active exception", SIGABRT) after its work
    was done and reported, which failed a sound test now and then."""
    dist.barrier()
    dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
