"""PyTorch helpers: auto-resume, a CheckpointManager with the production
defaults, RNG state, asynchronous saves, and torch.distributed (replicated
and sharded) saves.

The bytes on disk are exactly what torch.save wrote, so every checkpoint
loads with plain torch.load without ckptdb installed.  A checkpoint made by
these helpers is a dict:

    {"format": "ckptdb.torch/1", "epoch": E, "step": S, "model": ..., "optimizer": ...,
     "scheduler": ..., "scaler": ..., "rng": {...}, "extra": ...}

epoch counts completed epochs and step is the global step of the last
completed step; a resumed loop continues with step + 1.
"""

import os
import random
import signal
import threading
import time

import torch

from .catalog import Catalog, Retention
from .errors import Error
from .signals import Trigger, clear_preempt, install_signals, preempt_requested

__all__ = ["auto_resume", "CheckpointManager", "AsyncSaver", "capture_rng", "restore_rng", "snapshot",
           "unwrap", "build_state", "apply_state"]

FORMAT = "ckptdb.torch/1"


# ---------------------------------------------------------------------------
# State
# ---------------------------------------------------------------------------

def unwrap(model):
    """The module inside DistributedDataParallel / DataParallel wrappers."""
    return getattr(model, "module", model) if isinstance(
        model, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)) else model


