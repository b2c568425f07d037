#!/usr/bin/env bash
# A real container registry for the lab: Debian's docker-registry (the CNCF distribution registry) serving the SGLang
# stand-in images, so that the lab's hosts pull their image as real hosts pull lmsysorg/sglang. Lab test material,
# shared by all labs on this machine.
#
# It answers over HTTPS (a lab CA, made here once) and asks for a password (htpasswd, bcrypt), as a private registry
# does. Hosts reach it as $REGISTRY_NAME:$PORT (lab.sh maps the name to the lab network's gateway in each host,
# puts the CA under /etc/docker/certs.d/ and logs the host in); this machine pushes to it over 127.0.0.1.
#
#   registry.sh start                  serve on 0.0.0.0:$LAB_REGISTRY_PORT and push the stand-in images (idempotent)
#   registry.sh stop | status
#   registry.sh name                   NAME:PORT, the registry part of the image references hosts pull
#   registry.sh ca                     the path of the lab CA's certificate
#   registry.sh auth [PASSWORD]        the "auth" value of a Docker config.json entry (the lab's password by default)
#   registry.sh log                    the path of its log (one "response completed" line per request, with times)
#
# Environment: LAB_REGISTRY_PORT (18093), LAB_REGISTRY_DIR (tests/lab/.state/registry-$PORT).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LAB_DIR=$(cd "$HERE/.." && pwd)
STATE_DIR=$LAB_DIR/.state
PORT=${LAB_REGISTRY_PORT:-18093}
ROOT=${LAB_REGISTRY_DIR:-$STATE_DIR/registry-$PORT}
PIDFILE=$ROOT/registry.pid
LOGFILE=$ROOT/registry.log
REGISTRY_NAME=lab-registry.test
# Guards nothing but the lab's stand-in images.
REGISTRY_USER=lab
REGISTRY_PASSWORD=lab-registry-password
STANDIN_REPOSITORY=localhost/sglang-standin
STANDIN_TAGS=(v0.5.18 v0.5.23)

die() {
    echo "registry: error: $*" >&2
    exit 1
}

