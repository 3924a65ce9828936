-- Answers: for each kind of checkpoint (epoch, time, preempt, step, ...),
-- which is the newest good one to resume from?
--
-- "Good" means status 'complete'; "newest" means committed last (largest
-- commit_seq), the rule ckptdb_latest uses, not the largest step or the
-- newest mtime. This reads the catalog only: it does not re-hash the files,
-- so a bit flip nobody has verified yet is not seen here (ckptdb_latest
-- with CKPTDB_VERIFY_FULL is the check that does). Kinds with no complete
-- checkpoint left are not listed. The first row is the newest overall, the
-- one the latest_complete view shows.
--
-- Run:
--   sqlite3 -header -column ckpts/ckptdb.sqlite < sql/cookbook/newest_per_kind.sql
--
-- Columns: kind, id, name, epoch, step, size (bytes), committed_at, run_id
-- (the run that saved it), complete (how many complete checkpoints that
-- kind has), metadata.
WITH ranked AS (
    SELECT c.*,
           row_number() OVER (PARTITION BY kind ORDER BY commit_seq DESC) AS newest_first,
           count(*) OVER (PARTITION BY kind) AS complete_of_kind
      FROM checkpoints c
     WHERE status = 'complete')
SELECT kind, id, name, epoch, step, size, committed_at, run_id,
       complete_of_kind AS complete, metadata
  FROM ranked
 WHERE newest_first = 1
 ORDER BY commit_seq DESC;
