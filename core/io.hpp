// The engine's file-system calls, all through one table of function
// pointers. In the library the table holds the real system calls (one
// indirect call each); fault and crash tests that link the engine statically
// swap in functions that record every operation and fail chosen ones.
// SQLite's own file I/O reaches the same tests through the VFS named in
// g_sqlite_vfs: the test VFS (tests/support/io_vfs.cpp), which only test
// binaries link; the library itself holds nothing that simulates a fault.
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
    int (*mkdirat)(int dirfd, const char *name, mode_t mode);
};

// The table every call goes through.
extern Ops g_ops;
inline const Ops &ops() { return g_ops; }

// The real system calls (what g_ops holds unless a test replaced it).
const Ops &real_ops();

// The VFS name the engine passes to sqlite3_open_v2: nullptr (SQLite's
// default) unless a test that links the engine statically installed its own.
extern const char *g_sqlite_vfs;
inline const char *sqlite_vfs() { return g_sqlite_vfs; }

}  // namespace io
}  // namespace ckptdb
