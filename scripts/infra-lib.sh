# Shared by scripts/infra.sh and scripts/infra-other-way.sh (sourced, not run): the ZooKeeper
# configuration, loopback-only settings for Erlang, and waiting for the servers' ports on
# 127.0.0.1. The sourcing script
# defines log() first; wait_port shows the last lines of $LOG_DIR/<name>.log when it gives up and
# LOG_DIR is set.

# Loopback only, also for what Erlang starts on the side: epmd (which the server, and
# `rabbitmqctl` when none runs, start) and the Erlang distribution of the server and of the CLI.
export ERL_EPMD_ADDRESS=127.0.0.1
LOOPBACK_DIST='-kernel inet_dist_use_interface {127,0,0,1}'
export RABBITMQ_CTL_ERL_ARGS="$LOOPBACK_DIST"

listening() { # PORT
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

wait_port() { # NAME PORT SECONDS
    local deadline=$((SECONDS + $3))
    until listening "$2"; do
        if ((SECONDS >= deadline)); then
            log "$1 did not listen on 127.0.0.1:$2 within $3 s"
            if [[ -n "${LOG_DIR:-}" && -f "$LOG_DIR/$1.log" ]]; then
                log "last lines of $LOG_DIR/$1.log:"
                tail -n 30 "$LOG_DIR/$1.log" >&2 || true
            fi
            return 1
        fi
        sleep 0.2
    done
}

wait_closed() { # NAME PORT SECONDS
    local deadline=$((SECONDS + $3))
    while listening "$2"; do
        if ((SECONDS >= deadline)); then
            log "$1 still listens on 127.0.0.1:$2 after $3 s"
            return 1
        fi
        sleep 0.2
    done
}

write_zoo_cfg() { # FILE DATA_DIR: a standalone ZooKeeper on 127.0.0.1:2181, no admin server
    cat >"$1" <<CFG
tickTime=2000
initLimit=10
syncLimit=5
dataDir=$2
clientPort=2181
clientPortAddress=127.0.0.1
maxSessionTimeout=60000
admin.enableServer=false
4lw.commands.whitelist=ruok,stat,srvr,mntr
CFG
}
