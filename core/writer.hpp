// The durable writer: one save, from the "writing" row to the committed
// checkpoint, crash-safe at every instant (docs/DESIGN.md, "Save protocol").
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "catalog.hpp"
#include "fsio.hpp"
#include "hash.hpp"

namespace ckptdb {

// The metadata as stored: "{}" when none, else a JSON object (re-serialised);
// anything else fails with CKPTDB_EINVAL.
// Limits on a save's metadata (CKPTDB_EINVAL beyond them): its size in bytes
// and how deeply its objects and arrays nest.
constexpr size_t kMaxMetadataBytes = 1 << 20;
constexpr size_t kMaxMetadataDepth = 64;

std::string normalized_metadata(const std::optional<std::string> &metadata);

class Save {
public:
    // Validates everything before touching the disk; then records the intent
    // and creates the temp file.
    static std::unique_ptr<Save> begin(std::shared_ptr<Catalog> cat, const std::string &kind, int64_t epoch,
                                       int64_t step, const std::optional<std::string> &name,
                                       const std::optional<std::string> &metadata);
    ~Save();

    void write(const void *data, size_t len);
    const std::string &temp_path();  // the caller writes the file itself
    int fd();                        // ... or through our descriptor
    Entry commit();
    void abort();

    int64_t id() const { return id_; }
    const std::string &name() const { return name_; }

private:
    enum class State { streaming, external, committed, aborted, failed };
    Save(std::shared_ptr<Catalog> cat) : cat_(std::move(cat)) {}
    void check_usable(const char *what);
    // Removes what exists of the save and marks its row aborted; never throws.
    void cleanup(const std::string &why, bool renamed);

    std::shared_ptr<Catalog> cat_;
    State state_ = State::streaming;
    int64_t id_ = 0;
    std::string kind_, name_, temp_, temp_path_;
    UniqueFd fd_;
    Hasher hash_;
    int64_t size_ = 0;
    int64_t flushed_ = 0;  // bytes handed to writeback with sync_file_range
    int64_t renewed_ = 0;  // when the lease was last renewed (lease.hpp: renew_lease)
    int err_code_ = 0;
    std::string err_msg_;
};

// Reads one file of a complete checkpoint (rank 0 unless given) and checks
// size and checksum at the end.
class Reader {
public:
    Reader(std::shared_ptr<Catalog> cat, int64_t id, int64_t rank = 0);
    size_t read(void *buf, size_t cap);  // 0 at the end, after the check passed

private:
    std::shared_ptr<Catalog> cat_;
    int64_t id_;
    std::string path_, want_sum_;
    int64_t want_size_ = 0, got_ = 0;
    UniqueFd fd_;
    Hasher hash_;
    bool checked_ = false;
};

}  // namespace ckptdb
