#!/usr/bin/env bash
# ckptdb sync of directory checkpoints: each copied into DST file by file and
# verified there (`ckptdb verify`, layout "dir" in `ls --json`, the same files
# rows and bytes); a second sync finds it present; a source file whose bytes
# fail their checksum fails that directory alone (exit 3) and leaves no temp
# directory in DST.
# Arguments: the ckptdb executable, the example trainer, the shard helper.
set -euo pipefail
source "$(dirname "$0")/cli_lib.sh" "$@"
shard_helper="$3"

src="$work/src"
# dirsave DIR EPOCH: a directory checkpoint "epoch_<EPOCH>" of three files (two ranks).
dirsave() {
  "$shard_helper" dirsave "$1" epoch "$2" "$(($2 * 10))" \
    "__0_0.distcp:0:300000:$2" ".metadata:0:500:$(($2 + 1))" "__1_0.distcp:1:200000:$(($2 + 2))" \
    > "$work/helper.out" || fail "shard_helper dirsave: $(cat "$work/helper.out")"
  grep -q '^COMMITTED ' "$work/helper.out" || fail "dirsave did not commit: $(cat "$work/helper.out")"
}
dirsave "$src" 1
dirsave "$src" 2
files_rows() { q "$1" "SELECT c.name, f.rank, f.name, f.size, f.checksum FROM files f JOIN checkpoints c ON c.id = f.checkpoint_id WHERE c.status = 'complete' ORDER BY c.name, f.rank, f.name"; }

# --- copied and verified -------------------------------------------------------
expect 0 sync "$src" "$work/d1"
out_has "^copied +1  epoch_001  "
out_has "^copied +2  epoch_002  "
out_has "^copied 2 checkpoints .* 0 failed$"
expect 0 verify "$work/d1"
expect 0 ls --json "$work/d1"
pycheck '
cs = d["checkpoints"]
assert sorted(c["name"] for c in cs) == ["epoch_001", "epoch_002"], cs
assert all(c["layout"] == "dir" and c["status"] == "complete" for c in cs), cs
'
[ "$(files_rows "$work/d1")" = "$(files_rows "$src")" ] || fail "DST's files rows differ from SRC's"
ok
for e in 001 002; do
  for f in __0_0.distcp .metadata __1_0.distcp; do
    cmp -s "$src/epoch_$e/$f" "$work/d1/epoch_$e/$f" || fail "epoch_$e/$f differs in DST"
  done
  [ "$(ls -A "$work/d1/epoch_$e" | wc -l)" = 3 ] || fail "DST's epoch_$e holds more than its three files"
done
ok
[ -z "$(ls -A "$work/d1" | grep '^\.ckptdb-tmp-' || true)" ] || fail "a temp directory stayed in DST"
"$ckptdb" fsck "$work/d1" > "$work/fsck.out" 2>&1 || fail "fsck DST: $(cat "$work/fsck.out")"
ok

# --- again: present ------------------------------------------------------------
expect 0 sync --json "$src" "$work/d1"
pycheck 'assert (d["copied"], d["present"], d["failed"]) == (0, 2, 0), d'
[ "$(files_rows "$work/d1")" = "$(files_rows "$src")" ] || fail "a second sync changed DST's files rows"
ok

# --- a source file whose bytes fail their checksum -----------------------------
flip "$src/epoch_002" __1_0.distcp
expect 3 sync "$src" "$work/d2"
out_has "^failed +2  epoch_002  .*__1_0\.distcp.*does not match its checksum"
out_has "^copied +1  epoch_001  "
[ ! -e "$work/d2/epoch_002" ] || fail "a failed copy left epoch_002 in DST"
[ -z "$(ls -A "$work/d2" | grep '^\.ckptdb-tmp-' || true)" ] || fail "a failed copy left a temp directory in DST"
[ "$(q "$work/d2" "SELECT count(*) FROM checkpoints WHERE name = 'epoch_002' AND status != 'aborted'")" = 0 ] \
  || fail "a failed copy left a live row in DST"
expect 0 verify "$work/d2"
ok

echo "ok: cli sync of directories, $checks checks"
