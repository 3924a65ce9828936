/*
 * ckptdb.h - the stable C ABI of ckptdb, a checkpoint catalog for training jobs.
 *
 * Every checkpoint a trainer saves is recorded as a row in an SQLite catalog
 * that lives in the checkpoint directory itself.  A save is crash-safe by
 * construction (temp file, XXH3-128 while writing, fsync, rename, directory
 * fsync, then one transaction marks it complete), and "resume from the newest
 * good checkpoint" is a verified query.
 *
 * CONVENTIONS
 *   - Every function returns an int status: CKPTDB_OK (0) or one of the
 *     CKPTDB_E* codes below.  Codes are never renumbered.
 *   - After any failure, ckptdb_last_error() gives a detailed message (paths,
 *     strerror(errno) text) for the calling thread, including after a failed
 *     ckptdb_open() that produced no handle.  It is never NULL.
 *   - Out-parameters come first, before the object the call works on (the
 *     handle, the save, the reader); only the values a function returns
 *     instead of a status are not out-parameters.  On failure *out is set to
 *     NULL (or the struct is left with zeroed pointers).  What is received
 *     through **out is released with the matching ckptdb_*_close /
 *     ckptdb_*_free, which accept NULL.
 *   - Every struct that crosses the ABI can grow.  A struct the caller fills
 *     (options, filters, policies, ckptdb_keep_kind, ckptdb_shard_file)
 *     starts with a version field: initialise it with its _INIT macro or
 *     *_init() function.  An unknown version fails with CKPTDB_EINVAL naming
 *     the struct, before anything changes.  A NULL options pointer means
 *     defaults.  In an array of such structs every element carries the same
 *     version.
 *   - A struct the library fills (ckptdb_entry, ckptdb_shard_info) starts
 *     with struct_size: the caller sets it (the _INIT macro does it); the
 *     library fills only what fits and sets struct_size to the number of
 *     bytes it filled.  A struct the library hands to a callback
 *     (ckptdb_prune_item, ckptdb_file, ckptdb_event, ckptdb_run,
 *     ckptdb_fsck_item, ckptdb_sync_item, ckptdb_rebuild_item) also starts
 *     with struct_size, set by the library to the bytes it holds: a caller
 *     built against an older header reads only the fields it knows.
 *   - Callbacks: every callback that returns int follows one rule.  0 goes
 *     on; any other value stops the call at that point, and the call returns
 *     CKPTDB_ECALLBACK (never the callback's own value, which could be read
 *     as a status code).  ckptdb_last_callback_value() then gives the value
 *     the callback returned, and ckptdb_last_error() names the function
 *     whose callback stopped it and that value.  What the call finished
 *     before the callback saw it stays done (a prune's deletions, a repair,
 *     the checkpoints a sync already committed); a stopped ckptdb_rebuild or
 *     ckptdb_adopt installs no catalog.  Out-parameters hold the totals
 *     counted until the stop, except those of ckptdb_sync, ckptdb_rebuild
 *     and ckptdb_adopt, which stay 0.
 *   - Experimental tier: the declarations that may still change between
 *     minor versions (Slurm requeue: CKPTDB_OPEN_REQUEUE; preemption
 *     signals; save triggers) are visible only when the caller defines
 *     CKPTDB_EXPERIMENTAL before including ckptdb.h.  Their symbols are
 *     exported either way; their prototypes, types and flags may change
 *     without a SONAME bump.  Everything else is the stable tier.
 *   - Borrowed strings: the strings in an entry belong to the object that
 *     filled it (the ckptdb_catalog handle for ckptdb_latest/ckptdb_get*, the cursor
 *     for ckptdb_cursor_next, the save for ckptdb_save_commit) and stay valid
 *     until the next call that fills an entry through that same object, or
 *     until it is closed/freed.  An entry handed to a callback is valid only
 *     during the callback.
 *
 * THREADS
 *   Objects (ckptdb_catalog, ckptdb_save, ckptdb_reader, ckptdb_cursor,
 *   ckptdb_trigger) may be used
 *   from any thread, each by one thread at a time.  Different objects may be
 *   used concurrently, even when they belong to the same catalog: the catalog
 *   connection they share is guarded inside the library.  So a background
 *   thread may write and commit a save while the main thread lists the
 *   catalog through the ckptdb_catalog handle.  One exception: several
 *   threads may call ckptdb_save_begin on the same handle at once (each then
 *   uses its own save).
 *   Never use an object in a child after fork(); open the catalog again there.
 *
 * PROCESSES
 *   Several processes on one host may open, save to, list and verify the same
 *   catalog at once (SQLite WAL, synchronous=FULL, busy timeout).  On a
 *   network file system (NFS, Lustre, GPFS, CIFS, BeeGFS) the catalog uses a
 *   rollback journal and must have a single writing process.
 *
 * FILES
 *   The bytes of a checkpoint file are exactly the bytes the caller wrote:
 *   no header or footer is added, so torch.load and every other reader keep
 *   working on the files.
 */
#ifndef CKPTDB_H
#define CKPTDB_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) && defined(CKPTDB_BUILDING)
#define CKPTDB_API __attribute__((visibility("default")))
#else
#define CKPTDB_API
#endif

/* ------------------------------------------------------------------------ */
/* Version                                                                   */
/* ------------------------------------------------------------------------ */

/* CKPTDB_VERSION_MAJOR, _MINOR, _PATCH, _STRING and _NUMBER (major * 10000 +
 * minor * 100 + patch), generated from the version in meson.build's
 * project(), the one place it is written. */
#include "ckptdb_version.h"

/* The version of the library actually loaded (compare with the macros). */
CKPTDB_API const char *ckptdb_version(void);
CKPTDB_API int ckptdb_version_number(void);
/* The catalog schema version this library writes (PRAGMA user_version). */
CKPTDB_API int ckptdb_schema_version(void);

/* ------------------------------------------------------------------------ */
/* Status codes and errors                                                   */
/* ------------------------------------------------------------------------ */

#define CKPTDB_OK          0
#define CKPTDB_ERROR       1  /* an error that fits no other code */
#define CKPTDB_EMISUSE     2  /* NULL handle or out-parameter, call in wrong state */
#define CKPTDB_EINVAL      3  /* bad argument: name, kind, epoch, step, JSON, option */
#define CKPTDB_ENOTFOUND   4  /* no such checkpoint, directory or catalog */
#define CKPTDB_EEXISTS     5  /* the name is already used */
#define CKPTDB_EIO         6  /* an I/O error from the OS (message has path and errno text) */
#define CKPTDB_ENOSPC      7  /* no space left on the device or quota exceeded */
#define CKPTDB_ECORRUPT    8  /* a checkpoint's bytes do not match its catalog row */
#define CKPTDB_EBUSY       9  /* the catalog stayed locked past the busy timeout */
#define CKPTDB_EVERSION    10 /* the catalog was written by a newer ckptdb */
#define CKPTDB_ENOTCATALOG 11 /* the catalog file is not an SQLite database, or not ckptdb's */
#define CKPTDB_EPERM       12 /* the directory or catalog is not writable / not readable */
#define CKPTDB_EREADONLY   13 /* a write through a catalog opened read-only */
#define CKPTDB_ENOMEM      14 /* out of memory */
#define CKPTDB_EDB         15 /* the catalog database itself failed (message has SQLite's text) */
/* CKPTDB_EUNTRUSTED: the directory, catalog or a checkpoint file may have been
 * written by another user (see CKPTDB_OPEN_TRUST_SHARED); the message has the
 * path, owner and mode.  CKPTDB_ECALLBACK: a callback returned non-zero and
 * stopped the call (see CONVENTIONS and ckptdb_last_callback_value). */
#define CKPTDB_EUNTRUSTED 16
#define CKPTDB_ECALLBACK  17
#define CKPTDB_DONE       100 /* not an error: an iteration has no more rows */

/* A static, never-NULL description of a status code. */
CKPTDB_API const char *ckptdb_strerror(int code);
/* The detailed message of the calling thread's most recent call ("" when it
 * succeeded).  Never NULL.  Valid until the next ckptdb call on this thread.
 * Release functions (ckptdb_close, ckptdb_*_free, ckptdb_reader_close) leave
 * it as it was, so an error can be read after cleaning up. */
