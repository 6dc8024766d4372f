#!/usr/bin/env bash
# Installs, starts and stops the infrastructure of lymph-rs's real-infra suite:
# ZooKeeper on 127.0.0.1:2181 and RabbitMQ on 127.0.0.1:5672, from Debian's packages.
#
#   scripts/infra.sh install            apt-get the packages (as root) if they are missing
#   scripts/infra.sh up                 install, then start whatever is not listening yet, wait for the ports
#   scripts/infra.sh down               stop what `up` started (by pid), leave anything else alone
#   scripts/infra.sh restart NAME       stop and start NAME (zookeeper | rabbitmq), for fault tests
#   scripts/infra.sh stop NAME          stop NAME only (see below)
#   scripts/infra.sh start NAME         start NAME only (rabbitmq: its application again, if only that was stopped)
#   scripts/infra.sh rabbitmq-node      print the RabbitMQ node name that `rabbitmqctl` reaches
#   scripts/infra.sh status             print what listens on the two ports, and who started it
#
# RabbitMQ is stopped and started with `rabbitmqctl stop_app` / `start_app`, whoever started the
# server (this script, a system service, a user): the Erlang node keeps running, the broker
# (listeners, connections, queues) goes away and comes back. Its node is LYMPH_TEST_RABBITMQ_NODE
# if set, else the one `up` started (rabbit@localhost), else rabbitmqctl's default
# (rabbit@<short hostname>), else rabbit@localhost. `rabbitmqctl` must be able to read the
# server's Erlang cookie: Debian's wrapper runs it as the rabbitmq user; as root elsewhere, set
# HOME to the rabbitmq user's home (or copy its .erlang.cookie).
#
# ZooKeeper has no such command. `restart zookeeper` runs LYMPH_TEST_ZOOKEEPER_RESTART if set (a
# shell command that stops and starts the server, e.g. `systemctl restart zookeeper` or
# `zkServer.sh restart <zoo.cfg>`), else restarts the server `up` started; it never kills a
# server it did not start. Either way it waits until 127.0.0.1:2181 accepts connections again.
# `stop zookeeper` only stops a server `up` started.
#
# State (pids, logs, data) lives in $LYMPH_INFRA_HOME, by default /tmp/lymph-infra.
set -euo pipefail

HOME_DIR="${LYMPH_INFRA_HOME:-/tmp/lymph-infra}"
ZK_PORT=2181
AMQP_PORT=5672
mkdir -p "$HOME_DIR"

log() { echo "infra: $*" >&2; }
LOG_DIR="$HOME_DIR"
# shellcheck source=infra-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/infra-lib.sh"

# The pid `up` recorded for NAME, if that process still runs.
own_pid() { # NAME
    local pidfile="$HOME_DIR/$1.pid" pid
    [[ -f "$pidfile" ]] || return 1
    pid="$(cat "$pidfile")"
    kill -0 "$pid" 2>/dev/null || return 1
    echo "$pid"
}

