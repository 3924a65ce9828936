"""The Hugging Face Trainer on the catalog: two lines to adopt.

    trainer = Trainer(model, args, ..., callbacks=[ckptdb.transformers.Checkpoint()])
    trainer.train(resume_from_checkpoint=ckptdb.transformers.latest(args.output_dir))

Checkpoint (a TrainerCallback) makes every checkpoint-N/ directory the
Trainer saves a directory checkpoint of the catalog in args.output_dir
(ckptdb.sqlite): the row is recorded "writing" and the directory made by
ckptdb before the Trainer writes into it; once the Trainer's save is done
every file is fsynced and hashed, the row committed, and the catalog's
retention applied.  A kill at any moment of the Trainer's save leaves a
row "writing" that recovery (the next open of the catalog: latest(), the
next Trainer built with the callback) aborts, removing the half-written
directory: resume never picks it, ckptdb's latest() nor the Trainer's own
get_last_checkpoint().  latest(output_dir) is the path of the newest
checkpoint-N that verifies, or None: what resume_from_checkpoint takes to
resume or start fresh.

Decisions:
- The Trainer's extension points only: a TrainerCallback, no Trainer
  method overridden.  The Trainer's DefaultFlowCallback runs before user
  callbacks and sets control.should_save in on_step_end / on_epoch_end;
  this callback, after it, begins the save there, and commits it in
  on_save, which the Trainer calls right after _save_checkpoint.
- Rows: name checkpoint-<global_step> (the Trainer's own name), epoch =
  int(state.epoch) (epochs completed), step = state.global_step; kind
  "step" under save_strategy "steps", "epoch" under "epoch", "preempt" for
  the save a signal asks for.  The metrics of the row are the numbers the
  Trainer logged at that global step (state.log_history: eval_* after an
  evaluation, loss, learning_rate, ...), so best-K by eval_loss works.
- Retention is ckptdb's: args.save_total_limit must be None (the
  Trainer's rotation deletes by mtime what the catalog recorded; an error
  names it and the way: retention= of the callback).  The default keeps
  the 5 newest "step" checkpoints and the library's default for the other
  kinds (5 "epoch", "preempt" until superseded); a kind not listed is kept
  whole.  With load_best_model_at_end, the best checkpoint by
  metric_for_best_model (the Trainer's rule: "eval_" prefixed,
  greater_is_better) is kept as well (best-K of at least 1), so
  state.best_model_checkpoint is never pruned.
- save_strategy "best" is refused: the Trainer decides to save after
  evaluating, past the last callback before its save; use "steps" and a
  best-K retention (the same checkpoints kept, every save durable).
- A save that did not reach on_save (the Trainer raised mid-save in this
  process) is aborted, its directory removed, by the next begin and at
  on_train_begin / on_train_end.  A checkpoint-N that exists already (a
  quarantined corrupt checkpoint, a newer checkpoint after resuming from an
  older one, a directory ckptdb did not make) stops the run with
  ckptdb.Exists naming it and the way out; nothing is written into a
  directory the catalog did not create.
- SIGTERM and SIGUSR1 (signals=) set ckptdb's preemption flag from
  on_train_begin to on_train_end; the next on_step_end saves a "preempt"
  checkpoint and stops training (control.should_training_stop), so Slurm's
  SIGTERM ends the job with a checkpoint.  requeue_on_preempt=True also
  requeues the job under Slurm after that commit.  A run that raises leaves
  the handlers in place until the next train() or close().
- The resume is recorded in the catalog (mark_resumed) in on_train_begin,
  when the Trainer restored a state: the complete row of
  checkpoint-<state.global_step>.  latest() verifies; the Trainer's own
  resume_from_checkpoint=True (get_last_checkpoint) does not, and sees a
  quarantined corrupt checkpoint-N as any other.
- Distributed: the catalog is opened on the processes with
  args.should_save (process 0, or each node's first with
  save_on_each_node, which then needs a per-node output_dir).  With
  torch.distributed initialised every rank writes rng_state_<rank>.pth into
  the directory: all ranks meet at a barrier after the begin (the
  directory exists before any rank writes) and before the commit (every
  rank's files are written); process 0's preemption flag is every rank's.
  Tested single-process.
- Flat checkpoint directories only: args.deepspeed or args.fsdp set is
  refused when the Trainer is built (their checkpoints hold sharded
  subdirectories); a subdirectory found at the commit anyway is refused
  with ckptdb.InvalidArgument and the save aborted (its files removed; the
  subdirectory, which the catalog never recorded, is left for its owner).
- The commit (fsync, hash, one transaction, rotation) runs in a thread
  while training goes on (background=True, the default), as DCP's
  async_save does: a save costs the training loop about what the
  Trainer's own unsynced save costs.  The checkpoint counts once
  committed; a kill before that leaves the previous one the newest, and
  recovery removes or adopts the directory.  The next save, the end of
  training and close() wait for the commit and raise what it raised.

Tested with transformers 5.24.0 (accelerate 1.15.0); importing this module
with a transformers whose major version is not 5 raises ImportError naming
the version.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Any, Dict, Iterable, Mapping, Optional

import transformers as _hf

_MAJOR = str(getattr(_hf, "__version__", "0")).split(".")[0]
if _MAJOR != "5":
    raise ImportError("ckptdb.transformers needs transformers 5.x (tested with 5.24.0); this is transformers %s"
                      % getattr(_hf, "__version__", "unknown"))

from transformers import TrainerCallback  # noqa: E402
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR  # noqa: E402

from . import _lib  # noqa: E402
from .catalog import Catalog, _latest_path, Checkpoint as Entry, DirSave, Retention  # noqa: E402
from .errors import Exists, InvalidArgument, NotFound  # noqa: E402
from .signals import clear_preempt, install_signals, preempt_requested, restore_signals  # noqa: E402

__all__ = ["Checkpoint", "latest", "TRANSFORMERS_VERSION", "TESTED_VERSION"]

TRANSFORMERS_VERSION: str = _hf.__version__
TESTED_VERSION = "5.24.0"

log = logging.getLogger("ckptdb")


def _invalid(message: str) -> InvalidArgument:
    return InvalidArgument(InvalidArgument.code, "ckptdb.transformers: " + message)


def checkpoint_name(global_step: int) -> str:
    """The Trainer's name of the checkpoint of a global step."""
    return "%s-%d" % (PREFIX_CHECKPOINT_DIR, global_step)


