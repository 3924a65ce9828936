// The commit protocol (docs/DESIGN.md, "Save protocol" and "Several ranks,
// several hosts"): the one path by which files in the checkpoint directory
// become a complete checkpoint. Single-file saves (Save, writer.cpp) and
// sharded commits (commit_shards, shard.cpp; sync's copies go through it)
// both run it: the input checks, the intent recorded, the seal, the renames,
// the directory fsync, then the complete transaction with rotation, or the
// abort. Every statement of the protocol is issued here.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

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

// Step 0, the checks every save makes before anything is written: a catalog
// opened for writing (CKPTDB_EREADONLY), a valid kind, epoch and step >= 0
// (CKPTDB_EINVAL).
void check_save_request(const Catalog &cat, const std::string &kind, int64_t epoch, int64_t step);

// A checkpoint's file name given by the caller: valid, and not one of the
// catalog's own files (CKPTDB_EINVAL). who names the file in the message
// ("shard of rank 2"); empty for a single save's name.
void check_final_name(const Catalog &cat, const std::string &name, const std::string &who);

// One file of a checkpoint: its final name, the temp file holding its bytes
// and, once sealed, their size and XXH3-128 (32 lower-case hex digits).
struct CommitFile {
    std::string name;
    std::string temp_name;
    int64_t size = -1;
    std::string checksum;
    int64_t rank = -1;  // the writing rank of a directory's file; else -1 (a shard's rank is its index)
};

// What the temp name refers to now, against the file a writer holds open as
// fd (the name looked up without following it, the descriptor fstat'ed).
// Until the rename, the name must still be that file: otherwise the rename
// would install whatever was put there (a symlink out of the directory,
// another file).
struct TempCheck {
    int err = 0;     // errno of the name's lookup; 0 when something has the name
    int fd_err = 0;  // errno of the descriptor's fstat
    bool regular = false, symlink = false;
    bool ours = false;  // the name is the very file open as fd
};
TempCheck check_temp(const Dir &dir, const std::string &name, int fd);

// The bytes of one temp file on their way to disk: each write completes
// (short writes and EINTR handled), is hashed as it passes and handed to
// writeback every 8 MiB, so that the final fsync has little left.
class DurableWriter {
public:
    explicit DurableWriter(std::string path) : path_(std::move(path)) {}
    void write(int fd, const void *data, size_t len);
    // The caller wrote the file itself: hash it from offset 0 instead.
    void hash_file(int fd);
    // fsync, never retried: a failure throws.
    void sync(int fd);

    int64_t size() const { return size_; }
    std::string checksum() const { return hash_.hex(); }

private:
    std::string path_;
    Hasher hash_;
    int64_t size_ = 0;
    int64_t flushed_ = 0;  // bytes handed to writeback
};

// One checkpoint on its way from intent to complete.
class Commit {
public:
    // single: one file that the save writes after its intent is recorded
    // (sealed later by seal()); shards: files written and fsynced already
    // by their shards, sealed with the intent; dir: a directory checkpoint
    // (dirsave.hpp): files is its one entry, the directory's final name and
    // its temp directory, and its files are sealed later by seal_files().
    // A dir whose temp name is its name is saved in place (dirsave.hpp,
    // DirSave::begin_in_place): its files are written under the final
    // name, which is never renamed.
    enum class Layout { single, shards, dir };

    // Step 1: the metadata normalised, room made (byte budget), then one
    // transaction: the live-name checks (CKPTDB_EEXISTS; a single file
    // without a name gets the default name, suffixed until free), the run
    // row, the row "writing", a row for every file with its temp name (and
    // with shards its seal), event "begun". Point "begun" (single) or
    // "sealed" (shards).
    static std::unique_ptr<Commit> begin(std::shared_ptr<Catalog> cat, Layout layout, const std::string &kind,
                                         int64_t epoch, int64_t step, const std::optional<std::string> &metadata,
                                         std::vector<CommitFile> files);

    int64_t id() const { return id_; }
    const std::vector<CommitFile> &files() const { return files_; }
    // A directory save written in place (its temp name is its name).
    bool in_place() const;
    // The save made its directory in place: from here on an abort removes
    // it (before, the name may be anyone's and is never touched).
    void made_in_place_dir() { dir_made_ = true; }

    // Step 5 of a single save: the size and checksum of its fsynced file on
    // the file row and the checkpoint row, in one transaction. Point "sealed".
    void seal(int64_t size, const std::string &checksum);
    // The sealing of a directory save: a row for each of its files (name in
    // the directory, writing rank, size, checksum) and their total on the
    // checkpoint, in one transaction. Point "sealed".
    void seal_files(std::vector<CommitFile> inner);
    const std::vector<CommitFile> &inner() const { return inner_; }
    // Steps 6-7: every temp file renamed to its final name without replacing
    // (point "renamed" after each), the directory fsynced (point "dir_synced").
    // In place there is nothing to rename: the directory is fsynced all the
    // same (the one made at the begin is durable before the commit).
    void install();
    // Step 8: one transaction: the row complete, temp names cleared, in_commit
    // (when given) run, event "committed", the handle's rotation marked.
    // Where a recovery already finished this commit (its writer stalled past
    // the lease), the checkpoint stays complete and this does nothing more.
    void complete(const std::function<void(Store &, int64_t)> &in_commit = {});
    // Step 9: point "committed", then after_commit; returns the entry.
    Entry finish();
    // The failure path: the final names this commit renamed are unlinked (a
    // save in place: its directory removed as a temp directory is) and the
    // row aborted with event "aborted" (why). Never throws; where even
    // that transaction fails the row stays "writing" for recovery.
    void abort(const std::string &why) noexcept;

private:
    Commit(std::shared_ptr<Catalog> cat, Layout layout) : cat_(std::move(cat)), layout_(layout) {}
    void seal_in_tx(Store &db);
    int64_t total() const;

    std::shared_ptr<Catalog> cat_;
    Layout layout_;
    std::string kind_;
    int64_t id_ = 0;
    std::vector<CommitFile> files_;
    std::vector<CommitFile> inner_;  // a directory's files, once sealed
    size_t renamed_ = 0;
    bool dir_made_ = false;        // in place: the directory is this save's
    std::vector<int64_t> marked_;  // the rotation's victims
};

}  // namespace ckptdb
