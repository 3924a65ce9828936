// The statement layer (docs/DESIGN.md, "Which file owns which rule"): every
// named statement of sql/statements.sql has one typed method here, named
// after it, and store.cpp is the only engine file that runs one (Db keeps
// its statements private to this class). The rest of the engine reaches the
// catalog through a Store that Catalog::write or Catalog::read lends for the
// length of a transaction or a read; it never sees the connection.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "db.hpp"
#include "fsio.hpp"
#include "retention.hpp"

namespace ckptdb {

// A checkpoint row (entry_by_id, entries_page).
struct Entry {
    int64_t id = 0;
    std::string name, path, kind;
    int64_t epoch = 0, step = 0, size = -1;
    std::string checksum;
    int status = 0;  // CKPTDB_STATUS_*
    bool pinned = false;
    int64_t run_id = 0, file_count = 0;
    std::string created_at, committed_at, deleted_at, metadata;
    int64_t commit_seq = 0;
    bool dir = false;       // layout 'dir': the checkpoint is the directory name/ of its files
    std::string temp_name;  // a directory save in flight: its temp directory
};

// A file row of a checkpoint (files_of).
struct FileRow {
    int64_t rank = 0;
    std::string name, temp_name;
    std::string dir;    // the checkpoint's directory, for a file of a directory checkpoint; else ""
    std::string path;   // dir/name (dir/<dir>/name); "" for a name that is not valid (never a path outside dir)
    int64_t size = -1;  // -1 until sealed
    std::string checksum;
};

// An event row (events_page, events_of_checkpoint).
struct EventRow {
    int64_t id = 0;
    std::string at;
    int64_t run_id = 0, checkpoint_id = 0;
    std::string event, detail;
};

// A run row as the history shows it (runs_all); steps_lost is the
// history's rule (history.cpp), not a column.
struct RunRow {
    int64_t id = 0;
    std::string host;
    int64_t pid = 0;
    std::string started_at, ended_at, exit_reason, slurm_job_id, slurm_array_job_id, slurm_array_task_id;
    int64_t slurm_restart_count = -1, resumed_from = 0, last_step = -1, last_saved_step = -1, saves = 0, steps_lost = 0;
};

// One row of the view disk_usage, the one definition of disk usage.
struct UsageRow {
    std::string kind;
    int status = 0;  // CKPTDB_STATUS_*
    int64_t checkpoints = 0, bytes = 0;
};

// A checkpoint row still "writing", with the run row that began it
// (writing_rows; the files are filled in by writer_rows, lease.hpp).
struct WriterRow {
    int64_t id = 0;
    bool has_run = false;    // no run row: nobody can own it
    bool run_ended = false;  // the run closed the catalog
    std::string host, boot_id;
    int64_t pid = 0, proc_start = 0;
    double begun_unix = 0;  // the row's created_at, Unix seconds
    std::string temp_dir;   // a directory save's temp directory; else ""
    std::vector<FileRow> files;
};

// This process's run row, as run_insert records it.
struct NewRun {
    std::string host, boot_id;
    int64_t pid = 0, proc_start = 0;
    std::optional<std::string> slurm_job_id, slurm_array_job_id, slurm_array_task_id;
    std::optional<int64_t> slurm_restart_count, slurm_procid;
};

// A run not ended (open_runs), with what tells whether its process lives.
struct OpenRun {
    int64_t id = 0;
    std::string host, boot_id;
    int64_t pid = 0, proc_start = 0;
};

// A file name some checkpoint's files use (file_names_known).
struct KnownFile {
    std::string name;
    int64_t checkpoint_id = 0;
    std::string status, deleted_at;  // deleted_at "" while not recorded
};

// A checkpoint a sync compares, with its files (sync_rows).
struct SyncRow {
    int64_t id = 0, seq = 0, epoch = 0, step = 0, run = 0;
    std::string status, kind, metadata, created_at, committed_at, prune_rule, deleted_at;
    bool pinned = false;
    bool dir = false;  // a directory checkpoint (its files' names are inside name/)
    std::string name;
    std::vector<FileRow> files;  // by rank
};

// A run of a sync's source, carried with the checkpoints it saved: every
// column but its id and resumed_from, as SQLite gives them (NULL stays
// NULL), in the order of sync_runs (sql/statements.sql).
struct CarriedRun {
    static constexpr int kCols = 15;
    int64_t id = 0, resumed_from = 0;
    std::vector<std::optional<std::string>> cols;
};

// A checkpoint a rebuild or an adopt takes in (checkpoint_insert_adopted).
struct AdoptedRow {
    std::string name, kind;
    int64_t epoch = 0, step = 0, size = 0;
    std::string checksum;  // "" for several files (each has its own)
    std::string status, created_at, metadata;
    int64_t commit_seq = 0;
    std::string layout = "file";  // "dir": the directory `name/` (its files' rows name them inside it)
};

class Store {
public:
    // dir: the catalog's directory, from which an entry's path is made.
    Store(Db &db, const Dir &dir) : db_(db), dir_(dir) {}
    Store(const Store &) = delete;
    Store &operator=(const Store &) = delete;

