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
# path: one shared volume mounted there in every host), LAB_LOCAL_DISK_DIR (absolute path: each host's own volume
# mounted there, a stand-in of an Instant Cluster worker's local NVMe at /mnt/local_disk), LAB_WHEEL_PORT (default 18091), LAB_NVIDIA_APT_PORT (default
# 18092: the stand-in of NVIDIA's toolkit apt repository), LAB_REGISTRY_PORT (default 18093: the container registry
# serving the SGLang stand-in images), LAB_IMAGE_NAMESPACE (default datacrunch-sglang-lab: the
# lab images' repository prefix).

# Functions run through with_lock are called indirectly.
# shellcheck disable=SC2317
set -euo pipefail

LAB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$LAB_DIR/../.." && pwd)
STATE_DIR=$LAB_DIR/.state

LAB_NAME=${LAB_NAME:-dcsg-lab}
LAB_INVENTORY_DIR=${LAB_INVENTORY_DIR:-$REPO_ROOT/inventories/lab}
LAB_SHARED_DIR=${LAB_SHARED_DIR:-}
LAB_LOCAL_DISK_DIR=${LAB_LOCAL_DISK_DIR:-}
LAB_WHEEL_PORT=${LAB_WHEEL_PORT:-18091}
LAB_NVIDIA_APT_PORT=${LAB_NVIDIA_APT_PORT:-18092}
LAB_REGISTRY_PORT=${LAB_REGISTRY_PORT:-18093}
LAB_HUB_DEFAULT_PORT=18090

# Another namespace builds the lab images apart from the ones in use (e.g. to try a change to them).
LAB_IMAGE_NAMESPACE=${LAB_IMAGE_NAMESPACE:-datacrunch-sglang-lab}
BASE_IMAGE=$LAB_IMAGE_NAMESPACE/debian:bookworm
HOST_IMAGE=$LAB_IMAGE_NAMESPACE/host:bookworm
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

