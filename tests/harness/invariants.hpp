// The crash-consistency invariants I1-I7 (docs/DESIGN.md, "Invariants"),
// checked from outside the engine: the catalog is read with SQLite's C API
// and every file is hashed with xxHash here, independently of core/.
// Header-only, so doctest suites (linked against libckptdb.so) and helper
// binaries (linked against the engine) can both use it.
//
// check_invariants(dir, expect) opens the directory with ckptdb_open (which
// runs recovery) and checks, for single files, sharded saves (a file per
// rank) and directory checkpoints (`name/`, file by file) alike:
//   I1  every complete row names files with the recorded size and XXH3-128
//       (a directory checkpoint's inside its directory);
//   I2  the newest checkpoint complete before the crash is still resumable
//       (it, or one committed after it, is complete);
//   I3  no .ckptdb-tmp- file, temp directory (.ckptdb-tmp-*.d) nor temp
//       link (.ckptdb-link-) remains, except one a live writer holds (named
//       by a row still `writing`, or a file in it held under its writer's
//       flock); files unknown to the catalog, at the top or inside a
//       checkpoint's directory ("name/file"), are listed
//       (Report::unknown_files) and none that existed before the open was
//       deleted, except the library's temp names, files of pruned rows and
//       the recorded files of an aborted directory save; every file of
//       Expect::kept (the user's, which no rule may delete) is there;
//   I4  every acknowledged id is complete, or pruned by a rule;
//   I5  ckptdb_latest with full verification returns the newest complete
//       checkpoint whose bytes verify;
//   I6  no pinned row is pruned; a pruned row always has a later commit;
//   I7  a directory save in place (its "begun" event says so) is not left
//       `writing` once its writer is gone, and the directory of one aborted is gone unless a live
//       row has taken the name since (recovery removes it whole: what was
//       in it may go);
//   PRAGMA integrity_check is "ok";
// then opens a second time (recovery twice) and checks that the checkpoint
// and file rows and the directory listing are the same as after the first.
// Returns the violations as readable lines; empty means every check held.
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "ckptdb.h"

