"""The C ABI of libckptdb (capi/ckptdb.h) through ctypes.

Every structure mirrors its C declaration field for field (the test suite
compares sizes and offsets with a C program compiled against the header), and
every function gets its argtypes and restype.  Functions that return a status
go through one errcheck that raises the exception for that status with the
library's detailed message (ckptdb_last_error, which is per thread: errcheck
runs on the calling thread right after the call).

ctypes.CDLL releases the GIL for the duration of every foreign call, so a
save written and committed on a background thread lets the training loop run.
"""

import ctypes
import ctypes.util
import importlib
import operator
import os
from ctypes import (CFUNCTYPE, POINTER, Structure, c_char_p, c_double, c_int, c_int64, c_size_t, c_uint,
                    c_void_p)

from .errors import InvalidArgument, error_for

SONAME = "libckptdb.so.1"

# Status codes (never renumbered).
OK = 0
DONE = 100
ENOTFOUND = 4
ECORRUPT = 8
EUNTRUSTED = 16
ECALLBACK = 17  # a callback returned non-zero and stopped the call

# Status of a checkpoint row.
STATUS_NAMES = {1: "writing", 2: "complete", 3: "corrupt", 4: "aborted", 5: "pruned"}
STATUS_CODES = {v: k for k, v in STATUS_NAMES.items()}

# Open flags.
OPEN_NO_CREATE = 0x1
OPEN_READONLY = 0x2
OPEN_REQUEUE = 0x4  # Slurm: requeue the job on a preemption signal
OPEN_TRUST_SHARED = 0x8  # no ownership checks: a directory shared on purpose
OPEN_RESERVE = 0x10  # an operator's prune or repair: the open may use the reserve on a full disk

VERIFY_FULL = 0x0
VERIFY_SIZE = 0x1
VERIFY_NONE = 0x2

BEST_MIN = 0
BEST_MAX = 1

OPEN_OPTIONS_VERSION = 1
SAVE_OPTIONS_VERSION = 1
FILTER_VERSION = 1
RETENTION_VERSION = 2
TRIGGER_OPTIONS_VERSION = 1
SYNC_OPTIONS_VERSION = 1
KEEP_KIND_VERSION = 1
SHARD_FILE_VERSION = 1
DIR_FILE_VERSION = 1
LAYOUT_FILE = 0
LAYOUT_DIR = 1


def _load():
    path = os.environ.get("CKPTDB_LIBRARY")
    if path:
        return ctypes.CDLL(path, use_errno=True)
    try:  # an installed package: the library it was installed with (inside it, for a wheel)
        installed = str(importlib.import_module("._installed", __package__).LIBRARY)
    except ImportError:  # the source tree
        installed = ""
    if installed and os.path.exists(installed):
        return ctypes.CDLL(installed, use_errno=True)
    try:
        return ctypes.CDLL(SONAME, use_errno=True)
    except OSError:
        pass
    raise ImportError(
        "ckptdb: cannot load %s (install libckptdb, add its directory to LD_LIBRARY_PATH, "
        "or set CKPTDB_LIBRARY to the library's path)" % SONAME)


lib = _load()

# ---------------------------------------------------------------------------
# Structures (field for field as in capi/ckptdb.h)
# ---------------------------------------------------------------------------

EVENT_CB = CFUNCTYPE(None, c_char_p, c_int64, c_char_p, c_void_p)
CLOCK_FN = CFUNCTYPE(c_double, c_void_p)
PROGRESS_CB = CFUNCTYPE(c_int, c_int64, c_int64, c_void_p)


class OpenOptions(Structure):
    _fields_ = [("version", c_uint), ("flags", c_uint), ("catalog_name", c_char_p), ("busy_timeout_ms", c_int),
                ("on_event", EVENT_CB), ("event_payload", c_void_p), ("last_link", c_char_p)]


class Entry(Structure):
    _fields_ = [("struct_size", c_size_t), ("id", c_int64), ("name", c_char_p), ("path", c_char_p),
                ("kind", c_char_p), ("epoch", c_int64), ("step", c_int64), ("size", c_int64),
                ("checksum", c_char_p), ("status", c_int), ("pinned", c_int), ("run_id", c_int64),
                ("file_count", c_int64), ("created_at", c_char_p), ("committed_at", c_char_p),
                ("deleted_at", c_char_p), ("metadata", c_char_p), ("layout", c_int),
                ("commit_seq", c_int64)]

    @classmethod
    def new(cls):
        e = cls()
        e.struct_size = ctypes.sizeof(cls)
        return e


