#!/usr/bin/env bash
# The bash completion (cli/ckptdb.bash) against the command's own --help:
# it offers every subcommand and, for each, every option its --help lists
# (and nothing that is not there); directories complete DIR.  Also the man
# page, when it was built: every subcommand has its section.
#   cli_completion.sh CKPTDB COMPLETION_SCRIPT [MAN_PAGE]
set -euo pipefail
cli=$1 completion=$2 man=${3:-}
fail() { echo "FAIL: $*" >&2; exit 1; }
# shellcheck source=/dev/null
source "$completion"

complete_words() {  # complete_words WORD... : COMPREPLY for the last word, sorted
    COMP_WORDS=(ckptdb "$@")
    COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
    COMPREPLY=()
    _ckptdb
    printf '%s\n' "${COMPREPLY[@]}" | sort
}

subs=$("$cli" --help | awk '/^Subcommands:/ {on = 1; next} on && /^  [a-z]/ {print $1} on && /^$/ {on = 0}' | sort)
[ "$(wc -l <<<"$subs")" -ge 11 ] || fail "found only these subcommands in --help: $subs"
got=$(complete_words "" | grep -v '^-' || true)
[ "$got" = "$subs" ] || fail "subcommands completed: $(echo $got); in --help: $(echo $subs)"
[ "$(complete_words pr)" = "prune" ] || fail "'pr' does not complete to prune"

n=0
for sub in $subs; do
    want=$("$cli" "$sub" --help | grep -oE '^  (-[a-z],)?--[a-z-]+' | tr -d ' ' | tr ',' '\n' | sort)
    got=$(complete_words "$sub" - )
    [ "$got" = "$want" ] || fail "$sub: options completed: $(echo $got); in its --help: $(echo $want)"
    n=$((n + $(wc -l <<<"$want")))
done
echo "completion: $(wc -l <<<"$subs") subcommands, $n options, as in --help"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/ckpts-a" "$tmp/ckpts-b"
(cd "$tmp" && [ "$(complete_words ls ckpts | tr '\n' ' ')" = "ckpts-a ckpts-b " ]) || fail "DIR does not complete directories"
[ "$(complete_words prune d --best-mode "")" = "$(printf 'max\nmin')" ] || fail "--best-mode does not complete min|max"

if [ -n "$man" ]; then
    [ -s "$man" ] || fail "no man page at $man"
    head -n 5 "$man" | grep -q '^\.TH CKPTDB "1"' || fail "$man is not section 1 of ckptdb"
    for sub in $subs; do
        grep -q "^$sub:" "$man" || grep -q "^\\\\fB$sub\\\\fR:" "$man" || grep -q "^\.SS \"$sub:\"" "$man" ||
            grep -qE "^\.?(\\\\fB)?$sub(\\\\fR)?:" "$man" || fail "the man page has no section for $sub"
    done
    grep -q -F -- '\-\-dry\-run' "$man" || fail "the man page lacks prune's options"
    [ "$(grep -c '^\.SS "Exit codes:"' "$man")" = 1 ] || fail "the man page repeats the exit codes"
    echo "man page: every subcommand"
fi
