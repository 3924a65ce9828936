// Retention policies as data: what a prune keeps, what it protects, and the
// byte budget. The victims themselves are chosen by one SQL query
// (sql/statements.sql: prune_plan).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace ckptdb {

struct Retention {
    std::map<std::string, int> keep_last;  // kind -> K (-1: all)
    int keep_last_default = -1;            // kinds not listed
    int64_t keep_every_n_epochs = 0;
    int64_t keep_interval_seconds = 0;
    std::optional<std::string> best_metric;
    bool best_max = false;
    int best_k = 1;
    int64_t max_bytes = 0;
    // Delete corrupt checkpoints too, each confirmed by hashing it again
    // (Catalog::prune only; rotation never deletes a corrupt checkpoint).
    bool prune_corrupt = false;

    // The seed's defaults: last 5 epoch, 3 time; preempt and manual only
    // until a newer complete checkpoint exists; every other kind kept.
    static Retention defaults();

    // Throws CKPTDB_EINVAL naming the field for negative, contradictory or
    // malformed values.
    void validate() const;

    std::string keep_last_json() const;              // {"epoch":5,...}
    std::optional<std::string> metric_path() const;  // $."val"."loss"
};

struct PruneItem {
    int64_t id = 0;
    std::string name;
    int64_t size = 0;
    std::string rule;
};

// The bytes a prune of items frees (their sizes, summed).
int64_t total_size(const std::vector<PruneItem> &items);

}  // namespace ckptdb
