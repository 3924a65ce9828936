#!/usr/bin/env bash
# The C example trainer, killed for real: SIGKILL mid-run, then a restart
# must resume from the newest good checkpoint (falling back past one whose
# bytes were damaged) and finish.
set -euo pipefail
train="$1"
dir=$(mktemp -d "${TMPDIR:-/tmp}/ckptdb-train-XXXXXX")
trap 'kill -9 $pid 2>/dev/null || true; rm -rf "$dir"' EXIT
args=(--dir "$dir/ckpts" --epochs 12 --steps-per-epoch 10 --step-sleep-ms 5 --state-bytes 1M --save-every-epochs 1)

"$train" "${args[@]}" > "$dir/run1.log" 2>&1 &
pid=$!
for _ in $(seq 1 400); do
  [ "$(grep -c '^save:' "$dir/run1.log" || true)" -ge 3 ] && break
  sleep 0.05
done
kill -9 "$pid"; wait "$pid" 2>/dev/null || true
saves=$(grep -c '^save:' "$dir/run1.log" || true)
[ "$saves" -ge 3 ] || { echo "FAIL: run 1 saved only $saves times"; cat "$dir/run1.log"; exit 1; }

# Damage the newest complete checkpoint: the restart must skip it.
read -r newest prev < <(sqlite3 "$dir/ckpts/ckptdb.sqlite" \
  "SELECT group_concat(name, ' ') FROM (SELECT name FROM checkpoints WHERE status='complete' ORDER BY commit_seq DESC LIMIT 2)")
printf '\xff' | dd of="$dir/ckpts/$newest" bs=1 seek=1000 conv=notrunc status=none

"$train" "${args[@]}" > "$dir/run2.log" 2>&1 || { echo "FAIL: run 2 exited non-zero"; cat "$dir/run2.log"; exit 1; }
grep -q "^resume: id=.* name=$prev " "$dir/run2.log" || { echo "FAIL: run 2 did not resume from $prev"; cat "$dir/run2.log"; exit 1; }
grep -q '^done: epoch=12 step=120' "$dir/run2.log" || { echo "FAIL: run 2 did not finish"; cat "$dir/run2.log"; exit 1; }
status=$(sqlite3 "$dir/ckpts/ckptdb.sqlite" "SELECT status FROM checkpoints WHERE name='$newest' ORDER BY id LIMIT 1")
[ "$status" = corrupt ] || { echo "FAIL: $newest is '$status', expected corrupt"; exit 1; }
left=$(find "$dir/ckpts" -name '.ckptdb-tmp-*' | wc -l)
[ "$left" -eq 0 ] || { echo "FAIL: $left temp files left"; exit 1; }
echo "ok: killed after $saves saves, skipped damaged $newest, resumed from $prev, finished"
