#!/usr/bin/env bash
# The lab's wheel index: the wheels of the hosts' module virtualenv (roles/host_venv/files/requirements.txt), for
# the lab hosts' Python (Debian bookworm: CPython 3.11, manylinux x86_64), served as a plain directory listing so
# that `pip install --no-index --find-links http://<gateway>:18091/ ...` works on hosts without internet.
# Lab test material, shared by all labs on this machine.
#
#   wheel-index.sh sync                 download what the requirements need (only when they changed)
#   wheel-index.sh start [ADDR...]      sync, then serve on 127.0.0.1:$WHEEL_INDEX_PORT and ADDR:$WHEEL_INDEX_PORT
#                                       (the lab networks' gateways; idempotent), not on every interface
#   wheel-index.sh stop [ADDR...]       stop serving on ADDR (on every address when none is given)
#   wheel-index.sh status
#   wheel-index.sh url [--host ADDR]    the index URL (for hosts: --host <lab network gateway>)
#
# Environment: WHEEL_INDEX_PORT (18091), WHEEL_INDEX_DIR (tests/lab/.state/wheels), WHEEL_INDEX_PIP (pip of this
# checkout's virtualenv, else python3 -m pip).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$HERE/../../.." && pwd)
STATE_DIR=$REPO_ROOT/tests/lab/.state
PORT=${WHEEL_INDEX_PORT:-18091}
WHEELS=${WHEEL_INDEX_DIR:-$STATE_DIR/wheels}
PIDFILE=$STATE_DIR/wheel-index-$PORT.pid
LOGFILE=$STATE_DIR/wheel-index-$PORT.log
SERVICE=wheel-index PORT_SETTING=WHEEL_INDEX_PORT PROBE_PATH=/
# shellcheck source=tests/lab/services/directory-server.sh
source "$HERE/directory-server.sh"
REQUIREMENTS=$REPO_ROOT/roles/host_venv/files/requirements.txt
# Until the host_venv role ships its requirements, the modules' known needs.
FALLBACK_REQUIREMENTS=$'docker==7.2.0\nhuggingface_hub==2.4.0\nrequests'
# pip itself and the build tools, so that a host can also upgrade the virtualenv's pip offline.
BOOTSTRAP="pip setuptools wheel"
TARGET=(--only-binary=:all: --implementation cp --python-version 3.11 --abi cp311 --abi abi3 --abi none
    --platform manylinux_2_36_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64
    --platform manylinux2014_x86_64 --platform any)

pip_cmd() {
    if [[ -n ${WHEEL_INDEX_PIP:-} ]]; then
        # shellcheck disable=SC2086  # a command line on purpose
        $WHEEL_INDEX_PIP "$@"
    elif [[ -x $REPO_ROOT/.venv/bin/python ]]; then
        "$REPO_ROOT/.venv/bin/python" -m pip "$@"
    else
        python3 -m pip "$@"
    fi
}

requirements_text() {
    if [[ -f $REQUIREMENTS ]]; then
        cat "$REQUIREMENTS"
    else
        printf '%s\n' "$FALLBACK_REQUIREMENTS"
    fi
}

sync() {
    mkdir -p "$STATE_DIR"
    local stamp
    stamp=$({
        requirements_text
        echo "$BOOTSTRAP ${TARGET[*]}"
    } | sha256sum | cut -c1-16)
    if [[ -f $WHEELS/.inputs && $(cat "$WHEELS/.inputs") == "$stamp" ]]; then
        return 0
    fi
    (
        flock 8
        download "$stamp" 8>&-
    ) 8>"$STATE_DIR/wheel-index.lock"
}

download() {
    local stamp=$1 fresh
    if [[ -f $WHEELS/.inputs && $(cat "$WHEELS/.inputs") == "$stamp" ]]; then
        return 0
    fi
    echo "wheel-index: downloading wheels for CPython 3.11 manylinux x86_64 into $WHEELS" >&2
    fresh=$(mktemp -d "$STATE_DIR/wheels.XXXXXX")
    requirements_text >"$fresh/.requirements.txt"
    # shellcheck disable=SC2086  # BOOTSTRAP is a list of names
    if ! pip_cmd download --quiet --disable-pip-version-check "${TARGET[@]}" --dest "$fresh" \
        -r "$fresh/.requirements.txt" $BOOTSTRAP >"$STATE_DIR/wheel-index-download.log" 2>&1; then
        rm -rf "$fresh"
        tail -n 5 "$STATE_DIR/wheel-index-download.log" >&2
        die "pip download failed (see $STATE_DIR/wheel-index-download.log): is PyPI reachable?"
    fi
    echo "$stamp" >"$fresh/.inputs"
    chmod 0755 "$fresh"
    rm -rf "$WHEELS.old"
    if [[ -d $WHEELS ]]; then
        mv "$WHEELS" "$WHEELS.old"
    fi
    mv "$fresh" "$WHEELS"
    rm -rf "$WHEELS.old"
}

start() {
    sync
    # The index serves the directory, wherever it moves to on a later sync.
    serve_start "$WHEELS" "$@"
}

# What the service serves, for its status line (called by serve_status).
# shellcheck disable=SC2317
served() {
    echo "$(find "$WHEELS" -name '*.whl' | wc -l) wheels"
}

url() {
    echo "http://$(serve_url_host "$@"):$PORT/"
}

case ${1:-} in
    sync) sync ;;
    start)
        shift
        start "$@"
        ;;
    stop)
        shift
        serve_stop "$@"
        ;;
    status) serve_status served ;;
    url)
        shift
        url "$@"
        ;;
    *) die "unknown command '${1:-}': use sync, start, stop, status or url [--host ADDR]" ;;
esac
exit $?
