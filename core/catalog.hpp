// A catalog: the checkpoint directory, its SQLite connection, this process's
// run row and the event log. Shared (std::shared_ptr) by the handle and every
// save, reader and cursor opened through it; its mutex guards the connection.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "db.hpp"
#include "fsio.hpp"
#include "proc.hpp"
#include "retention.hpp"
#include "store.hpp"

namespace ckptdb {

struct OpenOptions {
    bool create = true;
    bool readonly = false;
    std::string catalog_name = "ckptdb.sqlite";
    int busy_timeout_ms = 60000;
    std::string last_link = "last.pt";  // "" for none
    bool requeue = false;               // CKPTDB_OPEN_REQUEUE (slurm.cpp)
    // CKPTDB_OPEN_TRUST_SHARED: no ownership checks (trust.hpp) on the
    // directory, the catalog or the files read from the directory.
    bool trust_shared = false;
    bool open_with_reserve = false;  // CKPTDB_OPEN_RESERVE: the open may use the reserve (ballast.hpp)
    std::function<void(const std::string &event, int64_t id, const std::string &detail)> on_event;
};

struct FsckItem {
    std::string kind, name;
    int64_t checkpoint_id = 0;
    std::string detail, action;
    // Every finding is a problem except a save in flight (its writer lives).
    bool is_problem() const { return kind != "writing"; }
};

// How many of items are problems (FsckItem::is_problem).
int64_t count_problems(const std::vector<FsckItem> &items);

// What `ckptdb fsck DIR [--repair]` reports, whole: Catalog::fsck_dir.
struct FsckReport {
    std::vector<FsckItem> items;  // in the order to show them
    int64_t problems = 0;         // findings that are problems (a save in flight is not)
    bool rebuilt = false;         // the catalog was lost and has been rebuilt
};

// The outcome of checking a checkpoint's files against its rows.
struct Check {
    bool ok = true;
    std::string reason;     // why not, for people
    bool io_error = false;  // the files could not be read (EIO): not evidence of corruption
};

// The per-file verdict, one rule and one wording for every check of a
// file's bytes (check_file, Reader): got_size bytes (and, unless got_hex is
// empty, their XXH3-128) against the row's size and checksum.
Check compare_file(const std::string &path, int64_t size, const std::string &checksum, int64_t got_size,
                   const std::string &got_hex);

// One file of dir against its recorded size and (with full) XXH3-128: the
// one file check, of check_files and of recovery. A mismatch (missing, not
// a regular file, another size or hash) is a result; EIO from open, fstat
// or read is a result with io_error; any other I/O error throws.
// on_bytes (may be empty) sees the bytes of this file hashed so far.
Check check_file(const Dir &dir, const std::string &name, int64_t size, const std::string &checksum, bool full,
                 const std::function<bool(int64_t)> &on_bytes = std::function<bool(int64_t)>());

// What verifying a checkpoint found, once the verification rule
// (Catalog::verify_entry) has been applied to the catalog.
struct Verdict {
    int code = 0;        // CKPTDB_OK, CKPTDB_ECORRUPT (a confirmed mismatch) or CKPTDB_EIO (unreadable)
    std::string reason;  // why not, for people ("" when it verifies)
};

// What Catalog::verify_all has done so far.
struct VerifyTotals {
    int64_t checked = 0, corrupt = 0, unreadable = 0;
};

// Rows are read in pages of this many by id, no transaction held between
// pages (Catalog::for_each_entry, for_each_event; the C ABI's cursor).
constexpr int kPageRows = 256;

// The one paging loop: page(after, limit) returns up to limit rows whose id
// is above after, in id order. fn sees each row and returns false to stop;
// false is returned when it did.
template <class Row, class Page, class Fn>
bool for_each_paged(const Page &page, const Fn &fn) {
    for (int64_t after = 0;;) {
        std::vector<Row> rows = page(after, kPageRows);
        for (Row &r : rows) {
            after = r.id;
            if (!fn(r)) return false;
        }
        if (rows.size() < static_cast<size_t>(kPageRows)) return true;
    }
}

int status_code(const std::string &text);
const char *status_text(int code);

class Catalog {
public:
    static std::shared_ptr<Catalog> open(const std::string &dir, const OpenOptions &opts);
    ~Catalog();

    const Dir &dir() const { return dir_; }
    bool readonly() const { return opts_.readonly; }
    const OpenOptions &options() const { return opts_; }
    // Names the library owns in the directory (catalog files, the reserve):
    // never a checkpoint name.
    bool reserved_name(const std::string &name) const;

