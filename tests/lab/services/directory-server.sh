# shellcheck shell=bash
# Serve one directory over HTTP on 0.0.0.0:$PORT with python3 -m http.server, idempotently: the part the lab's
# static services (wheel-index.sh, nvidia-apt-repo.sh) share. Lab test material, sourced, not run.
#
# The caller sets SERVICE (its name in messages), PORT, PORT_SETTING (the variable that moves the port), PIDFILE,
# LOGFILE and PROBE_PATH (a path the server answers with 200 once it serves), and defines url().

die() {
    echo "$SERVICE: error: $*" >&2
    exit 1
}

serve_running() {
    [[ -s $PIDFILE ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null
}

serve_answers() {
    curl -fsS -o /dev/null --max-time 3 "http://127.0.0.1:$PORT$PROBE_PATH"
}

# serve_start DIR: serve DIR unless this service already does.
serve_start() {
    local dir=$1 _
    if serve_running && serve_answers; then
        return 0
    fi
    serve_stop
    if curl -sS -o /dev/null --max-time 3 "http://127.0.0.1:$PORT/" 2>/dev/null; then
        die "port $PORT already answers but is not the $SERVICE: stop that server or set $PORT_SETTING"
    fi
    # No inherited descriptors: a lock file left open in the server would block every later caller.
    setsid python3 -m http.server "$PORT" --bind 0.0.0.0 --directory "$dir" >>"$LOGFILE" 2>&1 </dev/null 8>&- 9>&- &
    echo $! >"$PIDFILE"
    for _ in $(seq 50); do
        if serve_answers 2>/dev/null; then
            echo "$SERVICE: serving $dir at $(url)" >&2
            return 0
        fi
        sleep 0.1
    done
    tail -n 5 "$LOGFILE" >&2
    die "the $SERVICE did not answer on port $PORT"
}

# serve_status [DETAIL_FUNCTION]: one line, whether the service runs (and what the function says it serves); 1 when
# it does not.
serve_status() {
    if serve_running && serve_answers; then
        echo "$SERVICE: running (pid $(cat "$PIDFILE")) at $(url)${1:+, $("$1")}"
    else
        echo "$SERVICE: not running"
        return 1
    fi
}

serve_stop() {
    if serve_running; then
        kill "$(cat "$PIDFILE")"
    fi
    rm -f "$PIDFILE"
}

# serve_url_host [--host ADDR]: the address in the service's URL (127.0.0.1 unless given).
serve_url_host() {
    if [[ ${1:-} == --host && -n ${2:-} ]]; then
        echo "$2"
    else
        echo 127.0.0.1
    fi
}
