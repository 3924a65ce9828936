// Verification of checkpoint files against the catalog, and the verified
// "latest" query with its fallback.
#include <sys/stat.h>

#include <climits>
#include <cstring>

#include "catalog.hpp"
#include "ckptdb.h"
#include "error.hpp"
#include "hash.hpp"
#include "io.hpp"
#include "names.hpp"

namespace ckptdb {

Check Catalog::check_files(const Entry &e, bool full, const std::function<bool(int64_t)> &on_bytes) {
    std::vector<FileRow> fs = files(e.id);
    int64_t before = 0;  // bytes of the files already hashed
    if (fs.empty()) return {false, "the catalog lists no file for it"};
    for (const FileRow &f : fs) {
        std::string bad = name_problem(f.name);
        if (!bad.empty()) return {false, "its file name in the catalog is invalid (it " + bad + "); not opened"};
        std::string path = dir_.join(f.name);
        if (f.size < 0 || f.checksum.size() != 32) return {false, "'" + path + "' has no recorded size and checksum"};
        int err = 0;
        UniqueFd fd = open_read(dir_, f.name, err);
        if (!fd) {
            if (err == ENOENT) return {false, "'" + path + "' is missing"};
            if (err == ELOOP || err == EINVAL) return {false, "'" + path + "' is not a regular file (links are not followed)"};
            if (err == EIO) return {false, "'" + path + "' cannot be read: " + std::strerror(err), true};
            fail_os("cannot open", path, err);
        }
        struct stat st;
        if (io::ops().fstat(fd.get(), &st) != 0) fail_os("cannot stat", path, errno);
        if (st.st_size != f.size)
            return {false, "'" + path + "' has " + std::to_string(st.st_size) + " bytes, the catalog says " +
                               std::to_string(f.size)};
        if (!full) continue;
        Hasher h;
        int64_t n;
        try {
            std::function<bool(int64_t)> progress;
            if (on_bytes) progress = [&](int64_t done) { return on_bytes(before + done); };
            n = hash_fd(fd.get(), h, path, progress);
        } catch (const Error &ex) {
            if (ex.code() == CKPTDB_EIO) return {false, ex.what(), true};
            throw;
        }
        if (n != f.size)
            return {false, "'" + path + "' changed size while being read (" + std::to_string(n) + " bytes)"};
        std::string got = h.hex();
        if (got != f.checksum)
            return {false, "'" + path + "' has XXH3-128 " + got + ", the catalog says " + f.checksum};
        before += n;
    }
    return {};
}

std::optional<Entry> Catalog::latest(const std::optional<std::string> &kind, Verify verify) {
    int64_t below = INT64_MAX;
    std::string unreadable;  // the first checkpoint skipped for an I/O error
    for (;;) {
        int64_t id = 0;
        read([&](Db &db) {
            Db::Query q(db, kind ? sql::Stmt::latest_kind : sql::Stmt::latest_any);
            q.bind(1, below);
            if (kind) q.bind(2, *kind);
            if (q.step()) id = q.i64(0);
        });
        if (id == 0) {
            if (!unreadable.empty()) fail(CKPTDB_EIO, unreadable);
            return std::nullopt;
        }
        Entry e = entry(id);
        if (verify == Verify::none) return e;
        below = e.commit_seq;
        Check c = check_files(e, verify == Verify::full);
        if (c.ok) return e;
        if (c.io_error) {
            // A read error says nothing about the bytes: the checkpoint is
            // skipped for this call, never marked corrupt (rotation would
            // then delete it).
            if (unreadable.empty()) unreadable = c.reason;
            continue;
        }
        mark_corrupt(id, c.reason);  // a no-op on a read-only catalog: skipped, not recorded
    }
}

}  // namespace ckptdb
