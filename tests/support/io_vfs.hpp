// The test VFS: a shim over SQLite's "unix" VFS that shows a test every
// operation SQLite does on the catalog's files and may fail it (after
// SQLite's own crash VFS in its test sources, src/test6.c). Built only into
// the test-support library (tests/support/meson.build), never into
// libckptdb; the engine's one seam for it is io::g_sqlite_vfs (core/io.hpp).
#pragma once

#include <cstdint>

namespace ckptdb {
namespace io_vfs {

// What SQLite does to the catalog's files, as the shim reports it. path is
// the file's absolute name; data/len/off describe a write; size a truncate;
// flags the xOpen flags or, for xDelete, whether SQLite asked for the
// directory to be synced.
struct SqliteOp {
    enum Kind { open, read, write, truncate, sync, remove } kind;
    const char *path;
    const void *data;
    int64_t off;
    int64_t len;
    int flags;
};

// Called before each operation: returns 0 to let it run, or an errno
// (EIO, ENOSPC, EDQUOT) that the shim turns into SQLite's error for that
// operation; -1 for a short write (half the bytes, then SQLITE_FULL).
// Called once more after a successful xOpen with kind open and len = 1 when
// the file did not exist before.
using SqliteObserver = int (*)(const SqliteOp &op);

// Registers the shim (as "ckptdb-io", never the default) and routes every
// catalog the engine opens from now on through it (io::g_sqlite_vfs).
// nullptr switches it off.
void set_sqlite_observer(SqliteObserver obs);

}  // namespace io_vfs
}  // namespace ckptdb
