-- Answers: which K complete checkpoints are best by a metric stored in
-- their metadata (say the lowest val_loss, or the highest val_acc)?
--
-- Parameters (all optional):
--   @metric  metadata key, dots for nesting ('eval.bleu' is
--            metadata.eval.bleu), as in the retention policy's best_metric;
--            default 'val_loss'
--   @k       how many rows; default 3
--   @mode    'min' (smaller is better, the default) or 'max'
-- Only 'complete' checkpoints are ranked (the ones that can be loaded).
-- The order is the one retention's "best K" uses: checkpoints whose metric
-- is missing or not a number (a string such as "nan", null) rank after all
-- others; ties go to the newer commit.
--
-- Run:
--   sqlite3 -header -column ckpts/ckptdb.sqlite < sql/cookbook/best_by_metric.sql
--   sqlite3 -header -column ckpts/ckptdb.sqlite ".parameter set @metric val_acc" \
--       ".parameter set @mode max" ".parameter set @k 5" ".read sql/cookbook/best_by_metric.sql"
--
-- Columns: rank, id, name, kind, epoch, step, metric (the value; empty when
-- missing), committed_at.
WITH
p AS (
    SELECT '$."' || replace(coalesce(@metric, 'val_loss'), '.', '"."') || '"' AS path,
           coalesce(@k, 3) AS k,
           lower(coalesce(@mode, 'min')) = 'max' AS larger_better),
c AS (
    SELECT c.id, c.name, c.kind, c.epoch, c.step, c.commit_seq, c.committed_at,
           json_extract(c.metadata, p.path) AS m, p.larger_better
      FROM checkpoints c, p
     WHERE c.status = 'complete'),
ranked AS (
    SELECT row_number() OVER (ORDER BY typeof(m) NOT IN ('integer', 'real'),
                                       CASE WHEN larger_better THEN -m ELSE m END,
                                       commit_seq DESC) AS rank, *
      FROM c)
SELECT rank, id, name, kind, epoch, step, m AS metric, committed_at
  FROM ranked
 WHERE rank <= (SELECT k FROM p)
 ORDER BY rank;
