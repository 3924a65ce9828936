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
    // A save neither committed nor aborted is aborted.
    ~DirSave();

    int64_t id() const;
    const std::string &name() const;
    const std::string &temp_name() const;  // the temp directory, relative to the checkpoint directory

    // Commits the files. Bad input (no file, a name invalid or given twice, a
    // negative rank or size, a malformed checksum), a file missing, not a
    // regular file, of another size than reported or sealed for another
    // name, size or checksum, and anything else found in the temp
    // directory fail with CKPTDB_EINVAL before anything changes: the save
    // stays open, to be committed with the right files or aborted. A
    // failure after that aborts the save. in_commit, when given, runs inside
    // the transaction that marks the checkpoint complete (sync attributes a
    // copy to its source run there).
    Entry commit(const std::vector<DirFileInfo> &files, const std::function<void(Store &, int64_t)> &in_commit = {});
    // Aborts: the row "aborted", the temp directory removed (files a live
    // writer still holds stay, for recovery to remove once it is gone).
    void abort(const std::string &why);

private:
    DirSave() = default;
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

}  // namespace ckptdb
