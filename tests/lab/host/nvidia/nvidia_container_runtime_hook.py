#!/usr/bin/env python3
"""Stand-in for NVIDIA's ``nvidia-container-runtime-hook`` in the lab's simulated H200 hosts. Not NVIDIA's tool.

Docker registers its NVIDIA device driver when a program of this name is on dockerd's PATH. ``docker run --gpus``
then adds this program as an OCI prestart hook and sets ``NVIDIA_VISIBLE_DEVICES`` (``all``, ``0,1``, UUIDs) in the
container's environment. The hook reads the OCI state from stdin, finds the bundle's ``config.json`` (the root
filesystem and the process environment) and puts the ``nvidia-smi`` stand-in into the container, with a copy of the
host's GPU state narrowed to the visible GPUs. Without ``--gpus`` the hook does not run and the container has no
``nvidia-smi``, as with the real toolkit.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time

LAB_LIB = "/usr/lib/datacrunch-sglang-lab"
sys.path.insert(0, LAB_LIB)

import nvidia_smi  # noqa: E402 - lives in the lab's library directory, added just above

NVIDIA_SMI = "/usr/bin/nvidia-smi"
LOG = "/var/log/datacrunch-sglang-lab/gpu-hook.log"


class HookError(Exception):
    pass


def log(message):
    try:
        os.makedirs(os.path.dirname(LOG), exist_ok=True)
        with open(LOG, "a", encoding="utf-8") as handle:
            handle.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {message}\n")
    except OSError:
        pass


def inside(rootfs, relative):
    """Path of `relative` in the container's root filesystem; refuses symlinks that lead out of it."""
    target = os.path.realpath(os.path.join(rootfs, relative.lstrip("/")))
    if os.path.commonpath([target, rootfs]) != rootfs:
        raise HookError(f"{relative} in the container leads outside its root filesystem ({target})")
    return target


def visible_gpus(state, value):
    """Host GPU indices named by NVIDIA_VISIBLE_DEVICES: 'all', 'none', or indices / UUIDs separated by commas."""
    gpus = nvidia_smi.gpus_of(state)
    if value == "all":
        return [gpu.physical for gpu in gpus]
    if value in ("none", ""):
        return []
    chosen = []
    for item in value.split(","):
        item = item.strip()
        match = [gpu.physical for gpu in gpus if item in (str(gpu.index), gpu.uuid)]
        if not match:
            raise HookError(f"nvidia-container-cli: device error: {item}: unknown device")
        chosen.extend(match)
    return chosen


def prestart(container_state):
    bundle = container_state["bundle"]
    with open(os.path.join(bundle, "config.json"), encoding="utf-8") as handle:
        config = json.load(handle)
    rootfs = config["root"]["path"]
    rootfs = os.path.realpath(rootfs if os.path.isabs(rootfs) else os.path.join(bundle, rootfs))
    env = dict(item.split("=", 1) for item in config.get("process", {}).get("env", []) if "=" in item)
    devices = env.get("NVIDIA_VISIBLE_DEVICES")
    if devices is None or devices == "void":
        log(f"{container_state.get('id', '?')}: no NVIDIA_VISIBLE_DEVICES, nothing to do")
        return
    state = nvidia_smi.load_state()
    physical = visible_gpus(state, devices.strip())
    narrowed = dict(state)
    narrowed["visible"] = physical
    narrowed["processes"] = [
        process
        for process in state["processes"]
        if int(process.get("gpu", -1)) in physical and nvidia_smi._pid_alive(process["pid"])
    ]
    narrowed["processes_foreign"] = True
    state_path = inside(rootfs, nvidia_smi.STATE_PATH)
    os.makedirs(os.path.dirname(state_path), exist_ok=True)
    nvidia_smi.save_state(narrowed, state_path)
    fixtures = inside(rootfs, nvidia_smi.FIXTURES_DIR)
    shutil.copytree(nvidia_smi.FIXTURES_DIR, fixtures, dirs_exist_ok=True)
    if os.path.exists(NVIDIA_SMI):
        target = inside(rootfs, NVIDIA_SMI)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(NVIDIA_SMI, target)
        os.chmod(target, 0o755)  # noqa: S103 - a program in the container, as the toolkit mounts it
    log(f"{container_state.get('id', '?')}: NVIDIA_VISIBLE_DEVICES={devices} -> host GPUs {physical}")


def main(argv):
    command = argv[1] if len(argv) > 1 else ""
    if command in ("poststart", "poststop"):
        return 0
    if command != "prestart":
        sys.stderr.write(f"Usage: {os.path.basename(argv[0])} prestart|poststart|poststop (lab stand-in)\n")
        return 2
    try:
        prestart(json.load(sys.stdin))
    except (HookError, nvidia_smi.StandinError, OSError, KeyError, ValueError) as error:
        log(f"error: {error}")
        sys.stderr.write(f"{error}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
