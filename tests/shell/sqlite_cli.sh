#!/usr/bin/env bash
# The catalog as people see it at the sqlite3 prompt: it opens, and the
# checksum column of every complete checkpoint equals what xxh128sum prints
# for its file.
set -euo pipefail
helper="$1"
dir=$(mktemp -d "${TMPDIR:-/tmp}/ckptdb-cli-XXXXXX")
trap 'rm -rf "$dir"' EXIT

for spec in "0 1" "1 2" "4096 3" "1048577 4" "5000000 5"; do
  set -- $spec
  "$helper" save "$dir" "$1" --epoch "$2" --seed "$2" > /dev/null
done

n=0
while IFS='|' read -r name sum; do
  got=$(xxh128sum "$dir/$name" | cut -d' ' -f1)
  if [ "$got" != "$sum" ]; then
    echo "FAIL: $name: catalog says $sum, xxh128sum says $got"; exit 1
  fi
  n=$((n + 1))
done < <(sqlite3 -readonly "$dir/ckptdb.sqlite" "SELECT name, checksum FROM checkpoints WHERE status = 'complete' ORDER BY id")
[ "$n" -eq 5 ] || { echo "FAIL: expected 5 complete checkpoints, saw $n"; exit 1; }

latest=$(sqlite3 -readonly "$dir/ckptdb.sqlite" "SELECT name FROM latest_complete")
[ "$latest" = "epoch_005.pt" ] || { echo "FAIL: latest_complete is '$latest'"; exit 1; }
echo "ok: $n checksums match xxh128sum; latest_complete = $latest"