    // Runs fn inside BEGIN IMMEDIATE ... COMMIT under the catalog mutex,
    // with the statement layer (store.hpp) lent for the transaction; events
    // logged by fn reach the callback only after the commit.
    void write(const std::function<void(Store &)> &fn);
    // Runs fn under the catalog mutex (reads; autocommit statements).
    void read(const std::function<void(Store &)> &fn);
    // Runs fn under the catalog mutex in one read transaction: every read
    // of fn sees the same snapshot.
    void read_snapshot(const std::function<void(Store &)> &fn);

    // Inside write(): the id of this process's run row, inserting it on first use.
    int64_t run_id_in_tx(Store &db);
    // How this process's run ends when the catalog closes, where it is not a
    // trainer's run (a sync writes copies, it does not train): overrides the
    // reason judged on close (clean, preempted, requeued).
    void set_exit_reason(const std::string &reason) { exit_reason_ = reason; }
    // Inside write(): appends an event row.
    void log_event(Store &db, int64_t checkpoint_id, const std::string &event, const std::string &detail);

    Entry entry(int64_t id);  // throws CKPTDB_ENOTFOUND
    std::optional<int64_t> id_by_name(const std::string &name);
    std::vector<FileRow> files(int64_t id);
    std::vector<Entry> entries_page(int64_t after_id, unsigned status_mask, const std::optional<std::string> &kind,
                                    int limit);
    // Every entry with a status in status_mask (0: any) and of kind (any
    // when empty), oldest id first, in pages of kPageRows; fn returns false
    // to stop, and then so does this.
    bool for_each_entry(unsigned status_mask, const std::optional<std::string> &kind,
                        const std::function<bool(Entry &)> &fn) {
        return for_each_paged<Entry>(
            [&](int64_t after, int limit) { return entries_page(after, status_mask, kind, limit); }, fn);
    }

    // Size (and with full, XXH3-128) of every file of e against the catalog.
    // Corruption is a result; other I/O errors (EACCES, EMFILE) throw.
    // on_bytes (may be empty) sees bytes hashed so far of all the files.
    Check check_files(const Entry &e, bool full,
                      const std::function<bool(int64_t)> &on_bytes = std::function<bool(int64_t)>());
    // complete -> corrupt, with an event; false if the row was not complete.
    bool mark_corrupt(int64_t id, const std::string &reason);
    // corrupt -> complete, with an event.
    bool restore(int64_t id);

    enum class Verify { full, size, none };
    // The verification rule, the one place that decides what a check does
    // to the catalog (docs/DESIGN.md "Which file owns which rule"): only a
    // complete or corrupt checkpoint can be verified (CKPTDB_EINVAL
    // otherwise); files that verify restore a corrupt one to complete (full
    // only); a confirmed mismatch marks a complete one corrupt (recorded
    // unless read-only); a read error (EIO) says nothing about the bytes and
    // changes nothing. how is full or size; e.status follows the row.
    Verdict verify_entry(Entry &e, Verify how,
                         const std::function<bool(int64_t)> &on_bytes = std::function<bool(int64_t)>());
    // Verifies checkpoint id in full: returns it as it now is, or throws
    // CKPTDB_ECORRUPT or CKPTDB_EIO with the reason. progress (may be
    // empty) sees the bytes hashed so far and the checkpoint's size, and
    // returns false to stop.
    Entry verify(int64_t id, const std::function<bool(int64_t done, int64_t total)> &progress =
                                 std::function<bool(int64_t, int64_t)>());
    // Verifies every complete checkpoint in full, oldest id first; fn (may
    // be empty) sees each with its verdict and returns false to stop.
    // totals counts as it goes (also when an error ends it).
    void verify_all(const std::function<bool(const Entry &, const Verdict &)> &fn, VerifyTotals &totals);
    // Newest complete checkpoint (of kind), verified unless verify == none;
    // one that fails verification (verify_entry) is skipped and the next one
    // tried; CKPTDB_EIO when none verifies and one could not be read.
    std::optional<Entry> latest(const std::optional<std::string> &kind, Verify verify);

    void mark_resumed(int64_t id);

    // Resolve saves left "writing" by dead processes, finish prunes a crash
    // interrupted, end the runs of dead processes as crashed, and remove
    // orphan temp files. Idempotent; safe to crash in.
    void recover();

