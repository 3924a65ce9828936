"""PyTorch helpers: auto-resume, a CheckpointManager with the production
defaults, RNG state, asynchronous saves, and torch.distributed (replicated
and sharded) saves.

The bytes on disk are exactly what torch.save wrote, so every checkpoint
loads with plain torch.load without ckptdb installed, and with torch's safe
loader (torch.load(path) on torch >= 2.6, weights_only=True): everything in
it is a tensor or a plain type.  A checkpoint made by these helpers is a dict:

    {"format": "ckptdb.torch/2", "epoch": E, "step": S, "model": ..., "optimizer": ...,
     "scheduler": ..., "scaler": ..., "extra": ...,
     "rng": {"torch": ByteTensor, "cuda": [ByteTensor, ...],
             "numpy": {"bit_generator": "MT19937", "state": int64 tensor (624 words), "pos": int,
                       "has_gauss": int, "cached_gaussian": float},
             "random": {"version": 3, "state": int64 tensor (625 ints), "gauss_next": float or None}}}

(int64, not uint32, tensors: torch's uint32 dtype is younger than torch 2.0.)
epoch counts completed epochs and step is the global step of the last
completed step; a resumed loop continues with step + 1.

ckptdb's loads (CheckpointManager.resume, auto_resume, Catalog.load_latest,
distributed.load_sharded) use weights_only=True unless given
weights_only=False; see load_checkpoint.  Resume reads every layout that
checkpoint_layout names.  CheckpointManager(sharded=True) saves through
torch.distributed.checkpoint instead (a directory checkpoint; see the
manager's docstring), with the same dict's parts as DCP keys.
"""

from __future__ import annotations

import collections.abc
import logging
import os
import pickle
import random
import re
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Mapping, Optional

if TYPE_CHECKING:
    from .catalog import Catalog, Checkpoint, Event, Policy, StrPath

from .errors import StateMismatch, UnknownLayout, UnsafeCheckpoint, UnsupportedTorch

MIN_TORCH = (2, 0)


def _version_tuple(v):
    m = re.match(r"(\d+)\.(\d+)", str(v))
    return (int(m.group(1)), int(m.group(2))) if m else None


try:
    import torch
except ImportError as _e:
    raise UnsupportedTorch("ckptdb.torch needs PyTorch >= %d.%d, and this Python (%s) has no torch: %s"
                           % (MIN_TORCH + (sys.executable, _e)), found=None,
                           needed="%d.%d" % MIN_TORCH) from _e
TORCH_VERSION = getattr(torch, "__version__", "unknown")
if (_version_tuple(TORCH_VERSION) or (0, 0)) < MIN_TORCH:
    raise UnsupportedTorch("ckptdb.torch needs PyTorch >= %d.%d (torch.load's weights_only loader); found torch "
                           "%s at %s" % (MIN_TORCH + (TORCH_VERSION, getattr(torch, "__file__", "?"))),
                           found=TORCH_VERSION, needed="%d.%d" % MIN_TORCH)

from . import _lib  # noqa: E402
from .catalog import Catalog, Event, Retention  # noqa: E402
from .errors import Error  # noqa: E402
from .signals import Trigger, clear_preempt, install_signals, preempt_requested  # noqa: E402

__all__ = ["auto_resume", "CheckpointManager", "AsyncSaver", "capture_rng", "restore_rng", "snapshot",
           "unwrap", "build_state", "apply_state", "load_checkpoint", "checkpoint_layout", "normalize_state",
           "ResumeResult", "FORMAT", "MIN_TORCH"]

FORMAT = "ckptdb.torch/2"
FORMAT_V1 = "ckptdb.torch/1"  # numpy and random state as Python objects: refused by weights_only=True
_FORMATS = (FORMAT, FORMAT_V1)


# ---------------------------------------------------------------------------
# State
# ---------------------------------------------------------------------------

def unwrap(model: Any) -> Any:
    """The module inside DistributedDataParallel / DataParallel wrappers."""
    return getattr(model, "module", model) if isinstance(
        model, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)) else model


def _random_state():
    version, internal, gauss_next = random.getstate()
    return {"version": int(version), "state": torch.tensor(internal, dtype=torch.int64), "gauss_next": gauss_next}


