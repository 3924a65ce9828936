#!/usr/bin/env bash
# ckptdb verify and ckptdb latest against flipped bytes: found, marked corrupt
# (sqlite3 agrees), exit 3 from verify, a fallback from latest (exit 0) or
# exit 4 when nothing verifies; a restored file verifies again.  Progress:
# plain lines when stderr is not a terminal, a bar when it is.
set -euo pipefail
source "$(dirname "$0")/cli_lib.sh" "$@"

d="$work/ckpts"
trainer "$d" --epochs 4 --state-bytes 256K
status() { q "$d" "SELECT status FROM checkpoints WHERE id = $1"; }

expect 0 verify "$d"
for n in 1 2 3 4; do out_has "^ok +$n  epoch_00$n.pt  256\.0 KiB$"; done
out_has "^verified 4 checkpoints \(1\.0 MiB\): 4 ok, 0 corrupt$"
# stderr is a file here: plain lines, one per checkpoint, no bar.
for n in 1 2 3 4; do err_has "^verify: \[$n/4\] epoch_00$n.pt \(256\.0 KiB\)$"; done
! grep -q $'\r' "$work/err" || fail "a progress bar on a non-terminal stderr"
ok
expect 0 verify --all "$d"
expect 0 verify --json "$d" 2
pycheck '
assert (d["checked"], d["ok"], d["corrupt"], d["errors"], d["bytes"]) == (1, 1, 0, 0, 262144), d
assert d["checkpoints"] == [{"id": 2, "name": "epoch_002.pt", "size": 262144, "result": "ok", "message": None}], d
'

# A flipped byte in the newest: latest --no-verify trusts the catalog, latest
# finds it, marks it corrupt and falls back (exit 0).
flip "$d" epoch_004.pt
expect 0 latest --no-verify --path "$d"
[ "$(basename "$(cat "$work/out")")" = epoch_004.pt ] || fail "latest --no-verify should trust the catalog"
[ "$(status 4)" = complete ] || fail "latest --no-verify marked something"
expect 0 latest --path "$d"
[ "$(basename "$(cat "$work/out")")" = epoch_003.pt ] || fail "latest did not fall back to epoch_003.pt: $(cat "$work/out")"
err_has "epoch_004.pt \(id 4\) failed verification and is now marked corrupt"
err_has "using epoch_003.pt \(id 3\)"
[ "$(status 4)" = corrupt ] || fail "latest did not mark epoch_004.pt corrupt"
[ "$(q "$d" "SELECT count(*) FROM events WHERE checkpoint_id = 4 AND event = 'corrupt'")" = 1 ] || fail "no corrupt event"
ok
expect 0 latest --json "$d"
pycheck 'assert (d["id"], d["name"], d["status"]) == (3, "epoch_003.pt", "complete"), d'

# verify finds a flipped byte: exit 3, marked corrupt, the others still ok.
flip "$d" epoch_002.pt
expect 3 verify "$d"
out_has "^ok +1  epoch_001.pt"
out_has "^corrupt +2  epoch_002.pt  256\.0 KiB  .*XXH3-128"
out_has "^ok +3  epoch_003.pt"
out_lacks "epoch_004.pt"
out_has "^verified 3 checkpoints \(768\.0 KiB\): 2 ok, 1 corrupt$"
[ "$(status 2)" = corrupt ] || fail "verify did not mark epoch_002.pt corrupt"
expect 3 verify --json "$d" epoch_004.pt
pycheck '
r, = d["checkpoints"]
assert (d["corrupt"], r["id"], r["result"]) == (1, 4, "corrupt") and "XXH3-128" in r["message"], d
'
expect 3 verify "$d" 2

# Restored bytes verify again: the row is complete again.
flip "$d" epoch_004.pt
expect 0 verify "$d" epoch_004.pt
out_has "^restored +4  epoch_004.pt"
[ "$(status 4)" = complete ] || fail "a restored epoch_004.pt is '$(status 4)'"
expect 0 latest --path "$d"
[ "$(basename "$(cat "$work/out")")" = epoch_004.pt ] || fail "latest after the restore"
ok

# Nothing verifies: latest exits 4 (after marking them all), verify --all 4.
flip "$d" epoch_001.pt; flip "$d" epoch_003.pt; flip "$d" epoch_004.pt
expect 4 latest "$d"
[ ! -s "$work/out" ] || fail "latest printed a checkpoint although none verifies"
tail -1 "$work/err" | grep -q "no complete checkpoint that verifies in '$d' (3 failed verification)" \
  || fail "latest's last line: $(tail -1 "$work/err")"
[ "$(q "$d" "SELECT group_concat(status) FROM checkpoints ORDER BY id")" = "corrupt,corrupt,corrupt,corrupt" ] \
  || fail "latest did not mark every damaged checkpoint"
ok
expect 4 verify "$d"
one_line_error "no complete checkpoint"
expect 4 latest "$d"

# Corrupt checkpoints are kept by an ordinary prune, deleted by --corrupt
# (each hashed again first). Only complete or corrupt ones can be verified.
expect 0 prune "$d"
out_lacks "corrupt$"
[ "$(status 1)" = corrupt ] || fail "an ordinary prune took the corrupt epoch_001.pt"
[ -f "$d/epoch_001.pt" ] || fail "an ordinary prune deleted the corrupt epoch_001.pt's file"
ok
expect 0 prune --corrupt "$d"
out_has "corrupt$"
[ "$(status 1)" = pruned ] || fail "prune did not take the corrupt epoch_001.pt"
expect 1 verify "$d" 1
one_line_error "is pruned"

# On a terminal: a bar with bytes, rate and time left, taken down at the end.
if command -v script > /dev/null 2>&1; then
  e="$work/bar"
  trainer "$e" --epochs 3 --state-bytes 1M
  script -qec "'$ckptdb' verify '$e' > '$work/bar.out'" /dev/null > "$work/bar.tty" < /dev/null
  grep -qE $'\r''verify 100% \[#{24}\] 3\.0 MiB/3\.0 MiB  [0-9.]+ ([KMGT]i)?B/s  0s left' "$work/bar.tty" \
    || fail "no progress bar on a terminal: $(tr '\r' '\n' < "$work/bar.tty" | head -5)"
  grep -q $'\r\033\[K' "$work/bar.tty" || fail "the bar is not taken down"
  grep -q "^verified 3 checkpoints" "$work/bar.out" || fail "stdout of verify under a terminal"
  ! grep -q "^verify: \[" "$work/bar.tty" || fail "plain lines on a terminal"
  ok
else
  echo "note: no script(1), the terminal progress bar is not checked"
fi

echo "ok: cli verify/latest, $checks checks"
