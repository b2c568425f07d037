#!/bin/bash
# First process of a lab host (a simulated DataCrunch H200 host; lab test material only). It runs under
# `docker run --init`, so orphans are reaped. A `docker restart` is a reboot: /run is a fresh tmpfs, the inner
# engine's data survives on its volume, the GPU state file and the root filesystem survive in the container.
set -euo pipefail

# Stale pid files from the previous boot, in case /run is not a fresh tmpfs.
rm -f /run/sshd.pid /run/docker.pid /run/docker/containerd/containerd.pid /run/containerd/containerd.pid
mkdir -p /run/sshd /var/log/datacrunch-sglang-lab

# A first boot gets a healthy 8x H200 state with GPU identities of its own, and its own SSH host keys.
lab-fault init "$(hostname)"
ssh-keygen -A >/dev/null

/usr/sbin/sshd -E /var/log/sshd.log
lab-dockerd start

shutdown() {
    lab-dockerd stop || true
    if [[ -s /run/sshd.pid ]]; then
        kill "$(cat /run/sshd.pid)" 2>/dev/null || true
    fi
    exit 0
}
trap shutdown TERM INT

echo "lab host $(hostname) is up"
sleep infinity &
wait $!
