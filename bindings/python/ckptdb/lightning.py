"""PyTorch Lightning on the catalog: two lines to adopt.

    trainer = Trainer(plugins=[ckptdb.lightning.CheckpointIO()],
                      callbacks=[ckptdb.lightning.Checkpoint("ckpts", monitor="val_loss")])
    trainer.fit(model, ckpt_path=ckptdb.lightning.latest("ckpts"))

CheckpointIO (a Lightning CheckpointIO plugin) makes every save Lightning
does a durable, hashed catalog commit in the catalog of the file's directory
(row name = the file's name, epoch and step = the checkpoint's "epoch" and
"global_step"), every load verify the file against its row first, and every
removal go through the catalog.  Checkpoint (a Lightning Checkpoint
callback) takes ModelCheckpoint's job with ckptdb's rules: epoch, step and
time triggers, a "preempt" save at the next batch boundary on SIGTERM or
SIGUSR1, and retention (keep-last per kind, best-K by a logged metric, a
byte budget, the last.pt link).  latest(directory) is the path of the
newest checkpoint that verifies, or None: what trainer.fit's ckpt_path
takes to resume or start fresh.

Decisions:
- The callback alone is enough: on setup it puts a CheckpointIO in place of
  Lightning's default TorchCheckpointIO (any other CheckpointIO is refused
  with an error naming it), so its saves and the load of ckpt_path go
  through the catalog.  Passing the plugin as well changes nothing.
- Lightning adds a ModelCheckpoint when no Checkpoint callback is given;
  this callback is one, so none is added.  A ModelCheckpoint given as well
  writing into the same directory is refused at setup (two owners of one
  catalog's retention); one writing elsewhere keeps working, its saves
  going through the plugin into its own directory's catalog.
- ckpt_path="ckptdb:latest" is not offered: a plugin's load must return a
  checkpoint, so "nothing to resume, start fresh" cannot be said there;
  latest() returns None for that, which Lightning reads as a fresh start.
- Signals and Slurm: ckptdb is in charge.  From on_train_start to
  on_train_end the callback's signals (SIGTERM, SIGUSR1) set ckptdb's flag
  only, replacing Lightning's handlers (its SIGTERM exit without a
  checkpoint, and SLURMEnvironment's auto-requeue on SIGUSR1, which would
  save an hpc_ckpt file and call scontrol itself); the handlers are put
  back afterwards.  The job is requeued by ckptdb, after the preempt
  checkpoint is committed, when the callback has requeue_on_preempt=True.
- Rows carry Lightning's own numbers: epoch = trainer.current_epoch when
  saved (0 for a save at the end of the first epoch), step = global_step.
- Loads use torch's safe loader (weights_only=True) as every ckptdb load:
  a Lightning checkpoint holds tensors, numbers, strings and dicts; one
  whose hyper_parameters hold other objects is refused with
  ckptdb.UnsafeCheckpoint naming it.  CheckpointIO(weights_only=False), or
  trainer.fit(..., weights_only=False), is the opt-in for trusted files.
- Resume is exact where Lightning's is: from a checkpoint at an epoch
  boundary the weights, optimizer state and loop counters continue as if
  never stopped.  From a mid-epoch checkpoint ("preempt", "step", "time")
  Lightning restores the counters (global step, batch index), not the
  position of a plain DataLoader: the rest of that epoch sees data from the
  start of the loader again.

This module uses the `lightning` package (lightning.pytorch), else
`pytorch_lightning` where only that one is installed.
"""

from __future__ import annotations

import datetime
import os
import signal
from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Tuple

import torch

try:
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import Checkpoint as _PLCheckpoint
    from lightning.pytorch.callbacks import ModelCheckpoint as _PLModelCheckpoint
    from lightning.pytorch.plugins.io import CheckpointIO as _PLCheckpointIO
    from lightning.pytorch.plugins.io import TorchCheckpointIO as _PLTorchCheckpointIO
except ImportError:  # the standalone package
    import pytorch_lightning as pl  # type: ignore[no-redef]
    from pytorch_lightning.callbacks import Checkpoint as _PLCheckpoint  # type: ignore[no-redef]
    from pytorch_lightning.callbacks import ModelCheckpoint as _PLModelCheckpoint  # type: ignore[no-redef]
    from pytorch_lightning.plugins.io import CheckpointIO as _PLCheckpointIO  # type: ignore[no-redef]
    from pytorch_lightning.plugins.io import TorchCheckpointIO as _PLTorchCheckpointIO  # type: ignore[no-redef]

