// sync: every complete checkpoint of src that dst lacks is copied through a
// temp file (hashed while copying, fsynced, read back and hashed again,
// renamed); only then is dst's catalog replaced, in one SQLite transaction,
// by a snapshot of src's taken with the backup API at the start. Killed at
// any point, dst's catalog never names a partial file; the next run removes
// leftover temp files and finds what was already copied.
#include "sync.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <map>
#include <memory>
#include <set>
#include <vector>

#include "ckptdb.h"
#include "error.hpp"
#include "fsio.hpp"
#include "hash.hpp"
#include "hooks.hpp"
#include "io.hpp"
#include "names.hpp"

namespace ckptdb {

namespace {

struct Sqlite {
    sqlite3 *db = nullptr;
    ~Sqlite() { sqlite3_close_v2(db); }
    void exec(const std::string &sql) {
        char *err = nullptr;
        if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
            std::string m = err ? err : sqlite3_errmsg(db);
            sqlite3_free(err);
            fail(CKPTDB_EDB, "sync: " + m);
        }
    }
};

struct Want {
    int64_t id;
    std::string name;
    int64_t size;
    std::string checksum;
};

std::string real_dir(const std::string &p) {
    char buf[PATH_MAX];
    if (!::realpath(p.c_str(), buf)) fail_os("cannot resolve", p, errno);
    return buf;
}

bool inside(const std::string &a, const std::string &b) {  // a is b or below it
    return a == b || (a.size() > b.size() && a.compare(0, b.size(), b) == 0 && (b == "/" || a[b.size()] == '/'));
}

// Copies src_dir/name to dst_dir through a temp file; returns the checksum
// of the bytes read back from dst (empty when the source did not match).
std::string copy_verified(const Dir &sd, const Dir &dd, const Want &w, const SyncOptions &opts, int64_t &done,
                          int64_t total) {
    int err = 0;
    UniqueFd in = open_read(sd, w.name, err);
    if (!in) fail_os("cannot read", sd.join(w.name), err);
    std::string tmp = random_temp_name();
    UniqueFd out = create_exclusive(dd, tmp);
    const std::string tmp_path = dd.join(tmp);
    try {
        Hasher src_hash;
        std::unique_ptr<char[]> buf(new char[4 << 20]);
        int64_t n_total = 0, flushed = 0;
        for (;;) {
            ssize_t n = io::ops().read(in.get(), buf.get(), 4 << 20);
            if (n < 0) {
                if (errno == EINTR) continue;
                fail_os("cannot read", sd.join(w.name), errno);
            }
            if (n == 0) break;
            src_hash.update(buf.get(), static_cast<size_t>(n));
            write_all(out.get(), buf.get(), static_cast<size_t>(n), tmp_path);
            n_total += n;
            start_writeback(out.get(), n_total, flushed, tmp_path);
            done += n / 2;  // half for the copy, half for the read-back
            if (opts.progress && !opts.progress(done, total)) fail(CKPTDB_ERROR, "sync interrupted by the caller");
        }
        if (n_total != w.size || src_hash.hex() != w.checksum) {
            unlink_name(dd, tmp);
            return "";
        }
        sync_fd(out.get(), tmp_path);
        Hasher back;
        int64_t base = done;
        int64_t m = hash_fd(out.get(), back, tmp_path, [&](int64_t d) {
            done = base + d / 2;
            return !opts.progress || opts.progress(done, total);
        });
        if (m != w.size || back.hex() != w.checksum)
            fail(CKPTDB_EIO, "the copy '" + tmp_path + "' read back with another checksum");
        out.reset();
        rename_noreplace(dd, tmp, w.name);
        return w.checksum;
    } catch (...) {
        unlink_name(dd, tmp);
        throw;
    }
}

}  // namespace

