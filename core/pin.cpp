// Pins: a pinned checkpoint is kept out of every prune (the prune plan
// protects it) until it is unpinned.
#include <string>

#include "catalog.hpp"
#include "ckptdb.h"
#include "error.hpp"

namespace ckptdb {

void Catalog::pin(int64_t id, bool pinned) {
    Entry e = entry(id);
    write([&](Store &db) {
        if (!db.checkpoint_pin(id, pinned))
            fail(CKPTDB_EINVAL, "checkpoint " + std::to_string(id) + " is " + status_text(e.status) +
                                    " and cannot be " + (pinned ? "pinned" : "unpinned"));
        run_id_in_tx(db);
        log_event(db, id, pinned ? "pinned" : "unpinned", e.name);
    });
}

}  // namespace ckptdb
