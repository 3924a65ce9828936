"""One exception hierarchy for every status code of the C ABI.

Every exception carries .code (the CKPTDB_E* status), .message (the
library's detailed text: paths, strerror) and .function (the C function
that failed).  Codes are never renumbered, so catching by class is stable.
"""

from __future__ import annotations

from typing import Iterable, Optional, Type


class Error(Exception):
    """Base of every ckptdb failure."""

    code: int = 1

    def __init__(self, code: int, message: str, function: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.function = function


class Misuse(Error):
    """A NULL handle or out-parameter, or a call in the wrong state (CKPTDB_EMISUSE)."""

    code = 2


class InvalidArgument(Error, ValueError):
    """A bad argument: name, kind, epoch, step, JSON or option (CKPTDB_EINVAL)."""

    code = 3


class NotFound(Error, LookupError):
    """No such checkpoint, directory or catalog (CKPTDB_ENOTFOUND)."""

    code = 4


class Exists(Error):
    """The name is taken by a checkpoint or a file (CKPTDB_EEXISTS)."""

    code = 5


class IOFailure(Error):
    """A read, write, fsync or rename failed; .message has the path and strerror (CKPTDB_EIO)."""

    code = 6


class NoSpace(IOFailure):
    """No space left on the device, or the quota is exceeded (CKPTDB_ENOSPC)."""

    code = 7


class Corrupt(Error):
    """A checkpoint's bytes do not match its size or checksum, (CKPTDB_ECORRUPT)."""

    code = 8


class Busy(Error):
    """The catalog stayed locked by another process past the busy timeout (CKPTDB_EBUSY)."""

    code = 9


class VersionMismatch(Error):
    """The catalog was written by a newer ckptdb (CKPTDB_EVERSION)."""

    code = 10


class NotCatalog(Error):
    """The catalog file is not an SQLite database, or not ckptdb's (CKPTDB_ENOTCATALOG)."""

    code = 11


class Permission(Error):
    """The directory or catalog is not writable or not readable (CKPTDB_EPERM)."""

    code = 12


class ReadOnly(Error):
    """A write through a catalog opened read-only (CKPTDB_EREADONLY)."""

    code = 13


class NoMemory(Error, MemoryError):
    """The library ran out of memory (CKPTDB_ENOMEM)."""

    code = 14


class DatabaseError(Error):
    """The catalog database itself failed; .message has SQLite's text (CKPTDB_EDB)."""

    code = 15


class UntrustedError(Error):
    """The checkpoint directory, its catalog or a checkpoint file may have
    been written by another user: a directory writable by every user without
    the sticky bit, or a directory or file owned by a user other than this
    process's effective user or root (CKPTDB_EUNTRUSTED).  .message names
    the path, its owner and mode.  Nothing was read from it; for a directory
    shared on purpose, pass trust_shared=True (Catalog, CheckpointManager,
    load_checkpoint)."""

    code = 16


class CallbackStopped(Error):
    """A callback returned non-zero (a progress function that returned a
    true value) and stopped the call (CKPTDB_ECALLBACK).  .message names the
    function; what it finished before the stop stays done."""

    code = 17


# Failures of the Python layer itself (no status code of their own; they are
# never returned by the library, so error_for() never yields them).

class UnsafeCheckpoint(Error):
    """torch's safe loader (weights_only=True) refused a checkpoint: it holds
    objects other than tensors and plain types, and unpickling it could run
    code.  .path names the file; pass weights_only=False to load it anyway
    when the file is trusted.  Nothing in the catalog was changed."""

    code = 3

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(3, "ckptdb: refused to load %s with torch's safe loader (weights_only=True): it holds "
                            "objects other than tensors and plain types, and unpickling it could run code (%s). "
                            "Nothing was loaded and the catalog is unchanged. If you trust this file, pass "
                            "weights_only=False to the call that loads it (CheckpointManager(..., "
                            "weights_only=False), auto_resume, Catalog.load_latest, load_sharded, ckptdb.dcp.Reader)"
                         % (path, reason), "torch.load")
        self.path = path
        self.reason = reason


class UnknownLayout(Error, ValueError):
    """A checkpoint whose layout is none that resume knows (see
    ckptdb.torch.checkpoint_layout).  Nothing in the catalog was changed."""

    code = 3


class StateMismatch(Error, RuntimeError):
    """A checkpoint does not fit the live objects (missing or unexpected
    model keys under strict=True, a tensor of another shape, an optimizer
    with other parameter groups).  Raised before anything is loaded;
    nothing in the catalog was changed.  .missing_keys, .unexpected_keys."""

    code = 3

    def __init__(self, message: str, missing_keys: Iterable[str] = (), unexpected_keys: Iterable[str] = ()) -> None:
        super().__init__(3, message, "load_state_dict")
        self.missing_keys = list(missing_keys)
        self.unexpected_keys = list(unexpected_keys)


_BY_CODE = {c.code: c for c in (Misuse, InvalidArgument, NotFound, Exists, IOFailure, NoSpace, Corrupt, Busy,
                                VersionMismatch, NotCatalog, Permission, ReadOnly, NoMemory, DatabaseError,
                                UntrustedError, CallbackStopped)}


def error_for(code: int) -> Type[Error]:
    """The exception class of a status code (Error for unknown codes)."""
    return _BY_CODE.get(code, Error)


class UnsupportedTorch(ImportError):
    """`import ckptdb.torch` where torch is missing or older than the
    binding needs.  .found: the version found (None: no torch); .needed."""

    def __init__(self, message: str, found: Optional[str] = None, needed: Optional[str] = None) -> None:
        super().__init__(message)
        self.found = found
        self.needed = needed
