#include "catalog.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <set>
#include <vector>

#include "ballast.hpp"
#include "ckptdb.h"
#include "error.hpp"
#include "hooks.hpp"
#include "io.hpp"
#include "names.hpp"
#include "shard.hpp"
#include "signals.hpp"
#include "trust.hpp"

namespace ckptdb {

int status_code(const std::string &t) {
    if (t == "writing") return CKPTDB_STATUS_WRITING;
    if (t == "complete") return CKPTDB_STATUS_COMPLETE;
    if (t == "corrupt") return CKPTDB_STATUS_CORRUPT;
    if (t == "aborted") return CKPTDB_STATUS_ABORTED;
    if (t == "pruned") return CKPTDB_STATUS_PRUNED;
    return 0;
}

const char *status_text(int code) {
    switch (code) {
        case CKPTDB_STATUS_WRITING:
            return "writing";
        case CKPTDB_STATUS_COMPLETE:
            return "complete";
        case CKPTDB_STATUS_CORRUPT:
            return "corrupt";
        case CKPTDB_STATUS_ABORTED:
            return "aborted";
        case CKPTDB_STATUS_PRUNED:
            return "pruned";
        default:
            return "unknown";
    }
}

// What a catalog creation a kill stopped left behind: <catalog>.new-<hex>
// (and its -wal, -shm, -journal), removed once no live creator holds it.
void remove_dead_creations(const Dir &dir, const std::string &catalog) {
    const std::string prefix = catalog + ".new-";
    std::vector<std::string> bases, extras;
    for (const std::string &n : list_names(dir)) {
        if (n.compare(0, prefix.size(), prefix) != 0) continue;
        std::string hex = n.substr(prefix.size(), 32);
        if (!is_hex32(hex)) continue;
        std::string rest = n.substr(prefix.size() + 32);
        if (rest.empty())
            bases.push_back(n);
        else
            for (const char *suffix : kCatalogSuffixes)
                if (rest == suffix) extras.push_back(n);
    }
    std::set<std::string> dead;
    for (const std::string &b : bases)
        if (remove_unheld(dir, b)) dead.insert(b);
    // A creator makes its file before SQLite makes the others, and removes
    // them before it renames the file: one without its file is a leftover.
    for (const std::string &e : extras) {
        std::string b = e.substr(0, prefix.size() + 32);
        if (dead.count(b) || !name_exists(dir, b)) unlink_name(dir, e);
    }
}

// A new catalog appears whole or not at all: made with its schema under a
// temp name, closed (its WAL folded into the file and fsynced), then renamed
// into place without replacing anything. A kill leaves no catalog file
// without a schema; another process creating it at the same time wins.
std::string build_catalog_temp(const Dir &dir, const std::string &name, const DbOptions &dbo,
                               const std::function<void(Store &)> &fill, UniqueFd &held) {
    // Not a temp name of the library: recovery in another process removes
    // those, and would take this file (or its WAL) while it is being built.
    // It is held under an exclusive flock while it is built: recovery
    // removes only such files nobody holds (remove_dead_creations).
    std::string tmp;
    held = create_locked_traced(
        dir, [&] { return name + ".new-" + random_temp_name().substr(12); }, tmp);
    hook("catalog_temp_created");
    try {
        {
            DbOptions init = dbo;
            init.init_schema = true;
            Db db(dir.join(tmp), init);
            if (fill) {
                Db::Tx tx(db);
                Store st(db, dir);
                fill(st);
                tx.commit();
            }
            db.checkpoint_wal(true);  // everything in the file itself before its WAL goes
        }
        for (const char *suffix : {"-wal", "-shm"}) unlink_name(dir, tmp + suffix);
    } catch (...) {
        remove_catalog_temp(dir, tmp);
        throw;
    }
    return tmp;
}

void remove_catalog_temp(const Dir &dir, const std::string &tmp) {
    for (const char *suffix : kCatalogSuffixes) unlink_name(dir, tmp + suffix);
}

static void create_catalog(const Dir &dir, const std::string &name, const DbOptions &dbo) {
    UniqueFd held;
    std::string tmp = build_catalog_temp(dir, name, dbo, nullptr, held);
    try {
        try {
            rename_noreplace(dir, tmp, name);
        } catch (const Error &e) {
            if (e.code() != CKPTDB_EEXISTS) throw;
            unlink_name(dir, tmp);  // another process made it first
            return;
        }
        sync_dir(dir);
    } catch (...) {
        remove_catalog_temp(dir, tmp);
        throw;
    }
}

// The ownership rule (trust.hpp) on the catalog's files that exist and on
// the directory, before anything in the directory is read or changed; every
// problem found is named (a replaced catalog first).
static void check_owners(const Dir &dir, const std::string &catalog) {
    std::vector<std::string> found;
    struct stat st;
    for (const char *suffix : {"", "-wal", "-shm", "-journal"}) {
        const std::string name = catalog + suffix;
        if (io::ops().fstatat(dir.fd.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
            if (errno == ENOENT) continue;
            fail_os("cannot look up", dir.join(name), errno);
        }
        std::string d = distrust(st, *suffix ? "catalog file" : "catalog", dir.join(name));
        if (!d.empty()) found.push_back(d);
    }
    const std::string where = dir.path.empty() ? "/" : dir.path;
    if (io::ops().fstat(dir.fd.get(), &st) != 0) fail_os("cannot stat", where, errno);
    std::string d = distrust(st, "checkpoint directory", where);
    if (!d.empty()) found.push_back(d);
    if (!found.empty()) fail_untrusted(found);
}

Catalog::Catalog(Dir dir, const OpenOptions &opts) : dir_(std::move(dir)), opts_(opts), self_(self_identity()) {}

std::shared_ptr<Catalog> Catalog::open(const std::string &path, const OpenOptions &opts) {
    std::string p = name_problem(opts.catalog_name);
    // The same rules as a checkpoint name: inside the directory, and never
    // a name the library uses for its own temp files (.ckptdb*), which
    // recovery removes.
    if (!p.empty()) fail(CKPTDB_EINVAL, "invalid catalog file name '" + opts.catalog_name + "': it " + p);
    if (opts.busy_timeout_ms <= 0) fail(CKPTDB_EINVAL, "busy timeout must be positive");
    if (!opts.last_link.empty()) {
        std::string lp = name_problem(opts.last_link);
        if (!lp.empty()) fail(CKPTDB_EINVAL, "invalid last-link name '" + opts.last_link + "': it " + lp);
        if (opts.last_link == opts.catalog_name) fail(CKPTDB_EINVAL, "the last-link cannot be the catalog file");
    }
    Dir dir = open_dir(path, opts.create && !opts.readonly);
    if (!opts.trust_shared) {
        check_owners(dir, opts.catalog_name);
        dir.owners_checked = true;
    }
    if (!opts.readonly && ::faccessat(dir.fd.get(), ".", W_OK | X_OK, AT_EACCESS) != 0)
        fail_os("checkpoint directory is not writable:", dir.path, errno);
    std::shared_ptr<Catalog> cat(new Catalog(std::move(dir), opts));
    DbOptions dbo;
    dbo.readonly = opts.readonly;
    dbo.create = opts.create;
    dbo.rollback_journal = on_network_fs(cat->dir_.fd.get());
    dbo.busy_timeout_ms = opts.busy_timeout_ms;
    if (!opts.readonly && opts.create && !name_exists(cat->dir_, opts.catalog_name)) {
        // Never an empty catalog beside checkpoints: resume would start from
        // step 0, and a rebuild could no longer take those files back.
        std::vector<std::string> found = checkpoint_looking_files(cat->dir_, opts);
        for (std::string &d : checkpoint_looking_dirs(cat->dir_, opts)) found.push_back(std::move(d));
        if (!found.empty()) {
            std::string list;
            for (size_t i = 0; i < found.size() && i < 5; i++) list += (i ? ", " : "") + found[i];
            if (found.size() > 5) list += " and " + std::to_string(found.size() - 5) + " more";
            fail(CKPTDB_ENOTCATALOG,
                 "'" + cat->dir_.path + "' holds checkpoint files but no catalog ('" + opts.catalog_name +
                     "' is missing): " + list +
                     ". No empty catalog was started beside them. If ckptdb wrote them and its catalog was lost, "
                     "'ckptdb fsck --repair " +
                     cat->dir_.path +
                     "' rebuilds it; if they were written without "
                     "ckptdb, 'ckptdb adopt " +
                     cat->dir_.path + "' takes them in; or move them elsewhere");
        }
        // A -wal or journal whose catalog is gone must never meet a new one
        // (SQLite would replay it into it): that catalog was lost. A creator
        // makes its catalog before any -wal, so a -wal seen first and then
        // no catalog is a stray.
        for (const char *suffix : {"-wal", "-journal"})
            if (name_exists(cat->dir_, opts.catalog_name + suffix) && !name_exists(cat->dir_, opts.catalog_name))
                fail(CKPTDB_ENOTCATALOG, "'" + cat->dir_.path + "' holds '" + opts.catalog_name + suffix +
                                             "' but not the catalog it belongs to: the catalog was lost. Nothing "
                                             "was changed; 'ckptdb fsck --repair " +
                                             cat->dir_.path +
                                             "' keeps them aside and rebuilds the catalog from the files there");
        if (!name_exists(cat->dir_, opts.catalog_name)) create_catalog(cat->dir_, opts.catalog_name, dbo);
    }
    // On a completely full disk the first connection to a catalog that no
    // process holds open grows SQLite's shared-memory index (-shm) again,
    // which can fail (ext4 does not always give back the blocks it just
    // took). An operator's prune or repair (open_with_reserve) may use the
    // reserve for that room; it is not made again in this open: the room is
    // for the prune or repair that follows, which puts the reserve back once
    // its deletions freed room (the next writable open does otherwise).
    std::vector<std::pair<std::string, std::string>> reserve_notes;
    {
        Reserve reserve(cat->dir_, [&reserve_notes](const std::string &ev, const std::string &d) {
            reserve_notes.emplace_back(ev, d);
        });
        auto open_db = [&] { cat->db_ = std::make_unique<Db>(cat->dir_.join(opts.catalog_name), dbo); };
        if (opts.open_with_reserve)
            reserve.run("opening the catalog", open_db);
        else
            open_db();
        cat->reserve_used_by_open_ = reserve.released();
        reserve.hand_over();
    }
    for (const auto &n : reserve_notes) cat->log_event_noexcept(n.first, n.second);
    if (!opts.readonly) {
        try {
            remove_dead_creations(cat->dir_, opts.catalog_name);
            cat->recover();
        } catch (const Error &e) {
            // On a full disk the catalog cannot record what recovery
            // resolved; it must still open, so that a job can find its newest
            // checkpoint and resume. Recovery is idempotent: the next open
            // with room finishes it.
            if (e.code() != CKPTDB_ENOSPC) throw;
            cat->log_event_noexcept("recovery_failed", e.what());
        }
        if (!cat->reserve_used_by_open_)
            keep_ballast(cat->dir_,
                         [&cat](const std::string &ev, const std::string &d) { cat->log_event_noexcept(ev, d); });
    }
    return cat;
}

Catalog::~Catalog() {
    if (!db_ || opts_.readonly) return;
    if (!unlinked_unsynced_.empty()) {
        try {
            sync_dir(dir_);
            directory_synced();
        } catch (...) {
            // Not recorded: the next open's recovery unlinks them again.
        }
    }
    if (run_id_ == 0 && unlinked_.empty()) return;
    if (run_id_ == 0) {
        try {
            write([](Store &) {});  // records the deletions still pending
        } catch (...) {}
        return;
    }
    try {
        // Requeued: preempted, and Slurm accepted to requeue the job.
        // Preempted: a preemption signal reached this process, or it saved a
        // preempt checkpoint; otherwise it ended by closing the catalog.
        std::string reason = !exit_reason_.empty()                             ? exit_reason_
                             : requeued_                                       ? "requeued"
                             : committed_preempt_ || signals::requested() != 0 ? "preempted"
                                                                               : "clean";
        write([&](Store &db) {
            db.run_end(run_id_, reason);
            log_event(db, 0, "run_ended", reason);
        });
    } catch (...) {
        // Closing must not throw; the run row simply keeps no end time.
    }
}

bool Catalog::reserved_name(const std::string &name) const {
    return is_catalog_file(name, opts_.catalog_name) ||
           (!opts_.last_link.empty() && (name == opts_.last_link || name == link_temp_name()));
}

void Catalog::write(const std::function<void(Store &)> &fn) {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    if (opts_.readonly) fail(CKPTDB_EREADONLY, "catalog '" + db_->path() + "' was opened read-only");
    size_t mark = pending_.size();
    try {
        Db::Tx tx(*db_);
        Store st(*db_, dir_);
        for (int64_t id : unlinked_) st.prune_done(id);
        fn(st);
        tx.commit();
    } catch (...) {
        pending_.resize(mark);
        pending_run_id_ = 0;
        throw;
    }
    unlinked_.clear();
    if (pending_run_id_) run_id_ = pending_run_id_, pending_run_id_ = 0;
    emit_pending();
}

void Catalog::read(const std::function<void(Store &)> &fn) {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    Store st(*db_, dir_);
    fn(st);
}

void Catalog::read_snapshot(const std::function<void(Store &)> &fn) {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    Db::ReadTx snapshot(*db_);
    Store st(*db_, dir_);
    fn(st);
}

void Catalog::emit_pending() {
    std::vector<Pending> ev;
    ev.swap(pending_);
    if (!opts_.on_event) return;
    for (auto &e : ev) opts_.on_event(e.event, e.id, e.detail);
}

static std::optional<std::string> env(const char *name) {
    const char *v = std::getenv(name);
    if (!v || !*v) return std::nullopt;
    return std::string(v);
}

int64_t Catalog::run_id_in_tx(Store &db) {
    if (run_id_) return run_id_;
    if (pending_run_id_) return pending_run_id_;
    NewRun r;
    r.host = self_.host;
    r.boot_id = self_.boot_id;
    r.pid = self_.pid;
    r.proc_start = self_.proc_start;
    r.slurm_job_id = env("SLURM_JOB_ID");
    r.slurm_array_job_id = env("SLURM_ARRAY_JOB_ID");
    r.slurm_array_task_id = env("SLURM_ARRAY_TASK_ID");
    if (auto restart = env("SLURM_RESTART_COUNT")) r.slurm_restart_count = std::atoll(restart->c_str());
    if (auto procid = env("SLURM_PROCID")) r.slurm_procid = std::atoll(procid->c_str());
    pending_run_id_ = db.run_insert(r);
    return pending_run_id_;
}

void Catalog::log_event(Store &db, int64_t checkpoint_id, const std::string &event, const std::string &detail) {
    db.event_insert(run_id_ ? run_id_ : pending_run_id_, checkpoint_id, event, detail);
    pending_.push_back({event, checkpoint_id, detail});
}

void Catalog::log_event_noexcept(const std::string &event, const std::string &what) noexcept {
    try {
        write([&](Store &db) { log_event(db, 0, event, what); });
    } catch (...) {
        // The catalog itself is failing; the event callback is the last resort.
        try {
            if (opts_.on_event) opts_.on_event(event, 0, what);
        } catch (...) {}
    }
}

Entry Catalog::entry(int64_t id) {
    std::optional<Entry> e;
    read([&](Store &db) { e = db.entry_by_id(id); });
    if (!e) fail(CKPTDB_ENOTFOUND, "no checkpoint with id " + std::to_string(id) + " in '" + db_->path() + "'");
    return *e;
}

std::optional<int64_t> Catalog::id_by_name(const std::string &name) {
    std::optional<int64_t> id;
    read([&](Store &db) { id = db.entry_by_name(name); });
    return id;
}

std::vector<FileRow> Catalog::files(int64_t id) {
    std::vector<FileRow> out;
    read([&](Store &db) { out = db.files_of(id); });
    return out;
}

std::vector<Entry> Catalog::entries_page(int64_t after_id, unsigned status_mask, const std::optional<std::string> &kind,
                                         int limit) {
    std::vector<Entry> out;
    read([&](Store &db) { out = db.entries_page(after_id, status_mask, kind, limit); });
    return out;
}

bool Catalog::mark_corrupt(int64_t id, const std::string &reason) {
    if (readonly()) return false;  // a read-only reader still skips it, without recording
    bool changed = false;
    write([&](Store &db) {
        changed = db.checkpoint_mark_corrupt(id);
        if (changed) log_event(db, id, "corrupt", reason);
    });
    if (changed) refresh_link();
    return changed;
}

bool Catalog::restore(int64_t id) {
    bool changed = false;
    write([&](Store &db) {
        changed = db.checkpoint_restore(id);
        if (changed) log_event(db, id, "restored", "every file verified again");
    });
    if (changed) refresh_link();
    return changed;
}

void Catalog::mark_resumed(int64_t id) {
    entry(id);  // must exist
    write([&](Store &db) {
        db.run_set_resumed(run_id_in_tx(db), id);
        log_event(db, id, "resumed", "pid " + std::to_string(self_.pid) + " on " + self_.host);
    });
}

}  // namespace ckptdb