CKPTDB_API const char *ckptdb_last_error(void);
/* The status code of the calling thread's most recent call. */
CKPTDB_API int ckptdb_last_error_code(void);
/* When the calling thread's most recent call returned CKPTDB_ECALLBACK: the
 * non-zero value its callback returned.  0 after any other outcome. */
CKPTDB_API int ckptdb_last_callback_value(void);

/* ------------------------------------------------------------------------ */
/* Catalog handle                                                            */
/* ------------------------------------------------------------------------ */

typedef struct ckptdb_catalog ckptdb_catalog;

/* Event callback: called after the catalog transaction that recorded the
 * event committed, on the thread that made the call.  event is one of
 * "begun", "committed", "aborted", "corrupt", "restored", "recovered",
 * "resumed", "pruned", "pinned", "unpinned", "prune_failed", "link_failed",
 * "catalog_behind", "run_ended", "requeued", "requeue_failed", "recovery_failed",
 * "reserve_released", "reserve_restored", "reserve_unavailable" (the
 * directory's reserve of free space, .ckptdb-ballast, that ckptdb_prune and
 * ckptdb_fsck with repair use on a full disk) (later versions may add more).
 * The events table also records "rebuilt", "adopted" and "synced", which
 * reach no callback.  checkpoint_id is 0 when none. */
typedef void (*ckptdb_event_cb)(const char *event, int64_t checkpoint_id, const char *detail, void *payload);

#define CKPTDB_OPEN_NO_CREATE 0x1u /* fail with CKPTDB_ENOTFOUND if the directory or catalog is missing */
#define CKPTDB_OPEN_READONLY  0x2u /* no writes at all: no recovery, no run row, saves refused */
#ifdef CKPTDB_EXPERIMENTAL
/* Experimental tier (see CONVENTIONS). */
/* Opt-in Slurm requeue on preemption.  When a checkpoint of kind "preempt"
 * commits through this handle, the preemption signal received
 * (ckptdb_preempt_requested()) is SIGUSR1 (Slurm's --signal=B:USR1@N
 * warning) and SLURM_JOB_ID is set, the library runs
 * `scontrol requeue <SLURM_JOB_ID>` once per process, inside
 * ckptdb_save_commit once the checkpoint is durable and complete: through
 * posix_spawnp (found on PATH, no shell, argv only; a SLURM_JOB_ID other
 * than digits and '_' runs nothing), waiting for it at most 30 s.  Success
 * logs the event "requeued" and the run ends with
 * exit_reason "requeued" when the handle closes; failure logs
 * "requeue_failed" with scontrol's exit status and the first line of its
 * stderr, and the run ends "preempted".  Either way the commit itself
 * succeeds, the preemption flag stays set, and the trainer exits as after
 * any preemption; Slurm then stops the job (SIGTERM, SIGKILL after KillWait)
 * and starts it again, with SLURM_RESTART_COUNT incremented.  The event
 * callback sees both events, so a trainer can log them.  SIGTERM or SIGINT
 * (a time limit, scancel) never requeue: the job was meant to end. */
#define CKPTDB_OPEN_REQUEUE 0x4u
#endif /* CKPTDB_EXPERIMENTAL */
/* Ownership checks (like ssh's StrictModes).  Without this flag every open
 * (read-only too) refuses with CKPTDB_EUNTRUSTED, before reading or changing
 * anything, a checkpoint directory that is writable by every user without
 * the sticky bit (mode o+w, not +t as /tmp has), and a directory or catalog
 * file (and its -wal, -shm, -journal) owned by a user other than the
 * process's effective user or root; and every checkpoint file the library
 * opens to read through the handle (ckptdb_latest's and ckptdb_verify's
 * checks, ckptdb_reader_open, pruning, recovery) is refused the same way
 * when another user owns it: ckptdb_latest then fails with that error, it
 * does not fall back to an older checkpoint.  A group-writable directory is
 * trusted: a group member who replaces a file becomes its owner and is
 * caught by the owner rule.  With CKPTDB_OPEN_TRUST_SHARED none of these
 * checks are made: the directory, the catalog and the checkpoint files of
 * other users in that directory are trusted (a directory shared by a team
 * on purpose).  The library still never follows a symbolic link and never
 * opens or deletes anything outside the directory. */
#define CKPTDB_OPEN_TRUST_SHARED 0x8u
/* For an operator's prune or repair (ckptdb prune, ckptdb fsck --repair):
 * on a completely full disk, when even opening the catalog fails with
 * CKPTDB_ENOSPC (the first connection to a catalog nobody holds open grows
 * SQLite's -shm file again), the directory's reserve (.ckptdb-ballast, see
 * ckptdb_prune) is deleted and the open tried once more; the prune or
 * repair through this handle puts the reserve back once its deletions freed
 * room (events "reserve_released", "reserve_restored").  Not for a trainer's
 * handle: its saves would use up the room. */
#define CKPTDB_OPEN_RESERVE 0x10u

typedef struct ckptdb_open_options {
    unsigned int version; /* CKPTDB_OPEN_OPTIONS_VERSION */
    unsigned int flags;   /* CKPTDB_OPEN_* */
    /* file name of the catalog in the directory; NULL: "ckptdb.sqlite"; the
     * rules of a checkpoint name (no "/", nothing starting ".ckptdb") */
    const char *catalog_name;
    int busy_timeout_ms;      /* <= 0: 60000 */
    ckptdb_event_cb on_event; /* NULL: none */
    void *event_payload;
    const char *last_link; /* symlink to the newest complete checkpoint; NULL: "last.pt"; "": none */
} ckptdb_open_options;

#define CKPTDB_OPEN_OPTIONS_VERSION 1
#define CKPTDB_OPEN_OPTIONS_INIT \
    { CKPTDB_OPEN_OPTIONS_VERSION, 0u, NULL, 0, NULL, NULL, NULL }
CKPTDB_API int ckptdb_open_options_init(ckptdb_open_options *opts, unsigned int version);

/* Open the catalog of checkpoint directory dir, creating the directory (one
 * level) and the catalog unless CKPTDB_OPEN_NO_CREATE is set.  A catalog
 * with an older schema is migrated in one transaction; a newer one is refused
 * with CKPTDB_EVERSION and a file that is not a ckptdb catalog with
 * CKPTDB_ENOTCATALOG, both left untouched.  Unless read-only, recovery runs:
 * saves left "writing" by processes that no longer run on this host, or
 * by a process of another host whose lease expired (its temp file's mtime,
 * renewed while it writes, older than CKPTDB_LEASE_SECONDS, default 900, and
 * the file not locked), are adopted when their final file is whole,
 * otherwise aborted and their temp files removed.  When the disk is full, recovery that cannot record its
 * work is left for the next open (a "recovery_failed" event reaches the
 * callback) and the open still succeeds, so the newest checkpoint can be
 * found.  On failure *out is NULL and ckptdb_last_error() says why. */
CKPTDB_API int ckptdb_open(ckptdb_catalog **out, const char *dir, const ckptdb_open_options *opts);

/* Close the handle (NULL is accepted).  Saves, readers and cursors opened
 * through it stay usable until they are freed; the catalog connection is
 * closed with the last of them.  Always returns CKPTDB_OK. */
CKPTDB_API int ckptdb_close(ckptdb_catalog *db);

/* The absolute path of the checkpoint directory (owned by the handle, valid
 * until ckptdb_close). */
CKPTDB_API const char *ckptdb_dir(const ckptdb_catalog *db);

/* ------------------------------------------------------------------------ */
/* Entries                                                                   */
/* ------------------------------------------------------------------------ */

/* Status of a checkpoint row (stored as text in the catalog). */
#define CKPTDB_STATUS_WRITING  1
#define CKPTDB_STATUS_COMPLETE 2
#define CKPTDB_STATUS_CORRUPT  3
#define CKPTDB_STATUS_ABORTED  4
#define CKPTDB_STATUS_PRUNED   5
#define CKPTDB_STATUS_BIT(s)   (1u << (s))

/* The text form of a status ("writing", "complete", ...); "unknown" otherwise. */
CKPTDB_API const char *ckptdb_status_name(int status);

