#!/usr/bin/env bash
# ckptdb fsck against real damage: the temp file of a trainer killed in the
# middle of a save (and an orphan one), a missing file, a truncated file, a
# file the catalog does not know, a deleted catalog and an unreadable one
# (rebuilt from the files present, the old catalog kept aside).
set -euo pipefail
source "$(dirname "$0")/cli_lib.sh" "$@"

# --- a trainer killed mid-save ------------------------------------------------
d="$work/ckpts"
tmp=
for attempt in 1 2 3 4 5; do
  rm -rf "$d"
  "$train" --dir "$d" --epochs 50 --steps-per-epoch 10 --save-every-epochs 1 --keep-all --state-bytes 16M \
    > "$work/train.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 1000); do
    if [ "$(grep -c '^save:' "$work/train.log" || true)" -ge 2 ] && compgen -G "$d/.ckptdb-tmp-*" > /dev/null; then
      break
    fi
    sleep 0.005
  done
  kill -9 "$pid"; wait "$pid" 2> /dev/null || true
  tmp=$(cd "$d" && compgen -G ".ckptdb-tmp-*" || true)
  [ -n "$tmp" ] && break
  echo "note: attempt $attempt: the kill missed every save's temp file; again"
done
[ -n "$tmp" ] || fail "five kills, no temp file left behind"
saved=$(q "$d" "SELECT count(*) FROM checkpoints WHERE status = 'complete'")
writing=$(q "$d" "SELECT id FROM checkpoints WHERE status = 'writing'")
[ -n "$writing" ] || fail "the killed save has no writing row"
[ "$(q "$d" "SELECT group_concat(name) FROM checkpoints WHERE id IN (1, 2) AND status = 'complete'")" = \
  "epoch_001.pt,epoch_002.pt" ] || fail "expected epoch_001.pt and epoch_002.pt complete"
# And an orphan temp file no row owns, and a file the catalog does not know.
cp "$d/epoch_001.pt" "$d/.ckptdb-tmp-0123456789abcdef0123456789abcdef"
echo "my notes" > "$d/notes.txt"

before=$(snapshot "$d")
expect 3 fsck "$d"
out_has "^FINDING +NAME +ID +DETAIL +ACTION$"
out_has "^temp_file +\.ckptdb-tmp-0123456789abcdef0123456789abcdef +- +"
out_has "^unknown_file +notes\.txt +- +"
# The writer of $tmp is dead (SIGKILL): a leftover, not a save in flight.
out_has "^temp_file +$tmp "
out_has "^3 problems found; 'ckptdb fsck --repair' fixes"
[ "$(snapshot "$d")" = "$before" ] || fail "fsck without --repair changed the directory"
ok
expect 3 fsck --json "$d"
pycheck '
assert list(d.keys()) == ["repair", "rebuilt", "problems", "findings"] and d["repair"] is False, d
assert all(list(f.keys()) == ["kind", "name", "checkpoint_id", "detail", "action"] for f in d["findings"]), d
assert all(f["action"] is None for f in d["findings"]), d
k = {f["name"]: f["kind"] for f in d["findings"]}
assert k["notes.txt"] == "unknown_file" and k[".ckptdb-tmp-0123456789abcdef0123456789abcdef"] == "temp_file", d
'

expect 3 fsck --repair "$d"
out_has "^temp_file +\.ckptdb-tmp-0123456789abcdef0123456789abcdef .* removed"
out_has "^unknown_file +notes\.txt +- .* -$"
out_has "problems found, repaired"
[ -z "$(cd "$d" && compgen -G ".ckptdb-tmp-*" || true)" ] || fail "fsck --repair left temp files: $(ls -A "$d")"
[ -f "$d/notes.txt" ] || fail "fsck --repair deleted a file the catalog does not know"
[ "$(q "$d" "SELECT status FROM checkpoints WHERE id = $writing")" = aborted ] || fail "the killed save is not aborted"
[ "$(catalog_consistent "$d")" = "$saved" ] || fail "complete rows changed"
ok
expect 0 ls --all "$d"
out_has "^ *$writing +epoch_[0-9]+\.pt .* - +aborted +"
expect 0 ls "$d"
out_lacks "aborted"
rm "$d/notes.txt"
expect 0 fsck "$d"
out_has "^no problems found$"

# --- missing and truncated files ----------------------------------------------
mv "$d/epoch_001.pt" "$work/epoch_001.pt.saved"
truncate -s -1 "$d/epoch_002.pt"
before=$(snapshot "$d")
expect 3 fsck "$d"
out_has "^missing_file +epoch_001\.pt +1 +.*is missing +-$"
out_has "^size_mismatch +epoch_002\.pt +2 +"
[ "$(snapshot "$d")" = "$before" ] || fail "fsck without --repair changed the directory"
expect 3 fsck --repair --json "$d"
pycheck '
assert d["repair"] is True and d["problems"] == 2, d
got = {(f["kind"], f["name"], f["checkpoint_id"], f["action"]) for f in d["findings"]}
assert got == {("missing_file", "epoch_001.pt", 1, "marked corrupt"), ("size_mismatch", "epoch_002.pt", 2, "marked corrupt")}, got
'
[ "$(q "$d" "SELECT group_concat(status) FROM checkpoints WHERE id IN (1, 2)")" = "corrupt,corrupt" ] || fail "not marked corrupt"
expect 0 fsck "$d"
mv "$work/epoch_001.pt.saved" "$d/epoch_001.pt"
expect 0 verify "$d" 1
out_has "^restored +1  epoch_001.pt"

