#!/usr/bin/env bash
# The SQL cookbook (sql/cookbook/*.sql) run through the real sqlite3 command
# on a catalog built here by real processes: six training jobs (one clean,
# one preempted, two killed with SIGKILL in the middle of a save, one on
# "another node" whose end is unknown, one clean), a recovery, corrupt and
# pinned checkpoints and a prune with the default policy. Every query's
# output is compared with exactly the lines this history must give.
#
#   tests/shell/cookbook.sh build/tests/crash_helper
#   KEEP=1 tests/shell/cookbook.sh ...   keeps the catalog (its path is printed) for a look
set -euo pipefail
helper="$1"
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cookbook="$here/../../sql/cookbook"
[ -d "$cookbook" ] || { echo "FAIL: no cookbook at $cookbook"; exit 1; }

dir=$(mktemp -d "${TMPDIR:-/tmp}/ckptdb-cookbook-XXXXXX")
bg=""
trap '[ -n "$bg" ] && kill -9 "$bg" 2>/dev/null; [ -n "${KEEP:-}" ] || rm -rf "$dir"' EXIT
db="$dir/ckpts/ckptdb.sqlite"
unset SLURM_JOB_ID SLURM_ARRAY_JOB_ID SLURM_ARRAY_TASK_ID SLURM_RESTART_COUNT SLURM_PROCID

fail() { echo "FAIL: $*" >&2; exit 1; }
sql() { sqlite3 -batch "$db" "$@"; }
declare -A PID SUM NAME

# One helper process, run in the background only to learn its pid (the pid
# the catalog records for its run). Expects it to create run $1.
run_helper() {
  local run=$1; shift
  "$helper" "$@" > "$dir/out" 2>&1 &
  local p=$!
  wait "$p" || fail "crash_helper $* exited $?: $(cat "$dir/out")"
  PID[$run]=$p
  local got
  got=$(sql "SELECT max(id) FROM runs")
  [ "$got" = "$run" ] || fail "crash_helper $*: expected it to be run $run, the newest run is $got"
}

# save CKPT RUN BYTES [flags]: a committed save that must get id CKPT in run RUN.
save() {
  local ckpt=$1 run=$2 bytes=$3; shift 3
  run_helper "$run" save "$dir/ckpts" "$bytes" --seed "$ckpt" "$@"
  local word id name sum
  read -r word id name sum < "$dir/out"
  [ "$word" = COMMITTED ] && [ "$id" = "$ckpt" ] || fail "save $*: expected COMMITTED $ckpt, got: $(cat "$dir/out")"
  NAME[$ckpt]=$name
  SUM[$ckpt]=$sum
}

# killed_save CKPT RUN BYTES [flags]: a save SIGKILLed after its first write.
killed_save() {
  local ckpt=$1 run=$2 bytes=$3; shift 3
  # Its first line, read from a FIFO: no deadline, so a loaded machine only
  # makes this slower, never wrong.
  rm -f "$dir/paused.fifo"
  mkfifo "$dir/paused.fifo"
  "$helper" save "$dir/ckpts" "$bytes" --seed "$ckpt" --pause-at wrote "$@" > "$dir/paused.fifo" 2> "$dir/paused.err" &
  bg=$!
  local line="" fd
  exec {fd}< "$dir/paused.fifo"
  IFS= read -r line <&"$fd" || true
  [ "$line" = "PAUSED wrote" ] || fail "the save to be killed did not pause: '$line' $(cat "$dir/paused.err")"
  kill -9 "$bg"
  wait "$bg" 2>/dev/null || true
  exec {fd}<&-
  PID[$run]=$bg
  bg=""
  local got
  got=$(sql "SELECT max(id) || ' ' || (SELECT max(id) FROM checkpoints) || ' ' || (SELECT status FROM checkpoints ORDER BY id DESC LIMIT 1) FROM runs")
  [ "$got" = "$run $ckpt writing" ] || fail "killed save: expected run $run, checkpoint $ckpt writing; got '$got'"
}

