#!/usr/bin/env bash
# Builds ckptdb and runs the whole test suite with meson test.
# Works on a fresh Debian 12 machine as root: installs what is missing.
#   BUILD_DIR=build   the build directory (default: build)
#   SANITIZERS=0      skip the passes under ASan+UBSan and TSan (default: run them)
#   CKPTDB_NO_TORCH=1 do not install LibTorch and PyTorch (their suites are then skipped)
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=(meson ninja-build pkg-config g++ python3 binutils libsqlite3-dev sqlite3 libxxhash-dev xxhash
      nlohmann-json3-dev doctest-dev libcli11-dev)
# The LibTorch binding and the Python binding's torch suites.
if [ "${CKPTDB_NO_TORCH:-0}" = 0 ]; then
  pkgs+=(libtorch-dev python3-torch python3-numpy python3-pytest)
fi
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

# The whole suite again under AddressSanitizer (leaks included) and
# UndefinedBehaviorSanitizer, in a second build directory; any report fails.
logs=("$build/meson-logs/testlog.json")
if [ "${SANITIZERS:-1}" != 0 ]; then
  echo "== ASan + UBSan pass"
  san="${build}-asan"
  if [ -f "$san/build.ninja" ]; then
    meson configure "$san" -Dwerror=true -Dtests=true -Dtorch=disabled -Db_sanitize=address,undefined -Db_lundef=false
  else
    meson setup "$san" -Dwerror=true -Dtests=true -Dtorch=disabled -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug
  fi
  ninja -C "$san"
  # The Python interpreter and the Slurm daemons are not instrumented; those
  # suites run once, in the first pass.
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    CKPTDB_PROPERTY_SEQUENCES=1000 CKPTDB_CRASH_ITERATIONS=60 CKPTDB_STRESS_SAVES=25 \
    meson test -C "$san" --no-rebuild --print-errorlogs --no-suite python --no-suite slurm || status=$?
  logs+=("$san/meson-logs/testlog.json")

  # The multi-threaded suites under ThreadSanitizer; any report fails.
  echo "== TSan pass"
  tsan="${build}-tsan"
  if [ -f "$tsan/build.ninja" ]; then
    meson configure "$tsan" -Dwerror=true -Dtests=true -Dtorch=disabled -Db_sanitize=thread -Db_lundef=false
  else
    meson setup "$tsan" -Dwerror=true -Dtests=true -Dtorch=disabled -Db_sanitize=thread -Db_lundef=false -Dbuildtype=debug
  fi
  ninja -C "$tsan" tests/stress/stress_threads
  TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 CKPTDB_STRESS_SAVES=25 \
    meson test -C "$tsan" --no-rebuild --print-errorlogs stress-threads || status=$?
  logs+=("$tsan/meson-logs/testlog.json")
fi

python3 - "$smoke" "${logs[@]}" <<'PY'
import json, sys
passed = failed = skipped = 0
for path in sys.argv[2:]:
    for line in open(path):
        r = json.loads(line).get("result")
        if r in ("OK", "EXPECTEDFAIL"):
            passed += 1
        elif r == "SKIP":
            skipped += 1
        else:
            failed += 1
if sys.argv[1] == "0":
    passed += 1
else:
    failed += 1
print(f"tests: {passed} passed, {failed} failed, {skipped} skipped")
PY
exit $status
