-- The statements the engine runs, by name (tools/embed_sql.py turns each
-- "-- name:" section into ckptdb::sql::Stmt::<name>). All values are bound
-- parameters. Times are UTC, written inline as strftime('%Y-%m-%dT%H:%M:%fZ', 'now').

-- name: run_insert
INSERT INTO runs (host, boot_id, pid, proc_start, started_at, slurm_job_id, slurm_array_job_id,
                  slurm_array_task_id, slurm_restart_count, slurm_procid)
VALUES (?1, ?2, ?3, ?4, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), ?5, ?6, ?7, ?8, ?9);

-- name: run_end
UPDATE runs SET ended_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), exit_reason = ?2
WHERE id = ?1 AND ended_at IS NULL;

-- name: run_set_resumed
UPDATE runs SET resumed_from = ?2 WHERE id = ?1;

-- name: event_insert
INSERT INTO events (at, run_id, checkpoint_id, event, detail)
VALUES (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), ?1, ?2, ?3, ?4);

-- name: name_taken
SELECT 1 FROM checkpoints
 WHERE name = ?1 AND status IN ('writing', 'complete', 'corrupt')
UNION ALL
SELECT 1 FROM files f JOIN checkpoints c ON c.id = f.checkpoint_id
 WHERE f.name = ?1 AND c.layout = 'file' AND c.status IN ('writing', 'complete', 'corrupt')
LIMIT 1;

-- name: checkpoint_insert
-- ?7 the layout ('file' or 'dir'); ?8 a directory save's temp directory (NULL for files).
INSERT INTO checkpoints (name, kind, epoch, step, status, created_at, run_id, metadata, layout, temp_name)
VALUES (?1, ?2, ?3, ?4, 'writing', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), ?5, ?6, ?7, ?8);

-- name: file_insert
INSERT INTO files (checkpoint_id, rank, name, temp_name) VALUES (?1, ?2, ?3, ?4);

-- name: file_seal
UPDATE files SET size = ?3, checksum = ?4 WHERE checkpoint_id = ?1 AND rank = ?2;

-- name: checkpoint_seal
UPDATE checkpoints SET size = ?2, checksum = ?3 WHERE id = ?1 AND status = 'writing';

-- name: checkpoint_complete
UPDATE checkpoints
   SET status = 'complete', temp_name = NULL,
       committed_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
       commit_seq = (SELECT coalesce(max(commit_seq), 0) + 1 FROM checkpoints)
 WHERE id = ?1 AND status = 'writing';

-- name: checkpoint_set_metadata
-- An in-place directory save's metadata given at its commit (run in the
-- complete transaction, before rotation picks).
UPDATE checkpoints SET metadata = ?2 WHERE id = ?1;

-- name: files_clear_temp
UPDATE files SET temp_name = NULL WHERE checkpoint_id = ?1;

-- name: checkpoint_abort
UPDATE checkpoints SET status = 'aborted', temp_name = NULL, deleted_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
 WHERE id = ?1 AND status = 'writing';

-- name: checkpoint_mark_corrupt
UPDATE checkpoints SET status = 'corrupt' WHERE id = ?1 AND status = 'complete';

-- name: checkpoint_restore
UPDATE checkpoints SET status = 'complete' WHERE id = ?1 AND status = 'corrupt';

-- name: latest_any
SELECT id FROM checkpoints
 WHERE status = 'complete' AND commit_seq < ?1
 ORDER BY commit_seq DESC LIMIT 1;

-- name: latest_kind
SELECT id FROM checkpoints
 WHERE status = 'complete' AND kind = ?2 AND commit_seq < ?1
 ORDER BY commit_seq DESC LIMIT 1;

-- name: entry_by_id
SELECT id, name, kind, epoch, step, size, checksum, status, pinned, run_id,
       (SELECT count(*) FROM files f WHERE f.checkpoint_id = c.id),
       created_at, committed_at, deleted_at, metadata, commit_seq, layout, coalesce(temp_name, '')
  FROM checkpoints c WHERE id = ?1;