from . import _lib
from . import torch as ct
from .catalog import Catalog, _latest_path, Checkpoint as Entry, Retention
from .errors import Corrupt, InvalidArgument, NotFound
from .signals import Trigger, install_signals, restore_signals

__all__ = ["CheckpointIO", "Checkpoint", "latest", "LIGHTNING_VERSION"]

LIGHTNING_VERSION = getattr(pl, "__version__", "unknown")



def _invalid(message: str) -> InvalidArgument:
    return InvalidArgument(InvalidArgument.code, "ckptdb.lightning: " + message)


def _not_found(message: str) -> NotFound:
    return NotFound(NotFound.code, "ckptdb.lightning: " + message)


def _split(path: Any) -> Tuple[str, str]:
    """(absolute directory, name) of a checkpoint path."""
    p = os.path.abspath(os.fspath(path))
    return os.path.dirname(p), os.path.basename(p)


class CheckpointIO(_PLCheckpointIO):
    """Lightning's checkpoint I/O through the catalog of each file's directory.

    kind: the kind of a save that does not name one (storage_options
    {"kind": ...}); Lightning's own saves (trainer.save_checkpoint,
    ModelCheckpoint) are "manual".  retention: the policy of catalogs this
    plugin opens itself (None: no rotation after commits; the Checkpoint
    callback brings its own).  weights_only: the loads' default when
    Lightning passes None.  trust_shared: see ckptdb.Catalog."""

    def __init__(self, kind: str = "manual", retention: Any = None, weights_only: bool = True,
                 trust_shared: bool = False) -> None:
        super().__init__()
        self.kind = kind
        self.retention = retention
        self.weights_only = bool(weights_only)
        self.trust_shared = bool(trust_shared)
        self._catalogs: Dict[str, Catalog] = {}
        #: (catalog, row) of the last checkpoint loaded through this plugin.
        self.loaded: Optional[Tuple[Catalog, Entry]] = None

    # -- catalogs ----------------------------------------------------------
    def catalog(self, directory: Any, **open_kw: Any) -> Catalog:
        """The catalog of a directory, opened once (keywords: Catalog's, used
        when it is opened here; retention defaults to the plugin's)."""
        d = os.path.abspath(os.fspath(directory))
        cat = self._catalogs.get(d)
        if cat is None or cat.closed:
            open_kw.setdefault("retention", self.retention)
            open_kw.setdefault("trust_shared", self.trust_shared)
            cat = Catalog(d, **open_kw)
            self._catalogs[d] = cat
        return cat

    def _existing_catalog(self, directory: str) -> Catalog:
        if directory in self._catalogs and not self._catalogs[directory].closed:
            return self._catalogs[directory]
        if not os.path.isdir(directory):
            raise _not_found("checkpoint directory %s does not exist" % directory)
        return self.catalog(directory, create=False)

    def row(self, path: Any) -> Tuple[Catalog, Entry]:
        """The catalog and the complete row of a checkpoint file; raises
        NotFound for a file its directory's catalog did not write (or no
        catalog), InvalidArgument for a row that is not complete."""
        d, name = _split(path)
        link = os.path.join(d, name)
        if os.path.islink(link):
            # The catalog's last link (last.pt): a name in the same directory.
            target = os.readlink(link)
            if "/" in target:
                raise _invalid("%s is a symbolic link out of its directory (to %s); only the catalog's own "
                               "last link is followed" % (link, target))
            name = target
        cat = self._existing_catalog(d)
        try:
            e = cat.get(name)
        except NotFound:
            raise _not_found("%s is not a checkpoint of the catalog in %s (unknown file)"
                             % (os.path.join(d, name), d)) from None
        if e.status != "complete":
            raise _invalid("checkpoint %s is %s, not complete" % (os.path.join(d, name), e.status))
        return cat, e

    # -- Lightning's CheckpointIO ------------------------------------------
    def save_checkpoint(self, checkpoint: Dict[str, Any], path: Any, storage_options: Optional[Any] = None) -> None:
        """torch.save the checkpoint through Catalog.save: durable, hashed and
        committed, named by the path's file name, in the catalog of its
        directory.  storage_options: None or a dict with any of kind,
        epoch, step, metrics (recorded in the row's metadata)."""
        self.save(checkpoint, path, storage_options)

    def save(self, checkpoint: Dict[str, Any], path: Any, storage_options: Optional[Any] = None) -> Entry:
        """save_checkpoint, returning the committed row."""
        if storage_options is None:
            opts: Mapping[str, Any] = {}
        elif isinstance(storage_options, Mapping):
            opts = storage_options
            unknown = sorted(set(opts) - {"kind", "epoch", "step", "metrics"})
            if unknown:
                raise _invalid("storage_options keys %s are not known (kind, epoch, step, metrics)" % unknown)
        else:
            raise _invalid("storage_options must be None or a dict (kind, epoch, step, metrics), not %s"
                           % type(storage_options).__name__)
        d, name = _split(path)
        epoch = opts.get("epoch", checkpoint.get("epoch", 0))
        step = opts.get("step", checkpoint.get("global_step", 0))
        cat = self.catalog(d)
        with cat.save(kind=opts.get("kind", self.kind), epoch=int(epoch), step=int(step), metrics=opts.get("metrics"),
                      name=name) as f:
            torch.save(checkpoint, f)
        assert f.entry is not None
        return f.entry

    def load_checkpoint(self, path: Any, map_location: Optional[Any] = None,
                        weights_only: Optional[bool] = None) -> Dict[str, Any]:
        """Verify the file against its catalog row (a corrupt file is marked
        so and refused with ckptdb.Corrupt; a file no catalog wrote with
        ckptdb.NotFound), then load it with torch's safe loader
        (weights_only None takes the plugin's default, True)."""
        cat, e = self.row(path)
        if not cat.verify(e.id):
            raise Corrupt(Corrupt.code, "ckptdb.lightning: checkpoint %s does not match its catalog row %d (checksum "
                          "%s); it is now marked corrupt and was not loaded" % (e.path, e.id, e.checksum))
        wo = self.weights_only if weights_only is None else bool(weights_only)
        st = ct.load_checkpoint(e.path, map_location=map_location, weights_only=wo, trust_shared=cat.trust_shared)
        self.loaded = (cat, e)
        return st

    def remove_checkpoint(self, path: Any) -> None:
        """Delete a checkpoint the catalog wrote, through the catalog
        (Catalog.remove: its row becomes "pruned" with the rule "removed",
        its file unlinked).  A file the catalog did not write raises NotFound
        and is left alone; a pinned checkpoint is refused with
        InvalidArgument, and nothing changes."""
        cat, e = self.row(path)
        cat.remove(e.id)

    def teardown(self) -> None:
        """Close the catalogs this plugin opened."""
        for cat in self._catalogs.values():
            cat.close()
        self._catalogs.clear()


