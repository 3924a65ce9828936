#include "io.hpp"

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

namespace ckptdb {
namespace io {

namespace {

int real_open(const char *path, int flags, mode_t mode) { return ::open(path, flags, mode); }
int real_openat(int dirfd, const char *name, int flags, mode_t mode) { return ::openat(dirfd, name, flags, mode); }
int real_sync_file_range(int fd, off_t off, off_t len, unsigned int flags) {
    return ::sync_file_range(fd, off, len, flags);
}

const Ops k_real = {
    real_open, real_openat, ::close,    ::read,      ::pread,    ::write, ::fsync,     real_sync_file_range,
    ::fstat,   ::fstatat,   ::renameat, ::renameat2, ::unlinkat, ::mkdir, ::symlinkat, ::readlinkat,
    ::mkdirat,
};

}  // namespace

Ops g_ops = k_real;

const Ops &real_ops() { return k_real; }

const char *g_sqlite_vfs = nullptr;

}  // namespace io
}  // namespace ckptdb
