-- Disk usage has one definition, this view (docs/DESIGN.md, "Disk usage");
-- `ckptdb du` and sql/cookbook/disk_use_per_kind.sql read it.
--
-- Counted: every checkpoint whose files the catalog wrote and has not yet
-- deleted, which is what du would add up:
--   complete;
--   corrupt (its files stay, for inspection, until a prune removes them);
--   writing (a save in flight: the bytes its files were sealed with, 0 for
--     a file still being written, whose size the catalog learns at the seal);
--   pruned with its unlink still pending (deleted_at not set).
-- Not counted: aborted and deleted checkpoints (their files are gone), and
-- files the catalog does not know.
-- Bytes: the sum of the checkpoint's file rows (every rank of a sharded
-- save), else its own size.
DROP VIEW disk_usage;
CREATE VIEW disk_usage AS
    SELECT kind, status, count(*) AS checkpoints, sum(bytes) AS bytes
      FROM (SELECT c.kind, c.status,
                   coalesce((SELECT sum(f.size) FROM files f WHERE f.checkpoint_id = c.id), c.size, 0) AS bytes
              FROM checkpoints c
             WHERE c.status IN ('complete', 'corrupt', 'writing')
                OR (c.status = 'pruned' AND c.deleted_at IS NULL))
     GROUP BY kind, status
     ORDER BY bytes DESC, kind, status;
