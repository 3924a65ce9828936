// Directory checkpoints (docs/DESIGN.md, "Directory checkpoints"): a
// checkpoint that is a directory `name/` of files, as
// torch.distributed.checkpoint writes one (a file or more per rank, and the
// coordinator's metadata).
//
// The coordinator begins the save (DirSave::begin): the row "writing" with
// its temp directory is recorded, then the temp directory made inside the
// checkpoint directory. Any process (every rank) writes files into it with
// Shard::begin_in, which never opens the catalog: each file is created under
// its own name, hashed while written, fsynced and sealed (shard.hpp), and
// held locked while it is written. The coordinator then commits with what
// the writers reported (name, rank, size, checksum), without reading a byte
// back: every reported file must be there with a matching seal and nothing
// else may be; one transaction records the files, the temp directory is
// fsynced and renamed to its final name without replacing anything, the
// parent fsynced, and one transaction marks the checkpoint complete and
// rotates (Commit). Directories are flat: every file is a single valid name
// inside `name/`.
//
// A save in place (DirSave::begin_in_place, for writers that pick their own
// directory and write into it, as the Hugging Face Trainer writes
// `checkpoint-N/`): the row "writing" names the final directory as its temp
// directory too (temp name == name), then the directory is made,
// exclusively. The caller writes its files into it by any means; the commit
// (commit_in_place) lists the directory, fsyncs and hashes each file,
// records them, fsyncs the directory and its parent, and marks the
// checkpoint complete; nothing is renamed. Until then the directory is the
// save's own: an abort, or recovery after its writer died, removes it whole
// unless every file was recorded and is whole (then the commit is rolled
// forward).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "catalog.hpp"
#include "commit.hpp"
#include "fsio.hpp"

namespace ckptdb {

// What a writer reports of one file of a directory save.
struct DirFileInfo {
    std::string name;  // in the directory
    int64_t rank = 0;  // the writing rank
    int64_t size = -1;
    std::string checksum;  // XXH3-128, 32 lower-case hex digits
};

class DirSave {
public:
    // name: the directory's final name (validated like a checkpoint name);
    // none: the default name of kind, epoch and step without an extension
    // ("epoch_003", "step_000100"), suffixed until free.
    static std::unique_ptr<DirSave> begin(std::shared_ptr<Catalog> cat, const std::string &kind, int64_t epoch,
                                          int64_t step, const std::optional<std::string> &name,
                                          const std::optional<std::string> &metadata);
    // A save in place: name (required, validated like a checkpoint name)
    // is recorded, then the directory `name/` made; anything of that name
    // already there (or made meanwhile): CKPTDB_EEXISTS, untouched, and the
    // row aborted. Point "dir_created".
    static std::unique_ptr<DirSave> begin_in_place(std::shared_ptr<Catalog> cat, const std::string &kind, int64_t epoch,
                                                   int64_t step, const std::string &name,
                                                   const std::optional<std::string> &metadata);
    // A save neither committed nor aborted is aborted.
    ~DirSave();

    int64_t id() const;
    const std::string &name() const;
    const std::string &temp_name() const;  // the temp directory, relative to the checkpoint directory
    bool in_place() const;                 // begun by begin_in_place (temp_name() == name())

    // Commits the files. Bad input (no file, a name invalid or given twice, a
    // negative rank or size, a malformed checksum), a file missing, not a
    // regular file, of another size than reported or sealed for another
    // name, size or checksum, and anything else found in the temp
    // directory fail with CKPTDB_EINVAL before anything changes: the save
    // stays open, to be committed with the right files or aborted. A
    // failure after that aborts the save. in_commit, when given, runs inside
    // the transaction that marks the checkpoint complete (sync attributes a
    // copy to its source run there).
    // Not for a save in place (CKPTDB_EMISUSE).
    Entry commit(const std::vector<DirFileInfo> &files, const std::function<void(Store &, int64_t)> &in_commit = {});
    // Commits a save in place with what its directory holds (CKPTDB_EMISUSE
    // for another save). Every entry must be a regular file with a valid
    // name, and there must be one at least: else CKPTDB_EINVAL naming it,
    // before anything changes (the save stays open). Each file is fsynced
    // and hashed (rank 0), the files recorded (point "sealed"), the
    // directory and the checkpoint directory fsynced (point "dir_synced"),
    // and the checkpoint marked complete; metadata, when given, replaces the
    // begin's in that same transaction (rotation sees it). A failure after
    // the checks aborts the save.
    Entry commit_in_place(const std::optional<std::string> &metadata);
    // Aborts: the row "aborted", the temp directory removed (files a live
    // writer still holds stay, for recovery to remove once it is gone); in
    // place, the directory `name/` so.
    void abort(const std::string &why);

private:
    DirSave() = default;
    // Runs the commit's steps past its checks: a failure aborts the save
    // and is rethrown; otherwise the save is committed and its entry returned.
    Entry finish_commit(const std::function<void()> &steps);
    void check_open() const;  // CKPTDB_EMISUSE once committed or aborted
    enum class State { open, committed, aborted };
    std::shared_ptr<Catalog> cat_;
    std::unique_ptr<Commit> commit_;
    State state_ = State::open;
};

// What removing a directory checkpoint's files left: files_gone when every
// recorded file is gone (or was never there), dir_gone when the directory
// itself is; kept names what stays in it that the catalog did not write
// (never deleted), or a recorded name now holding something else.
struct DirRemoval {
    bool files_gone = true;
    bool dir_gone = false;
    std::vector<std::string> kept;
};

// Removes the files of the directory checkpoint `name` that the catalog
// recorded (files: its rows): each only where it is a regular file of the
// recorded size (links are not followed; anything else under a recorded
// name stays). Then the directory, when nothing else is left in it. A name
// that is not a directory is not touched (files_gone false).
DirRemoval remove_dir_checkpoint(const Dir &dir, const std::string &name, const std::vector<FileRow> &files);
DirRemoval remove_dir_checkpoint(const Dir &dir, const std::string &name, const std::vector<CommitFile> &files);

// Removes a directory save's temp directory temp_name: every file and link
// in it that no live writer holds locked (remove_unheld), then the
// directory when it is empty. True when it is gone (or was never made).
bool remove_temp_dir(const Dir &dir, const std::string &temp_name);

// Removes the directory `name/` of a save in place that is not complete
// (remove_temp_dir), then fsyncs dir: unlike a temp directory's name, one
// that came back after a power loss would be taken for anyone's. True when
// it is gone.
bool remove_in_place_dir(const Dir &dir, const std::string &name);

// Whether a row's directory save was begun in place: its temp name is its
// name (the row's temp name is cleared when it is complete or aborted).
bool is_in_place(const std::string &name, const std::string &temp_name);

}  // namespace ckptdb
