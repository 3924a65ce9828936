-- Answers: how much disk do the checkpoints of each kind take?
--
-- Counts the checkpoints whose files are in the directory: 'complete' and
-- 'corrupt' (corrupt ones keep their files for inspection until a prune
-- removes them). Bytes are the sum of the checkpoint's files (every rank of
-- a sharded save), or its size when no file rows exist. Not counted: temp
-- files of saves still 'writing', pruned checkpoints whose unlink is still
-- pending (deleted_at empty), and files the catalog does not know. The
-- last row, kind '(all)', is the total. Sizes are shown in bytes and as
-- B/KiB/MiB/GiB/TiB with one decimal, as the library's messages print them.
--
-- Run:
--   sqlite3 -header -column ckpts/ckptdb.sqlite < sql/cookbook/disk_use_per_kind.sql
--
-- Columns: kind, checkpoints, complete, corrupt, bytes, size (human),
-- share (of all bytes counted).
WITH on_disk AS (
    SELECT c.kind, c.status,
           coalesce((SELECT sum(f.size) FROM files f WHERE f.checkpoint_id = c.id), c.size, 0) AS bytes
      FROM checkpoints c
     WHERE c.status IN ('complete', 'corrupt')),
per_kind AS (
    SELECT 0 AS total_row, kind, count(*) AS checkpoints,
           sum(status = 'complete') AS complete, sum(status = 'corrupt') AS corrupt, sum(bytes) AS bytes
      FROM on_disk GROUP BY kind
    UNION ALL
    SELECT 1, '(all)', count(*), coalesce(sum(status = 'complete'), 0),
           coalesce(sum(status = 'corrupt'), 0), coalesce(sum(bytes), 0)
      FROM on_disk)
SELECT kind, checkpoints, complete, corrupt, bytes,
       CASE WHEN bytes < 1024 THEN bytes || ' B'
            WHEN bytes < 1048576 THEN printf('%.1f KiB', bytes / 1024.0)
            WHEN bytes < 1073741824 THEN printf('%.1f MiB', bytes / 1048576.0)
            WHEN bytes < 1099511627776 THEN printf('%.1f GiB', bytes / 1073741824.0)
            ELSE printf('%.1f TiB', bytes / 1099511627776.0) END AS size,
       printf('%.1f%%', 100.0 * bytes / max((SELECT sum(bytes) FROM on_disk), 1)) AS share
  FROM per_kind
 ORDER BY total_row, bytes DESC, kind;
