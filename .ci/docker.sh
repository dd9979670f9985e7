#!/usr/bin/env bash
# A real Docker engine and a local Python base image for the container tests.
#
#   bash .ci/docker.sh          install docker.io + debootstrap if missing, start dockerd if no
#                               engine answers, build the base image if its tag is missing
#   bash .ci/docker.sh stop     stop the dockerd that `start` launched (by its recorded PID)
#
# Idempotent: every step checks first. No registry is reachable from these machines, so the base
# image is made with debootstrap (Debian bookworm, python3 3.11 + venv + pip) and `docker import`.
# State (dockerd PID and log, the temporary rootfs) lives under $NB2PROD_DOCKER_STATE (default
# /tmp/nb2prod-docker); nothing is kept outside it apart from the engine's own data.
set -euo pipefail

STATE_DIR=${NB2PROD_DOCKER_STATE:-/tmp/nb2prod-docker}
BASE_IMAGE=${NB2PROD_BASE_IMAGE:-nb2prod-base/python:3.11}
SUITE=bookworm
PID_FILE="$STATE_DIR/dockerd.pid"
LOG_FILE="$STATE_DIR/dockerd.log"

log() { printf 'docker.sh: %s\n' "$*" >&2; }

engine_answers() { docker info >/dev/null 2>&1; }

stop_engine() {
    if [[ ! -f "$PID_FILE" ]]; then
        log "no dockerd started by this script; nothing to stop"
        return 0
    fi
    local pid
    pid=$(cat "$PID_FILE")
    if kill -0 "$pid" 2>/dev/null; then
        log "stopping dockerd (pid $pid)"
        kill -TERM "$pid"
        for _ in $(seq 1 60); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.5
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "dockerd (pid $pid) did not stop in 30 s; sending KILL"
            kill -KILL "$pid" || true
        fi
    fi
    rm -f "$PID_FILE"
}

install_packages() {
    local missing=()
    command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
    command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
    if ((${#missing[@]} == 0)); then
        return 0
    fi
    log "installing ${missing[*]}"
    # Another apt run (a parallel setup step) may hold the lock: wait for it instead of failing.
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
        --no-install-recommends "${missing[@]}" >/dev/null
}

start_engine() {
    if engine_answers; then
        log "a Docker engine already answers"
        return 0
    fi
    mkdir -p "$STATE_DIR"
    log "starting dockerd (log: $LOG_FILE)"
    # setsid: dockerd must outlive this script; its PID is kept so `stop` ends exactly this one.
    setsid dockerd >"$LOG_FILE" 2>&1 </dev/null &
    echo $! >"$PID_FILE"
    for _ in $(seq 1 120); do
        if engine_answers; then
            log "engine up: $(docker version --format 'server {{.Server.Version}}, API {{.Server.APIVersion}}')"
            return 0
        fi
        if ! kill -0 "$(cat "$PID_FILE")" 2>/dev/null; then
            log "dockerd exited; last lines of its log:"
            tail -n 20 "$LOG_FILE" >&2 || true
            rm -f "$PID_FILE"
            return 1
        fi
        sleep 0.5
    done
    log "dockerd did not answer within 60 s; see $LOG_FILE"
    return 1
}

debian_mirror() {
    # The first URIs line of the host's apt sources, which is reachable from this machine.
    local uri=""
    if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
        uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
    fi
    if [[ -z "$uri" && -f /etc/apt/sources.list ]]; then
        uri=$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list)
    fi
    echo "${uri:-http://deb.debian.org/debian}"
}

build_base_image() {
    if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
        log "base image $BASE_IMAGE present"
        return 0
    fi
    local rootfs="$STATE_DIR/rootfs" mirror
    mirror=$(debian_mirror)
    rm -rf "$rootfs"
    mkdir -p "$STATE_DIR"
    log "debootstrap $SUITE from $mirror into $rootfs (about a minute)"
    debootstrap --variant=minbase \
        --include=python3,python3-venv,python3-pip,ca-certificates \
        "$SUITE" "$rootfs" "$mirror" >"$STATE_DIR/debootstrap.log" 2>&1 || {
        log "debootstrap failed; last lines of $STATE_DIR/debootstrap.log:"
        tail -n 20 "$STATE_DIR/debootstrap.log" >&2
        return 1
    }
    # Builds reach the network through a TLS-intercepting proxy: trust what the host trusts.
    cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    log "importing $rootfs as $BASE_IMAGE"
    tar -C "$rootfs" -c . | docker import \
        --change 'ENV LANG=C.UTF-8' \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["python3"]' \
        - "$BASE_IMAGE" >/dev/null
    rm -rf "$rootfs"
    log "base image $BASE_IMAGE: $(docker image inspect --format '{{.Size}}' "$BASE_IMAGE") bytes"
}

case "${1:-start}" in
start)
    install_packages
    start_engine
    build_base_image
    ;;
stop)
    stop_engine
    ;;
*)
    log "usage: $0 [start|stop]"
    exit 2
    ;;
esac
