#!/usr/bin/python3
"""train.py - a PyTorch training loop that checkpoints through ckptdb.

The checkpoint workflow is five lines (marked "ckptdb" below): build a
CheckpointManager, resume, ask it after every step (telling it which step
ends an epoch) and every epoch, close.
It brings the production defaults: save every 5 epochs or every 15
minutes, whichever first; keep 5 "epoch" and 3 "time" checkpoints (the
catalog rotates them); SIGTERM, SIGINT and SIGUSR1 only set a flag, and the
next step saves a "preempt" checkpoint and the program exits 0; on start it
resumes from the newest checkpoint whose bytes verify, with no flag to pass.
A restart after a kill at any moment continues exactly where the last
checkpoint left off: the final state is bit-identical to a run that was
never interrupted (model, optimizer, scheduler, loss scaler, every RNG).

    /usr/bin/python3 examples/python/train.py --dir ckpts
    torchrun --nproc_per_node 2 examples/python/train.py --dir ckpts   # DDP, gloo on CPU
    torchrun --nproc_per_node 4 examples/python/train.py --dir ckpts --sharded
                 # every rank owns its part of the state; one dcp.save writes every
                 # rank's file of one directory checkpoint, and rank 0 commits it

Output (stdout): "resume: ..." once, "save: ..." per checkpoint, then
"stopped: ..." (preempted, exit 0) or "done: epoch=E step=S digest=HEX"
where HEX is a SHA-256 of the whole training state.
"""

import argparse
import hashlib
import os
import random
import sys
import time

import numpy
import torch

from ckptdb.torch import CheckpointManager, capture_rng


class LossScaler:
    """A GradScaler-style dynamic loss scale (halve on overflow, grow every
    N good steps), with state_dict / load_state_dict like torch's."""

    def __init__(self, init_scale=2.0 ** 12, growth_interval=7):
        self.scale, self.growth_interval, self.good_steps = init_scale, growth_interval, 0

    def update(self, overflow):
        if overflow:
            self.scale, self.good_steps = self.scale / 2, 0
        else:
            self.good_steps += 1
            if self.good_steps % self.growth_interval == 0:
                self.scale *= 2

    def state_dict(self):
        return {"scale": self.scale, "growth_interval": self.growth_interval, "good_steps": self.good_steps}

    def load_state_dict(self, st):
        self.scale, self.growth_interval, self.good_steps = st["scale"], st["growth_interval"], st["good_steps"]


def batch_for(step, rank, width):
    """The data of a global step: a pure function of (step, rank), so a
    resumed run sees the same batches."""
    g = torch.Generator().manual_seed(1000003 * step + rank)
    x = torch.randn(32, width, generator=g)
    y = x[:, :8].sum(dim=1, keepdim=True).tanh()
    return x, y


