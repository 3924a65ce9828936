#!/usr/bin/env bash
# Suite install, test meson-subproject: the README's parent meson.build uses
# this source tree as subprojects/ckptdb with the command, the examples, the
# Python package and the tests off and default_library=static; it builds the
# README's main.c, which runs (twice: the second run resumes) with libckptdb
# linked in, and `meson install` installs the parent's program and nothing
# else.
#   meson_subproject.sh SOURCE_ROOT WORK_DIR README TEST_PYTHON
set -euo pipefail
src=$1 work=$2 readme=$3 test_python=$4
here=$(cd "$(dirname "$0")" && pwd)
fail() { echo "FAIL: $*" >&2; exit 1; }
# What a user has: meson test points LD_LIBRARY_PATH at this build's
# libraries, which would hide where the programs built here load theirs from.
unset LD_LIBRARY_PATH

rm -rf "$work"
parent=$work/parent
mkdir -p "$parent/subprojects"
for f in meson.build main.c; do
    "$test_python" "$here/readme.py" "$readme" --extract "$f" "$parent"
done
# The source tree as the subproject, without its build directories and
# virtual environment (a copy of what git tracks or would track).
mkdir -p "$parent/subprojects/ckptdb"
if git -C "$src" rev-parse --git-dir >/dev/null 2>&1; then
    (cd "$src" && git ls-files -co --exclude-standard -z |
        xargs -0 sh -c 'for f; do [ -f "$f" ] && printf "%s\0" "$f"; done' _ |
        xargs -0 cp --parents -t "$parent/subprojects/ckptdb")
else  # a source tree without git: all of it but build directories and environments
    tar -C "$src" --exclude='./build*' --exclude='./_build*' --exclude='./.venv' -cf - . |
        tar -C "$parent/subprojects/ckptdb" -xf -
fi
[ -f "$parent/subprojects/ckptdb/meson.build" ] || fail "copying the source tree"

meson setup "$parent/build" "$parent" --prefix /usr/local >"$work/setup.log" 2>&1 ||
    { cat "$work/setup.log"; fail "meson setup of the parent"; }
grep -E "^Message:|default_library|cli|examples|python" "$work/setup.log" | grep -v "^Program\|Checking" | head -20 || true
ninja -C "$parent/build" -j 2 >"$work/build.log" 2>&1 || { cat "$work/build.log"; fail "ninja"; }

# Only what the parent needs was built: no command, no examples, no tests.
for t in subprojects/ckptdb/cli/ckptdb subprojects/ckptdb/examples subprojects/ckptdb/tests; do
    [ ! -e "$parent/build/$t" ] || fail "the subproject built $t"
done
[ -f "$parent/build/subprojects/ckptdb/capi/libckptdb.a" ] || fail "no static libckptdb.a"
! ls "$parent/build/subprojects/ckptdb/capi/"libckptdb.so* >/dev/null 2>&1 || fail "a shared libckptdb was built"
exe=$parent/build/trainer
# ldd's whole output first: under pipefail, grep -q stopping early could
# fail ldd with SIGPIPE and turn a match into "no match".
deps=$(ldd "$exe")
if grep -q ckptdb <<<"$deps"; then
    echo "$deps"
    fail "trainer loads a shared libckptdb"
fi

mkdir -p "$work/run"
for i in 1 2; do
    out=$(cd "$work/run" && "$exe" 2>&1) || { echo "$out"; fail "trainer run $i"; }
    echo "$out" | sed "s/^/  trainer run $i: /"
done
grep -qF "resumed from epoch_003.pt at step 12" <<<"$out" || fail "the second run did not resume"

meson install -C "$parent/build" --no-rebuild --destdir "$work/stage" >"$work/install.log" 2>&1 ||
    { cat "$work/install.log"; fail "meson install of the parent"; }
installed=$(cd "$work/stage" && find . ! -type d | sort)
echo "installed: $installed"
[ "$installed" = "./usr/local/bin/trainer" ] || fail "the parent's install holds more than its own program"
echo "meson-subproject: ok"
