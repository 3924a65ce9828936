# Shared by the tests/shell/cli_*.sh tests (sourced, not a test itself).
# Usage in a test:  source "$(dirname "$0")/cli_lib.sh" "$@"
# Arguments: the ckptdb executable and the example trainer.
ckptdb="$1"
train="$2"
work=$(mktemp -d "${TMPDIR:-/tmp}/ckptdb-cli-XXXXXX")
trap 'rm -rf "$work"' EXIT
checks=0

fail() {
  echo "FAIL: $*" >&2
  for f in out err; do
    if [ -s "$work/$f" ]; then echo "--- last ckptdb std$f:" >&2; head -c 4000 "$work/$f" >&2; fi
  done
  exit 1
}
ok() { checks=$((checks + 1)); }

# ckptdb ARGS...: stdout in $work/out, stderr in $work/err, status in $rc.
run() {
  set +e
  "$ckptdb" "$@" > "$work/out" 2> "$work/err"
  rc=$?
  set -e
}
# expect RC ARGS...: run and insist on the exit status.
expect() {
  local want=$1; shift
  run "$@"
  [ "$rc" -eq "$want" ] || fail "ckptdb $* exited $rc, expected $want"
  ok
}
# The error contract: exactly one line on stderr, naming $1; nothing on stdout.
one_line_error() {
  local lines
  lines=$(wc -l < "$work/err")
  [ "$lines" -eq 1 ] || fail "expected one line on stderr, got $lines"
  grep -qF -- "$1" "$work/err" || fail "stderr does not name '$1': $(cat "$work/err")"
  [ ! -s "$work/out" ] || fail "an error printed on stdout: $(head -c 300 "$work/out")"
  ok
}
out_has() { grep -qE -- "$1" "$work/out" || fail "stdout lacks /$1/"; ok; }
out_lacks() { ! grep -qE -- "$1" "$work/out" || fail "stdout has /$1/"; ok; }
err_has() { grep -qE -- "$1" "$work/err" || fail "stderr lacks /$1/"; ok; }

# pycheck 'python statements using d (the JSON on stdout)': assert-based.
pycheck() {
  python3 - "$work/out" "$1" <<'PY' || fail "JSON check failed: $1"
import json, sys
d = json.load(open(sys.argv[1]))
exec(sys.argv[2])
PY
  ok
}

# q DIR SQL: a read-only query of DIR's catalog.
q() { sqlite3 -readonly "$1/ckptdb.sqlite" "$2"; }

# A fingerprint of a directory: every file's name and checksum (catalog
# files excepted) plus a dump of the catalog's rows.
snapshot() {
  local d=$1
  {
    if [ -d "$d" ]; then
      (cd "$d" && find . -mindepth 1 ! -name 'ckptdb.sqlite*' -printf '%P %s\n' | sort)
      (cd "$d" && find . -mindepth 1 -type f ! -name 'ckptdb.sqlite*' -exec xxh128sum {} + 2> /dev/null | sort)
      [ ! -f "$d/ckptdb.sqlite" ] || sqlite3 -readonly "$d/ckptdb.sqlite" .dump
    else
      echo "absent"
    fi
  } | xxh128sum | cut -d' ' -f1
}

# trainer DIR ARGS...: run the example trainer, output in $work/train.log.
trainer() {
  local d=$1; shift
  "$train" --dir "$d" --steps-per-epoch 10 --save-every-epochs 1 --keep-all "$@" > "$work/train.log" 2>&1 \
    || { cat "$work/train.log" >&2; fail "the trainer failed on $d"; }
}

# Every complete row of DIR's catalog names a file whose size and
# xxh128sum match the row.  Echoes the number of complete rows.
catalog_consistent() {
  local d=$1 n=0 name size sum got
  while IFS='|' read -r name size sum; do
    [ -f "$d/$name" ] || { echo "complete row $name has no file in $d" >&2; return 1; }
    got=$(stat -c %s "$d/$name")
    [ "$got" = "$size" ] || { echo "$d/$name has $got bytes, the row says $size" >&2; return 1; }
    got=$(xxh128sum "$d/$name" 2> /dev/null | cut -d" " -f1)
    [ "$got" = "$sum" ] || { echo "$d/$name has xxh128 $got, the row says $sum" >&2; return 1; }
    n=$((n + 1))
  done < <(q "$d" "SELECT name, size, checksum FROM checkpoints WHERE status = 'complete' ORDER BY id")
  echo "$n"
}

# flip DIR NAME: invert one byte (offset 1000) of a checkpoint file.
flip() {
  local b
  b=$(od -An -tu1 -j1000 -N1 "$1/$2" | tr -d ' ')
  printf "\\$(printf %03o $((b ^ 255)))" | dd of="$1/$2" bs=1 seek=1000 conv=notrunc status=none
}