typedef struct ckptdb_entry {
    size_t struct_size; /* in: sizeof what the caller has; out: bytes filled */
    int64_t id;
    const char *name; /* file name inside the directory (a directory checkpoint: its directory's name) */
    const char *path; /* absolute path of the file (or of the directory) */
    const char *kind; /* "epoch", "step", "time", "preempt", "manual", or a user kind */
    int64_t epoch;
    int64_t step;
    int64_t size;             /* bytes in all files; -1 while unknown */
    const char *checksum;     /* XXH3-128, 32 lower-case hex digits as xxh128sum prints; "" while unknown */
    int status;               /* CKPTDB_STATUS_* */
    int pinned;               /* 0 or 1 */
    int64_t run_id;           /* the run that saved it; 0 if none */
    int64_t file_count;       /* files of the checkpoint (1, one per rank, or a directory's) */
    const char *created_at;   /* UTC, ISO-8601 with milliseconds */
    const char *committed_at; /* "" if never committed */
    const char *deleted_at;   /* "" if not deleted */
    const char *metadata;     /* JSON object text; "{}" when none was given */
    int layout;               /* CKPTDB_LAYOUT_FILE or CKPTDB_LAYOUT_DIR */
    int64_t commit_seq;       /* the commit order, larger is newer (what ckptdb_latest orders by,
                               * never a clock); 0 if never committed */
} ckptdb_entry;

#define CKPTDB_ENTRY_INIT \
    { sizeof(ckptdb_entry), 0, NULL, NULL, NULL, 0, 0, 0, NULL, 0, 0, 0, 0, NULL, NULL, NULL, NULL, 0, 0 }

/* A checkpoint's layout: a file (or one file per rank of a sharded save,
 * each under its own name), or a directory `name/` of files. */
#define CKPTDB_LAYOUT_FILE 0
#define CKPTDB_LAYOUT_DIR  1

/* ------------------------------------------------------------------------ */
/* Saving                                                                    */
/* ------------------------------------------------------------------------ */

typedef struct ckptdb_save ckptdb_save;

typedef struct ckptdb_save_options {
    unsigned int version; /* CKPTDB_SAVE_OPTIONS_VERSION */
    const char *name;     /* NULL: the default name of the kind (see ckptdb_save_begin) */
    const char *metadata; /* NULL: "{}"; else a JSON object (metrics, config): at most 1 MiB,
                             * objects and arrays nested at most 64 deep (else CKPTDB_EINVAL) */
} ckptdb_save_options;

#define CKPTDB_SAVE_OPTIONS_VERSION 1
#define CKPTDB_SAVE_OPTIONS_INIT \
    { CKPTDB_SAVE_OPTIONS_VERSION, NULL, NULL }
CKPTDB_API int ckptdb_save_options_init(ckptdb_save_options *opts, unsigned int version);

/* Begin a save: records the intent (a "writing" row) and creates the temp
 * file next to its final name.  kind: 1-64 characters of [A-Za-z0-9_.-]
 * (epoch, step, time, preempt, manual or your own).  epoch, step >= 0.
 *
 * Names: an explicit name must be 1-255 bytes, contain no '/', NUL or control
 * character, and not be ".", ".." or start with ".ckptdb"; if a live
 * checkpoint (writing, complete, corrupt) or any file already has it, the
 * call fails with CKPTDB_EEXISTS.  Without a name the default is the one
 * ckptdb_default_name gives (below; world 0), and a taken default name gets
 * a suffix: epoch_010-2.pt, epoch_010-3.pt...
 * Bad input fails with CKPTDB_EINVAL and changes nothing on disk.
 * Thread-safety: see THREADS. */
CKPTDB_API int ckptdb_save_begin(ckptdb_save **out, ckptdb_catalog *db, const char *kind, int64_t epoch, int64_t step,
                                 const ckptdb_save_options *opts);

/* The default name of a checkpoint, the one rule (rebuild and adopt read
 * kind, epoch and step back from every name it gives):
 *   epoch   -> epoch_%03d.pt (epoch)     step    -> step_%06d.pt (step)
 *   time    -> time_<unix seconds>.pt    preempt -> preempt_%06d.pt (step)
 *   others  -> <kind>_%06d.pt (step)
 * unix_seconds: the time a "time" name carries; 0 for now (ranks of one
 * sharded checkpoint must all be given the same).  suffix: 0 or 1 for none;
 * n >= 2 gives the n-th name tried when the first is taken (epoch_010-2.pt).
 * world: 0 for a single-file checkpoint; else the file of rank `rank`
 * (0 to world - 1) of a sharded checkpoint of `world` ranks:
 * epoch_010.rank3-of-8.pt, epoch_010-2.rank3-of-8.pt.  Writes the name and
 * its NUL into out (cap bytes).  A bad kind, epoch, step, unix_seconds,
 * suffix, rank or world, or a cap too small for the name (the message says
 * how many bytes it needs), fails with CKPTDB_EINVAL. */
CKPTDB_API int ckptdb_default_name(char *out, size_t cap, const char *kind, int64_t epoch, int64_t step,
                                   int64_t unix_seconds, int suffix, int rank, int world);

/* Append bytes to the checkpoint (hashed as they pass).  Short writes and
 * EINTR are handled.  On an I/O error the save fails at once: the temp file
 * is removed, the row marked aborted, and every later call on the save
 * returns the same error.  Touches no catalog state. */
CKPTDB_API int ckptdb_save_write(ckptdb_save *save, const void *data, size_t len);

/* Instead of ckptdb_save_write, let the caller write the file itself.
 * *out_path is the absolute path of the (empty, already created) temp file,
 * owned by the save.  The caller opens it, writes, and closes it before
 * ckptdb_save_commit, which then reads the file back to hash it.  Cannot be
 * mixed with ckptdb_save_write. */
CKPTDB_API int ckptdb_save_temp_path(const char **out_path, ckptdb_save *save);
/* As ckptdb_save_temp_path, but gives the library's own descriptor of the
 * temp file (opened read-write); the caller writes through it and must not
 * close it. */
CKPTDB_API int ckptdb_save_fd(int *out_fd, ckptdb_save *save);

/* Make the save durable and visible: fsync the file (never retried: a failed
 * fsync fails the save and removes its file), rename it to its final name,
 * fsync the directory, then mark the row complete with its size and checksum
 * in one transaction.  When this returns CKPTDB_OK the checkpoint survives a
 * crash or power loss.  out (may be NULL) receives the entry; its strings
 * belong to the save.  On failure nothing of the save remains but an
 * "aborted" row. */
CKPTDB_API int ckptdb_save_commit(ckptdb_entry *out, ckptdb_save *save);

/* Give up the save: remove its temp file and mark its row aborted. */
CKPTDB_API int ckptdb_save_abort(ckptdb_save *save);

/* Release the save (NULL is accepted); one neither committed nor aborted is
 * aborted first. */
CKPTDB_API void ckptdb_save_free(ckptdb_save *save);

/* ------------------------------------------------------------------------ */
/* Sharded saves: one file per rank, one checkpoint                         */
/* ------------------------------------------------------------------------ */

/* Every rank writes its own file with a shard, which never opens the
 * catalog; rank 0 gathers each shard's info (through the job's own
 * communication: torch.distributed, MPI) and commits them as one checkpoint
 * with ckptdb_commit_shards.  The protocol:
 *   every rank:  ckptdb_shard_begin, ckptdb_shard_write..., ckptdb_shard_finish
 *   gather:      rank 0 receives (name, temp_name, size, checksum) of every rank
 *   rank 0:      ckptdb_commit_shards (one transaction; renames every temp file)
 *   barrier:     every rank waits for rank 0's commit to return
 *   every rank:  ckptdb_shard_free
 * Until the commit the checkpoint does not exist; after it, it is complete
 * with all its files.  A shard's temp file is locked while the shard lives,
 * so recovery in other processes leaves it alone; once its process is gone
 * an uncommitted temp file is removed by the next recovery.  If rank 0 dies
 * inside the commit, the next open finishes it when every file was recorded,
 * or aborts it and removes its files.  ckptdb_latest and ckptdb_verify check
 * every file of a checkpoint, and a checkpoint with one bad file is skipped
 * as a whole.
 * ckptdb_shard_finish seals the temp file with what it computed (the final
 * name, size and checksum, bound to the file's inode; in the extended
 * attribute "user.ckptdb.seal", or where the file system refuses user
 * attributes in a locked sidecar "<temp_name>.seal" that the commit,
 * ckptdb_shard_free or the next recovery removes); ckptdb_commit_shards
 * refuses a temp file whose seal is missing or differs from what it is told
 * for that rank. */