SyncResult sync_dirs(const std::string &src, const std::string &dst, const SyncOptions &opts) {
    if (src.empty() || dst.empty()) fail(CKPTDB_EINVAL, "sync needs a source and a destination directory");
    OpenOptions so;
    so.readonly = true;
    so.create = false;
    so.catalog_name = opts.catalog_name;
    so.last_link = "";
    std::shared_ptr<Catalog> scat = Catalog::open(src, so);
    std::string s_real = scat->dir().path.empty() ? "/" : scat->dir().path;
    {
        struct stat st;
        if (::stat(dst.c_str(), &st) == 0) {
            std::string d_real = real_dir(dst);
            if (inside(d_real, s_real) || inside(s_real, d_real))
                fail(CKPTDB_EINVAL, "cannot sync '" + s_real + "' to '" + d_real + "': one is inside the other");
        } else {
            // Not there yet: judge by its parent, then create it.
            std::string parent = dst.find('/') == std::string::npos ? "." : dst.substr(0, dst.rfind('/'));
            std::string p_real = real_dir(parent.empty() ? "/" : parent);
            if (inside(p_real, s_real))
                fail(CKPTDB_EINVAL, "cannot sync '" + s_real + "' into '" + dst + "', which is inside it");
        }
    }
    Dir dd = open_dir(dst, true);

    // 1. A consistent snapshot of the source catalog, in memory.
    Sqlite snap;
    if (sqlite3_open(":memory:", &snap.db) != SQLITE_OK) fail(CKPTDB_ENOMEM, "cannot open an in-memory database");
    scat->backup_into(snap.db);

    // 2. What the destination catalog already vouches for (if there is one).
    std::map<std::string, std::string> vouched;  // name -> checksum of a complete row in dst's old catalog
    if (name_exists(dd, opts.catalog_name)) {
        OpenOptions ro = so;
        std::shared_ptr<Catalog> old = Catalog::open(dst, ro);
        for (int64_t after = 0;;) {
            std::vector<Entry> page = old->entries_page(after, 0, std::nullopt, 256);
            for (const Entry &e : page) {
                after = e.id;
                for (const FileRow &f : old->files(e.id)) {
                    if (e.status == CKPTDB_STATUS_COMPLETE) vouched[f.name] = f.checksum;
                }
            }
            if (page.size() < 256) break;
        }
    }
    // Leftover temp files of an interrupted sync: nobody owns them.
    for (const std::string &n : list_names(dd))
        if (is_temp_name(n)) unlink_name(dd, n);

    // 3. Copy what dst lacks.
    std::vector<Want> wants;
    {
        sqlite3_stmt *st = nullptr;
        sqlite3_prepare_v2(snap.db,
                           "SELECT c.id, f.name, coalesce(f.size, -1), coalesce(f.checksum, '') FROM checkpoints c "
                           "JOIN files f ON f.checkpoint_id = c.id WHERE c.status = 'complete' ORDER BY c.commit_seq",
                           -1, &st, nullptr);
        while (sqlite3_step(st) == SQLITE_ROW)
            wants.push_back({sqlite3_column_int64(st, 0), reinterpret_cast<const char *>(sqlite3_column_text(st, 1)),
                             sqlite3_column_int64(st, 2), reinterpret_cast<const char *>(sqlite3_column_text(st, 3))});
        sqlite3_finalize(st);
    }
    SyncResult res;
    std::vector<Want> to_copy;
    std::set<int64_t> failed_ids;
    for (const Want &w : wants) {
        if (!name_problem(w.name).empty() || w.size < 0 || w.checksum.size() != 32) {
            failed_ids.insert(w.id);
            if (opts.on_item) opts.on_item({"failed", w.name, w.id, "invalid row in the source catalog", ""});
            continue;
        }
        struct stat st;
        bool there = io::ops().fstatat(dd.fd.get(), w.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
        if (there && S_ISREG(st.st_mode) && st.st_size == w.size) {
            auto v = vouched.find(w.name);
            bool same = v != vouched.end() && v->second == w.checksum;
            if (!same) {  // a copy from an interrupted run: check its bytes
                int err = 0;
                UniqueFd fd = open_read(dd, w.name, err);
                Hasher h;
                same = fd && hash_fd(fd.get(), h, dd.join(w.name)) == w.size && h.hex() == w.checksum;
            }
            if (same) {
                if (opts.on_item) opts.on_item({"present", w.name, w.id, "already in the destination", ""});
                continue;
            }
        }
        if (there) {
            failed_ids.insert(w.id);
            if (opts.on_item)
                opts.on_item({"failed", w.name, w.id, "a different file with this name is in the destination; left alone", ""});
            continue;
        }
        to_copy.push_back(w);
    }
    int64_t total = 0, done = 0;
    for (const Want &w : to_copy) total += w.size;
    for (const Want &w : to_copy) {
        std::string got = copy_verified(scat->dir(), dd, w, opts, done, total);
        if (got.empty()) {
            failed_ids.insert(w.id);
            res.failed++;
            if (opts.on_item)
                opts.on_item({"failed", w.name, w.id, "the source file does not match its checksum; not copied", ""});
            continue;
        }
        res.copied++;
        res.bytes += w.size;
        hook("sync_copied");
        if (opts.on_item) opts.on_item({"copied", w.name, w.id, std::to_string(w.size) + " bytes, verified", ""});
    }
    sync_dir(dd);  // every copy is durable before a catalog names it

    // 4. The snapshot, adjusted for dst, becomes dst's catalog.
    snap.exec("BEGIN");
    for (int64_t id : failed_ids)
        snap.exec("UPDATE checkpoints SET status = 'corrupt' WHERE id = " + std::to_string(id));
    // Saves in flight in src have no file in dst.
    snap.exec("UPDATE checkpoints SET status = 'aborted', deleted_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') "
              "WHERE status = 'writing'");
    snap.exec("UPDATE files SET temp_name = NULL");
    std::vector<std::pair<int64_t, std::string>> to_delete;
    {
        // Checkpoints src no longer keeps but dst has: mirrored away with
        // delete, otherwise kept as complete in dst's catalog.
        sqlite3_stmt *st = nullptr;
        sqlite3_prepare_v2(snap.db,
                           "SELECT c.id, f.name, coalesce(f.size, -1), coalesce(f.checksum, '') FROM checkpoints c "
                           "JOIN files f ON f.checkpoint_id = c.id WHERE c.status IN ('pruned', 'corrupt') "
                           "AND NOT EXISTS (SELECT 1 FROM files g JOIN checkpoints l ON l.id = g.checkpoint_id "
                           "WHERE g.name = f.name AND l.status = 'complete')",
                           -1, &st, nullptr);
        std::vector<std::pair<int64_t, std::string>> keep;
        while (sqlite3_step(st) == SQLITE_ROW) {
            int64_t id = sqlite3_column_int64(st, 0);
            std::string name = reinterpret_cast<const char *>(sqlite3_column_text(st, 1));
            std::string sum = reinterpret_cast<const char *>(sqlite3_column_text(st, 3));
            if (failed_ids.count(id)) continue;
            auto v = vouched.find(name);
            if (v == vouched.end() || v->second != sum || !name_problem(name).empty()) continue;
            if (opts.delete_pruned)
                to_delete.push_back({id, name});
            else
                keep.push_back({id, name});
        }
        sqlite3_finalize(st);
        for (auto &k : keep)
            snap.exec("UPDATE checkpoints SET status = 'complete', deleted_at = NULL, prune_rule = NULL WHERE id = " +
                      std::to_string(k.first));
    }
    snap.exec("COMMIT");

    // The new catalog is written under a temp name and renamed over the old
    // one, so that a kill leaves either catalog whole. A rollback journal:
    // right for network file systems, and no -wal beside an archive (opening
    // it with ckptdb later switches a local copy to WAL).
    const std::string dpath = dd.join(opts.catalog_name);
    const std::string tmp_name = random_temp_name();
    {
        Sqlite fresh;
        const std::string tpath = dd.join(tmp_name);
        if (sqlite3_open_v2(tpath.c_str(), &fresh.db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOFOLLOW,
                            io::sqlite_vfs()) != SQLITE_OK)
            fail(CKPTDB_EPERM, "cannot create '" + tpath + "': " + sqlite3_errmsg(fresh.db));
        fresh.exec("PRAGMA journal_mode=DELETE");
        fresh.exec("PRAGMA synchronous=FULL");
        sqlite3_backup *b = sqlite3_backup_init(fresh.db, "main", snap.db, "main");
        if (!b) fail(CKPTDB_EDB, "cannot write '" + tpath + "': " + sqlite3_errmsg(fresh.db));
        int rc = sqlite3_backup_step(b, -1);
        sqlite3_backup_finish(b);
        if (rc != SQLITE_DONE) fail(CKPTDB_EDB, "cannot write '" + tpath + "': " + sqlite3_errstr(rc));
    }
    if (name_exists(dd, opts.catalog_name)) {
        // Fold the old catalog's WAL (or roll back a hot journal) first: a
        // stale -wal beside the new file would be replayed into it.
        Sqlite old;
        if (sqlite3_open_v2(dpath.c_str(), &old.db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOFOLLOW, io::sqlite_vfs()) == SQLITE_OK) {
            sqlite3_busy_timeout(old.db, 60000);
            old.exec("PRAGMA journal_mode=DELETE");
        }
    }
    for (const char *suffix : {"-wal", "-journal"})
        if (name_exists(dd, opts.catalog_name + suffix))
            fail(CKPTDB_EBUSY, "'" + dpath + suffix + "' is still there: is the destination catalog in use?");
    hook("sync_installing");
    if (io::ops().renameat(dd.fd.get(), tmp_name.c_str(), dd.fd.get(), opts.catalog_name.c_str()) != 0)
        fail_os("cannot install the catalog", dpath, errno);
    sync_dir(dd);

    // 5. With delete: remove what the new catalog no longer keeps.
    for (const auto &d : to_delete) {
        if (unlink_name(dd, d.second) == 0 && opts.on_item)
            opts.on_item({"deleted", d.second, d.first, "pruned in the source", ""});
    }
    if (!to_delete.empty()) sync_dir(dd);

    if (!opts.last_link.empty()) {
        OpenOptions lo;
        lo.catalog_name = opts.catalog_name;
        lo.last_link = opts.last_link;
        lo.create = false;
        Catalog::open(dst, lo)->refresh_link();
    }
    return res;
}

}  // namespace ckptdb
