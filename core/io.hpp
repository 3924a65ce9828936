// The engine's file-system calls, all through one table of function
// pointers. In the library the table holds the real system calls (one
// indirect call each); fault and crash tests that link the engine statically
// swap in functions that record every operation and fail chosen ones.
// SQLite's own file I/O reaches the same tests through a VFS shim over
// "unix" (io_vfs.cpp), used only while a test has switched it on.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>

namespace ckptdb {
namespace io {

struct Ops {
    int (*open)(const char *path, int flags, mode_t mode);
    int (*openat)(int dirfd, const char *name, int flags, mode_t mode);
    int (*close)(int fd);
    ssize_t (*read)(int fd, void *buf, size_t len);
    ssize_t (*pread)(int fd, void *buf, size_t len, off_t off);
    ssize_t (*write)(int fd, const void *buf, size_t len);
    int (*fsync)(int fd);  // a file's data, or a directory's entries
    int (*sync_file_range)(int fd, off_t off, off_t len, unsigned int flags);
    int (*fstat)(int fd, struct stat *st);
    int (*fstatat)(int dirfd, const char *name, struct stat *st, int flags);
    int (*renameat)(int olddirfd, const char *from, int newdirfd, const char *to);
    int (*renameat2)(int olddirfd, const char *from, int newdirfd, const char *to, unsigned int flags);
    int (*unlinkat)(int dirfd, const char *name, int flags);
    int (*mkdir)(const char *path, mode_t mode);
    int (*symlinkat)(const char *target, int dirfd, const char *name);
    ssize_t (*readlinkat)(int dirfd, const char *name, char *buf, size_t len);
};

// The table every call goes through.
extern Ops g_ops;
inline const Ops &ops() { return g_ops; }

// The real system calls (what g_ops holds unless a test replaced it).
const Ops &real_ops();

// What SQLite does to the catalog's files, as the VFS shim reports it to a
// test. path is the file's absolute name; data/len/off describe a write;
// size a truncate; flags the xOpen flags or, for xDelete, whether SQLite
// asked for the directory to be synced.
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
// catalog the engine opens from now on through it. nullptr switches it off.
void set_sqlite_observer(SqliteObserver obs);

// The VFS name the engine passes to sqlite3_open_v2: nullptr (SQLite's
// default) unless a test installed an observer.
const char *sqlite_vfs();

}  // namespace io
}  // namespace ckptdb
