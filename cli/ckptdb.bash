# bash completion for ckptdb(1): subcommands, their options, directories for
# DIR/SRC/DST, kinds for --kind, min|max for --best-mode.  Installed as
# <datadir>/bash-completion/completions/ckptdb (loaded on demand by
# bash-completion); or `source` it.  tests/shell/cli_completion.sh checks it
# against every subcommand's --help.

_ckptdb_subcommands="ls show latest verify prune pin unpin fsck adopt history du sync"

_ckptdb_options() {
    case $1 in
    ls) echo "-h --help -a --all --kind --json" ;;
    show) echo "-h --help --json" ;;
    latest) echo "-h --help --kind --no-verify --path --json" ;;
    verify) echo "-h --help --all --json" ;;
    prune) echo "-h --help --keep --keep-default --every-n-epochs --interval --best --best-mode --best-k --max-bytes --corrupt --dry-run --json" ;;
    pin | unpin) echo "-h --help --json" ;;
    fsck) echo "-h --help --repair --json" ;;
    adopt | history | du) echo "-h --help --json" ;;
    sync) echo "-h --help --delete --json" ;;
    esac
}

_ckptdb() {
    local cur prev sub i
    cur=${COMP_WORDS[COMP_CWORD]}
    prev=${COMP_WORDS[COMP_CWORD - 1]}
    sub=
    for ((i = 1; i < COMP_CWORD; i++)); do
        case ${COMP_WORDS[i]} in
        -*) ;;
        *) sub=${COMP_WORDS[i]}; break ;;
        esac
    done
    COMPREPLY=()
    if [[ -z $sub ]]; then
        COMPREPLY=($(compgen -W "$_ckptdb_subcommands -h --help --version" -- "$cur"))
        return 0
    fi
    case $prev in
    --kind) COMPREPLY=($(compgen -W "epoch step time preempt manual" -- "$cur")); return 0 ;;
    --best-mode) COMPREPLY=($(compgen -W "min max" -- "$cur")); return 0 ;;
    --keep | --keep-default | --every-n-epochs | --interval | --best | --best-k | --max-bytes) return 0 ;;
    esac
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$(_ckptdb_options "$sub")" -- "$cur"))
    else
        compopt -o filenames 2>/dev/null
        COMPREPLY=($(compgen -d -- "$cur"))
    fi
    return 0
}
complete -F _ckptdb ckptdb
