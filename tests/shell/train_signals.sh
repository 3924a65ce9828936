#!/usr/bin/env bash
# The C example trainer against its catalog, read with the real sqlite3:
#   (a) a clean run: runs/events rows, rotation (5 epoch, 3 time), pruned files gone;
#   (b) SIGTERM: a "preempt" save of the step it stopped at, exit 0, run
#       'preempted'; the same command again resumes from it and finishes;
#   (c) SIGKILL: the next start marks the killed run 'crashed' (ended_at set,
#       a run_ended event) and resumes;
#   (d) SIGINT: as SIGTERM;
#   (e) the save and rotation flags: production defaults, --save-every-steps,
#       --keep-epoch, --keep-time, --keep-all.
# Usage: train_signals.sh path/to/ckptdb-train-c
set -euo pipefail
train="$1"
command -v sqlite3 >/dev/null || { echo "FAIL: sqlite3 is not installed"; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/ckptdb-signals-XXXXXX")
pid=
trap '[ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; rm -rf "$work"' EXIT

dir=
log=
fail() {
  echo "FAIL: $*"
  for f in "$work"/*.log; do [ -f "$f" ] && { echo "--- $f"; tail -n 20 "$f"; }; done
  if [ -n "$dir" ] && [ -f "$dir/ckptdb.sqlite" ]; then
    echo "--- checkpoints of $dir"
    sqlite3 -header "$dir/ckptdb.sqlite" \
      "SELECT id,name,kind,epoch,step,status,prune_rule,run_id FROM checkpoints ORDER BY id" || true
    echo "--- runs"
    sqlite3 -header "$dir/ckptdb.sqlite" \
      "SELECT id,pid,started_at,ended_at,resumed_from,last_epoch,last_step,exit_reason FROM runs" || true
  fi
  exit 1
}
q() { sqlite3 "$dir/ckptdb.sqlite" "$1"; }
# expect WHAT GOT WANT
expect() { [ "$2" = "$3" ] || fail "$1: got '$2', expected '$3'"; }
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }
count_saves() { grep -c '^save:' "$1" || true; }
# wait_saves LOG N: until the running trainer ($pid) printed N save lines.
wait_saves() {
  for _ in $(seq 1 600); do
    [ "$(count_saves "$1")" -ge "$2" ] && return 0
    kill -0 "$pid" 2>/dev/null || fail "the trainer ended before its save #$2"
    sleep 0.02
  done
  fail "no save #$2 within 12 s"
}

# ---------------------------------------------------------------- (a) clean
dir=$work/clean
log=$work/clean.log
# Epoch saves every 2 epochs (10 steps, >= 40 ms); a time save after 30 ms
# without one: both kinds overflow their keep-last counts.
args=(--dir "$dir" --epochs 24 --steps-per-epoch 5 --state-bytes 64K --save-every-epochs 2
      --save-every-seconds 0.03 --step-sleep-ms 4)
rc=0; "$train" "${args[@]}" >"$log" 2>&1 || rc=$?
expect "clean run exit status" "$rc" 0
grep -q '^resume: none, starting fresh$' "$log" || fail "clean run: no fresh start"
grep -q '^done: epoch=24 step=120$' "$log" || fail "clean run: no 'done: epoch=24 step=120'"
n_epoch=$(grep -c '^save: .* kind=epoch ' "$log" || true)
n_time=$(grep -c '^save: .* kind=time ' "$log" || true)
n_all=$(count_saves "$log")
expect "epoch saves (every 2nd of 24 epochs)" "$n_epoch" 12
[ "$n_time" -gt 3 ] || fail "clean run: only $n_time time saves, the test needs more than 3"
expect "kinds saved" "$n_all" "$((n_epoch + n_time))"

expect "runs rows" "$(q "SELECT count(*) FROM runs")" 1
expect "exit_reason, ended_at set, last_epoch, last_step" \
  "$(q "SELECT exit_reason, ended_at IS NOT NULL AND ended_at >= started_at, last_epoch, last_step FROM runs")" \
  "clean|1|24|120"
expect "run_ended event" "$(q "SELECT count(*), group_concat(detail) FROM events WHERE event='run_ended'")" "1|clean"

# Every save of the log has its begun and committed event, under this run.
ids=$(sed -n 's/^save: id=\([0-9]*\) .*/\1/p' "$log" | paste -sd, -)
expect "saves with begun+committed events" "$(q "SELECT count(*) FROM checkpoints c WHERE c.id IN ($ids)
    AND (SELECT count(*) FROM events e WHERE e.checkpoint_id = c.id AND e.event = 'begun' AND e.run_id = 1) = 1
    AND (SELECT count(*) FROM events e WHERE e.checkpoint_id = c.id AND e.event = 'committed' AND e.run_id = 1) = 1")" \
  "$n_all"
expect "checkpoint rows" "$(q "SELECT count(*) FROM checkpoints")" "$n_all"
expect "begun events" "$(q "SELECT count(*) FROM events WHERE event='begun'")" "$n_all"
expect "committed events" "$(q "SELECT count(*) FROM events WHERE event='committed'")" "$n_all"

# Rotation: the newest 5 epoch and 3 time checkpoints are complete, the rest
# pruned with their rule, each with one 'pruned' event naming it.
expect "complete epoch checkpoints" "$(q "SELECT group_concat(step) FROM (SELECT step FROM checkpoints
    WHERE kind='epoch' AND status='complete' ORDER BY step)")" "80,90,100,110,120"
newest_time=$(q "SELECT group_concat(id) FROM (SELECT id FROM checkpoints WHERE kind='time'
    AND commit_seq IS NOT NULL ORDER BY commit_seq DESC LIMIT 3)")
expect "complete time checkpoints (the newest 3)" \
  "$(q "SELECT group_concat(id) FROM (SELECT id FROM checkpoints WHERE kind='time' AND status='complete'
    ORDER BY commit_seq DESC)")" "$newest_time"
expect "pruned rows" "$(q "SELECT count(*) FROM checkpoints WHERE status='pruned'")" "$((n_all - 8))"
expect "pruned rows without their keep_last rule" "$(q "SELECT count(*) FROM checkpoints WHERE status='pruned'
    AND (prune_rule IS NOT 'keep_last:' || kind || '=' || CASE kind WHEN 'epoch' THEN 5 ELSE 3 END
         OR deleted_at IS NULL)")" 0
expect "pruned events matching their rows" "$(q "SELECT count(*) FROM checkpoints c JOIN events e
    ON e.checkpoint_id = c.id AND e.event = 'pruned' AND e.detail = c.prune_rule AND e.run_id = 1
    WHERE c.status = 'pruned'")" "$((n_all - 8))"
expect "pruned events" "$(q "SELECT count(*) FROM events WHERE event='pruned'")" "$((n_all - 8))"
# On disk: exactly the complete checkpoints (and the catalog, last.pt, the reserve).
[ -f "$dir/.ckptdb-ballast" ] || { echo "FAIL: no reserve (.ckptdb-ballast) in $dir"; exit 1; }
on_disk=$(cd "$dir" && ls -A | grep -v -x -e 'ckptdb.sqlite' -e 'ckptdb.sqlite-wal' -e 'ckptdb.sqlite-shm' \
  -e 'last.pt' -e '.ckptdb-ballast' | sort | paste -sd' ' -)
expect "files on disk" "$on_disk" "$(q "SELECT name FROM checkpoints WHERE status='complete'" | sort | paste -sd' ' -)"
expect "last.pt" "$(readlink "$dir/last.pt")" "epoch_024.pt"
echo "ok: clean run: $n_all saves ($n_epoch epoch, $n_time time), 5 epoch + 3 time kept, $((n_all - 8)) pruned" \
  "with rule and event, files gone, run 'clean' at step 120"

# start_training NAME: the trainer on $work/NAME in the background (dir, log,
# args, pid and pid1 set for the caller), until it printed two save lines.
start_training() {
  dir=$work/$1
  log=$work/$1.log
  args=(--dir "$dir" --epochs 16 --steps-per-epoch 10 --state-bytes 64K --save-every-epochs 2
        --save-every-seconds 0 --step-sleep-ms 10)
  "$train" "${args[@]}" >"$log" 2>&1 &
  pid=$!
  pid1=$pid
  wait_saves "$log" 2
}

# ------------------------------------------------------- (b), (d) SIGTERM / SIGINT
# Epoch saves every 2 epochs (20 steps, >= 200 ms): a signal sent right after
# a save line appears lands between saves, so the stop needs its own save.
preempt_scenario() {
  local sig=$1 signo=$2 attempt stopped s_step s_kind s_epoch last pid1 run1 resumed rid
  for attempt in 1 2 3; do
    start_training "$sig-$attempt"
    kill -"$sig" "$pid"
    rc=0; wait "$pid" || rc=$?
    pid=
    expect "exit status after SIG$sig" "$rc" 0
    stopped=$(grep '^stopped:' "$log" || true)
    [ -n "$stopped" ] || fail "SIG$sig: no 'stopped:' line"
    expect "lines after 'stopped:'" "$(tail -n 1 "$log")" "$stopped"
    grep -q '^done:' "$log" && fail "SIG$sig: the run printed 'done:'"
    expect "stopped: signal" "$(field signal "$stopped")" "$signo"
    s_step=$(field step "$stopped"); s_epoch=$(field epoch "$stopped"); s_kind=$(field kind "$stopped")
    [[ $s_step =~ ^[0-9]+$ ]] && ((s_step < 160)) || fail "SIG$sig: bad stop step '$s_step'"
    expect "stopped: epoch of step $s_step" "$s_epoch" "$((s_step / 10))"
    # The newest checkpoint is the save of the step it stopped at.
    last=$(q "SELECT id, kind, epoch, step, status FROM checkpoints ORDER BY commit_seq DESC LIMIT 1")
    expect "newest checkpoint after SIG$sig" "${last#*|}" "$s_kind|$s_epoch|$s_step|complete"
    expect "save line of the newest checkpoint" "$(grep '^save:' "$log" | tail -n 1 | sed 's/ bytes=.*//')" \
      "save: id=${last%%|*} name=$(q "SELECT name FROM checkpoints WHERE id=${last%%|*}") kind=$s_kind epoch=$s_epoch step=$s_step"
    if [ "$s_kind" != preempt ]; then
      # Legal (the signal came during a trigger save of this very step), but
      # not what this scenario is about: run it again.
      echo "note: SIG$sig landed during the $s_kind save of step $s_step; again"
      continue
    fi
    expect "preempt checkpoint name" "$(q "SELECT name FROM checkpoints WHERE id=${last%%|*}")" \
      "$(printf 'preempt_%06d.pt' "$s_step")"
    run1=$(q "SELECT id FROM runs WHERE pid=$pid1")
    expect "runs rows after SIG$sig" "$(q "SELECT count(*) FROM runs")" 1
    expect "run row after SIG$sig (exit_reason, ended_at set, last_step)" \
      "$(q "SELECT exit_reason, ended_at IS NOT NULL, last_step FROM runs WHERE id=$run1")" "preempted|1|$s_step"
    expect "run_ended event after SIG$sig" \
      "$(q "SELECT group_concat(detail) FROM events WHERE event='run_ended' AND run_id=$run1")" preempted
    expect "preempt checkpoint events" "$(q "SELECT group_concat(event) FROM (SELECT event FROM events
        WHERE checkpoint_id=${last%%|*} ORDER BY id)")" "begun,committed"

    # The same command again: resumes from the preempt checkpoint, finishes.
    log=$work/$sig-$attempt-restart.log
    rc=0; "$train" "${args[@]}" >"$log" 2>&1 || rc=$?
    expect "restart exit status" "$rc" 0
    resumed=$(grep '^resume:' "$log" || true)
    expect "restart resume line" "${resumed% bytes=*}" \
      "resume: id=${last%%|*} name=$(printf 'preempt_%06d.pt' "$s_step") epoch=$s_epoch step=$s_step"
    grep -q '^done: epoch=16 step=160$' "$log" || fail "restart after SIG$sig did not finish"
    first=$(grep -m 1 '^save:' "$log" || true)  # no pipe: head exiting first could fail grep (pipefail)
    [ -z "$first" ] || [ "$(field step "$first")" -gt "$s_step" ] || fail "restart saved step $(field step "$first") again"
    rid=$(q "SELECT max(id) FROM runs")
    expect "restart run row" "$(q "SELECT resumed_from, exit_reason, last_step FROM runs WHERE id=$rid")" \
      "${last%%|*}|clean|160"
    expect "resumed event" "$(q "SELECT count(*) FROM events WHERE event='resumed' AND run_id=$rid
        AND checkpoint_id=${last%%|*}")" 1
    # Rotation lets the preempt checkpoint go once a newer one is committed.
    expect "preempt checkpoint after the restart" \
      "$(q "SELECT status, prune_rule FROM checkpoints WHERE id=${last%%|*}")" "pruned|keep_last:preempt=0"
    [ ! -e "$dir/$(printf 'preempt_%06d.pt' "$s_step")" ] || fail "the pruned preempt file is still there"
    echo "ok: SIG$sig: exit 0, preempt save of step $s_step, run 'preempted'; restart resumed from it and finished"
    return 0
  done
  fail "SIG$sig: three tries, never a stop between saves"
}
preempt_scenario TERM 15

# ---------------------------------------------------------------- (c) SIGKILL
start_training kill
kill -9 "$pid"
{ wait "$pid"; } 2>/dev/null || true
pid=
killed=$(q "SELECT id FROM runs WHERE pid=$pid1")
[ -n "$killed" ] || fail "SIGKILL: no runs row for pid $pid1"
expect "killed run before the restart (ended_at, exit_reason)" \
  "$(q "SELECT ended_at IS NULL, exit_reason IS NULL FROM runs WHERE id=$killed")" "1|1"
last_saved=$(field step "$(grep '^save:' "$log" | tail -n 1)")
log=$work/kill-restart.log
rc=0; "$train" "${args[@]}" >"$log" 2>&1 || rc=$?
expect "restart after SIGKILL exit status" "$rc" 0
resumed=$(grep '^resume: id=' "$log" || true)
[ -n "$resumed" ] || fail "restart after SIGKILL did not resume"
[ "$(field step "$resumed")" -ge "$last_saved" ] || fail "resumed at step $(field step "$resumed"), before $last_saved"
grep -q '^done: epoch=16 step=160$' "$log" || fail "restart after SIGKILL did not finish"
expect "killed run after the restart (exit_reason, ended_at set)" \
  "$(q "SELECT exit_reason, ended_at IS NOT NULL AND ended_at >= started_at FROM runs WHERE id=$killed")" "crashed|1"
expect "run_ended event of the killed run" \
  "$(q "SELECT count(*) FROM events WHERE event='run_ended' AND run_id=$killed AND detail LIKE 'crashed%'")" 1
expect "runs after the restart" "$(q "SELECT group_concat(exit_reason) FROM (SELECT exit_reason FROM runs ORDER BY id)")" \
  "crashed,clean"
expect "no save left writing" "$(q "SELECT count(*) FROM checkpoints WHERE status='writing'")" 0
echo "ok: SIGKILL after $(count_saves "$work/kill.log") saves: the next start marked run $killed 'crashed'" \
  "(ended_at set, run_ended event), resumed at step $(field step "$resumed") and finished"

preempt_scenario INT 2

# ---------------------------------------------------------------- (e) flags
kinds() { sed -n 's/^save: .* kind=\([a-z]*\) epoch=[0-9]* step=\([0-9]*\) .*/\1:\2/p' "$1" | paste -sd' ' -; }
dir=$work/defaults; log=$work/defaults.log
"$train" --dir "$dir" --epochs 11 --steps-per-epoch 3 --state-bytes 4K >"$log" 2>&1 || fail "defaults run failed"
expect "saves with the default trigger" "$(kinds "$log")" "epoch:15 epoch:30"
dir=$work/steps; log=$work/steps.log
"$train" --dir "$dir" --epochs 4 --steps-per-epoch 5 --state-bytes 4K --save-every-epochs 0 --save-every-seconds 0 \
  --save-every-steps 6 >"$log" 2>&1 || fail "--save-every-steps run failed"
expect "saves with --save-every-steps 6" "$(kinds "$log")" "step:6 step:12 step:18"
expect "step checkpoints kept" "$(q "SELECT count(*) FROM checkpoints WHERE status='complete'")" 3
dir=$work/keep; log=$work/keep.log
"$train" --dir "$dir" --epochs 6 --steps-per-epoch 8 --state-bytes 4K --save-every-epochs 1 \
  --save-every-seconds 0.02 --step-sleep-ms 5 --keep-epoch 2 --keep-time 1 >"$log" 2>&1 || fail "--keep-* run failed"
[ "$(grep -c ' kind=time ' "$log" || true)" -ge 2 ] || fail "--keep-* run: fewer than 2 time saves"
expect "kept with --keep-epoch 2 --keep-time 1" \
  "$(q "SELECT group_concat(kind || ':' || n) FROM (SELECT kind, count(*) AS n FROM checkpoints
      WHERE status='complete' GROUP BY kind ORDER BY kind)")" "epoch:2,time:1"
expect "rules with --keep-epoch 2 --keep-time 1" \
  "$(q "SELECT group_concat(prune_rule) FROM (SELECT DISTINCT prune_rule FROM checkpoints WHERE status='pruned'
      ORDER BY prune_rule)")" "keep_last:epoch=2,keep_last:time=1"
dir=$work/keepall; log=$work/keepall.log
"$train" --dir "$dir" --epochs 9 --steps-per-epoch 2 --state-bytes 4K --save-every-epochs 1 --keep-all >"$log" 2>&1 ||
  fail "--keep-all run failed"
expect "complete with --keep-all" "$(q "SELECT count(*) FROM checkpoints WHERE status='complete'")" 9
expect "pruned with --keep-all" "$(q "SELECT count(*) FROM checkpoints WHERE status<>'complete'")" 0
echo "ok: flags: default trigger saves epochs 5 and 10, --save-every-steps, --keep-epoch/--keep-time, --keep-all"
