#!/usr/bin/env bash
# stop.sh NAME... | stop.sh --all: stop instances that start.sh started.
set -euo pipefail

if [ $# -eq 0 ]; then
    cat >&2 <<'USAGE'
usage: stop.sh NAME... | stop.sh --all
SIGTERM to each instance's process group, SIGKILL after LYMPH_PEER_STOP_TIMEOUT seconds
(10). Only processes start.sh recorded are signalled; logs and events are kept.
USAGE
    exit 2
fi

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
if [ "$1" = --all ]; then
    set --
    for f in "$RUN"/*.pid; do
        [ -e "$f" ] && set -- "$@" "$(basename "$f" .pid)"
    done
fi

status=0
for name in "$@"; do
    check_name "$name"
    if pid="$(running_pid "$name")"; then
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < ${LYMPH_PEER_STOP_TIMEOUT:-10} * 10; i++)); do
            running_pid "$name" >/dev/null || break
            sleep 0.1
        done
        if running_pid "$name" >/dev/null; then
            kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
            sleep 0.5
            if running_pid "$name" >/dev/null; then
                echo "$name: pid $pid survived SIGKILL" >&2
                status=1
                continue
            fi
        fi
        echo "$name: stopped (pid $pid)"
    else
        echo "$name: not running"
    fi
    rm -f "$RUN/$name.pid" "$RUN/$name.endpoint"
done
exit "$status"
