#!/usr/bin/env bash
# Every dynamic symbol that libckptdb.so defines begins with ckptdb_, and the
# SONAME carries the ABI major version.
set -euo pipefail
lib="$1"
soname="$2"
bad=$(nm -D --defined-only "$lib" | awk '$2 != "A" {print $3}' | grep -v '^ckptdb_' || true)
if [ -n "$bad" ]; then
  echo "FAIL: exported symbols outside the ckptdb_ prefix:"; echo "$bad"; exit 1
fi
count=$(nm -D --defined-only "$lib" | awk '$2 != "A"' | grep -c ' ckptdb_')
[ "$count" -ge 30 ] || { echo "FAIL: only $count ckptdb_ symbols exported"; exit 1; }
got=$(objdump -p "$lib" | awk '/SONAME/ {print $2}')
[ "$got" = "$soname" ] || { echo "FAIL: SONAME is '$got', expected '$soname'"; exit 1; }
echo "ok: $count symbols, all ckptdb_*, SONAME $got"
