#!/usr/bin/env bash
# CKPTDB_OPEN_REQUEUE (the trainer's --requeue) without a cluster: a fake
# `scontrol` first on PATH records how it was called.
#   (a) SIGUSR1 under SLURM_JOB_ID: preempt save, then exactly
#       `scontrol requeue <id>` (argv, no shell), event "requeued", run ends
#       "requeued" with 0 steps lost; the same command again resumes from the
#       preempt checkpoint and finishes;
#   (b) scontrol fails: event "requeue_failed" with its exit status and the
#       first line of its stderr; the run ends "preempted"; exit 0 all the same;
#   (c) no requeue, no scontrol call, for SIGTERM, for SIGUSR1 without
#       SLURM_JOB_ID, and for SIGUSR1 without --requeue;
#   (d) a SLURM_JOB_ID that is not a job id: "requeue_failed", scontrol not run;
#   (e) no scontrol on PATH: "requeue_failed" saying so.
# Usage: requeue_fake.sh path/to/ckptdb-train-c path/to/ckptdb
set -euo pipefail
train="$1"
cli="$2"
command -v sqlite3 > /dev/null || { echo "FAIL: sqlite3 is not installed"; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/ckptdb-requeue-XXXXXX")
pid=
trap '[ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; rm -rf "$work"' EXIT

dir=
log=
fail() {
  echo "FAIL: $*"
  [ -n "$log" ] && [ -f "$log" ] && { echo "--- $log"; tail -n 20 "$log"; }
  [ -f "$work/calls" ] && { echo "--- scontrol calls"; cat "$work/calls"; }
  if [ -n "$dir" ] && [ -f "$dir/ckptdb.sqlite" ]; then
    echo "--- runs"
    sqlite3 -header "$dir/ckptdb.sqlite" "SELECT * FROM runs" || true
    echo "--- events"
    sqlite3 "$dir/ckptdb.sqlite" "SELECT id, run_id, event, detail FROM events WHERE event NOT IN ('begun')" || true
  fi
  exit 1
}
q() { sqlite3 "$dir/ckptdb.sqlite" "$1"; }
expect() { [ "$2" = "$3" ] || fail "$1: got '$2', expected '$3'"; }
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }

# The fake scontrol: one line per call with its argument count and each
# argument in brackets (a shell would have split or expanded them), the
# SLURM_JOB_ID it saw; it fails when $work/scontrol.fail exists.
mkdir -p "$work/bin"
cat > "$work/bin/scontrol" <<EOF
#!/bin/sh
line="argc=\$#"
for a in "\$@"; do line="\$line [\$a]"; done
echo "\$line" >> "$work/calls"
if [ -f "$work/scontrol.fail" ]; then
  echo "scontrol: error: Job \$2 is not requeueable" >&2
  echo "a second line that is not reported" >&2
  exit 3
fi
exit 0
EOF
chmod +x "$work/bin/scontrol"
fakepath="$work/bin:$PATH"

# run_until_signal NAME SIGNAL [ENV...] -- [TRAINER ARGS...]: starts the
# trainer on $work/NAME, sends SIGNAL once it has saved, waits for its exit.
run_until_signal() {
  local name=$1 sig=$2 envs=() rc=0
  shift 2
  while [ $# -gt 0 ] && [ "$1" != -- ]; do envs+=("$1"); shift; done
  shift
  dir=$work/$name
  log=$work/$name.log
  env -u SLURM_JOB_ID -u SLURM_RESTART_COUNT PATH="$fakepath" "${envs[@]}" \
    "$train" --dir "$dir" --epochs 40 --steps-per-epoch 10 --state-bytes 64K --save-every-epochs 1 \
    --save-every-seconds 0 --step-sleep-ms 10 "$@" > "$log" 2>&1 &
  pid=$!
  for _ in $(seq 1 500); do
    grep -q '^save:' "$log" && break
    kill -0 "$pid" 2> /dev/null || fail "$name: the trainer ended before its first save"
    sleep 0.02
  done
  grep -q '^save:' "$log" || fail "$name: no save within 10 s"
  kill "-$sig" "$pid"
  wait "$pid" || rc=$?
  pid=
  expect "$name: exit status" "$rc" 0
  stopped=$(tail -n 1 "$log")
  case "$stopped" in stopped:*) ;; *) fail "$name: the last line is not 'stopped:'" ;; esac
  expect "$name: kind of the last save" "$(field kind "$stopped")" preempt
}
calls() { [ -f "$work/calls" ] && wc -l < "$work/calls" || echo 0; }

# ------------------------------------------------------------ (a) requeued
run_until_signal requeued USR1 SLURM_JOB_ID=4242 SLURM_RESTART_COUNT=2 -- --requeue
expect "(a) scontrol calls" "$(cat "$work/calls")" "argc=2 [requeue] [4242]"
s_step=$(field step "$stopped")
grep -q "^requeue: requeued job 4242 requeued" "$log" || fail "(a) no 'requeue: requeued' line"
expect "(a) events after the preempt commit" \
  "$(q "SELECT group_concat(event, ',') FROM (SELECT event FROM events WHERE id > (SELECT max(id) FROM events
        WHERE event = 'committed') ORDER BY id)")" "requeued,run_ended"
expect "(a) requeued event" "$(q "SELECT run_id, checkpoint_id IS NULL, detail FROM events WHERE event='requeued'")" \
  "1|1|job 4242 requeued after SIGUSR1 (scontrol requeue 4242)"
expect "(a) run row" "$(q "SELECT exit_reason, slurm_job_id, slurm_restart_count, last_step FROM runs")" \
  "requeued|4242|2|$s_step"
