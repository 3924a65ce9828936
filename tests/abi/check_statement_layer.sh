#!/usr/bin/env bash
# SQL has one home (docs/DESIGN.md, "Which file owns which rule"): the
# connection (core/db.cpp: opening, pragmas, migrations, transactions) and
# the statement layer (core/store.cpp: one method per named statement of
# sql/statements.sql). The compiler already keeps Db::Query and Db::exec
# private to them; this checks what it cannot see, in every shipped source:
# no raw SQLite call that runs SQL elsewhere, and each named statement run
# from exactly one place in the statement layer, none unused.
#   check_statement_layer.sh SOURCE_ROOT
set -euo pipefail
root="$1"
cd "$root"
status=0
srcs=$(find core capi cli bindings -name '*.cpp' -o -name '*.hpp' -o -name '*.c' -o -name '*.h' | sort)
for f in $srcs; do
  case "$f" in core/db.cpp|core/store.cpp) continue ;; esac
  bad=$(grep -nE 'sqlite3_(prepare|exec|step)|Db::Query|\.exec\(|Stmt::' "$f" || true)
  if [ -n "$bad" ]; then
    echo "FAIL: $f runs SQL outside the statement layer:"; echo "$bad"; status=1
  fi
done
names=$(sed -n 's/^-- name: *\([a-z_0-9]*\).*/\1/p' sql/statements.sql)
[ -n "$names" ] || { echo "FAIL: no named statement in sql/statements.sql"; exit 1; }
n=0
for s in $names; do
  n=$((n + 1))
  uses=$(grep -oE "Stmt::$s\b" core/store.cpp | wc -l)
  if [ "$uses" != 1 ]; then
    echo "FAIL: statement $s is run from $uses places in core/store.cpp (want exactly 1)"; status=1
  fi
done
[ $status -eq 0 ] && echo "ok: $n named statements, each run from one method of core/store.cpp; no SQL elsewhere"
exit $status
