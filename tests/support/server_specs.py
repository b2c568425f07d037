"""Launch specs that this machine's Docker engine can run: the SGLang stand-in image as the server, as
module_utils/launch/spec.py describes a server (host networking, the weights cache and the secrets mounted, labels,
readiness on the serving port), with the lab's nvidia-smi stand-in mounted (directories, on PATH) in place of the GPU
runtime that this machine lacks.

Containers are named `dcsg-unit-<random>` and labelled `datacrunch.sglang.test`; `remove_containers` removes them.
"""

from __future__ import annotations

import json
import socket
import sys
import uuid
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
STANDIN_DIR = REPO_ROOT / "tests/lab/sglang-standin"
if str(STANDIN_DIR) not in sys.path:
    sys.path.insert(0, str(STANDIN_DIR))

from standin_testing import LAB_NVIDIA, REPO_ID, make_gpu_bin, make_hf_cache  # noqa: E402

from ansible_collections.datacrunch.sglang.plugins.module_utils.launch.spec import (  # noqa: E402
    LABEL_CLUSTER,
    LABEL_COLLECTION_VERSION,
    LABEL_PROFILE,
    LABEL_RANK,
    LABEL_SPEC_HASH,
    SERVER_CONFIG_FILE,
    spec_hash,
)

STANDIN_IMAGE = "localhost/sglang-standin:v0.5.23"
PREFIX = "dcsg-unit-"
TEST_LABEL = "datacrunch.sglang.test"
# Where the container finds the lab's nvidia-smi stand-in, and this host's GPU state with a wrapper on PATH.
CONTAINER_NVIDIA = "/opt/lab-nvidia"
CONTAINER_GPU = "/opt/lab-gpu"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def unique_name() -> str:
    return PREFIX + uuid.uuid4().hex[:10]


def make_host(root: Path) -> Path:
    """What a host has for the server: the weights cache (lab/tiny-r1 complete, lab/partial missing a shard) and the
    GPU stand-in's state (8 GPUs)."""
    make_hf_cache(root / "hf")
    gpu = root / "gpu"
    (gpu / "bin").mkdir(parents=True)
    (gpu / "gpu-state.json").write_text(json.dumps({"gpu_count": 8}))
    (gpu / "bin" / "nvidia-smi").write_text('#!/bin/sh\nexec python3 %s/nvidia_smi.py "$@"\n' % CONTAINER_NVIDIA)
    (gpu / "bin" / "nvidia-smi").chmod(0o755)
    for path in [root, *root.rglob("*")]:
        path.chmod(path.stat().st_mode | (0o755 if path.is_dir() else 0o644))
    return root


def gpu_bin(root: Path, gpus: int = 8):
    """(path of an nvidia-smi that is the lab's stand-in with `gpus` GPUs, the environment it needs)."""
    env = make_gpu_bin(root, gpus)
    return str(root / "bin" / "nvidia-smi"), env


def server_spec(host: Path, name=None, port=None, api_key=False, model=REPO_ID, extra_args=(), env=None,
                restart_policy="no", rank=0):
    """A spec as build_launch_spec makes one, for the stand-in on this machine (no GPU runtime: the nvidia-smi
    stand-in is mounted and put on PATH instead of `gpus`)."""
    name = name or unique_name()
    port = port or free_port()
    command = ["python3", "-m", "sglang.launch_server", "--model-path", model, "--tp-size", "8",
               "--host", "127.0.0.1", "--port", str(port), "--enable-metrics", *extra_args]
    secret_files = {}
    mounts = [
        {"source": str(host / "hf"), "target": str(host / "hf"), "read_only": False},
        {"source": str(host / "cache" / name), "target": "/var/cache/sglang", "read_only": False},
        {"source": str(LAB_NVIDIA), "target": CONTAINER_NVIDIA, "read_only": True},
        {"source": str(host / "gpu"), "target": CONTAINER_GPU, "read_only": True},
    ]
    secrets_host_dir = str(host / "secrets" / name)
    if api_key:
        secret_files[SERVER_CONFIG_FILE] = "api_key"
        command += ["--config", "/run/datacrunch-sglang/" + SERVER_CONFIG_FILE]
        mounts.append({"source": secrets_host_dir + "/secrets", "target": "/run/datacrunch-sglang", "read_only": True})
    spec = {
        "name": name,
        "image": STANDIN_IMAGE,
        "sglang_version": "0.5.23",
        "command": command,
        "env": {
            "HF_HOME": str(host / "hf"),
            "HF_HUB_OFFLINE": "1",
            "PATH": CONTAINER_GPU + "/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LAB_GPU_STATE": CONTAINER_GPU + "/gpu-state.json",
            "LAB_GPU_FIXTURES": CONTAINER_NVIDIA + "/fixtures",
            "SGLANG_STANDIN_LOAD_SECONDS": "1",
            "SGLANG_STANDIN_JIT_SECONDS": "0",
            "SGLANG_STANDIN_GRAPH_SECONDS": "0",
            "SGLANG_STANDIN_WARMUP_SECONDS": "0",
            # Its own GPU claim: other stand-in servers of the test run share /dev/shm (ipc host).
            "SGLANG_STANDIN_GPU_LOCK": "/tmp/gpus.lock",
            **(env or {}),
        },
        "mounts": mounts,
        "devices": [],
        "cap_add": [],
        "network_mode": "host",
        "ipc_mode": "host",
        "shm_size": "64m",
        # Low limits: this machine's own hard limits cap what a container may have (memlock: 8 MiB here).
        "ulimits": [
            {"name": "memlock", "soft": 65536, "hard": 65536},
            {"name": "nofile", "soft": 4096, "hard": 8192},
        ],
        "gpus": None,
        "restart_policy": restart_policy,
        "log_config": {"type": "json-file", "config": {"max-size": "10m", "max-file": "2"}},
        "labels": {LABEL_PROFILE: "lab-tiny", LABEL_CLUSTER: "", LABEL_RANK: str(rank),
                   LABEL_COLLECTION_VERSION: "0.0.0-test", TEST_LABEL: "1"},
        "host_dirs": {"cache": str(host / "cache" / name), "secrets": secrets_host_dir},
        "secret_files": secret_files,
        "rank": rank,
        "nnodes": 1,
        "cluster": "",
        "model": model,
        "revision": "",
        "offline": True,
        "port": port,
        "bind_host": "127.0.0.1",
        "endpoint": "http://127.0.0.1:%d" % port,
        "readiness": {"kind": "http" if rank == 0 else "running",
                      "url": "http://127.0.0.1:%d/health_generate" % port,
                      "base_url": "http://127.0.0.1:%d" % port},
    }
    return rehash(spec)


def rehash(spec):
    """The spec with its hash (and hash label) made again; the labels are copied, never changed in place."""
    spec = dict(spec, labels=dict(spec["labels"]))
    spec["spec_hash"] = spec_hash(spec)
    spec["labels"][LABEL_SPEC_HASH] = spec["spec_hash"]
    return spec


def remove_containers(client, names):
    """Remove the named containers (those a test made), whatever state they are in."""
    import docker.errors

    for name in names:
        try:
            client.containers.get(name).remove(force=True)
        except docker.errors.NotFound:
            continue