class SaveOptions(Structure):
    _fields_ = [("version", c_uint), ("name", c_char_p), ("metadata", c_char_p)]


class Filter(Structure):
    _fields_ = [("version", c_uint), ("status_mask", c_uint), ("kind", c_char_p)]


class KeepKind(Structure):
    _fields_ = [("version", c_uint), ("kind", c_char_p), ("count", c_int)]


class Retention(Structure):
    _fields_ = [("version", c_uint), ("keep_last", POINTER(KeepKind)), ("keep_last_count", c_size_t),
                ("keep_last_default", c_int), ("keep_every_n_epochs", c_int64),
                ("keep_interval_seconds", c_int64), ("best_metric", c_char_p), ("best_mode", c_int),
                ("best_k", c_int), ("max_bytes", c_int64), ("prune_corrupt", c_int)]


class PruneItem(Structure):
    _fields_ = [("struct_size", c_size_t), ("id", c_int64), ("name", c_char_p), ("size", c_int64),
                ("rule", c_char_p)]


class File(Structure):
    _fields_ = [("struct_size", c_size_t), ("rank", c_int64), ("name", c_char_p), ("path", c_char_p),
                ("size", c_int64), ("checksum", c_char_p)]


class Event(Structure):
    _fields_ = [("struct_size", c_size_t), ("id", c_int64), ("at", c_char_p), ("run_id", c_int64),
                ("checkpoint_id", c_int64), ("event", c_char_p), ("detail", c_char_p)]


class Run(Structure):
    _fields_ = [("struct_size", c_size_t), ("id", c_int64), ("host", c_char_p), ("pid", c_int64),
                ("started_at", c_char_p), ("ended_at", c_char_p), ("exit_reason", c_char_p),
                ("slurm_job_id", c_char_p), ("slurm_array_job_id", c_char_p), ("slurm_array_task_id", c_char_p),
                ("slurm_restart_count", c_int64), ("resumed_from", c_int64), ("last_step", c_int64),
                ("last_saved_step", c_int64), ("saves", c_int64), ("steps_lost", c_int64)]


class FsckItem(Structure):
    _fields_ = [("struct_size", c_size_t), ("kind", c_char_p), ("name", c_char_p), ("checkpoint_id", c_int64),
                ("detail", c_char_p), ("action", c_char_p)]


class RebuildItem(Structure):
    _fields_ = [("struct_size", c_size_t), ("kind", c_char_p), ("name", c_char_p), ("checkpoint_id", c_int64),
                ("detail", c_char_p), ("action", c_char_p)]


class SyncItem(Structure):
    _fields_ = [("struct_size", c_size_t), ("kind", c_char_p), ("name", c_char_p), ("checkpoint_id", c_int64),
                ("detail", c_char_p)]


# (experimental tier in C: visible there with CKPTDB_EXPERIMENTAL)
class TriggerOptions(Structure):
    _fields_ = [("version", c_uint), ("every_epochs", c_int64), ("every_steps", c_int64),
                ("every_seconds", c_double), ("watch_signals", c_int), ("clock", CLOCK_FN),
                ("clock_payload", c_void_p)]


class ShardInfo(Structure):
    _fields_ = [("struct_size", c_size_t), ("name", c_char_p), ("temp_name", c_char_p), ("size", c_int64),
                ("checksum", c_char_p)]

    @classmethod
    def new(cls):
        e = cls()
        e.struct_size = ctypes.sizeof(cls)
        return e


class ShardFile(Structure):
    _fields_ = [("version", c_uint), ("name", c_char_p), ("temp_name", c_char_p), ("size", c_int64),
                ("checksum", c_char_p)]


class DirInfo(Structure):
    _fields_ = [("struct_size", c_size_t), ("id", c_int64), ("name", c_char_p), ("temp_name", c_char_p)]

    @classmethod
    def new(cls):
        e = cls()
        e.struct_size = ctypes.sizeof(cls)
        return e


class DirFile(Structure):
    _fields_ = [("version", c_uint), ("name", c_char_p), ("rank", c_int64), ("size", c_int64),
                ("checksum", c_char_p)]


SYNC_CB = CFUNCTYPE(c_int, POINTER(SyncItem), c_void_p)


class SyncOptions(Structure):
    _fields_ = [("version", c_uint), ("delete_pruned", c_int), ("progress", PROGRESS_CB),
                ("progress_payload", c_void_p), ("on_item", SYNC_CB), ("item_payload", c_void_p)]


