# shellcheck shell=bash
# Serve one directory over HTTP with python3 -m http.server, idempotently, on 127.0.0.1:$PORT (for this machine) and
# on the addresses given (the lab networks' gateways, as the lab hosts reach this machine), never on every interface:
# the part the lab's static services (wheel-index.sh, nvidia-apt-repo.sh) share. Lab test material, sourced, not run.
#
# One server process per address. The caller sets SERVICE (its name in messages), PORT, PORT_SETTING (the variable
# that moves the port), PIDFILE (its stem: the server on ADDR writes PIDFILE with .pid replaced by @ADDR.pid),
# LOGFILE and PROBE_PATH (a path the server answers with 200 once it serves), and defines url().

die() {
    echo "$SERVICE: error: $*" >&2
    exit 1
}

pidfile_of() {
    echo "${PIDFILE%.pid}@$1.pid"
}

alive_pid() {
    [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

serve_answers() {
    curl -fsS -o /dev/null --max-time 3 "http://${1:-127.0.0.1}:$PORT$PROBE_PATH"
}

# The addresses this service listens on, one a line.
serve_addresses() {
    local file address
    for file in "${PIDFILE%.pid}"@*.pid; do
        [[ -e $file ]] || continue
        address=${file##*@}
        address=${address%.pid}
        if alive_pid "$file"; then
            echo "$address"
        fi
    done
}

serve_running() {
    alive_pid "$(pidfile_of 127.0.0.1)"
}

# serve_start DIR [ADDR...]: serve DIR on 127.0.0.1 and on each ADDR, where this service does not already.
serve_start() {
    local dir=$1 address
    shift
    # A server of an older lab.sh listened on every interface under PIDFILE itself: it gives way.
    if alive_pid "$PIDFILE"; then
        kill "$(cat "$PIDFILE")"
        sleep 0.2
    fi
    rm -f "$PIDFILE"
    for address in 127.0.0.1 "$@"; do
        serve_on "$dir" "$address"
    done
}

serve_on() {
    local dir=$1 address=$2 pidfile _
    pidfile=$(pidfile_of "$address")
    if alive_pid "$pidfile" && serve_answers "$address" 2>/dev/null; then
        return 0
    fi
    serve_stop "$address"
    if curl -sS -o /dev/null --max-time 3 "http://$address:$PORT/" 2>/dev/null; then
        die "$address:$PORT already answers but is not the $SERVICE: stop that server or set $PORT_SETTING"
    fi
    # No inherited descriptors: a lock file left open in the server would block every later caller.
    setsid python3 -m http.server "$PORT" --bind "$address" --directory "$dir" >>"$LOGFILE" 2>&1 </dev/null 8>&- 9>&- &
    echo $! >"$pidfile"
    for _ in $(seq 50); do
        if serve_answers "$address" 2>/dev/null; then
            echo "$SERVICE: serving $dir at $(url --host "$address")" >&2
            return 0
        fi
        sleep 0.1
    done
    tail -n 5 "$LOGFILE" >&2
    die "the $SERVICE did not answer on $address:$PORT"
}

# serve_status [DETAIL_FUNCTION]: one line, whether the service runs, where (and what the function says it serves);
# 1 when it does not.
serve_status() {
    if serve_running && serve_answers; then
        echo "$SERVICE: running at $(url) on $(serve_addresses | paste -sd' ' -) only${1:+, $("$1")}"
    else
        echo "$SERVICE: not running"
        return 1
    fi
}

# serve_stop [ADDR...]: stop the servers on those addresses; on every address when none is given.
serve_stop() {
    local address pidfile addresses
    if (($# == 0)); then
        mapfile -t addresses < <(serve_addresses)
        set -- "${addresses[@]}"
    fi
    for address in "$@"; do
        pidfile=$(pidfile_of "$address")
        if alive_pid "$pidfile"; then
            kill "$(cat "$pidfile")"
        fi
        rm -f "$pidfile"
    done
}

# serve_url_host [--host ADDR]: the address in the service's URL (127.0.0.1 unless given).
serve_url_host() {
    if [[ ${1:-} == --host && -n ${2:-} ]]; then
        echo "$2"
    else
        echo 127.0.0.1
    fi
}