typedef struct ckptdb_shard ckptdb_shard;

typedef struct ckptdb_shard_info {
    size_t struct_size;    /* in: sizeof what the caller has; out: bytes filled */
    const char *name;      /* the final file name */
    const char *temp_name; /* the fsynced temp file holding the bytes until the commit */
    int64_t size;
    const char *checksum; /* XXH3-128, 32 lower-case hex digits */
} ckptdb_shard_info;

#define CKPTDB_SHARD_INFO_INIT \
    { sizeof(ckptdb_shard_info), NULL, NULL, 0, NULL }

/* Begin the file `name` (validated like a checkpoint name) in the existing
 * checkpoint directory dir, without opening its catalog: creates a locked
 * temp file next to it. */
CKPTDB_API int ckptdb_shard_begin(ckptdb_shard **out, const char *dir, const char *name);
/* Append bytes (hashed as they pass).  An I/O error fails the shard at once
 * and removes its temp file. */
CKPTDB_API int ckptdb_shard_write(ckptdb_shard *shard, const void *data, size_t len);
/* Instead of ckptdb_shard_write: the shard's descriptor (read-write); the
 * caller writes through it and must not close it. */
CKPTDB_API int ckptdb_shard_fd(int *out_fd, ckptdb_shard *shard);
/* fsync the file (never retried) and give its info; the strings belong to
 * the shard.  Calling it again gives the same info. */
CKPTDB_API int ckptdb_shard_finish(ckptdb_shard_info *out, ckptdb_shard *shard);
/* Release the shard (NULL is accepted): its temp file is removed unless a
 * commit took it.  Call it only after rank 0's ckptdb_commit_shards returned. */
CKPTDB_API void ckptdb_shard_free(ckptdb_shard *shard);

/* What rank 0 knows of one rank's file (from ckptdb_shard_info). */
typedef struct ckptdb_shard_file {
    unsigned int version; /* CKPTDB_SHARD_FILE_VERSION */
    const char *name;
    const char *temp_name;
    int64_t size;
    const char *checksum;
} ckptdb_shard_file;

#define CKPTDB_SHARD_FILE_VERSION 1
#define CKPTDB_SHARD_FILE_INIT \
    { CKPTDB_SHARD_FILE_VERSION, NULL, NULL, 0, NULL }

/* Commit files[0..count-1] (files[i] is rank i) as one checkpoint of the
 * given kind, epoch and step.  opts may give metadata; opts->name must be
 * NULL (the files carry the names).  In one transaction the checkpoint is
 * recorded with every file, then each temp file is renamed to its name, the
 * directory fsynced, and the checkpoint marked complete and rotation run as
 * for ckptdb_save_commit.  The entry's name and path are those of rank 0's
 * file; its size is the sum.  Bad input (a name taken, a temp file missing,
 * of another size than reported, or sealed by its shard for another name,
 * size or checksum than files[i] gives: CKPTDB_EINVAL naming the rank) fails
 * before anything changes. */
CKPTDB_API int ckptdb_commit_shards(ckptdb_entry *out, ckptdb_catalog *db, const char *kind, int64_t epoch,
                                    int64_t step, const ckptdb_save_options *opts, const ckptdb_shard_file *files,
                                    size_t count);

/* ------------------------------------------------------------------------ */
/* Directory checkpoints: one checkpoint, a directory of files               */
/* ------------------------------------------------------------------------ */

/* A checkpoint can be a directory `name/` of files, written by several
 * processes (as torch.distributed.checkpoint writes one: a file or more per
 * rank, and the coordinator's metadata).  Directories are flat: each file
 * is a single name inside `name/`, validated like a checkpoint name.  The
 * protocol:
 *   coordinator: ckptdb_dir_begin (records the save, makes its temp
 *                directory inside the checkpoint directory)
 *   broadcast:   every writer learns the temp directory's name
 *                (ckptdb_dir_get_info)
 *   writers:     ckptdb_dir_file_begin, then ckptdb_shard_write... (or
 *                ckptdb_shard_fd), ckptdb_shard_finish, ckptdb_shard_free;
 *                any process, any number of files each, without opening the
 *                catalog
 *   gather:      the coordinator receives (name, rank, size, checksum) of
 *                every file (ckptdb_shard_info)
 *   coordinator: ckptdb_dir_commit, then ckptdb_dir_free
 * ckptdb_dir_commit reads no byte back: it takes each file only with a seal
 * that matches what it is told, and refuses anything else found in the temp
 * directory.  It records every file in one transaction, fsyncs the temp
 * directory, renames it to its final name without replacing anything,
 * fsyncs the checkpoint directory and marks the checkpoint complete (with
 * rotation, as ckptdb_save_commit).  Until then the checkpoint does not
 * exist; after it, it is complete with every file.  A finished file stays
 * for the commit after ckptdb_shard_free (its writer may be gone by then);
 * one freed unfinished is removed.  If the coordinator dies, the next open
 * finishes its commit when every file was recorded and is whole, or aborts
 * it and removes the temp directory (files a live writer still holds stay
 * until it is gone).  ckptdb_latest, ckptdb_verify, the reader and prune
 * work on the directory as a whole; a prune removes only the files the
 * catalog recorded, then the directory when nothing else is in it (what it
 * did not write stays, with a "prune_kept_unknown" event). */
typedef struct ckptdb_dir_save ckptdb_dir_save;

typedef struct ckptdb_dir_info {
    size_t struct_size;    /* in: sizeof what the caller has; out: bytes filled */
    int64_t id;            /* the checkpoint's row */
    const char *name;      /* the directory's final name */
    const char *temp_name; /* its temp directory, relative to the checkpoint directory */
} ckptdb_dir_info;

#define CKPTDB_DIR_INFO_INIT \
    { sizeof(ckptdb_dir_info), 0, NULL, NULL }

/* Begin a directory checkpoint.  opts may give its name (NULL: the default
 * name of kind, epoch and step without an extension, "epoch_003" or
 * "step_000100", suffixed until free) and metadata.  A name taken by a live
 * checkpoint or by anything in the directory: CKPTDB_EEXISTS. */
CKPTDB_API int ckptdb_dir_begin(ckptdb_dir_save **out, ckptdb_catalog *db, const char *kind, int64_t epoch,
                                int64_t step, const ckptdb_save_options *opts);
/* The save's id, final name and temp directory; the strings belong to the save. */
CKPTDB_API int ckptdb_dir_get_info(ckptdb_dir_info *out, ckptdb_dir_save *save);

/* Begin the file `name` of the directory save whose temp directory is
 * temp_name in the checkpoint directory dir, written by `rank` (>= 0).  The
 * result is a shard: write it with ckptdb_shard_write or ckptdb_shard_fd,
 * seal it with ckptdb_shard_finish (whose info names the file twice: name
 * and temp_name), release it with ckptdb_shard_free.  CKPTDB_ENOTFOUND when
 * the temp directory is not there (committed, aborted, never begun);
 * CKPTDB_EEXISTS when another writer created that name. */
CKPTDB_API int ckptdb_dir_file_begin(ckptdb_shard **out, const char *dir, const char *temp_name, const char *name,
                                     int64_t rank);

/* What the coordinator knows of one file (from its writer's ckptdb_shard_info). */
typedef struct ckptdb_dir_file {
    unsigned int version; /* CKPTDB_DIR_FILE_VERSION */
    const char *name;
    int64_t rank;
    int64_t size;
    const char *checksum;
} ckptdb_dir_file;

#define CKPTDB_DIR_FILE_VERSION 1
#define CKPTDB_DIR_FILE_INIT \
    { CKPTDB_DIR_FILE_VERSION, NULL, 0, 0, NULL }