    // --- history (history.cpp) ---
    std::vector<EventRow> events_page(int64_t after_id, int64_t run_id, int limit);
    std::vector<EventRow> events_of(int64_t checkpoint_id, int64_t run_id);
    // Every event of checkpoint_id (0: any) and of run_id (0: any), oldest
    // first (in pages of kPageRows for every checkpoint); fn returns false
    // to stop, and then so does this.
    bool for_each_event(int64_t checkpoint_id, int64_t run_id, const std::function<bool(const EventRow &)> &fn) {
        if (checkpoint_id) {
            for (const EventRow &e : events_of(checkpoint_id, run_id))
                if (!fn(e)) return false;
            return true;
        }
        return for_each_paged<EventRow>([&](int64_t after, int limit) { return events_page(after, run_id, limit); },
                                        fn);
    }
    std::vector<RunRow> runs();

    // --- checking and repair (fsck.cpp) ---
    std::vector<FsckItem> fsck(bool repair);
    // The whole check of a directory: a lost or unreadable catalog is
    // reported (and rebuilt by a repair); a check opens read-only, so that
    // not even recovery changes what it reports; a repair then repairs, and
    // each finding of the check carries what became of it (repaired, or
    // settled by the recovery of the read-write open).
    static FsckReport fsck_dir(const std::string &dir, const OpenOptions &opts, bool repair);
    // The bytes the catalog's files take, per kind and status: the rows of
    // the view disk_usage (sql/schema/0002_disk_usage.sql).
    std::vector<UsageRow> disk_usage();
    // A new catalog for dir from the files present; the old catalog moved aside.
    // Builds a catalog from the checkpoint files in dir (rebuild, below):
    // rebuild for a lost or unreadable catalog (moved aside), adopt for a
    // directory written without ckptdb (refused where a catalog exists).
    enum class Adoption { rebuild, adopt };
    // Checkpoint-looking files the catalog does not know, modified after its
    // newest commit: commits the catalog lost (its WAL, say), or files put
    // there behind its back. Reported on open (event "catalog_behind") and by
    // fsck ("newer_than_catalog"); never deleted.
    std::vector<std::string> newer_than_catalog();
    static int64_t rebuild(const std::string &dir, const OpenOptions &opts,
                           const std::function<void(const FsckItem &)> &report, Adoption how = Adoption::rebuild);
    // A consistent copy of the catalog into dest (SQLite's backup API).
    void backup_into(sqlite3 *dest);

    // --- retention (retention.cpp) ---
    void set_retention(std::optional<Retention> r);
    std::optional<Retention> retention();
    // Plans (and unless dry_run, carries out) a prune. extra_bytes is room to
    // make for a save about to begin; *fits tells whether the budget can be met.
    // When its catalog write fails for lack of space, a prune uses the
    // directory's reserve (ballast.hpp), except one for_save (make_room):
    // saves never do.
    std::vector<PruneItem> prune(const Retention &r, bool dry_run, int64_t extra_bytes = 0, bool *fits = nullptr,
                                 std::string *usage = nullptr, bool for_save = false);
    // Deletes one checkpoint at the user's word (the way Orbax's delete(step)
    // and Lightning's remove_checkpoint do): a complete or corrupt, unpinned
    // checkpoint is marked pruned with the rule "removed" and its event, then
    // its files are unlinked as a prune's are. Anything else is refused
    // (CKPTDB_EINVAL naming its status, or that it is pinned), changing
    // nothing. Returns what was removed.
    PruneItem remove(int64_t id);
    // Inside write(): plans a prune and marks its victims pruned (with their
    // events). Returns the victims; their files are not touched yet.
    std::vector<PruneItem> plan_and_mark(Store &db, const Retention &r, int64_t extra_bytes, bool dry_run, bool *fits,
                                         std::string *usage);
    // Inside the commit transaction of a save: rotation by the handle's
    // policy, in a savepoint so that a failing rotation never fails the
    // commit (it is reported as a "prune_failed" event instead).
    std::vector<int64_t> rotate_in_tx(Store &db);
    // Before a save of kind: with a byte budget, prune to make room for the
    // expected size or throw CKPTDB_ENOSPC (changing nothing).
    void make_room(const std::string &kind);
    // After a successful commit: unlink what the commit's rotation marked,
    // then move the last-link. Never throws.
    void after_commit(const std::string &kind, const std::vector<int64_t> &marked);
    // After a preempt checkpoint committed: with OpenOptions::requeue, asks
    // Slurm to requeue the job and logs how that went (slurm.cpp). Never throws.
    void requeue_after_preempt() noexcept;
    // Points the last-link at the newest complete checkpoint (link.cpp).
    // Never throws.
    void refresh_link();
    // The fixed name the last link is replaced through ("" without a link).
    std::string link_temp_name() const;
    // Keeps a checkpoint out of every prune, or lets it go again (pin.cpp).
    void pin(int64_t id, bool pinned);
    // This run's epoch and step, from which the steps a crash lost are
    // counted (progress.cpp).
    void run_progress(int64_t epoch, int64_t step);
    // Unlink the files of pruned rows whose deletion is pending. With
    // sync_now the directory is fsynced at once; otherwise the next
    // directory fsync of a save (or the close) makes the unlinks durable.
    // Either way the deletion time is recorded by a later write transaction.
    void finish_prunes(const std::vector<int64_t> &ids, bool sync_now = true);
    // A save just fsynced the directory: unlinks done before it are durable.
    void directory_synced();

private:
    Catalog(Dir dir, const OpenOptions &opts);
    void emit_pending();
    // Logs an event (no checkpoint) in a transaction of its own, for what
    // happens outside a write: a failure after a commit, the reserve, a
    // requeue. Never throws: where the catalog cannot take the row, the
    // event callback alone hears it.
    void log_event_noexcept(const std::string &event, const std::string &what) noexcept;
    // Runs mark (a transaction marking victims pruned), then unlinks their
    // files (retention.cpp).
    void delete_marked(const char *what, const std::function<void()> &mark, const std::vector<PruneItem> &victims,
                       bool for_save);

