-- Answers: what did one run (one process that opened the catalog to save)
-- do? Three result sets:
--   1. the run's row: host, pid, Slurm job, start and end, exit_reason
--      (clean, preempted, requeued, crashed; empty while it is open or its end is
--      unknown), the checkpoint it resumed from, the progress it reported,
--      and how many saves it committed / had aborted / left writing;
--   2. every checkpoint it saved (any status), oldest first;
--   3. the events of the run, and the events about its checkpoints written
--      by other runs (a recovery that aborted its save, a prune that deleted
--      one): by_run says which run wrote each event.
--
-- Run (the newest run when @run is not set):
--   sqlite3 -header -column ckpts/ckptdb.sqlite < sql/cookbook/run_history.sql
--   sqlite3 -header -column ckpts/ckptdb.sqlite ".parameter set @run 3" ".read sql/cookbook/run_history.sql"
-- Every run at a glance: SELECT * FROM run_history;  (the view)

-- 1. The run.
WITH p AS (SELECT coalesce(@run, (SELECT max(id) FROM runs)) AS run)
SELECT r.id AS run, r.host, r.pid, r.slurm_job_id, r.started_at, r.ended_at, r.exit_reason,
       r.resumed_from, rc.name AS resumed_from_name, rc.step AS resumed_from_step,
       r.last_epoch, r.last_step,
       (SELECT count(*) FROM checkpoints c WHERE c.run_id = r.id AND c.committed_at IS NOT NULL) AS committed,
       (SELECT count(*) FROM checkpoints c WHERE c.run_id = r.id AND c.status = 'aborted') AS aborted,
       (SELECT count(*) FROM checkpoints c WHERE c.run_id = r.id AND c.status = 'writing') AS writing
  FROM runs r JOIN p ON r.id = p.run
  LEFT JOIN checkpoints rc ON rc.id = r.resumed_from;

-- 2. Its checkpoints.
WITH p AS (SELECT coalesce(@run, (SELECT max(id) FROM runs)) AS run)
SELECT c.id, c.name, c.kind, c.epoch, c.step, c.size, c.status, c.pinned,
       c.created_at, c.committed_at, c.deleted_at, c.prune_rule, c.metadata
  FROM checkpoints c JOIN p ON c.run_id = p.run
 ORDER BY c.id;

-- 3. Its events, and the events about its checkpoints.
WITH p AS (SELECT coalesce(@run, (SELECT max(id) FROM runs)) AS run)
SELECT e.id, e.at, e.event, e.checkpoint_id, e.run_id AS by_run, e.detail
  FROM events e, p
 WHERE e.run_id = p.run
    OR e.checkpoint_id IN (SELECT c.id FROM checkpoints c WHERE c.run_id = p.run)
 ORDER BY e.id;