def latest(output_dir: Any, kind: Optional[str] = None, trust_shared: bool = False) -> Optional[str]:
    """The path of the newest complete checkpoint of output_dir's catalog
    that verifies (a corrupt one is marked so and the next newest tried),
    or None when there is none or the directory does not exist yet:
    trainer.train(resume_from_checkpoint=latest(args.output_dir)) resumes
    or starts fresh.  Opening the catalog runs its recovery (a save a
    killed process left half-written is aborted and its directory removed);
    an existing directory without a catalog gets an empty one.  The resume
    is recorded by the callback when training starts from it."""
    return _latest_path(output_dir, kind, trust_shared)


def _metric_name(name: str) -> str:
    """The Trainer's rule for metric_for_best_model: "eval_" prefixed."""
    return name if name.startswith("eval_") else "eval_" + name


def _distributed() -> Any:
    try:
        import torch.distributed as dist
    except ImportError:
        return None
    return dist if dist.is_available() and dist.is_initialized() else None


class Checkpoint(TrainerCallback):
    """Every checkpoint-N/ the Trainer saves, a directory checkpoint of the
    catalog in args.output_dir (see the module's notes).

    retention: a ckptdb.Retention or a dict of its keywords (None: keep the
    5 newest "step" checkpoints and the library's default for the other
    kinds).  With load_best_model_at_end, best-K by metric_for_best_model is
    added to it (at least 1; a retention ranking by another metric is
    refused).  signals: each sets ckptdb's preemption flag during training;
    the next step end saves a "preempt" checkpoint and stops.
    requeue_on_preempt: under Slurm, requeue the job after that save.
    trust_shared: see ckptdb.Catalog.
    background: commit each save (fsync, hash, the catalog's transaction,
    rotation) in a thread while training goes on, as DCP's async_save
    does; False commits in on_save.  Either way the checkpoint counts once
    committed: a kill before that leaves the previous one as the newest.
    One commit runs at a time; the next save, the end of training and
    close() wait for it, and raise what it raised."""

    def __init__(self, retention: Any = None, signals: Iterable[int] = (signal.SIGTERM, signal.SIGUSR1),
                 requeue_on_preempt: bool = False, trust_shared: bool = False, background: bool = True) -> None:
        super().__init__()
        if retention is None:
            keep = _lib.default_keep_last()
            keep.setdefault("step", 5)
            retention = Retention(keep_last=keep)
        elif isinstance(retention, Mapping):
            retention = Retention(**retention)
        elif not isinstance(retention, Retention):
            raise _invalid("Checkpoint: retention must be a ckptdb.Retention, a dict of its keywords or None, "
                           "not %s" % type(retention).__name__)
        self.retention: Retention = retention
        self.signals = [int(s) for s in signals]
        self.requeue_on_preempt = bool(requeue_on_preempt)
        self.trust_shared = bool(trust_shared)
        self.background = bool(background)
        #: The catalog (processes with args.should_save), its directory.
        self.cat: Optional[Catalog] = None
        self.directory: Optional[str] = None
        #: The save on its way (begun, not yet committed), and the last
        #: checkpoint this callback committed.
        self.open: Optional[DirSave] = None
        self.last_saved: Optional[Entry] = None
        self._saved_step: Optional[int] = None  # the step of the last save handed to its commit
        self._committing: Optional[threading.Thread] = None
        self._commit_error: Optional[BaseException] = None
        #: Whether a preemption signal stopped the run.
        self.stopped = False
        self._kind: Optional[str] = None
        self._signals_installed = False

    # -- wiring ------------------------------------------------------------
    def _check_args(self, args: Any) -> Retention:
        """Refuse the arguments ckptdb cannot honour; the retention this run
        uses (the callback's, with the best-model rule added)."""
        if getattr(args, "save_total_limit", None) is not None:
            raise _invalid("TrainingArguments.save_total_limit=%r: the Trainer's rotation would delete checkpoints "
                           "the catalog recorded; leave it None and give the callback a retention instead, e.g. "
                           "Checkpoint(retention={'keep_last': {'step': %d}})"
                           % (args.save_total_limit, max(1, int(args.save_total_limit))))
        for what in ("deepspeed", "fsdp"):
            if getattr(args, what, None):
                raise _invalid("TrainingArguments.%s is set: its checkpoints hold subdirectories (sharded states) "
                               "and ckptdb.transformers commits flat checkpoint-N directories only; train without it "
                               "or leave the callback out" % what)
        strategy = str(getattr(args.save_strategy, "value", args.save_strategy))
        if strategy == "best":
            raise _invalid("TrainingArguments.save_strategy='best' is not supported: the Trainer decides that save "
                           "after evaluating, past its callbacks; use save_strategy='steps' with the eval steps and "
                           "a best-K retention, e.g. Checkpoint(retention={'best_metric': 'eval_loss', 'best_k': 1, "
                           "'keep_last': {'step': 1}})")
        self._kind = {"steps": "step", "epoch": "epoch"}.get(strategy)
        r = self.retention
        metric = getattr(args, "metric_for_best_model", None)
        if getattr(args, "load_best_model_at_end", False) and metric:
            name = _metric_name(metric)
            mode = "max" if args.greater_is_better else "min"
            if r.best_metric is not None and (r.best_metric != name or r.best_mode != mode):
                raise _invalid("Checkpoint: the retention keeps the best by %r (%s), but load_best_model_at_end "
                               "needs the best by %r (%s, metric_for_best_model=%r) kept; rank by that one"
                               % (r.best_metric, r.best_mode, name, mode, metric))
            r = Retention(keep_last=r.keep_last, keep_last_default=r.keep_last_default,
                          keep_every_n_epochs=r.keep_every_n_epochs, keep_interval_seconds=r.keep_interval_seconds,
                          best_metric=name, best_mode=mode, best_k=max(1, r.best_k), max_bytes=r.max_bytes,
                          prune_corrupt=r.prune_corrupt)
        return r

    def _setup(self, args: Any) -> None:
        retention = self._check_args(args)
        directory = os.path.abspath(os.fspath(args.output_dir))
        if self.cat is not None and not self.cat.closed and self.directory == directory:
            self.cat.set_retention(retention)
            return
        self.close()
        self.directory = directory
        if args.should_save:
            os.makedirs(directory, exist_ok=True)
            # Opening runs recovery: a checkpoint-N a killed run left
            # half-written is removed before the Trainer looks for one.
            self.cat = Catalog(directory, retention=retention, requeue_on_preempt=self.requeue_on_preempt,
                               trust_shared=self.trust_shared)

    def on_init_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._setup(args)

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if getattr(state, "is_hyper_param_search", False):
            raise _invalid("a hyperparameter search saves each trial into its own run directory under "
                           "output_dir, not into output_dir's catalog; search without the callback")
        self._setup(args)  # arguments may have changed since the Trainer was built
        self.wait()
        self._abort_open("a save of an earlier train() in this process was left open")
        self.stopped = False
        self.last_saved = None
        self._saved_step = None
        if self.signals:
            if self._signals_installed:
                restore_signals()
            # A flag left by an earlier train() of this process was that
            # run's (its handlers were put back at its end).
            clear_preempt()
            install_signals(self.signals)
            self._signals_installed = True
        if self.cat is not None and state.global_step > 0 and not self.cat.readonly:
            try:
                e = self.cat.get(checkpoint_name(state.global_step))
            except NotFound:
                return
            if e.status == "complete":
                self.cat.mark_resumed(e.id)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        try:
            self.wait()
        finally:
            self._abort_open("the Trainer did not save the checkpoint it was asked for")
            self._restore()

    def _restore(self) -> None:
        if self._signals_installed:
            restore_signals()
            self._signals_installed = False

    def close(self) -> None:
        """Wait for a commit in flight, abort a save left open, put the
        signal handlers back, close the catalog."""
        try:
            self.wait()
        finally:
            self._abort_open("the callback was closed")
            self._restore()
            if self.cat is not None:
                self.cat.close()
                self.cat = None

    def wait(self) -> Optional[Entry]:
        """Wait for the commit in flight, if any; raise what it raised.
        Returns the last checkpoint committed."""
        t, self._committing = self._committing, None
        if t is not None:
            t.join()
        err, self._commit_error = self._commit_error, None
        if err is not None:
            raise err
        return self.last_saved

    # -- saving ------------------------------------------------------------
    def _abort_open(self, why: str) -> None:
        s, self.open = self.open, None
        if s is not None:
            log.warning("ckptdb.transformers: aborting the save of %s (%s); its directory is removed", s.name, why)
            try:
                s.abort()
            finally:
                s.free()

    def _preempted(self) -> bool:
        flag = preempt_requested() != 0
        dist = _distributed()
        if dist is not None:  # process 0's decision is every rank's
            box = [flag]
            dist.broadcast_object_list(box, src=0)
            flag = bool(box[0])
        return flag

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        kind = self._kind if control.should_save else None
        if self._signals_installed and not self.stopped and self._preempted():
            kind = "preempt"
            self.stopped = True
            control.should_save = True
            control.should_training_stop = True
        if kind is not None:
            self._begin(args, state, kind)

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not control.should_save:
            return
        if self._saved_step == state.global_step:
            # This step's state is a checkpoint already (a preempt or step
            # save of the batch that ended the epoch): the Trainer would
            # write it again into the same directory.
            control.should_save = False
            return
        self._begin(args, state, self._kind or "epoch")

    def _begin(self, args: Any, state: Any, kind: str) -> None:
        name = checkpoint_name(state.global_step)
        if self.cat is not None:
            self.wait()
            self._abort_open("a new save began before the Trainer finished it")
            try:
                self.open = self.cat.begin_dir(kind=kind, epoch=int(state.epoch or 0), step=state.global_step,
                                               name=name, in_place=True)
            except Exists:
                raise Exists(Exists.code, "ckptdb.transformers: %s exists already (%s); ckptdb writes only into a "
                             "directory it creates. Resume from the newest checkpoint "
                             "(resume_from_checkpoint=ckptdb.transformers.latest(output_dir)), or remove it first "
                             "(ckptdb rm, or move it out of the directory)"
                             % (os.path.join(self.directory or "", name), self._describe(name))) from None
        dist = _distributed()
        if dist is not None:
            dist.barrier()  # the directory exists before any rank writes into it

    def _describe(self, name: str) -> str:
        assert self.cat is not None
        try:
            e = self.cat.get(name)
        except NotFound:
            return "a directory the catalog did not write"
        if e.status == "corrupt":
            return "a checkpoint the catalog quarantined as corrupt"
        return "the catalog's checkpoint %d, %s, of step %d" % (e.id, e.status, e.step)

    def _metrics(self, state: Any) -> Dict[str, float]:
        out: Dict[str, float] = {}
        for entry in state.log_history:
            if entry.get("step") != state.global_step:
                continue
            for k, v in entry.items():
                if k in ("step", "epoch") or isinstance(v, bool) or not isinstance(v, (int, float)):
                    continue
                if v == v and v not in (float("inf"), float("-inf")):
                    out[k] = v
        return out

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        dist = _distributed()
        if dist is not None:
            dist.barrier()  # every rank's files are written
        if self.cat is None:
            return
        name = checkpoint_name(state.global_step)
        s = self.open
        if s is None or s.name != name:
            raise _invalid("the Trainer saved %s, which no save of this callback began (control.should_save was "
                           "set after ckptdb's callback ran, by a later callback or save_strategy='best'); the "
                           "directory is not in the catalog" % os.path.join(self.directory or "", name))
        self.open = None
        self._saved_step = state.global_step
        metrics = self._metrics(state)
        if not self.background:
            self._commit(s, metrics)
            self.wait()
            return
        self.wait()
        self._committing = threading.Thread(target=self._commit, args=(s, metrics), name="ckptdb-commit")
        self._committing.start()

    def _commit(self, s: DirSave, metrics: Dict[str, float]) -> None:
        try:
            self.last_saved = s.commit_in_place(metrics=metrics)
        except BaseException as e:  # raised by wait(), in the training thread
            self._commit_error = e
        finally:
            s.free()  # a save the commit left open (refused) is aborted
