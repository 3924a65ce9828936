#!/usr/bin/env bash
# ckptdb sync SRC DST: copies every complete checkpoint, verified, with a
# consistent catalog in DST; idempotent; a source file whose bytes fail their
# checksum is reported (exit 3); SIGKILL at random moments and a re-run leave
# DST consistent each time; --delete mirrors SRC's prunes.
# CKPTDB_TEST_SEED=N repeats the random kill moments of a run.
set -euo pipefail
source "$(dirname "$0")/cli_lib.sh" "$@"

seed=${CKPTDB_TEST_SEED:-$$}
RANDOM=$seed
echo "seed: $seed"

src="$work/src"
trainer "$src" --epochs 12 --state-bytes 6M
q "$src" "SELECT name, checksum FROM checkpoints WHERE status = 'complete' ORDER BY id" > "$work/src.rows"
[ "$(wc -l < "$work/src.rows")" -eq 12 ] || fail "expected 12 checkpoints in SRC"
complete_rows() { q "$1" "SELECT name, checksum FROM checkpoints WHERE status = 'complete' ORDER BY id"; }

# DST after a sync that may have been killed: its catalog names only whole,
# verified files, each one a complete checkpoint of SRC with the same bytes.
dst_consistent() {
  local dst=$1
  [ -f "$dst/ckptdb.sqlite" ] || return 0
  [ "$(q "$dst" "SELECT count(*) FROM sqlite_master WHERE name = 'checkpoints'")" = 1 ] \
    || fail "a killed sync left DST with a catalog file that has no schema ($(stat -c %s "$dst/ckptdb.sqlite") bytes)"
  catalog_consistent "$dst" > /dev/null || fail "DST catalog names a file that does not match (see above)"
  complete_rows "$dst" > "$work/dst.rows"
  comm -23 <(sort "$work/dst.rows") <(sort "$work/src.rows") > "$work/extra.rows"
  [ ! -s "$work/extra.rows" ] || fail "DST has complete rows SRC does not: $(cat "$work/extra.rows")"
  "$ckptdb" ls "$dst" > /dev/null 2>&1 || fail "ckptdb ls cannot read DST's catalog"
  ok
}
# DST after a sync that finished: the same complete checkpoints as SRC,
# nothing left over (fsck clean: no temp files, no unknown files).
dst_complete() {
  local dst=$1
  [ "$(catalog_consistent "$dst")" = 12 ] || fail "DST does not have the 12 checkpoints whole"
  complete_rows "$dst" | cmp -s - "$work/src.rows" || fail "DST's complete rows differ from SRC's"
  "$ckptdb" fsck "$dst" > "$work/fsck.out" 2>&1 || fail "fsck DST after a finished sync: $(cat "$work/fsck.out")"
  ok
}

# --- a plain sync, text and JSON, idempotent -----------------------------------
expect 0 sync "$src" "$work/d1"
for n in $(seq 1 12); do out_has "^copied +$n  $(printf 'epoch_%03d.pt' "$n")  6\.0 MiB"; done
out_has "^copied 12 checkpoints \(72\.0 MiB\) to $work/d1; 0 already there, 0 deleted, 0 failed$"
for n in 1 12; do err_has "^sync: copied $(printf 'epoch_%03d.pt' "$n") \(6\.0 MiB\); [0-9.]+ MiB of 72\.0 MiB done$"; done
! grep -q $'\r' "$work/err" || fail "a progress bar on a non-terminal stderr"
dst_complete "$work/d1"
expect 0 sync --json "$src" "$work/d1"
pycheck '
assert list(d.keys()) == ["src", "dst", "copied", "bytes", "present", "deleted", "failed", "checkpoints"], d.keys()
assert (d["copied"], d["bytes"], d["present"], d["deleted"], d["failed"]) == (0, 0, 12, 0, 0), d
assert all(list(c.keys()) == ["kind", "name", "checkpoint_id", "detail", "action"] for c in d["checkpoints"])
assert [(c["kind"], c["checkpoint_id"]) for c in d["checkpoints"]] == [("present", i) for i in range(1, 13)], d
'
dst_complete "$work/d1"
expect 2 sync "$src" "$src/inside"
one_line_error "inside"
[ ! -e "$src/inside" ] || fail "a refused sync created DST"
expect 2 sync "$work/d1" "$work"
one_line_error "$work"
mkdir "$work/plain"
expect 1 sync "$work/plain" "$work/d-never"
one_line_error "$work/plain/ckptdb.sqlite"
[ ! -e "$work/d-never" ] || fail "sync from a non-catalog created DST"

