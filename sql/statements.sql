-- The statements the engine runs, by name (tools/embed_sql.py turns each
-- "-- name:" section into ckptdb::sql::Stmt::<name>). All values are bound
-- parameters. Times come from now_utc() below, inlined as strftime.

-- name: run_insert
INSERT INTO runs (host, boot_id, pid, proc_start, started_at,
                  slurm_job_id, slurm_array_task_id, slurm_restart_count)
VALUES (?1, ?2, ?3, ?4, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), ?5, ?6, ?7);

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
 WHERE f.name = ?1 AND c.status IN ('writing', 'complete', 'corrupt')
LIMIT 1;

-- name: checkpoint_insert
INSERT INTO checkpoints (name, kind, epoch, step, status, created_at, run_id, metadata)
VALUES (?1, ?2, ?3, ?4, 'writing', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), ?5, ?6);

-- name: file_insert
INSERT INTO files (checkpoint_id, rank, name, temp_name) VALUES (?1, ?2, ?3, ?4);

-- name: file_seal
UPDATE files SET size = ?3, checksum = ?4 WHERE checkpoint_id = ?1 AND rank = ?2;

-- name: checkpoint_seal
UPDATE checkpoints SET size = ?2, checksum = ?3 WHERE id = ?1 AND status = 'writing';

-- name: checkpoint_complete
UPDATE checkpoints
   SET status = 'complete',
       committed_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
       commit_seq = (SELECT coalesce(max(commit_seq), 0) + 1 FROM checkpoints)
 WHERE id = ?1 AND status = 'writing';

-- name: files_clear_temp
UPDATE files SET temp_name = NULL WHERE checkpoint_id = ?1;

-- name: checkpoint_abort
UPDATE checkpoints SET status = 'aborted', deleted_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
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
       created_at, committed_at, deleted_at, metadata, commit_seq
  FROM checkpoints c WHERE id = ?1;

-- name: entry_by_name
SELECT id FROM checkpoints WHERE name = ?1 ORDER BY id DESC LIMIT 1;

-- name: entries_page
-- ?2 is a bit mask of statuses (bit 1 writing ... bit 5 pruned), 0 for all.
SELECT id, name, kind, epoch, step, size, checksum, status, pinned, run_id,
       (SELECT count(*) FROM files f WHERE f.checkpoint_id = c.id),
       created_at, committed_at, deleted_at, metadata, commit_seq
  FROM checkpoints c
 WHERE id > ?1
   AND (?2 = 0 OR (?2 & (1 << CASE status WHEN 'writing' THEN 1 WHEN 'complete' THEN 2
                                          WHEN 'corrupt' THEN 3 WHEN 'aborted' THEN 4
                                          WHEN 'pruned' THEN 5 ELSE 0 END)) <> 0)
   AND (?3 IS NULL OR kind = ?3)
 ORDER BY id LIMIT ?4;

-- name: files_of
SELECT rank, name, temp_name, size, checksum FROM files
 WHERE checkpoint_id = ?1 ORDER BY rank;

-- name: writing_rows
SELECT c.id, r.host, r.boot_id, r.pid, r.proc_start, r.ended_at
  FROM checkpoints c LEFT JOIN runs r ON r.id = c.run_id
 WHERE c.status = 'writing';

-- name: status_of
SELECT status FROM checkpoints WHERE id = ?1;

-- name: writing_temp_names
SELECT f.temp_name FROM files f JOIN checkpoints c ON c.id = f.checkpoint_id
 WHERE c.status = 'writing' AND f.temp_name IS NOT NULL;
