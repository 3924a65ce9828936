// The test side of the engine's I/O seam (core/io.hpp): replaces the real
// system calls with functions that count every operation, can fail the k-th
// (once or from then on) with an errno, a short write or EINTR, can stop the
// process at the k-th (for a real kill), and can record what changes the disk
// as a trace (trace.hpp) for the power-loss model. SQLite's file I/O comes
// through the test VFS (tests/support/io_vfs.hpp) into the same counter and
// trace.
//
// Only for binaries that link the engine statically (ckptdb_core_dep) and
// the test VFS (test_vfs_dep).
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "io.hpp"
#include "io_vfs.hpp"
#include "trace.hpp"

namespace faultio {

enum class Mode { none, errno_once, errno_always, short_write, eintr_once, eintr_always, pause };

struct Fault {
    Mode mode = Mode::none;
    long k = 0;        // the operation (1-based) to fail; with *_always every one from there
    int err = EIO;     // for errno modes
    std::string only;  // when set, only operations of this kind count ("fstatat", "sqlite-sync", ...)
};

inline const char *mode_name(Mode m) {
    switch (m) {
        case Mode::none:
            return "none";
        case Mode::errno_once:
            return "once";
        case Mode::errno_always:
            return "persistent";
        case Mode::short_write:
            return "short-write";
        case Mode::eintr_once:
            return "EINTR-once";
        case Mode::eintr_always:
            return "EINTR-storm";
        case Mode::pause:
            return "pause";
    }
    return "?";
}

struct State {
    bool armed = false;  // counting (and failing) only while armed
    Fault fault;
    long ops = 0;          // operations counted while armed
    long writes = 0;       // write operations counted (a short write counts these)
    long injected = 0;     // faults delivered
    std::string last_hit;  // what the fault hit
    // Recording for the power-loss model.
    bool recording = false;
    std::string root;  // absolute; trace paths are relative to it
    FILE *out = nullptr;
    int64_t next_ino = 1;
    std::map<std::string, int64_t> ns;            // relative path -> inode of a regular file
    std::map<int, int64_t> fd_ino;                // open file descriptors of regular files
    std::map<int, std::string> fd_dir;            // open descriptors of directories (relative path)
    std::set<std::string> dirsync_on_first_sync;  // SQLite files created as WAL/journal
};

inline State &st() {
    static State s;
    return s;
}

// ---- recording -------------------------------------------------------------

inline bool rel(const std::string &abs, std::string &out) {
    const std::string &r = st().root;
    if (abs == r) {
        out.clear();
        return true;
    }
    if (abs.size() > r.size() && abs.compare(0, r.size(), r) == 0 && abs[r.size()] == '/') {
        out = abs.substr(r.size() + 1);
        return true;
    }
    return false;
}

inline void emit(trace::Event e) {
    if (!st().recording || !st().out) return;
    std::string b = trace::encode(e);
    std::fwrite(b.data(), 1, b.size(), st().out);
}

inline std::string dir_of_fd(int dirfd) {
    auto it = st().fd_dir.find(dirfd);
    return it == st().fd_dir.end() ? std::string("\x01") : it->second;  // \x01: not under the root
}

inline std::string join(const std::string &d, const char *name) {
    if (d == "\x01") return d;
    if (std::strcmp(name, ".") == 0) return d;
    return d.empty() ? std::string(name) : d + "/" + name;
}

inline void note_open(int fd, const std::string &relpath, bool outside, bool is_dir, bool created) {
    State &s = st();
    s.fd_ino.erase(fd);
    s.fd_dir.erase(fd);
    if (outside || !s.recording) {
        if (!outside && is_dir) s.fd_dir[fd] = relpath;
        return;
    }
    if (is_dir) {
        s.fd_dir[fd] = relpath;
        return;
    }
    if (created || !s.ns.count(relpath)) {
        int64_t ino = s.next_ino++;
        s.ns[relpath] = ino;
        if (created) emit({trace::Op::create, ino, 0, relpath, "", ""});
    }
    s.fd_ino[fd] = s.ns[relpath];
}

// Records every file under root as the durable state the trace starts from.
inline void record_base(const std::string &dir_rel) {
    State &s = st();
    std::string abs = dir_rel.empty() ? s.root : s.root + "/" + dir_rel;
    DIR *d = ::opendir(abs.c_str());
    if (!d) return;
    std::vector<std::string> names;
    while (auto *de = ::readdir(d)) {
        std::string n = de->d_name;
        if (n != "." && n != "..") names.push_back(n);
    }
    ::closedir(d);
    for (const auto &n : names) {
        std::string r = dir_rel.empty() ? n : dir_rel + "/" + n;
        std::string p = s.root + "/" + r;
        struct stat sb;
        if (::lstat(p.c_str(), &sb) != 0) continue;
        if (S_ISDIR(sb.st_mode)) {
            emit({trace::Op::base_dir, 0, 0, r, "", ""});
            record_base(r);
        } else if (S_ISLNK(sb.st_mode)) {
            char buf[4096];
            ssize_t k = ::readlink(p.c_str(), buf, sizeof buf);
            emit({trace::Op::base_link, 0, 0, r, "", std::string(buf, k > 0 ? static_cast<size_t>(k) : 0)});
        } else if (S_ISREG(sb.st_mode)) {
            if (r.size() > 4 && r.compare(r.size() - 4, 4, "-shm") == 0) continue;  // rebuilt from the WAL
            std::string data;
            FILE *f = std::fopen(p.c_str(), "rb");
            if (f) {
                char buf[65536];
                size_t k;
                while ((k = std::fread(buf, 1, sizeof buf, f)) > 0) data.append(buf, k);
                std::fclose(f);
            }
            int64_t ino = s.next_ino++;
            s.ns[r] = ino;
            emit({trace::Op::base_file, ino, 0, r, "", data});
        }
    }
}

inline void start_recording(const std::string &root, const std::string &trace_file) {
    State &s = st();
    s.root = root;
    s.out = std::fopen(trace_file.c_str(), "wb");
    if (!s.out) {
        std::perror("cannot write the trace");
        std::exit(3);
    }
    s.recording = true;
    record_base("");
}

inline void stop_recording() {
    State &s = st();
    if (s.out) std::fclose(s.out);
    s.out = nullptr;
    s.recording = false;
}

// A commit returned OK: every later crash state must keep it.
inline void ack(int64_t id, int64_t seq) { emit({trace::Op::ack, id, seq, "", "", ""}); }

// ---- counting and failing ----------------------------------------------------

// Counts one operation; returns 0 to let it run, an errno to fail it with,
// or -1 for a short write.
inline int gate(const char *what, bool is_write) {
    State &s = st();
    if (!s.armed) return 0;
    if (!s.fault.only.empty() && s.fault.only != what) return 0;
    s.ops++;
    if (is_write) s.writes++;
    const Fault &f = s.fault;
    switch (f.mode) {
        case Mode::none:
            return 0;
        case Mode::pause:
            if (s.ops == f.k) {
                std::printf("PAUSED %ld %s\n", s.ops, what);
                std::fflush(stdout);
                for (;;) ::pause();
            }
            return 0;
        case Mode::short_write:
            // The k-th write is short; from then on the disk is full.
            if (!is_write) return 0;
            if (s.writes == f.k) {
                s.injected++;
                s.last_hit = what;
                return -1;
            }
            if (s.writes > f.k) {
                s.injected++;
                return ENOSPC;
            }
            return 0;
        case Mode::errno_once:
        case Mode::eintr_once:
            if (s.ops != f.k) return 0;
            s.injected++;
            s.last_hit = what;
            return f.mode == Mode::eintr_once ? EINTR : f.err;
        case Mode::eintr_always:
            // A storm of signals: EINTR for 16 operations in a row. (EINTR for
            // ever would only show that retry loops retry.)
            if (s.ops < f.k || s.ops >= f.k + 16) return 0;
            if (s.ops == f.k) s.last_hit = what;
            s.injected++;
            return EINTR;
        case Mode::errno_always:
            if (s.ops < f.k) return 0;
            if (s.ops == f.k) s.last_hit = what;
            s.injected++;
            return f.err;
    }
    return 0;
}

// Did the scenario reach operation k (so that a larger k is still worth trying)?
inline bool reached() {
    const State &s = st();
    return s.fault.mode == Mode::short_write ? s.writes >= s.fault.k : s.ops >= s.fault.k;
}

inline void arm(const Fault &f) {
    State &s = st();
    s.fault = f;
    s.ops = 0;
    s.writes = 0;
    s.last_hit.clear();
    s.armed = true;
}

inline void disarm() {
    st().armed = false;
    st().fault = Fault();
}

// ---- the replacement system calls --------------------------------------------

#define FAULTIO_GATE(what, is_write)   \
    do {                               \
        int e_ = gate(what, is_write); \
        if (e_ > 0) {                  \
            errno = e_;                \
            return -1;                 \
        }                              \
    } while (0)

inline int f_open(const char *path, int flags, mode_t mode) {
    FAULTIO_GATE("open", false);
    int fd = ckptdb::io::real_ops().open(path, flags, mode);
    if (fd >= 0) {
        std::string r;
        bool inside = st().recording ? rel(path, r) : false;
        note_open(fd, r, !inside, (flags & O_DIRECTORY) != 0, false);
    }
    return fd;
}

inline int f_openat(int dirfd, const char *name, int flags, mode_t mode) {
    // A file made by O_TMPFILE gets its name from linkat through /proc,
    // which the seam does not see: while recording, the file system is one
    // without O_TMPFILE, and the engine creates the file by name instead.
    if (st().recording && (flags & O_TMPFILE) == O_TMPFILE) {
        errno = EOPNOTSUPP;
        return -1;
    }
    FAULTIO_GATE((flags & O_CREAT) ? "create" : "open", false);
    std::string r = join(dir_of_fd(dirfd), name);
    bool outside = r == "\x01";
    bool existed = true;
    if ((flags & O_CREAT) && st().recording) {
        struct stat sb;
        existed = ckptdb::io::real_ops().fstatat(dirfd, name, &sb, AT_SYMLINK_NOFOLLOW) == 0;
    }
    int fd = ckptdb::io::real_ops().openat(dirfd, name, flags, mode);
    if (fd >= 0) note_open(fd, r, outside, (flags & O_DIRECTORY) != 0 || std::strcmp(name, ".") == 0, !existed);
    return fd;
}

inline int f_close(int fd) {
    st().fd_ino.erase(fd);
    st().fd_dir.erase(fd);
    return ckptdb::io::real_ops().close(fd);
}

inline ssize_t f_read(int fd, void *buf, size_t len) {
    FAULTIO_GATE("read", false);
    return ckptdb::io::real_ops().read(fd, buf, len);
}

inline ssize_t f_pread(int fd, void *buf, size_t len, off_t off) {
    FAULTIO_GATE("pread", false);
    return ckptdb::io::real_ops().pread(fd, buf, len, off);
}

inline ssize_t f_write(int fd, const void *buf, size_t len) {
    int e = gate("write", true);
    if (e > 0) {
        errno = e;
        return -1;
    }
    if (e < 0 && len > 1) len /= 2;  // short write
    off_t at = ::lseek(fd, 0, SEEK_CUR);
    ssize_t n = ckptdb::io::real_ops().write(fd, buf, len);
    if (n > 0 && st().recording) {
        auto it = st().fd_ino.find(fd);
        if (it != st().fd_ino.end())
            emit({trace::Op::write, it->second, static_cast<int64_t>(at), "", "",
                  std::string(static_cast<const char *>(buf), static_cast<size_t>(n))});
    }
    return n;
}

inline int f_fsync(int fd) {
    bool is_dir = st().fd_dir.count(fd) > 0;
    FAULTIO_GATE(is_dir ? "dirsync" : "fsync", false);
    int r = ckptdb::io::real_ops().fsync(fd);
    if (r == 0 && st().recording) {
        if (is_dir)
            emit({trace::Op::dirsync, 0, 0, st().fd_dir[fd], "", ""});
        else if (st().fd_ino.count(fd))
            emit({trace::Op::fsync, st().fd_ino[fd], 0, "", "", ""});
    }
    return r;
}

inline int f_sync_file_range(int fd, off_t off, off_t len, unsigned int flags) {
    FAULTIO_GATE("sync_file_range", false);
    return ckptdb::io::real_ops().sync_file_range(fd, off, len, flags);
}

inline int f_fstat(int fd, struct stat *sb) {
    FAULTIO_GATE("fstat", false);
    return ckptdb::io::real_ops().fstat(fd, sb);
}

inline int f_fstatat(int dirfd, const char *name, struct stat *sb, int flags) {
    FAULTIO_GATE("fstatat", false);
    return ckptdb::io::real_ops().fstatat(dirfd, name, sb, flags);
}

inline void note_rename(int olddirfd, const char *from, int newdirfd, const char *to) {
    if (!st().recording) return;
    std::string a = join(dir_of_fd(olddirfd), from), b = join(dir_of_fd(newdirfd), to);
    if (a == "\x01" || b == "\x01") return;
    auto &ns = st().ns;
    if (ns.count(a)) {
        ns[b] = ns[a];
        ns.erase(a);
    } else {
        ns.erase(b);  // a symlink or directory replaced the name
    }
    // A renamed directory (a directory save's temp directory taking its
    // final name) takes its files and its open descriptors' paths along.
    const std::string pa = a + "/", pb = b + "/";
    for (auto it = ns.lower_bound(pa); it != ns.end() && it->first.compare(0, pa.size(), pa) == 0;) {
        ns[pb + it->first.substr(pa.size())] = it->second;
        it = ns.erase(it);
    }
    for (auto &kv : st().fd_dir)
        if (kv.second == a)
            kv.second = b;
        else if (kv.second.compare(0, pa.size(), pa) == 0)
            kv.second = pb + kv.second.substr(pa.size());
    emit({trace::Op::rename, 0, 0, a, b, ""});
}

inline int f_renameat(int olddirfd, const char *from, int newdirfd, const char *to) {
    FAULTIO_GATE("rename", false);
    int r = ckptdb::io::real_ops().renameat(olddirfd, from, newdirfd, to);
    if (r == 0) note_rename(olddirfd, from, newdirfd, to);
    return r;
}

inline int f_renameat2(int olddirfd, const char *from, int newdirfd, const char *to, unsigned int flags) {
    FAULTIO_GATE("rename", false);
    int r = ckptdb::io::real_ops().renameat2(olddirfd, from, newdirfd, to, flags);
    if (r == 0) note_rename(olddirfd, from, newdirfd, to);
    return r;
}

inline int f_unlinkat(int dirfd, const char *name, int flags) {
    FAULTIO_GATE("unlink", false);
    int r = ckptdb::io::real_ops().unlinkat(dirfd, name, flags);
    if (r == 0 && st().recording) {
        std::string p = join(dir_of_fd(dirfd), name);
        if (p != "\x01") {
            st().ns.erase(p);
            emit({trace::Op::unlink, 0, 0, p, "", ""});
        }
    }
    return r;
}

inline int f_mkdir(const char *path, mode_t mode) {
    FAULTIO_GATE("mkdir", false);
    int r = ckptdb::io::real_ops().mkdir(path, mode);
    std::string p;
    if (r == 0 && st().recording && rel(path, p)) emit({trace::Op::mkdir, 0, 0, p, "", ""});
    return r;
}

inline int f_mkdirat(int dirfd, const char *name, mode_t mode) {
    FAULTIO_GATE("mkdir", false);
    int r = ckptdb::io::real_ops().mkdirat(dirfd, name, mode);
    if (r == 0 && st().recording) {
        std::string p = join(dir_of_fd(dirfd), name);
        if (p != "\x01") emit({trace::Op::mkdir, 0, 0, p, "", ""});
    }
    return r;
}

inline int f_symlinkat(const char *target, int dirfd, const char *name) {
    FAULTIO_GATE("symlink", false);
    int r = ckptdb::io::real_ops().symlinkat(target, dirfd, name);
    if (r == 0 && st().recording) {
        std::string p = join(dir_of_fd(dirfd), name);
        if (p != "\x01") emit({trace::Op::symlink, 0, 0, p, "", target});
    }
    return r;
}

inline ssize_t f_readlinkat(int dirfd, const char *name, char *buf, size_t len) {
    FAULTIO_GATE("readlink", false);
    return ckptdb::io::real_ops().readlinkat(dirfd, name, buf, len);
}

#undef FAULTIO_GATE

// SQLite's operations, as the VFS shim reports them.
inline int sqlite_observer(const ckptdb::io_vfs::SqliteOp &op) {
    using K = ckptdb::io_vfs::SqliteOp;
    State &s = st();
    std::string r;
    bool inside = s.recording && rel(op.path, r);
    if (op.kind == K::open && op.len == 1) {  // after xOpen created the file
        if (inside) {
            int64_t ino = s.next_ino++;
            s.ns[r] = ino;
            emit({trace::Op::create, ino, 0, r, "", ""});
            if (op.flags & (SQLITE_OPEN_WAL | SQLITE_OPEN_MAIN_JOURNAL | SQLITE_OPEN_SUPER_JOURNAL))
                s.dirsync_on_first_sync.insert(r);
        }
        return 0;
    }
    if (op.kind == K::open && inside && (op.flags & SQLITE_OPEN_CREATE) &&
        (op.flags & (SQLITE_OPEN_WAL | SQLITE_OPEN_MAIN_JOURNAL | SQLITE_OPEN_SUPER_JOURNAL)))
        s.dirsync_on_first_sync.insert(r);  // the unix VFS syncs the directory on its first xSync
    const char *what = op.kind == K::open       ? "sqlite-open"
                       : op.kind == K::read     ? "sqlite-read"
                       : op.kind == K::write    ? "sqlite-write"
                       : op.kind == K::truncate ? "sqlite-truncate"
                       : op.kind == K::sync     ? "sqlite-sync"
                                                : "sqlite-delete";
    int e = gate(what, op.kind == K::write);
    if (e != 0 && e != EINTR) {  // the shim fails it (a short write: half reaches the file)
        if (e == -1 && inside && s.ns.count(r) && op.len > 1)
            emit({trace::Op::write, s.ns[r], op.off, "", "",
                  std::string(static_cast<const char *>(op.data), static_cast<size_t>(op.len / 2))});
        return e;
    }
    if (!inside) return 0;
    if (!s.ns.count(r) && op.kind != K::remove) s.ns[r] = s.next_ino++;  // opened before recording began
    switch (op.kind) {
        case K::write:
            emit({trace::Op::write, s.ns[r], op.off, "", "",
                  std::string(static_cast<const char *>(op.data), static_cast<size_t>(op.len))});
            break;
        case K::truncate:
            emit({trace::Op::truncate, s.ns[r], op.off, "", "", ""});
            break;
        case K::sync:
            // Emitted before SQLite syncs; a sync that then fails is rare enough
            // not to model (the shim fails syncs only through the gate above).
            emit({trace::Op::fsync, s.ns[r], 0, "", "", ""});
            if (s.dirsync_on_first_sync.erase(r)) emit({trace::Op::dirsync, 0, 0, trace::parent_of(r), "", ""});
            break;
        case K::remove:
            s.ns.erase(r);
            emit({trace::Op::unlink, 0, 0, r, "", ""});
            if (op.flags) emit({trace::Op::dirsync, 0, 0, trace::parent_of(r), "", ""});
            break;
        default:
            break;
    }
    return 0;
}

// Puts the replacement calls and the SQLite observer in place.
inline void install() {
    ckptdb::io::Ops o = ckptdb::io::real_ops();
    o.open = f_open;
    o.openat = f_openat;
    o.close = f_close;
    o.read = f_read;
    o.pread = f_pread;
    o.write = f_write;
    o.fsync = f_fsync;
    o.sync_file_range = f_sync_file_range;
    o.fstat = f_fstat;
    o.fstatat = f_fstatat;
    o.renameat = f_renameat;
    o.renameat2 = f_renameat2;
    o.unlinkat = f_unlinkat;
    o.mkdir = f_mkdir;
    o.symlinkat = f_symlinkat;
    o.readlinkat = f_readlinkat;
    o.mkdirat = f_mkdirat;
    ckptdb::io::g_ops = o;
    ckptdb::io_vfs::set_sqlite_observer(sqlite_observer);
}

}  // namespace faultio
