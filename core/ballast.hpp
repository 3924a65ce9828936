// The reserve of a checkpoint directory (a ballast, as CockroachDB keeps
// one): the file .ckptdb-ballast, kBallastBytes long with its blocks
// allocated. A prune or a repair must write the catalog (rows marked, events
// logged) before it deletes anything; on a full disk (or a full quota) that
// write fails, and nothing could ever be freed. The ballast is the room that
// write needs: an operator's prune or fsck --repair whose catalog write
// fails for lack of space deletes it, tries once more, and puts it back once
// the files it deleted freed room. Saves never touch it: they fail with
// CKPTDB_ENOSPC as they would without it.
//
// It is never a checkpoint: its name starts with the library's ".ckptdb"
// prefix (no checkpoint may), so no budget counts it, no rebuild or adopt
// takes it in, no sync copies it, and recovery's temp-file cleanup (which
// removes only ".ckptdb-tmp-" names) leaves it alone. Deleting it by hand is
// harmless: the next writable open makes it again.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "fsio.hpp"

namespace ckptdb {

// 4 MiB. A prune needs about 350-410 bytes of room per checkpoint it
// deletes (WAL frames for the row marked, its event and their index
// entries, plus the catalog file's growth when the WAL is folded in),
// measured on catalogs of 1,000 to 20,000 checkpoints: 4 MiB lets one prune
// of some 10,000 checkpoints at once through a completely full disk, and a
// repair's writes are far smaller (the stress-reserve-tmpfs test prints the
// figure). Small beside a checkpoint, so keeping it costs nothing that matters.
inline constexpr int64_t kBallastBytes = int64_t(4) << 20;

// How a step reports what it did with the reserve: an event and its detail
// (the catalog records it in a transaction of its own; where even that
// fails, the event callback still sees it). Never throws.
using ReserveNote = std::function<void(const std::string &event, const std::string &detail)>;

// Whether the ballast is in place: a regular file (not a link) of at least
// kBallastBytes with that many bytes of blocks allocated.
bool ballast_whole(const Dir &dir);

// Makes the ballast whole where it is missing or short: a new file under a
// temp name of the library (held locked, so that recovery in another process
// leaves it alone; a kill leaves an orphan that recovery removes), its blocks
// allocated (posix_fallocate, or zeros written where the file system cannot
// allocate), then renamed over the name. Returns "" when the ballast is
// whole (already, or now); else why it is not (a full disk, a file size
// limit, a name taken by something that is not a regular file), having left
// nothing of its own behind. Never throws.
std::string make_ballast(const Dir &dir) noexcept;

// On a writable open: makes the ballast whole where needed; a failure is
// noted as the event "reserve_unavailable", never thrown.
void keep_ballast(const Dir &dir, const ReserveNote &note) noexcept;

// The reserve as one prune or repair uses it (not a save: saves never do).
class Reserve {
public:
    Reserve(const Dir &dir, ReserveNote note) : dir_(dir), note_(std::move(note)) {}
    // Where the operation failed after the ballast was deleted, it is put
    // back: the operation freed nothing, the room is still there.
    ~Reserve() { restore(); }
    Reserve(const Reserve &) = delete;
    Reserve &operator=(const Reserve &) = delete;

    // Runs step (what writes the catalog). When it fails with CKPTDB_ENOSPC
    // and the ballast was not deleted yet by this operation, deletes it,
    // notes "reserve_released", and runs step once more; its failure then
    // propagates. Step must be safe to run again after a failure.
    void run(const std::string &what, const std::function<void()> &step);
    // After the operation's deletions: where it deleted the ballast, makes
    // it again and notes "reserve_restored", or "reserve_unavailable" with
    // why not (the next writable open tries again). Never throws.
    void restore() noexcept;
    // Whether this reserve deleted the ballast (and has not put it back).
    bool released() const { return released_; }
    // Hands the release over: this reserve will not put the ballast back
    // (the open that needed it leaves the room to the operation after it).
    void hand_over() { released_ = false; }
    // Takes over a release made for this operation earlier (by its open):
    // restore() puts the ballast back.
    void take_over() { released_ = true; }

private:
    const Dir &dir_;
    ReserveNote note_;
    bool released_ = false;
};

}  // namespace ckptdb
