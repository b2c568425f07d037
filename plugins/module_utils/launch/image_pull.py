# -*- coding: utf-8 -*-
# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bring the SGLang image onto a host per the pull policy, and prove that a container of it sees the GPUs.

The pull goes through the Docker SDK, which sends the registry credentials of the host's Docker configuration
(root's ``~/.docker/config.json``, as ``docker login`` writes it), as ``docker pull`` would.
"""

from __future__ import annotations

import time

from ansible_collections.datacrunch.sglang.plugins.module_utils.common.docker_sdk import (
    APIError,
    DockerException,
    ImageNotFound,
)
from ansible_collections.datacrunch.sglang.plugins.module_utils.common.image_ref import parse_image_ref
from ansible_collections.datacrunch.sglang.plugins.module_utils.gpu.checks import PASS, container_gpus_check
from ansible_collections.datacrunch.sglang.plugins.module_utils.gpu.docker_engine import (
    DockerClient,
    gpu_probe,
    socket_path,
)


class ImagePullError(Exception):
    def __init__(self, message, result=None):
        super().__init__(message)
        self.result = result or {}


def registry_of(reference):
    """The registry an image reference names (docker.io when it names none), for messages."""
    name = parse_image_ref(reference)["name"]
    first = name.split("/", 1)[0]
    if "/" in name and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def pull_failure(reference, error):
    """One message for a pull the registry refused: what it said and the fix that matches."""
    text = " ".join(str(getattr(error, "explanation", None) or error).split())[:400]
    registry = registry_of(reference)
    lowered = text.lower()
    if any(word in lowered for word in ("unauthorized", "authentication required", "denied", "no basic auth")):
        fix = (
            "the registry %s refused the host's credentials: log the host in (`docker login %s` as root, which "
            "writes /root/.docker/config.json) or fix that login" % (registry, registry)
        )
    elif any(word in lowered for word in ("manifest unknown", "not found", "name unknown")):
        fix = "the registry %s has no such image or tag: check sglang_image" % registry
    else:
        fix = (
            "check that the host reaches the registry %s (DNS, proxy, TLS: a private CA goes into "
            "/etc/docker/certs.d/%s/ca.crt) and sglang_image" % (registry, registry)
        )
    return "image %s is not on this host and cannot be pulled: %s. Fix: %s" % (reference, text, fix)


def ensure_image(client, reference, pull, check_mode):
    """The image per policy: (image or None in check mode, actions). Pulls before anything stops."""
    actions = []
    try:
        image = client.images.get(reference)
    except ImageNotFound:
        image = None
    if image is not None and pull != "always":
        return image, actions
    if pull == "never":
        raise ImagePullError(
            "image %s is not on this host and sglang_server_pull=never forbids pulling it; load it (docker load) "
            "or allow pulls" % reference
        )
    if check_mode:
        actions.append("pull %s" % reference)
        return image, actions
    try:
        pulled = client.images.pull(reference)
    except (APIError, DockerException) as exc:
        if image is not None and pull == "always":
            raise ImagePullError(
                "pulling %s failed (%s); the local copy is kept, but sglang_server_pull=always asked for the "
                "registry's; fix registry access or set sglang_server_pull=missing" % (reference, exc)
            ) from None
        raise ImagePullError(pull_failure(reference, exc)) from None
    if image is None or pulled.id != image.id:
        actions.append("pulled %s" % reference)
    return pulled, actions


def prefetch_image(client, reference, pull, gpus, check_mode, probe_timeout=120, docker_host=""):
    """Pull (per policy), then, when ``gpus`` > 0, run ``nvidia-smi -L`` in a container of the image that asks for
    every GPU and require that it lists ``gpus`` GPUs. The result as the module returns it."""
    started = time.monotonic()
    image, actions = ensure_image(client, reference, pull, check_mode)
    result = {
        "image": reference,
        "id": image.id if image is not None else "",
        "pulled": any(action.startswith("pulled ") for action in actions),
        "actions": actions,
        "pull_seconds": round(time.monotonic() - started, 2),
        "probe": None,
    }
    if gpus > 0 and image is not None:
        probe = gpu_probe(DockerClient(socket_path(docker_host)), reference, timeout=probe_timeout)
        check = container_gpus_check(probe, gpus)
        result["probe"] = {**probe, "status": check["status"], "summary": check["summary"], "fix": check["fix"]}
        if check["status"] != PASS:
            result["seconds"] = round(time.monotonic() - started, 2)
            raise ImagePullError(
                "image %s is here, but a container of it does not see the GPUs: %s. Fix: %s"
                % (reference, check["summary"], check["fix"]),
                result,
            )
    result["seconds"] = round(time.monotonic() - started, 2)
    return result
