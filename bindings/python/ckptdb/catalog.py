"""Pythonic objects over the C ABI: Catalog, Save, Checkpoint, Retention."""

from __future__ import annotations

import collections
import ctypes
import io
import json
import logging
import os
import sys
import threading
from ctypes import byref, c_char_p, c_int, c_int64, c_size_t, c_void_p
from types import TracebackType
from typing import (Any, BinaryIO, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Type, Union,
                    overload)

from . import _lib
from ._lib import enc, lib, s
from .errors import Error

__all__ = ["Catalog", "Checkpoint", "Save", "Retention", "FileInfo", "PruneItem", "Event", "rebuild", "sync",
           "open_checkpoint", "version", "logger", "EVENT_LEVELS"]

logger = logging.getLogger("ckptdb")

#: A directory or file name: str or os.PathLike.
StrPath = Union[str, "os.PathLike[str]"]
#: A checkpoint named by its id, its name or its Checkpoint.
CheckpointRef = Union[int, str, "Checkpoint"]
#: A retention policy: a Retention, its keyword arguments as a dict, or
#: "default" (the library's default policy).
Policy = Union["Retention", Mapping[str, Any], str]
#: progress(done_bytes, total_bytes); a true return stops the operation, which
#: raises CallbackStopped (CKPTDB_ECALLBACK).
Progress = Callable[[int, int], object]

# The level each catalog event is logged at on the "ckptdb" logger; an event
# not listed (a later library may add some) is logged at INFO.
EVENT_LEVELS = {
    "begun": logging.DEBUG, "committed": logging.INFO, "resumed": logging.INFO, "pruned": logging.INFO,
    "pinned": logging.INFO, "unpinned": logging.INFO, "restored": logging.INFO, "run_ended": logging.INFO,
    "rebuilt": logging.INFO, "adopted": logging.INFO, "synced": logging.INFO, "requeued": logging.WARNING, "aborted": logging.WARNING, "corrupt": logging.WARNING,
    "recovered": logging.WARNING, "link_failed": logging.WARNING, "prune_failed": logging.WARNING,
    "catalog_behind": logging.WARNING, "requeue_failed": logging.ERROR, "recovery_failed": logging.ERROR,
    "reserve_released": logging.WARNING, "reserve_restored": logging.INFO, "reserve_unavailable": logging.WARNING,
}


class Event(collections.namedtuple("Event", "event checkpoint_id detail directory")):
    """One catalog event as it happens: event ("committed", "pruned",
    "corrupt", "resumed", "recovered", "requeued", ... see capi/ckptdb.h),
    checkpoint_id (0 when none), detail (the library's text: for "pruned"
    the retention rule, for "corrupt" the reason) and the catalog's
    directory."""

    __slots__ = ()
    event: str
    checkpoint_id: int
    detail: str
    directory: str

    def message(self) -> str:
        """The line logged for this event: "ckptdb DIR: committed checkpoint 3"."""
        what = self.event if not self.checkpoint_id else "%s checkpoint %d" % (self.event, self.checkpoint_id)
        if self.event == "pruned" and self.detail:
            what += " (rule %s)" % self.detail
        elif self.detail:
            what += ": %s" % self.detail
        return "ckptdb %s: %s" % (self.directory, what)


def _dispatch(ev, callback, errors):
    """Log one event and hand it to the user's callback.  Called from the C
    library (no exception may cross it): a callback that raises is logged at
    ERROR with its traceback on the "ckptdb" logger (Python's last-resort
    handler prints it even where logging is not configured) and kept in
    `errors`."""
    try:
        level = EVENT_LEVELS.get(ev.event, logging.INFO)
        if ev.event == "run_ended" and ev.detail.startswith("crashed"):
            level = logging.WARNING  # found by the next open: an earlier process died
        logger.log(level, "%s", ev.message())
    except Exception:  # a broken handler must not lose the event for the callback
        pass
    if callback is None:
        return
    try:
        callback(ev)
    except BaseException as e:  # KeyboardInterrupt too: it cannot cross the C ABI either
        errors.append(e)
        try:
            logger.error("ckptdb %s: the on_event callback %r raised on event %r of checkpoint %d", ev.directory,
                         callback, ev.event, ev.checkpoint_id, exc_info=(type(e), e, e.__traceback__))
        except Exception:
            import traceback
            traceback.print_exception(type(e), e, e.__traceback__, file=sys.stderr)


class Checkpoint:
    """One catalog row, copied out of the library (no borrowed strings)."""

    __slots__ = ("id", "name", "path", "kind", "epoch", "step", "size", "checksum", "status", "pinned", "run_id",
                 "file_count", "created_at", "committed_at", "deleted_at", "metadata", "layout",
                 "commit_seq")
    id: int
    name: str
    path: str  #: absolute path of the (first) file
    kind: str
    epoch: int
    step: int
    size: int
    checksum: str  #: XXH3-128, as xxh128sum prints it
    status: str  #: "writing", "complete", "corrupt", "aborted" or "pruned"
    pinned: bool
    run_id: int
    file_count: int
    created_at: str
    committed_at: str
    deleted_at: str
    metadata: Dict[str, Any]
    layout: str  #: "file" (one file, or one per rank) or "dir" (path is the directory of its files)
    commit_seq: int  #: the commit order, larger is newer (what latest() orders by); 0 if never committed

    @classmethod
    def _from(cls, e: Any) -> "Checkpoint":
        c = cls()
        c.id = e.id
        c.name = s(e.name)
        c.path = s(e.path)
        c.kind = s(e.kind)
        c.epoch = e.epoch
        c.step = e.step
        c.size = e.size
        c.checksum = s(e.checksum)
        c.status = _lib.STATUS_NAMES.get(e.status, "unknown")
        c.pinned = bool(e.pinned)
        c.run_id = e.run_id
        c.file_count = e.file_count
        c.created_at = s(e.created_at)
        c.committed_at = s(e.committed_at)
        c.deleted_at = s(e.deleted_at)
        c.layout = "dir" if e.layout == _lib.LAYOUT_DIR else "file"
        c.commit_seq = e.commit_seq
        text = s(e.metadata) or "{}"
        try:
            c.metadata = json.loads(text)
        except ValueError:
            c.metadata = {}
        return c

    def __repr__(self) -> str:
        return "Checkpoint(id=%d, name=%r, kind=%r, epoch=%d, step=%d, status=%r)" % (
            self.id, self.name, self.kind, self.epoch, self.step, self.status)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Checkpoint) and all(getattr(self, a) == getattr(other, a) for a in self.__slots__)

    __hash__ = None  # type: ignore[assignment]


