#include "ballast.hpp"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <vector>

#include "ckptdb.h"
#include "error.hpp"
#include "io.hpp"
#include "names.hpp"
#include "shard.hpp"

namespace ckptdb {

namespace {

std::string mib(int64_t bytes) { return std::to_string(bytes >> 20) + " MiB"; }

// The blocks of the file behind fd, kBallastBytes of them: fallocate, or
// zeros written where the file system cannot allocate without writing.
// Not fsynced: a ballast a power loss takes (or leaves short) is simply made
// again by the next writable open, and the blocks count against the file
// system's free space as soon as they are allocated.
void allocate(int fd, const std::string &path) {
    int rc;
    do {
        rc = ::fallocate(fd, 0, 0, kBallastBytes);
    } while (rc != 0 && errno == EINTR);
    if (rc == 0) return;
    if (errno != EOPNOTSUPP && errno != ENOSYS) fail_os("cannot allocate " + mib(kBallastBytes) + " for", path, errno);
    static const std::vector<char> zeros(size_t(1) << 16, 0);
    for (int64_t done = 0; done < kBallastBytes; done += static_cast<int64_t>(zeros.size()))
        write_all(fd, zeros.data(), zeros.size(), path);
    struct stat st;
    if (io::ops().fstat(fd, &st) != 0) fail_os("cannot stat", path, errno);
    if (static_cast<int64_t>(st.st_blocks) * 512 < kBallastBytes)
        fail(CKPTDB_EIO, "the file system keeps no blocks for the zeros written to '" + path +
                             "' (compression?): it cannot hold a reserve");
}

}  // namespace

bool ballast_whole(const Dir &dir) {
    struct stat st;
    if (io::ops().fstatat(dir.fd.get(), kBallastName, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT) return false;
        fail_os("cannot look up", dir.join(kBallastName), errno);
    }
    return S_ISREG(st.st_mode) && st.st_size >= kBallastBytes &&
           static_cast<int64_t>(st.st_blocks) * 512 >= kBallastBytes;
}

std::string make_ballast(const Dir &dir) noexcept {
    try {
        if (ballast_whole(dir)) return "";
        struct stat st;
        if (io::ops().fstatat(dir.fd.get(), kBallastName, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISREG(st.st_mode))
            return "'" + dir.join(kBallastName) + "' is not a regular file; it was left alone";
        // Past RLIMIT_FSIZE the allocation would raise SIGXFSZ, which ends
        // a process that does not ignore it: the limit is looked at first.
        struct rlimit rl;
        if (::getrlimit(RLIMIT_FSIZE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
            rl.rlim_cur < static_cast<rlim_t>(kBallastBytes))
            return "the file size limit (RLIMIT_FSIZE, ulimit -f) of " + std::to_string(rl.rlim_cur) +
                   " bytes is below the reserve's " + std::to_string(kBallastBytes) + " bytes";
        std::string tmp;
        UniqueFd fd = create_locked_traced(dir, random_temp_name, tmp);
        try {
            allocate(fd.get(), dir.join(tmp));
            if (io::ops().renameat(dir.fd.get(), tmp.c_str(), dir.fd.get(), kBallastName) != 0)
                fail_os("cannot rename '" + dir.join(tmp) + "' to", dir.join(kBallastName), errno);
        } catch (...) {
            unlink_name(dir, tmp);  // still held: nobody else removes or reuses it meanwhile
            throw;
        }
        return "";
    } catch (const std::exception &e) {
        return e.what();
    } catch (...) {
        return "unknown error";
    }
}

void keep_ballast(const Dir &dir, const ReserveNote &note) noexcept {
    std::string why = make_ballast(dir);
    if (why.empty()) return;
    note("reserve_unavailable", "no reserve ('" + dir.join(kBallastName) + "', " + mib(kBallastBytes) + "): " + why +
                                    ". On a full disk a prune or fsck --repair may then be unable to "
                                    "write the catalog; the next writable open tries again");
}

void Reserve::run(const std::string &what, const std::function<void()> &step) {
    std::optional<Error> first;
    try {
        step();
        return;
    } catch (const Error &e) {
        if (e.code() != CKPTDB_ENOSPC || released_) throw;
        first = e;
    }
    // Only a regular file under the name is the library's ballast.
    struct stat st;
    if (io::ops().fstatat(dir_.fd.get(), kBallastName, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode) ||
        unlink_name(dir_, kBallastName) != 0)
        throw *first;
    released_ = true;
    const std::string detail = "deleted the reserve '" + dir_.join(kBallastName) + "' (" +
                               std::to_string(static_cast<int64_t>(st.st_blocks) * 512) + " bytes) so that " + what +
                               " could write the catalog, which had failed: " + first->what();
    try {
        step();
    } catch (const std::exception &e) {
        note_("reserve_released", detail + "; " + what + " failed even so: " + e.what());
        throw;
    }
    note_("reserve_released", detail);
}

void Reserve::restore() noexcept {
    if (!released_) return;
    released_ = false;
    std::string why = make_ballast(dir_);
    if (why.empty())
        note_("reserve_restored",
              "made the reserve '" + dir_.join(kBallastName) + "' (" + mib(kBallastBytes) + ") again");
    else
        note_("reserve_unavailable", "could not make the reserve '" + dir_.join(kBallastName) + "' (" +
                                         mib(kBallastBytes) + ") again: " + why +
                                         ". The next writable open tries again once there is room");
}

}  // namespace ckptdb