# Test setup: crash_helper saves once per process, a real trainer saves many
# times in one. Fold the runs FIRST..LAST (consecutive processes of one job)
# into run FIRST: their checkpoints and events move to it, it ends as LAST
# ended, and only LAST's run_ended event is kept. Done once every process
# has run (SQLite hands out max(id) + 1, so folding earlier would renumber
# the runs that follow).
fold() {
  local first=$1 last=$2
  sql "BEGIN;
       DELETE FROM events WHERE event = 'run_ended' AND run_id >= $first AND run_id < $last;
       UPDATE checkpoints SET run_id = $first WHERE run_id > $first AND run_id <= $last;
       UPDATE events SET run_id = $first WHERE run_id > $first AND run_id <= $last;
       UPDATE runs SET (ended_at, exit_reason) = (SELECT ended_at, exit_reason FROM runs WHERE id = $last)
        WHERE id = $first;
       DELETE FROM runs WHERE id > $first AND id <= $last;
       COMMIT;"
}

# ---------------------------------------------------------------- the history
# Job 1 (runs 1-4, folded into run 1 below): epochs 1-3 and a step save; ends clean at step 300.
save 1 1 100000 --kind epoch --epoch 1 --step 100
save 2 2 110000 --kind epoch --epoch 2 --step 200
save 3 3 50000 --kind step --epoch 2 --step 250
save 4 4 120000 --kind epoch --epoch 3 --step 300

# Job 2 (runs 5-7 -> run 5 below): resumes from epoch 3, saves a time and an epoch
# checkpoint, then a preempt save at step 450 on SIGTERM: ends 'preempted'.
save 5 5 70000 --kind time --epoch 3 --step 350 --name time_000350.pt
save 6 6 130000 --kind epoch --epoch 4 --step 400
save 7 7 90000 --kind preempt --epoch 4 --step 450
[ "${NAME[7]}" = preempt_000450.pt ] || fail "the preempt save is named ${NAME[7]}"

# Job 3 (runs 8-11 -> run 8 below, Slurm job 4242, restarted once): resumes from the
# preempt save, saves epochs 5 and 6 and a time checkpoint, reports step 680,
# and is SIGKILLed while writing epoch 7 (step 700).
export SLURM_JOB_ID=4242 SLURM_RESTART_COUNT=1
save 8 8 140000 --kind epoch --epoch 5 --step 500
save 9 9 75000 --kind time --epoch 5 --step 550 --name time_000550.pt
save 10 10 150000 --kind epoch --epoch 6 --step 600
killed_save 11 11 160000 --kind epoch --epoch 7 --step 700
unset SLURM_JOB_ID SLURM_RESTART_COUNT

# Job 4 (run 12): its open recovers job 3 (aborts checkpoint 11, marks run 11
# crashed); it resumes from epoch 6, reports step 640 and is SIGKILLed while
# writing a time checkpoint at step 650.
killed_save 12 12 80000 --kind time --epoch 6 --step 650 --name time_000650.pt
[ "$(sql "SELECT status FROM checkpoints WHERE id = 11")" = aborted ] || fail "checkpoint 11 was not aborted by run 12"

# Run 13: one open, whose recovery aborts checkpoint 12 and marks run 12 crashed.
run_helper 13 open "$dir/ckpts"
[ "$(cat "$dir/out")" = OK ] || fail "open: $(cat "$dir/out")"
[ "$(sql "SELECT status FROM checkpoints WHERE id = 12")" = aborted ] || fail "checkpoint 12 was not aborted"
[ "$(sql "SELECT exit_reason FROM runs WHERE id = 12")" = crashed ] || fail "run 12 was not marked crashed"

# Job 5 (runs 14-16 -> run 14 below) on another node: resumes from epoch 6, saves
# epoch 7 and a time checkpoint, reports step 790 and dies writing epoch 8.
# Test setup: its host is another node, so no open here can tell whether it
# still runs: its last save stays 'writing' and the run keeps no exit_reason.
save 13 14 160000 --kind epoch --epoch 7 --step 700
save 14 15 85000 --kind time --epoch 7 --step 750 --name time_000750.pt
killed_save 15 16 170000 --kind epoch --epoch 8 --step 800
sql "UPDATE runs SET host = 'gpu-node-07' WHERE id = 16"  # test setup, before any other open

