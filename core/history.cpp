// Reading the history: the event log and the runs, with the steps each run
// lost when it did not end cleanly.
#include <algorithm>

#include "catalog.hpp"
#include "ckptdb.h"
#include "error.hpp"

namespace ckptdb {

static EventRow event_from(const Db::Query &q) {
    return EventRow{q.i64(0), q.text(1), q.i64(2), q.i64(3), q.text(4), q.text(5)};
}

std::vector<EventRow> Catalog::events_page(int64_t after_id, int64_t run_id, int limit) {
    std::vector<EventRow> out;
    read([&](Db &db) {
        Db::Query q(db, sql::Stmt::events_page);
        q.bind(1, after_id).bind(2, run_id).bind(3, static_cast<int64_t>(limit));
        while (q.step()) out.push_back(event_from(q));
    });
    return out;
}

std::vector<EventRow> Catalog::events_of(int64_t checkpoint_id, int64_t run_id) {
    std::vector<EventRow> out;
    read([&](Db &db) {
        Db::Query q(db, sql::Stmt::events_of_checkpoint);
        q.bind(1, checkpoint_id).bind(2, run_id);
        while (q.step()) out.push_back(event_from(q));
    });
    return out;
}

std::vector<RunRow> Catalog::runs() {
    std::vector<RunRow> out;
    read([&](Db &db) {
        Db::Query q(db, sql::Stmt::runs_all);
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
            // Steps trained after the last save of a run that did not end
            // cleanly: lost, to be trained again by the run that resumed.
            if ((r.exit_reason == "crashed" || r.exit_reason == "preempted" || r.exit_reason == "requeued") &&
                r.last_step >= 0)
                r.steps_lost = std::max<int64_t>(0, r.last_step - std::max<int64_t>(0, r.last_saved_step));
            out.push_back(std::move(r));
        }
    });
    return out;
}

void Catalog::backup_into(sqlite3 *dest) {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    sqlite3_backup *b = sqlite3_backup_init(dest, "main", db_->handle(), "main");
    if (!b) fail(CKPTDB_EDB, std::string("cannot snapshot the catalog: ") + sqlite3_errmsg(dest));
    int rc = sqlite3_backup_step(b, -1);  // one step: a single consistent read transaction
    sqlite3_backup_finish(b);
    if (rc != SQLITE_DONE) db_->fail_sqlite(rc, "cannot snapshot the catalog");
}

}  // namespace ckptdb
