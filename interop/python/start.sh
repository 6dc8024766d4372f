#!/usr/bin/env bash
# start.sh NAME CONFIG [lymph instance args...]: start a lymph 0.15 instance in the
# background and wait until it is registered; prints its RPC endpoint.
set -euo pipefail

if [ $# -lt 2 ]; then
    cat >&2 <<'USAGE'
usage: start.sh NAME CONFIG [lymph instance args...]
Starts `lymph instance -c CONFIG --loglevel=INFO ARGS` as NAME, waits until it has
registered in ZooKeeper and prints `NAME: ready pid=PID endpoint=tcp://IP:PORT`.
CONFIG is a path, or the name of a config in this folder (echo.yml, listener.yml).
Files: $LYMPH_PEER_HOME/run/NAME.{pid,log,endpoint,events.jsonl}. An instance already
running as NAME is stopped first. LYMPH_PEER_START_TIMEOUT: seconds to wait (30).
USAGE
    exit 2
fi
NAME="$1" CONFIG="$2"
shift 2

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
check_name "$NAME"
[ -f "$CONFIG" ] || CONFIG="$HARNESS/$CONFIG"
[ -f "$CONFIG" ] || die "no config $CONFIG"
CONFIG="$(cd "$(dirname "$CONFIG")" && pwd -P)/$(basename "$CONFIG")"

bash "$HARNESS/setup.sh"
running_pid "$NAME" >/dev/null && bash "$HARNESS/stop.sh" "$NAME" >/dev/null
mkdir -p "$RUN"
LOG="$RUN/$NAME.log"
rm -f "$RUN/$NAME.pid" "$RUN/$NAME.endpoint" "$RUN/$NAME.events.jsonl"

peer_env
# In a script, a background job is not a process group leader, so setsid does not fork:
# $! is lymph itself, the leader of a new session and process group (stop.sh signals it).
(
    cd "$RUN"
    export LYMPH_PEER_EVENTS="$RUN/$NAME.events.jsonl" PYTHONUNBUFFERED=1
    exec setsid "$VENV/bin/lymph" instance -c "$CONFIG" --loglevel=INFO "$@"
) </dev/null >"$LOG" 2>&1 &
PID=$!
echo "$PID $(starttime "$PID" || true)" >"$RUN/$NAME.pid"

# `lymph instance` registers every interface (each RabbitMQ queue is declared and bound
# before that), then sets its process title to
# "lymph-instance (identity: ..., endpoint: tcp://IP:PORT, config: ...)": once the title
# names the endpoint, the instance is registered and its event handlers consume.
deadline=$((SECONDS + ${LYMPH_PEER_START_TIMEOUT:-30}))
while :; do
    if ! running_pid "$NAME" >/dev/null; then
        problem="exited"
        break
    fi
    title="$(tr '\0' ' ' <"/proc/$PID/cmdline" 2>/dev/null || true)"
    if [[ "$title" =~ endpoint:\ (tcp://[^,]+) ]]; then
        echo "${BASH_REMATCH[1]}" >"$RUN/$NAME.endpoint"
        echo "$NAME: ready pid=$PID endpoint=${BASH_REMATCH[1]} log=$LOG"
        exit 0
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
        problem="not registered after ${LYMPH_PEER_START_TIMEOUT:-30} s"
        break
    fi
    sleep 0.1
done
echo "start.sh: $NAME $problem; the end of $LOG:" >&2
tail -n 30 "$LOG" >&2
bash "$HARNESS/stop.sh" "$NAME" >&2
exit 1
