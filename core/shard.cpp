#include "shard.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <set>

#include "ckptdb.h"
#include "error.hpp"
#include "hooks.hpp"
#include "io.hpp"
#include "names.hpp"

namespace ckptdb {

namespace {

int flock_retry(int fd, int op) {
    int rc;
    do {
        rc = ::flock(fd, op);
    } while (rc != 0 && errno == EINTR);
    return rc == 0 ? 0 : errno;
}

}  // namespace

// Creates name exclusively and holds an exclusive flock on it. Where the
// file system has O_TMPFILE the file is locked before it gets its name, so
// no other process ever sees it unlocked.
UniqueFd create_locked_temp(const Dir &dir, const std::string &name) {
    int fd;
    do {
        fd = io::ops().openat(dir.fd.get(), ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0644);
    } while (fd < 0 && errno == EINTR);
    if (fd >= 0) {
        UniqueFd f(fd);
        if (int err = flock_retry(fd, LOCK_EX)) fail_os("cannot lock", dir.join(name), err);
        std::string proc = "/proc/self/fd/" + std::to_string(fd);
        if (::linkat(AT_FDCWD, proc.c_str(), dir.fd.get(), name.c_str(), AT_SYMLINK_FOLLOW) == 0) return f;
        if (errno == EEXIST) fail_os("cannot create", dir.join(name), errno);
        // No /proc, or linkat refused: fall back to a plain exclusive create.
    } else if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL && errno != ENOENT) {
        fail_os("cannot create a temp file in", dir.path, errno);
    }
    UniqueFd f = create_exclusive(dir, name);
    if (int err = flock_retry(f.get(), LOCK_EX)) {
        unlink_name(dir, name);
        fail_os("cannot lock", dir.join(name), err);
    }
    return f;
}

UniqueFd create_locked_traced(const Dir &dir, const std::function<std::string()> &make_name, std::string &name) {
    for (int attempt = 0;; attempt++) {
        name = make_name();
        UniqueFd f = create_exclusive(dir, name);
        if (int err = flock_retry(f.get(), LOCK_EX)) {
            unlink_name(dir, name);
            fail_os("cannot lock", dir.join(name), err);
        }
        if (check_temp(dir, name, f.get()).ours) return f;
        if (attempt >= 100) fail(CKPTDB_EIO, "temp files in '" + dir.path + "' keep vanishing as they are made");
    }
}

bool remove_unheld(const Dir &dir, const std::string &name) {
    int err = 0;
    UniqueFd f = open_read(dir, name, err);
    if (!f) {
        // A link (the last link's temp name) cannot be held: it goes.
        struct stat st;
        return io::ops().fstatat(dir.fd.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode) &&
               unlink_name(dir, name) == 0;
    }
    if (flock_retry(f.get(), LOCK_EX | LOCK_NB) != 0) return false;
    if (!check_temp(dir, name, f.get()).ours) return false;
    return unlink_name(dir, name) == 0;
}

bool temp_in_use(const Dir &dir, const std::string &name) {
    int err = 0;
    UniqueFd f = open_read(dir, name, err);
    if (!f) return false;
    return flock_retry(f.get(), LOCK_SH | LOCK_NB) == EWOULDBLOCK;
}

std::string seal_sidecar_name(const std::string &temp_name) { return temp_name + ".seal"; }

namespace {

constexpr size_t kSealMax = 1024;  // "v1 " + two 20-digit numbers + 32 hex digits + a 255-byte name fits

std::string seal_text(const ShardFile &f, ino_t ino) {
    return "v1 " + std::to_string(f.size) + " " + f.checksum + " " + std::to_string(static_cast<uint64_t>(ino)) + " " +
           f.name;
}

struct SealFields {
    int64_t size = -1;
    std::string checksum;
    uint64_t ino = 0;
    std::string name;
};

bool parse_digits(const std::string &s, size_t &at, uint64_t &out) {
    size_t start = at;
    out = 0;
    while (at < s.size() && s[at] >= '0' && s[at] <= '9' && at - start < 20) out = out * 10 + uint64_t(s[at++] - '0');
    return at > start && at < s.size() && s[at++] == ' ';
}

// The fields of a seal's text; nullopt when it is not one this library wrote.
std::optional<SealFields> parse_seal(const std::string &s) {
    if (s.compare(0, 3, "v1 ") != 0) return std::nullopt;
    SealFields out;
    size_t at = 3;
    uint64_t size = 0;
    if (!parse_digits(s, at, size) || size > uint64_t(INT64_MAX)) return std::nullopt;
    out.size = static_cast<int64_t>(size);
    if (s.size() < at + 33 || s[at + 32] != ' ') return std::nullopt;
    out.checksum = s.substr(at, 32);
    if (!is_hex32(out.checksum)) return std::nullopt;
    at += 33;
    if (!parse_digits(s, at, out.ino)) return std::nullopt;
    out.name = s.substr(at);
    if (out.name.empty()) return std::nullopt;
    return out;
}

bool sidecar_forced() {
    const char *v = std::getenv("CKPTDB_TEST_SEAL_SIDECAR");
    return v && std::strcmp(v, "1") == 0;
}

}  // namespace

