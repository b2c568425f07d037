# -*- coding: utf-8 -*-
# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Make the SGLang container on this host match its launch spec (docker SDK), and wait until it serves.

The spec hash on the container's label says whether the running container is the one the spec wants; the spec
files next to the secrets keep what ran before, for diffs and rollback.
"""

from __future__ import annotations

import calendar
import contextlib
import json
import os
import socket
import time

from ansible_collections.datacrunch.sglang.plugins.module_utils.common.atomic_file import replace_file
from ansible_collections.datacrunch.sglang.plugins.module_utils.common.docker_sdk import (
    HAS_DOCKER_SDK,
    APIError,
    DeviceRequest,
    DockerUnavailable,
    ImageNotFound,
    LogConfig,
    Mount,
    NotFound,
    Ulimit,
    connect,
    container_or_none,
    is_ours,
)
from ansible_collections.datacrunch.sglang.plugins.module_utils.common.secret_files import (
    ensure_private_dir,
    host_salt,
    redact,
    remove_file,
    secrets_digest,
    server_config_yaml,
    write_private_file,
)
from ansible_collections.datacrunch.sglang.plugins.module_utils.common.tcp_listeners import listeners, process_ancestors
from ansible_collections.datacrunch.sglang.plugins.module_utils.hub.local_snapshot import snapshot_problem
from ansible_collections.datacrunch.sglang.plugins.module_utils.launch.crash_log import describe_exit, excerpt
from ansible_collections.datacrunch.sglang.plugins.module_utils.launch.image_pull import ImagePullError, ensure_image
from ansible_collections.datacrunch.sglang.plugins.module_utils.launch.sglang_http import (
    port_open,
    probe_ready,
    smoke,
    wait_drained,
)
from ansible_collections.datacrunch.sglang.plugins.module_utils.launch.spec import (
    LABEL_SECRETS_DIGEST,
    LABEL_SPEC_HASH,
    SERVER_CONFIG_FILE,
    spec_hash,
)
from ansible_collections.datacrunch.sglang.plugins.module_utils.launch.startup_progress import startup_progress

# What the module catches around a call to the engine.
HAS_DOCKER = HAS_DOCKER_SDK  # tests that need the SDK's types skip on it

SPEC_FILE = "spec.json"
READY_SPEC_FILE = "spec.ready.json"
PREVIOUS_SPEC_FILE = "spec.previous.json"
READY_RECORD_FILE = "ready.json"
LOG_TAIL = 40
# Enough of the log to find the latest start-up step (tqdm bars redraw on one line).
PROGRESS_LOG_TAIL = 200
# Enough of the log to hold every rank's first error after a crash (8 ranks' tracebacks and what follows them).
CRASH_LOG_TAIL = 3000
# How long `docker stop` waits after SIGTERM before it kills, by what the server does with SIGTERM (SGLang 0.5.18 and
# 0.5.23, run as PID 1 of its container):
# - rank 0 with its HTTP server up: SGLang's sigterm_watchdog (srt/managers/tokenizer_manager.py) notices within 5 s,
#   lets the running requests finish, then waits up to 15 s for its schedulers and exits 0. Allow that plus margin,
#   plus the drain budget the user gave for the requests.
SERVING_STOP_GRACE = 25
# - while loading (port closed), and on ranks >= 1, SIGTERM is ignored: there is no handler until rank 0 serves,
#   and PID 1 ignores a signal it has no handler for (0.5.23 ranks >= 1 log it and wait for rank 0). Waiting longer
#   saves nothing: nothing is served yet, and a rank >= 1 stops with its unit.
SILENT_STOP_GRACE = 5


class ServerError(Exception):
    """Something on the host prevents the server from running; carries the evidence."""

    def __init__(self, message, **evidence):
        super().__init__(message)
        self.evidence = evidence


def parse_docker_time(value):
    if not value or value.startswith("0001-"):
        return None
    base = value.split(".")[0].rstrip("Z")
    return calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S"))


def diff_view(spec):
    """The part of a spec worth showing in --diff (stable ordering)."""
    if not spec:
        return {}
    return {
        "image": spec.get("image"),
        "command": list(spec.get("command") or []),
        "env": dict(sorted((spec.get("env") or {}).items())),
        "mounts": sorted("%s:%s%s" % (m["source"], m["target"], ":ro" if m.get("read_only") else "")
                         for m in spec.get("mounts") or []),
        "restart_policy": spec.get("restart_policy"),
        "labels": dict(sorted((spec.get("labels") or {}).items())),
    }


class ServerContainer:
    def __init__(self, spec, secrets=None, check_mode=False, client=None):
        self.spec = spec
        self.secrets = {name: value for name, value in (secrets or {}).items() if value}
        self.check_mode = check_mode
        self.actions = []
        # What the user should see even without -v (a kill was needed); the module passes them on as warnings.
        self.notices = []
        # Seconds a serving rank 0 may take to finish its requests once asked to stop (drain_timeout).
        self.drain_timeout = 0
        try:
            self.client = client or connect(timeout=120)
        except DockerUnavailable as exc:
            raise ServerError(str(exc)) from None
        self.host_dir = spec["host_dirs"]["secrets"]
        self.secrets_dir = os.path.join(self.host_dir, "secrets")

    # --- state on the host -------------------------------------------------------------------------------------

    def container(self):
        return container_or_none(self.client, self.spec["name"])

    def read_spec_file(self, name):
        try:
            with open(os.path.join(self.host_dir, name), encoding="utf-8") as handle:
                return json.load(handle)
        except (OSError, ValueError):
            return None

    def _write_spec_file(self, name, spec):
        if self.check_mode:
            return
        os.makedirs(self.host_dir, mode=0o755, exist_ok=True)
        replace_file(os.path.join(self.host_dir, name), json.dumps(spec, indent=2, sort_keys=True) + "\n")

    def secrets_digest(self):
        if not self.spec.get("secret_files"):
            return ""
        salt = host_salt(self.secrets_dir, self.check_mode)
        return secrets_digest(salt, {kind: self.secrets.get(kind, "") for kind in self.spec["secret_files"].values()})

    def ensure_host_files(self):
        """Directories the mounts need, and the root-only secret files; True when something changed."""
        changed = False
        for mount in self.spec["mounts"]:
            if mount["target"] == "/run/datacrunch-sglang":
                continue
            if not os.path.isdir(mount["source"]):
                changed = True
                if not self.check_mode:
                    os.makedirs(mount["source"], mode=0o755, exist_ok=True)
        if not self.spec.get("secret_files"):
            return changed
        if not os.path.isdir(self.host_dir):
            changed = True
            if not self.check_mode:
                os.makedirs(self.host_dir, mode=0o755, exist_ok=True)
        changed |= ensure_private_dir(self.secrets_dir, self.check_mode)
        for file_name, kind in sorted(self.spec["secret_files"].items()):
            value = self.secrets.get(kind)
            if not value:
                raise ServerError(
                    "the launch spec expects the %s in %s, but none was given (set %s)"
                    % (kind, file_name, "sglang_api_key" if kind == "api_key" else "sglang_hf_token")
                )
            content = server_config_yaml(value) if file_name == SERVER_CONFIG_FILE else value + "\n"
            if os.path.isdir(self.secrets_dir) or not self.check_mode:
                changed |= write_private_file(os.path.join(self.secrets_dir, file_name), content, self.check_mode)
            else:
                changed = True
        if os.path.isdir(self.secrets_dir):
            for stale in sorted(os.listdir(self.secrets_dir)):
                if stale.startswith(".") or stale in self.spec["secret_files"]:
                    continue
                changed |= remove_file(os.path.join(self.secrets_dir, stale), self.check_mode)
        return changed

    # --- image ---------------------------------------------------------------------------------------------------

    def local_image(self):
        try:
            return self.client.images.get(self.spec["image"])
        except ImageNotFound:
            return None

    def ensure_image(self, pull):
        """Pull per policy before anything stops: the server is down only for the swap."""
        try:
            image, actions = ensure_image(self.client, self.spec["image"], pull, self.check_mode)
        except ImagePullError as exc:
            raise ServerError(str(exc)) from None
        self.actions.extend(actions)
        return image

    # --- comparing -----------------------------------------------------------------------------------------------

    def differences(self, container, image, digest):
        """Why the container is not the one the spec wants ([] when it is)."""
        if container is None:
            return ["absent"]
        labels = container.labels or {}
        reasons = []
        if labels.get(LABEL_SPEC_HASH) != self.spec["spec_hash"]:
            reasons.append("spec changed (%s -> %s)" % ((labels.get(LABEL_SPEC_HASH) or "none")[:12],
                                                        self.spec["spec_hash"][:12]))
        if labels.get(LABEL_SECRETS_DIGEST, "") != digest:
            reasons.append("secrets changed")
        if image is not None and container.attrs.get("Image") != image.id:
            reasons.append("image %s now points to another image id" % self.spec["image"])
        return reasons

    def diff(self, container):
        before = {}
        if container is not None:
            stored = self.read_spec_file(SPEC_FILE)
            if stored and stored.get("spec_hash") == (container.labels or {}).get(LABEL_SPEC_HASH):
                before = diff_view(stored)
            else:
                config = container.attrs.get("Config") or {}
                before = {
                    "image": config.get("Image"),
                    "command": list(config.get("Cmd") or []),
                    "labels": dict(sorted((config.get("Labels") or {}).items())),
                }
        return {"before": before, "after": diff_view(self.spec)}

    # --- acting --------------------------------------------------------------------------------------------------

    def check_port_free(self, container):
        """Refuse before stopping anything when a foreign process holds the serving port."""
        if self.spec["readiness"]["kind"] != "http":
            return
        ours = set()
        if container is not None and container.status == "running":
            pid = (container.attrs.get("State") or {}).get("Pid")
            if pid:
                ours.add(pid)
        for holder in listeners(self.spec["port"]):
            if holder["pid"] is not None and ours.intersection(process_ancestors(holder["pid"])):
                continue
            if holder["pid"] is None and ours:
                continue
            raise ServerError(
                "port %d on this host is held by another process (pid %s: %s), not by a datacrunch.sglang container; "
                "set sglang_port to a port nothing on the host listens on"
                % (self.spec["port"], holder["pid"], holder["command"][:200] or "unknown")
            )

    def check_bind_address(self):
        """Refuse an explicit bind address that is not one of this host's: the new server could never listen."""
        address = (self.spec.get("bind_host") or "").strip("[]")
        if not address or address in ("0.0.0.0", "::"):  # noqa: S104 - every interface is always bindable
            return
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        try:
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.bind((address, 0))
        except OSError as exc:
            raise ServerError(
                "sglang_server_bind_host=%s is not an address of this host (%s); the running server is kept. Set it "
                "to one of the host's addresses, or leave it empty for the private address" % (address, exc.strerror)
            ) from None

    def check_model_present(self, container):
        """Before a running server is replaced: the new spec's weights must already be complete on this host."""
        if container is None or container.status != "running":
            return
        hf_home = (self.spec.get("env") or {}).get("HF_HOME")
        problem = snapshot_problem(hf_home, self.spec.get("model") or "", self.spec.get("revision") or "")
        if problem:
            raise ServerError(
                "the running server is kept: the new spec loads %s at %s, but %s on this host. Prefetch the weights "
                "first with the datacrunch.sglang.model_cache role (deploy.yml runs it before the server), or point "
                "sglang_hf_home at a cache that holds them"
                % (self.spec.get("model"), self.spec.get("revision") or "main", problem)
            )

    def remove(self, container):
        if container is None:
            return False
        if not self.check_mode:
            with contextlib.suppress(APIError, NotFound):
                self._stop_sequence(container)
        self.actions.append("removed %s" % container.short_id)
        if not self.check_mode:
            with contextlib.suppress(NotFound):
                container.remove(force=True)
        return True

    def _serving_rank0(self, container):
        """Whether the container is rank 0 with its HTTP server up (SGLang then handles SIGTERM by draining)."""
        current = self.read_spec_file(SPEC_FILE)
        if not current or current.get("spec_hash") != (container.labels or {}).get(LABEL_SPEC_HASH):
            current = self.spec
        readiness = current.get("readiness") or {}
        return readiness.get("kind") == "http" and port_open(readiness["base_url"])

    def _stop_sequence(self, container):
        """Stop as SGLang lets itself be stopped: SIGTERM and time to drain when rank 0 serves, else SIGTERM and a
        short wait before the kill it will need. Says when a kill was needed."""
        if container.status not in ("running", "restarting", "paused"):
            return
        serving = self._serving_rank0(container)
        grace = SERVING_STOP_GRACE + self.drain_timeout if serving else SILENT_STOP_GRACE
        asked = time.monotonic()
        container.stop(timeout=grace)
        container.reload()
        state = container.attrs.get("State") or {}
        seconds = round(time.monotonic() - asked, 1)
        if state.get("ExitCode") == 137 and not state.get("OOMKilled"):
            why = ("it was serving and did not finish its requests and exit in time; requests in flight were cut"
                   if serving else "SGLang ignores SIGTERM while it loads and on ranks >= 1")
            self.notices.append("%s did not stop on SIGTERM within %d s (%s): killed" % (self.spec["name"], grace, why))
            self.actions.append("killed %s after %s s" % (container.short_id, seconds))
        else:
            self.actions.append("stopped %s in %s s (exit code %s)" % (container.short_id, seconds,
                                                                       state.get("ExitCode")))

    def create(self, digest):
        spec = self.spec
        labels = dict(spec["labels"])
        if digest:
            labels[LABEL_SECRETS_DIGEST] = digest
        self.actions.append("created %s" % spec["name"])
        if self.check_mode:
            return None
        container = self.client.containers.create(
            image=spec["image"],
            command=spec["command"],
            name=spec["name"],
            environment=spec["env"],
            labels=labels,
            network_mode=spec["network_mode"],
            ipc_mode=spec["ipc_mode"],
            shm_size=spec["shm_size"],
            ulimits=[Ulimit(name=u["name"], soft=u["soft"], hard=u["hard"]) for u in spec["ulimits"]],
            device_requests=[DeviceRequest(count=-1, capabilities=[["gpu"]])] if spec.get("gpus") else None,
            devices=["%s:%s:rwm" % (dev, dev) for dev in spec.get("devices") or []] or None,
            cap_add=spec.get("cap_add") or None,
            restart_policy={"Name": spec["restart_policy"]},
            log_config=LogConfig(type=spec["log_config"]["type"], config=spec["log_config"]["config"]),
            mounts=[Mount(target=m["target"], source=m["source"], type="bind", read_only=m["read_only"])
                    for m in spec["mounts"]],
            detach=True,
        )
        self._write_spec_file(SPEC_FILE, spec)
        container.start()
        container.reload()
        self.actions.append("started %s" % container.short_id)
        return container

    def start_existing(self, container):
        self.actions.append("started %s" % container.short_id)
        if not self.check_mode:
            container.start()
            container.reload()
        return container

    def stop(self, container):
        if container is None or container.status not in ("running", "restarting", "paused"):
            return False
        if self.check_mode:
            self.actions.append("stopped %s" % container.short_id)
        else:
            self._stop_sequence(container)
        return True

    # --- readiness -----------------------------------------------------------------------------------------------

    def logs_tail(self, container, lines=LOG_TAIL):
        try:
            text = container.logs(tail=lines).decode(errors="replace")
        except (APIError, NotFound):
            return ""
        text = redact(text, list(self.secrets.values()))
        # Some servers log all their arguments on one line: keep each line readable in a failure message.
        return "\n".join(line if len(line) <= 400 else line[:400] + " ..." for line in text.splitlines())

    def crash_report(self, container, state):
        """(how it ended, log excerpt): a stop of its own is a crash whatever the exit code; the excerpt holds the
        first error of every rank, then the last lines."""
        try:
            text = container.logs(tail=CRASH_LOG_TAIL).decode(errors="replace")
        except (APIError, NotFound):
            text = ""
        text = redact(text, list(self.secrets.values()))
        return describe_exit(state.get("ExitCode"), state.get("OOMKilled"), text), excerpt(text, tail=LOG_TAIL)

    def progress(self, container):
        """(phase, detail) of the server's start-up, from its log."""
        try:
            text = container.logs(tail=PROGRESS_LOG_TAIL).decode(errors="replace")
        except (APIError, NotFound):
            return "unknown", ""
        phase, detail = startup_progress(redact(text, list(self.secrets.values())))
        return phase, detail

    def wait_ready(self, container, timeout, round_seconds, poll=2.0):
        """Wait until ready, or until this round ends; a dict with ready, detail (what the probe saw), phase and
        progress (the start-up step the log shows), started_at. Raises ServerError when the container exits or
        restarts, or is not ready within timeout seconds of its start."""
        call_started = time.time()
        if round_seconds:
            poll = min(poll, max(round_seconds / 2.0, 0.5))
        container.reload()
        started_at = parse_docker_time(container.attrs["State"].get("StartedAt")) or call_started
        restarts = container.attrs.get("RestartCount", 0)
        detail = "starting"
        while True:
            container.reload()
            state = container.attrs["State"]
            if state.get("Status") != "running":
                how, logs = self.crash_report(container, state)
                raise ServerError(
                    "container %s %s while starting (now %s)" % (self.spec["name"], how, state.get("Status")),
                    exit_code=state.get("ExitCode"),
                    logs=logs,
                )
            if container.attrs.get("RestartCount", 0) != restarts or (
                parse_docker_time(state.get("StartedAt")) or started_at
            ) != started_at:
                # Running again: State.ExitCode is the new run's (0), not the crashed one's.
                how, logs = self.crash_report(container, dict(state, ExitCode=None) if state.get("Status") == "running"
                                              else state)
                raise ServerError(
                    "container %s %s and was restarted while starting: a crash loop" % (self.spec["name"], how),
                    restart_count=container.attrs.get("RestartCount", 0),
                    exit_code=state.get("ExitCode"),
                    logs=logs,
                )
            ready, detail = probe_ready(self.spec["readiness"])
            now = time.time()
            if ready:
                return {"ready": True, "detail": detail, "phase": "ready", "progress": "", "started_at": started_at}
            if now - started_at > timeout:
                phase, progress = self.progress(container)
                raise ServerError(
                    "container %s is running but not ready %d s after it started (%s; start-up step: %s%s); the "
                    "limit is sglang_server_ready_timeout=%d"
                    % (self.spec["name"], now - started_at, detail, phase, (", " + progress) if progress else "",
                       timeout),
                    phase=phase,
                    logs=self.logs_tail(container),
                )
            if round_seconds and now - call_started >= round_seconds:
                phase, progress = self.progress(container)
                return {"ready": False, "detail": detail, "phase": phase, "progress": progress,
                        "started_at": started_at, "seconds_since_start": round(now - started_at)}
            time.sleep(poll)

    def hung_reason(self, container):
        """Why a running rank 0 that served must restart although its spec is unchanged, or ''.

        Judged from rank 0's own generation (/health_generate, bounded by PROBE_TIMEOUT), never from /health nor
        from a rank >= 1: SGLang's /health and the dummy health server of ranks >= 1 answer 200 while the unit hangs
        (a node lost mid-way leaves every collective waiting; idle, that lasts Gloo's two-hour timeout). A server
        that never became ready is still starting and is left to the readiness wait."""
        if container is None or container.status != "running" or self.spec["readiness"]["kind"] != "http":
            return ""
        record = self.read_spec_file(READY_RECORD_FILE) or {}
        if record.get("container_id") != container.id:
            return ""
        ready, detail = probe_ready(self.spec["readiness"])
        if ready or detail.startswith("port closed"):
            return ""
        return ("it served, but its generation probe fails now (%s): the unit hangs (a lost node, a stuck "
                "collective); its ranks restart together" % detail)

    def record_ready(self, container, started_at):
        """Remember when this container became ready, and which spec last served (for rollback)."""
        record = self.read_spec_file(READY_RECORD_FILE) or {}
        if record.get("container_id") == container.id:
            return record.get("seconds_to_ready")
        seconds = round(time.time() - started_at, 1)
        if self.check_mode:
            return seconds
        self._write_spec_file(READY_RECORD_FILE, {"container_id": container.id, "seconds_to_ready": seconds,
                                                  "spec_hash": self.spec["spec_hash"]})
        last_ready = self.read_spec_file(READY_SPEC_FILE)
        if not last_ready or last_ready.get("spec_hash") != self.spec["spec_hash"]:
            if last_ready:
                self._write_spec_file(PREVIOUS_SPEC_FILE, last_ready)
            self._write_spec_file(READY_SPEC_FILE, self.spec)
        return seconds

    def rollback_spec(self):
        """The spec that last served on this host, when the current container runs another one; else None."""
        current = self.container()
        current_hash = (current.labels or {}).get(LABEL_SPEC_HASH) if current is not None else None
        candidate = self.read_spec_file(READY_SPEC_FILE)
        if candidate and candidate.get("spec_hash") != current_hash and spec_hash(candidate) == candidate["spec_hash"]:
            return candidate
        return None

    def drain(self, container, api_key, timeout):
        """Wait until the running server (rank 0 of its unit) has no request in flight, up to timeout."""
        if container is None or container.status != "running":
            return {"drained": True, "seconds": 0, "skipped": "not running"}
        current = self.read_spec_file(SPEC_FILE)
        if not current or current.get("spec_hash") != (container.labels or {}).get(LABEL_SPEC_HASH):
            current = self.spec
        if current["readiness"]["kind"] != "http":
            return {"drained": True, "seconds": 0, "skipped": "not rank 0"}
        drained, seconds, load = wait_drained(current["readiness"]["base_url"], api_key, timeout)
        self.actions.append("drained %s in %s s" % (container.short_id, seconds) if drained
                            else "drain timed out after %s s" % seconds)
        return {"drained": drained, "seconds": seconds, "load": load}

    def smoke(self, api_key):
        return smoke(self.spec["readiness"]["base_url"], api_key)


def ours(container):
    return is_ours(container.labels)