def digest(model, optimizer, scheduler, scaler):
    h = hashlib.sha256()

    def feed(o):
        if isinstance(o, torch.Tensor):
            h.update(o.detach().cpu().contiguous().numpy().tobytes())
        elif isinstance(o, dict):
            for k in sorted(o, key=str):
                h.update(str(k).encode())
                feed(o[k])
        elif isinstance(o, (list, tuple)):
            for v in o:
                feed(v)
        elif isinstance(o, numpy.ndarray):
            h.update(o.tobytes())
        else:
            h.update(repr(o).encode())

    feed(getattr(model, "module", model).state_dict())
    feed(optimizer.state_dict())
    feed(scheduler.state_dict())
    feed(scaler.state_dict())
    feed(capture_rng())
    return h.hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", default="ckpts", help="checkpoint directory (default: ckpts)")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--steps-per-epoch", type=int, default=50)
    ap.add_argument("--width", type=int, default=256, help="hidden width of the model")
    ap.add_argument("--save-every-epochs", type=int, default=5)
    ap.add_argument("--save-every-steps", type=int, default=0)
    ap.add_argument("--save-every-seconds", type=float, default=900.0)
    ap.add_argument("--step-sleep", type=float, default=0.0, help="seconds to sleep per step (tests)")
    ap.add_argument("--simulated-step-seconds", type=float, default=0.0, metavar="X",
                    help="each step advances the save trigger's clock by X seconds instead of the wall clock "
                         "passing (the clock starts at 0 with the process; tests compare schedules); 0: off")
    ap.add_argument("--async-save", action="store_true", help="write checkpoints on a background thread")
    ap.add_argument("--sharded", action="store_true",
                    help="under torchrun: each rank trains and saves its own part of the state")
    args = ap.parse_args()

    dist = None
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        import datetime
        import torch.distributed as dist
        dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
    rank = dist.get_rank() if dist else 0
    torch.manual_seed(1234 + rank)
    random.seed(99 + rank)
    numpy.random.seed(7 + rank)
    torch.set_num_threads(1)

    w = args.width
    model = torch.nn.Sequential(torch.nn.Linear(w, w), torch.nn.ReLU(), torch.nn.Dropout(0.1),
                                torch.nn.Linear(w, w), torch.nn.ReLU(), torch.nn.Linear(w, 1))
    if dist and not args.sharded:
        for p in model.parameters():  # every rank starts from rank 0's weights
            dist.broadcast(p.data, 0)
        model = torch.nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.7)
    scaler = LossScaler()

    sim_clock = None
    if args.simulated_step_seconds > 0:
        sim_now = [0.0]
        sim_clock = lambda: sim_now[0]  # noqa: E731
    mgr = CheckpointManager(args.dir, model, optimizer, scheduler, scaler,  # ckptdb
                            every_epochs=args.save_every_epochs, every_steps=args.save_every_steps,
                            every_seconds=args.save_every_seconds, async_save=args.async_save,
                            sharded=args.sharded, clock=sim_clock)
    epoch, step = mgr.resume()  # ckptdb: (0, 0) on a fresh start
    if rank == 0:
        e = mgr.resumed_from
        print("resume: none, starting fresh" if e is None else
              "resume: id=%d name=%s epoch=%d step=%d" % (e.id, e.name, epoch, step), flush=True)

    spe = args.steps_per_epoch
    loss = torch.tensor(0.0)
    saved = mgr.last_saved
    while epoch < args.epochs:
        for _ in range(step - epoch * spe, spe):
            step += 1
            x, y = batch_for(step, rank, w)
            x = x + 0.01 * torch.from_numpy(numpy.random.standard_normal(x.shape).astype("float32"))
            if random.random() < 0.5:
                x = x.flip(0)
                y = y.flip(0)
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(model(x), y)
            (loss * scaler.scale).backward()
            for p in model.parameters():
                p.grad.div_(scaler.scale)
            scaler.update(overflow=(step % 13 == 0))
            optimizer.step()
            if args.step_sleep:
                time.sleep(args.step_sleep)
            if sim_clock is not None:
                sim_now[0] += args.simulated_step_seconds
            # ckptdb: saved on preemption; the epoch's last step is decided once, by epoch_end below
            if mgr.step(epoch, step, metrics={"loss": loss.item()}, end_of_epoch=(step == (epoch + 1) * spe)):
                return stopped(mgr, rank, epoch, step)
            saved = report(mgr, rank, saved)
        scheduler.step()
        epoch += 1
        if mgr.epoch_end(epoch, step, metrics={"loss": loss.item()}):  # ckptdb
            return stopped(mgr, rank, epoch, step)
        saved = report(mgr, rank, saved)
    mgr.close()  # ckptdb: waits for an asynchronous save in flight
    report(mgr, rank, saved)
    d = digest(model, optimizer, scheduler, scaler)
    if dist and args.sharded:  # the digest of every rank's part, in rank order
        parts = [None] * dist.get_world_size()
        dist.all_gather_object(parts, d)
        d = hashlib.sha256("".join(parts).encode()).hexdigest()
    if rank == 0:
        print("done: epoch=%d step=%d digest=%s" % (epoch, step, d), flush=True)
    return 0


def report(mgr, rank, prev):
    e = mgr.last_saved
    if rank == 0 and e is not None and e is not prev:
        print("save: id=%d name=%s kind=%s epoch=%d step=%d bytes=%d" % (e.id, e.name, e.kind, e.epoch, e.step,
                                                                          e.size), flush=True)
    return e


def stopped(mgr, rank, epoch, step):
    mgr.close()
    report(mgr, rank, None)
    if rank == 0:
        print("stopped: signal=%d epoch=%d step=%d" % (mgr.preempted, epoch, step), flush=True)
    return 0


def finish_distributed(code):
    # Every rank is done with its saves (the manager is closed): let every
    # collective in flight finish, then leave the process group.
    import torch.distributed as dist
    if not (dist.is_available() and dist.is_initialized()):
        return code
    dist.barrier()
    dist.destroy_process_group()
    # gloo's worker threads can still be dropping the last reference to a
    # tensor made in Python (the objects of all_gather_object) after the
    # collective returned. If the interpreter is shutting down by then, the
    # thread's attempt to take the GIL ends it inside a C++ destructor and
    # the whole process aborts ("terminate called without an active
    # exception"), turning a finished run into a failed one. Nothing is left
    # to clean up, so leave without the interpreter's shutdown.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(finish_distributed(main()))
