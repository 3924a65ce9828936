// Sharded saves: one file per rank, one checkpoint (docs/DESIGN.md,
// "Several ranks, several hosts").
//
// Every rank writes its file with a Shard, which never opens the catalog: a
// temp file in the checkpoint directory, hashed while written, fsynced, and
// held under an exclusive flock for as long as the Shard lives, so that
// recovery in another process never takes it for an orphan. Rank 0 gathers
// each rank's (name, temp name, size, checksum) and calls commit_shards,
// which records all files in one transaction, renames every temp file to its
// final name, fsyncs the directory and marks the checkpoint complete. Until
// that commit the checkpoint does not exist; after it, it is complete with
// every file. A crash in between is resolved by recovery: once every file is
// sealed the commit is rolled forward, otherwise the checkpoint is aborted.
//
// A finished temp file carries a seal (write_seal): the final name, size and
// checksum its writer computed, bound to the file's inode. commit_shards
// takes a temp file only when the caller reports exactly what it was sealed
// with, so two ranks' temp names swapped in the gather never commit a
// checkpoint whose files hold the other rank's bytes.
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "catalog.hpp"
#include "commit.hpp"
#include "error.hpp"
#include "fsio.hpp"

namespace ckptdb {

// A rank's file: its final name, the fsynced temp file holding the bytes,
// their size and XXH3-128.
using ShardFile = CommitFile;

class Shard {
public:
    // dir must exist; name is validated like a checkpoint name.
    static std::unique_ptr<Shard> begin(const std::string &dir, const std::string &name);
    // A file of a directory save (dirsave.hpp): name (validated like a
    // checkpoint name) is created under its own name in the save's temp
    // directory temp_dir inside dir, by the writer of the given rank.
    // CKPTDB_ENOTFOUND when the temp directory is not there (the save was
    // committed, aborted or never begun); CKPTDB_EEXISTS when another writer
    // took the name.
    static std::unique_ptr<Shard> begin_in(const std::string &dir, const std::string &temp_dir, const std::string &name,
                                           int64_t rank);
    // Removes the temp file unless a commit renamed it away. A finished file
    // of a directory save stays (with its seal) for the commit, which may
    // come after its writer is gone; one not finished is removed while the
    // save's temp directory still has it.
    ~Shard();

    void write(const void *data, size_t len);
    int fd();  // the caller writes through it instead; finish() hashes the file
    const ShardFile &finish();

private:
    enum class State { streaming, external, finished, failed };
    Shard() = default;
    void fail_with(const Error &e);

    // Where the file is: the checkpoint directory, or a directory save's
    // temp directory.
    const Dir &where() const { return in_dir_ ? tmp_ : dir_; }
    bool temp_dir_is_ours() const;

    Dir dir_;
    Dir tmp_;  // a directory save's temp directory
    std::string tmp_name_;
    bool in_dir_ = false;
    State state_ = State::streaming;
    ShardFile info_;
    UniqueFd fd_;
    UniqueFd seal_;  // the sidecar seal, where the file system refused the attribute
    std::optional<DurableWriter> out_;
    int err_code_ = 0;
    std::string err_msg_;
};

// The seal of a temp file, one home for its format: the text
// "v1 <size> <checksum> <inode> <name>" in the extended attribute
// kSealAttr of the temp file. Where the file system refuses user attributes
// (or CKPTDB_TEST_SEAL_SIDECAR=1 is in the environment, for the tests of
// that path) the same text goes into a sidecar file "<temp name>.seal"
// beside it, created exclusively and held under an exclusive flock by the
// writer for as long as its temp file is its own: recovery in another
// process leaves a held sidecar alone and removes it as an orphan temp file
// once the writer is gone. The seal is not fsynced: it matters only until
// the commit, and a temp file that outlives a power loss is an orphan. The
// attribute stays on the committed file (it names that file); nothing reads
// it after the commit.
inline constexpr const char *kSealAttr = "user.ckptdb.seal";
std::string seal_sidecar_name(const std::string &temp_name);

// Seals the temp file f.temp_name, open as fd, with f's name, size and
// checksum. Returns the sidecar's locked descriptor when the sidecar holds
// the seal (an empty one when the attribute does): keep it open while the
// temp file is the caller's, then pass it to drop_seal.
UniqueFd write_seal(const Dir &dir, int fd, const ShardFile &f);

// Removes the sidecar seal of temp_name when that name still refers to the
// file sidecar holds (a commit may have removed it already), and closes it.
void drop_seal(const Dir &dir, const std::string &temp_name, UniqueFd &sidecar);

// Refuses with CKPTDB_EINVAL, naming the rank, the temp file and the
// mismatch, a temp file whose seal is missing, unreadable, made for another
// inode, or records another name, size or checksum than f. fd is the temp
// file opened relative to dir without following symlinks, st its fstat;
// only the seal is read, never the bytes. Returns true when the seal was a
// sidecar (which the commit removes once it took the file).
bool check_seal(const Dir &dir, int fd, const struct stat &st, const ShardFile &f, size_t rank);

// Commits the files (files[i] is rank i) as one checkpoint. Bad input, a
// temp file whose seal does not match what files[i] reports (check_seal)
// and name conflicts fail before anything changes on disk. in_commit, when
// given, runs inside the transaction that marks the checkpoint complete
// (sync attributes a copy to its source run there).
Entry commit_shards(const std::shared_ptr<Catalog> &cat, const std::string &kind, int64_t epoch, int64_t step,
                    const std::optional<std::string> &metadata, const std::vector<ShardFile> &files,
                    const std::function<void(Store &, int64_t)> &in_commit = {});

// A temp file that a live Shard holds locked (then it is not an orphan).
bool temp_in_use(const Dir &dir, const std::string &name);

// Creates name exclusively and holds an exclusive flock on it for as long as
// the returned descriptor is open (temp_in_use sees it); never unlocked
// while it has its name, where the file system has O_TMPFILE.
UniqueFd create_locked_temp(const Dir &dir, const std::string &name);

// The same through the traced I/O layer alone (create, then flock), for the
// files whose every operation the crash harness replays: a name is tried
// until the file behind it is the one this process created and locked (one
// that remove_unheld took in between is gone, and another name is made).
UniqueFd create_locked_traced(const Dir &dir, const std::function<std::string()> &make_name, std::string &name);

// Removes name where no process holds it: takes its exclusive flock itself,
// checks the name still refers to that file, and unlinks it while holding
// the lock (a creator that locks after this sees its name gone). False when
// it is held or already gone.
bool remove_unheld(const Dir &dir, const std::string &name);

}  // namespace ckptdb
