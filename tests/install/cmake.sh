#!/usr/bin/env bash
# Suite install, test cmake-package: `meson install` of this build into a
# temporary directory, then the README's CMakeLists.txt builds the README's
# main.c against ckptdb::ckptdb and its train.cpp against ckptdb::torch and
# Torch, with CMAKE_PREFIX_PATH naming only the installed prefix and the torch
# wheel's cmake directory, and runs both twice (the second run resumes).
# Also: what was installed (headers, libraries, pkg-config, CMake files,
# schema, cookbook, man page, completion, the Python package where the
# configured interpreter looks), and that no absolute prefix is written into
# the CMake files (the install is moved: it lies under DESTDIR).
#   cmake.sh BUILD_DIR WORK_DIR README PREFIX LIBDIR PYDIR PYTHON TORCH(0|1) TEST_PYTHON MAN(0|1)
set -euo pipefail
build=$1 work=$2 readme=$3 prefix=$4 libdir=$5 pydir=$6 python=$7 torch=$8 test_python=$9 man=${10}
here=$(cd "$(dirname "$0")" && pwd)
fail() { echo "FAIL: $*" >&2; exit 1; }
# What a user has: meson test points LD_LIBRARY_PATH at this build's
# libraries, which would hide where the programs built here load theirs from.
unset LD_LIBRARY_PATH

rm -rf "$work"
mkdir -p "$work"
root=$work/root
meson install -C "$build" --no-rebuild --destdir "$root" >"$work/install.log" 2>&1 ||
    { cat "$work/install.log"; fail "meson install"; }
