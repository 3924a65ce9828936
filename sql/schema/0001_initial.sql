-- ckptdb catalog, schema version 1.
-- One catalog per checkpoint directory. Times are UTC ISO-8601 text with
-- milliseconds ("2026-11-27T02:30:12.345Z"), so they sort as text and work
-- with SQLite's date functions.

-- One row per process that opened the catalog to save.
CREATE TABLE runs (
    id                  INTEGER PRIMARY KEY,
    host                TEXT    NOT NULL,
    boot_id             TEXT    NOT NULL,   -- /proc/sys/kernel/random/boot_id: a reboot ends every run
    pid                 INTEGER NOT NULL,
    proc_start          INTEGER NOT NULL,   -- start time of pid in clock ticks since boot: guards against pid reuse
    started_at          TEXT    NOT NULL,
    ended_at            TEXT,
    slurm_job_id        TEXT,
    slurm_array_job_id  TEXT,
    slurm_array_task_id TEXT,
    slurm_restart_count INTEGER,
    slurm_procid        INTEGER,
    resumed_from        INTEGER REFERENCES checkpoints(id),
    last_epoch          INTEGER,            -- progress the trainer reported (ckptdb_run_progress)
    last_step           INTEGER,
    progress_at         TEXT,               -- when the progress was reported
    exit_reason         TEXT                -- clean, preempted, crashed (found by a later open)
);
CREATE INDEX runs_open ON runs(id) WHERE ended_at IS NULL;

CREATE TABLE checkpoints (
    id           INTEGER PRIMARY KEY,
    name         TEXT    NOT NULL,          -- file name relative to the directory (first file for a sharded save)
    kind         TEXT    NOT NULL,
    epoch        INTEGER NOT NULL CHECK (epoch >= 0),
    step         INTEGER NOT NULL CHECK (step >= 0),
    size         INTEGER,                   -- bytes in all files, known once sealed
    checksum     TEXT,                      -- XXH3-128 as xxh128sum prints it (single-file saves)
    status       TEXT    NOT NULL DEFAULT 'writing'
                 CHECK (status IN ('writing', 'complete', 'corrupt', 'aborted', 'pruned')),
    created_at   TEXT    NOT NULL,
    committed_at TEXT,
    deleted_at   TEXT,                      -- pruned: NULL while the unlink is pending
    run_id       INTEGER REFERENCES runs(id),
    pinned       INTEGER NOT NULL DEFAULT 0 CHECK (pinned IN (0, 1)),
    metadata     TEXT    NOT NULL DEFAULT '{}' CHECK (json_valid(metadata)),
    commit_seq   INTEGER UNIQUE,            -- order of commits; "newest" means the largest
    prune_rule   TEXT                       -- which rule let a pruned checkpoint go
);

-- A name belongs to at most one live checkpoint.
CREATE UNIQUE INDEX checkpoints_live_name ON checkpoints(name)
    WHERE status IN ('writing', 'complete', 'corrupt');
-- latest() and rotation walk these backwards: index lookups, not scans.
CREATE INDEX checkpoints_complete_seq ON checkpoints(commit_seq) WHERE status = 'complete';
CREATE INDEX checkpoints_complete_kind_seq ON checkpoints(kind, commit_seq) WHERE status = 'complete';
CREATE INDEX checkpoints_writing ON checkpoints(run_id) WHERE status = 'writing';
CREATE INDEX checkpoints_corrupt ON checkpoints(id) WHERE status = 'corrupt';
CREATE INDEX checkpoints_run ON checkpoints(run_id);
CREATE INDEX checkpoints_prune_pending ON checkpoints(id) WHERE status = 'pruned' AND deleted_at IS NULL;

-- The file(s) of a checkpoint: one for an ordinary save, one per rank for a
-- sharded save. A checkpoint is complete only when every one of its files is.
CREATE TABLE files (
    checkpoint_id INTEGER NOT NULL REFERENCES checkpoints(id),
    rank          INTEGER NOT NULL DEFAULT 0 CHECK (rank >= 0),
    name          TEXT    NOT NULL,
    temp_name     TEXT,                     -- while writing: the temp file in the directory
    size          INTEGER,
    checksum      TEXT,
    PRIMARY KEY (checkpoint_id, rank)
) WITHOUT ROWID;
CREATE INDEX files_name ON files(name);

-- Append-only audit log.
CREATE TABLE events (
    id            INTEGER PRIMARY KEY,
    at            TEXT    NOT NULL,
    run_id        INTEGER REFERENCES runs(id),
    checkpoint_id INTEGER REFERENCES checkpoints(id),
    event         TEXT    NOT NULL,         -- begun, committed, aborted, corrupt, restored, recovered,
                                            -- resumed, pruned, pinned, unpinned, prune_failed, run_ended
    detail        TEXT
);
CREATE INDEX events_checkpoint ON events(checkpoint_id);

-- Views for people at the sqlite3 prompt.
CREATE VIEW latest_complete AS
    SELECT id, name, kind, epoch, step, size, checksum, committed_at, metadata
    FROM checkpoints WHERE status = 'complete'
    ORDER BY commit_seq DESC LIMIT 1;

CREATE VIEW history AS
    SELECT c.id, c.name, c.kind, c.epoch, c.step, c.size, c.status, c.pinned,
           c.created_at, c.committed_at, c.deleted_at, c.prune_rule,
           r.host, r.pid, r.slurm_job_id, c.metadata
    FROM checkpoints c LEFT JOIN runs r ON r.id = c.run_id
    ORDER BY c.id;

CREATE VIEW disk_usage AS
    SELECT kind, count(*) AS checkpoints, sum(size) AS bytes
    FROM checkpoints WHERE status IN ('complete', 'corrupt')
    GROUP BY kind ORDER BY bytes DESC;

CREATE VIEW run_history AS
    SELECT r.id, r.host, r.pid, r.started_at, r.ended_at, r.exit_reason,
           r.slurm_job_id, r.slurm_array_job_id, r.slurm_array_task_id, r.slurm_restart_count,
           r.slurm_procid, r.resumed_from, r.last_step,
           (SELECT count(*) FROM checkpoints c WHERE c.run_id = r.id AND c.status <> 'aborted') AS saves
    FROM runs r ORDER BY r.id;
