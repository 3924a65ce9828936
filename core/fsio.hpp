// File-system primitives of the engine. Every path here is a single name
// relative to the checkpoint directory's descriptor, opened without following
// symlinks; errors carry the path and strerror(errno).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace ckptdb {

class Hasher;

// Owns a file descriptor; closes it on destruction.
class UniqueFd {
public:
    UniqueFd() = default;
    explicit UniqueFd(int fd) : fd_(fd) {}
    ~UniqueFd() { reset(); }
    UniqueFd(UniqueFd &&o) noexcept : fd_(o.release()) {}
    UniqueFd &operator=(UniqueFd &&o) noexcept {
        if (this != &o) {
            reset();
            fd_ = o.release();
        }
        return *this;
    }
    UniqueFd(const UniqueFd &) = delete;
    UniqueFd &operator=(const UniqueFd &) = delete;

    int get() const { return fd_; }
    explicit operator bool() const { return fd_ >= 0; }
    int release() {
        int f = fd_;
        fd_ = -1;
        return f;
    }
    void reset();

private:
    int fd_ = -1;
};

// The checkpoint directory: an O_DIRECTORY descriptor and its absolute path.
struct Dir {
    UniqueFd fd;
    std::string path;  // absolute, without a trailing slash
    // Set by Catalog::open unless OpenOptions::trust_shared: open_read
    // refuses files other users own (trust.hpp).
    bool owners_checked = false;
    std::string join(const std::string &name) const { return path + "/" + name; }
};

// Opens (and with create, makes one level of) the directory at path.
Dir open_dir(const std::string &path, bool create);

// True when the directory lives on a network file system (NFS, Lustre,
// GPFS, CIFS/SMB, BeeGFS, ...) where SQLite's WAL is not safe.
bool on_network_fs(int dirfd);

// Creates name exclusively (O_CREAT|O_EXCL|O_NOFOLLOW|O_CLOEXEC, 0644 under
// the umask) for reading and writing.
UniqueFd create_exclusive(const Dir &dir, const std::string &name);

// Opens an existing regular file for reading without following symlinks.
// Returns an empty UniqueFd and sets err when it cannot. In a directory
// with owners_checked, a file another user owns (trust.hpp) throws
// CKPTDB_EUNTRUSTED naming it: every checkpoint file the library reads
// comes through here.
UniqueFd open_read(const Dir &dir, const std::string &name, int &err);

// Writes everything (short writes and EINTR handled) or throws.
void write_all(int fd, const void *data, size_t len, const std::string &path);

// Hands every full `window` bytes written since *flushed to writeback
// (sync_file_range), advancing *flushed: the final fsync then has little
// left. Only a hint; a writeback error throws like a failed fsync.
void start_writeback(int fd, int64_t written, int64_t &flushed, const std::string &path, int64_t window = 8 << 20);

// fsync, never retried: a failure throws.
void sync_fd(int fd, const std::string &path);
void sync_dir(const Dir &dir);

// Renames from -> to inside the directory without replacing an existing
// file (RENAME_NOREPLACE; where the file system lacks it, checks first).
void rename_noreplace(const Dir &dir, const std::string &from, const std::string &to);

// Unlinks name; returns the errno (0 on success, ENOENT included as-is).
int unlink_name(const Dir &dir, const std::string &name);

// True if anything (file, link, directory) has this name in the directory;
// throws when the lookup fails otherwise than with ENOENT.
bool name_exists(const Dir &dir, const std::string &name);

// The subdirectory name of dir (a single name), opened without following a
// symlink: a directory checkpoint, or a directory save's temp directory.
// When it cannot be opened the Dir has no descriptor and err says why
// (ENOENT; ENOTDIR or ELOOP for anything but a directory).
Dir open_subdir(const Dir &dir, const std::string &name, int &err);

// Creates the directory name in dir (0755 under the umask); throws.
void make_dir(const Dir &dir, const std::string &name);

// Removes the empty directory name from dir; returns the errno (0 on success).
int remove_dir(const Dir &dir, const std::string &name);

// Names in the directory (not "." or "..").
std::vector<std::string> list_names(const Dir &dir);

// Reads the file through fd from offset 0 to the end, hashing it; returns the
// size. Throws on read errors.
// on_bytes (may be empty) sees the running total after each read; returning
// false stops the read with CKPTDB_ERROR "interrupted".
int64_t hash_fd(int fd, Hasher &h, const std::string &path,
                const std::function<bool(int64_t)> &on_bytes = std::function<bool(int64_t)>());

}  // namespace ckptdb
