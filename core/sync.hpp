// Copying a checkpoint directory to shared storage: every complete
// checkpoint the destination lacks, each verified and committed into the
// destination's own catalog (sync.cpp says what it never does).
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "catalog.hpp"

namespace ckptdb {

struct SyncOptions {
    bool delete_pruned = false;
    std::function<bool(int64_t done, int64_t total)> progress;  // false stops
    std::function<void(const FsckItem &)> on_item;
    std::string catalog_name = "ckptdb.sqlite";
    std::string last_link = "last.pt";
};

struct SyncResult {
    int64_t copied = 0, bytes = 0;
    int64_t failed = 0;      // the source's bytes did not match its catalog (or could not be read)
    int64_t left_alone = 0;  // the destination holds something else under the name, or the row is invalid
    int64_t skipped = 0;     // the source pruned it while the sync ran
};

SyncResult sync_dirs(const std::string &src, const std::string &dst, const SyncOptions &opts);

}  // namespace ckptdb
