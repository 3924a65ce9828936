#!/usr/bin/env bash
# The shipped library holds no test code: nothing of the test VFS
# (tests/support/io_vfs.cpp), neither exported, nor as a local symbol, nor
# its VFS name. Tests reach the engine's I/O only through the seams in
# core/io.hpp (the ops table and the VFS name), which the library leaves at
# the real system calls and SQLite's default VFS.
#   check_no_test_code.sh LIBRARY
set -euo pipefail
lib="$1"
[ -f "$lib" ] || { echo "FAIL: no library at $lib"; exit 1; }
# The whole output first, then grep: no pipe a reader could close early.
dynamic=$(nm -D -C --defined-only "$lib" 2>/dev/null || true)
all=$(nm -C "$lib" 2>/dev/null || true)
pattern='io_vfs|set_sqlite_observer|SqliteOp|SqliteObserver'
bad=$(printf '%s\n%s\n' "$dynamic" "$all" | grep -E "$pattern" || true)
if [ -n "$bad" ]; then
  echo "FAIL: test VFS symbols in $lib:"; echo "$bad" | sort -u; exit 1
fi
if grep -aq 'ckptdb-io' "$lib"; then
  echo "FAIL: $lib holds the test VFS's name 'ckptdb-io'"; exit 1
fi
[ -n "$all" ] && echo "ok: no test VFS symbol or name in $lib" || echo "ok: no test VFS name in $lib (no symbol table to read)"