/* Commit files[0..count-1] as the directory checkpoint.  Bad input (no
 * file, a name invalid or given twice, a negative rank or size, a malformed
 * checksum), a file missing or sealed for another name, size or checksum,
 * and anything else in the temp directory fail with CKPTDB_EINVAL naming
 * it, before anything changes: the save stays open.  A failure after that
 * aborts the save.  The entry is the committed directory (layout
 * CKPTDB_LAYOUT_DIR, size the sum of its files). */
CKPTDB_API int ckptdb_dir_commit(ckptdb_entry *out, ckptdb_dir_save *save, const ckptdb_dir_file *files, size_t count);
/* Abort: the row "aborted", the temp directory removed.  After a commit:
 * CKPTDB_EMISUSE. */
CKPTDB_API int ckptdb_dir_abort(ckptdb_dir_save *save);
/* Release the save (NULL is accepted); one neither committed nor aborted is
 * aborted first. */
CKPTDB_API void ckptdb_dir_free(ckptdb_dir_save *save);

/* A directory checkpoint saved in place, for a writer that picks its
 * directory and writes into it itself (the Hugging Face Trainer's
 * `checkpoint-N/`): no temp directory, no rename.  ckptdb_dir_begin_in_place
 * records the save, then makes the directory opts->name (required: NULL
 * fails with CKPTDB_EINVAL) exclusively: a name taken by a live checkpoint
 * or by anything in the directory fails with CKPTDB_EEXISTS, and what is
 * there is left untouched.  ckptdb_dir_get_info gives temp_name equal to
 * name: the files go straight into it, written by any means.  Until the
 * commit the directory is the save's: ckptdb_dir_abort (or ckptdb_dir_free
 * without a commit) removes it with all in it, and if the process dies the
 * next open finishes the commit when every file was recorded and is whole,
 * or removes the directory and aborts.  ckptdb_latest never returns it
 * before the commit. */
CKPTDB_API int ckptdb_dir_begin_in_place(ckptdb_dir_save **out, ckptdb_catalog *db, const char *kind, int64_t epoch,
                                         int64_t step, const ckptdb_save_options *opts);
/* Commit a save begun in place with what its directory holds: every entry
 * must be a regular file with a valid name (a subdirectory, a link, a
 * fifo...: CKPTDB_EINVAL naming it) and there must be one at least
 * (CKPTDB_EINVAL), checked before anything changes: the save stays open.
 * Each file is fsynced and read back to hash it (rank 0), the files
 * recorded, the directory and the checkpoint directory fsynced, and the
 * checkpoint marked complete with rotation, as ckptdb_dir_commit.
 * metadata (a JSON object, as ckptdb_save_options.metadata), when not NULL,
 * replaces the begin's in the transaction that marks it complete, so that
 * retention by a metric sees it; NULL keeps the begin's.  On a save not
 * begun in place: CKPTDB_EMISUSE (and ckptdb_dir_commit on one begun in
 * place, too). */
CKPTDB_API int ckptdb_dir_commit_in_place(ckptdb_entry *out, ckptdb_dir_save *save, const char *metadata);

/* ------------------------------------------------------------------------ */
/* Finding checkpoints                                                       */
/* ------------------------------------------------------------------------ */

#define CKPTDB_VERIFY_FULL 0x0u /* default: size and XXH3-128 of every file */
#define CKPTDB_VERIFY_SIZE 0x1u /* only that the files exist with the recorded size */
#define CKPTDB_VERIFY_NONE 0x2u /* trust the catalog */

/* The newest complete checkpoint ("newest" = most recently committed),
 * of the given kind if kind is not NULL.  Unless CKPTDB_VERIFY_NONE, its
 * files are verified; one that fails is marked corrupt (an event is logged)
 * and the next newest is tried.  CKPTDB_ENOTFOUND when none remains. */
CKPTDB_API int ckptdb_latest(ckptdb_entry *out, ckptdb_catalog *db, const char *kind, unsigned int verify_flags);

/* One checkpoint by id or by name (any status; for a name, the newest row
 * that has it).  CKPTDB_ENOTFOUND if none. */
CKPTDB_API int ckptdb_get(ckptdb_entry *out, ckptdb_catalog *db, int64_t id);
CKPTDB_API int ckptdb_get_by_name(ckptdb_entry *out, ckptdb_catalog *db, const char *name);

/* Record that this process resumed from checkpoint id (the run row's
 * resumed_from, and a "resumed" event). */
CKPTDB_API int ckptdb_mark_resumed(ckptdb_catalog *db, int64_t id);

typedef struct ckptdb_filter {
    unsigned int version;     /* CKPTDB_FILTER_VERSION */
    unsigned int status_mask; /* OR of CKPTDB_STATUS_BIT(s); 0: every status */
    const char *kind;         /* NULL: every kind; else a valid kind (CKPTDB_EINVAL) */
} ckptdb_filter;

#define CKPTDB_FILTER_VERSION 1
#define CKPTDB_FILTER_INIT \
    { CKPTDB_FILTER_VERSION, 0u, NULL }

/* Callback for ckptdb_list; a non-zero return stops the listing
 * (CKPTDB_ECALLBACK, see CONVENTIONS). */
typedef int (*ckptdb_entry_cb)(const ckptdb_entry *entry, void *payload);

/* Call cb for every matching checkpoint, oldest id first.  filter NULL: all. */
CKPTDB_API int ckptdb_list(ckptdb_catalog *db, const ckptdb_filter *filter, ckptdb_entry_cb cb, void *payload);

typedef struct ckptdb_cursor ckptdb_cursor;
/* A cursor over the same rows as ckptdb_list.  It holds no transaction
 * open between calls. */
CKPTDB_API int ckptdb_cursor_open(ckptdb_cursor **out, ckptdb_catalog *db, const ckptdb_filter *filter);
/* Fill the next entry: CKPTDB_OK, or CKPTDB_DONE after the last one. */
CKPTDB_API int ckptdb_cursor_next(ckptdb_entry *out, ckptdb_cursor *cursor);
CKPTDB_API void ckptdb_cursor_free(ckptdb_cursor *cursor);

/* ------------------------------------------------------------------------ */
/* Verifying and reading                                                     */
/* ------------------------------------------------------------------------ */

/* Verify checkpoint id (complete or corrupt) by size and XXH3-128 of every
 * file.  A complete one that fails is marked corrupt (CKPTDB_ECORRUPT); a
 * corrupt one whose files verify again (restored from a copy) is marked
 * complete again.  Any other status: CKPTDB_EINVAL. */
CKPTDB_API int ckptdb_verify(ckptdb_catalog *db, int64_t id);

/* Called after each checkpoint ckptdb_verify_all checked; result is
 * CKPTDB_OK or CKPTDB_ECORRUPT (or another error).  Non-zero stops
 * (CKPTDB_ECALLBACK). */
typedef int (*ckptdb_verify_cb)(const ckptdb_entry *entry, int result, void *payload);

/* Verify every complete checkpoint.  Returns CKPTDB_OK when all verify,
 * CKPTDB_ECORRUPT when at least one did not (those are marked corrupt).
 * out_checked / out_corrupt may be NULL.  cb may be NULL. */
CKPTDB_API int ckptdb_verify_all(int64_t *out_checked, int64_t *out_corrupt, ckptdb_catalog *db, ckptdb_verify_cb cb,
                                 void *payload);

typedef struct ckptdb_reader ckptdb_reader;
/* Open complete checkpoint id for reading (its first file).  The file is
 * opened without following symlinks, relative to the directory. */
CKPTDB_API int ckptdb_reader_open(ckptdb_reader **out, ckptdb_catalog *db, int64_t id);
/* As ckptdb_reader_open, for the file of the given rank of a sharded
 * checkpoint (CKPTDB_ENOTFOUND when it has no such rank). */
CKPTDB_API int ckptdb_reader_open_rank(ckptdb_reader **out, ckptdb_catalog *db, int64_t id, int64_t rank);
/* As ckptdb_reader_open, for the file of that name (for a directory
 * checkpoint, a name inside the directory; CKPTDB_ENOTFOUND when it has no
 * such file). */
CKPTDB_API int ckptdb_reader_open_file(ckptdb_reader **out, ckptdb_catalog *db, int64_t id, const char *name);
/* Read up to cap bytes; *out_len is 0 at the end.  When the end is reached
 * the size and checksum are compared with the catalog: a mismatch returns
 * CKPTDB_ECORRUPT and marks the checkpoint corrupt. */