namespace harness {

struct Expect {
    int64_t newest_complete_seq = 0;  // I2: newest complete checkpoint before the crash, by commit_seq; 0 = none
    std::set<int64_t> acknowledged;   // I4: ids whose commit returned OK: complete, or pruned by rotation
    bool allow_user_delete = false;   // I2 may not hold when the crash interrupted an explicit deletion
    std::vector<std::string> kept;    // I3: the user's files ("name/file" inside a checkpoint's directory)
                                      // that whatever ran before, a prune too, must have left
    std::string catalog_name = "ckptdb.sqlite";
    std::string last_link = "last.pt";
};

// What a check saw besides violations.
struct Report {
    std::vector<std::string> unknown_files;  // in the directory, not known to the catalog (kept)
    int64_t complete = 0;                    // complete rows after recovery
    int64_t latest_id = 0;                   // what ckptdb_latest returned (0: none)
};

namespace detail {

struct Row {
    int64_t id = 0;
    std::string name, status, checksum, prune_rule;
    std::string layout, temp_name;  // 'file' or 'dir'; a directory save's temp directory while it is written
    int64_t size = -1, commit_seq = 0;
    bool has_seq = false;
    int pinned = 0;
};

struct FileRow {
    int64_t checkpoint_id = 0, rank = 0, size = -1;
    std::string name, temp_name, checksum;
};

struct Catalog {
    std::vector<Row> rows;
    std::vector<FileRow> files;
    std::set<int64_t> in_place;             // directory saves begun in place (their "begun" event)
    std::map<int64_t, int64_t> writer_pid;  // rows still writing: the pid of the run that began them
    std::string integrity;
    std::string dump;  // every checkpoint and file row, for comparing two recoveries
    std::string error;
};

inline std::string col(sqlite3_stmt *st, int c) {
    const unsigned char *v = sqlite3_column_text(st, c);
    return v ? reinterpret_cast<const char *>(v) : std::string();
}

inline Catalog read_catalog(const std::string &db_path) {
    Catalog out;
    sqlite3 *db = nullptr;
    if (sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
        out.error = "cannot open " + db_path + ": " + (db ? sqlite3_errmsg(db) : "out of memory");
        sqlite3_close(db);
        return out;
    }
    sqlite3_busy_timeout(db, 10000);
    auto each = [&](const char *sql, auto fn) {
        sqlite3_stmt *st = nullptr;
        if (sqlite3_prepare_v2(db, sql, -1, &st, nullptr) != SQLITE_OK) {
            out.error = std::string("query failed: ") + sqlite3_errmsg(db) + " in " + sql;
            return;
        }
        int rc;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) fn(st);
        if (rc != SQLITE_DONE) out.error = std::string("query failed: ") + sqlite3_errmsg(db) + " in " + sql;
        sqlite3_finalize(st);
    };
    each(
        "SELECT id, name, status, size, checksum, commit_seq, pinned, prune_rule, kind, epoch, step, deleted_at, "
        "layout, temp_name FROM checkpoints ORDER BY id",
        [&](sqlite3_stmt *st) {
            Row r;
            r.id = sqlite3_column_int64(st, 0);
            r.name = col(st, 1);
            r.status = col(st, 2);
            r.size = sqlite3_column_type(st, 3) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 3);
            r.checksum = col(st, 4);
            r.has_seq = sqlite3_column_type(st, 5) != SQLITE_NULL;
            r.commit_seq = sqlite3_column_int64(st, 5);
            r.pinned = sqlite3_column_int(st, 6);
            r.prune_rule = col(st, 7);
            r.layout = col(st, 12);
            r.temp_name = col(st, 13);
            out.rows.push_back(r);
            out.dump += "checkpoint";
            for (int c = 0; c < 14; c++) {
                // deleted_at is written once a later directory fsync made a
                // rotation's unlink durable, so a second open may fill it.
                if (c == 11) continue;
                out.dump += "|" + col(st, c);
            }
            out.dump += "\n";
        });
    each("SELECT checkpoint_id, rank, name, temp_name, size, checksum FROM files ORDER BY checkpoint_id, rank",
         [&](sqlite3_stmt *st) {
             FileRow f;
             f.checkpoint_id = sqlite3_column_int64(st, 0);
             f.rank = sqlite3_column_int64(st, 1);
             f.name = col(st, 2);
             f.temp_name = col(st, 3);
             f.size = sqlite3_column_type(st, 4) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 4);
             f.checksum = col(st, 5);
             out.files.push_back(f);
             out.dump += "file";
             for (int c = 0; c < 6; c++) out.dump += "|" + col(st, c);
             out.dump += "\n";
         });
    each("SELECT checkpoint_id FROM events WHERE event = 'begun' AND detail LIKE '%, a directory saved in place%'",
         [&](sqlite3_stmt *st) { out.in_place.insert(sqlite3_column_int64(st, 0)); });
    each("SELECT c.id, r.pid FROM checkpoints c JOIN runs r ON r.id = c.run_id WHERE c.status = 'writing'",
         [&](sqlite3_stmt *st) { out.writer_pid[sqlite3_column_int64(st, 0)] = sqlite3_column_int64(st, 1); });
    each("PRAGMA integrity_check", [&](sqlite3_stmt *st) {
        if (!out.integrity.empty()) out.integrity += "; ";
        out.integrity += col(st, 0);
    });
    sqlite3_close(db);
    return out;
}

