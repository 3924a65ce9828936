#!/usr/bin/env bash
# Resume fidelity of the LibTorch trainer: the same training run, once
# uninterrupted and once under a loop that kills it at random moments
# (SIGKILL, or SIGTERM after which it saves a preempt checkpoint) and
# restarts it until it finishes, must end with bit-identical parameters and
# optimizer state.  Every other restart writes its saves in the background
# (--async).  Prints how many kills it survived.
# usage: fidelity.sh TRAINER   (FIDELITY_SEED=N repeats a sequence of kills)
set -euo pipefail
train=$1
work=$(mktemp -d "${TMPDIR:-/tmp}/ckptdb-fidelity.XXXXXX")
pid=
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

args=(--epochs 16 --samples 256 --batch 16 --save-every-epochs 4 --save-every-seconds 0.25 --step-sleep-ms 4)
spe=16

"$train" --dir "$work/ref" "${args[@]}" >"$work/ref.log" 2>&1 || { cat "$work/ref.log" >&2; fail "reference run failed"; }
ref=$(grep '^final:' "$work/ref.log") || fail "reference run printed no final state"

seed=${FIDELITY_SEED:-$$}
RANDOM=$seed
max_kills=6
kills=0 sigkill=0 sigterm=0 runs=0 midepoch=0
while :; do
  runs=$((runs + 1))
  ((runs <= 60)) || fail "no finish after 60 runs"
  extra=()
  ((runs % 2 == 0)) && extra=(--async)
  log=$work/run$runs.log
  : >"$log"  # exists before the first grep below
  "$train" --dir "$work/killed" "${args[@]}" "${extra[@]}" >"$log" 2>&1 &
  pid=$!
  sig=
  if ((kills < max_kills)); then
    # A random moment of the training itself: after the run has resumed
    # (loading LibTorch alone can take a second on a busy machine).
    for ((i = 0; i < 600; i++)); do
      grep -q '^resume:' "$log" && break
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.05
    done
    sleep "$(printf '0.%03d' $((RANDOM % 700)))"
    if kill -0 "$pid" 2>/dev/null && ! grep -q '^done:' "$log"; then
      if ((RANDOM % 2)); then sig=KILL; else sig=TERM; fi
      kill -"$sig" "$pid" 2>/dev/null || sig=
    fi
  fi
  rc=0
  { wait "$pid"; } 2>/dev/null || rc=$?
  pid=
  if grep -q '^resume: id=' "$log"; then
    s=$(sed -n 's/^resume: id=.* step=\([0-9]*\) .*/\1/p' "$log")
    ((s % spe != 0)) && midepoch=$((midepoch + 1))
  fi
  case "$sig:$rc" in
    KILL:137) kills=$((kills + 1)); sigkill=$((sigkill + 1)) ;;
    TERM:0)
      if grep -q '^stopped:' "$log"; then kills=$((kills + 1)); sigterm=$((sigterm + 1))
      else grep -q '^done:' "$log" || { cat "$log" >&2; fail "run $runs: exit 0 after SIGTERM without stopping or finishing"; }
      fi ;;
    TERM:143)  # before the handlers were installed: the default action
      ! grep -q '^resume:' "$log" || { cat "$log" >&2; fail "run $runs: killed by SIGTERM after installing its handlers"; }
      kills=$((kills + 1)); sigterm=$((sigterm + 1)) ;;
    :0|KILL:0) ;;
    *) cat "$log" >&2; fail "run $runs: signal '${sig:-none}', exit status $rc" ;;
  esac
  grep -q '^done:' "$log" && break
done

got=$(grep '^final:' "$log") || fail "the last run printed no final state"
[ "$got" = "$ref" ] || fail "final state differs: uninterrupted '$ref', killed and restarted '$got' (FIDELITY_SEED=$seed)"
echo "ok: survived $kills kills ($sigkill SIGKILL, $sigterm SIGTERM) in $runs runs, $midepoch resumes in the middle of an epoch;"
echo "    final parameters and optimizer state bit-identical to the uninterrupted run: $got"