CKPTDB_API int ckptdb_reader_read(size_t *out_len, ckptdb_reader *reader, void *buf, size_t cap);
CKPTDB_API void ckptdb_reader_close(ckptdb_reader *reader);

/* For a caller that opens a checkpoint file itself to load it (a Python
 * trainer handing the file to torch.load): the same ownership rule the
 * library applies to the files it reads (see CKPTDB_OPEN_TRUST_SHARED), on
 * the descriptor fd the caller opened (open it with O_NOFOLLOW, relative to
 * the directory).  flags: 0, or CKPTDB_OPEN_TRUST_SHARED to trust files of
 * other users.  CKPTDB_OK when fd is a regular file this process may trust;
 * CKPTDB_EUNTRUSTED when another user than the effective one or root owns
 * it; CKPTDB_EINVAL when fd is not a regular file or flags has other bits.
 * path only names the file in the message (NULL: "fd <n>"). */
CKPTDB_API int ckptdb_check_trusted_fd(int fd, const char *path, unsigned int flags);

/* ------------------------------------------------------------------------ */
/* Retention, pruning and pins                                               */
/* ------------------------------------------------------------------------ */

/* Keep the newest `count` complete checkpoints of `kind` (-1: all of them). */
typedef struct ckptdb_keep_kind {
    unsigned int version; /* CKPTDB_KEEP_KIND_VERSION */
    const char *kind;
    int count;
} ckptdb_keep_kind;

#define CKPTDB_KEEP_KIND_VERSION 1
/* CKPTDB_KEEP_KIND("epoch", 5): one initialised element. */
#define CKPTDB_KEEP_KIND(kind, count) \
    { CKPTDB_KEEP_KIND_VERSION, (kind), (count) }

#define CKPTDB_BEST_MIN 0 /* smaller metric is better (loss) */
#define CKPTDB_BEST_MAX 1 /* larger metric is better (accuracy) */

/* A retention policy is data.  A complete checkpoint survives a prune if any
 * rule keeps it; these are never deleted, whatever the rules say: the newest
 * complete checkpoint, pinned ones, the best K, the one a live run resumed
 * from until that run commits a newer one, and saves in flight.  The byte
 * budget deletes the oldest checkpoints that no protection covers (rules
 * notwithstanding) until the directory fits.  Corrupt checkpoints are kept
 * (quarantined) unless prune_corrupt asks for them. */
typedef struct ckptdb_retention {
    unsigned int version;              /* CKPTDB_RETENTION_VERSION */
    const ckptdb_keep_kind *keep_last; /* NULL: the defaults ckptdb_retention_init lists */
    size_t keep_last_count;
    int keep_last_default;         /* kinds not listed: -1 keeps all (default), K >= 0 keeps K */
    int64_t keep_every_n_epochs;   /* kind "epoch" with epoch % N == 0 is a milestone; 0: off */
    int64_t keep_interval_seconds; /* keep the first checkpoint committed in each interval; 0: off */
    const char *best_metric;       /* metadata key (dots for nesting, e.g. "val.loss"); NULL: off */
    int best_mode;                 /* CKPTDB_BEST_MIN or CKPTDB_BEST_MAX */
    int best_k;                    /* how many best to protect (>= 1 when best_metric is set) */
    int64_t max_bytes;             /* byte budget for all checkpoint files; 0: none */
    /* Version 2: delete corrupt checkpoints too (rule "corrupt").  Each is
     * hashed again first: one whose bytes verify now is complete again, one
     * that cannot be read is kept; only a confirmed mismatch is deleted.
     * Only ckptdb_prune honours it; rotation after a commit never deletes a
     * corrupt checkpoint.  0 (default): corrupt checkpoints are quarantined,
     * their files kept for inspection. */
    int prune_corrupt;
} ckptdb_retention;

#define CKPTDB_RETENTION_VERSION 2
#define CKPTDB_RETENTION_INIT \
    { CKPTDB_RETENTION_VERSION, NULL, 0, -1, 0, 0, NULL, CKPTDB_BEST_MIN, 1, 0, 0 }
/* The default policy: CKPTDB_RETENTION_INIT, with keep_last pointing at the
 * library's default list (epoch 5, time 3, preempt 0, manual 0; memory of
 * the library, valid while it is loaded), so a binding reads the defaults
 * instead of repeating them.  Without a policy, prune uses the same. */
CKPTDB_API int ckptdb_retention_init(ckptdb_retention *policy, unsigned int version);

/* Set (copy) the handle's policy; NULL removes it.  With a policy, every
 * successful commit is followed by a prune (never before the commit, never
 * inside it; a failure of that prune is logged as a "prune_failed" event
 * and does not fail the commit).  With a byte budget, ckptdb_save_begin
 * first makes room for the expected size (the last size of that kind) and
 * fails with CKPTDB_ENOSPC, changing nothing, when only protected
 * checkpoints are left to delete.  Invalid values: CKPTDB_EINVAL. */
CKPTDB_API int ckptdb_set_retention(ckptdb_catalog *db, const ckptdb_retention *policy);

/* One checkpoint a prune deletes (or would delete, in a dry run). */
typedef struct ckptdb_prune_item {
    size_t struct_size; /* set by the library */
    int64_t id;
    const char *name;
    int64_t size;
    const char *rule; /* which rule let it go: "keep_last:epoch=5", "budget", "corrupt" */
} ckptdb_prune_item;

typedef int (*ckptdb_prune_cb)(const ckptdb_prune_item *item, void *payload);

/* Apply policy (NULL: the handle's; with neither, the default policy).  The
 * victims are chosen by one query in one transaction and marked pruned with
 * their rule; then their files are unlinked, the directory is fsynced and
 * the rows record the deletion time.  dry_run returns the same plan and
 * changes nothing.  cb (may be NULL) sees every victim once the prune is
 * done (stopping it stops only the report); out_count and out_bytes (may be
 * NULL) receive the totals. */
CKPTDB_API int ckptdb_prune(int64_t *out_count, int64_t *out_bytes, ckptdb_catalog *db, const ckptdb_retention *policy,
                            int dry_run, ckptdb_prune_cb cb, void *payload);

/* Pin (1) or unpin (0) a checkpoint: pinned ones are never pruned. */
CKPTDB_API int ckptdb_pin(ckptdb_catalog *db, int64_t id, int pinned);
CKPTDB_API int ckptdb_pin_by_name(ckptdb_catalog *db, const char *name, int pinned);

/* Remove one checkpoint at the caller's word (a file or a directory
 * checkpoint): a complete or corrupt, unpinned checkpoint is marked pruned
 * with the rule "removed" (and its "pruned" event) in one transaction, then
 * its files are unlinked as a prune's are (only the files the catalog
 * recorded, never through a link).  A pinned checkpoint, or one writing,
 * aborted or already pruned, is refused with CKPTDB_EINVAL naming why, and
 * nothing changes; an unknown id or name is CKPTDB_ENOTFOUND. */
CKPTDB_API int ckptdb_remove(ckptdb_catalog *db, int64_t id);
CKPTDB_API int ckptdb_remove_by_name(ckptdb_catalog *db, const char *name);

/* Record how far this run has trained (for "steps lost to preemption"). */
CKPTDB_API int ckptdb_run_progress(ckptdb_catalog *db, int64_t epoch, int64_t step);

/* ------------------------------------------------------------------------ */
/* History: files, events, runs                                              */
/* ------------------------------------------------------------------------ */

/* One file of a checkpoint (one per rank for a sharded save; for a directory
 * checkpoint, each of its files: name inside the directory, path inside it). */
typedef struct ckptdb_file {
    size_t struct_size;
    int64_t rank;
    const char *name;
    const char *path;     /* absolute; "" when the stored name is invalid */
    int64_t size;         /* -1 while unknown */
    const char *checksum; /* "" while unknown */
} ckptdb_file;

typedef int (*ckptdb_file_cb)(const ckptdb_file *file, void *payload);
/* Every file of checkpoint id, by rank, then name.  CKPTDB_ENOTFOUND for an unknown id. */
CKPTDB_API int ckptdb_files(ckptdb_catalog *db, int64_t id, ckptdb_file_cb cb, void *payload);

