# Sourced by the scripts of this folder; not run on its own.
#
# Nothing is written inside this folder (it may be read-only): the virtual environment,
# the lymph sdist, pid files, logs and recorded events live in the state directory
# $LYMPH_PEER_HOME (default ~/.cache/lymph-python-peer), see README.md.

HARNESS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"

die() {
    echo "lymph-python-peer: $*" >&2
    exit 1
}

LYMPH_PEER_HOME="${LYMPH_PEER_HOME:-${HOME:?set HOME or LYMPH_PEER_HOME}/.cache/lymph-python-peer}"
mkdir -p "$LYMPH_PEER_HOME" || die "cannot create the state directory $LYMPH_PEER_HOME"
LYMPH_PEER_HOME="$(cd "$LYMPH_PEER_HOME" && pwd -P)"
case "$LYMPH_PEER_HOME/" in
    "$HARNESS/"*) die "LYMPH_PEER_HOME ($LYMPH_PEER_HOME) must be outside $HARNESS" ;;
esac
export LYMPH_PEER_HOME

VENV="$LYMPH_PEER_HOME/venv"
RUN="$LYMPH_PEER_HOME/run"

# The environment every lymph process runs in: services/ importable (echo:Echo,
# listener:Listener), no pkg_resources deprecation warning on each start, and no
# bytecode written next to the services.
peer_env() {
    export PYTHONPATH="$HARNESS/services${PYTHONPATH:+:$PYTHONPATH}"
    export PYTHONWARNINGS="ignore::UserWarning"
    export PYTHONDONTWRITEBYTECODE=1
}

# The kernel start time of process $1 (field 22 of /proc/PID/stat); fails if it is gone.
starttime() {
    local stat
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    stat="${stat##*) }"         # drop "pid (comm) "; comm may contain spaces
    local -a field
    read -r -a field <<<"$stat"
    [ "${field[0]}" != Z ] || return 1  # a zombie has exited
    echo "${field[19]}"
}

# The pid of instance $1 if it is still the process start.sh started; fails otherwise.
running_pid() {
    local pid start
    read -r pid start 2>/dev/null <"$RUN/$1.pid" || return 1
    [ -n "$pid" ] && [ "$(starttime "$pid" || true)" = "$start" ] && echo "$pid"
}

check_name() {
    [[ "$1" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*$ ]] || die "bad instance name '$1' (letters, digits, _ . -)"
}