p=$root$prefix
[[ $libdir = /* ]] || libdir=$prefix/$libdir
[[ $pydir = /* ]] || pydir=$prefix/$pydir
l=$root$libdir

echo "== installed files"
need=("$p/include/ckptdb.h" "$p/include/ckptdb.hpp" "$p/include/ckptdb_version.h"
      "$l/libckptdb.so.1" "$l/pkgconfig/ckptdb.pc"
      "$l/cmake/ckptdb/ckptdbConfig.cmake" "$l/cmake/ckptdb/ckptdbConfigVersion.cmake"
      "$p/bin/ckptdb" "$p/share/bash-completion/completions/ckptdb"
      "$p/share/ckptdb/schema/0001_initial.sql" "$p/share/ckptdb/cookbook/best_by_metric.sql"
)
[ -n "$python" ] && need+=("$root$pydir/ckptdb/__init__.py" "$root$pydir/ckptdb/py.typed" "$root$pydir/ckptdb/_installed.py")
[ "$man" = 1 ] && need+=("$p/share/man/man1/ckptdb.1")
[ "$torch" = 1 ] && need+=("$p/include/ckptdb_torch.hpp" "$l/libckptdb_torch.so.1" "$l/pkgconfig/ckptdb_torch.pc")
for f in "${need[@]}"; do
    [ -e "$f" ] || fail "not installed: ${f#$root}"
done
echo "${#need[@]} files in place"
n=$(ls "$p/share/ckptdb/cookbook" | wc -l)
[ "$n" -eq "$(ls "$here/../../sql/cookbook" | wc -l)" ] || fail "the cookbook has $n files installed"
if grep -n -F "$prefix" "$l/cmake/ckptdb/"*.cmake; then
    fail "the CMake files name the prefix $prefix: not relocatable"
fi
grep -q "CKPTDB_VERSION_STRING \"$(sed -n 's/^Version: //p' "$l/pkgconfig/ckptdb.pc")\"" "$p/include/ckptdb_version.h" ||
    fail "ckptdb_version.h and ckptdb.pc disagree on the version"

if [ -n "$python" ]; then
echo "== tools/site_dir.py: the package directory is on the interpreter's sys.path"
for interp in "$python" /usr/bin/python3; do
    [ -x "$interp" ] || continue
    "$interp" - "$here/../../tools/site_dir.py" <<'PY' || fail "site_dir.py with $interp"
import os, subprocess, sys
tool = sys.argv[1]
path = [os.path.realpath(p) for p in sys.path if p]
for prefix in (sys.prefix, "/usr/local", "/usr"):
    d = subprocess.run([sys.executable, tool, prefix], capture_output=True, text=True, check=True).stdout.strip()
    assert d or prefix != sys.prefix, "nothing for the interpreter's own prefix %s" % prefix
    assert not d or os.path.realpath(os.path.join(prefix, d)) in path, (prefix, d)
    print("  %s, prefix %s: %s" % (sys.executable, prefix, d or "(not on its path: meson's default)"))
PY
done
echo "== the Python package where the configured interpreter ($python) looks, moved (DESTDIR)"
( cd "$work" && env -u CKPTDB_LIBRARY -u LD_LIBRARY_PATH PYTHONPATH="$root$pydir" PYTHONDONTWRITEBYTECODE=1 "$python" -c '
import ckptdb, ckptdb._lib as l, os, sys
root = sys.argv[1]
assert ckptdb.__file__.startswith(root), ckptdb.__file__
assert l.lib._name.startswith(root), l.lib._name
print("loaded", l.lib._name, "version", ckptdb.__version__)
' "$root" ) || fail "the installed Python package does not load its library"
fi

echo "== CMake project from the README"
proj=$work/proj
mkdir -p "$proj"
for f in CMakeLists.txt main.c train.cpp; do
    "$test_python" "$here/readme.py" "$readme" --extract "$f" "$proj"
done
cpp=$p
if [ "$torch" = 1 ]; then
    tc=$("$test_python" -c 'import torch; print(torch.utils.cmake_prefix_path)')
    cpp="$p;$tc"
fi
# Nothing else may help find it: no environment, no package registry.
env -u CMAKE_PREFIX_PATH -u PKG_CONFIG_PATH -u LD_LIBRARY_PATH \
    cmake -S "$proj" -B "$proj/out" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$cpp" \
    -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF -DCMAKE_FIND_USE_SYSTEM_PACKAGE_REGISTRY=OFF \
    >"$work/cmake.log" 2>&1 || { cat "$work/cmake.log"; fail "cmake configure"; }
grep -q "ckptdb_DIR:PATH=$l/cmake/ckptdb" "$proj/out/CMakeCache.txt" || fail "ckptdb was not found in the prefix"
cmake --build "$proj/out" -j 2 >"$work/build.log" 2>&1 || { cat "$work/build.log"; fail "cmake --build"; }

# The version file: a newer version asked for is refused, this one accepted;
# with only the prefix on CMAKE_PREFIX_PATH (no Torch: a C user needs none).
mkdir -p "$work/version"
ver=$(sed -n 's/^Version: //p' "$l/pkgconfig/ckptdb.pc")
for want in "99.0 fail" "${ver%.*} ok" "$ver ok"; do
    set -- $want
    printf 'cmake_minimum_required(VERSION 3.18)\nproject(v C)\nfind_package(ckptdb %s REQUIRED)\n' "$1" \
        >"$work/version/CMakeLists.txt"
    if env -u CMAKE_PREFIX_PATH cmake -S "$work/version" -B "$work/version/out-$1" -DCMAKE_PREFIX_PATH="$p" \
        >"$work/version-$1.log" 2>&1; then got=ok; else got=fail; fi
    [ "$got" = "$2" ] || { cat "$work/version-$1.log"; fail "find_package(ckptdb $1): $got, expected $2"; }
done
echo "ckptdbConfigVersion.cmake: 99.0 refused, ${ver%.*} and $ver accepted"

run_twice() {  # run_twice EXE WANT1 WANT2
    local d=$work/run-$(basename "$1") out i want
    mkdir -p "$d"
    for i in 1 2; do
        if [ $i = 1 ]; then want=$2; else want=$3; fi
        out=$(cd "$d" && env -u LD_LIBRARY_PATH "$1" 2>&1) || { echo "$out"; fail "$(basename "$1") run $i"; }
        echo "$out" | sed "s/^/  $(basename "$1") run $i: /"
        grep -qF "$want" <<<"$out" || fail "$(basename "$1") run $i: expected '$want'"
    done
}
run_twice "$proj/out/resume_c" "saved epoch checkpoint at step 12" "resumed from epoch_003.pt at step 12"
# ldd's whole output first: under pipefail, grep -q stopping at the match
# can fail ldd with SIGPIPE, and the pipeline with it.
deps=$(ldd "$proj/out/resume_c")
grep -qF "libckptdb.so.1 => $l/" <<<"$deps" || { echo "$deps"; fail "resume_c does not load the installed libckptdb"; }
if [ "$torch" = 1 ]; then
    [ -x "$proj/out/train_torch" ] || fail "ckptdb::torch was not defined: train_torch not built"
    run_twice "$proj/out/train_torch" "saved epoch_004.pt" "resumed from epoch_004.pt at epoch 4"
else
    [ ! -e "$proj/out/train_torch" ] || fail "train_torch built without the LibTorch binding"
    echo "LibTorch binding not built here: the LibTorch part is skipped"
fi
echo "cmake-package: ok"
