#!/usr/bin/env bash
# The lab: simulated DataCrunch 8x H200 hosts on this machine's Docker engine.
#
# It is a test device. The GPUs are stand-ins that replay output captured on a real H200 host; nothing the lab
# shows about GPUs is a measurement. See CONTRIBUTING.md, "The lab".
#
#   lab.sh build                  build the lab images (only what changed)
#   lab.sh up N                   N hosts $LAB_NAME-1..N, inventory, lab services (idempotent)
#   lab.sh down                   remove the hosts, volumes, network and inventory of $LAB_NAME
#   lab.sh status                 hosts, addresses and services
#   lab.sh fault HOST NAME [ARG]  break a host the way real hosts break (lab.sh faults lists them)
#   lab.sh heal HOST              restore a healthy host
#   lab.sh ssh HOST [CMD...]      SSH into a host with the lab key
#   lab.sh services start|stop|status
#
# Environment: LAB_NAME (default dcsg-lab), LAB_INVENTORY_DIR (default inventories/lab), LAB_SHARED_DIR (absolute
# path: one shared volume mounted there in every host), LAB_WHEEL_PORT (default 18091).
set -euo pipefail

LAB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$LAB_DIR/../.." && pwd)
STATE_DIR=$LAB_DIR/.state

LAB_NAME=${LAB_NAME:-dcsg-lab}
LAB_INVENTORY_DIR=${LAB_INVENTORY_DIR:-$REPO_ROOT/inventories/lab}
LAB_SHARED_DIR=${LAB_SHARED_DIR:-}
LAB_WHEEL_PORT=${LAB_WHEEL_PORT:-18091}
LAB_HUB_DEFAULT_PORT=18090

BASE_IMAGE=datacrunch-sglang-lab/debian:bookworm
HOST_IMAGE=datacrunch-sglang-lab/host:bookworm
STANDIN_IMAGES=(localhost/sglang-standin:v0.5.18 localhost/sglang-standin:v0.5.23)
STANDIN_BUILD=$LAB_DIR/sglang-standin/build.sh
HUB_SCRIPT=$LAB_DIR/hub/hub.sh
DEBIAN_MIRROR=${LAB_DEBIAN_MIRROR:-http://deb.debian.org/debian}

# Labels on what the lab creates in the outer engine.
LABEL_INPUTS=datacrunch-sglang-lab.inputs-hash
LABEL_LAB=datacrunch-sglang-lab.lab

log() { printf 'lab: %s\n' "$*" >&2; }
warn() { printf 'lab: warning: %s\n' "$*" >&2; }
die() {
    printf 'lab: error: %s\n' "$*" >&2
    exit 1
}

# ---------------------------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------------------------

# sha256 of files, directories (every file below, in name order) and strings given as "text:..." arguments.
inputs_hash() {
    local arg
    for arg in "$@"; do
        case $arg in
            text:*) printf '%s\n' "${arg#text:}" ;;
            *)
                if [[ -d $arg ]]; then
                    (cd "$arg" && find . -type f ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 | LC_ALL=C sort -z |
                        xargs -0 -r sha256sum)
                else
                    sha256sum <"$arg"
                fi
                ;;
        esac
    done | sha256sum | cut -c1-16
}

image_inputs_label() {
    docker image inspect -f "{{ index .Config.Labels \"$LABEL_INPUTS\" }}" "$1" 2>/dev/null || true
}

image_id() {
    docker image inspect -f '{{.Id}}' "$1" 2>/dev/null || true
}

base_image_inputs() {
    inputs_hash "$LAB_DIR/images/debian" "text:$(declare -f build_base_image)"
}

# debootstrap minbase plus the listed packages, imported as one layer.
build_base_image() {
    local hash=$1 rootfs packages
    command -v debootstrap >/dev/null || die "debootstrap is missing: apt-get install -y debootstrap"
    packages=$(grep -v '^#' "$LAB_DIR/images/debian/packages.txt" | grep -v '^$' | paste -sd, -)
    rootfs=$(mktemp -d /var/tmp/datacrunch-sglang-lab-rootfs.XXXXXX)
    # shellcheck disable=SC2064  # expand now: the path is local
    trap "rm -rf '$rootfs'" RETURN
    log "debootstrap bookworm ($packages) into $rootfs"
    debootstrap --variant=minbase --include="$packages" bookworm "$rootfs" "$DEBIAN_MIRROR" >"$STATE_DIR/debootstrap.log" 2>&1 ||
        die "debootstrap failed: see $STATE_DIR/debootstrap.log"
    install -m 0644 "$LAB_DIR/images/debian/sources.list" "$rootfs/etc/apt/sources.list"
    install -m 0644 "$LAB_DIR/images/debian/dpkg-nodoc" "$rootfs/etc/dpkg/dpkg.cfg.d/90-lab-nodoc"
    printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' >"$rootfs/etc/apt/apt.conf.d/90-lab-norecommends"
    find "$rootfs/usr/share/doc" -mindepth 1 ! -name copyright ! -type d -delete
    find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/var/cache/apt/*.bin \
        "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*.log
    find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
    : >"$rootfs/etc/machine-id"
    tar --numeric-owner -C "$rootfs" -c . |
        docker import \
            --change "LABEL $LABEL_INPUTS=$hash" \
            --change 'ENV LANG=C.UTF-8' \
            --change 'CMD ["/bin/bash"]' \
            - "$BASE_IMAGE" >/dev/null
}

ensure_base_image() {
    local hash
    hash=$(base_image_inputs)
    if [[ $(image_inputs_label "$BASE_IMAGE") == "$hash" ]]; then
        log "$BASE_IMAGE is up to date ($hash)"
        return
    fi
    log "building $BASE_IMAGE ($hash)"
    build_base_image "$hash"
}

cmd_build() {
    mkdir -p "$STATE_DIR"
    ensure_base_image
}

# ---------------------------------------------------------------------------------------------------------------

main() {
    local cmd=${1:-}
    [[ $# -gt 0 ]] && shift
    case $cmd in
        build) cmd_build "$@" ;;
        *) die "unknown command '${cmd}': use build, up N, down, status, fault, heal, ssh or services" ;;
    esac
}

main "$@"