    Dir dir_;
    OpenOptions opts_;
    // Whether this handle's open had to delete the reserve to open the
    // catalog on a full disk; the prune or repair that follows puts it back.
    bool reserve_used_by_open_ = false;
    std::recursive_mutex mu_;
    std::unique_ptr<Db> db_;
    ProcIdentity self_;
    std::optional<Retention> retention_;
    bool committed_preempt_ = false;
    bool requeued_ = false;    // Slurm accepted the requeue: the run ends "requeued"
    std::string exit_reason_;  // set by the caller (sync: "synced"); else judged on close
    int64_t run_id_ = 0;
    int64_t pending_run_id_ = 0;
    struct Pending {
        std::string event;
        int64_t id;
        std::string detail;
    };
    std::vector<Pending> pending_;
    // Pruned checkpoints whose files are unlinked and the directory synced,
    // but whose deletion time is not recorded yet: it rides along with the
    // next write transaction (or the close) instead of costing a commit of
    // its own. Until then recovery would simply unlink them again.
    std::vector<int64_t> unlinked_;
    std::vector<int64_t> unlinked_unsynced_;  // unlinked, directory not fsynced since
    std::string rotate_error_;
    // Corrupt checkpoints a prune of corrupt ones confirmed by hashing them
    // again (confirm_corrupt), for the plan that follows under the same lock.
    std::set<int64_t> confirmed_corrupt_;
    void confirm_corrupt();
};

// The files of dir that look like checkpoints (regular files, no links,
// valid names, a checkpoint's extension: .pt .pth .ckpt .bin .safetensors
// .distcp; a regular last link too), other than the catalog's and the
// library's own: what a catalog must know before it may be started empty.
std::vector<std::string> checkpoint_looking_files(const Dir &dir, const OpenOptions &opts);

// The subdirectories of dir that look like directory checkpoints (valid
// names, opened without following links, holding a file with a
// checkpoint's extension or DCP's ".metadata" or ".metadata.json"), other
// than the library's temp directories; each as "name/". Also what a catalog
// must know before it may be started empty. The one rule (core/fsck.cpp)
// that rebuild and adopt apply too: they take in those that are flat.
std::vector<std::string> checkpoint_looking_dirs(const Dir &dir, const OpenOptions &opts);

// Keeps a catalog's files aside, never overwritten, before another file
// takes its name: the catalog as <catalog>.broken-<UTC> (a second link to
// it), its -wal, -shm and journal moved there (SQLite would pair them with
// the new file). Also for a -wal or journal whose catalog is gone.
void keep_catalog_aside(const Dir &dir, const std::string &catalog);

// Builds a whole catalog file under <catalog>.new-<hex>, held locked in
// `held` while the caller installs it: schema, then fill (may be empty) in
// one transaction, its WAL folded into the file. Returns the temp name; on
// failure nothing of it is left. Catalog creation and rebuild both use it.
std::string build_catalog_temp(const Dir &dir, const std::string &catalog, const DbOptions &dbo,
                               const std::function<void(Store &)> &fill, UniqueFd &held);
void remove_catalog_temp(const Dir &dir, const std::string &tmp);

// Removes what a catalog creation that a kill stopped left behind
// (<catalog>.new-<hex> and its -wal, -shm, -journal) once no creator holds it.
void remove_dead_creations(const Dir &dir, const std::string &catalog);

}  // namespace ckptdb
