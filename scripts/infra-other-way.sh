#!/usr/bin/env bash
# Starts ZooKeeper and RabbitMQ the way people run them without this repository's scripts, so
# that CI can show that the real-infra suite, its restart tests above all, does not depend on
# `scripts/infra.sh up` having started them:
#
#   RabbitMQ as a distribution's service runs it: `rabbitmq-server -detached` as the rabbitmq
#   user (its HOME, its Erlang cookie), the default node name (rabbit@<short hostname>), the
#   package's data and log directories. Loopback only: AMQP on 127.0.0.1:5672, epmd and the
#   Erlang distribution on 127.0.0.1.
#   ZooKeeper by hand, with the package's `zkServer.sh start <zoo.cfg>`, on 127.0.0.1:2181 (no
#   admin server); config and data in $LYMPH_INFRA_HOME/other-way (by default
#   /tmp/lymph-infra/other-way).
#
#   scripts/infra-other-way.sh up       start both (as root, packages installed: `scripts/infra.sh install`;
#                                       the ports must be free: `scripts/infra.sh down` first)
#   scripts/infra-other-way.sh env      print what the tests need to restart this ZooKeeper:
#                                       eval "$(scripts/infra-other-way.sh env)"
#   scripts/infra-other-way.sh down     stop what `up` started, nothing else
#   scripts/infra-other-way.sh status   print what listens on the two ports
#
# The tests find the RabbitMQ node themselves and restart it with `rabbitmqctl stop_app` /
# `start_app`; ZooKeeper they restart with LYMPH_TEST_ZOOKEEPER_RESTART, which `env` sets to
# this server's `zkServer.sh restart <zoo.cfg>`.
set -euo pipefail

STATE="${LYMPH_INFRA_HOME:-/tmp/lymph-infra}/other-way"
ZK_DIR="$STATE/zookeeper"
ZK_CFG="$ZK_DIR/zoo.cfg"
ZK_SERVER=/usr/share/zookeeper/bin/zkServer.sh
ZK_PORT=2181
AMQP_PORT=5672
mkdir -p "$STATE"

log() { echo "infra-other-way: $*" >&2; }
# shellcheck source=infra-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/infra-lib.sh"

zk_restart_command() {
    printf 'SERVER_JVMFLAGS=-Xmx256m %q restart %q' "$ZK_SERVER" "$ZK_CFG"
}

up_zookeeper() {
    mkdir -p "$ZK_DIR/data"
    write_zoo_cfg "$ZK_CFG" "$ZK_DIR/data"
    SERVER_JVMFLAGS=-Xmx256m "$ZK_SERVER" start "$ZK_CFG" >&2
    wait_port zookeeper $ZK_PORT 60
    touch "$STATE/zookeeper.started"
    log "zookeeper: up on 127.0.0.1:$ZK_PORT, by hand (pid $(cat "$ZK_DIR/data/zookeeper_server.pid"))"
}

up_rabbitmq() {
    # Debian's rabbitmq-server wrapper, run as root, runs the server as the rabbitmq user with
    # that user's HOME (so its cookie), as the package's service does; `su` keeps these variables.
    # The default node name and directories stay; only the addresses are narrowed to loopback.
    env RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT=$AMQP_PORT \
        RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="$LOOPBACK_DIST" rabbitmq-server -detached
    wait_port rabbitmq $AMQP_PORT 120
    rabbitmqctl -q await_startup
    local node
    node="$(rabbitmqctl -q eval 'node().')"
    echo "$node" >"$STATE/rabbitmq.node"
    log "rabbitmq: up on 127.0.0.1:$AMQP_PORT as a service runs it (node $node, pid $(rabbitmqctl -q eval 'list_to_integer(os:getpid()).'))"
}

down_rabbitmq() {
    [[ -f "$STATE/rabbitmq.node" ]] || { log "rabbitmq: not started by this script, left alone"; return 0; }
    local node
    node="$(cat "$STATE/rabbitmq.node")"
    # `shutdown` stops the node's runtime and waits for its process to exit.
    rabbitmqctl -q -n "$node" shutdown >/dev/null || log "rabbitmq: $node did not answer (already stopped?)"
    rm -f "$STATE/rabbitmq.node"
    # epmd stops only when no node is registered with it any more.
    epmd -kill >/dev/null 2>&1 || true
    wait_closed rabbitmq $AMQP_PORT 30
    log "rabbitmq: stopped ($node)"
}

down_zookeeper() {
    [[ -f "$STATE/zookeeper.started" ]] || { log "zookeeper: not started by this script, left alone"; return 0; }
    local pid=""
    [[ -f "$ZK_DIR/data/zookeeper_server.pid" ]] && pid="$(cat "$ZK_DIR/data/zookeeper_server.pid")"
    "$ZK_SERVER" stop "$ZK_CFG" >&2
    if [[ -n "$pid" ]]; then
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f "$STATE/zookeeper.started"
    wait_closed zookeeper $ZK_PORT 30
    log "zookeeper: stopped"
}

case "${1:-}" in
up)
    for port in $ZK_PORT $AMQP_PORT; do
        if listening $port; then
            log "127.0.0.1:$port is taken; stop what listens there first (\`scripts/infra.sh down\`)"
            exit 1
        fi
    done
    up_zookeeper
    up_rabbitmq
    log "for the tests: eval \"\$(scripts/infra-other-way.sh env)\"" ;;
env) echo "export LYMPH_TEST_ZOOKEEPER_RESTART=$(printf %q "$(zk_restart_command)")" ;;
down) down_rabbitmq; down_zookeeper ;;
status)
    for p in $ZK_PORT $AMQP_PORT; do
        if listening $p; then echo "127.0.0.1:$p listening"; else echo "127.0.0.1:$p closed"; fi
    done ;;
*) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