install() {
    local missing=()
    [[ -f /usr/share/java/zookeeper.jar ]] || missing+=(zookeeper)
    command -v rabbitmqctl >/dev/null 2>&1 || [[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ]] || missing+=(rabbitmq-server)
    command -v java >/dev/null 2>&1 || missing+=(default-jre-headless)
    if ((${#missing[@]})); then
        log "installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
    # The packages' post-install scripts may start services on machines with an init system;
    # `up` takes whatever already listens, so that is fine.
}

# ---- ZooKeeper ----

start_zookeeper() {
    if listening $ZK_PORT; then log "zookeeper: something already listens on $ZK_PORT"; return; fi
    local dir="$HOME_DIR/zookeeper"
    mkdir -p "$dir/data"
    write_zoo_cfg "$dir/zoo.cfg" "$dir/data"
    setsid java -Xmx256m -cp "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar" \
        -Dzookeeper.log.dir="$dir" -Dzookeeper.root.logger=INFO,CONSOLE \
        org.apache.zookeeper.server.quorum.QuorumPeerMain "$dir/zoo.cfg" \
        >"$HOME_DIR/zookeeper.log" 2>&1 </dev/null &
    echo $! >"$HOME_DIR/zookeeper.pid"
    wait_port zookeeper $ZK_PORT 60
    log "zookeeper: up on 127.0.0.1:$ZK_PORT (pid $(cat "$HOME_DIR/zookeeper.pid"))"
}

restart_zookeeper() {
    if [[ -n "${LYMPH_TEST_ZOOKEEPER_RESTART:-}" ]]; then
        log "zookeeper: restarting with LYMPH_TEST_ZOOKEEPER_RESTART: $LYMPH_TEST_ZOOKEEPER_RESTART"
        if ! bash -c "$LYMPH_TEST_ZOOKEEPER_RESTART" >&2 </dev/null; then
            log "zookeeper: LYMPH_TEST_ZOOKEEPER_RESTART failed"
            return 1
        fi
        wait_port zookeeper $ZK_PORT 60
        log "zookeeper: back on 127.0.0.1:$ZK_PORT"
    elif own_pid zookeeper >/dev/null; then
        stop_own zookeeper
        start_zookeeper
    else
        log "zookeeper: the server on 127.0.0.1:$ZK_PORT was not started by \`scripts/infra.sh up\`, so it is not ours to kill."
        log "zookeeper: set LYMPH_TEST_ZOOKEEPER_RESTART to a shell command that stops and starts it, e.g."
        log "  LYMPH_TEST_ZOOKEEPER_RESTART='systemctl restart zookeeper'"
        log "  LYMPH_TEST_ZOOKEEPER_RESTART='/usr/share/zookeeper/bin/zkServer.sh restart /path/to/zoo.cfg'"
        log "zookeeper: (this script then waits until 127.0.0.1:$ZK_PORT accepts connections again)"
        return 1
    fi
}

# ---- RabbitMQ ----

RMQ_NODE=""    # the node found: a name, or "default" for rabbitmqctl's default
RMQ_ARGS=()    # the arguments that name it to rabbitmqctl

rmq_label() { # CANDIDATE
    if [[ $1 == default ]]; then echo "rabbit@$(hostname -s) (rabbitmqctl's default)"; else echo "$1"; fi
}

# Finds the node `rabbitmqctl` reaches (see the top of this file). With `quiet`, says nothing
# when there is none.
rmq_find() { # [quiet]
    [[ -n "$RMQ_NODE" ]] && return 0
    local candidates=() c tried=() last=""
    if [[ -n "${LYMPH_TEST_RABBITMQ_NODE:-}" ]]; then
        candidates=("$LYMPH_TEST_RABBITMQ_NODE")
    else
        [[ -f "$HOME_DIR/rabbitmq.node" ]] && candidates+=("$(cat "$HOME_DIR/rabbitmq.node")")
        candidates+=(default rabbit@localhost)
    fi
    for c in "${candidates[@]}"; do
        [[ " ${tried[*]:-} " == *" $c "* ]] && continue
        tried+=("$c")
        local args=()
        [[ $c != default ]] && args=(-n "$c")
        if last="$(rabbitmqctl -q "${args[@]}" ping -t 10 2>&1)"; then
            RMQ_NODE="$c"
            RMQ_ARGS=("${args[@]}")
            return 0
        fi
    done
    [[ "${1:-}" == quiet ]] && return 1
    log "rabbitmq: rabbitmqctl reaches no RabbitMQ node; tried:"
    for c in "${tried[@]}"; do log "  $(rmq_label "$c")"; done
    log "rabbitmq: is RabbitMQ running? rabbitmqctl must read the server's Erlang cookie (as root it"
    log "  uses root's ~/.erlang.cookie unless HOME is the rabbitmq user's home, e.g. HOME=/var/lib/rabbitmq);"
    log "  set LYMPH_TEST_RABBITMQ_NODE=<name@host> if the node has another name. Last error:"
    echo "$last" | head -n 12 | sed 's/^/    /' >&2
    return 1
}

rmq() { # ARGS...
    rabbitmqctl -q "${RMQ_ARGS[@]}" "$@"
}

launch_rabbitmq() {
    local dir="$HOME_DIR/rabbitmq"
    mkdir -p "$dir/mnesia" "$dir/log"
    chown -R rabbitmq:rabbitmq "$dir" 2>/dev/null || true
    # The node name is fixed (recorded in rabbitmq.node for rmq_find). The data dir is ours and
    # survives a restart (users, vhosts, durable exchanges); lymph's queues are not durable, so a
    # restart empties them, as on any RabbitMQ.
    # HOME is the rabbitmq user's, so the server and `rabbitmqctl` (which runs as that user)
    # share one Erlang cookie.
    setsid env HOME=/var/lib/rabbitmq RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT=$AMQP_PORT \
        RABBITMQ_NODENAME=rabbit@localhost RABBITMQ_MNESIA_BASE="$dir/mnesia" \
        RABBITMQ_LOG_BASE="$dir/log" RABBITMQ_PID_FILE="$dir/rabbit.pid" \
        RABBITMQ_DIST_PORT=25672 RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="$LOOPBACK_DIST" \
        /usr/lib/rabbitmq/bin/rabbitmq-server >"$HOME_DIR/rabbitmq.log" 2>&1 </dev/null &
    echo $! >"$HOME_DIR/rabbitmq.pid"
    echo rabbit@localhost >"$HOME_DIR/rabbitmq.node"
    wait_port rabbitmq $AMQP_PORT 120
    log "rabbitmq: up on 127.0.0.1:$AMQP_PORT (pid $(cat "$HOME_DIR/rabbitmq.pid"), node rabbit@localhost)"
}

# Starts RabbitMQ: nothing when it listens; its application when only that was stopped (on any
# node); else a server of our own.
start_rabbitmq() {
    if listening $AMQP_PORT; then log "rabbitmq: something already listens on $AMQP_PORT"; return; fi
    if rmq_find quiet; then
        log "rabbitmq: starting the application on $(rmq_label "$RMQ_NODE")"
        rmq start_app >/dev/null
        rmq await_startup >/dev/null
        wait_port rabbitmq $AMQP_PORT 60
        log "rabbitmq: back on 127.0.0.1:$AMQP_PORT"
        return
    fi
    launch_rabbitmq
}

# Stops the RabbitMQ application (the broker) on whatever node serves 127.0.0.1:5672; the Erlang
# node keeps running, `start_rabbitmq` starts the application again.
stop_rabbitmq() {
    rmq_find || return 1
    rmq stop_app >/dev/null
    wait_closed rabbitmq $AMQP_PORT 30
    log "rabbitmq: application stopped on $(rmq_label "$RMQ_NODE")"
}

# ---- either ----

# Stops what `up` started, by pid; anything else is left alone.
stop_own() { # NAME
    local pidfile="$HOME_DIR/$1.pid" pid
    if [[ ! -f "$pidfile" ]]; then
        log "$1: not started by this script, left alone"
        return 0
    fi
    pid="$(cat "$pidfile")"
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
    if [[ $1 == rabbitmq ]]; then
        rm -f "$HOME_DIR/rabbitmq.node"
        # Erlang leaves epmd behind; it holds no state. `epmd -kill` stops it only when no node
        # is registered with it any more, so another user's node keeps its epmd.
        epmd -kill >/dev/null 2>&1 || true
    fi
    log "$1: stopped"
}

start_one() {
    case "$1" in
    zookeeper) start_zookeeper ;;
    rabbitmq) start_rabbitmq ;;
    *) log "unknown service $1 (zookeeper | rabbitmq)"; exit 2 ;;
    esac
}