# Job 6 (runs 17-19 -> run 17 below): resumes from the time checkpoint at step 750;
# epoch_008.pt still belongs to job 5's save, so epoch 8 gets epoch_008-2.pt.
save 16 17 170000 --kind epoch --epoch 8 --step 800
[ "${NAME[16]}" = epoch_008-2.pt ] || fail "epoch 8 of job 6 is named ${NAME[16]}"
save 17 18 90000 --kind time --epoch 8 --step 850 --name time_000850.pt
save 18 19 180000 --kind epoch --epoch 9 --step 900

# Test setup: what the trainers would have passed as metadata, a pin on
# epoch 1, and epoch 2 found corrupt (as a verify would mark it).
sql "BEGIN;
     UPDATE checkpoints SET metadata = json(CASE id
       WHEN 1 THEN '{\"val_loss\": 0.90, \"val_acc\": 0.50}'
       WHEN 2 THEN '{\"val_loss\": 0.80, \"val_acc\": 0.55}'
       WHEN 3 THEN '{\"train_loss\": 1.1}'
       WHEN 4 THEN '{\"val_loss\": 0.62, \"val_acc\": 0.66}'
       WHEN 5 THEN '{\"train_loss\": 0.7}'
       WHEN 6 THEN '{\"val_loss\": 0.70, \"val_acc\": 0.64}'
       WHEN 8 THEN '{\"val_loss\": 0.55, \"val_acc\": 0.75}'
       WHEN 9 THEN '{\"val_loss\": \"nan\"}'
       WHEN 10 THEN '{\"val_loss\": 0.58, \"val_acc\": 0.74}'
       WHEN 11 THEN '{\"val_loss\": 0.51}'
       WHEN 13 THEN '{\"val_loss\": 0.60, \"val_acc\": 0.70}'
       WHEN 16 THEN '{\"val_loss\": 0.52, \"val_acc\": 0.74}'
       WHEN 17 THEN '{\"val_loss\": 0.53}'
       WHEN 18 THEN '{\"val_loss\": 0.57, \"val_acc\": 0.72}'
       ELSE '{}' END);
     UPDATE checkpoints SET pinned = 1 WHERE id = 1;
     UPDATE checkpoints SET status = 'corrupt' WHERE id = 2;
     INSERT INTO events (at, checkpoint_id, event, detail)
       VALUES (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), 2, 'corrupt', 'checksum mismatch (test setup)');
     COMMIT;"

# ... and its bytes really are damaged: a prune of corrupt checkpoints hashes
# each again and deletes only a confirmed one.
printf '\001' | dd of="$dir/ckpts/$(sqlite3 "$dir/ckpts/ckptdb.sqlite" "SELECT name FROM checkpoints WHERE id = 2")" \
  bs=1 seek=0 conv=notrunc status=none

# Run 20: the default policy (last 5 epoch, last 3 time, preempt only while
# newest, other kinds all) asked to take corrupt ones too prunes corrupt
# epoch 2, epochs 3 and 4 (epoch 1 is pinned), time_000350.pt and the
# preempt save.
run_helper 20 prune "$dir/ckpts" --corrupt
[ "$(cat "$dir/out")" = "PRUNED 5" ] || fail "prune: $(cat "$dir/out")"

# Test setup: epoch 5 found corrupt after the prune; its file stays on disk.
sql "UPDATE checkpoints SET status = 'corrupt' WHERE id = 8;
     INSERT INTO events (at, checkpoint_id, event, detail)
       VALUES (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), 8, 'corrupt', 'checksum mismatch (test setup)');"

# Test setup: fold each job's processes into one run, and what the library
# records but the helper cannot: progress (ckptdb_run_progress) and the
# checkpoint each job resumed from (ckptdb_mark_resumed).
fold 1 4
fold 5 7
fold 8 11
fold 14 16
fold 17 19
sql "BEGIN;
     UPDATE runs SET last_epoch = 3, last_step = 300 WHERE id = 1;
     UPDATE runs SET resumed_from = 4, last_epoch = 4, last_step = 450 WHERE id = 5;
     UPDATE runs SET resumed_from = 7, last_epoch = 6, last_step = 680 WHERE id = 8;
     UPDATE runs SET resumed_from = 10, last_epoch = 6, last_step = 640 WHERE id = 12;
     UPDATE runs SET host = 'gpu-node-07', resumed_from = 10, last_epoch = 7, last_step = 790 WHERE id = 14;
     UPDATE runs SET resumed_from = 14, last_epoch = 9, last_step = 900 WHERE id = 17;
     COMMIT;"
