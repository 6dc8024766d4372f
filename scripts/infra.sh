#!/usr/bin/env bash
# Installs, starts and stops the infrastructure of lymph-rs's real-infra suite:
# ZooKeeper on 127.0.0.1:2181 and RabbitMQ on 127.0.0.1:5672, from Debian's packages.
#
#   scripts/infra.sh install            apt-get the packages (as root) if they are missing
#   scripts/infra.sh up                 install, then start whatever is not listening yet, wait for the ports
#   scripts/infra.sh down               stop what `up` started (by pid), leave anything else alone
#   scripts/infra.sh restart NAME       stop and start NAME (zookeeper | rabbitmq), for fault tests
#   scripts/infra.sh stop NAME          stop NAME only (it must have been started by `up`)
#   scripts/infra.sh start NAME         start NAME only
#   scripts/infra.sh status             print what listens on the two ports
#
# State (pids, logs, data) lives in $LYMPH_INFRA_HOME, by default /tmp/lymph-infra.
set -euo pipefail

HOME_DIR="${LYMPH_INFRA_HOME:-/tmp/lymph-infra}"
ZK_PORT=2181
AMQP_PORT=5672
mkdir -p "$HOME_DIR"

log() { echo "infra: $*" >&2; }

listening() { # PORT
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

wait_port() { # NAME PORT SECONDS
    local deadline=$((SECONDS + $3))
    until listening "$2"; do
        if ((SECONDS >= deadline)); then
            log "$1 did not listen on 127.0.0.1:$2 within $3 s; last log lines:"
            tail -n 30 "$HOME_DIR/$1.log" >&2 || true
            return 1
        fi
        sleep 0.2
    done
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

start_zookeeper() {
    if listening $ZK_PORT; then log "zookeeper: something already listens on $ZK_PORT"; return; fi
    local dir="$HOME_DIR/zookeeper"
    mkdir -p "$dir/data"
    cat >"$dir/zoo.cfg" <<CFG
tickTime=2000
initLimit=10
syncLimit=5
dataDir=$dir/data
clientPort=$ZK_PORT
clientPortAddress=127.0.0.1
maxSessionTimeout=60000
admin.enableServer=false
4lw.commands.whitelist=ruok,stat,srvr,mntr
CFG
    setsid java -Xmx256m -cp "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar" \
        -Dzookeeper.log.dir="$dir" -Dzookeeper.root.logger=INFO,CONSOLE \
        org.apache.zookeeper.server.quorum.QuorumPeerMain "$dir/zoo.cfg" \
        >"$HOME_DIR/zookeeper.log" 2>&1 </dev/null &
    echo $! >"$HOME_DIR/zookeeper.pid"
    wait_port zookeeper $ZK_PORT 60
    log "zookeeper: up on 127.0.0.1:$ZK_PORT (pid $(cat "$HOME_DIR/zookeeper.pid"))"
}

start_rabbitmq() {
    if listening $AMQP_PORT; then log "rabbitmq: something already listens on $AMQP_PORT"; return; fi
    local dir="$HOME_DIR/rabbitmq"
    mkdir -p "$dir/mnesia" "$dir/log"
    chown -R rabbitmq:rabbitmq "$dir" 2>/dev/null || true
    # The node name is fixed so that `rabbitmqctl -n rabbit@localhost` finds it. The data dir is
    # ours and survives a restart (users, vhosts, durable exchanges); lymph's queues are not
    # durable, so a restart empties them, as on any RabbitMQ.
    # HOME is the rabbitmq user's, so the server and `rabbitmqctl` (which runs as that user)
    # share one Erlang cookie.
    setsid env HOME=/var/lib/rabbitmq RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT=$AMQP_PORT \
        RABBITMQ_NODENAME=rabbit@localhost RABBITMQ_MNESIA_BASE="$dir/mnesia" \
        RABBITMQ_LOG_BASE="$dir/log" RABBITMQ_PID_FILE="$dir/rabbit.pid" \
        RABBITMQ_DIST_PORT=25672 ERL_EPMD_ADDRESS=127.0.0.1 \
        /usr/lib/rabbitmq/bin/rabbitmq-server >"$HOME_DIR/rabbitmq.log" 2>&1 </dev/null &
    echo $! >"$HOME_DIR/rabbitmq.pid"
    wait_port rabbitmq $AMQP_PORT 120
    log "rabbitmq: up on 127.0.0.1:$AMQP_PORT (pid $(cat "$HOME_DIR/rabbitmq.pid"))"
}

stop_one() { # NAME [strict]
    local pidfile="$HOME_DIR/$1.pid"
    if [[ ! -f "$pidfile" ]]; then
        log "$1: not started by this script, left alone"
        # `stop` and `restart` promise a stopped server; they cannot keep it for one they did not start.
        [[ "${2:-}" == strict ]] && return 1
        return 0
    fi
    local pid
    pid="$(cat "$pidfile")"
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
    if [[ $1 == rabbitmq ]]; then
        # Erlang leaves epmd behind; it holds no state, stop it too so the port is free.
        pkill -x epmd 2>/dev/null || true
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

case "${1:-}" in
install) install ;;
up) install; start_zookeeper; start_rabbitmq ;;
down) stop_one rabbitmq; stop_one zookeeper ;;
start) start_one "${2:?start NAME}" ;;
stop) stop_one "${2:?stop NAME}" strict ;;
restart) stop_one "${2:?restart NAME}" strict; start_one "$2" ;;
status)
    for p in $ZK_PORT $AMQP_PORT; do
        if listening $p; then echo "127.0.0.1:$p listening"; else echo "127.0.0.1:$p closed"; fi
    done ;;
*) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
