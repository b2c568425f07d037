#!/bin/bash
# Start, stop or restart the lab host's own Docker engine (the host's "dockerd.service"). Lab test material only.
#
# dockerd registers its NVIDIA GPU driver at start when nvidia-container-runtime-hook is on its PATH, so adding or
# removing the (stand-in) container toolkit takes effect on the next restart, as on a real host.
set -euo pipefail

PIDFILE=/run/docker.pid
LOG=/var/log/dockerd.log
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

running() {
    [[ -s $PIDFILE ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null
}

wait_for() {
    local what=$1 seconds=$2
    local deadline=$((SECONDS + seconds))
    until eval "$what"; do
        if ((SECONDS >= deadline)); then
            return 1
        fi
        sleep 0.2
    done
}

start() {
    if running; then
        return 0
    fi
    # Left over from a previous boot or a killed engine.
    rm -f "$PIDFILE" /run/docker/containerd/containerd.pid /run/containerd/containerd.pid
    # The inner engine's cgroups sit under their own parent, apart from the outer engine's.
    setsid dockerd --cgroup-parent "/datacrunch-sglang-lab/$(hostname)" >>"$LOG" 2>&1 </dev/null &
    if ! wait_for "docker info >/dev/null 2>&1" 60; then
        echo "lab-dockerd: dockerd did not answer within 60 s; last lines of $LOG:" >&2
        tail -n 20 "$LOG" >&2
        return 1
    fi
}

stop() {
    if ! running; then
        return 0
    fi
    kill -TERM "$(cat "$PIDFILE")"
    if ! wait_for "! running" 30; then
        kill -KILL "$(cat "$PIDFILE")" 2>/dev/null || true
    fi
    rm -f "$PIDFILE"
}

case ${1:-} in
    start) start ;;
    stop) stop ;;
    restart) stop && start ;;
    status)
        if running; then
            echo running
        else
            echo stopped
            exit 3
        fi
        ;;
    *)
        echo "usage: lab-dockerd start|stop|restart|status" >&2
        exit 2
        ;;
esac