# --- a deleted catalog: rebuilt from the files present -------------------------
e="$work/lost"
trainer "$e" --epochs 3 --state-bytes 64K
trainer "$e" --epochs 4 --state-bytes 64K --save-every-steps 5    # step_000035.pt, epoch_004.pt
echo "config" > "$e/config.yaml"
q "$e" "SELECT name, kind, CASE kind WHEN 'epoch' THEN epoch END, CASE kind WHEN 'step' THEN step END, size, checksum FROM checkpoints WHERE status = 'complete' ORDER BY name" > "$work/orig.rows"
[ "$(wc -l < "$work/orig.rows")" -eq 5 ] || fail "expected 5 checkpoints to lose: $(cat "$work/orig.rows")"
rm "$e"/ckptdb.sqlite*
expect 1 ls "$e"
one_line_error "$e/ckptdb.sqlite"
before=$(snapshot "$e")
expect 3 fsck "$e"
out_has "^catalog_missing +ckptdb\.sqlite +- +"
out_has "fsck --repair"
[ "$(snapshot "$e")" = "$before" ] && [ ! -e "$e/ckptdb.sqlite" ] || fail "fsck without --repair changed the directory"
ok
expect 3 fsck --repair "$e"
out_has "^catalog_missing +ckptdb\.sqlite .* rebuilt \(5 checkpoints\)$"
out_has "^unknown_file +config\.yaml "
for n in epoch_001 epoch_002 epoch_003 epoch_004 step_000035; do out_has "^rebuilt +$n\.pt +[0-9]+ "; done
q "$e" "SELECT name, kind, CASE kind WHEN 'epoch' THEN epoch END, CASE kind WHEN 'step' THEN step END, size, checksum FROM checkpoints WHERE status = 'complete' ORDER BY name" > "$work/new.rows"
diff "$work/orig.rows" "$work/new.rows" > /dev/null || fail "rebuilt rows differ: $(diff "$work/orig.rows" "$work/new.rows")"
[ "$(catalog_consistent "$e")" = 5 ] || fail "rebuilt catalog inconsistent"
[ -f "$e/config.yaml" ] || fail "the rebuild removed config.yaml"
ok
expect 0 ls "$e"
expect 0 verify "$e"
out_has "5 ok, 0 corrupt"
expect 3 fsck "$e"                           # config.yaml is still unknown
out_has "^unknown_file +config\.yaml "
out_lacks "catalog_"

# --- an unreadable catalog: kept aside, never overwritten ----------------------
head -c 8192 /dev/urandom > "$e/ckptdb.sqlite"; rm -f "$e/ckptdb.sqlite-wal" "$e/ckptdb.sqlite-shm"
cp "$e/ckptdb.sqlite" "$work/garbage"
expect 1 ls "$e"
one_line_error "$e/ckptdb.sqlite"
expect 3 fsck --json "$e"
pycheck 'assert d["findings"][0]["kind"] == "catalog_unreadable" and d["rebuilt"] is False, d'
cmp -s "$e/ckptdb.sqlite" "$work/garbage" || fail "fsck without --repair touched the unreadable catalog"
expect 3 fsck --repair --json "$e"
pycheck '
assert d["rebuilt"] is True and d["findings"][0]["kind"] == "catalog_unreadable", d
assert sorted(f["name"] for f in d["findings"] if f["kind"] == "rebuilt") == \
    ["epoch_001.pt", "epoch_002.pt", "epoch_003.pt", "epoch_004.pt", "step_000035.pt"], d
'
aside=$(cd "$e" && compgen -G "ckptdb.sqlite.broken-*" || true)
[ "$(echo "$aside" | wc -w)" -eq 1 ] || fail "expected one catalog kept aside, got '$aside'"
cmp -s "$e/$aside" "$work/garbage" || fail "the old catalog kept aside is not the old bytes"
[ "$(catalog_consistent "$e")" = 5 ] || fail "rebuilt catalog inconsistent"
ok

# --- adopt: a flat checkpoint directory is one checkpoint ---------------------
a="$work/dirs"
mkdir -p "$a/step_000200" "$a/torn" "$a/deep/inner"
head -c 3000 /dev/urandom > "$a/step_000200/__0_0.distcp"
head -c 2000 /dev/urandom > "$a/step_000200/__1_0.distcp"
echo meta > "$a/step_000200/.metadata"
head -c 100 /dev/urandom > "$a/torn/__0_0.distcp"      # DCP without its metadata
echo x > "$a/deep/model.pt"; echo y > "$a/deep/inner/model.pt"
expect 0 adopt --json "$a"
pycheck '
assert d["adopted"] == 2 and d["corrupt"] == 1, d
k = {f["name"]: f["kind"] for f in d["findings"]}
assert k["step_000200"] == "adopted" and k["torn"] == "adopted" and k["deep"] == "unknown_file", d
'
[ "$(q "$a" "SELECT name || ':' || layout || ':' || kind || ':' || step || ':' || status || ':' || (SELECT count(*) FROM files f WHERE f.checkpoint_id = c.id) FROM checkpoints c ORDER BY name")" = \
  "$(printf 'step_000200:dir:step:200:complete:3\ntorn:dir:adopted:0:corrupt:1')" ] || fail "adopted rows: $(q "$a" "SELECT * FROM checkpoints")"
ok
[ -f "$a/deep/inner/model.pt" ] || fail "adopt touched the nested directory"
expect 0 ls "$a"
out_has "step_000200/"
expect 0 verify "$a"
out_has "1 ok, 0 corrupt"
ok

echo "ok: cli fsck, $checks checks"
