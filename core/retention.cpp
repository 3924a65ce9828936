// Choosing prune victims (one query, one transaction), deleting them
// crash-safely (mark, unlink, fsync the directory, record), and the byte
// budget ahead of a save. The last link is in link.cpp, pins in pin.cpp.
#include "retention.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>

#include "ballast.hpp"
#include "catalog.hpp"
#include "ckptdb.h"
#include "dirsave.hpp"
#include "error.hpp"
#include "hooks.hpp"
#include "io.hpp"
#include "names.hpp"

namespace ckptdb {

Retention Retention::defaults() {
    Retention r;
    r.keep_last = {{"epoch", 5}, {"time", 3}, {"preempt", 0}, {"manual", 0}};
    return r;
}

static bool metric_ok(const std::string &m) {
    if (m.empty() || m.front() == '.' || m.back() == '.' || m.find("..") != std::string::npos) return false;
    for (unsigned char c : m)
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
              c == '.'))
            return false;
    return true;
}

void Retention::validate() const {
    for (const auto &kv : keep_last) {
        std::string p = kind_problem(kv.first);
        if (!p.empty()) fail(CKPTDB_EINVAL, "retention keep_last: kind '" + kv.first + "' " + p);
        if (kv.second < -1)
            fail(CKPTDB_EINVAL, "retention keep_last for kind '" + kv.first + "' must be -1 (all) or >= 0, got " +
                                    std::to_string(kv.second));
    }
    if (keep_last_default < -1)
        fail(CKPTDB_EINVAL,
             "retention keep_last_default must be -1 (all) or >= 0, got " + std::to_string(keep_last_default));
    if (keep_every_n_epochs < 0)
        fail(CKPTDB_EINVAL, "retention keep_every_n_epochs must be >= 0, got " + std::to_string(keep_every_n_epochs));
    if (keep_interval_seconds < 0)
        fail(CKPTDB_EINVAL,
             "retention keep_interval_seconds must be >= 0, got " + std::to_string(keep_interval_seconds));
    if (max_bytes < 0) fail(CKPTDB_EINVAL, "retention max_bytes must be >= 0, got " + std::to_string(max_bytes));
    if (best_metric) {
        if (!metric_ok(*best_metric))
            fail(CKPTDB_EINVAL, "retention best_metric '" + *best_metric +
                                    "' must be a metadata key of letters, digits, '_', '-' (dots for nesting)");
        if (best_k < 1)
            fail(CKPTDB_EINVAL, "retention best_k must be >= 1 with a best_metric, got " + std::to_string(best_k));
    } else if (best_k < 0) {
        fail(CKPTDB_EINVAL, "retention best_k must be >= 0, got " + std::to_string(best_k));
    }
}

std::string Retention::keep_last_json() const {
    nlohmann::json j = nlohmann::json::object();
    for (const auto &kv : keep_last) j[kv.first] = kv.second;
    return j.dump();
}

std::optional<std::string> Retention::metric_path() const {
    if (!best_metric) return std::nullopt;
    std::string path = "$";
    size_t start = 0;
    for (;;) {
        size_t dot = best_metric->find('.', start);
        path += ".\"" + best_metric->substr(start, dot == std::string::npos ? std::string::npos : dot - start) + "\"";
        if (dot == std::string::npos) break;
        start = dot + 1;
    }
    return path;
}

void Catalog::set_retention(std::optional<Retention> r) {
    if (r) r->validate();
    std::lock_guard<std::recursive_mutex> lock(mu_);
    retention_ = std::move(r);
}

std::optional<Retention> Catalog::retention() {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    return retention_;
}

static std::string human(int64_t b) {
    const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = static_cast<double>(b);
    int u = 0;
    while (v >= 1024 && u < 4) v /= 1024, u++;
    char buf[32];
    std::snprintf(buf, sizeof buf, u ? "%.1f %s" : "%.0f %s", v, units[u]);
    return buf;
}

