#!/usr/bin/env bash
# Builds ckptdb and runs the whole test suite with meson test.
# Works on a fresh Debian 12 machine as root: installs what is missing.
#   BUILD_DIR=build   the build directory (default: build)
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=(meson ninja-build pkg-config g++ python3 binutils libsqlite3-dev sqlite3 libxxhash-dev xxhash
      nlohmann-json3-dev doctest-dev libcli11-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" > /dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "tests/run.sh: missing packages: ${missing[*]} (run as root to install them)" >&2
    exit 1
  fi
  echo "== installing ${missing[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

build="${BUILD_DIR:-build}"
if [ -f "$build/build.ninja" ]; then
  meson configure "$build" -Dwerror=true -Dtests=true
else
  meson setup "$build" -Dwerror=true -Dtests=true
fi
ninja -C "$build"

status=0
meson test -C "$build" --no-rebuild --print-errorlogs || status=$?

# The benchmarks are not timed here (that is `meson test --benchmark`), but a
# small run proves they still work end to end.
echo "== benchmark smoke run"
smoke=0
"$build/bench/bench_latest" --files 2000 --calls 200 --warmup 10 --scan-calls 3 > "$build/bench-smoke.log" 2>&1 || smoke=1
"$build/bench/bench_save" --sizes 4M --reps 1 >> "$build/bench-smoke.log" 2>&1 || smoke=1
if [ $smoke -ne 0 ]; then
  echo "benchmark smoke run failed:"; cat "$build/bench-smoke.log"; status=1
fi

python3 - "$build/meson-logs/testlog.json" "$smoke" <<'PY'
import json, sys
passed = failed = skipped = 0
for line in open(sys.argv[1]):
    r = json.loads(line).get("result")
    if r in ("OK", "EXPECTEDFAIL"):
        passed += 1
    elif r == "SKIP":
        skipped += 1
    else:
        failed += 1
if sys.argv[2] == "0":
    passed += 1
else:
    failed += 1
print(f"tests: {passed} passed, {failed} failed, {skipped} skipped")
PY
exit $status