class FileInfo:
    """One file of a checkpoint (one per rank for a sharded save)."""

    __slots__ = ("rank", "name", "path", "size", "checksum")

    def __init__(self, rank: int, name: str, path: str, size: int, checksum: str) -> None:
        self.rank, self.name, self.path, self.size, self.checksum = rank, name, path, size, checksum

    def __repr__(self) -> str:
        return "FileInfo(rank=%d, name=%r, size=%d)" % (self.rank, self.name, self.size)


class PruneItem:
    """A checkpoint that prune deleted (or would delete, dry_run), and the
    retention rule that let it go."""

    __slots__ = ("id", "name", "size", "rule")

    def __init__(self, id: int, name: str, size: int, rule: str) -> None:
        self.id, self.name, self.size, self.rule = id, name, size, rule

    def __repr__(self) -> str:
        return "PruneItem(id=%d, name=%r, rule=%r)" % (self.id, self.name, self.rule)


class Retention:
    """A retention policy (ckptdb_retention) as data.

    keep_last: {kind: K} (K = -1 keeps all of that kind); None: the library's
    default (epoch 5, time 3, preempt and manual until superseded).  A dict
    replaces that list as a whole.  best_mode: "min" or "max".
    prune_corrupt: delete corrupt checkpoints too (rule "corrupt"), each
    hashed again first; only Catalog.prune honours it.  False (default):
    corrupt checkpoints are quarantined, their files kept.
    """

    def __init__(self, keep_last: Optional[Mapping[str, int]] = None, keep_last_default: int = -1,
                 keep_every_n_epochs: int = 0, keep_interval_seconds: int = 0, best_metric: Optional[str] = None,
                 best_mode: str = "min", best_k: int = 1, max_bytes: int = 0, prune_corrupt: bool = False) -> None:
        if best_mode not in ("min", "max"):
            raise ValueError("ckptdb.Retention: best_mode must be 'min' or 'max', not %r" % (best_mode,))
        self.keep_last = dict(keep_last) if keep_last is not None else None
        self.keep_last_default = _lib.i64(keep_last_default, "keep_last_default", _lib.INT32_MIN, _lib.INT32_MAX)
        self.keep_every_n_epochs = _lib.i64(keep_every_n_epochs, "keep_every_n_epochs")
        self.keep_interval_seconds = _lib.i64(keep_interval_seconds, "keep_interval_seconds")
        self.best_metric = best_metric
        self.best_mode = best_mode
        self.best_k = _lib.i64(best_k, "best_k", _lib.INT32_MIN, _lib.INT32_MAX)
        self.max_bytes = _lib.i64(max_bytes, "max_bytes")
        self.prune_corrupt = bool(prune_corrupt)

    def _c(self) -> Tuple[Any, Any]:
        """The C struct, and the objects it points into (kept alive by the caller)."""
        r = _lib.Retention()
        lib.ckptdb_retention_init(byref(r), _lib.RETENTION_VERSION)
        keep = None
        if self.keep_last is not None:
            keep = (_lib.KeepKind * max(1, len(self.keep_last)))()
            for i, (k, n) in enumerate(self.keep_last.items()):
                keep[i].version = _lib.KEEP_KIND_VERSION
                keep[i].kind = enc(k)
                keep[i].count = _lib.i64(n, "keep_last[%r]" % (k,), _lib.INT32_MIN, _lib.INT32_MAX)
            r.keep_last = ctypes.cast(keep, ctypes.POINTER(_lib.KeepKind))
            r.keep_last_count = len(self.keep_last)
        r.keep_last_default = self.keep_last_default
        r.keep_every_n_epochs = self.keep_every_n_epochs
        r.keep_interval_seconds = self.keep_interval_seconds
        r.best_metric = enc(self.best_metric)
        r.best_mode = _lib.BEST_MAX if self.best_mode == "max" else _lib.BEST_MIN
        r.best_k = self.best_k
        r.max_bytes = self.max_bytes
        r.prune_corrupt = 1 if self.prune_corrupt else 0
        return r, keep


def _buffer_address(data):
    """(address, length, keep-alive) of a contiguous buffer without copying it."""
    if isinstance(data, bytes):
        return ctypes.cast(c_char_p(data), c_void_p).value, len(data), data
    mv = memoryview(data)
    if not mv.contiguous:
        b = mv.tobytes()
        return ctypes.cast(c_char_p(b), c_void_p).value, len(b), b
    mv = mv.cast("B") if mv.format != "B" or mv.ndim != 1 else mv
    n = mv.nbytes
    if n == 0:
        return None, 0, mv
    if not mv.readonly:
        arr = (ctypes.c_char * n).from_buffer(mv)
        return ctypes.addressof(arr), n, (arr, mv)
    view = _PyBuffer()
    if _GetBuffer(ctypes.py_object(mv), byref(view), 0) != 0:  # PyBUF_SIMPLE
        b = mv.tobytes()
        return ctypes.cast(c_char_p(b), c_void_p).value, len(b), b
    return view.buf, n, _Released(view)


class _PyBuffer(ctypes.Structure):
    _fields_ = [("buf", c_void_p), ("obj", c_void_p), ("len", ctypes.c_ssize_t), ("itemsize", ctypes.c_ssize_t),
                ("readonly", c_int), ("ndim", c_int), ("format", c_char_p), ("shape", c_void_p),
                ("strides", c_void_p), ("suboffsets", c_void_p), ("internal", c_void_p)]