// Names in a directory with their type and size ("name:size" or
// "name->target"), and the names inside each directory in it ("sub/name"):
// a directory checkpoint's files, a directory save's temp directory.
inline void list_into(const std::string &dir, const std::string &prefix, const std::string &catalog_name,
                      std::map<std::string, std::string> &out) {
    DIR *d = ::opendir(dir.c_str());
    if (!d) return;
    std::vector<std::string> subdirs;
    while (auto *de = ::readdir(d)) {
        std::string n = de->d_name;
        if (n == "." || n == "..") continue;
        struct stat st;
        if (::fstatat(::dirfd(d), n.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
        const std::string key = prefix + n;
        if (S_ISLNK(st.st_mode)) {
            char buf[4096];
            ssize_t k = ::readlinkat(::dirfd(d), n.c_str(), buf, sizeof buf - 1);
            out[key] = "->" + std::string(buf, k > 0 ? static_cast<size_t>(k) : 0);
        } else if (prefix.empty() && n.compare(0, catalog_name.size(), catalog_name) == 0) {
            out[key] = "catalog";  // its WAL and shm change size without any row changing
        } else if (S_ISDIR(st.st_mode)) {
            out[key] = "dir";  // (its size is its entries', listed below)
            subdirs.push_back(n);
        } else {
            out[key] = "file:" + std::to_string(st.st_size);
        }
    }
    ::closedir(d);
    for (const std::string &n : subdirs) list_into(dir + "/" + n, prefix + n + "/", catalog_name, out);
}

inline std::map<std::string, std::string> listing(const std::string &dir, const std::string &catalog_name) {
    std::map<std::string, std::string> out;
    list_into(dir, "", catalog_name, out);
    return out;
}

// Whether a live process holds path (a file a writer still writes, under its
// exclusive flock), or, for a directory, any file in it.
inline bool held(const std::string &path) {
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0) return false;
    if (S_ISDIR(st.st_mode)) {
        std::vector<std::string> names;
        if (DIR *d = ::opendir(path.c_str())) {
            while (auto *de = ::readdir(d))
                if (std::strcmp(de->d_name, ".") != 0 && std::strcmp(de->d_name, "..") != 0)
                    names.push_back(de->d_name);
            ::closedir(d);
        }
        for (const auto &n : names)
            if (held(path + "/" + n)) return true;
        return false;
    }
    if (!S_ISREG(st.st_mode)) return false;
    int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return false;
    bool h = ::flock(fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK;
    ::close(fd);
    return h;
}

// The first component of a listing's name ("sub" of "sub/name").
inline std::string top_of(const std::string &n) { return n.substr(0, n.find('/')); }

inline bool is_temp(const std::string &n) { return n.rfind(".ckptdb-tmp-", 0) == 0; }

inline bool plain_name(const std::string &n) {
    return !n.empty() && n.size() <= 255 && n.find('/') == std::string::npos && n != "." && n != "..";
}

// Size and XXH3-128 (as xxh128sum prints it) of dir/name, without following
// a symlink. Returns false with a reason when it cannot be read.
inline bool hash_file(const std::string &dir, const std::string &name, int64_t &size, std::string &hex,
                      std::string &why) {
    if (!plain_name(name)) {
        why = "unsafe name '" + name + "'";
        return false;
    }
    int fd = ::open((dir + "/" + name).c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        why = std::string("cannot open: ") + std::strerror(errno);
        return false;
    }
    XXH3_state_t *s = XXH3_createState();
    XXH3_128bits_reset(s);
    std::vector<char> buf(1 << 20);
    size = 0;
    for (;;) {
        ssize_t k = ::read(fd, buf.data(), buf.size());
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) {
            why = std::string("read failed: ") + std::strerror(errno);
            XXH3_freeState(s);
            ::close(fd);
            return false;
        }
        if (k == 0) break;
        XXH3_128bits_update(s, buf.data(), static_cast<size_t>(k));
        size += k;
    }
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, XXH3_128bits_digest(s));
    XXH3_freeState(s);
    ::close(fd);
    static const char *digits = "0123456789abcdef";
    hex.clear();
    for (unsigned char b : c.digest) {
        hex += digits[b >> 4];
        hex += digits[b & 15];
    }
    return true;
}

}  // namespace detail

// The newest complete checkpoint's commit_seq in a directory's catalog as it
// is on disk now (0 when none or no catalog), read with SQLite alone: what a
// test records as Expect::newest_complete_seq before it crashes a writer.
inline int64_t newest_complete_seq(const std::string &dir, const std::string &catalog_name = "ckptdb.sqlite") {
    struct stat st;
    std::string path = dir + "/" + catalog_name;
    if (::stat(path.c_str(), &st) != 0) return 0;
    detail::Catalog c = detail::read_catalog(path);
    int64_t best = 0;
    for (const auto &r : c.rows)
        if (r.status == "complete" && r.has_seq && r.commit_seq > best) best = r.commit_seq;
    return best;
}

// The commit_seq of checkpoint id (0 when it has none).
inline int64_t commit_seq_of(const std::string &dir, int64_t id, const std::string &catalog_name = "ckptdb.sqlite") {
    detail::Catalog c = detail::read_catalog(dir + "/" + catalog_name);
    for (const auto &r : c.rows)
        if (r.id == id && r.has_seq) return r.commit_seq;
    return 0;
}