-- name: entry_by_name
SELECT id FROM checkpoints WHERE name = ?1 ORDER BY id DESC LIMIT 1;

-- name: entries_page
-- ?2 is a bit mask of statuses (bit 1 writing ... bit 5 pruned), 0 for all.
SELECT id, name, kind, epoch, step, size, checksum, status, pinned, run_id,
       (SELECT count(*) FROM files f WHERE f.checkpoint_id = c.id),
       created_at, committed_at, deleted_at, metadata, commit_seq, layout, coalesce(temp_name, '')
  FROM checkpoints c
 WHERE id > ?1
   AND (?2 = 0 OR (?2 & (1 << CASE status WHEN 'writing' THEN 1 WHEN 'complete' THEN 2
                                          WHEN 'corrupt' THEN 3 WHEN 'aborted' THEN 4
                                          WHEN 'pruned' THEN 5 ELSE 0 END)) <> 0)
   AND (?3 IS NULL OR kind = ?3)
 ORDER BY id LIMIT ?4;

-- name: files_of
-- With the checkpoint's name when it is a directory (its files' names are inside it).
SELECT f.rank, f.name, f.temp_name, f.size, f.checksum, CASE c.layout WHEN 'dir' THEN c.name ELSE '' END
  FROM files f JOIN checkpoints c ON c.id = f.checkpoint_id
 WHERE f.checkpoint_id = ?1 ORDER BY f.rank, f.name;

-- name: writing_rows
-- Every save in flight with the run that began it and its begin time in
-- Unix seconds (the heartbeat of a writer on another host before its temp
-- file exists).
SELECT c.id, r.id IS NOT NULL, r.ended_at IS NOT NULL, coalesce(r.host, ''), coalesce(r.boot_id, ''),
       coalesce(r.pid, 0), coalesce(r.proc_start, 0),
       coalesce((julianday(c.created_at) - 2440587.5) * 86400.0, 0), coalesce(c.temp_name, '')
  FROM checkpoints c LEFT JOIN runs r ON r.id = c.run_id
 WHERE c.status = 'writing';

-- name: status_of
SELECT status FROM checkpoints WHERE id = ?1;

-- name: prune_is_pending
SELECT 1 FROM checkpoints WHERE id = ?1 AND status = 'pruned' AND deleted_at IS NULL;

-- name: writing_temp_names
SELECT f.temp_name FROM files f JOIN checkpoints c ON c.id = f.checkpoint_id
 WHERE c.status = 'writing' AND f.temp_name IS NOT NULL
UNION ALL
SELECT temp_name FROM checkpoints WHERE status = 'writing' AND temp_name IS NOT NULL;

-- name: run_progress
UPDATE runs SET last_epoch = ?2, last_step = ?3, progress_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
 WHERE id = ?1;

-- name: open_runs
SELECT id, host, boot_id, pid, proc_start FROM runs WHERE ended_at IS NULL;

-- name: run_crashed
-- The end of a run that died is unknown; its last recorded event is the best bound.
UPDATE runs
   SET ended_at = max(coalesce((SELECT max(at) FROM events WHERE run_id = ?1), started_at),
                      coalesce(progress_at, started_at)),
       exit_reason = 'crashed'
 WHERE id = ?1 AND ended_at IS NULL;

-- name: checkpoint_pin
UPDATE checkpoints SET pinned = ?2 WHERE id = ?1 AND status IN ('writing', 'complete', 'corrupt');

-- name: last_size_of_kind
SELECT size FROM checkpoints WHERE status = 'complete' AND kind = ?1 AND commit_seq < ?2
 ORDER BY commit_seq DESC LIMIT 1;