ENTRY_CB = CFUNCTYPE(c_int, POINTER(Entry), c_void_p)
VERIFY_CB = CFUNCTYPE(c_int, POINTER(Entry), c_int, c_void_p)
PRUNE_CB = CFUNCTYPE(c_int, POINTER(PruneItem), c_void_p)
FILE_CB = CFUNCTYPE(c_int, POINTER(File), c_void_p)
EVENT_ROW_CB = CFUNCTYPE(c_int, POINTER(Event), c_void_p)
RUN_CB = CFUNCTYPE(c_int, POINTER(Run), c_void_p)
FSCK_CB = CFUNCTYPE(c_int, POINTER(FsckItem), c_void_p)
REBUILD_CB = CFUNCTYPE(c_int, POINTER(RebuildItem), c_void_p)

# Opaque handles.
catalog_p = c_void_p
save_p = c_void_p
reader_p = c_void_p
cursor_p = c_void_p
trigger_p = c_void_p
shard_p = c_void_p
dir_save_p = c_void_p

STRUCTS = {
    "ckptdb_open_options": OpenOptions, "ckptdb_entry": Entry, "ckptdb_save_options": SaveOptions,
    "ckptdb_filter": Filter, "ckptdb_keep_kind": KeepKind, "ckptdb_retention": Retention,
    "ckptdb_prune_item": PruneItem, "ckptdb_file": File, "ckptdb_event": Event, "ckptdb_run": Run,
    "ckptdb_fsck_item": FsckItem, "ckptdb_trigger_options": TriggerOptions, "ckptdb_sync_options": SyncOptions,
    "ckptdb_rebuild_item": RebuildItem, "ckptdb_sync_item": SyncItem,
}
# Sharded (multi-rank) saves: present in libraries that export them.
HAS_SHARDS = hasattr(lib, "ckptdb_shard_begin")
if HAS_SHARDS:
    STRUCTS.update({"ckptdb_shard_info": ShardInfo, "ckptdb_shard_file": ShardFile})
# Directory checkpoints: present in libraries that export them.
HAS_DIRS = hasattr(lib, "ckptdb_dir_begin")
if HAS_DIRS:
    STRUCTS.update({"ckptdb_dir_info": DirInfo, "ckptdb_dir_file": DirFile})

# ---------------------------------------------------------------------------
# Errors and prototypes
# ---------------------------------------------------------------------------

lib.ckptdb_last_error.argtypes = []
lib.ckptdb_last_error.restype = c_char_p
lib.ckptdb_last_error_code.argtypes = []
lib.ckptdb_last_error_code.restype = c_int
lib.ckptdb_last_callback_value.argtypes = []
lib.ckptdb_last_callback_value.restype = c_int
lib.ckptdb_strerror.argtypes = [c_int]
lib.ckptdb_strerror.restype = c_char_p


def last_error():
    m = lib.ckptdb_last_error()
    return m.decode("utf-8", "replace") if m else ""


def raise_for(rc, func_name=""):
    """Raise the exception of status rc with the calling thread's message."""
    msg = last_error()
    what = lib.ckptdb_strerror(rc).decode("utf-8", "replace")
    raise error_for(rc)(rc, "%s: %s" % (what, msg) if msg else what, func_name)


def _check(rc, func, args):
    if rc != OK and rc != DONE:
        raise_for(rc, func.__name__)
    return rc


# Functions whose non-OK status the caller inspects itself (ENOTFOUND, ECORRUPT).
_UNCHECKED = {"ckptdb_latest", "ckptdb_verify", "ckptdb_verify_progress", "ckptdb_cursor_next"}


def _proto(name, restype, argtypes):
    f = getattr(lib, name)
    f.argtypes = argtypes
    f.restype = restype
    if restype is c_int and name not in _UNCHECKED and name not in ("ckptdb_version_number",
                                                                   "ckptdb_schema_version",
                                                                   "ckptdb_preempt_requested",
                                                                   "ckptdb_trigger_should_stop"):
        f.errcheck = _check
    return f