// Bytes on disk now in the temp files of saves in flight (their rows are
// "writing"): the budget counts them with the checkpoints, wherever their
// writers run. Names are checked before any is looked at; links are not
// followed.
static int64_t in_flight_bytes(Store &db, const Dir &dir, int64_t &files) {
    int64_t bytes = 0;
    files = 0;
    for (const std::string &t : db.writing_temp_names()) {
        struct stat st;
        if (!is_exact_temp_name(t) || io::ops().fstatat(dir.fd.get(), t.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 ||
            !S_ISREG(st.st_mode))
            continue;
        bytes += static_cast<int64_t>(st.st_size);
        files++;
    }
    return bytes;
}

std::vector<PruneItem> Catalog::plan_and_mark(Store &db, const Retention &r, int64_t extra_bytes, bool dry_run,
                                              bool *fits, std::string *usage) {
    std::vector<PruneItem> victims, protected_items;
    // Budget usage (docs/DESIGN.md, "Known duplication", item 4; a subset of
    // disk usage, the view disk_usage): the complete checkpoints the plan
    // keeps (summed below), the temp files of saves in flight as they are on
    // disk now, and the room asked for. Corrupt files and pending unlinks
    // are not counted.
    int64_t in_flight_files = 0;
    const int64_t in_flight = r.max_bytes > 0 ? in_flight_bytes(db, dir_, in_flight_files) : 0;
    int64_t remaining = extra_bytes + in_flight;
    for (PruneItem &it : db.prune_plan(r, extra_bytes + in_flight)) {
        if (it.rule.compare(0, 7, "victim:") == 0) {
            it.rule = it.rule.substr(7);
            // A corrupt one goes only once hashing it again confirmed it.
            if (it.rule == "corrupt" && !dry_run && !confirmed_corrupt_.count(it.id)) continue;
            victims.push_back(std::move(it));
        } else {
            remaining += it.size;
            if (it.rule.compare(0, 10, "protected:") == 0) protected_items.push_back(std::move(it));
        }
    }
    if (!dry_run) {
        if (!victims.empty()) run_id_in_tx(db);  // the events name the run that pruned
        for (const PruneItem &v : victims) {
            if (db.checkpoint_prune(v.id, v.rule)) log_event(db, v.id, "pruned", v.rule);
        }
    }
    bool ok = r.max_bytes == 0 || remaining <= r.max_bytes;
    if (fits) *fits = ok;
    if (usage && !ok) {
        std::string u = "budget " + human(r.max_bytes) + ", still needed " + human(remaining) +
                        (extra_bytes ? " (including " + human(extra_bytes) + " expected for the new save)" : "") +
                        (in_flight ? " (including " + human(in_flight) + " in the temp files of " +
                                         std::to_string(in_flight_files) + " save(s) in flight)"
                                   : "") +
                        "; protected:";
        for (const PruneItem &p : protected_items)
            u += " " + p.name + " " + human(p.size) + " (" + p.rule.substr(10) + ")";
        *usage = u;
    }
    return victims;
}

int64_t total_size(const std::vector<PruneItem> &items) {
    int64_t n = 0;
    for (const PruneItem &it : items) n += it.size;
    return n;
}

// One home for a deletion (prune, remove): mark runs the transaction that
// marks the victims pruned; then their files are unlinked, the directory
// fsynced and the last link refreshed. On a full disk the marking cannot be
// written, and without it nothing may be deleted: the reserve gives it room,
// and comes back once the victims' files are gone (never for a save's own
// make_room: saves never use the reserve).
void Catalog::delete_marked(const char *what, const std::function<void()> &mark, const std::vector<PruneItem> &victims,
                            bool for_save) {
    Reserve reserve(dir_, [this](const std::string &ev, const std::string &d) { log_event_noexcept(ev, d); });
    if (!for_save && reserve_used_by_open_) reserve.take_over(), reserve_used_by_open_ = false;
    if (for_save)
        mark();
    else
        reserve.run(what, mark);
    hook("pruned_marked");
    std::vector<int64_t> ids;
    for (const PruneItem &v : victims) ids.push_back(v.id);
    finish_prunes(ids);
    refresh_link();
    reserve.restore();
}

std::vector<PruneItem> Catalog::prune(const Retention &r, bool dry_run, int64_t extra_bytes, bool *fits,
                                      std::string *usage, bool for_save) {
    r.validate();
    if (!dry_run && readonly()) fail(CKPTDB_EREADONLY, "cannot prune: the catalog was opened read-only");
    std::vector<PruneItem> victims;
    if (dry_run) {
        read([&](Store &db) { victims = plan_and_mark(db, r, extra_bytes, true, fits, usage); });
        return victims;
    }
    auto mark = [&] {
        if (r.prune_corrupt) confirm_corrupt();
        try {
            write([&](Store &db) { victims = plan_and_mark(db, r, extra_bytes, false, fits, usage); });
        } catch (...) {
            confirmed_corrupt_.clear();
            throw;
        }
        confirmed_corrupt_.clear();
    };
    delete_marked("the prune", mark, victims, for_save);
    return victims;
}

PruneItem Catalog::remove(int64_t id) {
    if (readonly()) fail(CKPTDB_EREADONLY, "cannot remove a checkpoint: the catalog was opened read-only");
    std::vector<PruneItem> victims;
    auto mark = [&] {
        victims.clear();
        write([&](Store &db) {
            std::optional<Entry> found = db.entry_by_id(id);
            if (!found)
                fail(CKPTDB_ENOTFOUND, "no checkpoint with id " + std::to_string(id) + " in '" + dir_.path + "'");
            const Entry &e = *found;
            if (e.pinned)
                fail(CKPTDB_EINVAL, "checkpoint " + std::to_string(id) + " (" + e.name +
                                        ") is pinned: unpin it first (ckptdb unpin); nothing was removed");
            if (e.status != CKPTDB_STATUS_COMPLETE && e.status != CKPTDB_STATUS_CORRUPT)
                fail(CKPTDB_EINVAL, "checkpoint " + std::to_string(id) + " (" + e.name + ") is " +
                                        status_text(e.status) +
                                        ": only a complete or corrupt checkpoint can be removed; nothing was removed");
            if (!db.checkpoint_prune(id, "removed"))
                fail(CKPTDB_EINVAL, "checkpoint " + std::to_string(id) + " (" + e.name +
                                        ") changed while it was being removed; nothing was removed");
            run_id_in_tx(db);
            log_event(db, id, "pruned", "removed");
            victims.push_back({id, e.name, e.size, "removed"});
        });
    };
    delete_marked("the removal", mark, victims, false);
    return victims.front();
}

void Catalog::confirm_corrupt() {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    confirmed_corrupt_.clear();
    for_each_entry(1u << CKPTDB_STATUS_CORRUPT, std::nullopt, [&](Entry &e) {
        if (e.pinned) return true;
        // One that verifies is complete again and kept; an unreadable one is
        // kept (nothing is known about its bytes); only a mismatch goes.
        if (verify_entry(e, Verify::full).code == CKPTDB_ECORRUPT) confirmed_corrupt_.insert(e.id);
        return true;
    });
}

std::vector<int64_t> Catalog::rotate_in_tx(Store &db) {
    std::vector<int64_t> ids;
    rotate_error_.clear();
    if (!retention_) return ids;
    size_t mark = pending_.size();
    // Where rolling the savepoint back fails too, the transaction itself is
    // broken: that throws, and the commit fails as a whole.
    rotate_error_ = db.in_savepoint([&] {
        for (const PruneItem &v : plan_and_mark(db, *retention_, 0, false, nullptr, nullptr)) ids.push_back(v.id);
    });
    if (!rotate_error_.empty()) {
        pending_.resize(mark);
        ids.clear();
    }
    return ids;
}

void Catalog::directory_synced() {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    unlinked_.insert(unlinked_.end(), unlinked_unsynced_.begin(), unlinked_unsynced_.end());
    unlinked_unsynced_.clear();
}

void Catalog::finish_prunes(const std::vector<int64_t> &ids, bool sync_now) {
    if (ids.empty()) return;
    std::vector<int64_t> done;
    for (int64_t id : ids) {
        // Check and unlink under the catalog's write lock: no other process
        // can give the name to a new checkpoint in between (a save records
        // its row, which needs that lock, before its file takes the name).
        // The transaction writes nothing but a directory's warning event;
        // it is held for its lock.
        bool all_gone = false;
        write([&](Store &db) {
            if (!db.prune_is_pending(id)) return;  // pinned meanwhile, already unlinked, or not ours to delete
            all_gone = true;
            std::vector<FileRow> fs = files(id);
            if (!fs.empty() && !fs[0].dir.empty()) {
                // A directory checkpoint: its recorded files, then the
                // directory once nothing else is in it. What the catalog did
                // not write stays, with a warning, and the directory with it.
                const std::string &name = fs[0].dir;
                if (!name_problem(name).empty() || db.name_taken(name)) return;
                hook("prune_checked");
                DirRemoval r = remove_dir_checkpoint(dir_, name, fs);
                all_gone = r.files_gone;
                if (r.files_gone && !r.dir_gone) {
                    std::string list;
                    for (size_t i = 0; i < r.kept.size() && i < 10; i++) list += (i ? ", " : "") + r.kept[i];
                    if (r.kept.size() > 10) list += " and " + std::to_string(r.kept.size() - 10) + " more";
                    log_event(db, id, "prune_kept_unknown",
                              "'" + dir_.join(name) + "/' stays: it holds files the catalog did not write (" + list +
                                  "); they are never deleted");
                }
                return;
            }
            for (const FileRow &f : fs) {
                if (!name_problem(f.name).empty()) continue;  // a tampered name is never touched
                if (db.name_taken(f.name)) continue;          // the name belongs to a live checkpoint now
                hook("prune_checked");
                // Only the file the catalog wrote: a regular file (links not
                // followed) of the size it recorded. Anything else under the
                // name is someone else's and stays.
                int err = 0;
                UniqueFd fd = open_read(dir_, f.name, err);
                if (!fd) {
                    if (err != ENOENT) all_gone = false;
                    continue;
                }
                struct stat st;
                if (io::ops().fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_size != f.size) {
                    all_gone = false;
                    continue;
                }
                fd.reset();
                err = unlink_name(dir_, f.name);
                if (err != 0 && err != ENOENT) all_gone = false;
            }
        });
        if (all_gone) done.push_back(id);
    }
    if (done.empty()) return;
    // The unlinks must be durable before the catalog says they happened; a
    // later write transaction records them.
    std::lock_guard<std::recursive_mutex> lock(mu_);
    unlinked_unsynced_.insert(unlinked_unsynced_.end(), done.begin(), done.end());
    if (sync_now) {
        sync_dir(dir_);
        directory_synced();
    }
}

void Catalog::make_room(const std::string &kind) {
    std::optional<Retention> r = retention();
    if (!r || r->max_bytes == 0) return;
    int64_t expected = 0;
    read([&](Store &db) { expected = db.last_size_of_kind(kind).value_or(0); });
    bool fits = false;
    std::string usage;
    prune(*r, true, expected, &fits, &usage);
    if (!fits)
        fail(CKPTDB_ENOSPC, "a save of kind '" + kind + "' cannot fit in the byte budget of '" + dir_.path +
                                "' without deleting protected checkpoints: " + usage);
    prune(*r, false, expected, nullptr, nullptr, true);
}

void Catalog::after_commit(const std::string &kind, const std::vector<int64_t> &marked) {
    if (kind == "preempt") committed_preempt_ = true;
    std::string failed;
    {
        std::lock_guard<std::recursive_mutex> lock(mu_);
        failed.swap(rotate_error_);
    }
    if (!failed.empty()) log_event_noexcept("prune_failed", failed);
    try {
        hook("pruned_marked");
        finish_prunes(marked, false);  // the next save's directory fsync covers these unlinks
    } catch (const std::exception &e) {
        log_event_noexcept("prune_failed", e.what());  // recovery finishes the deletion later
    }
    refresh_link();
    if (kind == "preempt") requeue_after_preempt();
}

}  // namespace ckptdb