expect "(a) run_ended detail" "$(q "SELECT detail FROM events WHERE event='run_ended'")" requeued
pre=$(q "SELECT id FROM checkpoints WHERE kind='preempt' AND status='complete'")
expect "(a) preempt checkpoint at the stop step" "$(q "SELECT step FROM checkpoints WHERE id=$pre")" "$s_step"
# The restart: the same command, as Slurm would run it.
rc=0
env -u SLURM_JOB_ID PATH="$fakepath" SLURM_JOB_ID=4242 SLURM_RESTART_COUNT=3 \
  "$train" --dir "$dir" --epochs 40 --steps-per-epoch 10 --state-bytes 64K --save-every-epochs 1 \
  --save-every-seconds 0 --requeue > "$work/requeued2.log" 2>&1 || rc=$?
expect "(a) restart exit status" "$rc" 0
grep -q "^resume: id=$pre .* step=$s_step " "$work/requeued2.log" || fail "(a) the restart did not resume from $pre"
grep -q '^done: epoch=40 step=400$' "$work/requeued2.log" || fail "(a) the restart did not finish"
expect "(a) runs: reasons, restart counts, resumed_from" \
  "$(q "SELECT group_concat(exit_reason || ':' || slurm_restart_count || ':' || coalesce(resumed_from, '-'), ' ')
        FROM runs")" "requeued:2:- clean:3:$pre"
expect "(a) scontrol not called again" "$(calls)" 1
echo "ok: (a) SIGUSR1 under Slurm: preempt save at step $s_step, 'scontrol requeue 4242' (argv only)," \
  "run 'requeued', restart resumed from it and finished"

# Steps lost, as the library computes them (ckptdb_runs through the CLI).
expect "(a) ckptdb history: reason and steps lost per run" \
  "$("$cli" history "$dir" --json | python3 -c 'import json, sys
print(" ".join("%s:%s:%s" % (r["exit_reason"], r["last_step"], r["steps_lost"]) for r in json.load(sys.stdin)["runs"]))')" \
  "requeued:$s_step:0 clean:400:0"

# ------------------------------------------------------------ (b) failed
rm -f "$work/calls"
touch "$work/scontrol.fail"
run_until_signal failed USR1 SLURM_JOB_ID=77_3 -- --requeue
rm -f "$work/scontrol.fail"
expect "(b) scontrol calls" "$(cat "$work/calls")" "argc=2 [requeue] [77_3]"
want="'scontrol requeue 77_3' exited with status 3: scontrol: error: Job 77_3 is not requeueable"
expect "(b) requeue_failed event" "$(q "SELECT detail FROM events WHERE event='requeue_failed'")" "$want"
grep -qF "requeue: failed $want" "$log" || fail "(b) no 'requeue: failed' line"
expect "(b) requeued events" "$(q "SELECT count(*) FROM events WHERE event='requeued'")" 0
expect "(b) exit reason" "$(q "SELECT exit_reason FROM runs")" preempted
echo "ok: (b) scontrol failing: 'requeue_failed' with its status and stderr line, run 'preempted', exit 0"

# ------------------------------------------------------------ (c) no requeue
rm -f "$work/calls"
run_until_signal term TERM SLURM_JOB_ID=4243 -- --requeue
expect "(c) SIGTERM: exit reason" "$(q "SELECT exit_reason FROM runs")" preempted
run_until_signal nojob USR1 -- --requeue
expect "(c) no SLURM_JOB_ID: exit reason" "$(q "SELECT exit_reason FROM runs")" preempted
run_until_signal noflag USR1 SLURM_JOB_ID=4244 --
expect "(c) no --requeue: exit reason" "$(q "SELECT exit_reason FROM runs")" preempted
expect "(c) scontrol calls" "$(calls)" 0
for d in term nojob noflag; do
  dir=$work/$d
  expect "(c) $d: requeue events" "$(q "SELECT count(*) FROM events WHERE event LIKE 'requeue%'")" 0
done
echo "ok: (c) SIGTERM, SIGUSR1 without SLURM_JOB_ID, SIGUSR1 without --requeue: no scontrol, run 'preempted'"

# ------------------------------------------------------------ (d) bad job id
run_until_signal badid USR1 'SLURM_JOB_ID=1;touch pwned' -- --requeue
expect "(d) scontrol calls" "$(calls)" 0
[ ! -e pwned ] && [ ! -e "$dir/pwned" ] || fail "(d) the job id was run by a shell"
expect "(d) requeue_failed event" "$(q "SELECT detail FROM events WHERE event='requeue_failed'")" \
  "SLURM_JOB_ID '1;touch pwned' is not a Slurm job id (digits and '_'); scontrol was not run"
expect "(d) exit reason" "$(q "SELECT exit_reason FROM runs")" preempted
echo "ok: (d) SLURM_JOB_ID '1;touch pwned': requeue_failed, nothing run"

# ------------------------------------------------------------ (e) no scontrol
fakepath="$work/empty"
mkdir -p "$fakepath"
run_until_signal nocmd USR1 SLURM_JOB_ID=5 -- --requeue
expect "(e) requeue_failed event" "$(q "SELECT detail FROM events WHERE event='requeue_failed'")" \
  "cannot run 'scontrol requeue 5': No such file or directory (is scontrol on PATH?)"
expect "(e) exit reason" "$(q "SELECT exit_reason FROM runs")" preempted
echo "ok: (e) no scontrol on PATH: requeue_failed says so, run 'preempted'"
