#!/usr/bin/env bash
# The example trainer under a real Slurm (a one-node cluster, cluster.sh):
#   (a) examples/slurm/train-exec.sbatch with --time=1 --signal=B:USR1@50
#       --requeue: USR1 -> preempt checkpoint -> scontrol requeue -> the
#       restarted job (SLURM_RESTART_COUNT=1) resumes from that checkpoint
#       and finishes;
#   (b) examples/slurm/train-sync.sbatch (node-local scratch, pushed to a
#       shared directory at the end), then scancel: the SIGTERM path saves a
#       preempt checkpoint inside KillWait and pushes it; a resubmitted job
#       pulls, resumes from it and finishes;
#   (c) the runs tables: both attempts of each with SLURM_JOB_ID and
#       SLURM_RESTART_COUNT, the resumed-from chain, exit reasons, and 0
#       steps lost to each signal-driven stop (ckptdb history).
# (a) and (b) run at the same time (the node has 2 CPUs).  Prints the
# signal-to-committed-checkpoint time, the requeue-to-resume time and the
# steps lost.  Exit 77 (skip) with the reason when Slurm cannot run here.
# Usage: slurm_jobs.sh path/to/ckptdb-train-c path/to/ckptdb path/to/examples/slurm
set -uo pipefail
train="$1"
cli="$2"
examples="$3"
here=$(cd "$(dirname "$0")" && pwd)
t_start=$SECONDS

command -v sqlite3 > /dev/null || { echo "FAIL: sqlite3 is not installed"; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "SKIP: the Slurm daemons need root and this is uid $(id -u)"; exit 77; }

started=0
if ! "$here/cluster.sh" status > /dev/null 2>&1; then
  out=$("$here/cluster.sh" start 2>&1)
  rc=$?
  if [ $rc -eq 77 ]; then
    echo "SKIP: $out"
    exit 77
  fi
  [ $rc -eq 0 ] || { echo "FAIL: the cluster did not start: $out"; exit 1; }
  started=1
fi
eval "$("$here/cluster.sh" env)"
echo "cluster up after $((SECONDS - t_start)) s ($SLURM_CONF, $(grep -h '^ProctrackType=' "$SLURM_CONF"))"