UniqueFd write_seal(const Dir &dir, int fd, const ShardFile &f) {
    struct stat st;
    if (io::ops().fstat(fd, &st) != 0) fail_os("cannot stat", dir.join(f.temp_name), errno);
    std::string text = seal_text(f, st.st_ino);
    if (!sidecar_forced() && ::fsetxattr(fd, kSealAttr, text.data(), text.size(), 0) == 0) return UniqueFd();
    // No user attributes here (or any other refusal): the sidecar, locked
    // before anyone can take it for an orphan.
    std::string side = seal_sidecar_name(f.temp_name), made;
    UniqueFd s = create_locked_traced(
        dir, [&] { return side; }, made);
    try {
        write_all(s.get(), text.data(), text.size(), dir.join(side));
    } catch (...) {
        unlink_name(dir, side);
        throw;
    }
    return s;
}

void drop_seal(const Dir &dir, const std::string &temp_name, UniqueFd &sidecar) {
    if (!sidecar) return;
    std::string side = seal_sidecar_name(temp_name);
    if (check_temp(dir, side, sidecar.get()).ours) unlink_name(dir, side);
    sidecar.reset();
}

bool check_seal(const Dir &dir, int fd, const struct stat &st, const ShardFile &f, size_t rank) {
    std::string who = "rank " + std::to_string(rank) + "'s temp file '" + f.temp_name + "'";
    std::string text;
    bool sidecar = false;
    char buf[kSealMax];
    ssize_t n = ::fgetxattr(fd, kSealAttr, buf, sizeof buf);
    if (n >= 0) {
        text.assign(buf, static_cast<size_t>(n));
    } else if (errno == ENODATA || errno == ENOTSUP) {
        int err = 0;
        UniqueFd s = open_read(dir, seal_sidecar_name(f.temp_name), err);
        if (!s)
            fail(CKPTDB_EINVAL, who + " has no seal (neither the attribute " + kSealAttr + " nor '" +
                                    seal_sidecar_name(f.temp_name) +
                                    "'): only a file a shard of this library finished can be committed");
        sidecar = true;
        size_t got = 0;
        for (;;) {
            ssize_t r = io::ops().read(s.get(), buf + got, sizeof buf - got);
            if (r < 0 && errno == EINTR) continue;
            if (r < 0) fail_os("cannot read the seal", dir.join(seal_sidecar_name(f.temp_name)), errno);
            if (r == 0 || (got += static_cast<size_t>(r)) == sizeof buf) break;
        }
        text.assign(buf, got);
    } else if (errno == ERANGE) {
        fail(CKPTDB_EINVAL,
             who + " has a seal longer than " + std::to_string(kSealMax) + " bytes: not one of this library");
    } else {
        fail_os("cannot read the seal of", dir.join(f.temp_name), errno);
    }
    std::optional<SealFields> s = parse_seal(text);
    if (!s) fail(CKPTDB_EINVAL, who + " has a seal this library did not write");
    if (s->ino != static_cast<uint64_t>(st.st_ino))
        fail(CKPTDB_EINVAL, who + " carries the seal of another file (inode " + std::to_string(s->ino) +
                                ", it is inode " + std::to_string(static_cast<uint64_t>(st.st_ino)) + ")");
    if (s->name != f.name) fail(CKPTDB_EINVAL, who + " was sealed for '" + s->name + "', not '" + f.name + "'");
    if (s->size != f.size)
        fail(CKPTDB_EINVAL, who + " was sealed with " + std::to_string(s->size) + " bytes, the commit reports " +
                                std::to_string(f.size));
    if (s->checksum != f.checksum)
        fail(CKPTDB_EINVAL, who + " was sealed with checksum " + s->checksum + ", the commit reports " + f.checksum);
    return sidecar;
}