_GetBuffer = ctypes.pythonapi.PyObject_GetBuffer
_GetBuffer.argtypes = [ctypes.py_object, ctypes.POINTER(_PyBuffer), c_int]
_GetBuffer.restype = c_int
_ReleaseBuffer = ctypes.pythonapi.PyBuffer_Release
_ReleaseBuffer.argtypes = [ctypes.POINTER(_PyBuffer)]
_ReleaseBuffer.restype = None


class _Released:
    """Releases a Py_buffer when dropped (read-only buffers such as torch's memoryviews)."""

    __slots__ = ("view",)

    def __init__(self, view):
        self.view = view

    def __del__(self):
        _ReleaseBuffer(byref(self.view))


def _metadata_text(metrics, metadata):
    md = {}
    if metadata:
        if not isinstance(metadata, dict):
            raise TypeError("ckptdb: metadata must be a dict, not %s" % type(metadata).__name__)
        md.update(metadata)
    if metrics:
        if not isinstance(metrics, dict):
            raise TypeError("ckptdb: metrics must be a dict, not %s" % type(metrics).__name__)
        md.update(metrics)
    try:
        return json.dumps(md, allow_nan=False, default=_json_default)
    except ValueError as e:
        raise ValueError("ckptdb: metadata is not valid JSON: %s" % e) from None


def _json_default(o):
    # Tensors and numpy scalars of one element (a loss, an accuracy).
    item = getattr(o, "item", None)
    if callable(item):
        return item()
    raise TypeError("ckptdb: metadata value of type %s is not JSON serialisable" % type(o).__name__)


