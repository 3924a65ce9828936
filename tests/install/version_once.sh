#!/usr/bin/env bash
# Suite install, test version-once: the version is written in one place,
# meson.build's project(); every other file reads it from there (the
# generated ckptdb_version.h, the pkg-config and CMake files, the wheel's
# metadata: those are checked by cmake-package and pip-install).
#   version_once.sh SOURCE_ROOT VERSION
set -euo pipefail
src=$1 version=$2
git -C "$src" rev-parse --git-dir >/dev/null 2>&1 || { echo "not a git tree: skipped"; exit 77; }
grep -q "^  version : '$version'," "$src/meson.build" || { echo "FAIL: meson.build does not declare $version"; exit 1; }
hits=$(cd "$src" && git grep --untracked -n -F -e "$version" -- . ':!meson.build' || true)
if [ -n "$hits" ]; then
    echo "$hits"
    echo "FAIL: the version $version is written outside meson.build"
    exit 1
fi
if grep -n "define CKPTDB_VERSION_\(MAJOR\|MINOR\|PATCH\|STRING\)" "$src/capi/ckptdb.h"; then
    echo "FAIL: ckptdb.h defines the version itself"
    exit 1
fi
echo "version $version: written in meson.build only"