-- name: prune_plan
-- Every complete checkpoint with its verdict under a retention policy, plus
-- every corrupt one, in one query. Verdicts: 'protected:<why>',
-- 'kept:<rule>', 'victim:<rule>'. Parameters:
--   ?1 JSON object kind -> keep-last count; ?2 count for other kinds (-1: all)
--   ?3 milestone: kind 'epoch' with epoch % ?3 = 0 is kept (0: off)
--   ?4 keep the first checkpoint committed in each ?4-second interval (0: off)
--   ?5 JSON path of the metric (NULL: off); ?6 1 when larger is better; ?7 best K
--   ?8 byte budget (0: none); ?9 bytes used or wanted outside complete
--      checkpoints (a save about to begin, temp files of saves in flight)
--   ?10 1 to list corrupt checkpoints as victims (an explicit prune of them;
--       the caller confirms each by hashing it again before it is marked)
-- Rows whose metric is missing or not a number rank after all others.
WITH
c AS (
    SELECT id, name, kind, epoch, coalesce(size, 0) AS size, commit_seq, pinned, committed_at,
           CASE WHEN ?5 IS NULL THEN NULL ELSE json_extract(metadata, ?5) END AS m,  -- JSON only when asked
           row_number() OVER (PARTITION BY kind ORDER BY commit_seq DESC) AS kind_rank
      FROM checkpoints WHERE status = 'complete'),
best AS (
    SELECT id FROM c WHERE ?5 IS NOT NULL
     ORDER BY typeof(m) NOT IN ('integer', 'real'), CASE WHEN ?6 THEN -m ELSE m END, commit_seq DESC
     LIMIT CASE WHEN ?5 IS NULL THEN 0 ELSE ?7 END),
resumed AS (
    SELECT r.resumed_from AS id FROM runs r JOIN c ON c.id = r.resumed_from
     WHERE r.ended_at IS NULL
       AND NOT EXISTS (SELECT 1 FROM checkpoints n
                        WHERE n.status = 'complete' AND n.run_id = r.id AND n.commit_seq > c.commit_seq)),
intervals AS (
    SELECT min(commit_seq) AS seq FROM c WHERE ?4 > 0
     GROUP BY CAST(strftime('%s', committed_at) AS INTEGER) / max(?4, 1)),
judged AS (
    SELECT c.*,
           CASE WHEN c.commit_seq = (SELECT max(commit_seq) FROM c) THEN 'newest'
                WHEN c.pinned THEN 'pinned'
                WHEN c.id IN (SELECT id FROM best) THEN 'best'
                WHEN c.id IN (SELECT id FROM resumed) THEN 'resumed' END AS protect,
           coalesce(json_extract(?1, '$."' || c.kind || '"'), ?2) AS k
      FROM c),
kept AS (
    SELECT j.*,
           CASE WHEN j.k < 0 OR j.kind_rank <= j.k THEN 'keep_last'
                WHEN ?3 > 0 AND j.kind = 'epoch' AND j.epoch % ?3 = 0 THEN 'milestone'
                WHEN j.commit_seq IN (SELECT seq FROM intervals) THEN 'interval' END AS keep
      FROM judged j),
budget AS (
    SELECT id FROM (
        SELECT id, sum(size) OVER (ORDER BY commit_seq ROWS UNBOUNDED PRECEDING) - size AS before
          FROM kept WHERE protect IS NULL AND keep IS NOT NULL)
     WHERE ?8 > 0
       AND before < (SELECT coalesce(sum(size), 0) FROM kept WHERE protect IS NOT NULL OR keep IS NOT NULL)
                    + ?9 - ?8)
SELECT id, name, size,
       CASE WHEN protect IS NOT NULL THEN 'protected:' || protect
            WHEN keep IS NULL THEN 'victim:keep_last:' || kind || '=' || k
            WHEN id IN (SELECT id FROM budget) THEN 'victim:budget'
            ELSE 'kept:' || keep END
  FROM kept
