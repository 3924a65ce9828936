-- Answers: how much disk do the checkpoints of each kind take?
--
-- Reads the view disk_usage, the one definition of disk usage (see
-- sql/schema/0002_disk_usage.sql; `ckptdb du` reads it too): the files of
-- complete and corrupt checkpoints (corrupt ones keep their files for
-- inspection until a prune removes them), the sealed bytes of saves still
-- 'writing', and pruned checkpoints whose unlink is still pending. Bytes
-- are the sum of the checkpoint's files (every rank of a sharded save). Not
-- counted: files the catalog does not know. The last row, kind '(all)', is
-- the total. Sizes are shown in bytes and as B/KiB/MiB/GiB/TiB with one
-- decimal, as the library's messages print them.
--
-- Run:
--   sqlite3 -header -column ckpts/ckptdb.sqlite < sql/cookbook/disk_use_per_kind.sql
--
-- Columns: kind, checkpoints, complete, corrupt, writing, pending_prune,
-- bytes, size (human), share (of all bytes counted).
WITH per_kind AS (
    SELECT 0 AS total_row, kind, sum(checkpoints) AS checkpoints,
           sum(CASE WHEN status = 'complete' THEN checkpoints ELSE 0 END) AS complete,
           sum(CASE WHEN status = 'corrupt' THEN checkpoints ELSE 0 END) AS corrupt,
           sum(CASE WHEN status = 'writing' THEN checkpoints ELSE 0 END) AS writing,
           sum(CASE WHEN status = 'pruned' THEN checkpoints ELSE 0 END) AS pending_prune,
           sum(bytes) AS bytes
      FROM disk_usage GROUP BY kind
    UNION ALL
    SELECT 1, '(all)', coalesce(sum(checkpoints), 0),
           coalesce(sum(CASE WHEN status = 'complete' THEN checkpoints ELSE 0 END), 0),
           coalesce(sum(CASE WHEN status = 'corrupt' THEN checkpoints ELSE 0 END), 0),
           coalesce(sum(CASE WHEN status = 'writing' THEN checkpoints ELSE 0 END), 0),
           coalesce(sum(CASE WHEN status = 'pruned' THEN checkpoints ELSE 0 END), 0),
           coalesce(sum(bytes), 0)
      FROM disk_usage)
SELECT kind, checkpoints, complete, corrupt, writing, pending_prune, bytes,
       CASE WHEN bytes < 1024 THEN bytes || ' B'
            WHEN bytes < 1048576 THEN printf('%.1f KiB', bytes / 1024.0)
            WHEN bytes < 1073741824 THEN printf('%.1f MiB', bytes / 1048576.0)
            WHEN bytes < 1099511627776 THEN printf('%.1f GiB', bytes / 1073741824.0)
            ELSE printf('%.1f TiB', bytes / 1099511627776.0) END AS size,
       printf('%.1f%%', 100.0 * bytes / max((SELECT sum(bytes) FROM disk_usage), 1)) AS share
  FROM per_kind
 ORDER BY total_row, bytes DESC, kind;
