// The statement layer: each method binds its named statement's parameters
// (sql/statements.sql; every value bound, never spliced) and reads its
// columns into rows. No rule of the engine lives here, only the mapping.
#include "store.hpp"

#include "catalog.hpp"
#include "names.hpp"

namespace ckptdb {

using Q = Db::Query;
using sql::Stmt;

namespace {

Q &bind_id_or_null(Q &q, int idx, int64_t v) { return v ? q.bind(idx, v) : q.bind_null(idx); }

Q &bind_opt(Q &q, int idx, const std::optional<std::string> &v) { return v ? q.bind(idx, *v) : q.bind_null(idx); }

Q &bind_opt(Q &q, int idx, const std::optional<int64_t> &v) { return v ? q.bind(idx, *v) : q.bind_null(idx); }

// A tampered row must not turn into a path outside the directory.
std::string path_of(const std::string &name, const Dir &dir) {
    return name_problem(name).empty() ? dir.join(name) : std::string();
}

// A file of a directory checkpoint: both names single and valid.
std::string inner_path_of(const std::string &dir_name, const std::string &name, const Dir &dir) {
    return name_problem(dir_name).empty() && name_problem(name).empty() ? dir.join(dir_name + "/" + name)
                                                                        : std::string();
}

Entry entry_from(const Q &q, const Dir &dir) {
    Entry e;
    e.id = q.i64(0);
    e.name = q.text(1);
    e.path = path_of(e.name, dir);
    e.kind = q.text(2);
    e.epoch = q.i64(3);
    e.step = q.i64(4);
    e.size = q.is_null(5) ? -1 : q.i64(5);
    e.checksum = q.text(6);
    e.status = status_code(q.text(7));
    e.pinned = q.i64(8) != 0;
    e.run_id = q.is_null(9) ? 0 : q.i64(9);
    e.file_count = q.i64(10);
    e.created_at = q.text(11);
    e.committed_at = q.text(12);
    e.deleted_at = q.text(13);
    e.metadata = q.text(14);
    e.commit_seq = q.is_null(15) ? 0 : q.i64(15);
    e.dir = q.text(16) == "dir";
    e.temp_name = q.text(17);
    return e;
}

EventRow event_from(const Q &q) { return EventRow{q.i64(0), q.text(1), q.i64(2), q.i64(3), q.text(4), q.text(5)}; }

}  // namespace

// --- runs ---

int64_t Store::run_insert(const NewRun &r) {
    Q q(db_, Stmt::run_insert);
    q.bind(1, r.host).bind(2, r.boot_id).bind(3, r.pid).bind(4, r.proc_start);
    bind_opt(q, 5, r.slurm_job_id);
    bind_opt(q, 6, r.slurm_array_job_id);
    bind_opt(q, 7, r.slurm_array_task_id);
    bind_opt(q, 8, r.slurm_restart_count);
    bind_opt(q, 9, r.slurm_procid);
    q.run();
    return db_.last_insert_rowid();
}

void Store::run_end(int64_t run, const std::string &reason) {
    Q(db_, Stmt::run_end).bind(1, run).bind(2, reason).run();
}

void Store::run_set_resumed(int64_t run, int64_t checkpoint_id) {
    Q(db_, Stmt::run_set_resumed).bind(1, run).bind(2, checkpoint_id).run();
}

void Store::run_progress(int64_t run, int64_t epoch, int64_t step) {
    Q(db_, Stmt::run_progress).bind(1, run).bind(2, epoch).bind(3, step).run();
}

std::vector<OpenRun> Store::open_runs() {
    std::vector<OpenRun> out;
    Q q(db_, Stmt::open_runs);
    while (q.step()) out.push_back({q.i64(0), q.text(1), q.text(2), q.i64(3), q.i64(4)});
    return out;
}

bool Store::run_crashed(int64_t run) {
    Q(db_, Stmt::run_crashed).bind(1, run).run();
    return db_.changes() == 1;
}

std::vector<RunRow> Store::runs_all() {
    std::vector<RunRow> out;
    Q q(db_, Stmt::runs_all);
    while (q.step()) {
        RunRow r;
        r.id = q.i64(0);
        r.host = q.text(1);
        r.pid = q.i64(2);
        r.started_at = q.text(3);
        r.ended_at = q.text(4);
        r.exit_reason = q.text(5);
        r.slurm_job_id = q.text(6);
        r.slurm_array_job_id = q.text(7);
        r.slurm_array_task_id = q.text(8);
        r.slurm_restart_count = q.i64(9);
        r.resumed_from = q.i64(10);
        r.last_step = q.i64(11);
        r.last_saved_step = q.i64(12);
        r.saves = q.i64(13);
        out.push_back(std::move(r));
    }
    return out;
}

// --- events ---

void Store::event_insert(int64_t run, int64_t checkpoint_id, const std::string &event, const std::string &detail) {
    Q q(db_, Stmt::event_insert);
    bind_id_or_null(q, 1, run);
    bind_id_or_null(q, 2, checkpoint_id);
    q.bind(3, event).bind(4, detail).run();
}

std::vector<EventRow> Store::events_page(int64_t after_id, int64_t run, int limit) {
    std::vector<EventRow> out;
    Q q(db_, Stmt::events_page);
    q.bind(1, after_id).bind(2, run).bind(3, static_cast<int64_t>(limit));
    while (q.step()) out.push_back(event_from(q));
    return out;
}

std::vector<EventRow> Store::events_of_checkpoint(int64_t checkpoint_id, int64_t run) {
    std::vector<EventRow> out;
    Q q(db_, Stmt::events_of_checkpoint);
    q.bind(1, checkpoint_id).bind(2, run);
    while (q.step()) out.push_back(event_from(q));
    return out;
}

// --- the save protocol ---

bool Store::name_taken(const std::string &name) {
    Q q(db_, Stmt::name_taken);
    q.bind(1, name);
    return q.step();
}

int64_t Store::checkpoint_insert(const std::string &name, const std::string &kind, int64_t epoch, int64_t step,
                                 int64_t run, const std::string &metadata, const std::string &temp_dir) {
    Q q(db_, Stmt::checkpoint_insert);
    q.bind(1, name).bind(2, kind).bind(3, epoch).bind(4, step).bind(5, run).bind(6, metadata);
    q.bind(7, std::string(temp_dir.empty() ? "file" : "dir"));
    if (temp_dir.empty())
        q.bind_null(8);
    else
        q.bind(8, temp_dir);
    q.run();
    return db_.last_insert_rowid();
}

void Store::checkpoint_set_metadata(int64_t id, const std::string &metadata) {
    Q(db_, Stmt::checkpoint_set_metadata).bind(1, id).bind(2, metadata).run();
}

void Store::file_insert(int64_t id, int64_t rank, const std::string &name, const std::string &temp_name) {
    Q(db_, Stmt::file_insert).bind(1, id).bind(2, rank).bind(3, name).bind(4, temp_name).run();
}

void Store::file_seal(int64_t id, int64_t rank, int64_t size, const std::string &checksum) {
    Q(db_, Stmt::file_seal).bind(1, id).bind(2, rank).bind(3, size).bind(4, checksum).run();
}

bool Store::checkpoint_seal(int64_t id, int64_t size, const std::string &checksum) {
    Q q(db_, Stmt::checkpoint_seal);
    q.bind(1, id).bind(2, size);
    if (checksum.empty())
        q.bind_null(3);
    else
        q.bind(3, checksum);
    q.run();
    return db_.changes() == 1;
}

bool Store::checkpoint_complete(int64_t id) {
    Q(db_, Stmt::checkpoint_complete).bind(1, id).run();
    return db_.changes() == 1;
}

void Store::files_clear_temp(int64_t id) { Q(db_, Stmt::files_clear_temp).bind(1, id).run(); }

bool Store::checkpoint_abort(int64_t id) {
    Q(db_, Stmt::checkpoint_abort).bind(1, id).run();
    return db_.changes() == 1;
}

std::string Store::status_of(int64_t id) {
    Q q(db_, Stmt::status_of);
    q.bind(1, id);
    return q.step() ? q.text(0) : std::string();
}

// --- reading checkpoints ---

std::optional<Entry> Store::entry_by_id(int64_t id) {
    Q q(db_, Stmt::entry_by_id);
    q.bind(1, id);
    if (!q.step()) return std::nullopt;
    return entry_from(q, dir_);
}

std::optional<int64_t> Store::entry_by_name(const std::string &name) {
    Q q(db_, Stmt::entry_by_name);
    q.bind(1, name);
    if (!q.step()) return std::nullopt;
    return q.i64(0);
}

std::vector<FileRow> Store::files_of(int64_t id) {
    std::vector<FileRow> out;
    Q q(db_, Stmt::files_of);
    q.bind(1, id);
    while (q.step()) {
        FileRow f;
        f.rank = q.i64(0);
        f.name = q.text(1);
        f.dir = q.text(5);
        f.path = f.dir.empty() ? path_of(f.name, dir_) : inner_path_of(f.dir, f.name, dir_);
        f.temp_name = q.text(2);
        f.size = q.is_null(3) ? -1 : q.i64(3);
        f.checksum = q.text(4);
        out.push_back(std::move(f));
    }
    return out;
}

std::vector<Entry> Store::entries_page(int64_t after_id, unsigned status_mask, const std::optional<std::string> &kind,
                                       int limit) {
    std::vector<Entry> out;
    Q q(db_, Stmt::entries_page);
    q.bind(1, after_id).bind(2, static_cast<int64_t>(status_mask));
    bind_opt(q, 3, kind);
    q.bind(4, static_cast<int64_t>(limit));
    while (q.step()) out.push_back(entry_from(q, dir_));
    return out;
}

int64_t Store::latest(const std::optional<std::string> &kind, int64_t below) {
    Q q(db_, kind ? Stmt::latest_kind : Stmt::latest_any);
    q.bind(1, below);
    if (kind) q.bind(2, *kind);
    return q.step() ? q.i64(0) : 0;
}

std::string Store::newest_complete_name() {
    Q q(db_, Stmt::newest_complete_name);
    return q.step() ? q.text(0) : std::string();
}

std::vector<WriterRow> Store::writing_rows() {
    std::vector<WriterRow> rows;
    Q q(db_, Stmt::writing_rows);
    while (q.step()) {
        WriterRow w;
        w.id = q.i64(0);
        w.has_run = q.i64(1) != 0;
        w.run_ended = q.i64(2) != 0;
        w.host = q.text(3);
        w.boot_id = q.text(4);
        w.pid = q.i64(5);
        w.proc_start = q.i64(6);
        w.begun_unix = q.f64(7);
        w.temp_dir = q.text(8);
        rows.push_back(std::move(w));
    }
    return rows;
}

std::vector<std::string> Store::writing_temp_names() {
    std::vector<std::string> out;
    Q q(db_, Stmt::writing_temp_names);
    while (q.step()) out.push_back(q.text(0));
    return out;
}

std::vector<UsageRow> Store::disk_usage() {
    std::vector<UsageRow> out;
    Q q(db_, Stmt::disk_usage);
    while (q.step()) out.push_back({q.text(0), status_code(q.text(1)), q.i64(2), q.i64(3)});
    return out;
}

// --- verification ---

bool Store::checkpoint_mark_corrupt(int64_t id) {
    Q(db_, Stmt::checkpoint_mark_corrupt).bind(1, id).run();
    return db_.changes() == 1;
}

bool Store::checkpoint_restore(int64_t id) {
    Q(db_, Stmt::checkpoint_restore).bind(1, id).run();
    return db_.changes() == 1;
}

// --- retention ---

bool Store::checkpoint_pin(int64_t id, bool pinned) {
    Q(db_, Stmt::checkpoint_pin).bind(1, id).bind(2, static_cast<int64_t>(pinned ? 1 : 0)).run();
    return db_.changes() == 1;
}

std::optional<int64_t> Store::last_size_of_kind(const std::string &kind) {
    Q q(db_, Stmt::last_size_of_kind);
    q.bind(1, kind).bind(2, INT64_MAX);
    if (!q.step() || q.is_null(0)) return std::nullopt;
    return q.i64(0);
}

std::vector<PruneItem> Store::prune_plan(const Retention &r, int64_t others_bytes) {
    std::vector<PruneItem> out;
    Q q(db_, Stmt::prune_plan);
    q.bind(1, r.keep_last_json()).bind(2, static_cast<int64_t>(r.keep_last_default));
    q.bind(3, r.keep_every_n_epochs).bind(4, r.keep_interval_seconds);
    bind_opt(q, 5, r.metric_path());
    q.bind(6, static_cast<int64_t>(r.best_max ? 1 : 0));
    q.bind(7, static_cast<int64_t>(r.best_k)).bind(8, r.max_bytes).bind(9, others_bytes);
    q.bind(10, static_cast<int64_t>(r.prune_corrupt ? 1 : 0));
    while (q.step()) out.push_back(PruneItem{q.i64(0), q.text(1), q.i64(2), q.text(3)});
    return out;
}

bool Store::checkpoint_prune(int64_t id, const std::string &rule) {
    Q(db_, Stmt::checkpoint_prune).bind(1, id).bind(2, rule).run();
    return db_.changes() == 1;
}

std::vector<int64_t> Store::prune_pending() {
    std::vector<int64_t> out;
    Q q(db_, Stmt::prune_pending);
    while (q.step()) out.push_back(q.i64(0));
    return out;
}

bool Store::prune_is_pending(int64_t id) {
    Q q(db_, Stmt::prune_is_pending);
    q.bind(1, id);
    return q.step();
}

void Store::prune_done(int64_t id) { Q(db_, Stmt::prune_done).bind(1, id).run(); }

std::string Store::in_savepoint(const std::function<void()> &fn) {
    db_.exec("SAVEPOINT store");
    try {
        fn();
        db_.exec("RELEASE store");
        return std::string();
    } catch (const std::exception &e) {
        std::string why = e.what();
        // Where this throws too, the transaction itself is broken: the
        // caller's transaction fails as a whole.
        db_.exec("ROLLBACK TO store");
        db_.exec("RELEASE store");
        return why;
    }
}

// --- fsck, rebuild and adopt ---

std::vector<KnownFile> Store::file_names_known() {
    std::vector<KnownFile> out;
    Q q(db_, Stmt::file_names_known);
    while (q.step()) out.push_back({q.text(0), q.i64(1), q.text(2), q.text(3)});
    return out;
}

bool Store::file_name_known(const std::string &name) {
    Q q(db_, Stmt::file_name_known);
    q.bind(1, name);
    return q.step();
}

double Store::newest_commit_unix() {
    Q q(db_, Stmt::newest_commit_unix);
    return q.step() ? q.f64(0) : 0;
}

int64_t Store::checkpoint_insert_adopted(const AdoptedRow &r) {
    Q q(db_, Stmt::checkpoint_insert_adopted);
    q.bind(1, r.name).bind(2, r.kind).bind(3, r.epoch).bind(4, r.step).bind(5, r.size);
    if (r.checksum.empty())
        q.bind_null(6);
    else
        q.bind(6, r.checksum);
    q.bind(7, r.status).bind(8, r.created_at).bind(9, r.metadata).bind(10, r.commit_seq).bind(11, r.layout).run();
    return db_.last_insert_rowid();
}

void Store::file_insert_sealed(int64_t id, int64_t rank, const std::string &name, int64_t size,
                               const std::string &checksum) {
    Q(db_, Stmt::file_insert_sealed).bind(1, id).bind(2, rank).bind(3, name).bind(4, size).bind(5, checksum).run();
}

// --- sync ---

std::vector<SyncRow> Store::sync_rows() {
    std::vector<SyncRow> out;
    Q q(db_, Stmt::sync_rows);
    while (q.step()) {
        int64_t id = q.i64(0);
        if (out.empty() || out.back().id != id) {
            SyncRow r;
            r.id = id;
            r.status = q.text(1);
            r.seq = q.i64(2);
            r.kind = q.text(3);
            r.epoch = q.i64(4);
            r.step = q.i64(5);
            r.metadata = q.text(6);
            r.created_at = q.text(7);
            r.committed_at = q.text(8);
            r.pinned = q.i64(9) != 0;
            r.prune_rule = q.text(10);
            r.deleted_at = q.text(11);
            r.run = q.i64(16);
            r.dir = q.i64(17) != 0;
            r.name = q.text(18);
            out.push_back(std::move(r));
        }
        FileRow f;
        f.rank = q.i64(12);
        f.name = q.text(13);
        f.size = q.i64(14);
        f.checksum = q.text(15);
        out.back().files.push_back(std::move(f));
    }
    return out;
}

std::map<int64_t, CarriedRun> Store::sync_runs() {
    std::map<int64_t, CarriedRun> out;
    Q q(db_, Stmt::sync_runs);
    while (q.step()) {
        CarriedRun r;
        for (int i = 0; i < CarriedRun::kCols; i++)
            r.cols.push_back(q.is_null(i) ? std::nullopt : std::optional<std::string>(q.text(i)));
        r.id = q.i64(CarriedRun::kCols);
        r.resumed_from = q.i64(CarriedRun::kCols + 1);
        out[r.id] = std::move(r);
    }
    return out;
}

int64_t Store::run_find_identity(const CarriedRun &r, int64_t not_run) {
    Q q(db_, Stmt::run_find_identity);
    // host, boot_id, pid, proc_start, started_at: the first five columns
    for (int i = 0; i < 5; i++) bind_opt(q, i + 1, r.cols[i]);
    q.bind(6, not_run);
    return q.step() ? q.i64(0) : 0;
}

void Store::run_update_end(int64_t run, const CarriedRun &r) {
    Q q(db_, Stmt::run_update_end);
    q.bind(1, run);
    int at = 2;
    // columns: 5 ended_at, 14 exit_reason, 11 last_epoch, 12 last_step, 13 progress_at
    for (int i : {5, 14, 11, 12, 13}) bind_opt(q, at++, r.cols[i]);
    q.run();
}

int64_t Store::run_insert_copy(const CarriedRun &r) {
    Q q(db_, Stmt::run_insert_copy);
    for (int i = 0; i < CarriedRun::kCols; i++) bind_opt(q, i + 1, r.cols[i]);
    q.run();
    return db_.last_insert_rowid();
}

void Store::checkpoint_set_run(int64_t id, int64_t run) {
    Q(db_, Stmt::checkpoint_set_run).bind(1, id).bind(2, run).run();
}

void Store::run_set_resumed_if_unknown(int64_t run, int64_t checkpoint_id) {
    Q(db_, Stmt::run_set_resumed_if_unknown).bind(1, run).bind(2, checkpoint_id).run();
}

void Store::sync_adjust(int64_t id, const std::string &created_at, const std::string &committed_at, bool pinned) {
    Q(db_, Stmt::sync_adjust)
        .bind(1, id)
        .bind(2, created_at)
        .bind(3, committed_at)
        .bind(4, static_cast<int64_t>(pinned ? 1 : 0))
        .run();
}

int64_t Store::max_commit_seq() {
    Q q(db_, Stmt::max_commit_seq);
    return q.step() ? q.i64(0) : 0;
}

void Store::set_commit_seq(int64_t id, int64_t seq) { Q(db_, Stmt::set_commit_seq).bind(1, id).bind(2, seq).run(); }

}  // namespace ckptdb
