#!/usr/bin/env bash
# Suite install, test pip-install: `pip install SOURCE` into a fresh virtual
# environment (meson-python builds libckptdb and the command; build
# isolation fetches the build backend from PyPI), then, from another
# directory and with no PYTHONPATH, LD_LIBRARY_PATH or CKPTDB_LIBRARY, a
# script saves, resumes and runs `ckptdb ls --json` (the command on the
# environment's PATH).  Then the typing: mypy --strict (pinned,
# tools/requirements-typecheck.txt) passes on a user script of the API and
# fails on one that misuses it; every public function and class has a
# docstring and annotations (check_api.py).
#   pip.sh SOURCE_ROOT WORK_DIR VERSION BASE_PYTHON
set -euo pipefail
src=$1 work=$2 version=$3 base_python=$4
here=$(cd "$(dirname "$0")" && pwd)
fail() { echo "FAIL: $*" >&2; exit 1; }

rm -rf "$work"
mkdir -p "$work/elsewhere"
venv=$work/venv
"$base_python" -m venv "$venv" || fail "python -m venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check --no-input)

echo "== pip install . (in $src)"
# Exactly the README's command, from the source tree; pip's output is kept
# in pip.log.
(cd "$src" && "${pip[@]}" install .) >"$work/pip.log" 2>&1 ||
    { tail -n 80 "$work/pip.log"; fail "pip install"; }
tail -n 2 "$work/pip.log"

# The user's environment: the venv activated (its bin first on PATH), and
# nothing that points at the source or build tree.
run() {
    (cd "$work/elsewhere" && env -i HOME="$work" PATH="$venv/bin:/usr/bin:/bin" LANG=C.UTF-8 "$@")
}

echo "== save, resume and ckptdb ls --json, from another directory"
cp "$here/pip_user.py" "$work/elsewhere/user.py"
run python user.py "$version" "$venv" || fail "the user script"

echo "== mypy --strict"
pins=$here/../../tools/requirements-typecheck.txt
"${pip[@]}" install -r "$pins" >"$work/pip-mypy.log" 2>&1 || { tail -n 30 "$work/pip-mypy.log"; fail "pip install mypy"; }
cp "$here/typed_user.py" "$here/typed_misuse.py" "$work/elsewhere/"
run mypy --strict --no-incremental user.py typed_user.py || fail "mypy --strict on scripts that use the API"
if out=$(run mypy --strict --no-incremental typed_misuse.py 2>&1); then
    echo "$out"
    fail "mypy --strict accepted a script that misuses the API (are the hints in the wheel?)"
fi
echo "$out" | tail -n 6
n=$(grep -c "error:" <<<"$out" || true)
[ "$n" -eq 5 ] || fail "mypy found $n errors in typed_misuse.py, expected the 5 marked there"

echo "== docstrings and annotations of the public API"
cp "$here/check_api.py" "$work/elsewhere/"
run python check_api.py || fail "check_api"
echo "pip-install: ok"