P = POINTER
_proto("ckptdb_version", c_char_p, [])
_proto("ckptdb_version_number", c_int, [])
_proto("ckptdb_schema_version", c_int, [])
_proto("ckptdb_open_options_init", c_int, [P(OpenOptions), c_uint])
_proto("ckptdb_open", c_int, [P(catalog_p), c_char_p, P(OpenOptions)])
_proto("ckptdb_close", c_int, [catalog_p])
_proto("ckptdb_dir", c_char_p, [catalog_p])
_proto("ckptdb_status_name", c_char_p, [c_int])
_proto("ckptdb_save_options_init", c_int, [P(SaveOptions), c_uint])
_proto("ckptdb_save_begin", c_int, [P(save_p), catalog_p, c_char_p, c_int64, c_int64, P(SaveOptions)])
_proto("ckptdb_default_name", c_int, [c_char_p, c_size_t, c_char_p, c_int64, c_int64, c_int64, c_int, c_int, c_int])
_proto("ckptdb_save_write", c_int, [save_p, c_void_p, c_size_t])
_proto("ckptdb_save_temp_path", c_int, [P(c_char_p), save_p])
_proto("ckptdb_save_fd", c_int, [P(c_int), save_p])
_proto("ckptdb_save_commit", c_int, [P(Entry), save_p])
_proto("ckptdb_save_abort", c_int, [save_p])
_proto("ckptdb_save_free", None, [save_p])
_proto("ckptdb_latest", c_int, [P(Entry), catalog_p, c_char_p, c_uint])
_proto("ckptdb_get", c_int, [P(Entry), catalog_p, c_int64])
_proto("ckptdb_get_by_name", c_int, [P(Entry), catalog_p, c_char_p])
_proto("ckptdb_mark_resumed", c_int, [catalog_p, c_int64])
_proto("ckptdb_list", c_int, [catalog_p, P(Filter), ENTRY_CB, c_void_p])
_proto("ckptdb_cursor_open", c_int, [P(cursor_p), catalog_p, P(Filter)])
_proto("ckptdb_cursor_next", c_int, [P(Entry), cursor_p])
_proto("ckptdb_cursor_free", None, [cursor_p])
_proto("ckptdb_verify", c_int, [catalog_p, c_int64])
_proto("ckptdb_verify_all", c_int, [P(c_int64), P(c_int64), catalog_p, VERIFY_CB, c_void_p])
_proto("ckptdb_reader_open", c_int, [P(reader_p), catalog_p, c_int64])
_proto("ckptdb_reader_read", c_int, [P(c_size_t), reader_p, c_void_p, c_size_t])
_proto("ckptdb_reader_close", None, [reader_p])
_proto("ckptdb_check_trusted_fd", c_int, [c_int, c_char_p, c_uint])
_proto("ckptdb_retention_init", c_int, [P(Retention), c_uint])
_proto("ckptdb_set_retention", c_int, [catalog_p, P(Retention)])
_proto("ckptdb_prune", c_int, [P(c_int64), P(c_int64), catalog_p, P(Retention), c_int, PRUNE_CB, c_void_p])
_proto("ckptdb_pin", c_int, [catalog_p, c_int64, c_int])
_proto("ckptdb_pin_by_name", c_int, [catalog_p, c_char_p, c_int])
_proto("ckptdb_remove", c_int, [catalog_p, c_int64])
_proto("ckptdb_remove_by_name", c_int, [catalog_p, c_char_p])
_proto("ckptdb_run_progress", c_int, [catalog_p, c_int64, c_int64])
_proto("ckptdb_files", c_int, [catalog_p, c_int64, FILE_CB, c_void_p])
_proto("ckptdb_events", c_int, [catalog_p, c_int64, c_int64, EVENT_ROW_CB, c_void_p])
_proto("ckptdb_runs", c_int, [catalog_p, RUN_CB, c_void_p])
_proto("ckptdb_fsck", c_int, [P(c_int64), catalog_p, c_int, FSCK_CB, c_void_p])
_proto("ckptdb_verify_progress", c_int, [catalog_p, c_int64, PROGRESS_CB, c_void_p])
_proto("ckptdb_rebuild", c_int, [P(c_int64), c_char_p, P(OpenOptions), REBUILD_CB, c_void_p])
_proto("ckptdb_adopt", c_int, [P(c_int64), c_char_p, P(OpenOptions), REBUILD_CB, c_void_p])
_proto("ckptdb_sync", c_int, [P(c_int64), P(c_int64), c_char_p, c_char_p, P(SyncOptions)])
_proto("ckptdb_signals_install", c_int, [P(c_int), c_size_t, c_int])
_proto("ckptdb_signals_restore", c_int, [])
_proto("ckptdb_preempt_requested", c_int, [])
_proto("ckptdb_preempt_request", None, [c_int])
_proto("ckptdb_preempt_clear", None, [])
_proto("ckptdb_trigger_options_init", c_int, [P(TriggerOptions), c_uint])
_proto("ckptdb_trigger_new", c_int, [P(trigger_p), P(TriggerOptions)])
_proto("ckptdb_trigger_free", None, [trigger_p])
_proto("ckptdb_trigger_check", c_int, [P(c_char_p), trigger_p, c_int64, c_int64, c_int])
_proto("ckptdb_trigger_saved", c_int, [trigger_p, c_int64])
_proto("ckptdb_trigger_resumed", c_int, [trigger_p, c_int64])
_proto("ckptdb_trigger_should_stop", c_int, [trigger_p])
if HAS_SHARDS:
    _proto("ckptdb_shard_begin", c_int, [P(shard_p), c_char_p, c_char_p])
    _proto("ckptdb_shard_write", c_int, [shard_p, c_void_p, c_size_t])
    _proto("ckptdb_shard_fd", c_int, [P(c_int), shard_p])
    _proto("ckptdb_shard_finish", c_int, [P(ShardInfo), shard_p])
    _proto("ckptdb_shard_free", None, [shard_p])
    _proto("ckptdb_commit_shards", c_int, [P(Entry), catalog_p, c_char_p, c_int64, c_int64, P(SaveOptions),
                                           P(ShardFile), c_size_t])