std::unique_ptr<Shard> Shard::begin(const std::string &dir, const std::string &name) {
    check_name(name);
    std::unique_ptr<Shard> s(new Shard());
    s->dir_ = open_dir(dir, false);
    s->info_.name = name;
    s->info_.temp_name = random_temp_name();
    s->fd_ = create_locked_temp(s->dir_, s->info_.temp_name);
    s->out_.emplace(s->dir_.join(s->info_.temp_name));
    hook("shard_created");
    return s;
}

std::unique_ptr<Shard> Shard::begin_in(const std::string &dir, const std::string &temp_dir, const std::string &name,
                                       int64_t rank) {
    check_name(name);
    if (rank < 0) fail(CKPTDB_EINVAL, "the rank of '" + name + "' must be >= 0, got " + std::to_string(rank));
    if (!is_temp_dir_name(temp_dir))
        fail(CKPTDB_EINVAL, "'" + temp_dir + "' is not the temp directory name of a directory save");
    std::unique_ptr<Shard> s(new Shard());
    s->dir_ = open_dir(dir, false);
    int err = 0;
    s->tmp_ = open_subdir(s->dir_, temp_dir, err);
    if (err == ENOENT)
        fail(CKPTDB_ENOTFOUND, "the temp directory '" + s->dir_.join(temp_dir) +
                                   "' of the directory save is not there: it was committed, aborted or never begun");
    if (err == ENOTDIR || err == ELOOP)
        fail(CKPTDB_EINVAL, "'" + s->dir_.join(temp_dir) + "' is not a directory (links are not followed)");
    if (err) fail_os("cannot open the temp directory", s->dir_.join(temp_dir), err);
    s->tmp_name_ = temp_dir;
    s->in_dir_ = true;
    s->info_.name = name;
    s->info_.temp_name = name;  // created under its own name: the directory is renamed, not the file
    s->info_.rank = rank;
    try {
        s->fd_ = create_locked_temp(s->tmp_, name);
    } catch (const Error &e) {
        if (e.code() == CKPTDB_EEXISTS)
            fail(CKPTDB_EEXISTS, "'" + s->tmp_.join(name) + "' was already written by another writer of the save");
        throw;
    }
    s->out_.emplace(s->tmp_.join(name));
    hook("shard_created");
    return s;
}

bool Shard::temp_dir_is_ours() const {
    // The temp directory still under its name: no commit renamed it (the
    // descriptor follows the rename, the name does not).
    struct stat by_name, by_fd;
    return io::ops().fstatat(dir_.fd.get(), tmp_name_.c_str(), &by_name, AT_SYMLINK_NOFOLLOW) == 0 &&
           io::ops().fstat(tmp_.fd.get(), &by_fd) == 0 && S_ISDIR(by_name.st_mode) && by_name.st_ino == by_fd.st_ino &&
           by_name.st_dev == by_fd.st_dev;
}

Shard::~Shard() {
    if (!fd_ && state_ != State::finished) return;
    if (in_dir_ && (state_ == State::finished || !temp_dir_is_ours())) {
        // Sealed for the commit, or the directory was committed or removed:
        // nothing here is this writer's to remove any more.
        seal_.reset();
        fd_.reset();
        return;
    }
    // The temp name still being ours means no commit took the file.
    if (fd_ && check_temp(where(), info_.temp_name, fd_.get()).ours) unlink_name(where(), info_.temp_name);
    drop_seal(where(), info_.temp_name, seal_);
    fd_.reset();  // drops the lock
}

void Shard::fail_with(const Error &e) {
    err_code_ = e.code();
    err_msg_ = e.what();
    state_ = State::failed;
    if (!in_dir_ || temp_dir_is_ours()) {
        unlink_name(where(), info_.temp_name);
        drop_seal(where(), info_.temp_name, seal_);
    }
    seal_.reset();
    fd_.reset();
}

void Shard::write(const void *data, size_t len) {
    if (state_ == State::failed) throw Error(err_code_, err_msg_);
    if (state_ == State::finished) fail(CKPTDB_EMISUSE, "cannot write: the shard was already finished");
    if (state_ == State::external) fail(CKPTDB_EMISUSE, "cannot mix ckptdb_shard_write with writes through its fd");
    if (len == 0) return;
    try {
        out_->write(fd_.get(), data, len);
    } catch (const Error &e) {
        fail_with(e);
        throw;
    }
}

int Shard::fd() {
    if (state_ == State::failed) throw Error(err_code_, err_msg_);
    if (state_ == State::finished) fail(CKPTDB_EMISUSE, "cannot hand out the fd: the shard was already finished");
    if (state_ == State::streaming && out_->size() > 0)
        fail(CKPTDB_EMISUSE, "cannot hand out the fd after bytes were streamed into the shard");
    state_ = State::external;
    return fd_.get();
}