def _numpy_state(numpy):
    name, keys, pos, has_gauss, cached = numpy.random.get_state(legacy=True)
    return {"bit_generator": str(name), "state": torch.from_numpy(keys.astype(numpy.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}


def capture_rng() -> Dict[str, Any]:
    """Every RNG a training loop draws from: torch (CPU and CUDA), numpy's
    global RandomState when numpy is present, and Python's random; as
    tensors and plain types (torch.load(weights_only=True) reads them)."""
    st = {"torch": torch.get_rng_state(), "random": _random_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        st["cuda"] = torch.cuda.get_rng_state_all()
    try:
        import numpy
    except ImportError:
        numpy = None
    if numpy is not None:
        st["numpy"] = _numpy_state(numpy)
    return st


def _ints(x):
    return [int(v) for v in (x.tolist() if isinstance(x, torch.Tensor) else x)]


def restore_rng(st: Mapping[str, Any]) -> None:
    """Restore what capture_rng captured: the dict of this format, of the
    earlier one ("ckptdb.torch/1": numpy and random state as Python
    objects) or of the LibTorch binding ({"torch", "cuda"})."""
    if not st:
        return
    if st.get("torch") is not None:
        t = st["torch"]
        torch.set_rng_state(t.cpu() if hasattr(t, "cpu") else t)
    r = st.get("random")
    if r is not None:
        if isinstance(r, collections.abc.Mapping):
            random.setstate((int(r["version"]), tuple(_ints(r["state"])), r["gauss_next"]))
        else:
            random.setstate(r)
    if st.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([t.cpu() for t in st["cuda"]])
    n = st.get("numpy")
    if n is not None:
        try:
            import numpy
        except ImportError:
            return
        if isinstance(n, collections.abc.Mapping):
            keys = n["state"].cpu().numpy() if isinstance(n["state"], torch.Tensor) else numpy.asarray(n["state"])
            numpy.random.set_state((n["bit_generator"], keys.astype(numpy.uint32), int(n["pos"]),
                                    int(n["has_gauss"]), float(n["cached_gaussian"])))
        else:
            numpy.random.set_state(n)


def build_state(epoch: int, step: int, model: Any = None, optimizer: Any = None, scheduler: Any = None,
                scaler: Any = None, extra: Any = None, rng: bool = True) -> Dict[str, Any]:
    """The dict a checkpoint holds (format ckptdb.torch/2): epoch, step, the
    state_dicts of the objects given, extra, and every RNG state (rng=True)."""
    st: Dict[str, Any] = {"format": FORMAT, "epoch": int(epoch), "step": int(step)}
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


def snapshot(obj: Any) -> Any:
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
# Loading: torch's safe loader by default
# ---------------------------------------------------------------------------

def _refusal(e):
    """The useful line of torch's weights_only refusal (its wording varies
    between versions and causes: "WeightsUnpickler error: Unsupported
    global: GLOBAL x.y ...", "Trying to load unsupported GLOBAL x.y ...")."""
    lines = [x.strip() for x in str(e).splitlines() if x.strip()]
    pick = next((x.split("WeightsUnpickler error:", 1)[1].strip() for x in lines if "WeightsUnpickler error:" in x),
                None)
    if pick is None:
        pick = next((x for x in lines if "GLOBAL" in x), None)
    if pick is None:
        rest = [x for x in lines[1:] if not x.startswith("Check the documentation")]
        pick = rest[-1] if rest else (lines[0] if lines else type(e).__name__)
    return re.split(r"\. Please use", pick)[0].strip().rstrip(".")


def _numpy_legacy_globals():
    """Exactly what numpy's legacy RNG state (a uint32 array in a tuple)
    needs from the unpickler: the ndarray reconstructor, ndarray, dtype and
    the uint32 dtype's class.  None where numpy or torch's allowlist API
    (torch >= 2.4/2.5: serialization.safe_globals) is missing."""
    ser = torch.serialization
    if not hasattr(ser, "safe_globals"):
        return None
    try:
        import numpy
    except ImportError:
        return None
    core = getattr(numpy, "_core", None)
    mod = getattr(core, "multiarray", None) if core is not None else None
    if mod is None:
        import numpy.core.multiarray as mod  # numpy 1.x
    rec = mod._reconstruct
    out = [rec, numpy.ndarray, numpy.dtype, type(numpy.dtype(numpy.uint32))]
    # A file written under the other numpy major names the reconstructor by
    # the other module path; torch takes (object, "qualified.name") pairs
    # where its documentation says so (2.6 and later).
    add = getattr(ser, "add_safe_globals", None)
    if add is not None and "tuple" in (add.__doc__ or ""):
        for name in ("numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct"):
            if name != "%s.%s" % (rec.__module__, rec.__qualname__):
                out.append((rec, name))
    return out


def load_checkpoint(path: StrPath, map_location: Any = "cpu", weights_only: bool = True,
                    trust_shared: bool = False) -> Any:
    """torch.load of one checkpoint file, the way every ckptdb resume does it.

    The file is opened once, without following a symbolic link, and torch
    reads that descriptor; it must belong to this user or root, else
    ckptdb.errors.UntrustedError names its owner and nothing is loaded
    (ckptdb.catalog.open_checkpoint).  trust_shared=True trusts files of
    other users (a directory shared on purpose).

    weights_only=True (the default): torch's safe loader; a file it refuses
    (objects other than tensors and plain types: unpickling it could run
    code) raises ckptdb.UnsafeCheckpoint naming the file, with nothing
    loaded.  One exception: a file of the earlier ckptdb format
    ("ckptdb.torch/1", whose numpy RNG state is a numpy array) is loaded
    again with exactly numpy's array reconstructor, ndarray and dtype
    allowlisted (torch.serialization.safe_globals; torch >= 2.5) and
    accepted only when it is such a file.  That allowlist is process-wide
    while the load runs (torch keeps one list).

    weights_only=False: the explicit opt-in for trusted files holding other
    objects, passed on to torch.load as given."""
    from .catalog import open_checkpoint
    path = os.fspath(path)
    with open_checkpoint(path, trust_shared=trust_shared) as f:
        if not weights_only:
            return torch.load(f, map_location=map_location, weights_only=False)
        try:
            return torch.load(f, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as e:
            reason = _refusal(e)
        globs = _numpy_legacy_globals()
        if globs is not None:
            f.seek(0)
            try:
                with torch.serialization.safe_globals(globs):
                    st = torch.load(f, map_location=map_location, weights_only=True)
            except pickle.UnpicklingError:
                st = None
            if isinstance(st, dict) and st.get("format") == FORMAT_V1:
                return st
    raise UnsafeCheckpoint(path, reason)


# ---------------------------------------------------------------------------
# Layouts: the one rule
# ---------------------------------------------------------------------------

# Top-level keys of a hand-written training dict, by role; the first name
# is the usual one, the others are common aliases.
_ROLES = (("model", ("model", "model_state_dict", "state_dict")),
          ("optimizer", ("optimizer", "optimizer_state_dict", "optim")),
          ("scheduler", ("scheduler", "scheduler_state_dict", "lr_scheduler")),
          ("scaler", ("scaler", "scaler_state_dict", "grad_scaler")),
          ("epoch", ("epoch",)),
          ("step", ("step", "global_step")),
          ("rng", ("rng",)),
          ("extra", ("extra",)))
_IDENTIFYING = {k for role, keys in _ROLES if role not in ("rng", "extra") for k in keys}


def _is_state_dict(obj):
    return bool(obj) and all(isinstance(v, torch.Tensor) or (isinstance(k, str) and k.endswith("_extra_state"))
                             for k, v in obj.items())


def _describe_keys(obj, limit=12):
    ks = sorted(map(str, obj.keys()))
    return ", ".join(repr(k) for k in ks[:limit]) + (", ..." if len(ks) > limit else "")


def checkpoint_layout(obj: Any, path: Optional[str] = None) -> str:
    """The layout of a loaded checkpoint, decided by one rule (in order):

    1. "ckptdb": a dict whose "format" is "ckptdb.torch/1" or
       "ckptdb.torch/2" (CheckpointManager, build_state, AsyncSaver and
       sharded saves write it);
    2. "state_dict": a non-empty dict whose every value is a tensor (keys
       ending in "_extra_state" may hold anything): a bare model state_dict;
    3. "training": a dict with at least one of the keys model, optimizer,
       scheduler, scaler, epoch, step or an alias of one (model_state_dict /
       state_dict, optimizer_state_dict / optim, scheduler_state_dict /
       lr_scheduler, scaler_state_dict / grad_scaler, global_step), whose
       model entry, if any, is a dict or None: the usual hand-written dict,
       any subset of it, and the LibTorch binding's checkpoints ({"epoch",
       "step", "model", "optimizer", "scheduler", "rng", "scaler", "extra"});
    anything else raises ckptdb.UnknownLayout (so does a "format" of a newer
    ckptdb, and a training dict naming one role twice, e.g. both "model" and
    "model_state_dict")."""
    where = " %s" % path if path else ""
    if not isinstance(obj, collections.abc.Mapping):
        raise UnknownLayout(3, "ckptdb: checkpoint%s holds a %s, not a dict: no layout that resume knows"
                            % (where, type(obj).__name__), "checkpoint_layout")
    fmt = obj.get("format")
    if isinstance(fmt, str) and fmt.startswith("ckptdb.torch/"):
        if fmt not in _FORMATS:
            raise UnknownLayout(3, "ckptdb: checkpoint%s has format %r; this ckptdb reads %s"
                                % (where, fmt, " and ".join(_FORMATS)), "checkpoint_layout")
        return "ckptdb"
    if _is_state_dict(obj):
        return "state_dict"
    keys = [k for k in obj.keys() if isinstance(k, str)]
    if any(k in _IDENTIFYING for k in keys):
        for role, names in _ROLES:
            present = [n for n in names if n in obj]
            if len(present) > 1:
                raise UnknownLayout(3, "ckptdb: checkpoint%s names its %s twice (%s): which one to load is "
                                    "ambiguous" % (where, role, " and ".join(map(repr, present))),
                                    "checkpoint_layout")
        model = next((obj[n] for n in _ROLES[0][1] if n in obj), None)
        if model is None or isinstance(model, collections.abc.Mapping):
            return "training"
    raise UnknownLayout(3, "ckptdb: checkpoint%s is a dict with keys %s: neither ckptdb's format, a training "
                        "dict (model/optimizer/scheduler/scaler/epoch/step) nor a bare state_dict of tensors"
                        % (where, _describe_keys(obj) or "(none)"), "checkpoint_layout")


def normalize_state(obj: Any, entry: Optional[Checkpoint] = None, path: Optional[str] = None) -> Dict[str, Any]:
    """A loaded checkpoint of any layout (checkpoint_layout) as one dict:
    ckptdb's own, {"format": FORMAT, "layout", "epoch", "step", "model",
    "optimizer", "scheduler", "scaler", "rng", "extra", "rng_per_rank"}
    (None where the file has nothing; "layout" names the file's layout).
    epoch and step come from the file, else from the catalog row `entry`,
    else 0.  Normalizing it again gives it back unchanged."""
    if path is None and entry is not None:
        path = entry.path
    layout = checkpoint_layout(obj, path)
    out = {"format": FORMAT, "layout": layout, "model": None, "optimizer": None, "scheduler": None,
           "scaler": None, "rng": None, "extra": None, "rng_per_rank": None, "epoch": None, "step": None}
    if layout == "state_dict":
        out["model"] = obj
    elif layout == "ckptdb":
        for k in ("model", "optimizer", "scheduler", "scaler", "rng", "extra", "rng_per_rank", "epoch", "step"):
            out[k] = obj.get(k)
        if obj.get("layout") in ("ckptdb", "training", "state_dict"):
            out["layout"] = obj["layout"]  # already normalized
    else:
        for role, names in _ROLES:
            for n in names:
                if n in obj:
                    out[role] = obj[n]
        rng = out["rng"]
        if not (isinstance(rng, collections.abc.Mapping) and {"torch", "cuda", "numpy", "random"} & set(rng)):
            out["rng"] = None  # not an RNG state this binding knows: left alone
    for k in ("epoch", "step"):
        v = out[k]
        out[k] = int(v) if v is not None else (int(getattr(entry, k)) if entry is not None else 0)
    return out


# ---------------------------------------------------------------------------
# Applying a checkpoint to live objects
# ---------------------------------------------------------------------------

class ResumeResult(tuple):
    """(epoch, step) of a resume, which also carries what load_state_dict
    reports: .missing_keys and .unexpected_keys of the model (empty unless
    strict=False), .layout of the file, .checkpoint (the catalog row, None
    on a fresh start) and .skipped (objects given whose state the file
    lacks: left as they were)."""

    missing_keys: List[str]
    unexpected_keys: List[str]
    layout: Optional[str]
    checkpoint: Optional[Checkpoint]
    skipped: List[str]

    def __new__(cls, epoch: int = 0, step: int = 0, missing_keys: Iterable[str] = (),
                unexpected_keys: Iterable[str] = (), layout: Optional[str] = None,
                checkpoint: Optional[Checkpoint] = None, skipped: Iterable[str] = ()) -> "ResumeResult":
        self = super().__new__(cls, (int(epoch), int(step)))
        self.missing_keys = list(missing_keys)
        self.unexpected_keys = list(unexpected_keys)
        self.layout = layout
        self.checkpoint = checkpoint
        self.skipped = list(skipped)
        return self

    @property
    def epoch(self) -> int:
        """The epoch resumed at (0 on a fresh start)."""
        return int(self[0])

    @property
    def step(self) -> int:
        """The global step resumed at (0 on a fresh start)."""
        return int(self[1])

    def __repr__(self) -> str:
        return "ResumeResult(epoch=%d, step=%d, missing_keys=%r, unexpected_keys=%r, layout=%r)" % (
            self[0], self[1], self.missing_keys, self.unexpected_keys, self.layout)


def _model_sd(norm, model):
    """The file's model state, with a DDP "module." prefix taken off when
    every key of the file has it and no key of the model does."""
    sd = norm["model"]
    own = unwrap(model).state_dict()
    if sd and all(isinstance(k, str) and k.startswith("module.") for k in sd) and not any(
            k.startswith("module.") for k in own):
        sd = type(sd)((k[len("module."):], v) for k, v in sd.items()) if isinstance(sd, dict) else {
            k[len("module."):]: v for k, v in sd.items()}
    return sd, own


def _check_fit(norm, path, model, optimizer, strict):
    """Everything that could make the load fail, checked before anything is
    loaded.  Returns the model state to load (or None)."""
    where = " %s" % path if path else ""
    sd = None
    if model is not None:
        if norm["model"] is None:
            if strict:
                raise StateMismatch("ckptdb: checkpoint%s (layout %r) holds no model state; pass strict=False to "
                                    "resume the rest" % (where, norm["layout"]),
                                    missing_keys=list(unwrap(model).state_dict()))
        else:
            sd, own = _model_sd(norm, model)
            missing = [k for k in own if k not in sd]
            unexpected = [k for k in sd if k not in own]
            sizes = ["%s: %s in the checkpoint, %s in the model" % (k, tuple(v.shape), tuple(own[k].shape))
                     for k, v in sd.items() if k in own and isinstance(v, torch.Tensor)
                     and isinstance(own[k], torch.Tensor) and v.shape != own[k].shape]
            if sizes:
                raise StateMismatch("ckptdb: checkpoint%s does not fit the model: size mismatch for %s"
                                    % (where, "; ".join(sizes)), missing, unexpected)
            if strict and (missing or unexpected):
                raise StateMismatch("ckptdb: checkpoint%s (layout %r) does not fit the model: missing keys %s, "
                                    "unexpected keys %s; nothing was loaded. Pass strict=False to load the keys "
                                    "that match" % (where, norm["layout"], missing, unexpected), missing, unexpected)
    osd = norm["optimizer"]
    if optimizer is not None and osd is not None:
        groups = osd.get("param_groups") if isinstance(osd, collections.abc.Mapping) else None
        if not isinstance(groups, (list, tuple)) or "state" not in osd:
            raise StateMismatch("ckptdb: checkpoint%s: its optimizer entry is not an optimizer state_dict "
                                "(no 'state' and 'param_groups')" % where)
        want = [len(g["params"]) for g in optimizer.param_groups]
        have = [len(g.get("params", ())) for g in groups]
        if want != have:
            raise StateMismatch("ckptdb: checkpoint%s does not fit the optimizer: parameter groups of %s "
                                "parameters in the checkpoint, %s in the optimizer" % (where, have, want))
    return sd


def _apply(norm, path, model=None, optimizer=None, scheduler=None, scaler=None, rng=True, strict=True,
           checkpoint=None):
    sd = _check_fit(norm, path, model, optimizer, strict)
    missing, unexpected, skipped = [], [], []
    if model is not None:
        if sd is not None:
            r = unwrap(model).load_state_dict(sd, strict=strict)
            if r is not None:
                missing, unexpected = list(r.missing_keys), list(r.unexpected_keys)
        else:
            missing = list(unwrap(model).state_dict())
            skipped.append("model")
    for name, obj in (("optimizer", optimizer), ("scheduler", scheduler), ("scaler", scaler)):
        if obj is None:
            continue
        st = norm[name]
        if st is None or (name == "scaler" and isinstance(st, collections.abc.Mapping) and not st):
            skipped.append(name)  # e.g. the LibTorch binding's {} of a disabled scaler
            continue
        obj.load_state_dict(st)
    if rng and norm["rng"] is not None:
        restore_rng(norm["rng"])
    return ResumeResult(norm["epoch"], norm["step"], missing, unexpected, norm["layout"], checkpoint, skipped)


def apply_state(st: Mapping[str, Any], model: Any = None, optimizer: Any = None, scheduler: Any = None,
                scaler: Any = None, rng: bool = True, strict: bool = True) -> ResumeResult:
    """Load a checkpoint of any layout (checkpoint_layout) into the given
    objects; returns a ResumeResult ((epoch, step) with the model's missing
    and unexpected keys).  A strict mismatch raises StateMismatch before
    anything is loaded."""
    return _apply(normalize_state(st), None, model, optimizer, scheduler, scaler, rng=rng, strict=strict)


# ---------------------------------------------------------------------------
# Resume
# ---------------------------------------------------------------------------

def auto_resume(cat: Catalog, model: Any, optimizer: Any = None, scheduler: Any = None, scaler: Any = None,
                map_location: Any = "cpu", kind: Optional[str] = None, rng: bool = True, strict: bool = True,
                weights_only: bool = True) -> ResumeResult:
    """Load the newest checkpoint whose bytes verify (a corrupt one is
    marked so and the next newest is tried) into the given objects and
    record the resume.  Any layout of checkpoint_layout is read.  Returns a
    ResumeResult: (epoch, step) of the checkpoint, or (0, 0) when there is
    none (a fresh start needs no flag); with strict=False it carries the
    model's missing and unexpected keys instead of raising.

    A file torch's safe loader refuses (UnsafeCheckpoint), a layout resume
    does not know (UnknownLayout) or a strict mismatch (StateMismatch)
    raises before anything is loaded, and the catalog is left as it was."""
    e = cat.latest(kind)
    if e is None:
        return ResumeResult(0, 0)
    raw = load_checkpoint(e.path, map_location=map_location, weights_only=weights_only, trust_shared=cat.trust_shared)
    result = _apply(normalize_state(raw, e), e.path, model, optimizer, scheduler, scaler, rng=rng, strict=strict,
                    checkpoint=e)
    if not cat.readonly:
        cat.mark_resumed(e.id)
    return result


# ---------------------------------------------------------------------------
# Asynchronous saves
# ---------------------------------------------------------------------------

class AsyncSaver:
    """One asynchronous save in flight at a time.  save() copies the state
    to CPU on the caller's thread, then torch.save and the commit run on a
    background thread (the library's calls release the GIL).  An error of a
    background save is raised by the next save() or wait()."""

    def __init__(self, cat: Catalog) -> None:
        self.cat = cat
        self._thread = None
        self._error = None
        self._last = None
        self.copy_seconds = 0.0

    def save(self, state: Any, kind: str, epoch: int, step: int, metrics: Optional[Mapping[str, Any]] = None,
             name: Optional[str] = None, copied: bool = False) -> None:
        """Copy the state to CPU memory here (unless copied=True: it already is
        a copy), then write and commit it on a background thread.  Waits for
        the save in flight first, raising its error."""
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

    def wait(self) -> Optional[Checkpoint]:
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
    def in_flight(self) -> bool:
        """True while a save runs on the background thread."""
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
# Sharded (DCP) state: which part is whose
# ---------------------------------------------------------------------------

_log = logging.getLogger("ckptdb")
#: The key of the state every rank shares (format, epoch, step, scheduler,
#: scaler, extra): one value, saved by rank 0.
_COMMON_KEY = "ckptdb"
_RANK_KEY = re.compile(r"^rank(\d+)-of-(\d+)$")


def _rank_key(rank, world):
    """The key of one rank's own state (its RNG; its model and optimizer
    when they are each rank's own)."""
    return "rank%d-of-%d" % (rank, world)


def _sharded_model(model):
    """True when the model's parameters are split over the ranks: DTensor
    (FSDP2 fully_shard, tensor parallel) or FSDP1."""
    if model is None:
        return False
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:
        DTensor = ()
    if any(isinstance(p, DTensor) for p in model.parameters()):
        return True
    try:
        from torch.distributed.fsdp import FullyShardedDataParallel
    except ImportError:
        return False
    return any(isinstance(m, FullyShardedDataParallel) for m in model.modules())


def _rank_local(model):
    """True when each rank's model (and optimizer) state is its own: neither
    sharded (_sharded_model) nor replicated by DistributedDataParallel.
    DCP saves sharded and replicated state once, under "model"/"optim", and
    any number of ranks loads it; each rank's own state goes under its key
    and loads only on as many ranks."""
    return model is not None and not _sharded_model(model) and not isinstance(
        model, torch.nn.parallel.DistributedDataParallel)


def _dcp_layout(saved):
    """(world, rank_local) of a DCP checkpoint CheckpointManager saved, from
    its keys (the DCP metadata's state_dict_metadata): the number of ranks
    that saved it, and whether the model's state is each rank's own;
    (None, False) when the manager did not save it."""
    if not any(k == _COMMON_KEY or k.startswith(_COMMON_KEY + ".") for k in saved):
        return None, False
    world, rank_local = None, False
    for k in saved:
        head, _, rest = k.partition(".")
        m = _RANK_KEY.match(head)
        if m:
            world = int(m.group(2))
            rank_local = rank_local or rest.startswith(("model.", "optim."))
    return world, rank_local


# ---------------------------------------------------------------------------
# The manager
# ---------------------------------------------------------------------------

class CheckpointManager:
    """The whole checkpoint workflow of a training script in a few lines:

        mgr = CheckpointManager("ckpts", model, optimizer, scheduler, scaler)
        epoch, step = mgr.resume()                 # (0, 0) on a fresh start
        ...  after every step:   if mgr.step(epoch, step, end_of_epoch=last_step_of_epoch): break
        ...  after every epoch:  if mgr.epoch_end(epoch, step, metrics={...}): break
        mgr.close()

    Defaults are the production ones: save every 5 epochs or every 15
    minutes, whichever comes first; keep what the library's default policy
    keeps (5 "epoch" and 3 "time" checkpoints, a "preempt" one until a
    newer one exists; keep_epoch and keep_time change those two); SIGTERM and
    SIGINT (and SIGUSR1) only set a flag, and the next step() or epoch_end()
    saves a "preempt" checkpoint and returns True so the loop can exit 0.

    One decision per step: the step that ends an epoch passes
    end_of_epoch=True, and the epoch_end() call that follows at the same
    step decides its kind once (preempt > epoch > step > time), so a step
    that ends an epoch and is also due by time is saved once, as "epoch".
    A loop that does not pass end_of_epoch still gets its epoch checkpoint:
    epoch_end() saves it when due even right after step() saved the same
    step as "time" or "step" (then that step is saved twice).

    Resume reads every layout of checkpoint_layout with torch's safe
    loader (weights_only=True; weights_only=False opts in to full
    unpickling of trusted files) and returns a ResumeResult.
    trust_shared=True opens the catalog with CKPTDB_OPEN_TRUST_SHARED and
    loads checkpoint files other users own (a directory shared on purpose);
    without it those raise ckptdb.errors.UntrustedError (Catalog).

    Catalog events go to logging.getLogger("ckptdb"); on_event(event)
    receives each as a ckptdb.Event (event, checkpoint_id, detail,
    directory), on the thread that caused it (a background save's thread
    for async_save).  An exception it raises is logged at ERROR with its
    traceback and kept in mgr.cat.event_errors; it never stops training.
    Only rank 0 has the catalog, so only rank 0 sees events.

    Under torch.distributed (replicated training, DDP) rank 0 alone opens
    the catalog and saves; every rank resumes from the checkpoint rank 0
    picked; the decision to save (and to stop) is agreed by all ranks.

    sharded=True: every rank saves through torch.distributed.checkpoint
    (DCP) into one directory checkpoint (ckptdb.dcp.Writer; rank 0
    commits it).  Model and optimizer state come from DCP's get_state_dict
    and go back through set_state_dict.  A sharded model (DTensor: FSDP2
    fully_shard, tensor parallel; or FSDP1) or a replicated one
    (DistributedDataParallel) is saved once, under "model" and "optim",
    and resumes on any number of ranks (DCP reshards it); any other model
    is each rank's own state, saved under the rank's key "rank<R>-of-<N>",
    and resumes only on N ranks.  Each rank's RNG state goes under its key
    and is restored when the world size is the same; scheduler, scaler,
    epoch, step and extra are one value rank 0 saves (key "ckptdb").
    Resume takes the newest checkpoint that fits and verifies, agreed by
    all ranks: a DCP checkpoint fits unless it holds each rank's own state
    and another number of ranks saved it; a flat per-rank checkpoint (the
    format sharded=True wrote before, ckptdb.distributed.save_sharded) fits
    on as many ranks as saved it; a single-file checkpoint (sharded=False)
    fits unless the model is sharded, and every rank loads it as replicated
    state; a directory that is no DCP checkpoint of this manager never
    fits.  One that does not fit is skipped with a warning (the "ckptdb"
    logger, naming both world sizes where they differ); when checkpoints
    exist but none fits, every rank raises StateMismatch naming them and
    both world sizes, and no resume is recorded.  The ResumeResult of a
    DCP checkpoint has layout "dcp"; strict=False lets keys the checkpoint
    lacks keep their values (DCP's allow_partial_load) and lists the
    model's in missing_keys.  async_save does not apply to sharded saves.
    """

    def __init__(self, directory: StrPath, model: Any = None, optimizer: Any = None, scheduler: Any = None,
                 scaler: Any = None, every_epochs: int = 5, every_seconds: float = 900.0, every_steps: int = 0,
                 keep_epoch: Optional[int] = None, keep_time: Optional[int] = None,
                 retention: Optional[Policy] = None,
                 signals: Iterable[int] = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1), async_save: bool = False,
                 map_location: Any = "cpu", requeue_on_preempt: bool = False, sharded: bool = False,
                 extra: Any = None, clock: Optional[Callable[[], float]] = None, weights_only: bool = True,
                 on_event: Optional[Callable[[Event], object]] = None, trust_shared: bool = False) -> None:
        self.directory = os.fspath(directory)
        self.model, self.optimizer, self.scheduler, self.scaler = model, optimizer, scheduler, scaler
        self.extra = extra
        self.map_location = map_location
        self.weights_only = weights_only
        self.trust_shared = bool(trust_shared)
        self.sharded = sharded
        self.every_epochs = int(every_epochs)
        self.dist = _dist()
        self.rank = self.dist.get_rank() if self.dist else 0
        self.world = self.dist.get_world_size() if self.dist else 1
        self.resumed_from = None
        self.last_saved = None
        self.stopped = False
        self.cat = None
        self._last = None  # (step, kind, epoch) of the last save or resume the trigger knows
        if retention is None:
            # The library's default policy; keep_epoch and keep_time change
            # only their own kind.
            keep = _lib.default_keep_last()
            if keep_epoch is not None:
                keep["epoch"] = keep_epoch
            if keep_time is not None:
                keep["time"] = keep_time
            retention = Retention(keep_last=keep)
        if self.rank == 0:
            cb = None
            if on_event is not None:
                box = []

                def cb(event, checkpoint_id, detail, _f=on_event, _box=box, _dir=self.directory):
                    _f(Event(event, checkpoint_id, detail, _box[0] if _box else _dir))
            self.cat = Catalog(self.directory, retention=retention, requeue_on_preempt=requeue_on_preempt,
                               on_event=cb, trust_shared=self.trust_shared)
            if on_event is not None:
                box.append(self.cat.directory)
        self.trigger = Trigger(every_epochs=every_epochs, every_steps=every_steps, every_seconds=every_seconds,
                               watch_signals=True, clock=clock)
        if signals:
            install_signals(signals)
        self.async_saver = AsyncSaver(self.cat) if (async_save and self.cat is not None and not sharded) else None

    # -- resume ------------------------------------------------------------
    def resume(self, strict: bool = True, weights_only: Optional[bool] = None) -> ResumeResult:
        """Load the newest checkpoint that verifies (agreed by all ranks)
        into the manager's objects; returns a ResumeResult: (epoch, step),
        (0, 0) when starting fresh, with the model's missing and unexpected
        keys when strict=False.  weights_only: None takes the manager's
        (True unless it was built with weights_only=False).  A refused file,
        an unknown layout or a strict mismatch raises on every rank before
        anything is loaded, and the catalog is left as it was."""
        wo = self.weights_only if weights_only is None else weights_only
        pick = None
        if self.rank == 0:
            if self.sharded:
                try:
                    pick = self._pick_sharded()
                except Exception as x:  # told to every rank, so none waits
                    pick = {"raise": x} if not self.dist else {"error": "rank 0: %s" % x}
            else:
                e = self.cat.latest()
                pick = {"how": "file", "entry": e} if e is not None else None
        if self.dist:
            pick = _broadcast(pick, self.dist)
        if pick is None:
            return ResumeResult(0, 0)
        if "raise" in pick:
            raise pick["raise"]
        if "error" in pick:
            raise StateMismatch("ckptdb: cannot resume: " + pick["error"])
        e = pick["entry"]
        result, err = None, None
        try:
            if pick["how"] == "dcp":
                result = self._load_dcp(pick, wo, strict)
            elif pick["how"] == "flat":
                result = self._load_flat(pick, wo, strict)
            else:
                result = self._load_file(e, wo, strict)
        except Exception as x:
            err = x
        if self.dist:  # every rank fails alike, or none does
            errs = [None] * self.world
            self.dist.all_gather_object(errs, None if err is None else "rank %d: %s" % (self.rank, err))
            if err is None and any(errs):
                err = Error(1, "ckptdb: resume failed on another rank: %s" % "; ".join(x for x in errs if x))
        if err is not None:
            raise err
        if self.rank == 0:
            self.cat.mark_resumed(e.id)
            self.resumed_from = self.cat.get(e.id)
        else:
            self.resumed_from = e
        self._resumed(result, e)
        return result

    def _load_file(self, e, wo, strict):
        """One file every rank loads (replicated state); each rank restores
        its own RNG when the save had as many ranks."""
        raw = load_checkpoint(e.path, map_location=self.map_location, weights_only=wo, trust_shared=self.trust_shared)
        norm = normalize_state(raw, e)
        result = _apply(norm, e.path, self.model, self.optimizer, self.scheduler, self.scaler, strict=strict,
                        checkpoint=e)
        per_rank = norm["rng_per_rank"]
        if per_rank is not None and len(per_rank) == self.world:
            restore_rng(per_rank[self.rank])
        return result

    def _load_flat(self, pick, wo, strict):
        """The flat per-rank format (ckptdb.distributed.save_sharded): each
        rank its own file, on as many ranks as saved it."""
        from . import distributed as cdist
        e = pick["entry"]

        def prepare(raw, entry, path):
            norm = normalize_state(raw, entry, path)
            _check_fit(norm, path, self.model, self.optimizer, strict)
            return norm

        norm = cdist.load_flat(pick["paths"], e, map_location=self.map_location, weights_only=wo, prepare=prepare,
                               trust_shared=self.trust_shared)
        return _apply(norm, None, self.model, self.optimizer, self.scheduler, self.scaler, strict=strict,
                      checkpoint=e)

    # -- sharded (DCP) checkpoints ------------------------------------------
    def _dcp_template(self, rank_local, world):
        """The manager's state as DCP saves and loads it (see _dcp_layout):
        model and optimizer through DCP's get_state_dict (DTensor/FSDP state
        reshards), under "model"/"optim" or under this rank's own key."""
        from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict
        mine = {}
        st = {_rank_key(self.rank, world): mine}
        where = mine if rank_local else st
        if self.model is not None:
            where["model"] = get_model_state_dict(self.model)
            if self.optimizer is not None:
                where["optim"] = get_optimizer_state_dict(self.model, self.optimizer)
        elif self.optimizer is not None:
            raise ValueError("ckptdb: CheckpointManager(sharded=True) saves an optimizer only with its model "
                             "(DCP names optimizer state by the model's parameter names)")
        return st, mine

    def _save_dcp(self, kind, epoch, step, metrics, name):
        import torch.distributed.checkpoint as dcp
        from . import dcp as ckdcp
        st, mine = self._dcp_template(_rank_local(self.model), self.world)
        mine["rng"] = (capture_rng(),)  # a tuple: one value (BYTE_IO) for DCP, not a dict to flatten
        if self.rank == 0:
            common = {"format": FORMAT, "epoch": int(epoch), "step": int(step)}
            for k, obj in (("scheduler", self.scheduler), ("scaler", self.scaler)):
                if obj is not None:
                    common[k] = obj.state_dict()
            if self.extra is not None:
                common["extra"] = self.extra
            st[_COMMON_KEY] = (common,)
        w = ckdcp.Writer(self.cat if self.rank == 0 else self.directory, kind=kind, epoch=epoch, step=step,
                         name=name, metrics=dict(metrics) if metrics else None)
        try:
            dcp.save(st, storage_writer=w, no_dist=self.dist is None)
            e = w.checkpoint
        finally:
            w.close()
        return _broadcast(e, self.dist) if self.dist else e

    def _load_dcp(self, pick, wo, strict):
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint import DefaultLoadPlanner
        from torch.distributed.checkpoint.state_dict import (StateDictOptions, set_model_state_dict,
                                                             set_optimizer_state_dict)
        from . import dcp as ckdcp
        e, saved_world, rank_local = pick["entry"], pick["world"], pick["rank_local"]
        st, mine = self._dcp_template(rank_local, saved_world if rank_local else self.world)
        same_world = saved_world == self.world
        if same_world:
            mine["rng"] = (None,)
        elif not rank_local:
            del st[_rank_key(self.rank, self.world)]  # another world's RNG streams: not restored
        st[_COMMON_KEY] = (None,)
        where = mine if rank_local else st
        prefix = (_rank_key(self.rank, saved_world) + ".") if rank_local else ""
        r = ckdcp.Reader(self.cat if self.rank == 0 else self.directory, id=e.id, weights_only=wo,
                         mark_resumed=False, verify=False)
        dcp.load(st, storage_reader=r, planner=DefaultLoadPlanner(allow_partial_load=not strict),
                 no_dist=self.dist is None)
        saved = r.metadata.state_dict_metadata
        missing, skipped = [], []
        if self.model is not None:
            missing = [k for k in where["model"] if "%smodel.%s" % (prefix, k) not in saved]
            opts = StateDictOptions(strict=strict)
            set_model_state_dict(self.model, where["model"], options=opts)
            if self.optimizer is not None:
                set_optimizer_state_dict(self.model, self.optimizer, where["optim"], options=opts)
        common = st[_COMMON_KEY][0] or {}
        for k, obj in (("scheduler", self.scheduler), ("scaler", self.scaler)):
            if obj is None:
                continue
            if common.get(k) is None:
                skipped.append(k)
            else:
                obj.load_state_dict(common[k])
        if same_world and mine["rng"][0] is not None:
            restore_rng(mine["rng"][0])
        return ResumeResult(common.get("epoch", e.epoch), common.get("step", e.step), missing, (), "dcp", e, skipped)

    def _pick_sharded(self):
        """Rank 0: the newest checkpoint that fits this job and verifies, and
        how every rank loads it: {"how": "dcp" | "flat" | "file", "entry",
        ...}; None when there is none; {"error"} when checkpoints exist but
        none fits (each skipped one was logged with its reason)."""
        from . import dcp as ckdcp
        from . import distributed as cdist
        cat, skipped = self.cat, []
        for e in cat.newest_first():
            files = cat.files(e.id)
            why, pick = None, {"entry": e}
            if e.layout == "dir":
                if not any(f.name == ckdcp.METADATA_FILE for f in files):
                    why = "a directory checkpoint without %s (no DCP checkpoint)" % ckdcp.METADATA_FILE
                else:
                    try:
                        md = ckdcp.decode_metadata(cat.read(e.id, file=ckdcp.METADATA_FILE))
                    except Exception:
                        cat.verify(e.id)  # a bad metadata file: marked corrupt, passed over
                        continue
                    world, rank_local = _dcp_layout(md.state_dict_metadata)
                    if world is None:
                        why = "a DCP checkpoint CheckpointManager did not save (no %r)" % _COMMON_KEY
                    elif rank_local and world != self.world:
                        why = "%s, and its state is each rank's own (it cannot be resharded)" % (
                            cdist.world_mismatch(world, self.world))
                    pick.update(how="dcp", world=world, rank_local=rank_local)
            elif len(files) > 1:
                if len(files) != self.world:
                    why = "flat per-rank files, %s" % cdist.world_mismatch(len(files), self.world)
                pick.update(how="flat", paths=cdist.flat_paths(cat, e))
            else:
                if _sharded_model(self.model):
                    why = "one file (replicated state) and the model is sharded over the ranks"
                pick.update(how="file")
            if why is not None:
                _log.warning("ckptdb: checkpoint %s skipped: %s", e.name, why)
                skipped.append("%s (%s)" % (e.name, why))
                continue
            if cat.verify(e.id):  # one that fails is marked corrupt and passed over
                return pick
        if skipped:
            return {"error": "no checkpoint in %s fits this job of %d ranks: %s" % (
                cat.directory, self.world, "; ".join(skipped))}
        return None

    def _resumed(self, result, e):
        self.trigger.resumed(result.step)
        self._last = (result.step, e.kind, result.epoch)

    # -- the loop ----------------------------------------------------------
    def step(self, epoch: int, step: int, metrics: Optional[Mapping[str, Any]] = None,
             end_of_epoch: bool = False) -> bool:
        """Call after every completed step (epoch = completed epochs, step =
        global step).  Saves when the trigger says so; returns True when the
        loop should stop (a preemption signal arrived and its checkpoint is
        saved).  end_of_epoch=True on the step that ends an epoch leaves the
        save decision to the epoch_end() that follows at the same step (one
        save, kind "epoch" when due), except that a preemption signal still
        saves at once."""
        return self._maybe_save(epoch, step, False, metrics, only_preempt=end_of_epoch)

    def epoch_end(self, epoch: int, step: int, metrics: Optional[Mapping[str, Any]] = None) -> bool:
        """Call after every completed epoch (epoch = completed epochs, from 1)."""
        stop = self._maybe_save(epoch, step, True, metrics)
        if self.cat is not None:
            self.cat.progress(epoch, step)
        return stop

    def _epoch_due(self, epoch):
        return self.every_epochs > 0 and epoch % self.every_epochs == 0

    def _maybe_save(self, epoch, step, epoch_end, metrics, only_preempt=False):
        kind = self.trigger.check(epoch, step, epoch_end)
        if only_preempt and kind != "preempt":
            kind = None
        if self.dist:
            t = torch.tensor([_KIND_CODES[kind]], dtype=torch.int64)
            self.dist.all_reduce(t, op=self.dist.ReduceOp.MAX)
            kind = _CODE_KINDS[int(t.item())]
        if (kind is None and epoch_end and self._epoch_due(epoch) and self._last is not None
                and self._last[0] == step and not (self._last[1] == "epoch" and self._last[2] == epoch)):
            # The trigger answers once per step; this step was saved (or
            # resumed from) as something else before epoch_end() came: a
            # two-call loop's time or step save.  The epoch checkpoint is
            # never dropped.
            kind = "epoch"
        if kind is None:
            return False
        if kind == "preempt" and self.async_saver is not None:
            self.async_saver.wait()  # a preemption waits for the save in flight, then saves
        self.save(kind, epoch, step, metrics)
        self.trigger.saved(step)
        self._last = (step, kind, epoch)
        if kind == "preempt":
            if self.async_saver is not None:
                self.async_saver.wait()
            self.stopped = True
            return True
        return False

    def save(self, kind: str, epoch: int, step: int, metrics: Optional[Mapping[str, Any]] = None,
             name: Optional[str] = None) -> Optional[Checkpoint]:
        """Save now (every rank calls it under torch.distributed)."""
        if self.sharded:
            self.last_saved = self._save_dcp(kind, epoch, step, metrics, name)
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

    def wait(self) -> Optional[Checkpoint]:
        """Wait for an asynchronous save in flight (raising its error); returns
        the last checkpoint saved, or None."""
        if self.async_saver is not None:
            e = self.async_saver.wait()
            if e is not None:
                self.last_saved = e
        return self.last_saved

    @property
    def preempted(self) -> int:
        """The preemption signal received (0 if none)."""
        return preempt_requested()

    def close(self) -> None:
        """Wait for a save in flight and close the catalog (the run ends
        clean, or preempted when a signal arrived)."""
        try:
            self.wait()
        finally:
            if self.cat is not None:
                self.cat.close()
            self.trigger.close()

    def __enter__(self) -> "CheckpointManager":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ += ["Error", "clear_preempt"]
