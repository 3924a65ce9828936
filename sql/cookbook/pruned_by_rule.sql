-- Answers: which checkpoints did retention prune, by which rule, when, and
-- by which run? Then: how many, and how many bytes, per rule.
--
-- prune_rule is the rule that let the checkpoint go: 'keep_last:<kind>=<K>'
-- (older than the last K of its kind), 'budget' (the byte budget), 'corrupt'
-- (a corrupt checkpoint that was not pinned). pruned_at and pruned_by_run
-- come from the 'pruned' event; deleted_at is when the file was unlinked
-- (empty while the unlink is pending: the next open finishes it). Rows
-- pruned by a version that did not record the rule show '(not recorded)'.
--
-- Run:
--   sqlite3 -header -column ckpts/ckptdb.sqlite < sql/cookbook/pruned_by_rule.sql
--
-- First result set, one row per pruned checkpoint, in the order they were
-- pruned: id, name, kind, epoch, step, size, rule, pruned_at,
-- pruned_by_run, deleted_at.
-- Second result set, one row per rule, most used first: rule, checkpoints,
-- bytes, first_pruned_at, last_pruned_at.
WITH pruned AS (
    SELECT c.id, c.name, c.kind, c.epoch, c.step, c.size,
           coalesce(c.prune_rule, '(not recorded)') AS rule,
           e.id AS event_id, e.at AS pruned_at, e.run_id AS pruned_by_run, c.deleted_at
      FROM checkpoints c
      LEFT JOIN events e ON e.id = (SELECT max(x.id) FROM events x
                                     WHERE x.checkpoint_id = c.id AND x.event = 'pruned')
     WHERE c.status = 'pruned')
SELECT id, name, kind, epoch, step, size, rule, pruned_at, pruned_by_run, deleted_at
  FROM pruned
 ORDER BY event_id IS NULL, event_id, id;

WITH pruned AS (
    SELECT coalesce(c.prune_rule, '(not recorded)') AS rule, coalesce(c.size, 0) AS size,
           (SELECT max(x.at) FROM events x WHERE x.checkpoint_id = c.id AND x.event = 'pruned') AS pruned_at
      FROM checkpoints c
     WHERE c.status = 'pruned')
SELECT rule, count(*) AS checkpoints, sum(size) AS bytes,
       min(pruned_at) AS first_pruned_at, max(pruned_at) AS last_pruned_at
  FROM pruned
 GROUP BY rule
 ORDER BY checkpoints DESC, rule;