if HAS_DIRS:
    _proto("ckptdb_dir_begin", c_int, [P(dir_save_p), catalog_p, c_char_p, c_int64, c_int64, P(SaveOptions)])
    _proto("ckptdb_dir_get_info", c_int, [P(DirInfo), dir_save_p])
    _proto("ckptdb_dir_file_begin", c_int, [P(shard_p), c_char_p, c_char_p, c_char_p, c_int64])
    _proto("ckptdb_dir_commit", c_int, [P(Entry), dir_save_p, P(DirFile), c_size_t])
    _proto("ckptdb_dir_abort", c_int, [dir_save_p])
    _proto("ckptdb_dir_free", None, [dir_save_p])
    _proto("ckptdb_reader_open_file", c_int, [P(reader_p), catalog_p, c_int64, c_char_p])
    _proto("ckptdb_reader_open_rank", c_int, [P(reader_p), catalog_p, c_int64, c_int64])
# Directory saves in place: present in libraries that export them.
HAS_DIRS_IN_PLACE = hasattr(lib, "ckptdb_dir_begin_in_place")
if HAS_DIRS_IN_PLACE:
    _proto("ckptdb_dir_begin_in_place", c_int, [P(dir_save_p), catalog_p, c_char_p, c_int64, c_int64,
                                                P(SaveOptions)])
    _proto("ckptdb_dir_commit_in_place", c_int, [P(Entry), dir_save_p, c_char_p])


def default_keep_last():
    """The library's default keep_last as {kind: K}: the list
    ckptdb_retention_init points at, read, never repeated here."""
    r = Retention()
    lib.ckptdb_retention_init(ctypes.byref(r), RETENTION_VERSION)
    return {s(r.keep_last[i].kind): r.keep_last[i].count for i in range(r.keep_last_count)}


def s(b):
    """A borrowed C string as str ("" for NULL), copied before the next call."""
    return b.decode("utf-8", "surrogateescape") if b is not None else ""


def enc(x, what="a text argument"):
    """x as the bytes of a C string (None stays NULL).  A NUL byte would end
    the C string early (a name "evil\\0/../x" would become "evil"), so it is
    refused with InvalidArgument naming what."""
    if x is None:
        return None
    if isinstance(x, bytes):
        b = x
    else:
        b = os.fsencode(x) if isinstance(x, os.PathLike) else str(x).encode("utf-8", "surrogateescape")
    if b"\0" in b:
        raise InvalidArgument(3, "ckptdb: %s contains a NUL byte: %r" % (what, x))
    return b


INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


def i64(v, what, lo=INT64_MIN, hi=INT64_MAX):
    """v as a C integer: an int (or anything with __index__, numpy and
    0-dim integer tensors included), never a float or bool, within [lo, hi];
    else InvalidArgument naming what.  ctypes would otherwise truncate 1.9 to
    1 and wrap 2**63 to a negative number."""
    if isinstance(v, bool) or isinstance(v, float):
        raise InvalidArgument(3, "ckptdb: %s must be an integer, got %r" % (what, v))
    try:
        n = operator.index(v)
    except TypeError:
        raise InvalidArgument(3, "ckptdb: %s must be an integer, got %r" % (what, v)) from None
    if not lo <= n <= hi:
        raise InvalidArgument(3, "ckptdb: %s %d is outside [%d, %d]" % (what, n, lo, hi))
    return n
