// Run progress: the epoch and step a trainer reports on its run row, from
// which the history (history.cpp) counts the steps a crashed run lost.
#include <string>

#include "catalog.hpp"
#include "ckptdb.h"
#include "error.hpp"

namespace ckptdb {

void Catalog::run_progress(int64_t epoch, int64_t step) {
    if (epoch < 0 || step < 0)
        fail(CKPTDB_EINVAL,
             "progress must have epoch and step >= 0, got " + std::to_string(epoch) + ", " + std::to_string(step));
    write([&](Store &db) { db.run_progress(run_id_in_tx(db), epoch, step); });
}

}  // namespace ckptdb
