#!/usr/bin/env bash
# The lab's TLS proxy image (nginx from Debian's packages), and loading it into lab hosts' own Docker engines.
#
#   tests/lab/tls-proxy/build.sh                build datacrunch-sglang-lab/tls-proxy:bookworm (only when its inputs changed)
#   tests/lab/tls-proxy/build.sh load HOST...   build, then load it into each lab host's engine (only where missing)
#
# Test material for the lab: in production the role sglang_tls runs sglang_tls_image (a released nginx image).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
NAMESPACE=${LAB_IMAGE_NAMESPACE:-datacrunch-sglang-lab}
BASE_IMAGE=$NAMESPACE/debian:bookworm
IMAGE=$NAMESPACE/tls-proxy:bookworm
LABEL=datacrunch-sglang-lab.inputs-hash

die() {
    printf 'tls-proxy: error: %s\n' "$*" >&2
    exit 1
}

image_id() { docker image inspect -f '{{.Id}}' "$1" 2>/dev/null || true; }

build() {
    local base hash
    base=$(image_id "$BASE_IMAGE")
    [[ -n $base ]] || die "$BASE_IMAGE is missing: run tests/lab/lab.sh build first"
    hash=$( { sha256sum <"$HERE/Dockerfile"; echo "$base"; } | sha256sum | cut -c1-16)
    if [[ $(docker image inspect -f "{{ index .Config.Labels \"$LABEL\" }}" "$IMAGE" 2>/dev/null || true) == "$hash" ]]; then
        return
    fi
    printf 'tls-proxy: building %s (%s)\n' "$IMAGE" "$hash" >&2
    docker build --quiet --label "$LABEL=$hash" --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$IMAGE" "$HERE" >/dev/null
}

load() {
    local host want
    want=$(image_id "$IMAGE")
    for host in "$@"; do
        if [[ $(docker exec "$host" docker image inspect -f '{{.Id}}' "$IMAGE" 2>/dev/null || true) != "$want" ]]; then
            printf 'tls-proxy: loading %s into %s\n' "$IMAGE" "$host" >&2
            docker save "$IMAGE" | docker exec -i "$host" docker load --quiet >/dev/null
        fi
    done
}

build
case ${1:-} in
    "") ;;
    load)
        shift
        load "$@"
        ;;
    *) die "usage: build.sh [load HOST...]" ;;
esac