class Save(io.RawIOBase):
    """One save in progress: a write-only binary file whose bytes go to the
    checkpoint.  As a context manager it commits when the block succeeds and
    aborts when it raises; without one, call commit() or abort().

    mode "write": bytes pass through ckptdb_save_write (hashed as they pass,
    writeback started as they go).  mode "fd": bytes go to the library's own
    descriptor of the temp file with os.write (the library hashes the file
    on commit).  In both, temp_path names the temp file for code that wants
    to write it by path (torch.save(obj, save.temp_path)); such a save
    cannot also be written through write().
    """

    def __init__(self, handle: Any, mode: str) -> None:
        super().__init__()
        self._h: Any = handle
        self._lock = threading.Lock()
        self._mode = mode
        self._fd: Optional[int] = None
        self._path: Optional[str] = None
        #: The committed checkpoint, once commit() returned.
        self.entry: Optional[Checkpoint] = None
        if mode == "fd":
            fd = c_int(-1)
            lib.ckptdb_save_fd(byref(fd), self._h)
            self._fd = fd.value

    # -- io.RawIOBase ------------------------------------------------------
    def writable(self) -> bool:
        """True: a save is written, never read."""
        return True

    def write(self, data: Any) -> int:
        """Append bytes (any buffer) to the checkpoint; returns how many."""
        with self._lock:
            if self._h is None:
                raise ValueError("ckptdb: write to a save that was committed or aborted")
            if self._path is not None and self._mode == "write":
                raise _lib.error_for(2)(2, "ckptdb: the save's temp file is written by path; write() is not allowed")
            if self._fd is not None:
                mv = memoryview(data).cast("B")
                n = len(mv)
                done = 0
                while done < n:
                    done += os.write(self._fd, mv[done:])
                return n
            addr, n, keep = _buffer_address(data)
            if n:
                lib.ckptdb_save_write(self._h, addr, n)
            del keep
            return n

    def flush(self) -> None:
        """Nothing to do: bytes go to the file as they are written."""

    def fileno(self) -> int:
        """The temp file's descriptor (mode "fd" only)."""
        if self._fd is None:
            raise io.UnsupportedOperation("ckptdb: fileno() is available in mode 'fd' only")
        return self._fd

    # -- the save ----------------------------------------------------------
    @property
    def temp_path(self) -> str:
        """Absolute path of the temp file (the caller writes it, then commits)."""
        with self._lock:
            if self._path is None:
                p = c_char_p()
                lib.ckptdb_save_temp_path(byref(p), self._h)
                self._path = s(p.value)
            return self._path

    def commit(self) -> Checkpoint:
        """Make the checkpoint durable and visible; returns its Checkpoint."""
        with self._lock:
            if self._h is None:
                raise ValueError("ckptdb: the save was already committed or aborted")
            e = _lib.Entry.new()
            try:
                lib.ckptdb_save_commit(byref(e), self._h)
                self.entry = Checkpoint._from(e)
            finally:
                self._release()
            return self.entry

    def abort(self) -> None:
        """Give up the save: its temp file is removed, its row marked aborted."""
        with self._lock:
            if self._h is None:
                return
            try:
                lib.ckptdb_save_abort(self._h)
            finally:
                self._release()

    def _release(self) -> None:
        h, self._h, self._fd = self._h, None, None
        if h:
            lib.ckptdb_save_free(h)
        io.RawIOBase.close(self)

    def close(self) -> None:
        """Closing the file object without a commit aborts the save."""
        if getattr(self, "_h", None) is not None:
            self.abort()
        else:
            io.RawIOBase.close(self)

    def __enter__(self) -> "Save":
        return self

    def __exit__(self, et: Optional[Type[BaseException]], ev: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        if et is None:
            self.commit()
        else:
            self.abort()

    def __del__(self) -> None:
        try:
            if getattr(self, "_h", None) is not None:
                self.abort()
        except Exception:
            pass


class DirSave:
    """A directory checkpoint on its way (Catalog.begin_dir).  Its writers
    (ckptdb.distributed.DirFileWriter, in any process) fill its temp
    directory; commit(files) makes it a complete checkpoint in one step, or
    nothing.  Released without a commit (free(), close(), leaving a with
    block on an exception, garbage collection), it is aborted.

    Begun in place (begin_dir(..., in_place=True)), the files go straight
    into the final directory, written by any means (path); then
    commit_in_place() takes what the directory holds.  Until then the
    directory is the save's: an abort removes it with all in it."""

    def __init__(self, cat: "Catalog", handle: Any) -> None:
        self._cat = cat
        self._h = handle
        i = _lib.DirInfo.new()
        lib.ckptdb_dir_get_info(byref(i), handle)
        self.id: int = i.id  #: the checkpoint's row
        self.name: str = s(i.name)  #: the directory's final name
        self.temp_name: str = s(i.temp_name)  #: its temp directory, inside the checkpoint directory
        #: begun in place: the files go into the final directory (temp_name == name)
        self.in_place: bool = self.temp_name == self.name
        #: the absolute path where the files go: the final directory in place, else the temp directory
        self.path: str = os.path.join(cat.directory, self.temp_name)
        self.committed: Optional[Checkpoint] = None

    def _handle(self) -> Any:
        if self._h is None:
            raise ValueError("ckptdb: the directory save was released")
        return self._h

    def commit(self, files: Sequence[Mapping[str, Any]]) -> Checkpoint:
        """Commit the files (dicts with name, rank, size, checksum, as
        DirFileWriter.finish() returns them).  Bad input raises
        InvalidArgument and changes nothing; the save stays open."""
        arr = (_lib.DirFile * max(1, len(files)))()
        for i, f in enumerate(files):
            arr[i].version = _lib.DIR_FILE_VERSION
            arr[i].name = enc(f["name"], "name")
            arr[i].rank = _lib.i64(f["rank"], "rank")
            arr[i].size = _lib.i64(f["size"], "size")
            arr[i].checksum = enc(f["checksum"], "checksum")
        with self._cat._lock:
            e = _lib.Entry.new()
            lib.ckptdb_dir_commit(byref(e), self._handle(), arr, len(files))
            self.committed = Checkpoint._from(e)
        return self.committed

    def commit_in_place(self, metrics: Optional[Mapping[str, Any]] = None,
                        metadata: Optional[Mapping[str, Any]] = None) -> Checkpoint:
        """Commit a save begun in place with the files its directory holds
        (ckptdb_dir_commit_in_place): each is fsynced and hashed.  metrics
        and metadata (as begin_dir takes them) replace the begin's metadata
        in the commit's transaction, so retention by a metric sees them;
        both None keeps the begin's.  A subdirectory, a link or anything
        but a regular file in the directory, or no file at all, raises
        InvalidArgument naming it and changes nothing; the save stays open."""
        text = None if metrics is None and metadata is None else _metadata_text(metrics, metadata)
        with self._cat._lock:
            e = _lib.Entry.new()
            lib.ckptdb_dir_commit_in_place(byref(e), self._handle(),
                                           None if text is None else text.encode("utf-8"))
            self.committed = Checkpoint._from(e)
        return self.committed

    def abort(self) -> None:
        """Abort: the row "aborted", the temp directory removed (in place:
        the directory, with all in it)."""
        with self._cat._lock:
            lib.ckptdb_dir_abort(self._handle())

    def free(self) -> None:
        """Release the save (aborted when it was neither committed nor aborted)."""
        h, self._h = self._h, None
        if h is not None:
            with self._cat._lock:
                lib.ckptdb_dir_free(h)

    close = free

    def __enter__(self) -> "DirSave":
        return self

    def __exit__(self, et: Optional[Type[BaseException]], ev: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        self.free()

    def __del__(self) -> None:
        try:
            self.free()
        except Exception:
            pass


class Catalog:
    """The catalog of one checkpoint directory (ckptdb_open).

    retention: a Retention, "default" (the library's default policy: 5 epoch,
    3 time), or None (no rotation after commits).  readonly: no writes at all.
    create=False: fail with NotFound when the directory or catalog is missing.
    requeue_on_preempt: pass CKPTDB_OPEN_REQUEUE (under Slurm, a preemption
    signal requeues the job).  last_link: None "last.pt", "" none.
    trust_shared: pass CKPTDB_OPEN_TRUST_SHARED.  Without it the open
    raises UntrustedError for a directory writable by every user without
    the sticky bit, or a directory or catalog owned by another user than
    this one or root, and so does any read of a checkpoint file another user
    owns (latest, verify, read, load_latest); with it those are trusted (a
    directory shared on purpose; links are still never followed and nothing
    outside the directory is opened).
    Every catalog event goes to logging.getLogger("ckptdb") (EVENT_LEVELS:
    committed/resumed/pruned INFO, corrupt/recovered WARNING, ...), and to
    on_event(event, checkpoint_id, detail) when given; an exception raised
    by on_event is logged at ERROR with its traceback and kept in
    .event_errors (it cannot propagate through the C library).

    Methods may be called from any thread; one lock per handle serialises
    them (the library guards the shared connection itself).
    """

    def __init__(self, directory: StrPath, retention: Optional[Policy] = None, readonly: bool = False,
                 create: bool = True, catalog_name: Optional[str] = None, last_link: Optional[str] = None,
                 busy_timeout_ms: int = 0, requeue_on_preempt: bool = False,
                 on_event: Optional[Callable[[str, int, str], object]] = None, trust_shared: bool = False) -> None:
        self._h: Any = None
        self._lock = threading.RLock()
        o = _lib.OpenOptions()
        lib.ckptdb_open_options_init(byref(o), _lib.OPEN_OPTIONS_VERSION)
        o.flags = ((_lib.OPEN_READONLY if readonly else 0) | (0 if create else _lib.OPEN_NO_CREATE)
                   | (_lib.OPEN_REQUEUE if requeue_on_preempt else 0)
                   | (_lib.OPEN_TRUST_SHARED if trust_shared else 0))
        o.catalog_name = enc(catalog_name, "catalog_name")
        o.busy_timeout_ms = _lib.i64(busy_timeout_ms, "busy_timeout_ms", _lib.INT32_MIN, _lib.INT32_MAX)
        o.last_link = enc(last_link)
        # Every event reaches the "ckptdb" logger; on_event(event, checkpoint_id,
        # detail) is the user's.  The library calls back on the thread that
        # made the call (a background save's thread too), after the event's
        # transaction committed.
        # The callback holds no reference to self (no cycle: a dropped Catalog
        # still closes at once).
        self.event_errors: List[BaseException] = []
        errors = self.event_errors  # exceptions raised by on_event (each also logged at ERROR)
        where = [os.fspath(directory)]

        def user(ev: Event, _f: Any = on_event) -> None:
            _f(ev.event, ev.checkpoint_id, ev.detail)

        def cb(ev: bytes, cid: int, detail: bytes, _payload: Any) -> None:
            _dispatch(Event(s(ev), cid, s(detail), where[0]), user if on_event is not None else None, errors)
        self._event_cb = _lib.EVENT_CB(cb)
        o.on_event = self._event_cb
        h = _lib.catalog_p()
        lib.ckptdb_open(byref(h), enc(os.fspath(directory), "directory"), byref(o))
        self._h = h
        self.readonly = readonly
        self.trust_shared = bool(trust_shared)
        #: The checkpoint directory, absolute.
        self.directory: str = s(lib.ckptdb_dir(h))
        where[0] = self.directory
        self._retention_keep = None
        if retention is not None:
            self.set_retention(retention)

    # -- lifetime ----------------------------------------------------------
    def close(self) -> None:
        """Close the handle (also done at the end of a with block, or when collected)."""
        with self._lock:
            h, self._h = self._h, None
            if h:
                lib.ckptdb_close(h)

    @property
    def closed(self) -> bool:
        """True once close() ran."""
        return self._h is None

    def __enter__(self) -> "Catalog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if getattr(self, "_h", None):
                self.close()
        except Exception:
            pass

    def _handle(self) -> Any:
        if self._h is None:
            raise ValueError("ckptdb: the catalog is closed")
        return self._h

    # -- saving ------------------------------------------------------------
    def save(self, kind: str = "manual", epoch: int = 0, step: int = 0, metrics: Optional[Mapping[str, Any]] = None,
             metadata: Optional[Mapping[str, Any]] = None, name: Optional[str] = None, mode: str = "write") -> Save:
        """Begin a save; use it as `with cat.save(...) as f: torch.save(state, f)`.

        metrics and metadata are dicts merged into the row's JSON metadata.
        Returns a Save (a write-only binary file object)."""
        if mode not in ("write", "fd"):
            raise ValueError("ckptdb: save mode must be 'write' or 'fd', not %r" % (mode,))
        text = _metadata_text(metrics, metadata)
        with self._lock:
            o = _lib.SaveOptions()
            lib.ckptdb_save_options_init(byref(o), _lib.SAVE_OPTIONS_VERSION)
            o.name = enc(name, "name")
            o.metadata = text.encode("utf-8")
            h = _lib.save_p()
            lib.ckptdb_save_begin(byref(h), self._handle(), enc(kind, "kind"), _lib.i64(epoch, "epoch"),
                                  _lib.i64(step, "step"), byref(o))
        try:
            return Save(h, mode)
        except BaseException:
            lib.ckptdb_save_free(h)
            raise

    def commit_shards(self, files: Sequence[Mapping[str, Any]], kind: str = "manual", epoch: int = 0, step: int = 0,
                      metrics: Optional[Mapping[str, Any]] = None,
                      metadata: Optional[Mapping[str, Any]] = None) -> Checkpoint:
        """Commit one checkpoint made of the finished shards of every rank
        (files[i] is rank i: dicts with name, temp_name, size, checksum, as
        ShardWriter.finish() returns them), in one transaction.  Returns its
        Checkpoint.  The shards are freed by their writers afterwards."""
        if not _lib.HAS_SHARDS:
            raise _lib.error_for(2)(2, "ckptdb: this libckptdb has no sharded saves (ckptdb_commit_shards)")
        text = _metadata_text(metrics, metadata)
        arr = (_lib.ShardFile * max(1, len(files)))()
        for i, f in enumerate(files):
            arr[i].version = _lib.SHARD_FILE_VERSION
            arr[i].name = enc(f["name"])
            arr[i].temp_name = enc(f["temp_name"])
            arr[i].size = _lib.i64(f["size"], "size of rank %d" % i)
            arr[i].checksum = enc(f["checksum"])
        with self._lock:
            o = _lib.SaveOptions()
            lib.ckptdb_save_options_init(byref(o), _lib.SAVE_OPTIONS_VERSION)
            o.metadata = text.encode("utf-8")
            e = _lib.Entry.new()
            lib.ckptdb_commit_shards(byref(e), self._handle(), enc(kind, "kind"), _lib.i64(epoch, "epoch"),
                                     _lib.i64(step, "step"), byref(o), arr,
                                     len(files))
            return Checkpoint._from(e)

    def begin_dir(self, kind: str = "manual", epoch: int = 0, step: int = 0, name: Optional[str] = None,
                  metrics: Optional[Mapping[str, Any]] = None,
                  metadata: Optional[Mapping[str, Any]] = None, in_place: bool = False) -> "DirSave":
        """Begin a directory checkpoint (ckptdb_dir_begin): the save is
        recorded and its temp directory made.  Writers in any process fill it
        with ckptdb.distributed.DirFileWriter(directory, save.temp_name,
        name, rank); then save.commit(files) with what their finish()
        returned.  name: the directory's; None for the kind's default
        ("epoch_003", "step_000100").

        in_place=True (ckptdb_dir_begin_in_place; name required): no temp
        directory; the directory `name` itself is made (Exists when anything
        has that name; it is left untouched) and the caller writes its files
        into save.path by any means, then save.commit_in_place()."""
        if not _lib.HAS_DIRS:
            raise _lib.error_for(2)(2, "ckptdb: this libckptdb has no directory checkpoints (ckptdb_dir_begin)")
        if in_place and name is None:
            raise _lib.error_for(3)(
                3, "ckptdb: begin_dir(in_place=True) needs a name: the directory the files are written into")
        if in_place and not _lib.HAS_DIRS_IN_PLACE:
            raise _lib.error_for(2)(2, "ckptdb: this libckptdb has no in-place directory saves "
                                       "(ckptdb_dir_begin_in_place)")
        text = _metadata_text(metrics, metadata)
        with self._lock:
            o = _lib.SaveOptions()
            lib.ckptdb_save_options_init(byref(o), _lib.SAVE_OPTIONS_VERSION)
            o.metadata = text.encode("utf-8")
            if name is not None:
                o.name = enc(name, "name")
            h = _lib.dir_save_p()
            begin = lib.ckptdb_dir_begin_in_place if in_place else lib.ckptdb_dir_begin
            begin(byref(h), self._handle(), enc(kind, "kind"), _lib.i64(epoch, "epoch"), _lib.i64(step, "step"),
                  byref(o))
        return DirSave(self, h)

    def save_bytes(self, data: Any, kind: str = "manual", epoch: int = 0, step: int = 0, **kw: Any) -> Checkpoint:
        """Save a bytes-like object as one checkpoint and commit it (keywords as save())."""
        with self.save(kind, epoch, step, **kw) as f:
            f.write(data)
        assert f.entry is not None
        return f.entry

    # -- finding -----------------------------------------------------------
    def latest(self, kind: Optional[str] = None, verify: str = "full") -> Optional[Checkpoint]:
        """The newest complete checkpoint whose files verify (verify: "full",
        "size" or "none"), or None.  One that fails is marked corrupt and the
        next newest is tried."""
        flags = {"full": _lib.VERIFY_FULL, "size": _lib.VERIFY_SIZE, "none": _lib.VERIFY_NONE}.get(verify)
        if flags is None:
            raise ValueError("ckptdb: verify must be 'full', 'size' or 'none', not %r" % (verify,))
        with self._lock:
            e = _lib.Entry.new()
            rc = lib.ckptdb_latest(byref(e), self._handle(), enc(kind), flags)
            if rc == _lib.ENOTFOUND:
                return None
            if rc != _lib.OK:
                _lib.raise_for(rc, "ckptdb_latest")
            return Checkpoint._from(e)

    def get(self, id_or_name: Union[int, str]) -> Checkpoint:
        """One checkpoint by id or by name (any status); raises NotFound."""
        with self._lock:
            e = _lib.Entry.new()
            if isinstance(id_or_name, int):
                lib.ckptdb_get(byref(e), self._handle(), id_or_name)
            else:
                lib.ckptdb_get_by_name(byref(e), self._handle(), enc(id_or_name))
            return Checkpoint._from(e)

    def newest_first(self, kind: Optional[str] = None) -> List[Checkpoint]:
        """The complete checkpoints (of kind, if given), newest first in the
        order latest() walks: commit order (commit_seq), never a clock."""
        return sorted(self.entries(kind=kind, status="complete"), key=lambda c: c.commit_seq, reverse=True)

    def entries(self, kind: Optional[str] = None,
                status: Union[str, Iterable[str], None] = None) -> List[Checkpoint]:
        """Every checkpoint, oldest id first; status: a name or a list of names."""
        f = _lib.Filter()
        f.version = _lib.FILTER_VERSION
        if status is not None:
            names = [status] if isinstance(status, str) else list(status)
            mask = 0
            for n in names:
                if n not in _lib.STATUS_CODES:
                    raise ValueError("ckptdb: unknown status %r" % (n,))
                mask |= 1 << _lib.STATUS_CODES[n]
            f.status_mask = mask
        f.kind = enc(kind)
        out: List[Checkpoint] = []
        with self._lock:
            cur = _lib.cursor_p()
            lib.ckptdb_cursor_open(byref(cur), self._handle(), byref(f))
            try:
                e = _lib.Entry.new()
                while True:
                    e.struct_size = ctypes.sizeof(_lib.Entry)
                    rc = lib.ckptdb_cursor_next(byref(e), cur)
                    if rc == _lib.DONE:
                        break
                    if rc != _lib.OK:
                        _lib.raise_for(rc, "ckptdb_cursor_next")
                    out.append(Checkpoint._from(e))
            finally:
                lib.ckptdb_cursor_free(cur)
        return out

    def files(self, id_or_name: CheckpointRef) -> List[FileInfo]:
        """The files of a checkpoint, by rank."""
        cid = self._id(id_or_name)
        out: List[FileInfo] = []

        def cb(f: Any, _p: Any) -> int:
            f = f.contents
            out.append(FileInfo(f.rank, s(f.name), s(f.path), f.size, s(f.checksum)))
            return 0

        with self._lock:
            lib.ckptdb_files(self._handle(), cid, _lib.FILE_CB(cb), None)
        return out

    def events(self, checkpoint: Optional[CheckpointRef] = None) -> List[Dict[str, Any]]:
        """Event log rows (dicts), oldest first, optionally of one checkpoint."""
        cid = self._id(checkpoint) if checkpoint is not None else 0
        out: List[Dict[str, Any]] = []

        def cb(e: Any, _p: Any) -> int:
            e = e.contents
            out.append({"id": e.id, "at": s(e.at), "run_id": e.run_id, "checkpoint_id": e.checkpoint_id,
                        "event": s(e.event), "detail": s(e.detail)})
            return 0

        with self._lock:
            lib.ckptdb_events(self._handle(), cid, 0, _lib.EVENT_ROW_CB(cb), None)
        return out

    def runs(self) -> List[Dict[str, Any]]:
        """The runs table (dicts, oldest first): every process that wrote to the
        catalog, its host, Slurm job, what it resumed from, how it ended."""
        out: List[Dict[str, Any]] = []

        def cb(r: Any, _p: Any) -> int:
            r = r.contents
            out.append({f[0]: (s(getattr(r, f[0])) if f[1] is c_char_p else getattr(r, f[0]))
                        for f in _lib.Run._fields_ if f[0] != "struct_size"})
            return 0

        with self._lock:
            lib.ckptdb_runs(self._handle(), _lib.RUN_CB(cb), None)
        return out

    def _id(self, id_or_name: CheckpointRef) -> int:
        if isinstance(id_or_name, Checkpoint):
            return id_or_name.id
        if isinstance(id_or_name, int):
            return id_or_name
        return self.get(id_or_name).id

    # -- verifying and reading ---------------------------------------------
    @overload
    def verify(self, id_or_name: None = None, progress: Optional[Progress] = None) -> Tuple[int, int]: ...

    @overload
    def verify(self, id_or_name: CheckpointRef, progress: Optional[Progress] = None) -> bool: ...

    def verify(self, id_or_name: Optional[CheckpointRef] = None,
               progress: Optional[Progress] = None) -> Union[bool, Tuple[int, int]]:
        """Verify one checkpoint (True when whole; False when corrupt, and now
        marked so), or with no argument every complete one: returns
        (checked, corrupt).  progress(done, total) sees the bytes hashed of
        one checkpoint; a true return stops it."""
        with self._lock:
            if id_or_name is None:
                checked, corrupt = c_int64(0), c_int64(0)
                try:
                    lib.ckptdb_verify_all(byref(checked), byref(corrupt), self._handle(), _lib.VERIFY_CB(), None)
                except Error as e:
                    if e.code != _lib.ECORRUPT:
                        raise
                return checked.value, corrupt.value
            if progress is not None:
                cb = _lib.PROGRESS_CB(lambda done, total, _p: 1 if progress(done, total) else 0)
                rc = lib.ckptdb_verify_progress(self._handle(), self._id(id_or_name), cb, None)
            else:
                rc = lib.ckptdb_verify(self._handle(), self._id(id_or_name))
            if rc == _lib.ECORRUPT:
                return False
            if rc != _lib.OK:
                _lib.raise_for(rc, "ckptdb_verify")
            return True

    def read(self, id_or_name: CheckpointRef, rank: Optional[int] = None, file: Optional[str] = None) -> bytes:
        """The whole first file of a checkpoint (or the file of one rank of a
        sharded one, or the file of that name, inside the directory of a
        directory checkpoint), checked against its checksum (raises Corrupt
        when the bytes do not match)."""
        cid = self._id(id_or_name)
        with self._lock:
            r = _lib.reader_p()
            if file is not None:
                lib.ckptdb_reader_open_file(byref(r), self._handle(), cid, enc(file, "file"))
            elif rank is None:
                lib.ckptdb_reader_open(byref(r), self._handle(), cid)
            else:
                lib.ckptdb_reader_open_rank(byref(r), self._handle(), cid, _lib.i64(rank, "rank"))
        try:
            chunks: List[bytes] = []
            buf = ctypes.create_string_buffer(1 << 20)
            n = c_size_t(0)
            while True:
                lib.ckptdb_reader_read(byref(n), r, buf, len(buf))
                if n.value == 0:
                    return b"".join(chunks)
                chunks.append(buf.raw[:n.value])
        finally:
            lib.ckptdb_reader_close(r)

    def mark_resumed(self, id_or_name: CheckpointRef) -> None:
        """Record in the catalog that this run resumed from this checkpoint."""
        with self._lock:
            lib.ckptdb_mark_resumed(self._handle(), self._id(id_or_name))

    def load_latest(self, map_location: Any = "cpu", kind: Optional[str] = None, weights_only: bool = True,
                    normalize: bool = False) -> Optional[Tuple[Any, Checkpoint]]:
        """torch.load of the newest checkpoint that verifies, or None.
        Returns (state, Checkpoint).  Records the resume in the catalog
        unless the catalog is read-only.

        weights_only=True (the default) loads with torch's safe loader: a
        file holding other objects raises ckptdb.UnsafeCheckpoint, naming it,
        and the catalog is left as it was (files of the earlier
        "ckptdb.torch/1" format still load; see ckptdb.torch.load_checkpoint).
        weights_only=False is the explicit opt-in for trusted files, passed
        on to torch.load as given.  normalize=True returns the state in the
        one layout of ckptdb.torch.normalize_state (a ckptdb dict, a
        hand-written training dict, a LibTorch checkpoint or a bare model
        state_dict, told apart by ckptdb.torch.checkpoint_layout)."""
        from . import torch as ct
        e = self.latest(kind)
        if e is None:
            return None
        state = ct.load_checkpoint(e.path, map_location=map_location, weights_only=weights_only,
                                   trust_shared=self.trust_shared)
        if normalize:
            state = ct.normalize_state(state, e)
        if not self.readonly:
            self.mark_resumed(e.id)
        return state, e

    # -- retention ---------------------------------------------------------
    def set_retention(self, policy: Optional[Policy]) -> None:
        """Rotation after every commit (None turns it off; "default": the
        library's default policy)."""
        with self._lock:
            if policy is None:
                lib.ckptdb_set_retention(self._handle(), None)
                return
            if isinstance(policy, str):
                if policy != "default":
                    raise ValueError("ckptdb: retention must be a Retention, 'default' or None")
                policy = Retention()
            if not isinstance(policy, Retention):  # a mapping of Retention's keywords
                policy = Retention(**policy)
            r, keep = policy._c()
            lib.ckptdb_set_retention(self._handle(), byref(r))
            del keep

    def prune(self, policy: Union[Retention, Mapping[str, Any], None] = None,
              dry_run: bool = False) -> List[PruneItem]:
        """Apply a policy (None: the handle's, else the default); returns the
        list of PruneItem it deleted (or would delete, with dry_run)."""
        out: List[PruneItem] = []

        def cb(it: Any, _p: Any) -> int:
            it = it.contents
            out.append(PruneItem(it.id, s(it.name), it.size, s(it.rule)))
            return 0

        if policy is not None and not isinstance(policy, Retention):  # a mapping of Retention's keywords
            policy = Retention(**policy)
        r, keep = policy._c() if policy is not None else (None, None)
        with self._lock:
            lib.ckptdb_prune(None, None, self._handle(), byref(r) if r is not None else None, 1 if dry_run else 0,
                             _lib.PRUNE_CB(cb), None)
        del keep
        return out

    def pin(self, id_or_name: CheckpointRef, pinned: bool = True) -> None:
        """Pin a checkpoint (never pruned), or unpin it with pinned=False."""
        with self._lock:
            if isinstance(id_or_name, str):
                lib.ckptdb_pin_by_name(self._handle(), enc(id_or_name), 1 if pinned else 0)
            else:
                lib.ckptdb_pin(self._handle(), self._id(id_or_name), 1 if pinned else 0)

    def unpin(self, id_or_name: CheckpointRef) -> None:
        """Unpin a checkpoint: retention may prune it again."""
        self.pin(id_or_name, False)

    def remove(self, id_or_name: CheckpointRef) -> None:
        """Remove one checkpoint at your word (a file or a directory one):
        marked pruned with the rule "removed", then its files unlinked, as
        a prune does.  A pinned checkpoint, or one that is not complete or
        corrupt, raises (nothing changes); an unknown one raises NotFound."""
        with self._lock:
            if isinstance(id_or_name, str):
                lib.ckptdb_remove_by_name(self._handle(), enc(id_or_name))
            else:
                lib.ckptdb_remove(self._handle(), self._id(id_or_name))

    def progress(self, epoch: int, step: int) -> None:
        """Record how far this run has trained (steps lost to preemption)."""
        with self._lock:
            lib.ckptdb_run_progress(self._handle(), _lib.i64(epoch, "epoch"), _lib.i64(step, "step"))

    def fsck(self, repair: bool = False) -> List[Dict[str, Any]]:
        """Check the directory against the catalog (and fix it with repair=True):
        items with kind, name, checkpoint_id, detail and action."""
        out: List[Dict[str, Any]] = []

        with self._lock:
            lib.ckptdb_fsck(None, self._handle(), 1 if repair else 0, _items_cb(out, _lib.FSCK_CB), None)
        return out

    def __repr__(self) -> str:
        return "Catalog(%r%s)" % (getattr(self, "directory", "?"), ", closed" if self._h is None else "")


def _latest_path(directory: StrPath, kind: Optional[str] = None, trust_shared: bool = False) -> Optional[str]:
    """The path of the newest complete checkpoint of the directory's catalog
    that verifies, or None when there is none or the directory does not
    exist yet: what a framework's resume argument takes to resume or start
    fresh (ckptdb.lightning.latest, ckptdb.transformers.latest).  Opening
    the catalog runs its recovery; an existing directory without a catalog
    gets an empty one."""
    d = os.fspath(directory)
    if not os.path.isdir(d):
        return None
    with Catalog(d, trust_shared=trust_shared) as cat:
        e = cat.latest(kind)
        return e.path if e is not None else None


def open_checkpoint(path: StrPath, trust_shared: bool = False) -> BinaryIO:
    """Open a checkpoint file for loading, as every resume does: a symbolic
    link is not followed (OSError ELOOP), and the library's ownership rule
    (ckptdb_check_trusted_fd) judges the file actually opened: one owned by
    another user than this one or root raises UntrustedError unless
    trust_shared=True; a FIFO or device raises InvalidArgument without
    blocking.  Returns the file, open for binary reading."""
    p = os.fspath(path)
    fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        lib.ckptdb_check_trusted_fd(fd, enc(p, "path"), _lib.OPEN_TRUST_SHARED if trust_shared else 0)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def version() -> str:
    """The version of the libckptdb loaded (ckptdb_version)."""
    return s(lib.ckptdb_version())



def _items_cb(out: List[Dict[str, Any]], proto: Any) -> Any:
    """A callback of type proto (FSCK_CB, REBUILD_CB, SYNC_CB) that appends
    every item to out as a dict (a sync item has no action: "")."""
    def cb(it: Any, _p: Any) -> int:
        it = it.contents
        out.append({"kind": s(it.kind), "name": s(it.name), "checkpoint_id": it.checkpoint_id,
                    "detail": s(it.detail), "action": s(getattr(it, "action", None))})
        return 0
    return proto(cb)


def rebuild(directory: StrPath, catalog_name: Optional[str] = None) -> List[Dict[str, Any]]:
    """Rebuild a lost or unreadable catalog from the checkpoint files and
    flat checkpoint directories present (ckptdb_rebuild; a directory becomes
    one directory checkpoint); an existing catalog file is moved aside, never
    overwritten.  Returns the items (kind "rebuilt" or "unknown_file")."""
    o = _lib.OpenOptions()
    lib.ckptdb_open_options_init(byref(o), _lib.OPEN_OPTIONS_VERSION)
    o.catalog_name = enc(catalog_name, "catalog_name")
    out: List[Dict[str, Any]] = []
    rows = c_int64(0)
    lib.ckptdb_rebuild(byref(rows), enc(os.fspath(directory), "directory"), byref(o), _items_cb(out, _lib.REBUILD_CB),
                       None)
    return out


def adopt(directory: StrPath, catalog_name: Optional[str] = None) -> List[Dict[str, Any]]:
    """Take in a directory written without ckptdb (torch.save files, a regular
    last.pt, DCP or HF checkpoint-N directories) by building its catalog
    (ckptdb_adopt): every file hashed, torn
    zip archives marked corrupt, rows ordered by modification time and pinned
    until released (Catalog.pin(id, False)).  Raises ckptdb.Exists
    where the directory already has a catalog.  Returns the items (kind
    "adopted" or "unknown_file")."""
    o = _lib.OpenOptions()
    lib.ckptdb_open_options_init(byref(o), _lib.OPEN_OPTIONS_VERSION)
    o.catalog_name = enc(catalog_name, "catalog_name")
    out: List[Dict[str, Any]] = []
    rows = c_int64(0)
    lib.ckptdb_adopt(byref(rows), enc(os.fspath(directory), "directory"), byref(o), _items_cb(out, _lib.REBUILD_CB),
                     None)
    return out


def sync(src: StrPath, dst: StrPath, delete_pruned: bool = False,
         progress: Optional[Progress] = None) -> Tuple[int, int, List[Dict[str, Any]]]:
    """Copy every complete checkpoint of src that dst lacks, verified, with a
    consistent catalog (ckptdb_sync).  progress(done, total) sees the bytes;
    a true return stops it.  Returns (copied, bytes, items)."""
    o = _lib.SyncOptions()
    o.version = _lib.SYNC_OPTIONS_VERSION
    o.delete_pruned = 1 if delete_pruned else 0
    pcb = None
    if progress is not None:
        pcb = _lib.PROGRESS_CB(lambda done, total, _p: 1 if progress(done, total) else 0)
        o.progress = pcb
    out: List[Dict[str, Any]] = []
    icb = _items_cb(out, _lib.SYNC_CB)
    o.on_item = icb
    copied, nbytes = c_int64(0), c_int64(0)
    lib.ckptdb_sync(byref(copied), byref(nbytes), enc(os.fspath(src), "source directory"),
                    enc(os.fspath(dst), "destination directory"), byref(o))
    return copied.value, nbytes.value, out