inline std::vector<std::string> check_invariants(const std::string &dir, const Expect &expect, Report *report) {
    using namespace detail;
    std::vector<std::string> v;
    Report local;
    Report &rep = report ? *report : local;
    rep = Report{};
    const std::string db_path = dir + "/" + expect.catalog_name;

    ckptdb_open_options oo = CKPTDB_OPEN_OPTIONS_INIT;
    oo.catalog_name = expect.catalog_name.c_str();
    oo.last_link = expect.last_link.c_str();

    auto before = listing(dir, expect.catalog_name);

    // First open: recovery.
    ckptdb_catalog *h = nullptr;
    if (ckptdb_open(&h, dir.c_str(), &oo) != CKPTDB_OK) {
        v.push_back(std::string("recovery: ckptdb_open failed: ") + ckptdb_last_error());
        return v;
    }
    ckptdb_close(h);
    h = nullptr;

    Catalog cat = read_catalog(db_path);
    if (!cat.error.empty()) {
        v.push_back("catalog: " + cat.error);
        return v;
    }
    if (cat.integrity != "ok") v.push_back("integrity_check: " + cat.integrity);

    std::map<int64_t, const Row *> by_id;
    for (const auto &r : cat.rows) by_id[r.id] = &r;
    std::map<int64_t, std::vector<const FileRow *>> files_of;
    for (const auto &f : cat.files) files_of[f.checkpoint_id].push_back(&f);

    // I1: every complete row's files are whole. Remember which verify, for I5.
    std::set<int64_t> verifying;
    int64_t max_complete_seq = 0;
    for (const auto &r : cat.rows) {
        if (r.status != "complete") continue;
        rep.complete++;
        if (r.has_seq && r.commit_seq > max_complete_seq) max_complete_seq = r.commit_seq;
        const bool is_dir = r.layout == "dir";
        const std::string what =
            "I1: complete checkpoint " + std::to_string(r.id) + " (" + r.name + (is_dir ? "/" : "") + ")";
        if (is_dir && !plain_name(r.name)) {
            v.push_back(what + " has an unsafe directory name");
            continue;
        }
        const std::string base = is_dir ? dir + "/" + r.name : dir;  // where its files are
        auto fit = files_of.find(r.id);
        if (fit == files_of.end() || fit->second.empty()) {
            v.push_back(what + " has no file rows");
            continue;
        }
        bool ok = true;
        int64_t total = 0;
        for (const FileRow *f : fit->second) {
            int64_t size = 0;
            std::string hex, why;
            if (!hash_file(base, f->name, size, hex, why)) {
                v.push_back(what + ": file " + f->name + ": " + why);
                ok = false;
                continue;
            }
            total += size;
            if (size != f->size || hex != f->checksum) {
                v.push_back(what + ": file " + f->name + " is " + std::to_string(size) + " bytes " + hex +
                            ", the row says " + std::to_string(f->size) + " bytes " + f->checksum);
                ok = false;
            }
        }
        if (ok && total != r.size) {
            v.push_back(what + ": files hold " + std::to_string(total) + " bytes, the row says " +
                        std::to_string(r.size));
            ok = false;
        }
        if (ok && !is_dir && fit->second.size() == 1 && r.checksum != fit->second[0]->checksum) {
            v.push_back(what + ": checksum " + r.checksum + " differs from its file row's " + fit->second[0]->checksum);
            ok = false;
        }
        if (!r.has_seq) v.push_back(what + " has no commit_seq");
        if (ok) verifying.insert(r.id);
    }

    // I2: the newest complete checkpoint before the crash, or a later one,
    // is still complete.
    if (expect.newest_complete_seq > 0 && !expect.allow_user_delete) {
        const Row *row = nullptr;
        for (const auto &r : cat.rows)
            if (r.has_seq && r.commit_seq == expect.newest_complete_seq) row = &r;
        if (!row) {
            v.push_back("I2: no row has commit_seq " + std::to_string(expect.newest_complete_seq) +
                        " (the newest complete before the crash)");
        } else if (row->status != "complete" && row->status != "pruned") {
            v.push_back("I2: the newest complete checkpoint before the crash (id " + std::to_string(row->id) + ", " +
                        row->name + ") is now " + row->status);
        } else if (max_complete_seq < expect.newest_complete_seq) {
            v.push_back("I2: the newest complete checkpoint before the crash (id " + std::to_string(row->id) + ", " +
                        row->name + ") is " + row->status + " and nothing newer is complete");
        }
    }

    // I3: no temp files; unknown files listed; nothing else deleted.
    auto after = listing(dir, expect.catalog_name);
    std::set<std::string> known;            // names the catalog holds (a directory checkpoint's as "name/file")
    std::set<std::string> live_temp;        // temp files and directories of rows still writing
    std::set<std::string> checkpoint_dirs;  // directories of rows writing, complete or corrupt
    std::set<std::string> may_go;           // what recovery may remove: pruned rows' files, an aborted dir's
    for (const auto &f : cat.files) {
        auto it = by_id.find(f.checkpoint_id);
        const Row *r = it == by_id.end() ? nullptr : it->second;
        const std::string st = r ? r->status : std::string();
        const bool in_dir = r && r->layout == "dir";
        const std::string path = in_dir ? r->name + "/" + f.name : f.name;
        if (st == "writing" || st == "complete" || st == "corrupt") {
            known.insert(path);
            if (!f.temp_name.empty() && !in_dir) known.insert(f.temp_name);
            if (st == "writing" && !f.temp_name.empty() && !in_dir) live_temp.insert(f.temp_name);
        }
        if (st == "pruned" || (in_dir && st == "aborted")) may_go.insert(path);
    }
    for (const auto &r : cat.rows) {
        const bool live = r.status == "writing" || r.status == "complete" || r.status == "corrupt";
        if (r.layout == "dir" && live) {
            known.insert(r.name);
            checkpoint_dirs.insert(r.name);
        }
        if (r.status == "writing" && !r.temp_name.empty()) live_temp.insert(r.temp_name);
        if (r.status == "pruned" || (r.layout == "dir" && r.status == "aborted")) may_go.insert(r.name);
    }
    // I7: saves in place. One aborted goes whole, what was written into it too.
    std::set<std::string> live_names;
    for (const auto &r : cat.rows)
        if (r.status == "writing" || r.status == "complete" || r.status == "corrupt") live_names.insert(r.name);
    std::set<std::string> aborted_in_place;
    for (const auto &r : cat.rows) {
        if (!cat.in_place.count(r.id)) continue;
        // Its writer may live on (a fault injected in this very process,
        // whose abort failed): recovery leaves a live writer's save alone.
        auto w = cat.writer_pid.find(r.id);
        const bool alive = w != cat.writer_pid.end() && w->second > 0 &&
                           (w->second == ::getpid() || ::kill(static_cast<pid_t>(w->second), 0) == 0);
        if (r.status == "writing" && !alive)
            v.push_back("I7: checkpoint " + std::to_string(r.id) + " (" + r.name +
                        "/), saved in place, is still writing after recovery, its writer gone");
        if (r.status == "aborted" && !live_names.count(r.name)) {
            aborted_in_place.insert(r.name);
            if (after.count(r.name))
                v.push_back("I7: the directory " + r.name + "/ of checkpoint " + std::to_string(r.id) +
                            ", an aborted save in place, remains after recovery");
        }
    }
    for (const auto &e : after) {
        const std::string &n = e.first;
        const std::string top = top_of(n);
        const bool nested = top != n;
        if (top.rfind(".ckptdb-link-", 0) == 0) {  // the last link's temp: replaced or removed by recovery
            v.push_back("I3: the last link's temp link " + n + " remains after recovery");
            continue;
        }
        if (is_temp(top)) {
            // A temp file, a directory save's temp directory (what is in it
            // goes with it), or a sidecar seal: only a live writer's stays,
            // named by a row still writing or held under its writer's lock.
            if (nested || live_temp.count(top)) continue;
            bool owned = held(dir + "/" + top);
            for (const std::string &t : live_temp)
                if (top.rfind(t, 0) == 0) owned = true;  // the sidecar seal of a live writer's temp file
            if (!owned)
                v.push_back(std::string("I3: temp ") + (e.second == "dir" ? "directory " : "file ") + n +
                            " remains after recovery");
            continue;
        }
        if (!nested && (e.second == "catalog" || n == expect.last_link || n == ".ckptdb-ballast")) continue;
        if (known.count(n)) continue;
        if (nested && checkpoint_dirs.count(top) && is_temp(n.substr(top.size() + 1)))
            v.push_back("I3: temp file " + n + " is inside a checkpoint's directory after recovery");
        rep.unknown_files.push_back(n);  // (.ckptdb-ballast is the library's reserve of free space)
    }
    for (const std::string &k : expect.kept)
        if (!after.count(k)) v.push_back("I3: " + k + ", a file the catalog did not write, is gone");
    for (const auto &e : before) {
        const std::string &n = e.first;
        const std::string top = top_of(n);
        if (after.count(n) || e.second == "catalog" || is_temp(top) || top.rfind(".ckptdb-link-", 0) == 0 ||
            may_go.count(n) || aborted_in_place.count(top))
            continue;
        if (n == expect.last_link && e.second.rfind("->", 0) == 0) continue;  // replaced or removed link
        v.push_back("I3: recovery deleted " + n + ", which is not one of its temp files nor a pruned file");
    }

    // I4: acknowledged commits survive.
    for (int64_t id : expect.acknowledged) {
        auto it = by_id.find(id);
        if (it == by_id.end()) {
            v.push_back("I4: acknowledged checkpoint " + std::to_string(id) + " has no row");
        } else if (it->second->status == "pruned") {
            if (it->second->prune_rule.empty())
                v.push_back("I4: acknowledged checkpoint " + std::to_string(id) + " is pruned without a rule");
        } else if (it->second->status != "complete") {
            v.push_back("I4: acknowledged checkpoint " + std::to_string(id) + " (" + it->second->name + ") is " +
                        it->second->status);
        }
    }

    // I6: pinned never pruned; a pruned checkpoint was never the newest.
    for (const auto &r : cat.rows) {
        if (r.status != "pruned") continue;
        if (r.pinned) v.push_back("I6: pinned checkpoint " + std::to_string(r.id) + " (" + r.name + ") was pruned");
        if (expect.allow_user_delete || r.prune_rule == "corrupt") continue;
        bool later = false;
        for (const auto &o : cat.rows)
            if (o.has_seq && r.has_seq && o.commit_seq > r.commit_seq) later = true;
        if (!later)
            v.push_back("I6: checkpoint " + std::to_string(r.id) + " (" + r.name +
                        ") was pruned while it was the newest committed (rule " + r.prune_rule + ")");
    }

    // I5: latest with full verification.
    int64_t expect_latest = 0, best_seq = 0;
    for (const auto &r : cat.rows)
        if (verifying.count(r.id) && r.commit_seq > best_seq) {
            best_seq = r.commit_seq;
            expect_latest = r.id;
        }
    if (ckptdb_open(&h, dir.c_str(), &oo) != CKPTDB_OK) {
        v.push_back(std::string("recovery (second open): ckptdb_open failed: ") + ckptdb_last_error());
        return v;
    }
    ckptdb_entry e = CKPTDB_ENTRY_INIT;
    int rc = ckptdb_latest(&e, h, nullptr, CKPTDB_VERIFY_FULL);
    if (rc == CKPTDB_OK) {
        rep.latest_id = e.id;
        if (e.id != expect_latest)
            v.push_back("I5: ckptdb_latest returned " + std::to_string(e.id) + " (" + e.name + "), expected " +
                        (expect_latest ? std::to_string(expect_latest) : std::string("none")));
    } else if (rc == CKPTDB_ENOTFOUND) {
        if (expect_latest) v.push_back("I5: ckptdb_latest found nothing, expected " + std::to_string(expect_latest));
    } else {
        v.push_back(std::string("I5: ckptdb_latest failed: ") + ckptdb_last_error());
    }
    ckptdb_close(h);
    h = nullptr;

    // Recovery twice: the second open (above) and a third change nothing.
    if (ckptdb_open(&h, dir.c_str(), &oo) != CKPTDB_OK) {
        v.push_back(std::string("recovery (third open): ckptdb_open failed: ") + ckptdb_last_error());
        return v;
    }
    ckptdb_close(h);
    Catalog again = read_catalog(db_path);
    if (!again.error.empty()) v.push_back("catalog after recovering again: " + again.error);
    if (again.integrity != "ok") v.push_back("integrity_check after recovering again: " + again.integrity);
    if (again.dump != cat.dump)
        v.push_back("recovery twice: catalog rows differ\n--- first\n" + cat.dump + "--- again\n" + again.dump);
    auto after2 = listing(dir, expect.catalog_name);
    if (after2 != after) {
        std::string a, b;
        for (const auto &x : after) a += "  " + x.first + " " + x.second + "\n";
        for (const auto &x : after2) b += "  " + x.first + " " + x.second + "\n";
        v.push_back("recovery twice: directory listing differs\n--- first\n" + a + "--- again\n" + b);
    }
    return v;
}

inline std::vector<std::string> check_invariants(const std::string &dir, const Expect &expect) {
    return check_invariants(dir, expect, nullptr);
}

// The violations as one block of text, for a test's failure message.
inline std::string join(const std::vector<std::string> &v) {
    std::string s;
    for (const auto &x : v) s += x + "\n";
    return s;
}

}  // namespace harness