running() {
    [[ -s $PIDFILE ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null
}

# 401 without credentials: the registry serves and asks for them.
answers() {
    [[ $(curl -sS -o /dev/null -w '%{http_code}' --max-time 3 --cacert "$ROOT/ca.crt" \
        --resolve "$REGISTRY_NAME:$PORT:127.0.0.1" "https://$REGISTRY_NAME:$PORT/v2/" 2>/dev/null) == 401 ]]
}

make_tls() {
    [[ -s $ROOT/server.crt && -s $ROOT/ca.crt ]] && return 0
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=datacrunch-sglang lab registry CA" \
        -keyout "$ROOT/ca.key" -out "$ROOT/ca.crt" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=$REGISTRY_NAME" -keyout "$ROOT/server.key" \
        -out "$ROOT/server.csr" 2>/dev/null
    printf 'subjectAltName=DNS:%s,IP:127.0.0.1\n' "$REGISTRY_NAME" >"$ROOT/server.ext"
    openssl x509 -req -in "$ROOT/server.csr" -CA "$ROOT/ca.crt" -CAkey "$ROOT/ca.key" -CAcreateserial -days 3650 \
        -extfile "$ROOT/server.ext" -out "$ROOT/server.crt" 2>/dev/null
    chmod 0600 "$ROOT/ca.key" "$ROOT/server.key"
}

write_config() {
    # The registry accepts bcrypt only; Python's crypt (libxcrypt) makes it without another package.
    [[ -s $ROOT/htpasswd ]] || printf '%s:%s\n' "$REGISTRY_USER" "$(python3 -W ignore -c \
        'import crypt, sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH)))' \
        "$REGISTRY_PASSWORD")" >"$ROOT/htpasswd"
    cat >"$ROOT/config.yml" <<EOF
version: 0.1
log:
  level: info
  formatter: text
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $ROOT/data
http:
  addr: 0.0.0.0:$PORT
  tls:
    certificate: $ROOT/server.crt
    key: $ROOT/server.key
auth:
  htpasswd:
    realm: datacrunch-sglang-lab
    path: $ROOT/htpasswd
EOF
}

# This machine's engine trusts 127.0.0.1 registries without a CA; its own config directory keeps the login apart
# from the user's ~/.docker.
push_standins() {
    local tag image target stamp=""
    for tag in "${STANDIN_TAGS[@]}"; do
        stamp+="$tag $(docker image inspect -f '{{.Id}}' "$STANDIN_REPOSITORY:$tag" 2>/dev/null || echo missing)"$'\n'
    done
    if [[ -f $ROOT/pushed && $(cat "$ROOT/pushed") == "$stamp" ]]; then
        return 0
    fi
    export DOCKER_CONFIG=$ROOT/docker-config
    mkdir -p "$DOCKER_CONFIG"
    printf '%s' "$REGISTRY_PASSWORD" |
        docker login --username "$REGISTRY_USER" --password-stdin "127.0.0.1:$PORT" >/dev/null 2>&1 ||
        die "docker login 127.0.0.1:$PORT failed: see $LOGFILE"
    for tag in "${STANDIN_TAGS[@]}"; do
        image=$STANDIN_REPOSITORY:$tag
        if ! docker image inspect "$image" >/dev/null 2>&1; then
            echo "registry: $image does not exist yet (tests/lab/sglang-standin/build.sh): not pushed" >&2
            continue
        fi
        target=127.0.0.1:$PORT/sglang-standin:$tag
        docker tag "$image" "$target"
        docker push --quiet "$target" >/dev/null || die "docker push $target failed: see $LOGFILE"
        docker rmi "$target" >/dev/null
    done
    echo "$stamp" >"$ROOT/pushed"
    echo "registry: pushed ${STANDIN_TAGS[*]} of $STANDIN_REPOSITORY as $REGISTRY_NAME:$PORT/sglang-standin" >&2
}

start() {
    command -v docker-registry >/dev/null || die "docker-registry is missing: apt-get install docker-registry"
    mkdir -p "$ROOT/data"
    make_tls
    write_config
    if ! (running && answers); then
        stop
        if curl -sk -o /dev/null --max-time 3 "https://127.0.0.1:$PORT/" 2>/dev/null; then
            die "port $PORT already answers but is not the lab registry: stop that server or set LAB_REGISTRY_PORT"
        fi
        setsid docker-registry serve "$ROOT/config.yml" >>"$LOGFILE" 2>&1 </dev/null &
        echo $! >"$PIDFILE"
        local waited=0
        until answers; do
            ((waited++ < 50)) || die "the registry did not answer on port $PORT within 10 s: see $LOGFILE"
            sleep 0.2
        done
    fi
    push_standins
}

stop() {
    if running; then
        kill "$(cat "$PIDFILE")" 2>/dev/null || true
    fi
    rm -f "$PIDFILE"
}

status() {
    if running && answers; then
        echo "registry: serving https://$REGISTRY_NAME:$PORT (pid $(cat "$PIDFILE"))"
    else
        echo "registry: not running (port $PORT)"
        return 1
    fi
}

auth() {
    printf '%s:%s' "$REGISTRY_USER" "${1:-$REGISTRY_PASSWORD}" | base64 -w0
    echo
}

case ${1:-} in
    start) start ;;
    stop) stop ;;
    status) status ;;
    name) echo "$REGISTRY_NAME:$PORT" ;;
    ca) echo "$ROOT/ca.crt" ;;
    auth) auth "${2:-}" ;;
    log) echo "$LOGFILE" ;;
    *) die "unknown command '${1:-}': use start, stop, status, name, ca, auth [PASSWORD] or log" ;;
esac
exit $?
