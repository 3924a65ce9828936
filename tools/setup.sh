#!/usr/bin/env bash
# tools/setup.sh - install what building, testing and the demo of ckptdb need:
# the Debian packages (with apt-get, as root or through sudo) and a virtual
# environment holding the pinned Python packages of tools/requirements-test.txt
# (torch 2.13.0, numpy, pytest).  The one place both README commands
# (tests/run.sh, examples/demo.sh) get their prerequisites from.
#
# Idempotent: when everything is there it installs nothing and takes well
# under a second.  Progress goes to stderr; the one line on stdout is the
# path of the environment's interpreter, for meson's -Dtest_python=.
#
# Environment:
#   CKPTDB_VENV=DIR      the virtual environment (default: <repo>/.venv,
#                        ignored by git); made with $CKPTDB_BASE_PYTHON
#                        (default python3) when it does not exist
#   CKPTDB_NO_TORCH=1    leave torch, lightning, transformers and accelerate
#                        out of the environment (numpy and pytest only); the
#                        LibTorch binding and the torch suites are then not
#                        built or skipped
#   CKPTDB_NO_APT=1      do not check Debian packages (another system: install
#                        the equivalents of the list below yourself)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REQUIREMENTS=$REPO/tools/requirements-test.txt
VENV=${CKPTDB_VENV:-$REPO/.venv}
NO_TORCH=${CKPTDB_NO_TORCH:-0}

log() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: FAILED: %s\n' "$*" >&2; exit 1; }

# --- Debian packages -------------------------------------------------------
# Build: meson, ninja, a C/C++ compiler, pkg-config; libraries: SQLite,
# xxHash, nlohmann-json, doctest, CLI11 (the ckptdb command); help2man (the
# man page, made from the built command's --help); tools the tests and the
# demo run: sqlite3, xxh128sum, nm (binutils), cmake (the install suite
# builds a CMake project against the installed ckptdb), clang-format-14 (the
# format test checks the sources against .clang-format); python3 and its
# venv module make the virtual environments (.venv, and the install suite's
# fresh one for `pip install .`).
packages=(meson ninja-build pkg-config g++ binutils python3 python3-venv
          libsqlite3-dev sqlite3 libxxhash-dev xxhash nlohmann-json3-dev doctest-dev libcli11-dev
          help2man cmake clang-format-14)
if [[ ${CKPTDB_NO_APT:-0} == 1 ]]; then
    log "CKPTDB_NO_APT=1: not checking Debian packages (${packages[*]})"
elif ! command -v dpkg-query >/dev/null 2>&1; then
    log "no dpkg here: assuming ${packages[*]} (or equivalents) are installed"
else
    missing=()
    while read -r pkg status; do
        [[ $status == "install ok installed" ]] || missing+=("$pkg")
    done < <(for p in "${packages[@]}"; do
                 printf '%s %s\n' "$p" "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)"
             done)
    if ((${#missing[@]})); then
        sudo=()
        if [[ $(id -u) -ne 0 ]]; then
            command -v sudo >/dev/null 2>&1 ||
                die "missing Debian packages: ${missing[*]}; run as root (or with sudo available) to install them"
            sudo=(sudo)
        fi
        log "installing Debian packages: ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        "${sudo[@]}" apt-get update -q >&2 || die "apt-get update failed"
        "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 ||
            die "apt-get install ${missing[*]} failed"
    fi
fi

# --- the virtual environment -----------------------------------------------
py=$VENV/bin/python3
if [[ ! -x $py ]] || ! "$py" -c 'import sys' 2>/dev/null; then
    [[ -L $VENV && ! -x $py ]] && die "$VENV is a symbolic link to no usable environment; remove it or set CKPTDB_VENV"
    base=${CKPTDB_BASE_PYTHON:-python3}
    command -v "$base" >/dev/null 2>&1 || die "no $base to make the virtual environment $VENV with"
    log "making the virtual environment $VENV ($("$base" --version 2>&1))"
    "$base" -m venv --clear "$VENV" >&2 || die "$base -m venv $VENV failed (Debian: apt-get install python3-venv)"
fi

# The pins this run wants; torch, and lightning, transformers and
# accelerate which need it, left out
# with CKPTDB_NO_TORCH=1 (pip would otherwise pull an unpinned torch in).
wanted=()
while read -r line; do
    line=${line%%#*}
    line=${line//[[:space:]]/}
    [[ -n $line ]] || continue
    [[ $line == *==* ]] || die "$REQUIREMENTS: '$line' is not pinned (name==version)"
    [[ $NO_TORCH == 1 && ${line%%==*} =~ ^(torch|lightning|transformers|accelerate)$ ]] && continue
    wanted+=("$line")
done <"$REQUIREMENTS"

# Installed versions against the pins (a local version label such as
# 2.13.0+cpu satisfies 2.13.0).  Prints the pins that are not satisfied.
unsatisfied() {
    "$py" - "${wanted[@]}" <<'PY'
import sys
from importlib import metadata
for pin in sys.argv[1:]:
    name, want = pin.split("==")
    try:
        have = metadata.version(name)
    except metadata.PackageNotFoundError:
        have = None
    if have is None or have.split("+")[0] != want:
        print(pin)
PY
}

need=$(unsatisfied) || die "$py cannot check its packages"
if [[ -n $need ]]; then
    log "installing into $VENV: $(echo $need)"
    "$py" -m pip install --disable-pip-version-check -q "${wanted[@]}" >&2 ||
        die "pip install ${wanted[*]} into $VENV failed"
    need=$(unsatisfied)
    [[ -z $need ]] || die "after pip install, $VENV still lacks: $(echo $need)"
fi
log "ready: $py ($(echo "${wanted[@]}"))"
echo "$py"
