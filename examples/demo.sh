#!/usr/bin/env bash
# demo.sh - ckptdb in two minutes.  Act one: a trainer is SIGKILLed in the
# middle of a run (ideally during a save), restarted, resumes from the newest
# good checkpoint and finishes.  Then the catalog is shown (rotation pruned
# the older checkpoints; the killed run is recorded as crashed), and the
# newest file is checked against its catalog checksum with xxh128sum.
# Act two: a fresh run gets SIGTERM, as a scheduler sends before preempting a
# job; it saves a "preempt" checkpoint of the step it was on and exits 0, and
# the same command, run again, resumes from exactly that step.
#
# The trainer is the LibTorch one (examples/cpp/train.cpp: an MLP with Adam
# and StepLR whose whole training state is one checkpoint) when LibTorch is
# found (the one inside the torch wheel tools/setup.sh installs), else the
# simulated C trainer (examples/c/train.c).
#
# Works on a fresh Debian 12 machine: tools/setup.sh installs what is missing
# (Debian packages when run as root or through sudo; the virtual environment
# .venv with the pinned torch).  Environment:
#   BUILD_DIR   build directory (default: <repo>/build-demo)
#   MESON_ARGS  extra arguments for a new `meson setup` (default: -Dtests=false)
#   TRAINER     auto (default: C++ when LibTorch was found), cpp or c
#   TRAIN_ARGS  trainer options (default: a small 30-epoch run saving every
#               5 epochs and every 0.6 s; the C trainer's state is 8 MiB)
#   KEEP=1      keep the temporary checkpoint directory
#   CKPTDB_VENV, CKPTDB_NO_TORCH=1  as for tools/setup.sh
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$REPO/build-demo}
MESON_ARGS=${MESON_ARGS--Dtests=false}
TRAINER=${TRAINER:-auto}
case $TRAINER in auto | cpp | c) ;; *) echo "demo: TRAINER must be auto, cpp or c" >&2; exit 2 ;; esac

say() { printf '\n== %s\n' "$*"; }
die() { printf '\ndemo: FAILED: %s\n' "$*" >&2; exit 1; }
indent() { sed 's/^/    /'; }

# --- 1. prerequisites ------------------------------------------------------
# The same script as tests/run.sh's: Debian packages, and the virtual
# environment (.venv) with the pinned torch whose wheel carries LibTorch.
say "Checking prerequisites (tools/setup.sh)"
py=$("$REPO/tools/setup.sh") || die "tools/setup.sh failed"
torch_mode=auto  # for a new build directory
[[ ${CKPTDB_NO_TORCH:-0} == 0 ]] || torch_mode=disabled

# --- 2. build --------------------------------------------------------------
say "Configuring $BUILD_DIR"
if [[ ! -f $BUILD_DIR/build.ninja ]]; then
    read -r -a meson_args <<<"$MESON_ARGS"
    out=$(meson setup "$BUILD_DIR" "$REPO" -Dtest_python="$py" -Dtorch=$torch_mode "${meson_args[@]}" 2>&1) ||
        { echo "$out" >&2; die "meson setup failed"; }
    echo "configured $BUILD_DIR (${MESON_ARGS:-no extra options})"
else
    out=$(meson setup --reconfigure "$BUILD_DIR" -Dtest_python="$py" 2>&1) ||
        { echo "$out" >&2; die "meson setup --reconfigure failed (a build directory of an older tree, whose test interpreter option was -Dpython: remove $BUILD_DIR)"; }
fi
grep -h '^Message: LibTorch' "$BUILD_DIR/meson-logs/meson-log.txt" 2>/dev/null | tail -n 1 | sed 's/^Message: /using /' || true
# The LibTorch trainer is a target only when meson found LibTorch.
have_cpp=0
# (Listed whole first: grep -q would stop reading early, and under pipefail
# ninja's SIGPIPE would read as "no such target".)
targets=$(ninja -C "$BUILD_DIR" -t targets all 2>/dev/null || true)
grep -q '^examples/ckptdb-train-cpp:' <<<"$targets" && have_cpp=1
if [[ $TRAINER == cpp && $have_cpp == 0 ]]; then
    die "TRAINER=cpp, but LibTorch was not found when $BUILD_DIR was configured (tools/setup.sh installs torch unless CKPTDB_NO_TORCH=1; or set MESON_ARGS=-Dlibtorch=<LibTorch root> with a fresh BUILD_DIR)"
