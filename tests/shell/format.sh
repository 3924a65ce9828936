#!/usr/bin/env bash
# The C and C++ sources follow the repository's .clang-format.  clang-format's
# output changes between major versions, so the check uses version 14 (the
# Debian 12 package clang-format-14, which tools/setup.sh installs); on a
# machine without it the test is skipped (exit 77) and says so.
# Usage: format.sh SOURCE_ROOT
set -euo pipefail
root="$1"
cf=""
for c in clang-format-14 clang-format; do
    if command -v "$c" > /dev/null 2>&1 && "$c" --version | grep -q 'version 14\.'; then cf="$c"; break; fi
done
if [ -z "$cf" ]; then
    echo "SKIP: clang-format 14 is not installed (apt-get install clang-format-14)"
    exit 77
fi
cd "$root"
[ -f .clang-format ] || { echo "FAIL: $root/.clang-format is missing"; exit 1; }
mapfile -t files < <(git ls-files '*.c' '*.h' '*.cpp' '*.hpp' 2> /dev/null ||
                     find . -path ./subprojects -prune -o -path './build*' -prune -o \
                          \( -name '*.c' -o -name '*.h' -o -name '*.cpp' -o -name '*.hpp' \) -print)
[ "${#files[@]}" -gt 50 ] || { echo "FAIL: found only ${#files[@]} C/C++ files under $root"; exit 1; }
bad=()
for f in "${files[@]}"; do
    if ! "$cf" --dry-run --Werror "$f" > /dev/null 2>&1; then bad+=("$f"); fi
done
if [ "${#bad[@]}" -gt 0 ]; then
    echo "FAIL: ${#bad[@]} file(s) do not follow .clang-format (fix with: $cf -i FILE):"
    printf '  %s\n' "${bad[@]}"
    "$cf" --dry-run "${bad[0]}" 2>&1 | head -n 20
    exit 1
fi
echo "ok: ${#files[@]} C/C++ files follow .clang-format ($cf)"
