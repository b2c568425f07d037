# -*- coding: utf-8 -*-
# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The TLS proxy container on a host (role sglang_tls): an nginx on the host network that reads its configuration,
certificate and key from one host directory mounted read-only at the same path.

A label holds the hash of the wanted container (image, command, mount, network, restart and log settings, and the
digest of the files it reads that the caller passes): the proxy is replaced only when that hash differs or it does
not run. The image is there (or pulled) before the old proxy is removed, so a failed pull leaves it serving.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time

from ansible_collections.datacrunch.sglang.plugins.module_utils.common.docker_sdk import (
    DockerException,
    ImageNotFound,
    LogConfig,
    Mount,
    NotFound,
    container_or_none,
    is_ours,
)

LABEL_HASH = "datacrunch.sglang.tls-hash"
CONFIG_FILE = "nginx.conf"
RESTART_POLICY = "unless-stopped"
# Options of the engine's default log driver (json-file on a stock engine), as `--log-opt` gives them.
LOG_OPTIONS = {"max-size": "10m", "max-file": "3"}
LOG_TAIL = 30
# How long a new proxy must keep running before it counts as started (nginx refuses a bad configuration at once).
SETTLE_SECONDS = 2.0


class ProxyError(Exception):
    """The proxy cannot be made as wanted; carries the evidence (the last log lines)."""

    def __init__(self, message, logs=""):
        super().__init__(message)
        self.logs = logs


def proxy_spec(container_name, image, config_dir, config_digest=""):
    """The container the proxy must be."""
    return {
        "name": container_name,
        "image": image,
        "command": ["nginx", "-c", "%s/%s" % (config_dir.rstrip("/"), CONFIG_FILE), "-g", "daemon off;"],
        "mounts": [{"source": config_dir, "target": config_dir, "read_only": True}],
        "network_mode": "host",
        "restart_policy": RESTART_POLICY,
        "log_options": dict(LOG_OPTIONS),
        "config_digest": config_digest,
    }


def spec_hash(spec):
    """What the label of a proxy made from the spec holds."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:32]


def _view(container):
    """The part of a container that --diff shows."""
    if container is None:
        return {"state": "absent"}
    return {
        "state": container.status,
        "image": (container.attrs.get("Config") or {}).get("Image", ""),
        "tls_hash": (container.labels or {}).get(LABEL_HASH, ""),
    }


class TlsProxy:
    def __init__(self, client, check_mode=False):
        self.client = client
        self.check_mode = check_mode
        self.actions = []
        self.warnings = []

    def _result(self, changed, before, after, **extra):
        return {
            "changed": changed,
            "actions": self.actions,
            "warnings": self.warnings,
            "diff": {"before": before, "after": after},
            **extra,
        }

    def _foreign(self, container):
        return container is not None and not is_ours(container.labels)

    # --- present -------------------------------------------------------------------------------------------------

    def ensure(self, spec, pull="missing"):
        """The proxy runs as the spec wants: (re)made only when its hash label differs or it does not run."""
        wanted = spec_hash(spec)
        current = container_or_none(self.client, spec["name"])
        if self._foreign(current):
            raise ProxyError(
                "a container named %s is on this host but is not the collection's (no datacrunch.sglang.* label); "
                "it is left alone: remove or rename it, or give the proxy another name (sglang_tls_container_name)"
                % spec["name"]
            )
        before = _view(current)
        after = {"state": "running", "image": spec["image"], "tls_hash": wanted}
        extra = {"container": spec["name"], "tls_hash": wanted, "image": spec["image"]}
        if current is not None and before["tls_hash"] == wanted and current.status == "running":
            return self._result(False, before, before, container_id=current.id, **extra)
        self._ensure_image(spec["image"], pull)
        if current is None:
            self.actions.append("create %s" % spec["name"])
        elif before["tls_hash"] != wanted:
            self.actions.append("replace %s (its spec changed)" % spec["name"])
        else:
            self.actions.append("replace %s (it is %s)" % (spec["name"], current.status))
        if self.check_mode:
            return self._result(True, before, after, container_id=current.id if current else "", **extra)
        if current is not None:
            with contextlib.suppress(NotFound):
                current.remove(force=True)
        container = self.client.containers.run(
            spec["image"],
            spec["command"],
            name=spec["name"],
            detach=True,
            labels={LABEL_HASH: wanted},
            network_mode=spec["network_mode"],
            restart_policy={"Name": spec["restart_policy"]},
            log_config=LogConfig(type="", config=spec["log_options"]),
            mounts=[Mount(target=m["target"], source=m["source"], type="bind", read_only=m["read_only"])
                    for m in spec["mounts"]],
        )  # fmt: skip
        self._settle(container)
        return self._result(True, before, after, container_id=container.id, **extra)

    def _ensure_image(self, image, pull):
        try:
            self.client.images.get(image)
            present = True
        except ImageNotFound:
            present = False
        if present and pull != "always":
            return
        if not present and pull == "never":
            raise ProxyError(
                "image %s is not on this host and sglang_tls_pull=never forbids pulling it; load it (docker load) "
                "or set sglang_tls_pull=missing" % image
            )
        self.actions.append("pull %s" % image)
        if self.check_mode:
            return
        try:
            self.client.images.pull(image)
        except DockerException as exc:
            if present:
                self.warnings.append("pulling %s failed (%s); the local copy is used" % (image, exc))
                return
            raise ProxyError(
                "image %s is not on this host and cannot be pulled (%s); check sglang_tls_image and that the host "
                "reaches its registry" % (image, " ".join(str(exc).split())[:300])
            ) from None

    def _settle(self, container):
        """Fail with the proxy's own words when it does not keep running (a configuration nginx refuses, a port
        in use)."""
        deadline = time.monotonic() + SETTLE_SECONDS
        while True:
            container.reload()
            state = container.attrs.get("State") or {}
            if state.get("Status") != "running" or state.get("Restarting"):
                logs = container.logs(tail=LOG_TAIL).decode(errors="replace").strip()
                raise ProxyError(
                    "the TLS proxy %s stopped right after it started (%s, exit code %s); its last log lines say why"
                    % (container.name, state.get("Status"), state.get("ExitCode")),
                    logs,
                )
            if time.monotonic() >= deadline:
                return
            time.sleep(0.25)

    # --- absent --------------------------------------------------------------------------------------------------

    def remove(self, container_name):
        """No proxy of the collection by that name; a container of that name that is not ours is left alone."""
        current = container_or_none(self.client, container_name)
        extra = {"container": container_name, "container_id": ""}
        if current is None:
            return self._result(False, _view(None), _view(None), **extra)
        if self._foreign(current):
            self.warnings.append(
                "a container named %s is not the collection's (no datacrunch.sglang.* label): it is left alone"
                % container_name
            )
            return self._result(False, _view(current), _view(current), **extra)
        self.actions.append("remove %s" % container_name)
        if not self.check_mode:
            with contextlib.suppress(NotFound):
                current.remove(force=True)
        return self._result(True, _view(current), _view(None), **extra)
