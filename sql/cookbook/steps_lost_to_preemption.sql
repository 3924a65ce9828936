-- Answers: how many training steps did each preemption or crash throw away?
--
-- For every run that did not end cleanly -- exit_reason 'preempted',
-- 'requeued' or 'crashed', or no exit_reason at all (still open, or on
-- another host whose liveness cannot be judged from here) while a later run
-- exists -- the steps lost are the steps it trained after its last save:
--   reached_step  the furthest step the run is known to have reached: the
--                 largest of runs.last_step (ckptdb_run_progress), the step
--                 of each of its checkpoints in any status (a save that was
--                 aborted or is left 'writing' still says the trainer got
--                 there) and the step it resumed from;
--   saved_step    the step of its newest checkpoint (by commit order) that
--                 was committed -- still complete, or since pruned or found
--                 corrupt (committed_at is set) -- or else the step of the
--                 checkpoint it resumed from, or else 0;
--   steps_lost    reached_step - saved_step.
-- A run that was preempted and made its preempt save at its last step lost
-- 0. last_save is the checkpoint saved_step comes from, and source says
-- whether the run saved it ('saved'), resumed from it ('resumed') or has
-- neither ('none').
--
-- Run:
--   sqlite3 -header -column ckpts/ckptdb.sqlite < sql/cookbook/steps_lost_to_preemption.sql
--
-- Columns: run, exit_reason ('unknown' when none is recorded),
-- reached_step, saved_step, steps_lost, last_save, source.
WITH
ended_badly AS (
    SELECT r.id, r.exit_reason, r.last_step, r.resumed_from
      FROM runs r
     WHERE (r.exit_reason IS NOT NULL AND r.exit_reason <> 'clean')
        OR (r.exit_reason IS NULL AND EXISTS (SELECT 1 FROM runs later WHERE later.id > r.id))),
saves AS (
    SELECT b.*,
           (SELECT max(c.step) FROM checkpoints c WHERE c.run_id = b.id) AS max_ckpt_step,
           (SELECT c.id FROM checkpoints c
             WHERE c.run_id = b.id AND c.committed_at IS NOT NULL
             ORDER BY c.commit_seq DESC, c.id DESC LIMIT 1) AS own_save,
           (SELECT c.step FROM checkpoints c WHERE c.id = b.resumed_from) AS resumed_step
      FROM ended_badly b),
judged AS (
    SELECT s.*,
           CASE WHEN s.own_save IS NOT NULL THEN (SELECT c.step FROM checkpoints c WHERE c.id = s.own_save)
                ELSE coalesce(s.resumed_step, 0) END AS saved_step,
           CASE WHEN s.own_save IS NOT NULL THEN s.own_save
                WHEN s.resumed_step IS NOT NULL THEN s.resumed_from END AS last_save,
           CASE WHEN s.own_save IS NOT NULL THEN 'saved'
                WHEN s.resumed_step IS NOT NULL THEN 'resumed' ELSE 'none' END AS source
      FROM saves s)
SELECT id AS run, coalesce(exit_reason, 'unknown') AS exit_reason,
       max(coalesce(last_step, 0), coalesce(max_ckpt_step, 0), coalesce(resumed_step, 0), saved_step) AS reached_step,
       saved_step,
       max(coalesce(last_step, 0), coalesce(max_ckpt_step, 0), coalesce(resumed_step, 0), saved_step) - saved_step
           AS steps_lost,
       last_save, source
  FROM judged
 ORDER BY id;
