// The last link: a symlink in the checkpoint directory (OpenOptions::last_link)
// that names the newest complete checkpoint, moved after every commit, prune,
// restore, repair and sync.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>

#include "catalog.hpp"
#include "error.hpp"
#include "hash.hpp"
#include "hooks.hpp"
#include "io.hpp"

namespace ckptdb {

// The last link is replaced through a temp link of one fixed name per link
// (link_temp_name), made and renamed only under the catalog's write lock: a
// second process refreshing the link waits for the first instead of racing
// it, and recovery never sees that name as an orphan (it is not a temp name
// of the library). One left by a kill is replaced by the next refresh.
std::string Catalog::link_temp_name() const {
    if (opts_.last_link.empty()) return std::string();
    Hasher h;
    h.update(opts_.last_link.data(), opts_.last_link.size());
    return ".ckptdb-link-" + h.hex().substr(0, 16);
}

void Catalog::refresh_link() {
    const std::string &link = opts_.last_link;
    if (link.empty() || readonly()) return;
    const io::Ops &os = io::ops();
    const std::string tmp = link_temp_name();
    // What the link should name, and what it names: "" when none.
    auto wanted = [](Store &db) { return db.newest_complete_name(); };
    auto current = [&](bool &user_file) {
        char buf[PATH_MAX];
        ssize_t n = os.readlinkat(dir_.fd.get(), link.c_str(), buf, sizeof buf - 1);
        user_file = n < 0 && errno == EINVAL;  // a regular file the user owns: never replaced
        return n >= 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
    };
    try {
        // Without the lock first: most commits leave the link as it is.
        std::string target;
        read([&](Store &db) { target = wanted(db); });
        bool user_file = false;
        std::string now = current(user_file);
        struct stat st;
        bool stale_tmp = os.fstatat(dir_.fd.get(), tmp.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
        if (user_file || (now == target && !stale_tmp)) return;
        write([&](Store &db) {
            target = wanted(db);
            now = current(user_file);
            if (os.unlinkat(dir_.fd.get(), tmp.c_str(), 0) != 0 && errno != ENOENT)
                fail_os("cannot remove the leftover link", dir_.join(tmp), errno);
            if (user_file || now == target) return;
            if (target.empty()) {
                os.unlinkat(dir_.fd.get(), link.c_str(), 0);
                return;
            }
            if (os.symlinkat(target.c_str(), dir_.fd.get(), tmp.c_str()) != 0)
                fail_os("cannot create the link", dir_.join(tmp), errno);
            hook("link_made");
            if (os.renameat(dir_.fd.get(), tmp.c_str(), dir_.fd.get(), link.c_str()) != 0) {
                int e = errno;
                os.unlinkat(dir_.fd.get(), tmp.c_str(), 0);
                fail_os("cannot replace the link", dir_.join(link), e);
            }
        });
    } catch (const std::exception &e) {
        log_event_noexcept("link_failed", e.what());
    }
}

}  // namespace ckptdb
