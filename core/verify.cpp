// Verification: the file check (check_file, check_files), the one rule for
// what a check does to the catalog (verify_entry) and the operations built
// on it: verify, verify_all and the verified "latest" with its fallback.
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

Check compare_file(const std::string &path, int64_t size, const std::string &checksum, int64_t got_size,
                   const std::string &got_hex) {
    if (got_size != size)
        return {false,
                "'" + path + "' has " + std::to_string(got_size) + " bytes, the catalog says " + std::to_string(size)};
    if (!got_hex.empty() && got_hex != checksum)
        return {false, "'" + path + "' has XXH3-128 " + got_hex + ", the catalog says " + checksum};
    return {};
}

Check check_file(const Dir &dir, const std::string &name, int64_t size, const std::string &checksum, bool full,
                 const std::function<bool(int64_t)> &on_bytes) {
    std::string path = dir.join(name);
    int err = 0;
    UniqueFd fd = open_read(dir, name, err);
    if (!fd) {
        if (err == ENOENT) return {false, "'" + path + "' is missing"};
        if (err == ELOOP || err == EINVAL)
            return {false, "'" + path + "' is not a regular file (links are not followed)"};
        if (err == EIO) return {false, "'" + path + "' cannot be read: " + std::strerror(err), true};
        fail_os("cannot open", path, err);
    }
    struct stat st;
    if (io::ops().fstat(fd.get(), &st) != 0) {
        err = errno;
        if (err == EIO) return {false, "'" + path + "' cannot be read: " + std::strerror(err), true};
        fail_os("cannot stat", path, err);
    }
    Check by_size = compare_file(path, size, checksum, st.st_size, "");
    if (!by_size.ok || !full) return by_size;
    Hasher h;
    int64_t n;
    try {
        n = hash_fd(fd.get(), h, path, on_bytes);
    } catch (const Error &ex) {
        if (ex.code() == CKPTDB_EIO) return {false, ex.what(), true};
        throw;
    }
    return compare_file(path, size, checksum, n, h.hex());
}

Check Catalog::check_files(const Entry &e, bool full, const std::function<bool(int64_t)> &on_bytes) {
    std::vector<FileRow> fs = files(e.id);
    int64_t before = 0;  // bytes of the files already hashed
    if (fs.empty()) return {false, "the catalog lists no file for it"};
    // A directory checkpoint's files are checked inside it, opened without
    // following a link at either level.
    Dir sub;
    if (e.dir) {
        std::string bad = name_problem(e.name);
        if (!bad.empty()) return {false, "its directory name in the catalog is invalid (it " + bad + "); not opened"};
        int err = 0;
        sub = open_subdir(dir_, e.name, err);
        if (err == ENOENT) return {false, "'" + dir_.join(e.name) + "/' is missing"};
        if (err == ENOTDIR || err == ELOOP)
            return {false, "'" + dir_.join(e.name) + "' is not a directory (links are not followed)"};
        if (err == EIO) return {false, "'" + dir_.join(e.name) + "/' cannot be read: " + std::strerror(err), true};
        if (err) fail_os("cannot open", dir_.join(e.name), err);
    }
    const Dir &where = e.dir ? sub : dir_;
    for (const FileRow &f : fs) {
        std::string bad = name_problem(f.name);
        if (!bad.empty()) return {false, "its file name in the catalog is invalid (it " + bad + "); not opened"};
        if (f.size < 0 || f.checksum.size() != 32)
            return {false, "'" + where.join(f.name) + "' has no recorded size and checksum"};
        std::function<bool(int64_t)> progress;
        if (on_bytes) progress = [&](int64_t done) { return on_bytes(before + done); };
        Check c = check_file(where, f.name, f.size, f.checksum, full, progress);
        if (!c.ok) return c;
        before += f.size;
    }
    return {};
}

Verdict Catalog::verify_entry(Entry &e, Verify how, const std::function<bool(int64_t)> &on_bytes) {
    if (e.status != CKPTDB_STATUS_COMPLETE && e.status != CKPTDB_STATUS_CORRUPT)
        fail(CKPTDB_EINVAL, "checkpoint " + std::to_string(e.id) + " '" + e.name + "' is " + status_text(e.status) +
                                "; only complete or corrupt checkpoints can be verified");
    if (how == Verify::none) fail(CKPTDB_EINVAL, "verify_entry needs a size or a full check");
    Check c = check_files(e, how == Verify::full, on_bytes);
    if (c.ok) {
        if (e.status == CKPTDB_STATUS_CORRUPT && how == Verify::full) {
            restore(e.id);  // the bytes came back (or the verdict was wrong): complete again
            e.status = CKPTDB_STATUS_COMPLETE;
        }
        return {CKPTDB_OK, ""};
    }
    // A read error says nothing about the bytes: nothing is marked (a
    // corrupt mark would let rotation or a prune of corrupt ones delete it).
    if (c.io_error) return {CKPTDB_EIO, c.reason};
    if (e.status == CKPTDB_STATUS_COMPLETE) {
        mark_corrupt(e.id, c.reason);  // a no-op on a read-only catalog: reported, not recorded
        if (!readonly()) e.status = CKPTDB_STATUS_CORRUPT;
    }
    return {CKPTDB_ECORRUPT, c.reason};
}

Entry Catalog::verify(int64_t id, const std::function<bool(int64_t, int64_t)> &progress) {
    Entry e = entry(id);
    const int64_t total = e.size;
    std::function<bool(int64_t)> on_bytes;
    if (progress) on_bytes = [&](int64_t done) { return progress(done, total); };
    Verdict v = verify_entry(e, Verify::full, on_bytes);
    if (v.code == CKPTDB_EIO) fail(CKPTDB_EIO, "checkpoint " + std::to_string(id) + " could not be read: " + v.reason);
    if (v.code != CKPTDB_OK) fail(v.code, "checkpoint " + std::to_string(id) + " is corrupt: " + v.reason);
    return e;
}

void Catalog::verify_all(const std::function<bool(const Entry &, const Verdict &)> &fn, VerifyTotals &totals) {
    for_each_entry(1u << CKPTDB_STATUS_COMPLETE, std::nullopt, [&](Entry &e) {
        Verdict v = verify_entry(e, Verify::full);
        totals.checked++;
        if (v.code == CKPTDB_ECORRUPT) totals.corrupt++;
        if (v.code == CKPTDB_EIO) totals.unreadable++;
        return !fn || fn(e, v);
    });
}

std::optional<Entry> Catalog::latest(const std::optional<std::string> &kind, Verify verify) {
    int64_t below = INT64_MAX;
    std::string unreadable;  // the first checkpoint skipped for an I/O error
    for (;;) {
        int64_t id = 0;
        read([&](Store &db) { id = db.latest(kind, below); });
        if (id == 0) {
            if (!unreadable.empty()) fail(CKPTDB_EIO, unreadable);
            return std::nullopt;
        }
        Entry e = entry(id);
        if (verify == Verify::none) return e;
        below = e.commit_seq;
        if (e.status != CKPTDB_STATUS_COMPLETE) continue;  // another process changed it meanwhile
        Verdict v = verify_entry(e, verify);
        if (v.code == CKPTDB_OK) return e;
        // Skipped for this call; a corrupt one is marked, an unreadable one
        // is not.
        if (v.code == CKPTDB_EIO && unreadable.empty()) unreadable = v.reason;
    }
}

}  // namespace ckptdb