# --- SIGKILL at random moments, then a re-run ----------------------------------
kills=0
for round in 1 2 3 4; do
  dst="$work/k$round"
  for k in 1 2 3; do
    ms=$((RANDOM % 450))
    "$ckptdb" sync "$src" "$dst" > /dev/null 2>&1 &
    pid=$!
    sleep "$(printf '0.%03d' "$ms")"
    kill -9 "$pid" 2> /dev/null && kills=$((kills + 1)) || true
    wait "$pid" 2> /dev/null || true
    dst_consistent "$dst"
  done
  expect 0 sync "$src" "$dst"
  dst_complete "$dst"
done
echo "killed $kills syncs"
[ "$kills" -ge 4 ] || fail "only $kills of 12 syncs were still running when killed"

# And one kill at the moment DST's catalog file appears (installing it).
dst="$work/k-install"
"$ckptdb" sync "$src" "$dst" > /dev/null 2>&1 &
pid=$!
while [ ! -e "$dst/ckptdb.sqlite" ] && kill -0 "$pid" 2> /dev/null; do :; done
kill -9 "$pid" 2> /dev/null || true
wait "$pid" 2> /dev/null || true
dst_consistent "$dst"
expect 0 sync "$src" "$dst"
dst_complete "$dst"

# --- a source whose bytes fail their checksum ----------------------------------
flip "$src" epoch_005.pt
expect 3 sync "$src" "$work/d2"
out_has "^failed +5  epoch_005\.pt"
out_has "^copied 11 checkpoints .* 1 failed$"
# Nothing in DST names what was not copied (a row there could let a prune
# delete a file of that name that DST does hold).
[ "$(q "$work/d2" "SELECT count(*) FROM files WHERE name = 'epoch_005.pt'")" = 0 ] || fail "a failed copy has a row in DST"
[ ! -e "$work/d2/epoch_005.pt" ] || fail "a failed copy left a file in DST"
[ "$(catalog_consistent "$work/d2")" = 11 ] || fail "DST inconsistent after a failed copy"
ok
flip "$src" epoch_005.pt
"$ckptdb" verify "$src" 5 > /dev/null 2>&1 || true   # marked corrupt by the sync or not: complete again now
[ "$(q "$src" "SELECT status FROM checkpoints WHERE id = 5")" = complete ] || fail "SRC epoch_005.pt is not complete again"

# --- --delete mirrors SRC's prunes ---------------------------------------------
expect 0 prune --keep epoch=3 "$src"
q "$src" "SELECT name, checksum FROM checkpoints WHERE status = 'complete' ORDER BY id" > "$work/src.rows"
[ "$(wc -l < "$work/src.rows")" -eq 3 ] || fail "prune should have left 3 in SRC"
expect 0 sync "$src" "$work/d1"
out_has "0 deleted"
for n in $(seq 1 12); do [ -f "$work/d1/$(printf 'epoch_%03d.pt' "$n")" ] || fail "sync without --delete removed epoch $n"; done
ok
expect 0 sync --delete "$src" "$work/d1"
for n in $(seq 1 9); do out_has "^deleted +($n|-)  $(printf 'epoch_%03d.pt' "$n")  6\.0 MiB"; done
out_has "; 3 already there, 9 deleted, 0 failed$"
for n in $(seq 1 9); do [ ! -e "$work/d1/$(printf 'epoch_%03d.pt' "$n")" ] || fail "--delete left epoch $n"; done
[ "$(q "$work/d1" "SELECT count(*) FROM checkpoints WHERE status = 'pruned' AND id <= 9")" = 9 ] \
  || fail "--delete: DST rows 1-9 are not pruned: $(q "$work/d1" "SELECT id, status FROM checkpoints")"
[ "$(catalog_consistent "$work/d1")" = 3 ] || fail "DST inconsistent after --delete"
complete_rows "$work/d1" | cmp -s - "$work/src.rows" || fail "DST's complete rows differ from SRC's after --delete"
"$ckptdb" fsck "$work/d1" > "$work/fsck.out" 2>&1 || fail "fsck after --delete: $(cat "$work/fsck.out")"
ok
expect 0 sync --delete --json "$src" "$work/k1"
pycheck 'assert (d["copied"], d["present"], d["deleted"]) == (0, 3, 9), d'
expect 0 sync --delete "$src" "$work/k1"
out_has "; 3 already there, 0 deleted, 0 failed$"

echo "ok: cli sync, $checks checks"
