# -*- coding: utf-8 -*-
# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the SGLang server on this host is doing: container state, readiness, load, GPU memory, logs."""

from __future__ import annotations

import json
import os
import shutil
import time

from ansible_collections.datacrunch.sglang.plugins.module_utils.common import host_command
from ansible_collections.datacrunch.sglang.plugins.module_utils.common.docker_sdk import (
    DockerException,
    DockerUnavailable,
    connect,
    container_or_none,
    is_ours,
)
from ansible_collections.datacrunch.sglang.plugins.module_utils.common.prometheus_text import (
    parse_metrics,
    serving_load,
)
from ansible_collections.datacrunch.sglang.plugins.module_utils.common.secret_files import redact
from ansible_collections.datacrunch.sglang.plugins.module_utils.launch.container import (
    SPEC_FILE,
    ServerError,
    parse_docker_time,
)
from ansible_collections.datacrunch.sglang.plugins.module_utils.launch.sglang_http import probe_ready, request
from ansible_collections.datacrunch.sglang.plugins.module_utils.launch.spec import LABEL_PREFIX


def gpu_memory_used_mib(nvidia_smi="nvidia-smi"):
    """Total GPU memory in use on the host (MiB), or None without nvidia-smi."""
    if not shutil.which(nvidia_smi):
        return None
    completed, _error = host_command.run([nvidia_smi, "--query-gpu=memory.used", "--format=csv,noheader,nounits"], 30)
    if completed is None or completed.returncode != 0:
        return None
    values = [float(line) for line in completed.stdout.split() if line.replace(".", "", 1).isdigit()]
    return int(sum(values)) if values else None


def read_stored_spec(secrets_dir, name):
    try:
        with open(os.path.join(secrets_dir, name, SPEC_FILE), encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def server_status(name, secrets_dir, api_key="", secrets=(), logs_tail=0, client=None):
    """One host's view of its server; never raises for a missing or stopped container."""
    try:
        container = container_or_none(client or connect(timeout=60), name)
    except DockerUnavailable as exc:
        raise ServerError(str(exc)) from None
    except DockerException as exc:
        raise ServerError("the Docker engine on this host does not answer: %s" % exc) from None
    if container is None:
        return {"exists": False, "state": "absent", "ready": False, "gpu_memory_used_mib": gpu_memory_used_mib()}

    state = container.attrs["State"]
    labels = container.labels or {}
    spec = read_stored_spec(secrets_dir, name) or {}
    started = parse_docker_time(state.get("StartedAt"))
    running = state.get("Status") == "running"
    status = {
        "exists": True,
        "ours": is_ours(labels),
        "container_id": container.id,
        "state": state.get("Status"),
        "exit_code": state.get("ExitCode"),
        "oom_killed": state.get("OOMKilled"),
        "restart_count": container.attrs.get("RestartCount", 0),
        "uptime_s": int(time.time() - started) if running and started else 0,
        "image": (container.attrs.get("Config") or {}).get("Image"),
        "image_id": container.attrs.get("Image"),
        "profile": labels.get(LABEL_PREFIX + "profile", ""),
        "cluster": labels.get(LABEL_PREFIX + "cluster", ""),
        "rank": labels.get(LABEL_PREFIX + "rank", ""),
        "spec_hash": labels.get(LABEL_PREFIX + "spec-hash", ""),
        "model": spec.get("model", ""),
        "endpoint": spec.get("endpoint", ""),
        "ready": False,
        "readiness": state.get("Status"),
        "gpu_memory_used_mib": gpu_memory_used_mib(),
    }
    readiness = spec.get("readiness")
    if running and readiness:
        status["ready"], status["readiness"] = probe_ready(readiness)
        if readiness.get("kind") == "http":
            code, body = request(readiness["base_url"] + "/metrics", api_key=api_key, timeout=10)
            if code == 200 and isinstance(body, str):
                status.update(serving_load(parse_metrics(body)))
    if logs_tail:
        raw = container.logs(tail="all" if logs_tail < 0 else logs_tail, timestamps=True)
        status["logs"] = redact(raw.decode(errors="replace"), [api_key, *secrets])
        status["log_lines"] = len(status["logs"].splitlines())
    return status