    // --- runs ---
    int64_t run_insert(const NewRun &r);
    void run_end(int64_t run, const std::string &reason);
    void run_set_resumed(int64_t run, int64_t checkpoint_id);
    void run_progress(int64_t run, int64_t epoch, int64_t step);
    std::vector<OpenRun> open_runs();
    // The run of a dead process ends "crashed"; false if it had ended.
    bool run_crashed(int64_t run);
    std::vector<RunRow> runs_all();

    // --- events --- (run 0 and checkpoint_id 0 are recorded as NULL)
    void event_insert(int64_t run, int64_t checkpoint_id, const std::string &event, const std::string &detail);
    std::vector<EventRow> events_page(int64_t after_id, int64_t run, int limit);
    std::vector<EventRow> events_of_checkpoint(int64_t checkpoint_id, int64_t run);

    // --- the save protocol (commit.cpp) ---
    // Whether a live checkpoint (writing, complete, corrupt) uses name.
    bool name_taken(const std::string &name);
    // temp_dir: a directory save's temp directory (layout 'dir'); empty for files.
    int64_t checkpoint_insert(const std::string &name, const std::string &kind, int64_t epoch, int64_t step,
                              int64_t run, const std::string &metadata, const std::string &temp_dir = {});
    void file_insert(int64_t id, int64_t rank, const std::string &name, const std::string &temp_name);
    void file_seal(int64_t id, int64_t rank, int64_t size, const std::string &checksum);
    // false unless the row was still writing. checksum "": several files.
    bool checkpoint_seal(int64_t id, int64_t size, const std::string &checksum);
    // writing -> complete, with the next commit_seq; false unless it was writing.
    bool checkpoint_complete(int64_t id);
    // Replaces the row's metadata (normalised by the caller).
    void checkpoint_set_metadata(int64_t id, const std::string &metadata);
    void files_clear_temp(int64_t id);
    // writing -> aborted; false unless it was writing.
    bool checkpoint_abort(int64_t id);
    std::string status_of(int64_t id);  // "" for no such row

    // --- reading checkpoints ---
    std::optional<Entry> entry_by_id(int64_t id);
    std::optional<int64_t> entry_by_name(const std::string &name);  // the newest row of that name
    std::vector<FileRow> files_of(int64_t id);
    // status_mask: bit 1 << CKPTDB_STATUS_*, 0 for all; kind: any when empty.
    std::vector<Entry> entries_page(int64_t after_id, unsigned status_mask, const std::optional<std::string> &kind,
                                    int limit);
    // The id of the newest complete checkpoint (of kind) committed before
    // commit_seq below; 0 for none.
    int64_t latest(const std::optional<std::string> &kind, int64_t below);
    std::string newest_complete_name();  // "" for none
    std::vector<WriterRow> writing_rows();
    std::vector<std::string> writing_temp_names();
    std::vector<UsageRow> disk_usage();

    // --- verification ---
    bool checkpoint_mark_corrupt(int64_t id);  // complete -> corrupt; false otherwise
    bool checkpoint_restore(int64_t id);       // corrupt -> complete; false otherwise

    // --- retention ---
    // false when the row cannot be (un)pinned (not writing, complete or corrupt).
    bool checkpoint_pin(int64_t id, bool pinned);
    std::optional<int64_t> last_size_of_kind(const std::string &kind);
    // Every complete checkpoint with its verdict under r, and every corrupt
    // one (rule "protected:<why>", "kept:<rule>" or "victim:<rule>"), by id;
    // others_bytes: bytes used or wanted outside complete checkpoints.
    std::vector<PruneItem> prune_plan(const Retention &r, int64_t others_bytes);
    // complete or corrupt, unpinned -> pruned by rule; false otherwise.
    bool checkpoint_prune(int64_t id, const std::string &rule);
    std::vector<int64_t> prune_pending();
    bool prune_is_pending(int64_t id);
    void prune_done(int64_t id);
    // Runs fn in a savepoint: when fn throws, what it changed is rolled back
    // and its message returned; "" when it succeeded.
    std::string in_savepoint(const std::function<void()> &fn);

    // --- fsck, rebuild and adopt ---
    std::vector<KnownFile> file_names_known();
    bool file_name_known(const std::string &name);
    double newest_commit_unix();  // 0 for none
    int64_t checkpoint_insert_adopted(const AdoptedRow &r);
    void file_insert_sealed(int64_t id, int64_t rank, const std::string &name, int64_t size,
                            const std::string &checksum);

    // --- sync ---
    std::vector<SyncRow> sync_rows();
    std::map<int64_t, CarriedRun> sync_runs();
    // The same run in this catalog, if it has it (not the run not_run); 0 for none.
    int64_t run_find_identity(const CarriedRun &r, int64_t not_run);
    void run_update_end(int64_t run, const CarriedRun &r);
    int64_t run_insert_copy(const CarriedRun &r);
    void checkpoint_set_run(int64_t id, int64_t run);
    void run_set_resumed_if_unknown(int64_t run, int64_t checkpoint_id);
    void sync_adjust(int64_t id, const std::string &created_at, const std::string &committed_at, bool pinned);
    int64_t max_commit_seq();
    void set_commit_seq(int64_t id, int64_t seq);

private:
    Db &db_;
    const Dir &dir_;
};

}  // namespace ckptdb