stop_one() {
    case "$1" in
    zookeeper)
        if ! own_pid zookeeper >/dev/null; then
            log "zookeeper: not started by this script, left alone (\`restart zookeeper\` can use LYMPH_TEST_ZOOKEEPER_RESTART)"
            return 1
        fi
        stop_own zookeeper ;;
    rabbitmq) stop_rabbitmq ;;
    *) log "unknown service $1 (zookeeper | rabbitmq)"; exit 2 ;;
    esac
}

restart_one() {
    case "$1" in
    zookeeper) restart_zookeeper ;;
    rabbitmq) stop_rabbitmq; start_rabbitmq ;;
    *) log "unknown service $1 (zookeeper | rabbitmq)"; exit 2 ;;
    esac
}

status_one() { # NAME PORT
    local state=closed by="" pid
    listening "$2" && state=listening
    if pid="$(own_pid "$1")"; then by=" (started by this script, pid $pid)"
    elif [[ $state == listening ]]; then by=" (not started by this script)"
    fi
    echo "127.0.0.1:$2 $state$by"
}

case "${1:-}" in
install) install ;;
up) install; start_zookeeper; start_rabbitmq ;;
down) stop_own rabbitmq; stop_own zookeeper ;;
start) start_one "${2:?start NAME}" ;;
stop) stop_one "${2:?stop NAME}" ;;
restart) restart_one "${2:?restart NAME}" ;;
rabbitmq-node) rmq_find && if [[ $RMQ_NODE == default ]]; then rabbitmqctl -q eval 'node().' 2>/dev/null || rmq_label default; else echo "$RMQ_NODE"; fi ;;
status) status_one zookeeper $ZK_PORT; status_one rabbitmq $AMQP_PORT ;;
*) sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