const ShardFile &Shard::finish() {
    if (state_ == State::failed) throw Error(err_code_, err_msg_);
    if (state_ == State::finished) return info_;
    std::string path = where().join(info_.temp_name);
    try {
        TempCheck t = check_temp(where(), info_.temp_name, fd_.get());
        if (t.err) fail_os("the shard's temp file vanished:", path, t.err);
        if (t.fd_err) fail_os("cannot stat", path, t.fd_err);
        if (!t.ours) fail(CKPTDB_EIO, "the shard's temp file '" + path + "' was replaced by another file");
        if (state_ == State::external) out_->hash_file(fd_.get());
        out_->sync(fd_.get());
        info_.size = out_->size();
        info_.checksum = out_->checksum();
        seal_ = write_seal(where(), fd_.get(), info_);
    } catch (const Error &e) {
        fail_with(e);
        throw;
    }
    state_ = State::finished;
    if (in_dir_) {
        // A directory save's file is the save's now: its temp directory is
        // guarded by the save's row, and an abort or a recovery may remove
        // it (only a file still being written is held).
        seal_.reset();
        fd_.reset();
    }
    hook("shard_synced");
    return info_;
}

Entry commit_shards(const std::shared_ptr<Catalog> &cat, const std::string &kind, int64_t epoch, int64_t step,
                    const std::optional<std::string> &metadata, const std::vector<ShardFile> &files,
                    const std::function<void(Store &, int64_t)> &in_commit) {
    // Everything is checked before anything changes.
    check_save_request(*cat, kind, epoch, step);
    if (files.empty()) fail(CKPTDB_EINVAL, "a sharded save needs at least one file");
    const Dir &dir = cat->dir();
    std::set<std::string> names, temps;
    std::vector<bool> sidecars(files.size(), false);
    for (size_t r = 0; r < files.size(); r++) {
        const ShardFile &f = files[r];
        std::string who = "shard of rank " + std::to_string(r);
        check_final_name(*cat, f.name, who);
        if (!names.insert(f.name).second) fail(CKPTDB_EINVAL, who + ": name '" + f.name + "' is used by two ranks");
        if (!is_exact_temp_name(f.temp_name))
            fail(CKPTDB_EINVAL, who + ": '" + f.temp_name + "' is not a temp file name of this library");
        if (!temps.insert(f.temp_name).second)
            fail(CKPTDB_EINVAL, who + ": temp file '" + f.temp_name + "' is given by two ranks");
        if (f.size < 0) fail(CKPTDB_EINVAL, who + ": size must be >= 0, got " + std::to_string(f.size));
        if (!is_hex32(f.checksum))
            fail(CKPTDB_EINVAL, who + ": checksum must be 32 lower-case hex digits, got '" + f.checksum + "'");
        // Opened without following a symlink; only its seal is read.
        int err = 0;
        UniqueFd tf = open_read(dir, f.temp_name, err);
        if (!tf && (err == EINVAL || err == ELOOP))
            fail(CKPTDB_EINVAL, who + ": '" + dir.join(f.temp_name) + "' is not a regular file");
        if (!tf) fail_os(who + ": cannot find its temp file", dir.join(f.temp_name), err);
        struct stat st;
        if (io::ops().fstat(tf.get(), &st) != 0) fail_os("cannot stat", dir.join(f.temp_name), errno);
        sidecars[r] = check_seal(dir, tf.get(), st, f, r);
        if (st.st_size != f.size)
            fail(CKPTDB_EINVAL, who + ": '" + dir.join(f.temp_name) + "' has " + std::to_string(st.st_size) +
                                    " bytes, the shard reported " + std::to_string(f.size));
    }

    std::unique_ptr<Commit> c = Commit::begin(cat, Commit::Layout::shards, kind, epoch, step, metadata, files);
    try {
        c->install();
        c->complete(in_commit);
    } catch (const Error &e) {
        // The files this commit renamed are removed; the temp files it did
        // not take stay with their shards, which remove them when freed.
        c->abort(e.what());
        throw;
    }
    // The files are the checkpoint's now: their sidecar seals have served
    // (a shard that still holds one finds it gone).
    for (size_t r = 0; r < files.size(); r++)
        if (sidecars[r]) unlink_name(dir, seal_sidecar_name(files[r].temp_name));
    return c->finish();
}

}  // namespace ckptdb
