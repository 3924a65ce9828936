// Reading the history: the event log and the runs, with the steps each run
// lost when it did not end cleanly.
#include <algorithm>

#include "catalog.hpp"
#include "ckptdb.h"
#include "error.hpp"

namespace ckptdb {

std::vector<EventRow> Catalog::events_page(int64_t after_id, int64_t run_id, int limit) {
    std::vector<EventRow> out;
    read([&](Store &db) { out = db.events_page(after_id, run_id, limit); });
    return out;
}

std::vector<EventRow> Catalog::events_of(int64_t checkpoint_id, int64_t run_id) {
    std::vector<EventRow> out;
    read([&](Store &db) { out = db.events_of_checkpoint(checkpoint_id, run_id); });
    return out;
}

std::vector<RunRow> Catalog::runs() {
    std::vector<RunRow> out;
    read([&](Store &db) { out = db.runs_all(); });
    for (RunRow &r : out)
        // Steps trained after the last save of a run that did not end
        // cleanly: lost, to be trained again by the run that resumed.
        if ((r.exit_reason == "crashed" || r.exit_reason == "preempted" || r.exit_reason == "requeued") &&
            r.last_step >= 0)
            r.steps_lost = std::max<int64_t>(0, r.last_step - std::max<int64_t>(0, r.last_saved_step));
    return out;
}

void Catalog::backup_into(sqlite3 *dest) {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    db_->backup_into(dest);
}

}  // namespace ckptdb