fi
if [[ $TRAINER == cpp || ($TRAINER == auto && $have_cpp == 1) ]]; then
    target=examples/ckptdb-train-cpp
    default_args="--epochs 30 --step-sleep-ms 10 --save-every-epochs 5 --save-every-seconds 0.6"
    say "Building the LibTorch trainer (examples/cpp/train.cpp; compiling LibTorch code takes a minute)"
else
    target=examples/ckptdb-train-c
    default_args="--epochs 30 --steps-per-epoch 20 --step-sleep-ms 10 --state-bytes 8M --save-every-epochs 5 --save-every-seconds 0.6"
    if [[ $TRAINER == c ]]; then
        say "Building the C example trainer"
    else
        say "Building the C example trainer (LibTorch not found: the C++ trainer is not built)"
    fi
fi
TRAIN_ARGS=${TRAIN_ARGS:-$default_args}
read -r -a train_args <<<"$TRAIN_ARGS"
out=$(ninja -C "$BUILD_DIR" "$target" 2>&1) || { echo "$out" >&2; die "build failed"; }
echo "$out" | tail -n 1
TRAIN=$BUILD_DIR/$target
[[ -x $TRAIN ]] || die "$TRAIN was not built"

# --- 3. a run that gets killed ---------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ckptdb-demo.XXXXXX")
CKPT=$WORK/ckpts
pid=
cleanup() {
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
    if [[ ${KEEP:-0} == 1 ]]; then
        echo "kept: $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT

say "Run 1: $(basename "$TRAIN") --dir $CKPT ${train_args[*]}"
"$TRAIN" --dir "$CKPT" "${train_args[@]}" >"$WORK/run1.log" 2>&1 &
pid=$!

# Wait for three committed saves.
for ((i = 0; i < 1200; i++)); do
    n=$(grep -c '^save:' "$WORK/run1.log" || true)
    ((n >= 3)) && break
    kill -0 "$pid" 2>/dev/null || { cat "$WORK/run1.log" >&2; die "run 1 ended before its third save"; }
    sleep 0.1
done
((n >= 3)) || die "no third save within 120 s"

# Then kill it, preferably while a save is in flight: after a short random
# pause, watch for the library's temp file (.ckptdb*) and SIGKILL on sight.
sleep "0.$((RANDOM % 4))"
shopt -s nullglob
inflight=
for ((i = 0; i < 300; i++)); do
    tmp=("$CKPT"/.ckptdb*)
    if ((${#tmp[@]})); then inflight=${tmp[0]##*/}; break; fi
    sleep 0.01
done
kill -KILL "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
pid=
if [[ -n $inflight ]]; then
    echo "SIGKILL while a save was in flight (temp file $inflight present)"
else
    echo "SIGKILL between saves"
fi
echo "last lines of run 1:"
tail -n 4 "$WORK/run1.log" | indent
last_saved_step=$(grep '^save:' "$WORK/run1.log" | tail -n 1 | sed -n 's/.* step=\([0-9]*\) .*/\1/p')

say "Directory and newest catalog rows right after the kill"
ls -la "$CKPT" | tail -n +2 | indent
sqlite3 -header -column "$CKPT/ckptdb.sqlite" \
    "SELECT id,name,kind,epoch,step,status FROM checkpoints ORDER BY id DESC LIMIT 4" | indent

# --- 4. restart: resume and finish -----------------------------------------
say "Run 2: the same command again; it resumes and finishes"
set +e
"$TRAIN" --dir "$CKPT" "${train_args[@]}" 2>&1 | tee "$WORK/run2.log" | indent
rc=${PIPESTATUS[0]}
set -e
((rc == 0)) || die "run 2 exited with status $rc"
resume_line=$(grep '^resume: id=' "$WORK/run2.log" || true)
[[ -n $resume_line ]] || die "run 2 did not resume from a checkpoint"
resumed_step=$(sed -n 's/.* step=\([0-9]*\) .*/\1/p' <<<"$resume_line")
((resumed_step >= last_saved_step)) ||
    die "run 2 resumed at step $resumed_step, older than the last committed save (step $last_saved_step)"
grep -q '^done:' "$WORK/run2.log" || die "run 2 did not finish"
echo "resumed at step $resumed_step (last save committed by run 1: step $last_saved_step) and finished"

# --- 5. the catalog --------------------------------------------------------
say "The catalog ($CKPT/ckptdb.sqlite): rotation kept the newest 5 epoch and 3 time checkpoints"
sqlite3 -header -column "$CKPT/ckptdb.sqlite" \
    "SELECT id,name,kind,epoch,step,size,status,prune_rule,checksum FROM checkpoints" | indent
echo "  runs: run 1 was found crashed when run 2 opened the catalog"
sqlite3 -header -column "$CKPT/ckptdb.sqlite" \
    "SELECT id,pid,started_at,ended_at,exit_reason,resumed_from,last_step,saves FROM run_history" | indent

say "Newest complete checkpoint vs. xxh128sum"
IFS='|' read -r name sum < <(sqlite3 "$CKPT/ckptdb.sqlite" \
    "SELECT name, checksum FROM checkpoints WHERE status='complete' ORDER BY committed_at DESC, id DESC LIMIT 1")
[[ -n ${name:-} ]] || die "no complete checkpoint in the catalog"
disk=$(cd "$CKPT" && xxh128sum -q -- "$name" | cut -d' ' -f1)
echo "    catalog : $sum  $name"
echo "    on disk : $disk  $name"
[[ $disk == "$sum" ]] || die "checksum mismatch for $name"
echo "match"

if [[ $target == examples/ckptdb-train-cpp ]] && "$py" -c 'import torch' 2>/dev/null; then
    say "The same file in Python: plain torch.load (the safe weights-only loader) gives a plain dict"
    "$py" - "$CKPT/$name" <<'PY' 2>&1 | indent || die "torch.load failed on $name"
import sys, torch
d = torch.load(sys.argv[1])
print({k: (v if k in ("epoch", "step") else type(v).__name__) for k, v in d.items()})
print("model:", {k: list(v.shape) for k, v in d["model"].items()})
print("optimizer:", [{k: v for k, v in g.items() if k != "params"} for g in d["optimizer"]["param_groups"]])
print("scheduler:", d["scheduler"])
PY
fi

# --- 6. act two: a polite preemption ---------------------------------------
CKPT2=$WORK/ckpts-preempt
say "Run 3: a fresh directory; SIGTERM after two saves, as a scheduler sends before preempting"
"$TRAIN" --dir "$CKPT2" "${train_args[@]}" >"$WORK/run3.log" 2>&1 &
pid=$!
for ((i = 0; i < 1200; i++)); do
    n=$(grep -c '^save:' "$WORK/run3.log" || true)
    ((n >= 2)) && break
    kill -0 "$pid" 2>/dev/null || { cat "$WORK/run3.log" >&2; die "run 3 ended before its second save"; }
    sleep 0.1
done
((n >= 2)) || die "no second save within 120 s"
kill -TERM "$pid"
set +e
wait "$pid"
rc=$?
set -e
pid=
indent <"$WORK/run3.log"
((rc == 0)) || die "run 3 exited with status $rc after SIGTERM, expected 0"
stopped=$(grep '^stopped:' "$WORK/run3.log" || true)
[[ -n $stopped ]] || die "run 3 printed no 'stopped:' line"
stop_step=$(sed -n 's/.* step=\([0-9]*\).*/\1/p' <<<"$stopped")
stop_kind=$(sed -n 's/.* kind=\([a-z]*\).*/\1/p' <<<"$stopped")
echo "exit status $rc: stopped at step $stop_step, saved as kind \"$stop_kind\""
[[ $stop_kind == preempt ]] ||
    echo "(the signal came while the trigger was saving this very step, so no separate preempt save was needed)"

say "The catalog after the preemption"
sqlite3 -header -column "$CKPT2/ckptdb.sqlite" \
    "SELECT id,name,kind,epoch,step,status,prune_rule FROM checkpoints" | indent
sqlite3 -header -column "$CKPT2/ckptdb.sqlite" \
    "SELECT id,pid,ended_at,exit_reason,last_step,saves FROM run_history" | indent
IFS='|' read -r pre_id pre_name pre_step < <(sqlite3 "$CKPT2/ckptdb.sqlite" \
    "SELECT id, name, step FROM checkpoints WHERE status='complete' ORDER BY commit_seq DESC LIMIT 1")
[[ ${pre_step:-} == "$stop_step" ]] || die "the newest checkpoint is at step ${pre_step:-?}, run 3 stopped at $stop_step"

say "Run 4: the same command again, no extra flags; it resumes from $pre_name"
set +e
"$TRAIN" --dir "$CKPT2" "${train_args[@]}" 2>&1 | tee "$WORK/run4.log" | indent
rc=${PIPESTATUS[0]}
set -e
((rc == 0)) || die "run 4 exited with status $rc"
grep -q "^resume: id=$pre_id name=$pre_name " "$WORK/run4.log" || die "run 4 did not resume from $pre_name"
grep -q '^done:' "$WORK/run4.log" || die "run 4 did not finish"
echo "resumed at step $stop_step, where run 3 stopped: no step was lost to the preemption"
say "Demo OK"
