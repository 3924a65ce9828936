#include "fsio.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <vector>

#include "ckptdb.h"
#include "error.hpp"
#include "hash.hpp"
#include "io.hpp"
#include "trust.hpp"

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif

namespace ckptdb {

void UniqueFd::reset() {
    if (fd_ >= 0) io::ops().close(fd_);
    fd_ = -1;
}

Dir open_dir(const std::string &path, bool create) {
    if (path.empty()) fail(CKPTDB_EINVAL, "the checkpoint directory path is empty");
    if (path.find('\0') != std::string::npos) fail(CKPTDB_EINVAL, "the checkpoint directory path contains NUL");
    const io::Ops &os = io::ops();
    int fd = os.open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    if (fd < 0 && errno == ENOENT && create) {
        if (os.mkdir(path.c_str(), 0755) == 0) {
            // The new directory's entry is durable only once its parent is
            // synced; without that a power loss could take the directory,
            // and every checkpoint committed into it, away.
            std::string parent = path.find('/') == std::string::npos ? "." : path.substr(0, path.rfind('/'));
            if (parent.empty()) parent = "/";
            UniqueFd pfd(os.open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0));
            if (!pfd) fail_os("cannot open the parent of", path, errno);
            if (os.fsync(pfd.get()) != 0) fail_os("fsync failed for the parent of", path, errno);
        } else if (errno != EEXIST) {
            fail_os("cannot create checkpoint directory", path, errno);
        }
        fd = os.open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    }
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT) fail(CKPTDB_ENOTFOUND, "checkpoint directory '" + path + "' does not exist");
        fail_os("cannot open checkpoint directory", path, e);
    }
    Dir d;
    d.fd = UniqueFd(fd);
    char buf[PATH_MAX];
    if (!::realpath(path.c_str(), buf)) fail_os("cannot resolve checkpoint directory", path, errno);
    d.path = buf;
    if (d.path.size() > 1 && d.path.back() == '/') d.path.pop_back();
    if (d.path == "/") d.path.clear();  // join() then gives "/name"
    return d;
}

bool on_network_fs(int dirfd) {
    struct statfs sfs;
    if (::fstatfs(dirfd, &sfs) != 0) return false;
    switch (static_cast<unsigned long>(sfs.f_type)) {
        case 0x6969UL:      // NFS
        case 0x0BD00BD0UL:  // Lustre
        case 0x47504653UL:  // GPFS
        case 0xFF534D42UL:  // CIFS
        case 0xFE534D42UL:  // SMB2
        case 0x517BUL:      // SMB
        case 0x19830326UL:  // BeeGFS
        case 0x6B414653UL:  // AFS
        case 0x00C36400UL:  // CephFS
            return true;
        default:
            return false;
    }
}

UniqueFd create_exclusive(const Dir &dir, const std::string &name) {
    int fd;
    do {
        fd = io::ops().openat(dir.fd.get(), name.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) fail_os("cannot create", dir.join(name), errno);
    return UniqueFd(fd);
}

UniqueFd open_read(const Dir &dir, const std::string &name, int &err) {
    int fd;
    do {
        fd = io::ops().openat(dir.fd.get(), name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK, 0);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        err = errno;
        return UniqueFd();
    }
    UniqueFd f(fd);
    struct stat st;
    if (io::ops().fstat(fd, &st) != 0) {
        err = errno;
        return UniqueFd();
    }
    if (!S_ISREG(st.st_mode)) {  // a FIFO or device must never be read as a checkpoint
        err = EINVAL;
        return UniqueFd();
    }
    if (dir.owners_checked) require_trusted(st, "file", dir.join(name));
    int flags = ::fcntl(fd, F_GETFL);
    if (flags >= 0) ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
    err = 0;
    return f;
}

void write_all(int fd, const void *data, size_t len, const std::string &path) {
    const char *p = static_cast<const char *>(data);
    while (len > 0) {
        ssize_t n = io::ops().write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            fail_os("cannot write", path, errno);
        }
        if (n == 0) fail_os("cannot write", path, EIO);
        p += n;
        len -= static_cast<size_t>(n);
    }
}

void start_writeback(int fd, int64_t written, int64_t &flushed, const std::string &path, int64_t window) {
    int64_t end = written / window * window;
    if (end <= flushed) return;
    if (io::ops().sync_file_range(fd, flushed, end - flushed, SYNC_FILE_RANGE_WRITE) != 0 && errno != EINVAL &&
        errno != ENOSYS && errno != ESPIPE)
        fail_os("writeback failed for", path, errno);
    flushed = end;
}