def latest(directory: Any, kind: Optional[str] = None, trust_shared: bool = False) -> Optional[str]:
    """The path of the newest checkpoint of the directory's catalog that
    verifies (a corrupt one is marked so and the next newest tried), or None
    when there is none or the directory does not exist yet:
    trainer.fit(model, ckpt_path=latest("ckpts")) resumes or starts fresh.
    Opening the catalog runs its recovery (a save a killed process left
    half-written is rolled forward or aborted); an existing directory
    without a catalog gets an empty one."""
    return _latest_path(directory, kind, trust_shared)


def _seconds(interval: Any) -> float:
    if interval is None:
        return 0.0
    if isinstance(interval, datetime.timedelta):
        return interval.total_seconds()
    return float(interval)


class Checkpoint(_PLCheckpoint):
    """ModelCheckpoint's job with ckptdb's rules.

    dirpath: the checkpoint directory (its catalog, ckptdb.sqlite).
    Triggers (ckptdb's Trigger; one save per moment, preempt > epoch > step
    > time): every_n_epochs (at the end of every n-th training epoch, after
    its validation, kind "epoch"), every_n_train_steps (kind "step"),
    train_time_interval (a timedelta or seconds, kind "time"); 0 or None
    turns one off.  signals: each sets ckptdb's preemption flag; the next
    batch boundary saves a "preempt" checkpoint and sets
    trainer.should_stop.  requeue_on_preempt: under Slurm, ckptdb requeues
    the job after that checkpoint (Lightning's own auto-requeue is replaced,
    see the module's notes).

    Retention after every commit: keep_last {kind: K} (None: the library's
    default, 5 epoch, 3 time, preempt and manual until superseded; a kind
    not listed is kept whole), monitor/mode/save_top_k: the K best by a
    metric logged with self.log (recorded in each row's metadata; rows
    without it rank last), max_bytes: the budget (0: none); the catalog's
    last.pt link names the newest checkpoint.  clock: a fake clock for the
    time trigger (tests)."""

    def __init__(self, dirpath: Any, every_n_epochs: int = 1, every_n_train_steps: int = 0,
                 train_time_interval: Any = None, monitor: Optional[str] = None, mode: str = "min",
                 save_top_k: int = 1, keep_last: Optional[Mapping[str, int]] = None, max_bytes: int = 0,
                 signals: Iterable[int] = (signal.SIGTERM, signal.SIGUSR1), requeue_on_preempt: bool = False,
                 clock: Optional[Callable[[], float]] = None, trust_shared: bool = False) -> None:
        super().__init__()
        self.dirpath = os.path.abspath(os.fspath(dirpath))
        if monitor is not None and save_top_k < 1:
            raise _invalid("Checkpoint: save_top_k must be >= 1 with monitor=%r, got %d" % (monitor, save_top_k))
        keep = dict(keep_last) if keep_last is not None else _lib.default_keep_last()
        self.retention = Retention(keep_last=keep, best_metric=monitor, best_mode=mode,
                                   best_k=save_top_k if monitor is not None else 0, max_bytes=max_bytes)
        self.monitor = monitor
        self.every_n_epochs = int(every_n_epochs or 0)
        self.every_n_train_steps = int(every_n_train_steps or 0)
        self.train_time_interval = _seconds(train_time_interval)
        for what, v in (("every_n_epochs", self.every_n_epochs), ("every_n_train_steps", self.every_n_train_steps),
                        ("train_time_interval", self.train_time_interval)):
            if v < 0:
                raise _invalid("Checkpoint: %s must be >= 0, got %r" % (what, v))
        self.signals = [int(s) for s in signals]
        self.requeue_on_preempt = bool(requeue_on_preempt)
        self.trust_shared = bool(trust_shared)
        self._clock = clock
        self.trigger: Optional[Trigger] = None
        self.io: Optional[CheckpointIO] = None
        self.cat: Optional[Catalog] = None
        #: The last checkpoint this callback committed (rank 0), and whether
        #: a preemption stopped the run.
        self.last_saved: Optional[Entry] = None
        self.stopped = False
        self._signals_installed = False

    @property
    def state_key(self) -> str:
        """The callback's key in Lightning's checkpoint: one per directory."""
        return "ckptdb.lightning.Checkpoint{%r}" % (self.dirpath,)

    # -- wiring ------------------------------------------------------------
    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if stage != "fit":
            return
        self.stopped, self.last_saved = False, None
        self.io = _plugin(trainer)
        for cb in trainer.callbacks:
            if isinstance(cb, _PLModelCheckpoint) and cb.dirpath is not None and \
                    os.path.abspath(os.fspath(cb.dirpath)) == self.dirpath:
                raise _invalid("Checkpoint: a ModelCheckpoint also saves into %s; one catalog has one retention: "
                               "remove the ModelCheckpoint or give it another dirpath" % self.dirpath)
        if trainer.is_global_zero:
            os.makedirs(self.dirpath, exist_ok=True)
            self.cat = self.io.catalog(self.dirpath, requeue_on_preempt=self.requeue_on_preempt,
                                       trust_shared=self.trust_shared)
            self.cat.set_retention(self.retention)
        self.trigger = Trigger(every_epochs=self.every_n_epochs, every_steps=self.every_n_train_steps,
                               every_seconds=self.train_time_interval, watch_signals=True, clock=self._clock)

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        # Lightning registered its signal handlers just before: ckptdb's
        # replace them for this callback's signals until on_train_end.
        if self.signals:
            install_signals(self.signals)
            self._signals_installed = True
        loaded = self.io.loaded if self.io is not None else None
        if trainer.ckpt_path and loaded is not None and self.cat is not None and loaded[0] is self.cat:
            if not self.cat.readonly:
                self.cat.mark_resumed(loaded[1].id)
        if trainer.ckpt_path and self.trigger is not None:
            self.trigger.resumed(trainer.global_step)

    def _restore(self) -> None:
        if self._signals_installed:
            restore_signals()
            self._signals_installed = False

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self._restore()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self._restore()

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        self._restore()
        if self.trigger is not None and stage == "fit":
            self.trigger.close()
            self.trigger = None

    # -- saving ------------------------------------------------------------
    def _decide(self, trainer: Any, epochs_done: int, epoch_end: bool) -> Optional[str]:
        kind = self.trigger.check(epochs_done, trainer.global_step, epoch_end) if self.trigger else None
        # Rank 0's decision is every rank's (trainer.save_checkpoint is collective).
        return trainer.strategy.broadcast(kind, src=0)

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.stopped:
            return
        kind = self._decide(trainer, trainer.current_epoch, False)
        if kind in ("step", "time", "preempt"):
            self._save(trainer, kind)
        if kind == "preempt":
            self.stopped = True
            trainer.should_stop = True

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if self.stopped:
            return
        kind = self._decide(trainer, trainer.current_epoch + 1, True)
        if kind is None and self.every_n_epochs and (trainer.current_epoch + 1) % self.every_n_epochs == 0 \
                and self.last_saved is not None and self.last_saved.step == trainer.global_step \
                and self.last_saved.kind != "epoch":
            # The batch that ended the epoch was saved as "step" or "time"
            # already: the epoch checkpoint (after validation) is never dropped.
            kind = "epoch"
        if kind is not None:
            self._save(trainer, kind)
        if kind == "preempt":
            self.stopped = True
            trainer.should_stop = True

    def _metrics(self, trainer: Any) -> Dict[str, Any]:
        out = {}
        for k, v in trainer.callback_metrics.items():
            if isinstance(v, torch.Tensor) and v.numel() == 1:
                v = v.item()
            if isinstance(v, (int, float)) and v == v and v not in (float("inf"), float("-inf")):
                out[k] = v
        return out

    def _name(self, kind: str, trainer: Any) -> str:
        base = "epoch=%d-step=%d" % (trainer.current_epoch, trainer.global_step)
        if kind != "epoch":
            base = kind + "-" + base
        if self.cat is None:
            return base + ".ckpt"
        n = 1
        while True:
            name = base + (".ckpt" if n == 1 else "-v%d.ckpt" % n)
            try:
                e = self.cat.get(name)
            except NotFound:
                return name
            if e.status in ("pruned", "aborted"):
                return name
            n += 1

    def _save(self, trainer: Any, kind: str) -> None:
        name = trainer.strategy.broadcast(self._name(kind, trainer), src=0)
        path = os.path.join(self.dirpath, name)
        trainer.save_checkpoint(path, weights_only=False,
                                storage_options={"kind": kind, "metrics": self._metrics(trainer)})
        if self.cat is not None:
            self.last_saved = self.cat.get(name)
        if self.trigger is not None:
            self.trigger.saved(trainer.global_step)

    # -- Lightning's checkpoint of the callback ----------------------------
    def state_dict(self) -> Dict[str, Any]:
        return {"dirpath": self.dirpath}


def _plugin(trainer: Any) -> CheckpointIO:
    """The trainer's ckptdb CheckpointIO, put in place of Lightning's default
    TorchCheckpointIO when that is the one; any other CheckpointIO raises."""
    strategy = trainer.strategy
    io = strategy.checkpoint_io
    inner = getattr(io, "checkpoint_io", None)  # Lightning's wrapping I/O (AsyncCheckpointIO)
    if isinstance(io, CheckpointIO):
        return io
    if isinstance(inner, CheckpointIO):
        return inner
    if type(io) is _PLTorchCheckpointIO:
        mine = CheckpointIO()
        strategy.checkpoint_io = mine
        return mine
    raise _invalid("Checkpoint: the trainer's checkpoint I/O is %s; the callback saves through "
                   "ckptdb.lightning.CheckpointIO (pass plugins=[ckptdb.lightning.CheckpointIO()])" % type(io).__name__)