# sha256 of files, directories (every file below but documentation, in name order) and "text:..." arguments.
inputs_hash() {
    local arg
    for arg in "$@"; do
        case $arg in
            text:*) printf '%s\n' "${arg#text:}" ;;
            *)
                if [[ -d $arg ]]; then
                    (cd "$arg" && find . -type f ! -name '*.pyc' ! -name '*.md' ! -path '*/__pycache__/*' -print0 | LC_ALL=C sort -z |
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

host_image_inputs() {
    inputs_hash "$LAB_DIR/images/host" "$LAB_DIR/host" "text:$(image_id "$BASE_IMAGE")"
}

ensure_host_image() {
    local hash
    hash=$(host_image_inputs)
    if [[ $(image_inputs_label "$HOST_IMAGE") == "$hash" ]]; then
        log "$HOST_IMAGE is up to date ($hash)"
        return
    fi
    log "building $HOST_IMAGE ($hash)"
    docker build --quiet --label "$LABEL_INPUTS=$hash" -t "$HOST_IMAGE" --build-arg "BASE_IMAGE=$BASE_IMAGE" \
        -f "$LAB_DIR/images/host/Dockerfile" "$LAB_DIR/host" >"$STATE_DIR/host-image-build.log" 2>&1 ||
        die "building $HOST_IMAGE failed: see $STATE_DIR/host-image-build.log"
}

# The SGLang stand-in images come from their own build script, which decides itself what to rebuild.
ensure_standin_images() {
    if [[ ! -x $STANDIN_BUILD ]]; then
        warn "$STANDIN_BUILD does not exist yet: skipping the SGLang stand-in images"
        return
    fi
    log "SGLang stand-in images: $STANDIN_BUILD"
    "$STANDIN_BUILD" >"$STATE_DIR/standin-build.log" 2>&1 ||
        die "$STANDIN_BUILD failed: see $STATE_DIR/standin-build.log"
}

cmd_build() {
    mkdir -p "$STATE_DIR"
    with_lock ensure_base_image
    with_lock ensure_host_image
    with_lock ensure_standin_images
}

# Serialise what several labs (or colleagues) could otherwise do at the same time: builds, networks, services.
with_lock() {
    mkdir -p "$STATE_DIR"
    # The command runs without fd 9, so that daemons it starts never inherit (and keep) the lock.
    (
        flock 9
        "$@" 9>&-
    ) 9>"$STATE_DIR/lab.lock"
}

# ---------------------------------------------------------------------------------------------------------------
# Lab network and hosts
# ---------------------------------------------------------------------------------------------------------------

NETWORK=$LAB_NAME
SSH_KEY=$STATE_DIR/ssh/id_ed25519
SSH_OPTIONS=(-i "$SSH_KEY" -o IdentitiesOnly=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
    -o LogLevel=ERROR -o BatchMode=yes -o ConnectTimeout=3)
# What a Docker-in-Docker host needs here without --privileged (see test-machine-facts.md).
HOST_CAPABILITIES=(SYS_ADMIN NET_ADMIN MKNOD SYS_PTRACE NET_RAW DAC_READ_SEARCH IPC_LOCK SYS_CHROOT SETPCAP
    AUDIT_WRITE SYS_NICE NET_BIND_SERVICE)
HOST_SHM_SIZE=16g
FIRST_HOST_OCTET=10

validate_settings() {
    [[ $LAB_NAME =~ ^[a-z0-9][a-z0-9-]{0,40}$ ]] ||
        die "LAB_NAME='$LAB_NAME' must be lower-case letters, digits and '-' (at most 41): e.g. LAB_NAME=dcsg-lab-mine"
    if [[ -n $LAB_SHARED_DIR && $LAB_SHARED_DIR != /* ]]; then
        die "LAB_SHARED_DIR='$LAB_SHARED_DIR' must be an absolute path in the hosts, e.g. LAB_SHARED_DIR=/mnt/shared"
    fi
    if [[ -n $LAB_LOCAL_DISK_DIR && $LAB_LOCAL_DISK_DIR != /* ]]; then
        die "LAB_LOCAL_DISK_DIR='$LAB_LOCAL_DISK_DIR' must be an absolute path in the hosts, e.g." \
            "LAB_LOCAL_DISK_DIR=/mnt/local_disk"
    fi
    [[ $LAB_WHEEL_PORT =~ ^[0-9]+$ ]] || die "LAB_WHEEL_PORT='$LAB_WHEEL_PORT' must be a TCP port number, e.g. 18091"
    [[ $LAB_NVIDIA_APT_PORT =~ ^[0-9]+$ ]] ||
        die "LAB_NVIDIA_APT_PORT='$LAB_NVIDIA_APT_PORT' must be a TCP port number, e.g. 18092"
}

host_name() { echo "$LAB_NAME-$1"; }

network_subnet() {
    docker network inspect -f '{{range .IPAM.Config}}{{.Subnet}}{{end}}' "$NETWORK" 2>/dev/null || true
}

network_gateway() {
    docker network inspect -f '{{range .IPAM.Config}}{{.Gateway}}{{end}}' "$NETWORK"
}

# The first 10.211.X.0/24 that overlaps no Docker network and no route of this machine.
free_subnet() {
    {
        docker network ls -q | xargs -r docker network inspect -f '{{range .IPAM.Config}}{{.Subnet}} {{end}}'
        ip -4 route show | cut -d' ' -f1
    } | python3 -c '
import ipaddress, sys
used = []
for word in sys.stdin.read().split():
    try:
        used.append(ipaddress.ip_network(word, strict=False))
    except ValueError:
        pass
for octet in range(1, 255):
    candidate = ipaddress.ip_network(f"10.211.{octet}.0/24")
    if not any(candidate.overlaps(network) for network in used if network.version == 4 and network.prefixlen > 0):
        print(candidate)
        break
' | grep . || die "no free /24 left in 10.211.0.0/16 for the lab network: remove unused labs (lab.sh down)"
}

ensure_network() {
    if [[ -n $(network_subnet) ]]; then
        return
    fi
    local subnet
    subnet=$(free_subnet)
    log "creating network $NETWORK ($subnet)"
    docker network create --driver bridge --subnet "$subnet" --gateway "${subnet%.0/24}.1" \
        --label "$LABEL_LAB=$LAB_NAME" "$NETWORK" >/dev/null
}

host_address() {
    local subnet
    subnet=$(network_subnet)
    echo "${subnet%.0/24}.$((FIRST_HOST_OCTET + $1))"
}

container_state() {
    docker container inspect -f '{{.State.Status}}' "$1" 2>/dev/null || true
}

ensure_ssh_key() {
    if [[ ! -f $SSH_KEY ]]; then
        mkdir -p "$(dirname "$SSH_KEY")"
        chmod 0700 "$(dirname "$SSH_KEY")"
        ssh-keygen -q -t ed25519 -N '' -C "datacrunch-sglang-lab" -f "$SSH_KEY"
    fi
}

create_host() {
    local index=$1 name address
    name=$(host_name "$index")
    address=$(host_address "$index")
    local args=(--detach --init --name "$name" --hostname "$name" --network "$NETWORK" --ip "$address"
        --label "$LABEL_LAB=$LAB_NAME" --label "datacrunch-sglang-lab.host-index=$index"
        --security-opt seccomp=unconfined --security-opt apparmor=unconfined --device-cgroup-rule='a *:* rwm'
        --volume /sys/fs/cgroup:/sys/fs/cgroup:rw --cgroupns host
        --volume "$name-docker:/var/lib/docker" --tmpfs /run --shm-size "$HOST_SHM_SIZE")
    local capability
    for capability in "${HOST_CAPABILITIES[@]}"; do
        args+=(--cap-add "$capability")
    done
    if [[ -n $LAB_SHARED_DIR ]]; then
        args+=(--volume "$LAB_NAME-shared:$LAB_SHARED_DIR")
    fi
    if [[ -n $LAB_LOCAL_DISK_DIR ]]; then
        # The host's own filesystem at that path, as a worker's NVMe is (removed with the host's other volumes).
        docker volume create --label "$LABEL_LAB=$LAB_NAME" "$name-local-disk" >/dev/null
        args+=(--volume "$name-local-disk:$LAB_LOCAL_DISK_DIR")
    fi
    docker volume create --label "$LABEL_LAB=$LAB_NAME" "$name-docker" >/dev/null
    log "creating host $name ($address)"
    docker run "${args[@]}" "$HOST_IMAGE" >/dev/null
}

# A host made with other settings cannot be changed in place: say how to get the wanted one.
check_host_settings() {
    local name=$1 mounted
    mounted=$(docker container inspect -f \
        "{{range .Mounts}}{{if eq .Name \"$LAB_NAME-shared\"}}{{.Destination}}{{end}}{{end}}" "$name")
    if [[ $mounted != "$LAB_SHARED_DIR" ]]; then
        die "host $name has the shared volume at '${mounted:-(none)}', but LAB_SHARED_DIR='$LAB_SHARED_DIR':" \
            "run 'LAB_NAME=$LAB_NAME tests/lab/lab.sh down' first, then up again"
    fi
    if [[ $(docker container inspect -f '{{.Image}}' "$name") != "$(image_id "$HOST_IMAGE")" ]]; then
        warn "host $name runs an older $HOST_IMAGE: 'lab.sh down' and 'up' to get the new one"
    fi
}

ensure_host() {
    local index=$1 name
    name=$(host_name "$index")
    case $(container_state "$name") in
        running) check_host_settings "$name" ;;
        "") create_host "$index" ;;
        *)
            check_host_settings "$name"
            log "starting host $name"
            docker start "$name" >/dev/null
            ;;
    esac
    docker exec -i "$name" sh -c 'umask 077 && cat > /root/.ssh/authorized_keys' <"$SSH_KEY.pub"
}

lab_hosts() {
    docker ps -a --filter "label=$LABEL_LAB=$LAB_NAME" --format '{{.Names}}' | sort -V
}

wait_for_host() {
    local name=$1 address=$2 deadline=$((SECONDS + 120))
    until docker exec "$name" docker info >/dev/null 2>&1 &&
        ssh "${SSH_OPTIONS[@]}" "root@$address" true 2>/dev/null; do
        if ((SECONDS >= deadline)); then
            docker logs --tail 20 "$name" >&2 || true
            die "host $name ($address) did not answer over SSH and with its Docker engine within 120 s"
        fi
        sleep 0.5
    done
}

# ---------------------------------------------------------------------------------------------------------------
# Images inside the hosts
# ---------------------------------------------------------------------------------------------------------------

# The base image (small, with python3: handy for tests) and the SGLang stand-in images that exist.
images_for_hosts() {
    local image
    echo "$BASE_IMAGE"
    for image in "${STANDIN_IMAGES[@]}"; do
        if [[ -n $(image_id "$image") ]]; then
            echo "$image"
        else
            warn "$image does not exist yet (tests/lab/sglang-standin/build.sh builds it): not loaded into hosts"
        fi
    done
}

# Images (tags) a host lacks or has with another id than this machine's.
missing_images() {
    local name=$1 image
    shift
    for image in "$@"; do
        if [[ $(docker exec "$name" docker image inspect -f '{{.Id}}' "$image" 2>/dev/null) != "$(image_id "$image")" ]]; then
            echo "$image"
        fi
    done
}

# One `docker save` for all hosts (kept while the images stay the same), one `docker load` per host that needs it.
load_images() {
    local images=() hosts=() name archive key
    mapfile -t images < <(images_for_hosts)
    for name in "$@"; do
        if [[ -n $(missing_images "$name" "${images[@]}") ]]; then
            hosts+=("$name")
        fi
    done
    if ((${#hosts[@]} == 0)); then
        return
    fi
    key=$(for image in "${images[@]}"; do echo "$image $(image_id "$image")"; done | sha256sum | cut -c1-16)
    archive=$STATE_DIR/images-$key.tar
    if [[ ! -f $archive ]]; then
        with_lock save_images "$archive" "${images[@]}"
    fi
    log "loading ${images[*]} into ${hosts[*]}"
    local pids=() pid
    for name in "${hosts[@]}"; do
        docker exec -i "$name" docker load --quiet <"$archive" >/dev/null &
        pids+=($!)
    done
    for pid in "${pids[@]}"; do
        wait "$pid" || die "loading images into a host failed: see 'docker exec HOST docker images'"
    done
}

save_images() {
    local archive=$1
    shift
    if [[ -f $archive ]]; then
        return
    fi
    rm -f "$STATE_DIR"/images-*.tar
    docker save "$@" >"$archive.tmp"
    mv "$archive.tmp" "$archive"
}

# ---------------------------------------------------------------------------------------------------------------
# Lab services on this machine (shared by all labs)
# ---------------------------------------------------------------------------------------------------------------

WHEEL_INDEX=$LAB_DIR/services/wheel-index.sh
NVIDIA_APT_REPO=$LAB_DIR/services/nvidia-apt-repo.sh
REGISTRY=$LAB_DIR/services/registry.sh

# The gateways of every lab network on this machine, one a line: where the lab hosts reach the lab services.
lab_gateways() {
    docker network ls -q --filter "label=$LABEL_LAB" |
        xargs -r docker network inspect -f '{{range .IPAM.Config}}{{.Gateway}}{{end}}' | grep . || true
}

# The services listen on 127.0.0.1 and on the gateway of each lab network, never on every interface.
services_start() {
    local gateways=()
    mapfile -t gateways < <(lab_gateways)
    WHEEL_INDEX_PORT=$LAB_WHEEL_PORT "$WHEEL_INDEX" start "${gateways[@]}"
    NVIDIA_APT_PORT=$LAB_NVIDIA_APT_PORT "$NVIDIA_APT_REPO" start "${gateways[@]}"
    LAB_REGISTRY_PORT=$LAB_REGISTRY_PORT "$REGISTRY" start
    if [[ -x $HUB_SCRIPT ]]; then
        "$HUB_SCRIPT" start "${gateways[@]}" >&2 || die "the Hub stand-in did not start: see '$HUB_SCRIPT status'"
    else
        warn "$HUB_SCRIPT does not exist yet: no Hub stand-in"
    fi
}

# services_stop [GATEWAY]: stop the services; with a gateway (a lab network that is gone), only stop listening there.
services_stop() {
    WHEEL_INDEX_PORT=$LAB_WHEEL_PORT "$WHEEL_INDEX" stop "$@"
    NVIDIA_APT_PORT=$LAB_NVIDIA_APT_PORT "$NVIDIA_APT_REPO" stop "$@"
    # The registry serves every lab alike: it stops with the last lab only.
    ((${#@})) || LAB_REGISTRY_PORT=$LAB_REGISTRY_PORT "$REGISTRY" stop
    if [[ -x $HUB_SCRIPT ]]; then
        "$HUB_SCRIPT" stop "$@" >&2 || true
    fi
}

services_status() {
    local code=0
    WHEEL_INDEX_PORT=$LAB_WHEEL_PORT "$WHEEL_INDEX" status || code=1
    NVIDIA_APT_PORT=$LAB_NVIDIA_APT_PORT "$NVIDIA_APT_REPO" status || code=1
    LAB_REGISTRY_PORT=$LAB_REGISTRY_PORT "$REGISTRY" status || code=1
    if [[ -x $HUB_SCRIPT ]]; then
        "$HUB_SCRIPT" status || code=1
    fi
    return "$code"
}

hub_endpoint() {
    local gateway=$1
    if [[ -x $HUB_SCRIPT ]]; then
        "$HUB_SCRIPT" url --host "$gateway"
    else
        echo "http://$gateway:$LAB_HUB_DEFAULT_PORT"
    fi
}

pip_index() {
    WHEEL_INDEX_PORT=$LAB_WHEEL_PORT "$WHEEL_INDEX" url --host "$1"
}

nvidia_apt_url() {
    NVIDIA_APT_PORT=$LAB_NVIDIA_APT_PORT "$NVIDIA_APT_REPO" url --host "$1"
}

registry_name() {
    LAB_REGISTRY_PORT=$LAB_REGISTRY_PORT "$REGISTRY" name
}

# A host reaches the lab registry by its name (the gateway's address), trusts the lab CA for it and is logged in,
# as a site's hosts are for their private registry (`docker login`). Tests replace the login to break it.
registry_access() {
    local name=$1 gateway=$2 registry
    registry=$(registry_name)
    docker exec "$name" sh -c "grep -v ' ${registry%:*}\$' /etc/hosts > /tmp/hosts.lab; \
        echo '$gateway ${registry%:*}' >> /tmp/hosts.lab; cat /tmp/hosts.lab > /etc/hosts; rm -f /tmp/hosts.lab; \
        mkdir -p /etc/docker/certs.d/$registry /root/.docker"
    docker exec -i "$name" sh -c "cat > /etc/docker/certs.d/$registry/ca.crt" \
        <"$(LAB_REGISTRY_PORT=$LAB_REGISTRY_PORT "$REGISTRY" ca)"
    printf '{"auths": {"%s": {"auth": "%s"}}}\n' "$registry" "$(LAB_REGISTRY_PORT=$LAB_REGISTRY_PORT "$REGISTRY" auth)" |
        docker exec -i "$name" sh -c 'umask 077 && cat > /root/.docker/config.json'
}

# From inside a host, as the collection will: the wheel index lists wheels, the Hub answers HTTP.
check_services_from() {
    local name=$1 gateway=$2 index hub
    index=$(pip_index "$gateway")
    [[ $(docker exec "$name" curl -fsS --max-time 5 "$index" || true) == *.whl* ]] ||
        die "host $name cannot read the wheel index at $index: is a firewall blocking port $LAB_WHEEL_PORT?"
    if [[ -x $HUB_SCRIPT ]]; then
        hub=$(hub_endpoint "$gateway")
        docker exec "$name" curl -sS -o /dev/null --max-time 5 "$hub/" ||
            die "host $name cannot reach the Hub stand-in at $hub"
    fi
    local registry
    registry=$(registry_name)
    [[ $(docker exec "$name" curl -sS -o /dev/null -w '%{http_code}' --max-time 5 \
        --cacert "/etc/docker/certs.d/$registry/ca.crt" "https://$registry/v2/") == 401 ]] ||
        die "host $name cannot reach the lab registry at https://$registry (is a firewall blocking port $LAB_REGISTRY_PORT?)"
}

# ---------------------------------------------------------------------------------------------------------------
# Inventory
# ---------------------------------------------------------------------------------------------------------------

write_inventory() {
    local count=$1 gateway index name
    gateway=$(network_gateway)
    mkdir -p "$LAB_INVENTORY_DIR"
    {
        echo "# Written by tests/lab/lab.sh up for lab '$LAB_NAME': simulated H200 hosts (no GPUs). Do not edit;"
        echo "# 'lab.sh down' removes it."
        echo "all:"
        echo "  vars:"
        echo "    lab_name: $LAB_NAME"
        echo "    lab_gateway: $gateway"
        echo "    lab_hub_endpoint: $(hub_endpoint "$gateway")"
        echo "    lab_pip_index: $(pip_index "$gateway")"
        echo "    lab_nvidia_apt_url: $(nvidia_apt_url "$gateway")"
        echo "    lab_registry: $(registry_name)"
        echo "  children:"
        echo "    sglang_servers:"
        echo "      vars:"
        echo "        ansible_user: root"
        echo "        ansible_ssh_private_key_file: $SSH_KEY"
        echo "        # Lab hosts get new host keys when they are made again: no host key checking, for the lab only."
        echo "        ansible_ssh_common_args: >-"
        echo "          -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
        echo "      hosts:"
        for index in $(seq 1 "$count"); do
            name=$(host_name "$index")
            echo "        $name:"
            echo "          ansible_host: $(host_address "$index")"
        done
    } >"$LAB_INVENTORY_DIR/hosts.yml.tmp"
    mv "$LAB_INVENTORY_DIR/hosts.yml.tmp" "$LAB_INVENTORY_DIR/hosts.yml"
    link_group_vars
}

# Scenario inventories elsewhere get the lab's group_vars through a link.
link_group_vars() {
    local shared=$REPO_ROOT/inventories/lab/group_vars
    if [[ $(realpath -m "$LAB_INVENTORY_DIR") == $(realpath -m "$REPO_ROOT/inventories/lab") ]]; then
        return
    fi
    if [[ -L $LAB_INVENTORY_DIR/group_vars || ! -e $LAB_INVENTORY_DIR/group_vars ]]; then
        ln -sfn "$shared" "$LAB_INVENTORY_DIR/group_vars"
    else
        warn "$LAB_INVENTORY_DIR/group_vars exists and is not a link: left as it is"
    fi
}

remove_inventory() {
    local file=$LAB_INVENTORY_DIR/hosts.yml
    if [[ -f $file ]] && grep -qx "    lab_name: $LAB_NAME" "$file"; then
        rm -f "$file"
    fi
    if [[ -L $LAB_INVENTORY_DIR/group_vars ]] &&
        [[ $(readlink "$LAB_INVENTORY_DIR/group_vars") == "$REPO_ROOT/inventories/lab/group_vars" ]]; then
        rm -f "$LAB_INVENTORY_DIR/group_vars"
    fi
}

# ---------------------------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------------------------

cmd_up() {
    local count=${1:-}
    [[ $count =~ ^[1-9][0-9]*$ && $count -le 200 ]] ||
        die "lab.sh up N: N='$count' must be a number of hosts from 1 to 200, e.g. lab.sh up 2"
    validate_settings
    cmd_build
    with_lock ensure_ssh_key
    with_lock ensure_network
    local index name names=()
    for index in $(seq 1 "$count"); do
        ensure_host "$index"
        names+=("$(host_name "$index")")
    done
    local extra
    extra=$(lab_hosts | grep -vxF -f <(printf '%s\n' "${names[@]}") || true)
    if [[ -n $extra ]]; then
        warn "lab $LAB_NAME also has $(echo "$extra" | paste -sd' ') (left running, not in the inventory)"
    fi
    with_lock services_start
    for index in $(seq 1 "$count"); do
        wait_for_host "$(host_name "$index")" "$(host_address "$index")"
    done
    load_images "${names[@]}"
    for name in "${names[@]}"; do
        registry_access "$name" "$(network_gateway)"
    done
    check_services_from "${names[0]}" "$(network_gateway)"
    write_inventory "$count"
    log "lab $LAB_NAME: $count host(s) up; inventory $LAB_INVENTORY_DIR/hosts.yml"
}

cmd_down() {
    validate_settings
    local hosts
    hosts=$(lab_hosts)
    if [[ -n $hosts ]]; then
        log "removing $(echo "$hosts" | paste -sd' ')"
        # shellcheck disable=SC2086  # one name per word
        docker rm --force --volumes $hosts >/dev/null
        remove_host_cgroups "$hosts"
    fi
    local volumes
    volumes=$(docker volume ls -q --filter "label=$LABEL_LAB=$LAB_NAME")
    if docker volume inspect "$LAB_NAME-shared" >/dev/null 2>&1; then
        volumes+=$'\n'"$LAB_NAME-shared"
    fi
    if [[ -n ${volumes//[[:space:]]/} ]]; then
        # shellcheck disable=SC2086
        docker volume rm $volumes >/dev/null
    fi
    local gateway=""
    if [[ -n $(network_subnet) ]]; then
        gateway=$(network_gateway)
        docker network rm "$NETWORK" >/dev/null
    fi
    remove_inventory
    with_lock services_release "$gateway"
    log "lab $LAB_NAME is down"
}

# services_release [GATEWAY]: under the lock, so that a lab coming up meanwhile keeps its services: stop them when no
# lab is left, else stop listening on the gateway of the network that is gone.
services_release() {
    local gateway=${1:-}
    if [[ -z $(docker ps -aq --filter "label=$LABEL_LAB") ]]; then
        log "no lab left: stopping the lab services"
        services_stop
    elif [[ -n $gateway ]]; then
        services_stop "$gateway"
    fi
}

# The hosts' engines put their containers' cgroups under /datacrunch-sglang-lab/<host> of this machine's
# hierarchies (the hosts share its cgroup namespace); they are empty once a host is gone.
remove_host_cgroups() {
    local name hierarchy
    for name in $1; do
        for hierarchy in /sys/fs/cgroup/*/datacrunch-sglang-lab/"$name"; do
            if [[ -d $hierarchy ]]; then
                find "$hierarchy" -depth -type d -exec rmdir {} + 2>/dev/null || true
            fi
        done
    done
}

cmd_status() {
    local hosts name
    hosts=$(lab_hosts)
    if [[ -z $hosts ]]; then
        echo "lab $LAB_NAME: no hosts"
    else
        echo "lab $LAB_NAME: network $NETWORK $(network_subnet), gateway $(network_gateway)"
        for name in $hosts; do
            printf '  %-24s %-15s %s\n' "$name" \
                "$(docker container inspect -f "{{(index .NetworkSettings.Networks \"$NETWORK\").IPAddress}}" "$name")" \
                "$(container_state "$name")"
        done
    fi
    services_status || true
}

resolve_host() {
    local host=${1:-}
    [[ -n $host ]] || die "name a host: e.g. $(host_name 1) or 1"
    if [[ $host =~ ^[0-9]+$ ]]; then
        host=$(host_name "$host")
    fi
    if [[ $(docker container inspect -f "{{ index .Config.Labels \"$LABEL_LAB\" }}" "$host" 2>/dev/null) == "" ]]; then
        die "'$host' is not a lab host (lab.sh status lists them)"
    fi
    if [[ $(container_state "$host") != running ]]; then
        die "lab host $host is not running: lab.sh up N starts it"
    fi
    echo "$host"
}

cmd_fault() {
    local host
    host=$(resolve_host "${1:-}")
    shift
    [[ $# -gt 0 ]] || die "lab.sh fault HOST NAME [ARG]: name a fault (lab.sh faults lists them)"
    docker exec "$host" lab-fault "$@"
}

cmd_heal() {
    local host
    host=$(resolve_host "${1:-}")
    docker exec "$host" lab-fault heal
}

cmd_faults() {
    sed -n 's/^    lab-fault /lab.sh fault HOST /p' "$LAB_DIR/host/lab_fault.py" | grep -v ' init \| heal \| status '
    echo "lab.sh heal HOST"
}

cmd_ssh() {
    local host address
    host=$(resolve_host "${1:-}")
    shift
    address=$(docker container inspect -f "{{(index .NetworkSettings.Networks \"$NETWORK\").IPAddress}}" "$host")
    exec ssh "${SSH_OPTIONS[@]}" -o BatchMode=no "root@$address" "$@"
}

cmd_services() {
    case ${1:-} in
        start) with_lock services_start ;;
        stop) with_lock services_stop ;;
        status) services_status ;;
        *) die "lab.sh services start|stop|status" ;;
    esac
}

main() {
    local cmd=${1:-}
    [[ $# -gt 0 ]] && shift
    case $cmd in
        build) cmd_build "$@" ;;
        up) cmd_up "$@" ;;
        down) cmd_down "$@" ;;
        status) cmd_status "$@" ;;
        fault) cmd_fault "$@" ;;
        heal) cmd_heal "$@" ;;
        faults) cmd_faults ;;
        ssh) cmd_ssh "$@" ;;
        services) cmd_services "$@" ;;
        *) die "unknown command '${cmd}': use build, up N, down, status, fault HOST NAME [ARG], heal HOST, faults, ssh HOST or services" ;;
    esac
}

main "$@"
exit $?