void sync_fd(int fd, const std::string &path) {
    // Deliberately not retried on EINTR or anything else: after a failed
    // fsync the kernel may have dropped the dirty pages and a second call
    // would report success for data that never reached the disk.
    if (io::ops().fsync(fd) != 0) fail_os("fsync failed for", path, errno);
}

void sync_dir(const Dir &dir) { sync_fd(dir.fd.get(), dir.path.empty() ? "/" : dir.path); }

void rename_noreplace(const Dir &dir, const std::string &from, const std::string &to) {
    const io::Ops &os = io::ops();
    int r = os.renameat2(dir.fd.get(), from.c_str(), dir.fd.get(), to.c_str(), RENAME_NOREPLACE);
    if (r != 0 && (errno == EINVAL || errno == ENOSYS)) {
        // The file system cannot do RENAME_NOREPLACE: check, then rename.
        if (name_exists(dir, to)) fail(CKPTDB_EEXISTS, "'" + dir.join(to) + "' already exists");
        r = os.renameat(dir.fd.get(), from.c_str(), dir.fd.get(), to.c_str());
    }
    if (r != 0) {
        int e = errno;
        if (e == EEXIST) fail(CKPTDB_EEXISTS, "'" + dir.join(to) + "' already exists");
        fail_os("cannot rename '" + dir.join(from) + "' to", dir.join(to), e);
    }
}

int unlink_name(const Dir &dir, const std::string &name) {
    return io::ops().unlinkat(dir.fd.get(), name.c_str(), 0) == 0 ? 0 : errno;
}

bool name_exists(const Dir &dir, const std::string &name) {
    struct stat st;
    if (io::ops().fstatat(dir.fd.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) return true;
    // Any answer but "no such file" is unknown, not "taken": a caller that
    // looks for a free name would otherwise never find one.
    if (errno != ENOENT) fail_os("cannot look up", dir.join(name), errno);
    return false;
}

Dir open_subdir(const Dir &dir, const std::string &name, int &err) {
    Dir d;
    d.path = dir.join(name);
    d.owners_checked = dir.owners_checked;
    int fd;
    do {
        fd = io::ops().openat(dir.fd.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, 0);
    } while (fd < 0 && errno == EINTR);
    err = fd < 0 ? errno : 0;
    d.fd = UniqueFd(fd);
    return d;
}

void make_dir(const Dir &dir, const std::string &name) {
    if (io::ops().mkdirat(dir.fd.get(), name.c_str(), 0755) != 0)
        fail_os("cannot create directory", dir.join(name), errno);
}

int remove_dir(const Dir &dir, const std::string &name) {
    return io::ops().unlinkat(dir.fd.get(), name.c_str(), AT_REMOVEDIR) == 0 ? 0 : errno;
}

std::vector<std::string> list_names(const Dir &dir) {
    int fd = io::ops().openat(dir.fd.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    if (fd < 0) fail_os("cannot list", dir.path, errno);
    DIR *d = ::fdopendir(fd);
    if (!d) {
        int e = errno;
        io::ops().close(fd);
        fail_os("cannot list", dir.path, e);
    }
    std::vector<std::string> out;
    while (struct dirent *de = ::readdir(d)) {
        std::string n = de->d_name;
        if (n != "." && n != "..") out.push_back(n);
    }
    ::closedir(d);
    return out;
}

int64_t hash_fd(int fd, Hasher &h, const std::string &path, const std::function<bool(int64_t)> &on_bytes) {
    // Sized to the file (a small checkpoint needs no 1 MiB buffer) and not
    // zero-filled: verifying a tiny file should cost what reading it costs.
    struct stat st;
    size_t cap = 1 << 20;
    if (io::ops().fstat(fd, &st) == 0 && st.st_size >= 0 && static_cast<uint64_t>(st.st_size) < cap)
        cap = static_cast<size_t>(st.st_size) + 1;  // +1: the read that sees the end
    std::unique_ptr<char[]> buf(new char[cap]);
    int64_t total = 0;
    for (;;) {
        ssize_t n = io::ops().pread(fd, buf.get(), cap, total);
        if (n < 0) {
            if (errno == EINTR) continue;
            fail_os("cannot read", path, errno);
        }
        if (n == 0) break;
        h.update(buf.get(), static_cast<size_t>(n));
        total += n;
        if (on_bytes && !on_bytes(total)) fail(CKPTDB_ERROR, "reading '" + path + "' was interrupted by the caller");
    }
    return total;
}

}  // namespace ckptdb