/* Disk usage: the bytes of every file the catalog wrote and has not deleted,
 * per kind and status (complete; corrupt; writing, with the bytes its files
 * were sealed with; pruned whose unlink is still pending), as the catalog's
 * view disk_usage defines it; `ckptdb du` prints it. */
typedef struct ckptdb_usage {
    size_t struct_size;
    const char *kind;
    int status; /* CKPTDB_STATUS_* */
    int64_t checkpoints;
    int64_t bytes;
} ckptdb_usage;

typedef int (*ckptdb_usage_cb)(const ckptdb_usage *row, void *payload);
/* Every row, by kind then status.  A non-zero return from cb stops the call,
 * which returns that value. */
CKPTDB_API int ckptdb_disk_usage(ckptdb_catalog *db, ckptdb_usage_cb cb, void *payload);

/* One row of the append-only event log. */
typedef struct ckptdb_event {
    size_t struct_size;
    int64_t id;
    const char *at;        /* UTC ISO-8601 */
    int64_t run_id;        /* 0 if none */
    int64_t checkpoint_id; /* 0 if none */
    const char *event;
    const char *detail;
} ckptdb_event;

typedef int (*ckptdb_event_row_cb)(const ckptdb_event *event, void *payload);
/* Events, oldest first; checkpoint_id / run_id 0 means any. */
CKPTDB_API int ckptdb_events(ckptdb_catalog *db, int64_t checkpoint_id, int64_t run_id, ckptdb_event_row_cb cb,
                             void *payload);

/* One process that wrote to the catalog: saved, resumed, reported
 * progress, pruned, pinned or recovered. */
typedef struct ckptdb_run {
    size_t struct_size;
    int64_t id;
    const char *host;
    int64_t pid;
    const char *started_at;
    const char *ended_at;     /* "" while running or unknown */
    const char *exit_reason;  /* "clean", "preempted", "requeued", "crashed", or "" */
    const char *slurm_job_id; /* "" when not under Slurm */
    const char *slurm_array_job_id;
    const char *slurm_array_task_id;
    int64_t slurm_restart_count; /* -1 when not set */
    int64_t resumed_from;        /* checkpoint id, 0 if none */
    int64_t last_step;           /* furthest step known (progress or any save), -1 if none */
    int64_t last_saved_step;     /* step of its newest committed save (or of resumed_from), -1 if none */
    int64_t saves;               /* committed saves */
    int64_t steps_lost;          /* last_step - last_saved_step for a run that did not end clean
                                        (preempted, requeued, crashed); 0 otherwise */
} ckptdb_run;

typedef int (*ckptdb_run_cb)(const ckptdb_run *run, void *payload);
/* Every run, oldest first. */
CKPTDB_API int ckptdb_runs(ckptdb_catalog *db, ckptdb_run_cb cb, void *payload);

/* Progress of a long operation: done of total bytes; non-zero stops it
 * (CKPTDB_ECALLBACK). */
typedef int (*ckptdb_progress_cb)(int64_t done, int64_t total, void *payload);

/* ckptdb_verify with progress reports while hashing (cb may be NULL). */
CKPTDB_API int ckptdb_verify_progress(ckptdb_catalog *db, int64_t id, ckptdb_progress_cb cb, void *payload);

/* ------------------------------------------------------------------------ */
/* Checking and repairing a directory                                        */
/* ------------------------------------------------------------------------ */

/* One finding of ckptdb_fsck. kind is one of
 *   "temp_file"     a leftover temp file of the library (removed by repair)
 *   "missing_file"  a complete checkpoint whose file is missing (marked corrupt by repair)
 *   "size_mismatch" a complete checkpoint whose file has another size (marked corrupt by repair)
 *   "unknown_file"  a file the catalog does not know (reported, never deleted)
 *   "pending_prune" a pruned checkpoint whose file is still there (unlinked by repair)
 *   "writing"       a save in flight by a live process (left alone)
 * A temp file left by a save whose process is gone is a "temp_file" with its
 * checkpoint_id; repair first runs recovery, which aborts such saves.
 * action says what repair did ("" in a check-only run). */
typedef struct ckptdb_fsck_item {
    size_t struct_size;
    const char *kind;
    const char *name;
    int64_t checkpoint_id; /* 0 if none */
    const char *detail;
    const char *action;
} ckptdb_fsck_item;

typedef int (*ckptdb_fsck_cb)(const ckptdb_fsck_item *item, void *payload);

/* Check the directory against the catalog by names and sizes (checksums are
 * ckptdb_verify_all's job).  With repair, fix what can be fixed safely: files
 * the catalog does not know are never deleted.  *out_problems (may be NULL)
 * receives the number of findings other than "writing".  cb (may be NULL)
 * sees every finding once the check (and repair) is done. */
CKPTDB_API int ckptdb_fsck(int64_t *out_problems, ckptdb_catalog *db, int repair, ckptdb_fsck_cb cb, void *payload);

/* One file ckptdb_rebuild or ckptdb_adopt found.  kind is "rebuilt" (a
 * row was added for it by ckptdb_rebuild), "adopted" (the same, by
 * ckptdb_adopt) or "unknown_file" (not a checkpoint file: left alone).
 * checkpoint_id is the new row's id (0 for an unknown file); action says
 * what was done ("added", "added, quarantined" for a file whose bytes are
 * not a whole checkpoint, "" for an unknown file). */
typedef struct ckptdb_rebuild_item {
    size_t struct_size;
    const char *kind;
    const char *name;
    int64_t checkpoint_id; /* 0 if none */
    const char *detail;
    const char *action;
} ckptdb_rebuild_item;

typedef int (*ckptdb_rebuild_cb)(const ckptdb_rebuild_item *item, void *payload);

/* What `ckptdb fsck DIR [--repair]` does, whole.  A lost or unreadable
 * catalog (the directory there) is the finding "catalog_missing" or
 * "catalog_unreadable" and, with repair, is rebuilt (ckptdb_rebuild; its
 * items follow, *out_rebuilt is 1).  The check opens the catalog read-only,
 * so that nothing, recovery included, changes what it reports; with repair
 * a read-write open (and its recovery) and ckptdb_fsck with repair follow,
 * and each finding of the check carries its outcome in action ("removed by
 * recovery on open", "settled by recovery on open", or the repair's).
 * opts: flags CKPTDB_OPEN_TRUST_SHARED and CKPTDB_OPEN_RESERVE apply to
 * every open; READONLY and NO_CREATE are set as said.  Any other failure to
 * open is returned.  *out_problems (may be NULL): the findings that are
 * problems. */
CKPTDB_API int ckptdb_fsck_dir(int64_t *out_problems, int *out_rebuilt, const char *dir,
                               const ckptdb_open_options *opts, int repair, ckptdb_fsck_cb cb, void *payload);

/* Rebuild a catalog for dir from the checkpoint files present, when the
 * catalog is lost, empty or unreadable.  The new catalog is built whole under
 * a temp name and installed by one rename: killed at any point, dir has its
 * old catalog or the whole new one.  An existing catalog file stays beside
 * it as "<catalog>.broken-<UTC time>" (with its -wal, -shm), never
 * overwritten.  Every regular file with a checkpoint's extension (.pt .pth
 * .ckpt .bin .safetensors .distcp, and a regular last link) is hashed; one
 * that is a zip archive (torch's format) must be whole by its
 * end-of-central-directory record, else its row is "corrupt" (quarantined,
 * never resumed).  Rows follow the files' modification times, then names (the
 * newest file is the newest checkpoint: the only order left without a
 * catalog), which each row's metadata ("adopted") and event record.  Default
 * names (epoch_010.pt, step_000500.pt, ...) give kind, epoch and step;
 * others get kind "adopted".  Every row is pinned: kept out of rotation until
 * the user releases it (ckptdb_pin(..., 0)).  Other files are reported as
 * "unknown_file" and left alone.  A flat subdirectory that looks like a
 * checkpoint (holding such a file or DCP's .metadata) becomes one directory
 * checkpoint, every file hashed (a DCP directory without its metadata is
 * "corrupt"); a nested or linked one is reported and left alone, never
 * followed.  cb (may be NULL) sees every file or directory, with kind
 * "rebuilt" or "unknown_file".  opts: as for ckptdb_open (NULL: defaults). */