UNION ALL
SELECT id, name, coalesce(size, 0), 'victim:corrupt' FROM checkpoints WHERE status = 'corrupt' AND pinned = 0 AND ?10 = 1
ORDER BY 1;

-- name: checkpoint_prune
UPDATE checkpoints SET status = 'pruned', prune_rule = ?2, deleted_at = NULL
 WHERE id = ?1 AND status IN ('complete', 'corrupt') AND pinned = 0;

-- name: prune_pending
SELECT id FROM checkpoints WHERE status = 'pruned' AND deleted_at IS NULL;

-- name: prune_done
UPDATE checkpoints SET deleted_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
 WHERE id = ?1 AND status = 'pruned' AND deleted_at IS NULL;

-- name: newest_complete_name
SELECT name FROM checkpoints WHERE status = 'complete' ORDER BY commit_seq DESC LIMIT 1;

-- name: events_page
SELECT id, at, coalesce(run_id, 0), coalesce(checkpoint_id, 0), event, coalesce(detail, '')
  FROM events WHERE id > ?1 AND (?2 = 0 OR run_id = ?2) ORDER BY id LIMIT ?3;

-- name: events_of_checkpoint
SELECT id, at, coalesce(run_id, 0), coalesce(checkpoint_id, 0), event, coalesce(detail, '')
  FROM events WHERE checkpoint_id = ?1 AND (?2 = 0 OR run_id = ?2) ORDER BY id;

-- name: runs_all
-- reached: the furthest step known (reported progress or any save of the run);
-- saved: the step of its newest committed save, else of the checkpoint it resumed from.
SELECT r.id, r.host, r.pid, r.started_at, coalesce(r.ended_at, ''), coalesce(r.exit_reason, ''),
       coalesce(r.slurm_job_id, ''), coalesce(r.slurm_array_job_id, ''), coalesce(r.slurm_array_task_id, ''),
       coalesce(r.slurm_restart_count, -1), coalesce(r.resumed_from, 0),
       max(coalesce(r.last_step, -1),
           coalesce((SELECT max(step) FROM checkpoints c WHERE c.run_id = r.id), -1)),
       coalesce((SELECT step FROM checkpoints c WHERE c.run_id = r.id AND c.committed_at IS NOT NULL
                  ORDER BY c.commit_seq DESC LIMIT 1),
                (SELECT step FROM checkpoints c WHERE c.id = r.resumed_from), -1),
       (SELECT count(*) FROM checkpoints c WHERE c.run_id = r.id AND c.committed_at IS NOT NULL)
  FROM runs r ORDER BY r.id;

-- name: file_names_known
-- The names in the directory the catalog wrote: each file's, and a directory
-- checkpoint's own.
SELECT f.name, c.id, c.status, coalesce(c.deleted_at, '') FROM files f JOIN checkpoints c ON c.id = f.checkpoint_id
 WHERE c.layout = 'file' AND c.status IN ('writing', 'complete', 'corrupt', 'pruned')
UNION ALL
SELECT name, id, status, coalesce(deleted_at, '') FROM checkpoints
 WHERE layout = 'dir' AND status IN ('writing', 'complete', 'corrupt', 'pruned');

-- name: file_insert_sealed
INSERT INTO files (checkpoint_id, rank, name, size, checksum) VALUES (?1, ?2, ?3, ?4, ?5);

-- name: disk_usage
-- The bytes the catalog's files take, per kind and status: the one
-- definition is the view disk_usage (sql/schema/0002_disk_usage.sql).
SELECT kind, status, checkpoints, coalesce(bytes, 0) FROM disk_usage ORDER BY kind, status;

