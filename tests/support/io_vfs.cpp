// The test VFS (io_vfs.hpp): a shim over SQLite's "unix" VFS (after SQLite's
// own src/test6.c): every open, read, write, truncate, sync and delete of a
// named file is shown to the observer a test installed, which may fail it.
// Registered only when a test asks for it, never as the default VFS.
#include "io_vfs.hpp"

#include <sqlite3.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <mutex>

#include "io.hpp"

namespace ckptdb {
namespace io_vfs {

namespace {

SqliteObserver g_observer = nullptr;
sqlite3_vfs *g_real = nullptr;
sqlite3_vfs g_shim;

struct ShimFile {
    sqlite3_file base;
    sqlite3_file *real;  // allocated right after this struct
    const char *path;    // SQLite keeps the name alive while the file is open
};

ShimFile *shim(sqlite3_file *f) { return reinterpret_cast<ShimFile *>(f); }

int observe(SqliteOp::Kind kind, const char *path, const void *data, int64_t off, int64_t len, int flags) {
    SqliteObserver obs = g_observer;
    if (!obs || !path) return 0;
    SqliteOp op{kind, path, data, off, len, flags};
    return obs(op);
}

int as_sqlite(int err, int ioerr) {
    if (err == ENOSPC || err == EDQUOT) return ioerr == SQLITE_IOERR_WRITE ? SQLITE_FULL : ioerr;
    return ioerr;
}

int x_close(sqlite3_file *f) {
    int rc = shim(f)->real->pMethods ? shim(f)->real->pMethods->xClose(shim(f)->real) : SQLITE_OK;
    return rc;
}

int x_read(sqlite3_file *f, void *buf, int amt, sqlite3_int64 off) {
    ShimFile *s = shim(f);
    int err = observe(SqliteOp::read, s->path, nullptr, off, amt, 0);
    if (err > 0 && err != EINTR) return SQLITE_IOERR_READ;
    return s->real->pMethods->xRead(s->real, buf, amt, off);
}

int x_write(sqlite3_file *f, const void *buf, int amt, sqlite3_int64 off) {
    ShimFile *s = shim(f);
    int err = observe(SqliteOp::write, s->path, buf, off, amt, 0);
    if (err == -1) {  // a short write: part of the bytes reach the file, then the disk is full
        int part = amt / 2;
        if (part > 0) s->real->pMethods->xWrite(s->real, buf, part, off);
        return SQLITE_FULL;
    }
    if (err > 0 && err != EINTR) return as_sqlite(err, SQLITE_IOERR_WRITE);
    return s->real->pMethods->xWrite(s->real, buf, amt, off);
}

int x_truncate(sqlite3_file *f, sqlite3_int64 size) {
    ShimFile *s = shim(f);
    int err = observe(SqliteOp::truncate, s->path, nullptr, size, 0, 0);
    if (err > 0 && err != EINTR) return SQLITE_IOERR_TRUNCATE;
    return s->real->pMethods->xTruncate(s->real, size);
}

int x_sync(sqlite3_file *f, int flags) {
    ShimFile *s = shim(f);
    int err = observe(SqliteOp::sync, s->path, nullptr, 0, 0, flags);
    if (err != 0 && err != EINTR) return SQLITE_IOERR_FSYNC;
    return s->real->pMethods->xSync(s->real, flags);
}

int x_file_size(sqlite3_file *f, sqlite3_int64 *out) { return shim(f)->real->pMethods->xFileSize(shim(f)->real, out); }
int x_lock(sqlite3_file *f, int l) { return shim(f)->real->pMethods->xLock(shim(f)->real, l); }
int x_unlock(sqlite3_file *f, int l) { return shim(f)->real->pMethods->xUnlock(shim(f)->real, l); }
int x_check_reserved(sqlite3_file *f, int *out) {
    return shim(f)->real->pMethods->xCheckReservedLock(shim(f)->real, out);
}
int x_file_control(sqlite3_file *f, int op, void *arg) {
    return shim(f)->real->pMethods->xFileControl(shim(f)->real, op, arg);
}
int x_sector_size(sqlite3_file *f) { return shim(f)->real->pMethods->xSectorSize(shim(f)->real); }
int x_device_characteristics(sqlite3_file *f) { return shim(f)->real->pMethods->xDeviceCharacteristics(shim(f)->real); }
int x_shm_map(sqlite3_file *f, int pg, int pgsz, int extend, void volatile **pp) {
    return shim(f)->real->pMethods->xShmMap(shim(f)->real, pg, pgsz, extend, pp);
}
int x_shm_lock(sqlite3_file *f, int offset, int n, int flags) {
    return shim(f)->real->pMethods->xShmLock(shim(f)->real, offset, n, flags);
}
void x_shm_barrier(sqlite3_file *f) { shim(f)->real->pMethods->xShmBarrier(shim(f)->real); }
int x_shm_unmap(sqlite3_file *f, int del) { return shim(f)->real->pMethods->xShmUnmap(shim(f)->real, del); }
int x_fetch(sqlite3_file *f, sqlite3_int64 off, int amt, void **pp) {
    return shim(f)->real->pMethods->xFetch(shim(f)->real, off, amt, pp);
}
int x_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p) {
    return shim(f)->real->pMethods->xUnfetch(shim(f)->real, off, p);
}

const sqlite3_io_methods k_methods = {
    3,
    x_close,
    x_read,
    x_write,
    x_truncate,
    x_sync,
    x_file_size,
    x_lock,
    x_unlock,
    x_check_reserved,
    x_file_control,
    x_sector_size,
    x_device_characteristics,
    x_shm_map,
    x_shm_lock,
    x_shm_barrier,
    x_shm_unmap,
    x_fetch,
    x_unfetch,
};

int v_open(sqlite3_vfs *, const char *name, sqlite3_file *f, int flags, int *out_flags) {
    ShimFile *s = shim(f);
    s->base.pMethods = nullptr;
    s->real = reinterpret_cast<sqlite3_file *>(s + 1);
    s->path = name;
    // Not xAccess: for SQLite an empty file does not "exist".
    struct stat sb;
    bool existed = !name || !(flags & SQLITE_OPEN_CREATE) || ::lstat(name, &sb) == 0;
    if (observe(SqliteOp::open, name, nullptr, 0, 0, flags) > 0) return SQLITE_CANTOPEN;
    int rc = g_real->xOpen(g_real, name, s->real, flags, out_flags);
    if (rc != SQLITE_OK) return rc;
    s->base.pMethods = &k_methods;
    if (!existed) observe(SqliteOp::open, name, nullptr, 0, 1, flags);
    return SQLITE_OK;
}

int v_delete(sqlite3_vfs *, const char *name, int sync_dir) {
    if (observe(SqliteOp::remove, name, nullptr, 0, 0, sync_dir) > 0) return SQLITE_IOERR_DELETE;
    return g_real->xDelete(g_real, name, sync_dir);
}

int v_access(sqlite3_vfs *, const char *name, int flags, int *out) { return g_real->xAccess(g_real, name, flags, out); }
int v_full_pathname(sqlite3_vfs *, const char *name, int n, char *out) {
    return g_real->xFullPathname(g_real, name, n, out);
}
void *v_dlopen(sqlite3_vfs *, const char *name) { return g_real->xDlOpen(g_real, name); }
void v_dlerror(sqlite3_vfs *, int n, char *out) { g_real->xDlError(g_real, n, out); }
void (*v_dlsym(sqlite3_vfs *, void *h, const char *sym))(void) { return g_real->xDlSym(g_real, h, sym); }
void v_dlclose(sqlite3_vfs *, void *h) { g_real->xDlClose(g_real, h); }
int v_randomness(sqlite3_vfs *, int n, char *out) { return g_real->xRandomness(g_real, n, out); }
int v_sleep(sqlite3_vfs *, int us) { return g_real->xSleep(g_real, us); }
int v_current_time(sqlite3_vfs *, double *out) { return g_real->xCurrentTime(g_real, out); }
int v_last_error(sqlite3_vfs *, int n, char *out) { return g_real->xGetLastError(g_real, n, out); }
int v_current_time64(sqlite3_vfs *, sqlite3_int64 *out) { return g_real->xCurrentTimeInt64(g_real, out); }

}  // namespace

void set_sqlite_observer(SqliteObserver obs) {
    static std::once_flag once;
    std::call_once(once, [] {
        g_real = sqlite3_vfs_find("unix");
        std::memset(&g_shim, 0, sizeof g_shim);
        g_shim.iVersion = 2;
        g_shim.szOsFile = static_cast<int>(sizeof(ShimFile)) + g_real->szOsFile;
        g_shim.mxPathname = g_real->mxPathname;
        g_shim.zName = "ckptdb-io";
        g_shim.xOpen = v_open;
        g_shim.xDelete = v_delete;
        g_shim.xAccess = v_access;
        g_shim.xFullPathname = v_full_pathname;
        g_shim.xDlOpen = v_dlopen;
        g_shim.xDlError = v_dlerror;
        g_shim.xDlSym = v_dlsym;
        g_shim.xDlClose = v_dlclose;
        g_shim.xRandomness = v_randomness;
        g_shim.xSleep = v_sleep;
        g_shim.xCurrentTime = v_current_time;
        g_shim.xGetLastError = v_last_error;
        g_shim.xCurrentTimeInt64 = v_current_time64;
        sqlite3_vfs_register(&g_shim, 0);
    });
    g_observer = obs;
    io::g_sqlite_vfs = obs ? g_shim.zName : nullptr;
}

}  // namespace io_vfs
}  // namespace ckptdb
