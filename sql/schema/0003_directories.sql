-- Directory checkpoints (docs/DESIGN.md, "Directory checkpoints"): a
-- checkpoint can be a directory `name/` of files, as torch.distributed.checkpoint,
-- the Hugging Face Trainer and Orbax write them.
--
-- checkpoints.layout: 'file' (one file, or one file per rank of a sharded
--   save, each under its own name in the checkpoint directory) or 'dir' (the
--   directory `name/`; its files' rows name them inside it).
-- checkpoints.temp_name: while a directory save is in flight, the temp
--   directory its writers fill ('.ckptdb-tmp-<32 hex>.d'); cleared at the
--   commit or the abort.
ALTER TABLE checkpoints ADD COLUMN layout TEXT NOT NULL DEFAULT 'file' CHECK (layout IN ('file', 'dir'));
ALTER TABLE checkpoints ADD COLUMN temp_name TEXT;

-- A directory holds several files per rank (DCP's coordinator writes its
-- shard and the metadata), so a file row is keyed by its name within the
-- checkpoint; rank is the writing rank. The view that reads files is
-- dropped and made again around the rebuild.
DROP VIEW disk_usage;
CREATE TABLE files_v3 (
    checkpoint_id INTEGER NOT NULL REFERENCES checkpoints(id),
    rank          INTEGER NOT NULL DEFAULT 0 CHECK (rank >= 0),
    name          TEXT    NOT NULL,         -- in the directory; for layout 'dir', in `name/`
    temp_name     TEXT,                     -- while writing: the temp file in the directory
    size          INTEGER,
    checksum      TEXT,
    PRIMARY KEY (checkpoint_id, name)
) WITHOUT ROWID;
INSERT INTO files_v3 (checkpoint_id, rank, name, temp_name, size, checksum)
    SELECT checkpoint_id, rank, name, temp_name, size, checksum FROM files;
DROP TABLE files;
ALTER TABLE files_v3 RENAME TO files;
CREATE INDEX files_name ON files(name);
CREATE INDEX files_rank ON files(checkpoint_id, rank);

-- Unchanged from 0002: a directory's bytes are the sum of its file rows.
CREATE VIEW disk_usage AS
    SELECT kind, status, count(*) AS checkpoints, sum(bytes) AS bytes
      FROM (SELECT c.kind, c.status,
                   coalesce((SELECT sum(f.size) FROM files f WHERE f.checkpoint_id = c.id), c.size, 0) AS bytes
              FROM checkpoints c
             WHERE c.status IN ('complete', 'corrupt', 'writing')
                OR (c.status = 'pruned' AND c.deleted_at IS NULL))
     GROUP BY kind, status
     ORDER BY bytes DESC, kind, status;

-- The history shows each checkpoint's layout (last, so columns keep their places).
DROP VIEW history;
CREATE VIEW history AS
    SELECT c.id, c.name, c.kind, c.epoch, c.step, c.size, c.status, c.pinned,
           c.created_at, c.committed_at, c.deleted_at, c.prune_rule,
           r.host, r.pid, r.slurm_job_id, c.metadata, c.layout
    FROM checkpoints c LEFT JOIN runs r ON r.id = c.run_id
    ORDER BY c.id;