[ "$(sql "SELECT group_concat(id || ':' || coalesce(exit_reason, '-'), ' ') FROM (SELECT * FROM runs ORDER BY id)")" = \
  "1:clean 5:preempted 8:crashed 12:crashed 13:clean 14:- 17:clean 20:clean" ] || fail "runs after setup: $(sql "SELECT id, exit_reason FROM runs")"

# --------------------------------------------------------------- the checks
host=$(uname -n)
n=0
# check NAME EXPECTED [sqlite3 commands before .read]: run sql/cookbook/NAME.sql
# read-only; times in the output read as T (their shape is checked, not value).
check() {
  local name=$1 expected=$2; shift 2
  local file="$cookbook/$name.sql"
  [ -f "$file" ] || fail "$file is missing"
  head -n 1 "$file" | grep -q '^-- ' || fail "$file does not start with a comment"
  local got
  got=$(sqlite3 -batch -noheader -separator '|' -readonly "$db" "$@" ".read $file" 2>&1) ||
    fail "$name: sqlite3 failed: $got"
  got=$(printf '%s\n' "$got" | sed -E 's/[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z/T/g')
  if [ "$got" != "$expected" ]; then
    echo "FAIL: $name${*:+ ($*)}: output differs (- expected, + got):" >&2
    diff -u <(printf '%s\n' "$expected") <(printf '%s\n' "$got") | tail -n +3 >&2 || true
    exit 1
  fi
  n=$((n + 1))
}

check newest_per_kind \
'epoch|18|epoch_009.pt|9|900|180000|T|17|5|{"val_loss":0.57,"val_acc":0.72}
time|17|time_000850.pt|8|850|90000|T|17|3|{"val_loss":0.53}
step|3|step_000250.pt|2|250|50000|T|1|1|{"train_loss":1.1}'

# Default @run: the newest run, the prune.
check run_history \
"20|$host|${PID[20]}||T|T|clean||||||0|0|0
55|T|pruned|2|20|corrupt
56|T|pruned|4|20|keep_last:epoch=5
57|T|pruned|5|20|keep_last:time=3
58|T|pruned|6|20|keep_last:epoch=5
59|T|pruned|7|20|keep_last:preempt=0
60|T|run_ended||20|clean"

