// Copying a checkpoint directory to shared storage: the files first, each
// verified, then a consistent snapshot of the catalog.
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
    int64_t copied = 0, bytes = 0, failed = 0;
};

SyncResult sync_dirs(const std::string &src, const std::string &dst, const SyncOptions &opts);

}  // namespace ckptdb