work=$(mktemp -d "${TMPDIR:-/tmp}/ckptdb-slurm-jobs-XXXXXX")
jobs_file=$work/jobs
touch "$jobs_file"
cleanup() {
  local j
  for j in $(cat "$jobs_file" 2> /dev/null); do scancel "$j" 2> /dev/null; done
  [ $started -eq 1 ] && "$here/cluster.sh" stop
  rm -rf "$work"
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*"
  exit 1
}
expect() { [ "$2" = "$3" ] || fail "$1: got '$2', expected '$3'"; }
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<< "$2"; }
now() { date +%s.%N; }
job_field() { scontrol -o show job "$1" 2> /dev/null | tr ' ' '\n' | sed -n "s/^$2=//p"; }
# poll SECONDS WHAT COMMAND...: until COMMAND succeeds, every 0.2 s.
poll() {
  local limit=$1 what=$2
  shift 2
  local end=$((SECONDS + limit))
  until "$@"; do
    [ $SECONDS -lt $end ] || fail "no $what within $limit s"
    sleep 0.2
  done
}
has_line() { [ -f "$1" ] && grep -q -- "$2" "$1"; }
job_ended() { case "$(job_field "$1" JobState)" in COMPLETED | CANCELLED | FAILED | TIMEOUT | NODE_FAIL) return 0 ;; *) return 1 ;; esac; }
# Seconds from unix time $1 to the UTC ISO time $2 (as the catalog stores it).
secs_between() { python3 -c 'import sys, datetime as d
t = d.datetime.strptime(sys.argv[2], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=d.timezone.utc).timestamp()
print("%.3f" % (t - float(sys.argv[1])))' "$1" "$2"; }
history_summary() { # DIR: run:job:restarts:resumed_from:exit_reason:steps_lost per run
  "$cli" history "$1" --json | python3 -c 'import json, sys
def s(v): return "-" if v is None else str(v)
print(" ".join(":".join(s(r[k]) for k in ("id", "slurm_job_id", "slurm_restart_count", "resumed_from",
    "exit_reason", "steps_lost")) for r in json.load(sys.stdin)["runs"]))'
}
training_runs() { # DIR: job:restarts:resumed_from:exit_reason:steps_lost per run, without the runs of syncs
  "$cli" history "$1" --json | python3 -c 'import json, sys
def s(v): return "-" if v is None else str(v)
print(" ".join(":".join(s(r[k]) for k in ("slurm_job_id", "slurm_restart_count", "resumed_from",
    "exit_reason", "steps_lost")) for r in json.load(sys.stdin)["runs"] if r["exit_reason"] != "synced"))'
}

# ----------------------------------------------------------------------- (a)
part_a() {
  local dir=$work/a/ckpt out job stopped s_step pre q restart_at resume_line
  mkdir -p "$work/a"
  # 20 epochs of 100 steps: 80 s at the first attempt's pace, more than the limit.
  job=$(CKPT_DIR=$dir TRAINER=$here/paced_trainer.sh CKPTDB_TEST_TRAINER=$train \
    sbatch --parsable --job-name=ckptdb-a --time=1 --signal=B:USR1@50 --requeue --open-mode=append \
    --output="$work/a/job-%j.out" "$examples/train-exec.sbatch" \
    --epochs 20 --steps-per-epoch 100 --state-bytes 256K --save-every-epochs 5 --save-every-seconds 0) ||
    fail "(a) sbatch failed"
  echo "$job" >> "$jobs_file"
  out=$work/a/job-$job.out
  echo "(a) job $job submitted"
  poll 90 "(a) 'stopped:' line (USR1 comes 10-40 s into the job)" has_line "$out" '^stopped:'
  stopped=$(grep '^stopped:' "$out")
  echo "(a) $stopped"
  expect "(a) signal" "$(field signal "$stopped")" 10
  expect "(a) kind of the stop's save" "$(field kind "$stopped")" preempt
  s_step=$(field step "$stopped")
  grep -q "^requeue: requeued job $job requeued after SIGUSR1" "$out" || fail "(a) no 'requeue: requeued' line"
  grep -q '^done:' "$out" && fail "(a) the first attempt finished before USR1"
  q() { sqlite3 "$dir/ckptdb.sqlite" "$1"; }
  pre=$(q "SELECT id FROM checkpoints WHERE kind='preempt' AND step=$s_step AND committed_at IS NOT NULL")
  [ -n "$pre" ] || fail "(a) no committed preempt checkpoint at step $s_step"
  poll 60 "(a) restarted attempt (Restarts=1)" sh -c "[ \"\$(scontrol -o show job $job | tr ' ' '\n' | sed -n 's/^Restarts=//p')\" = 1 ]"
  poll 60 "(a) 'done:' line of the restarted attempt" has_line "$out" '^done:'
  poll 30 "(a) job end" job_ended "$job"
  expect "(a) job state" "$(job_field "$job" JobState)" COMPLETED
  expect "(a) Slurm's restart count" "$(job_field "$job" Restarts)" 1
  expect "(a) attempts in the job log" "$(grep -c '^job .* attempt' "$out")" 2
  grep -q "^job $job attempt 1 " "$out" || fail "(a) the second attempt did not see SLURM_RESTART_COUNT=1"
  resume_line=$(grep '^resume: id=' "$out" || true)
  [ "$(field step "$resume_line")" = "$s_step" ] && [[ $resume_line == "resume: id=$pre "* ]] ||
    fail "(a) the restart did not resume from checkpoint $pre (step $s_step): '$resume_line'"
  grep -q '^done: epoch=20 step=2000$' "$out" || fail "(a) the restart did not finish at step 2000"
  # (c) for (a): the run rows of both attempts.
  expect "(a) runs: id:job:restarts:resumed_from:exit:steps_lost" "$(history_summary "$dir")" \
    "1:$job:-:-:requeued:0 2:$job:1:$pre:clean:0"
  expect "(a) run 1 stopped where it saved" "$(q "SELECT last_step FROM runs WHERE id=1")" "$s_step"
  expect "(a) requeue events" "$(q "SELECT run_id || ':' || event FROM events WHERE event LIKE 'requeue%'")" "1:requeued"
  restart_at=$(q "SELECT printf('%.3f', (julianday(r.at) - julianday(q.at)) * 86400) FROM events q, events r
                  WHERE q.event='requeued' AND r.event='resumed' AND r.run_id=2")
  echo "(a) figures: signal_to_commit_ms=$(field signal_to_commit_ms "$stopped") requeue_to_resume_s=$restart_at steps_lost=0"
  echo "ok: (a) USR1 at step $s_step -> preempt checkpoint $pre -> requeued -> attempt 2 (SLURM_RESTART_COUNT=1)" \
    "resumed from it and finished; runs 'requeued' then 'clean', 0 steps lost"
}

# ----------------------------------------------------------------------- (b)
part_b() {
  local shared=$work/b/shared out job job2 out2 stopped s_step pre t_cancel commit_s resume_line
  mkdir -p "$work/b/scratch"
  sub() {
    CKPT_SHARED=$shared TRAINER=$train CKPTDB=$cli TMPDIR=$work/b/scratch \
      sbatch --parsable --job-name=ckptdb-b --time=10 --signal=B:USR1@60 --output="$work/b/job-%j.out" \
      "$examples/train-sync.sbatch" --epochs 5 --steps-per-epoch 100 --state-bytes 256K --step-sleep-ms 20 \
      --save-every-epochs 1 --save-every-seconds 0
  }
  job=$(sub) || fail "(b) sbatch failed"
  echo "$job" >> "$jobs_file"
  out=$work/b/job-$job.out
  echo "(b) job $job submitted"
  poll 60 "(b) first save of job $job" has_line "$out" '^save:'
  t_cancel=$(now)
  scancel "$job" || fail "(b) scancel failed"
  poll 30 "(b) end of job $job" job_ended "$job"
  expect "(b) job state" "$(job_field "$job" JobState)" CANCELLED
  stopped=$(grep '^stopped:' "$out") || fail "(b) no 'stopped:' line"
  echo "(b) $stopped"
  expect "(b) signal" "$(field signal "$stopped")" 15
  expect "(b) kind of the stop's save" "$(field kind "$stopped")" preempt
  grep -q '^requeue:' "$out" && fail "(b) SIGTERM requeued the job"
  grep -q '^train-sync: pushed to ' "$out" || fail "(b) the push did not finish before the job was killed"
  s_step=$(field step "$stopped")
  q() { sqlite3 "$shared/ckptdb.sqlite" "$1"; }
  pre=$(q "SELECT id FROM checkpoints WHERE kind='preempt' AND step=$s_step AND status='complete'")
  [ -n "$pre" ] || fail "(b) the shared catalog has no complete preempt checkpoint at step $s_step"
  commit_s=$(secs_between "$t_cancel" "$(q "SELECT committed_at FROM checkpoints WHERE id=$pre")")
  python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) < 10 else 1)" "$commit_s" ||
    fail "(b) the preempt checkpoint was committed $commit_s s after scancel, KillWait is 10 s"
  expect "(b) job $job's training run closed before the kill" \
    "$(q "SELECT exit_reason, ended_at IS NOT NULL FROM runs WHERE slurm_job_id='$job' AND exit_reason <> 'synced'")" \
    "preempted|1"

  job2=$(sub) || fail "(b) second sbatch failed"
  echo "$job2" >> "$jobs_file"
  out2=$work/b/job-$job2.out
  echo "(b) job $job2 submitted"
  poll 60 "(b) end of job $job2" job_ended "$job2"
  expect "(b) second job state" "$(job_field "$job2" JobState)" COMPLETED
  grep -q "^train-sync: pulled $shared" "$out2" || fail "(b) job $job2 did not pull the shared checkpoints"
  resume_line=$(grep '^resume: id=' "$out2" || true)
  [ "$(field step "$resume_line")" = "$s_step" ] && [[ $resume_line == "resume: id=$pre "* ]] ||
    fail "(b) job $job2 did not resume from checkpoint $pre (step $s_step): '$resume_line'"
  grep -q '^done: epoch=5 step=500$' "$out2" || fail "(b) job $job2 did not finish"
  grep -q '^train-sync: pushed to ' "$out2" || fail "(b) job $job2 did not push"
  [ -z "$(ls -A "$work/b/scratch")" ] || fail "(b) node-local directories left: $(ls "$work/b/scratch")"
  # (c) for (b): both jobs in the shared catalog.
  # The training runs came with their checkpoints (sync carries them); each
  # sync that copied something is a run of its own, ended "synced", with no saves.
  expect "(b) training runs: job:restarts:resumed_from:exit:steps_lost" "$(training_runs "$shared")" \
    "$job:-:-:preempted:0 $job2:-:$pre:clean:0"
  expect "(b) checkpoints attributed to a sync's run" \
    "$(q "SELECT count(*) FROM checkpoints c JOIN runs r ON r.id = c.run_id WHERE r.exit_reason = 'synced'")" 0
  echo "(b) figures: scancel_to_commit_s=$commit_s signal_to_commit_ms=$(field signal_to_commit_ms "$stopped") steps_lost=0"
  echo "ok: (b) scancel at step $s_step -> preempt checkpoint $pre committed ${commit_s}s later (KillWait 10 s)," \
    "pushed; job $job2 pulled, resumed from it and finished; runs 'preempted' then 'clean', 0 steps lost"
}

part_a > "$work/a.log" 2>&1 &
pid_a=$!
part_b > "$work/b.log" 2>&1 &
pid_b=$!
rc_a=0; wait $pid_a || rc_a=$?
rc_b=0; wait $pid_b || rc_b=$?
status=0
for p in a b; do
  echo "---- ($p)"
  cat "$work/$p.log"
  r=rc_$p
  if [ "${!r}" -ne 0 ]; then
    status=1
    for f in "$work/$p"/job-*.out; do [ -f "$f" ] && { echo "--- $f"; tail -n 30 "$f"; }; done
  fi
done
if [ $status -ne 0 ]; then
  echo "--- slurmctld.log (tail)"
  tail -n 30 "${CKPTDB_SLURM_DIR:-/tmp/ckptdb-slurm}/log/slurmctld.log" 2> /dev/null
  exit 1
fi
echo "---- (c) ckptdb history of each catalog"
"$cli" history "$work/a/ckpt"
"$cli" history "$work/b/shared"
echo "ok: (c) both attempts of (a) and both jobs of (b) with their Slurm job ids, restart counts and resumed-from" \
  "chain; 0 steps lost to each signal-driven stop"
echo "slurm suite: $((SECONDS - t_start)) s in all"
