// Checking a directory against its catalog (names and sizes), safe repairs,
// and rebuilding a lost catalog from the files present.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <ctime>
#include <map>
#include <regex>
#include <set>

#include "catalog.hpp"
#include "ckptdb.h"
#include "error.hpp"
#include "hash.hpp"
#include "io.hpp"
#include "names.hpp"
#include "shard.hpp"

namespace ckptdb {

std::vector<FsckItem> Catalog::fsck(bool repair) {
    if (repair && readonly()) fail(CKPTDB_EREADONLY, "cannot repair: the catalog was opened read-only");
    std::vector<FsckItem> out;
    // Listing first, then the catalog: a save that starts in between has its
    // row before its temp file, so its temp file is never called an orphan.
    std::vector<std::string> names = list_names(dir_);
    struct Owner {
        int64_t id;
        bool alive;
    };
    std::map<std::string, Owner> owned_temps;
    std::map<std::string, std::pair<int64_t, std::string>> known;  // file name -> (checkpoint, status)
    read([&](Db &db) {
        Db::Query t(db, sql::Stmt::writing_temp_owners);
        while (t.step()) {
            bool alive = t.i64(6) == 0 &&
                         liveness(self_, t.text(2), t.text(3), t.i64(4), t.i64(5)) != Liveness::dead;
            owned_temps[t.text(0)] = {t.i64(1), alive};
        }
        Db::Query q(db, sql::Stmt::file_names_known);
        while (q.step()) {
            // A pruned row whose deletion is recorded no longer owns the
            // name: a file there now is someone else's.
            if (q.text(2) == "pruned" && !q.text(3).empty()) continue;
            auto &slot = known[q.text(0)];
            // A live row wins over the pruned history of the same name.
            if (slot.second.empty() || slot.second == "pruned") slot = {q.i64(1), q.text(2)};
        }
    });

    for (const std::string &n : names) {
        if (reserved_name(n)) continue;
        if (n.compare(0, opts_.catalog_name.size() + 8, opts_.catalog_name + ".broken-") == 0) continue;
        if (is_temp_name(n)) {
            auto o = owned_temps.find(n);
            if (o != owned_temps.end() && o->second.alive) {
                out.push_back({"writing", n, o->second.id, "the temp file of a save in flight", ""});
                continue;
            }
            if (o == owned_temps.end() && temp_in_use(dir_, n)) {
                out.push_back({"writing", n, 0, "the temp file of a shard being written", ""});
                continue;
            }
            FsckItem it{"temp_file", n, o != owned_temps.end() ? o->second.id : 0,
                        o != owned_temps.end() ? "left by a save whose process is gone (recovery aborts it)"
                                               : "a leftover temp file of the library",
                        ""};
            out.push_back(it);
            continue;
        }
        auto k = known.find(n);
        if (k == known.end()) {
            out.push_back({"unknown_file", n, 0, "the catalog does not know this file; it is never deleted", ""});
        } else if (k->second.second == "pruned") {
            out.push_back({"pending_prune", n, k->second.first, "pruned, but the file is still there", ""});
        }
    }

    // Complete checkpoints: every file present with its recorded size.
    int64_t after = 0;
    for (;;) {
        std::vector<Entry> page = entries_page(after, 1u << CKPTDB_STATUS_COMPLETE, std::nullopt, 256);
        for (const Entry &e : page) {
            after = e.id;
            Check c = check_files(e, false);
            if (c.ok) continue;
            bool missing = c.reason.find("is missing") != std::string::npos;
            out.push_back({missing ? "missing_file" : "size_mismatch", e.name, e.id, c.reason, ""});
        }
        if (page.size() < 256) break;
    }
    if (!repair) return out;

    // Repair: recovery first (saves of dead processes are resolved and their
    // temp files removed, as the next open would), then each finding.
    recover();
    for (FsckItem &it : out) {
        if (it.kind == "temp_file") {
            if (!name_exists(dir_, it.name) && it.checkpoint_id != 0 &&
                entry(it.checkpoint_id).status == CKPTDB_STATUS_COMPLETE) {
                it.action = "adopted: recovery finished its commit";
                continue;
            }
            int err = name_exists(dir_, it.name) ? unlink_name(dir_, it.name) : 0;
            it.action = err == 0 ? "removed" : "could not remove";
        } else if (it.kind == "pending_prune") {
            finish_prunes({it.checkpoint_id});
            it.action = name_exists(dir_, it.name) ? "could not remove" : "removed";
        } else if (it.kind == "missing_file" || it.kind == "size_mismatch") {
            Check c = check_files(entry(it.checkpoint_id), false);  // still so after recovery?
            if (!c.ok && mark_corrupt(it.checkpoint_id, c.reason)) it.action = "marked corrupt";
        }
    }
    return out;
}

// kind, epoch, step from a default name; false for any other name.
static bool parse_default_name(const std::string &name, std::string &kind, int64_t &epoch, int64_t &step) {
    static const std::regex re(R"(^([A-Za-z0-9_.-]+?)_([0-9]{1,18})(-[0-9]+)?\.pt$)");
    std::smatch m;
    if (!std::regex_match(name, m, re)) return false;
    kind = m[1].str();
    if (!kind_problem(kind).empty()) return false;
    int64_t n = std::stoll(m[2].str());
    epoch = kind == "epoch" ? n : 0;
    step = (kind == "epoch" || kind == "time") ? 0 : n;
    return true;
}

int64_t Catalog::rebuild(const std::string &path, const OpenOptions &opts,
                         const std::function<void(const FsckItem &)> &report) {
    if (opts.readonly) fail(CKPTDB_EINVAL, "cannot rebuild a catalog read-only");
    Dir dir = open_dir(path, false);
    // Keep the old catalog aside, never overwritten: <catalog>.broken-<UTC>.
    char stamp[32];
    std::time_t now = std::time(nullptr);
    std::strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", std::gmtime(&now));
    const std::string aside = opts.catalog_name + ".broken-" + stamp;
    if (name_exists(dir, opts.catalog_name)) {
        rename_noreplace(dir, opts.catalog_name, aside);
        for (const char *suffix : {"-wal", "-shm", "-journal"})
            if (name_exists(dir, opts.catalog_name + suffix))
                rename_noreplace(dir, opts.catalog_name + suffix, aside + suffix);
        sync_dir(dir);
    }

    struct Found {
        std::string name, kind;
        int64_t epoch, step;
        struct timespec mtime;
    };
    std::vector<Found> found;
    for (const std::string &n : list_names(dir)) {
        if (n == opts.catalog_name || n.compare(0, opts.catalog_name.size(), opts.catalog_name) == 0 ||
            is_temp_name(n) || n == opts.last_link)
            continue;
        struct stat st;
        if (io::ops().fstatat(dir.fd.get(), n.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode)) continue;
        Found f{n, "", 0, 0, st.st_mtim};
        if (!name_problem(n).empty() || !parse_default_name(n, f.kind, f.epoch, f.step)) {
            if (report) report({"unknown_file", n, 0, "not a default checkpoint name; left alone", ""});
            continue;
        }
        found.push_back(f);
    }
    // Oldest first, so that the newest file becomes the newest commit.
    std::sort(found.begin(), found.end(), [](const Found &a, const Found &b) {
        if (a.mtime.tv_sec != b.mtime.tv_sec) return a.mtime.tv_sec < b.mtime.tv_sec;
        if (a.mtime.tv_nsec != b.mtime.tv_nsec) return a.mtime.tv_nsec < b.mtime.tv_nsec;
        return a.name < b.name;
    });

    std::shared_ptr<Catalog> cat = open(path, opts);
    int64_t rows = 0;
    for (const Found &f : found) {
        int err = 0;
        UniqueFd fd = open_read(cat->dir(), f.name, err);
        if (!fd) fail_os("cannot read", cat->dir().join(f.name), err);
        Hasher h;
        int64_t size = hash_fd(fd.get(), h, cat->dir().join(f.name));
        std::string sum = h.hex();
        cat->write([&](Db &db) {
            int64_t run = cat->run_id_in_tx(db);
            Db::Query(db, sql::Stmt::checkpoint_insert_complete)
                .bind(1, f.name).bind(2, f.kind).bind(3, f.epoch).bind(4, f.step).bind(5, size).bind(6, sum)
                .bind(7, run)
                .run();
            int64_t id = db.last_insert_rowid();
            Db::Query(db, sql::Stmt::file_insert_sealed).bind(1, id).bind(2, int64_t(0)).bind(3, f.name)
                .bind(4, size).bind(5, sum).run();
            cat->log_event(db, id, "rebuilt", "adopted from the directory: " + std::to_string(size) + " bytes, xxh128 " + sum);
            if (report) report({"rebuilt", f.name, id, f.kind + " epoch " + std::to_string(f.epoch) + " step " +
                                                          std::to_string(f.step), "added"});
        });
        rows++;
    }
    cat->refresh_link();
    return rows;
}

}  // namespace ckptdb