CKPTDB_API int ckptdb_rebuild(int64_t *out_rows, const char *dir, const ckptdb_open_options *opts, ckptdb_rebuild_cb cb,
                              void *payload);

/* Adopt a directory written without ckptdb (torch.save to epoch_N.pt and a
 * regular last.pt, say): builds its catalog from the files there exactly as
 * ckptdb_rebuild does (hashed, zip archives checked whole, pinned, ordered by
 * modification time and name, recorded), with kind "adopted" on cb's items.
 * CKPTDB_EEXISTS, changing nothing, where dir already has a catalog. */
CKPTDB_API int ckptdb_adopt(int64_t *out_rows, const char *dir, const ckptdb_open_options *opts, ckptdb_rebuild_cb cb,
                            void *payload);

/* ------------------------------------------------------------------------ */
/* Sync to shared storage                                                    */
/* ------------------------------------------------------------------------ */

/* What ckptdb_sync did with one checkpoint of src.  kind is "copied",
 * "present" (dst already has it), "deleted" (pruned in dst, with
 * delete_pruned), "failed", "skipped" (src pruned it meanwhile) or "kept"
 * (nothing deleted because a copy failed; name "" and checkpoint_id 0).
 * name is its file name (rank 0's), checkpoint_id its id in src. */
typedef struct ckptdb_sync_item {
    size_t struct_size;
    const char *kind;
    const char *name;
    int64_t checkpoint_id; /* in src; 0 if none */
    const char *detail;
} ckptdb_sync_item;

typedef int (*ckptdb_sync_cb)(const ckptdb_sync_item *item, void *payload);

typedef struct ckptdb_sync_options {
    unsigned int version;        /* CKPTDB_SYNC_OPTIONS_VERSION */
    int delete_pruned;           /* remove from dst the checkpoints src no longer keeps */
    ckptdb_progress_cb progress; /* bytes copied and verified of all to copy; NULL: none */
    void *progress_payload;
    ckptdb_sync_cb on_item; /* every checkpoint, as it is done; NULL: none */
    void *item_payload;
} ckptdb_sync_options;

#define CKPTDB_SYNC_OPTIONS_VERSION 1
#define CKPTDB_SYNC_OPTIONS_INIT \
    { CKPTDB_SYNC_OPTIONS_VERSION, 0, NULL, NULL, NULL, NULL }

/* Merge every complete checkpoint of src that dst lacks into dst's own
 * catalog (dst and its catalog are created if missing): each is copied
 * through locked temp files, fsynced, verified by reading the copy back, and
 * committed on its own (a directory checkpoint as a directory save of the
 * same name, file by file); then dst follows src's commit order and times.
 * Killed at any point, dst is an ordinary catalog (recovery finishes or
 * aborts the copy in flight) and the next run goes on.  Never replaced in
 * dst: a different file under the same name or one dst's catalog does not
 * own (item "failed", left alone, no row), a checkpoint committed in dst
 * directly (the call fails with CKPTDB_EEXISTS naming them, changing
 * nothing), a save in flight in dst (CKPTDB_EBUSY, changing nothing).  A
 * checkpoint src prunes while the sync runs is item "skipped".  With
 * delete_pruned, dst's copy of a checkpoint src pruned by one of its rules is
 * pruned in dst (item "deleted"): never one src found corrupt, never dst's
 * newest or a pinned one, and nothing when any copy failed (item "kept").  A
 * checkpoint whose source bytes fail their checksum is item "failed" and the
 * call returns CKPTDB_ECORRUPT after the others were copied.  Refuses when
 * dst is inside src or src inside dst (CKPTDB_EINVAL).  dst on a network
 * file system gets a rollback journal.  out_copied / out_bytes may be NULL. */
CKPTDB_API int ckptdb_sync(int64_t *out_copied, int64_t *out_bytes, const char *src, const char *dst,
                           const ckptdb_sync_options *opts);

#ifdef CKPTDB_EXPERIMENTAL
/* Experimental tier (see CONVENTIONS): preemption signals and save triggers. */

/* ------------------------------------------------------------------------ */
/* Preemption signals (process-wide)                                         */
/* ------------------------------------------------------------------------ */

/* Install handlers for signals[0..count) (NULL: SIGTERM, SIGINT, SIGUSR1).
 * A handler only records the signal in an async-signal-safe flag; nothing is
 * saved inside it.  With chain != 0 a previous handler that was a function
 * is called after the flag is set (a previous SIG_DFL or SIG_IGN is not).
 * Installing again replaces the set.  Not thread-safe against itself. */
CKPTDB_API int ckptdb_signals_install(const int *signals, size_t count, int chain);
/* Put back the handlers that were there before ckptdb_signals_install. */
CKPTDB_API int ckptdb_signals_restore(void);
/* The first preemption signal received (or requested), 0 if none.
 * Async-signal-safe. */
CKPTDB_API int ckptdb_preempt_requested(void);
/* Set the flag by hand (a job scheduler's API, tests); signo > 0. */
CKPTDB_API void ckptdb_preempt_request(int signo);
CKPTDB_API void ckptdb_preempt_clear(void);

/* ------------------------------------------------------------------------ */
/* Save triggers                                                             */
/* ------------------------------------------------------------------------ */

typedef struct ckptdb_trigger ckptdb_trigger;

/* Seconds on a monotonic clock (tests inject their own). */
typedef double (*ckptdb_clock_fn)(void *payload);

typedef struct ckptdb_trigger_options {
    unsigned int version;  /* CKPTDB_TRIGGER_OPTIONS_VERSION */
    int64_t every_epochs;  /* save at the end of every Nth epoch; 0: off */
    int64_t every_steps;   /* save when step % N == 0; 0: off */
    double every_seconds;  /* save when this long has passed since the last save (or start, or resume); 0: off */
    int watch_signals;     /* non-zero: answer "preempt" once ckptdb_preempt_requested() */
    ckptdb_clock_fn clock; /* NULL: CLOCK_MONOTONIC */
    void *clock_payload;
} ckptdb_trigger_options;

#define CKPTDB_TRIGGER_OPTIONS_VERSION 1
/* The production default: every 5 epochs or every 15 minutes, whichever
 * comes first, and always on preemption. */
#define CKPTDB_TRIGGER_OPTIONS_INIT \
    { CKPTDB_TRIGGER_OPTIONS_VERSION, 5, 0, 900.0, 1, NULL, NULL }
CKPTDB_API int ckptdb_trigger_options_init(ckptdb_trigger_options *opts, unsigned int version);

/* NULL opts: the production default.  Negative or non-finite values: CKPTDB_EINVAL. */
CKPTDB_API int ckptdb_trigger_new(ckptdb_trigger **out, const ckptdb_trigger_options *opts);
CKPTDB_API void ckptdb_trigger_free(ckptdb_trigger *trigger);

/* Should the loop save now, after finishing `step` (global) in `epoch`?
 * epoch_end is non-zero when `epoch` has just completed (epochs count from
 * 1: with every_epochs N, the ends of epochs N, 2N, ... save).  Negative
 * epoch or step: CKPTDB_EINVAL.  *out_kind is a
 * static string ("preempt", "epoch", "step", "time"; in that order of
 * precedence) or NULL for no save.  Never answers a save twice for the step
 * last recorded with ckptdb_trigger_saved or ckptdb_trigger_resumed. */
CKPTDB_API int ckptdb_trigger_check(const char **out_kind, ckptdb_trigger *trigger, int64_t epoch, int64_t step,
                                    int epoch_end);
/* A save of `step` was committed: restart the time interval. */
CKPTDB_API int ckptdb_trigger_saved(ckptdb_trigger *trigger, int64_t step);
/* The loop resumed at `step`: no save for it, and no time save right away. */
CKPTDB_API int ckptdb_trigger_resumed(ckptdb_trigger *trigger, int64_t step);
/* Non-zero once the loop should stop: preemption was requested (and the
 * trigger watches signals). */
CKPTDB_API int ckptdb_trigger_should_stop(const ckptdb_trigger *trigger);

#endif /* CKPTDB_EXPERIMENTAL */

#ifdef __cplusplus
}
#endif

#endif /* CKPTDB_H */