-- name: sync_rows
-- Every checkpoint a sync compares, with its files (one row per file),
-- from the source and from the destination alike.
SELECT c.id, c.status, coalesce(c.commit_seq, 0), c.kind, c.epoch, c.step, c.metadata, c.created_at,
       coalesce(c.committed_at, ''), c.pinned, coalesce(c.prune_rule, ''), coalesce(c.deleted_at, ''),
       f.rank, f.name, coalesce(f.size, -1), coalesce(f.checksum, ''), coalesce(c.run_id, 0),
       c.layout = 'dir', c.name
  FROM checkpoints c JOIN files f ON f.checkpoint_id = c.id
 WHERE c.status IN ('writing', 'complete', 'corrupt', 'pruned')
 ORDER BY c.id, f.rank, f.name;

-- name: sync_adjust
-- A copy keeps the source's times and pin.
UPDATE checkpoints SET created_at = ?2, committed_at = ?3, pinned = ?4 WHERE id = ?1;

-- name: max_commit_seq
SELECT coalesce(max(commit_seq), 0) FROM checkpoints;

-- name: set_commit_seq
UPDATE checkpoints SET commit_seq = ?2 WHERE id = ?1;

-- name: sync_runs
-- The runs a sync carries with the checkpoints it copies (every column but
-- id and resumed_from, which are the destination's own ids; then those two).
SELECT host, boot_id, pid, proc_start, started_at, ended_at, slurm_job_id, slurm_array_job_id,
       slurm_array_task_id, slurm_restart_count, slurm_procid, last_epoch, last_step, progress_at,
       exit_reason, id, coalesce(resumed_from, 0)
  FROM runs;

-- name: run_find_identity
-- The same run, if this catalog has it already: the same process (host, boot,
-- pid and its start time) that opened its catalog at the same moment, and not
-- the run of the sync itself (?6).
SELECT id FROM runs WHERE host = ?1 AND boot_id = ?2 AND pid = ?3 AND proc_start = ?4 AND started_at = ?5
   AND id <> ?6 ORDER BY id LIMIT 1;

-- name: run_update_end
-- A carried run that has ended in the source since it was carried: its end
-- and progress, where the destination still shows it open or judged it crashed.
UPDATE runs SET ended_at = ?2, exit_reason = ?3, last_epoch = ?4, last_step = ?5, progress_at = ?6
 WHERE id = ?1 AND ?2 IS NOT NULL AND (ended_at IS NULL OR exit_reason = 'crashed');

-- name: run_insert_copy
INSERT INTO runs (host, boot_id, pid, proc_start, started_at, ended_at, slurm_job_id, slurm_array_job_id,
                  slurm_array_task_id, slurm_restart_count, slurm_procid, last_epoch, last_step, progress_at,
                  exit_reason)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15);

-- name: checkpoint_set_run
UPDATE checkpoints SET run_id = ?2 WHERE id = ?1;

-- name: run_set_resumed_if_unknown
UPDATE runs SET resumed_from = ?2 WHERE id = ?1 AND resumed_from IS NULL;

-- name: checkpoint_insert_adopted
-- A checkpoint a rebuild or an adopt takes in (a file, the rank files of a
-- sharded save, or a directory: layout ?11): pinned, in the order it assumed.
INSERT INTO checkpoints (name, kind, epoch, step, size, checksum, status, created_at, committed_at, run_id,
                         metadata, commit_seq, pinned, layout)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), NULL, ?9, ?10, 1, ?11);

-- name: file_name_known
-- Whether any checkpoint (in flight, complete, corrupt or pruned) names the file.
SELECT 1 FROM files f JOIN checkpoints c ON c.id = f.checkpoint_id
 WHERE f.name = ?1 AND c.layout = 'file' AND c.status IN ('writing', 'complete', 'corrupt', 'pruned')
UNION ALL
SELECT 1 FROM checkpoints
 WHERE name = ?1 AND layout = 'dir' AND status IN ('writing', 'complete', 'corrupt', 'pruned')
LIMIT 1;

-- name: newest_commit_unix
-- When the newest commit the catalog knows happened, in Unix seconds (0: none).
SELECT coalesce((julianday(max(committed_at)) - 2440587.5) * 86400.0, 0) FROM checkpoints
 WHERE committed_at IS NOT NULL;
