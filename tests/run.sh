#!/usr/bin/env bash
# Builds ckptdb and runs the whole test suite with meson test.
# Works on a fresh Debian 12 machine as root: tools/setup.sh installs what is
# missing (Debian packages; the virtual environment .venv with the pinned
# torch, numpy and pytest of tools/requirements-test.txt).
#   BUILD_DIR=build   the build directory (default: build)
#   SANITIZERS=0      skip the passes under ASan+UBSan and TSan (default: run them)
#   CKPTDB_VENV=DIR   the virtual environment (default: .venv in the repository)
#   CKPTDB_NO_TORCH=1 do not install torch: the LibTorch binding is not built
#                     and the suites that need torch are skipped
#   TIMEOUT_MULTIPLIER=N  scales every test's timeout (default 2; the
#                     sanitizer passes get twice that)
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages and the test interpreter's virtual environment (.venv:
# pinned torch, numpy, pytest); the same script as examples/demo.sh's.
py=$(tools/setup.sh)

# The LibTorch binding builds against the LibTorch inside that torch wheel
# and must be found (enabled): its suite is part of the run.
torch_mode=enabled
[ "${CKPTDB_NO_TORCH:-0}" = 0 ] || torch_mode=disabled

# configure DIR OPTION...: set up DIR, or reconfigure it with these options.
# A directory configured by an older tree whose options no longer fit (the
# test interpreter's option was `python`, now `test_python`) is made anew.
configure() {
  local dir=$1; shift
  if [ -f "$dir/build.ninja" ]; then
    meson setup --reconfigure "$dir" "$@" && return 0
    echo "== $dir: reconfiguring failed (options of an older tree?); setting it up anew"
    rm -rf "$dir"
  fi
  meson setup "$dir" "$@"
}

build="${BUILD_DIR:-build}"
configure "$build" -Dwerror=true -Dtests=true -Dtest_python="$py" -Dtorch=$torch_mode
ninja -C "$build"

# A test's timeout (tests/**/meson.build) only stops a hang; it is not a
# performance target. Sized for a quiet machine, it failed a sound test on a
# busy one: fault-inject takes 339 s of its 600 under ASan on a quiet
# machine, and ran out of time while other builds kept both cores busy. So
# the timeouts are doubled here, and the sanitizer passes, which run the same
# code several times slower, get twice that.
mult="${TIMEOUT_MULTIPLIER:-2}"
san_mult=$((mult * 2))

status=0
meson test -C "$build" --no-rebuild --print-errorlogs --timeout-multiplier "$mult" || status=$?

# The benchmarks are not timed here (that is `meson test --benchmark`), but a
# small run proves they still work end to end.
echo "== benchmark smoke run"
smoke=0
"$build/bench/bench_latest" --files 2000 --calls 200 --warmup 10 --scan-calls 3 > "$build/bench-smoke.log" 2>&1 || smoke=1
"$build/bench/bench_save" --sizes 4M --reps 1 >> "$build/bench-smoke.log" 2>&1 || smoke=1
"$build/bench/bench_dir" --files 64 --reps 1 --calls 2 >> "$build/bench-smoke.log" 2>&1 || smoke=1
if [ $smoke -ne 0 ]; then
  echo "benchmark smoke run failed:"; cat "$build/bench-smoke.log"; status=1
fi

# The whole suite again under AddressSanitizer (leaks included) and
# UndefinedBehaviorSanitizer, in a second build directory; any report fails.
logs=("$build/meson-logs/testlog.json")
if [ "${SANITIZERS:-1}" != 0 ]; then
  echo "== ASan + UBSan pass"
  san="${build}-asan"
  configure "$san" -Dwerror=true -Dtests=true -Dtest_python="$py" -Dtorch=disabled -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug
  ninja -C "$san"
  # The Python interpreter and the Slurm daemons are not instrumented, and
  # the install suite builds with its own toolchains (pip, CMake, a parent
  # Meson project); those suites run once, in the first pass.
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    CKPTDB_PROPERTY_SEQUENCES=1000 CKPTDB_CRASH_ITERATIONS=60 CKPTDB_STRESS_SAVES=25 \
    meson test -C "$san" --no-rebuild --print-errorlogs --timeout-multiplier "$san_mult" \
      --no-suite python --no-suite slurm --no-suite install || status=$?
  logs+=("$san/meson-logs/testlog.json")

  # The multi-threaded suites under ThreadSanitizer; any report fails.
  echo "== TSan pass"
  tsan="${build}-tsan"
  configure "$tsan" -Dwerror=true -Dtests=true -Dtest_python="$py" -Dtorch=disabled -Db_sanitize=thread -Db_lundef=false -Dbuildtype=debug
  ninja -C "$tsan" tests/stress/stress_threads
  TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 CKPTDB_STRESS_SAVES=25 \
    meson test -C "$tsan" --no-rebuild --print-errorlogs --timeout-multiplier "$san_mult" stress-threads || status=$?
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
