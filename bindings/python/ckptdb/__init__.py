"""ckptdb: a checkpoint catalog for training jobs that get killed.

A pure-ctypes binding of libckptdb (the C ABI in capi/ckptdb.h).  The
library is the path in $CKPTDB_LIBRARY, else the one the package was
installed with (inside it, for `pip install`), else found by its SONAME
(libckptdb.so.1).  PyTorch helpers live in ckptdb.torch (imported on demand;
this package itself needs only the standard library).  Catalog events go
to logging.getLogger("ckptdb").

    import ckptdb
    with ckptdb.Catalog("ckpts", retention="default") as cat:
        with cat.save(kind="epoch", epoch=5, step=500, metrics={"loss": 0.3}) as f:
            torch.save(state, f)          # committed on success, aborted on exception
        state, entry = cat.load_latest()  # the newest checkpoint that verifies
"""

from . import _lib  # noqa: F401  (ckptdb._lib: the raw ctypes layer)
from .catalog import Catalog, Checkpoint, DirSave, Event, FileInfo, PruneItem, Retention, Save, adopt, rebuild, sync, version
from .errors import (Busy, CallbackStopped, Corrupt, DatabaseError, Error, Exists, InvalidArgument, IOFailure, Misuse, NoMemory,
                     NoSpace, NotCatalog, NotFound, Permission, ReadOnly, StateMismatch, UnknownLayout,
                     UnsafeCheckpoint, UntrustedError, VersionMismatch)
from .signals import (clear_preempt, install_signals, preempt_requested, request_preempt, restore_signals,
                      Trigger)

#: The version of the libckptdb loaded: the project's one version (meson.build's
#: project()), also what importlib.metadata.version("ckptdb") gives for a pip install.
__version__: str = version()

__all__ = ["Catalog", "Checkpoint", "DirSave", "Event", "FileInfo", "PruneItem", "Retention", "Save", "Trigger", "version", "adopt", "rebuild", "sync",
           "install_signals", "restore_signals", "preempt_requested", "request_preempt", "clear_preempt",
           "Error", "Misuse", "InvalidArgument", "NotFound", "Exists", "IOFailure", "NoSpace", "Corrupt", "Busy",
           "VersionMismatch", "NotCatalog", "Permission", "ReadOnly", "NoMemory", "DatabaseError",
           "UnsafeCheckpoint", "UnknownLayout", "StateMismatch", "UntrustedError", "CallbackStopped"]