check run_history \
"8|$host|${PID[8]}|4242|T|T|crashed|7|preempt_000450.pt|450|6|680|3|1|0
8|epoch_005.pt|epoch|5|500|140000|corrupt|0|T|T|||{\"val_loss\":0.55,\"val_acc\":0.75}
9|time_000550.pt|time|5|550|75000|complete|0|T|T|||{\"val_loss\":\"nan\"}
10|epoch_006.pt|epoch|6|600|150000|complete|0|T|T|||{\"val_loss\":0.58,\"val_acc\":0.74}
11|epoch_007.pt|epoch|7|700||aborted|0|T||T||{\"val_loss\":0.51}
22|T|begun|8|8|epoch epoch 5 step 500
23|T|committed|8|8|140000 bytes, xxh128 ${SUM[8]}
25|T|begun|9|8|time epoch 5 step 550
26|T|committed|9|8|75000 bytes, xxh128 ${SUM[9]}
28|T|begun|10|8|epoch epoch 6 step 600
29|T|committed|10|8|150000 bytes, xxh128 ${SUM[10]}
31|T|begun|11|8|epoch epoch 7 step 700
32|T|recovered|11|12|aborted: killed before the file was sealed
33|T|run_ended||8|crashed: pid gone without closing the catalog (found by pid ${PID[12]})
61|T|corrupt|8||checksum mismatch (test setup)" \
  ".parameter set @run 8"

# The run on the other node: no end, its last save still 'writing'.
check run_history \
"14|gpu-node-07|${PID[14]}||T|||10|epoch_006.pt|600|7|790|2|0|1
13|epoch_007.pt|epoch|7|700|160000|complete|0|T|T|||{\"val_loss\":0.60,\"val_acc\":0.70}
14|time_000750.pt|time|7|750|85000|complete|0|T|T|||{}
15|epoch_008.pt|epoch|8|800||writing|0|T||||{}
38|T|begun|13|14|epoch epoch 7 step 700
39|T|committed|13|14|160000 bytes, xxh128 ${SUM[13]}
41|T|begun|14|14|time epoch 7 step 750
42|T|committed|14|14|85000 bytes, xxh128 ${SUM[14]}
44|T|begun|15|14|epoch epoch 8 step 800" \
  ".parameter set @run 14"

# The save still 'writing' on the other node counts, with the bytes sealed
# so far (none): the view disk_usage is the one definition.
check disk_use_per_kind \
'epoch|7|5|1|1|0|900000|878.9 KiB|75.0%
time|3|3|0|0|0|250000|244.1 KiB|20.8%
step|1|1|0|0|0|50000|48.8 KiB|4.2%
(all)|11|9|1|1|0|1200000|1.1 MiB|100.0%'

# The bytes the query counts are the bytes of the files in the directory.
on_disk=0
while read -r name; do
  on_disk=$((on_disk + $(stat -c %s "$dir/ckpts/$name")))
done < <(sql "SELECT name FROM checkpoints WHERE status IN ('complete', 'corrupt')
                 OR (status = 'pruned' AND deleted_at IS NULL)")
[ "$on_disk" -eq 1200000 ] || fail "the complete and corrupt files take $on_disk bytes, not 1200000"
for c in 2 4 5 6 7; do
  [ ! -e "$dir/ckpts/$(sql "SELECT name FROM checkpoints WHERE id = $c")" ] || fail "pruned checkpoint $c still has its file"
done

check pruned_by_rule \
'2|epoch_002.pt|epoch|2|200|110000|corrupt|T|20|T
4|epoch_003.pt|epoch|3|300|120000|keep_last:epoch=5|T|20|T
5|time_000350.pt|time|3|350|70000|keep_last:time=3|T|20|T
6|epoch_004.pt|epoch|4|400|130000|keep_last:epoch=5|T|20|T
7|preempt_000450.pt|preempt|4|450|90000|keep_last:preempt=0|T|20|T
keep_last:epoch=5|2|250000|T|T
corrupt|1|110000|T|T
keep_last:preempt=0|1|90000|T|T
keep_last:time=3|1|70000|T|T'

# Defaults: the 3 lowest val_loss among complete checkpoints (epoch 5, 0.55,
# is corrupt; aborted epoch 7, 0.51, never completed).
check best_by_metric \
'1|16|epoch_008-2.pt|epoch|8|800|0.52|T
2|17|time_000850.pt|time|8|850|0.53|T
3|18|epoch_009.pt|epoch|9|900|0.57|T'

# Every complete checkpoint: no val_loss (newer commit first), then "nan", last.
check best_by_metric \
'1|16|epoch_008-2.pt|epoch|8|800|0.52|T
2|17|time_000850.pt|time|8|850|0.53|T
3|18|epoch_009.pt|epoch|9|900|0.57|T
4|10|epoch_006.pt|epoch|6|600|0.58|T
5|13|epoch_007.pt|epoch|7|700|0.6|T
6|1|epoch_001.pt|epoch|1|100|0.9|T
7|14|time_000750.pt|time|7|750||T
8|3|step_000250.pt|step|2|250||T
9|9|time_000550.pt|time|5|550|nan|T' \
  ".parameter set @k 20"

# Largest val_acc: a tie at 0.74 goes to the newer commit.
check best_by_metric \
'1|16|epoch_008-2.pt|epoch|8|800|0.74|T
2|10|epoch_006.pt|epoch|6|600|0.74|T' \
  ".parameter set @metric val_acc" ".parameter set @mode max" ".parameter set @k 2"

# Run 5: preempt save at its last step. Run 8: trained to 700 (the aborted
# save), last saved 600. Run 12: no save of its own, resumed from 600, got to
# 650. Run 14 (no exit_reason, later runs exist): 800 ('writing' save) - 750.
check steps_lost_to_preemption \
'5|preempted|450|450|0|7|saved
8|crashed|700|600|100|10|saved
12|crashed|650|600|50|10|resumed
14|unknown|800|750|50|14|saved'

[ -z "${KEEP:-}" ] || echo "kept: $db"
echo "ok: $n cookbook queries checked"
