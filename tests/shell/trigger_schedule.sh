#!/usr/bin/env bash
# The trigger decides the kind once per step, and every trainer agrees.
#
# The C trainer, the LibTorch trainer and the Python trainer run the same
# schedule on a simulated clock (--simulated-step-seconds: each step
# advances the trigger's clock by one second): 6 epochs of 10 steps, kind
# "epoch" every 2 epochs, kind "time" every 5 seconds.  Time falls due on
# the last step of every epoch, and at steps 20, 40 and 60 the epoch save is
# due as well: that step is saved once, as "epoch", with the epoch it
# completes.  Each trainer's "save:" lines must equal the schedule computed
# here, independently of the library.
#
# usage: trigger_schedule.sh C_TRAINER [--cpp CPP_TRAINER] [--python PYTHON TRAIN_PY]
set -euo pipefail

c_trainer=$1; shift
cpp_trainer=
python=
train_py=
while (($#)); do
    case $1 in
    --cpp) cpp_trainer=$2; shift 2 ;;
    --python) python=$2; train_py=$3; shift 3 ;;
    *) echo "trigger_schedule: unknown argument '$1'" >&2; exit 2 ;;
    esac
done

EPOCHS=6 SPE=10 EVERY_EPOCHS=2 EVERY_SECONDS=5

# The schedule: one decision per step, preempt > epoch > step > time.
expected=$(
    since=0
    for ((s = 1; s <= EPOCHS * SPE; s++)); do
        done_epochs=$((s / SPE))
        kind=
        if ((s % SPE == 0 && done_epochs % EVERY_EPOCHS == 0)); then
            kind=epoch
        elif ((s - since >= EVERY_SECONDS)); then
            kind=time
        fi
        if [[ -n $kind ]]; then
            echo "kind=$kind epoch=$done_epochs step=$s"
            since=$s
        fi
    done
)
# The schedule itself must contain the case under test.
grep -qx "kind=epoch epoch=2 step=20" <<<"$expected" || { echo "bad schedule"; exit 1; }
grep -qx "kind=time epoch=1 step=10" <<<"$expected" || { echo "bad schedule"; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
ran=0

check() {  # NAME OUTPUT_FILE
    local got
    got=$(grep '^save: ' "$2" | sed -E 's/.* (kind=[a-z]+ epoch=[0-9]+ step=[0-9]+).*/\1/')
    ran=$((ran + 1))
    if [[ $got == "$expected" ]]; then
        echo "ok: $1 saved $(wc -l <<<"$got") checkpoints on the schedule"
    else
        echo "FAIL: $1 saved another schedule:"
        diff <(echo "$expected") <(echo "$got") || true
        fails=$((fails + 1))
    fi
}

"$c_trainer" --dir "$tmp/c" --epochs $EPOCHS --steps-per-epoch $SPE --state-bytes 4K \
    --save-every-epochs $EVERY_EPOCHS --save-every-seconds $EVERY_SECONDS --simulated-step-seconds 1 \
    --keep-all > "$tmp/c.out"
check "C trainer" "$tmp/c.out"

if [[ -n $cpp_trainer ]]; then
    "$cpp_trainer" --dir "$tmp/cpp" --epochs $EPOCHS --samples $((SPE * 8)) --batch 8 --hidden 8 \
        --save-every-epochs $EVERY_EPOCHS --save-every-seconds $EVERY_SECONDS --simulated-step-seconds 1 \
        > "$tmp/cpp.out"
    check "LibTorch trainer" "$tmp/cpp.out"
fi

if [[ -n $python ]] && ! "$python" -c 'import torch' 2>/dev/null; then
    echo "skipped: the Python trainer ($python has no torch)"
    python=
fi
if [[ -n $python ]]; then
    "$python" "$train_py" --dir "$tmp/py" --epochs $EPOCHS --steps-per-epoch $SPE --width 8 \
        --save-every-epochs $EVERY_EPOCHS --save-every-seconds $EVERY_SECONDS --simulated-step-seconds 1 \
        > "$tmp/py.out"
    check "Python trainer" "$tmp/py.out"
fi

echo "$ran trainers checked, $fails on another schedule"
((fails == 0))