def capture_rng():
    """Every RNG a training loop draws from: torch (CPU and CUDA), numpy when
    present, and Python's random."""
    st = {"torch": torch.get_rng_state(), "random": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        st["cuda"] = torch.cuda.get_rng_state_all()
    try:
        import numpy
        st["numpy"] = numpy.random.get_state()
    except ImportError:
        pass
    return st


def restore_rng(st):
    if not st:
        return
    if "torch" in st:
        torch.set_rng_state(st["torch"].cpu() if hasattr(st["torch"], "cpu") else st["torch"])
    if "random" in st:
        random.setstate(st["random"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])
    if "numpy" in st:
        try:
            import numpy
            numpy.random.set_state(st["numpy"])
        except ImportError:
            pass


def build_state(epoch, step, model=None, optimizer=None, scheduler=None, scaler=None, extra=None, rng=True):
    st = {"format": FORMAT, "epoch": int(epoch), "step": int(step)}
    if model is not None:
        st["model"] = unwrap(model).state_dict()
    if optimizer is not None:
        st["optimizer"] = optimizer.state_dict()
    if scheduler is not None:
        st["scheduler"] = scheduler.state_dict()
    if scaler is not None:
        st["scaler"] = scaler.state_dict()
    if extra is not None:
        st["extra"] = extra
    if rng:
        st["rng"] = capture_rng()
    return st


def apply_state(st, model=None, optimizer=None, scheduler=None, scaler=None, rng=True):
    if model is not None and "model" in st:
        unwrap(model).load_state_dict(st["model"])
    if optimizer is not None and "optimizer" in st:
        optimizer.load_state_dict(st["optimizer"])
    if scheduler is not None and "scheduler" in st:
        scheduler.load_state_dict(st["scheduler"])
    if scaler is not None and "scaler" in st:
        scaler.load_state_dict(st["scaler"])
    if rng:
        restore_rng(st.get("rng"))
    return int(st.get("epoch", 0)), int(st.get("step", 0))


def snapshot(obj):
    """A deep copy of a state with every tensor copied to CPU memory, so the
    training loop may go on changing the originals while it is written."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach()
        if t.device.type == "cpu":
            return t.clone()
        out = torch.empty(t.shape, dtype=t.dtype, device="cpu", pin_memory=torch.cuda.is_available())
        out.copy_(t, non_blocking=True)
        return out
    if isinstance(obj, dict):
        return type(obj)((k, snapshot(v)) for k, v in obj.items()) if type(obj) is not dict else {
            k: snapshot(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [snapshot(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(snapshot(v) for v in obj)
    return obj


def _sync_devices(obj):
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


# ---------------------------------------------------------------------------
# Resume
# ---------------------------------------------------------------------------

def auto_resume(cat, model, optimizer=None, scheduler=None, scaler=None, map_location="cpu", kind=None,
                rng=True):
    """Load the newest checkpoint whose bytes verify (a corrupt one is
    marked so and the next newest is tried) into the given objects and
    record the resume.  Returns (epoch, step) of the checkpoint, or (0, 0)
    when there is none: a fresh start needs no flag."""
    got = cat.load_latest(map_location=map_location, kind=kind)
    if got is None:
        return 0, 0
    st, e = got
    if isinstance(st, dict) and st.get("format") == FORMAT:
        return apply_state(st, model, optimizer, scheduler, scaler, rng=rng)
    # A bare state_dict saved by hand.
    unwrap(model).load_state_dict(st)
    return e.epoch, e.step


# ---------------------------------------------------------------------------
# Asynchronous saves
# ---------------------------------------------------------------------------

class AsyncSaver:
    """One asynchronous save in flight at a time.  save() copies the state
    to CPU on the caller's thread, then torch.save and the commit run on a
    background thread (the library's calls release the GIL).  An error of a
    background save is raised by the next save() or wait()."""

    def __init__(self, cat):
        self.cat = cat
        self._thread = None
        self._error = None
        self._last = None
        self.copy_seconds = 0.0

    def save(self, state, kind, epoch, step, metrics=None, name=None, copied=False):
        self.wait()
        t0 = time.perf_counter()
        snap = state if copied else snapshot(state)
        _sync_devices(snap)
        self.copy_seconds = time.perf_counter() - t0

        def work():
            try:
                with self.cat.save(kind=kind, epoch=epoch, step=step, metrics=metrics, name=name) as f:
                    torch.save(snap, f)
                self._last = f.entry
            except BaseException as e:  # surfaced on the caller's thread
                self._error = e

        self._thread = threading.Thread(target=work, name="ckptdb-async-save", daemon=False)
        self._thread.start()

    def wait(self):
        """Wait for the save in flight; returns its Checkpoint (or None) and
        raises the error of a failed one."""
        t = self._thread
        if t is not None:
            t.join()
            self._thread = None
        err, self._error = self._error, None
        if err is not None:
            raise err
        return self._last

    @property
    def in_flight(self):
        return self._thread is not None and self._thread.is_alive()


# ---------------------------------------------------------------------------
# torch.distributed
# ---------------------------------------------------------------------------

def _dist():
    import torch.distributed as dist
    return dist if dist.is_available() and dist.is_initialized() else None


def _broadcast(obj, dist, src=0):
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


# Kinds agreed by all ranks: the highest code wins (preempt > epoch > step > time).
_KIND_CODES = {None: 0, "time": 1, "step": 2, "epoch": 3, "preempt": 4}
_CODE_KINDS = {v: k for k, v in _KIND_CODES.items()}


# ---------------------------------------------------------------------------
# The manager
# ---------------------------------------------------------------------------

class CheckpointManager:
    """The whole checkpoint workflow of a training script in a few lines:

        mgr = CheckpointManager("ckpts", model, optimizer, scheduler, scaler)
        epoch, step = mgr.resume()                 # (0, 0) on a fresh start
        ...  after every step:   if mgr.step(epoch, step): break
        ...  after every epoch:  if mgr.epoch_end(epoch, step, metrics={...}): break
        mgr.close()

    Defaults are the production ones: save every 5 epochs or every 15
    minutes, whichever comes first; keep 5 "epoch" and 3 "time"
    checkpoints (a "preempt" one until a newer one exists); SIGTERM and
    SIGINT (and SIGUSR1) only set a flag, and the next step() or epoch_end()
    saves a "preempt" checkpoint and returns True so the loop can exit 0.

    Under torch.distributed (replicated training, DDP) rank 0 alone opens
    the catalog and saves; every rank resumes from the checkpoint rank 0
    picked; the decision to save (and to stop) is agreed by all ranks.
    With sharded=True every rank saves its own file of one checkpoint
    (ckptdb.distributed); then model/optimizer are each rank's own.
    """

    def __init__(self, directory, model=None, optimizer=None, scheduler=None, scaler=None, every_epochs=5,
                 every_seconds=900.0, every_steps=0, keep_epoch=5, keep_time=3, retention=None,
                 signals=(signal.SIGTERM, signal.SIGINT, signal.SIGUSR1), async_save=False, map_location="cpu",
                 requeue_on_preempt=False, sharded=False, extra=None, clock=None):
        self.directory = os.fspath(directory)
        self.model, self.optimizer, self.scheduler, self.scaler = model, optimizer, scheduler, scaler
        self.extra = extra
        self.map_location = map_location
        self.sharded = sharded
        self.dist = _dist()
        self.rank = self.dist.get_rank() if self.dist else 0
        self.world = self.dist.get_world_size() if self.dist else 1
        self.resumed_from = None
        self.last_saved = None
        self.stopped = False
        self.cat = None
        if retention is None:
            retention = Retention(keep_last={"epoch": keep_epoch, "time": keep_time, "preempt": 0, "manual": 0})
        if self.rank == 0:
            self.cat = Catalog(self.directory, retention=retention, requeue_on_preempt=requeue_on_preempt)
        self.trigger = Trigger(every_epochs=every_epochs, every_steps=every_steps, every_seconds=every_seconds,
                               watch_signals=True, clock=clock)
        if signals:
            install_signals(signals)
        self.async_saver = AsyncSaver(self.cat) if (async_save and self.cat is not None and not sharded) else None

    # -- resume ------------------------------------------------------------
    def resume(self):
        """Load the newest checkpoint that verifies (agreed by all ranks);
        returns (epoch, step), (0, 0) when starting fresh."""
        if self.sharded:
            from . import distributed as cdist
            got = cdist.load_sharded(self.directory, cat=self.cat, map_location=self.map_location)
            if got is None:
                return 0, 0
            st, e = got
            ep, sp = apply_state(st, self.model, self.optimizer, self.scheduler, self.scaler)
            self.resumed_from = e
            self.trigger.resumed(sp)
            return ep, sp
        pick = None
        if self.rank == 0:
            e = self.cat.latest()
            pick = (e.id, e.path, e.epoch, e.step) if e is not None else None
        if self.dist:
            pick = _broadcast(pick, self.dist)
        if pick is None:
            return 0, 0
        cid, path, _, _ = pick
        st = torch.load(path, map_location=self.map_location)
        if self.rank == 0:
            self.cat.mark_resumed(cid)
            self.resumed_from = self.cat.get(cid)
        ep, sp = apply_state(st, self.model, self.optimizer, self.scheduler, self.scaler)
        per_rank = st.get("rng_per_rank")
        if per_rank is not None and len(per_rank) == self.world:
            restore_rng(per_rank[self.rank])
        self.trigger.resumed(sp)
        return ep, sp

    # -- the loop ----------------------------------------------------------
    def step(self, epoch, step, metrics=None):
        """Call after every completed step (epoch = completed epochs, step =
        global step).  Saves when the trigger says so; returns True when the
        loop should stop (a preemption signal arrived and its checkpoint is
        saved)."""
        return self._maybe_save(epoch, step, False, metrics)

    def epoch_end(self, epoch, step, metrics=None):
        """Call after every completed epoch (epoch = completed epochs, from 1)."""
        stop = self._maybe_save(epoch, step, True, metrics)
        if self.cat is not None:
            self.cat.progress(epoch, step)
        return stop

    def _maybe_save(self, epoch, step, epoch_end, metrics):
        kind = self.trigger.check(epoch, step, epoch_end)
        if self.dist:
            t = torch.tensor([_KIND_CODES[kind]], dtype=torch.int64)
            self.dist.all_reduce(t, op=self.dist.ReduceOp.MAX)
            kind = _CODE_KINDS[int(t.item())]
        if kind is None:
            return False
        if kind == "preempt" and self.async_saver is not None:
            self.async_saver.wait()  # a preemption waits for the save in flight, then saves
        self.save(kind, epoch, step, metrics)
        self.trigger.saved(step)
        if kind == "preempt":
            if self.async_saver is not None:
                self.async_saver.wait()
            self.stopped = True
            return True
        return False

    def save(self, kind, epoch, step, metrics=None, name=None):
        """Save now (every rank calls it under torch.distributed)."""
        if self.sharded:
            from . import distributed as cdist
            st = build_state(epoch, step, self.model, self.optimizer, self.scheduler, self.scaler, self.extra)
            self.last_saved = cdist.save_sharded(self.directory, st, kind, epoch, step, cat=self.cat,
                                                 metrics=metrics)
            return self.last_saved
        rngs = None
        if self.dist:  # every rank's RNG, so each resumes its own stream
            rngs = [None] * self.world
            self.dist.all_gather_object(rngs, capture_rng())
        if self.rank == 0:
            st = build_state(epoch, step, self.model, self.optimizer, self.scheduler, self.scaler, self.extra)
            if rngs is not None:
                st["rng_per_rank"] = rngs
            if self.async_saver is not None:
                self.async_saver.save(st, kind, epoch, step, metrics=metrics, name=name)
            else:
                with self.cat.save(kind=kind, epoch=epoch, step=step, metrics=metrics, name=name) as f:
                    torch.save(st, f)
                self.last_saved = f.entry
        if self.dist:
            self.dist.barrier()
        return self.last_saved

    def wait(self):
        if self.async_saver is not None:
            e = self.async_saver.wait()
            if e is not None:
                self.last_saved = e
        return self.last_saved

    @property
    def preempted(self):
        """The preemption signal received (0 if none)."""
        return preempt_requested()

    def close(self):
        """Wait for a save in flight and close the catalog (the run ends
        clean, or preempted when a signal arrived)."""
        try:
            self.wait()
        finally:
            if self.cat is not None:
                self.cat.close()
            self.trigger.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


__all__ += ["Error", "clear_preempt"]
