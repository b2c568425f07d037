#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: sglang_container
short_description: Run the SGLang server container of a launch spec and wait until it serves
version_added: 0.1.0
author: datacrunch.sglang maintainers (@datacrunch-sglang)
description:
  - Makes the SGLang container on the host match a launch spec built by M(datacrunch.sglang.sglang_launch_spec).
    The container's C(datacrunch.sglang.spec-hash) label tells whether it is the wanted one; it is recreated only
    when the spec, the secrets or the image behind the tag changed.
  - Pulls the image before it stops anything, so that the server is down only for the swap. Refuses to start when a
    foreign process holds the serving port, before stopping the running server.
  - Secrets (API key, Hugging Face token) are written to root-only files mounted read-only into the container; they
    never appear on the command line, in the container's environment or in the module's output. The container
    carries a keyed digest of them, so a changed key restarts the server.
  - Waits for readiness (port open, then C(GET /health_generate) 200 on rank 0; running on other ranks), failing at
    once with the exit code and the last log lines when the container exits or restarts while starting.
  - A running rank 0 that served (its container became ready here) and now fails C(GET /health_generate) is hung
    and is restarted although its spec is unchanged; C(/health) and the health servers of ranks >= 1 answer 200
    while a multi-node unit hangs, so they are never asked.
  - Keeps the spec of the running container, of the last one that served, and of the one before on the host, for
    C(--diff) and O(rollback).
  - Needs the docker Python SDK on the host (role M(datacrunch.sglang.host_venv) provides it).
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: >-
      Reports what would be pulled, created, started or removed, and does none of it. No readiness wait: an
      unchanged, running server is probed once (read-only) and reported ready or not.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
    details: Shows image, command, environment, mounts, restart policy and labels before and after.
  idempotent:
    description: When run twice in a row outside check mode, with the same arguments, the second invocation
      indicates no change.
    support: full
    details: A container that matches the spec and runs is left alone (C(changed=false)).
options:
  spec:
    description: The launch spec (the C(sglang_launch_spec) fact).
    type: dict
    required: true
  state:
    description:
      - C(started) makes the container match the spec and run. C(restarted) recreates it even when it matches.
      - C(stopped) stops it; C(absent) removes it. C(pulled) only makes sure the image is on the host.
      - "How a server is stopped (also before it is replaced): SGLang runs as PID 1 of its container. Once rank 0
        serves, SIGTERM makes it finish its running requests (it checks every 5 s) and stop its schedulers (up to
        15 s), so it gets 25 s plus O(drain_timeout) before it is killed. While it loads, and on ranks >= 1, SGLang
        ignores SIGTERM (no handler yet, and PID 1 ignores signals it does not handle), so it is killed after 5 s.
        A kill is reported as a warning and in C(actions)."
      - C(drained) waits, up to O(drain_timeout), until the running server has no request in flight; it changes
        nothing.
    type: str
    choices: [started, restarted, stopped, absent, pulled, drained]
    default: started
  api_key:
    description: API key of the endpoint, written to the root-only config file the spec names.
    type: str
    default: ""
  hf_token:
    description: Hugging Face token, written to the root-only token file the spec names.
    type: str
    default: ""
  pull:
    description: When to pull the image. C(missing) pulls only when the image is not on the host.
    type: str
    choices: [missing, always, never]
    default: missing
  wait:
    description: Wait until the server is ready (state C(started) and C(restarted)).
    type: bool
    default: true
  wait_timeout:
    description:
      - Seconds from the container's start until it must be ready. A cold DeepSeek-R1 load with DeepGEMM JIT
        takes 30-60 minutes; the default allows 90.
    type: int
    default: 5400
  wait_round:
    description:
      - Return after this many seconds of waiting with C(ready=false) instead of failing, so that a caller can
        report progress and watch other ranks between rounds. 0 waits until ready or O(wait_timeout).
    type: int
    default: 0
  recreate:
    description: Recreate the container even when it matches the spec.
    type: bool
    default: false
  smoke:
    description:
      - Once ready, send one chat completion through the OpenAI API and check that the API key is enforced.
    type: bool
    default: false
  rollback:
    description:
      - Instead of O(spec), run the spec that last served on this host, when the current container runs another
        one. Changes nothing (and says so in C(msg)) when the host keeps no such spec.
      - The restored server is waited for at least twice as long as it took to become ready the last time it
        served on this host, even when O(wait_timeout) is shorter (it was set for the spec that failed).
    type: bool
    default: false
  remove_files:
    description: With C(state=absent), also remove the host's spec and secret files of this server.
    type: bool
    default: false
  drain_timeout:
    description:
      - Before a running server is replaced, wait up to this many seconds until it has no running or queued
        request (from its C(/metrics)), so that a rollout does not cut requests short. 0 replaces it at once.
      - Also added to the time a serving rank 0 gets to stop after SIGTERM (see O(state)).
    type: int
    default: 0
  only_wait:
    description:
      - Only wait for the existing container (no pull, no comparison, no start). Fails when the container is gone
        or not running, instead of starting it again, so that a crash between two rounds of waiting is reported,
        not hidden.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Run the server of the launch spec and wait until it serves
  datacrunch.sglang.sglang_container:
    spec: "{{ sglang_launch_spec }}"
    api_key: "{{ sglang_api_key }}"
    smoke: true

- name: Pull the new image ahead of a restart
  datacrunch.sglang.sglang_container:
    spec: "{{ sglang_launch_spec }}"
    state: pulled
    pull: always

- name: Restore the spec that served before
  datacrunch.sglang.sglang_container:
    spec: "{{ sglang_launch_spec }}"
    api_key: "{{ sglang_api_key }}"
    rollback: true
"""

RETURN = r"""
container_id:
  description: Id of the container.
  returned: when a container exists
  type: str
image_id:
  description: Id of the image the container runs.
  returned: when a container exists
  type: str
spec_hash:
  description: Hash of the spec the container runs.
  returned: always
  type: str
endpoint:
  description: Base URL of the server.
  returned: always
  type: str
ready:
  description: Whether the server answered its readiness probe.
  returned: always
  type: bool
readiness:
  description: What the last readiness probe saw.
  returned: when waited
  type: str
phase:
  description: >-
    The start-up step the server's log shows (distributed init, loading weights, compiling DeepGEMM kernels,
    capturing CUDA graphs, warming up, ready).
  returned: when waited
  type: str
progress:
  description: What the log says of that step, for example C(loading safetensors 73/163 (45%)).
  returned: when waited
  type: str
seconds_since_start:
  description: Seconds since the container started, when a round ended before the server was ready.
  returned: when a wait round ended before ready
  type: int
seconds_to_ready:
  description: Seconds from container start until ready.
  returned: when ready
  type: float
actions:
  description: What the module did (or would do in check mode).
  returned: always
  type: list
  elements: str
reasons:
  description: Why the container was (or would be) recreated.
  returned: always
  type: list
  elements: str
smoke:
  description: Result of the smoke request - model, latency_s, prompt, reply, usage.
  returned: with smoke
  type: dict
drain:
  description: How draining went - drained, seconds, and the last load seen.
  returned: when a running server was drained before its replacement
  type: dict
logs:
  description: Last log lines of the container, secrets redacted.
  returned: on failure
  type: list
  elements: str
"""

import os
import shutil

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.datacrunch.sglang.plugins.module_utils.common.docker_sdk import DockerException
from ansible_collections.datacrunch.sglang.plugins.module_utils.common.module_io import exit_with_result
from ansible_collections.datacrunch.sglang.plugins.module_utils.launch.container import (
    READY_RECORD_FILE,
    ServerContainer,
    ServerError,
)
from ansible_collections.datacrunch.sglang.plugins.module_utils.launch.sglang_http import probe_ready


def _run(module):
    params = module.params
    secrets = {"api_key": params["api_key"], "hf_token": params["hf_token"]}
    server = ServerContainer(params["spec"], secrets, module.check_mode)
    server.drain_timeout = params["drain_timeout"]
    wait_timeout = params["wait_timeout"]
    result = {"changed": False, "ready": False, "actions": server.actions, "reasons": [], "warnings": server.notices}

    if params["rollback"]:
        previous = server.rollback_spec()
        if previous is None:
            result["msg"] = "nothing to restore: this host keeps no other spec that served before"
            result.update(spec_hash=server.spec["spec_hash"], endpoint=server.spec["endpoint"])
            return result
        server.spec = previous
        result["msg"] = "restored the spec that served before (%s, %s)" % (
            previous["image"],
            previous["spec_hash"][:12],
        )
        # A timeout that was too short for the new spec must not fail the old one too: give it at least twice
        # the time it took to become ready the last time it served here.
        served = server.read_spec_file(READY_RECORD_FILE) or {}
        if served.get("spec_hash") == previous["spec_hash"] and served.get("seconds_to_ready"):
            wait_timeout = max(wait_timeout, int(2 * float(served["seconds_to_ready"])) + 1)
            result["wait_timeout"] = wait_timeout
    spec = server.spec
    result.update(spec_hash=spec["spec_hash"], endpoint=spec["endpoint"])
    container = server.container()
    state = params["state"]

    if params["only_wait"]:
        if container is None:
            raise ServerError("container %s is gone from this host" % spec["name"])
        return _wait(module, server, container, result, wait_timeout)

    if state == "pulled":
        server.ensure_image("always" if params["pull"] == "always" else "missing")
        result["changed"] = bool(server.actions)
        return result
    if state == "absent":
        result["changed"] = server.remove(container)
        if params["remove_files"]:
            result["changed"] |= _remove_host_files(server, module.check_mode)
        return result
    if state == "stopped":
        result["changed"] = server.stop(container)
        return result
    if state == "drained":
        if not module.check_mode:
            result["drain"] = server.drain(container, params["api_key"], params["drain_timeout"])
        return result

    image = server.ensure_image(params["pull"])
    result["changed"] |= server.ensure_host_files()
    digest = server.secrets_digest()
    reasons = server.differences(container, image, digest)
    if not reasons:
        reasons = [reason for reason in [server.hung_reason(container)] if reason]
    if state == "restarted" or params["recreate"]:
        reasons.append("restart requested")
    result["reasons"] = reasons
    if module._diff and reasons:
        result["diff"] = server.diff(container)
    if reasons:
        server.check_port_free(container)
        server.check_bind_address()
        server.check_model_present(container)
        if params["drain_timeout"] and not module.check_mode:
            result["drain"] = server.drain(container, params["api_key"], params["drain_timeout"])
        server.remove(container)
        container = server.create(digest)
        result["changed"] = True
    elif container.status not in ("running", "restarting"):
        container = server.start_existing(container)
        result["changed"] = True
    result["changed"] |= bool(server.actions)

    if container is None:  # check mode: nothing was created
        return result
    if not params["wait"]:
        result.update(container_id=container.id, image_id=container.attrs.get("Image"))
        return result
    return _wait(module, server, container, result, wait_timeout)


def _wait(module, server, container, result, wait_timeout):
    params = module.params
    spec = server.spec
    result.update(container_id=container.id, image_id=container.attrs.get("Image"))
    if module.check_mode:
        # A read-only look: an unchanged, running server that answers is ready; nothing waits in check mode.
        if not result["changed"] and container.status == "running":
            ready, detail = probe_ready(spec["readiness"])
            phase, progress = ("ready", "") if ready else server.progress(container)
            result.update(ready=ready, readiness=detail, phase=phase, progress=progress)
        return result
    outcome = server.wait_ready(container, wait_timeout, params["wait_round"])
    result.update(ready=outcome["ready"], readiness=outcome["detail"], phase=outcome["phase"],
                  progress=outcome["progress"])
    if "seconds_since_start" in outcome:
        result["seconds_since_start"] = outcome["seconds_since_start"]
    if outcome["ready"]:
        result["seconds_to_ready"] = server.record_ready(container, outcome["started_at"])
        if params["smoke"] and spec["readiness"]["kind"] == "http":
            outcome = server.smoke(params["api_key"])
            result["smoke"] = outcome
            if not outcome.get("ok"):
                raise ServerError(
                    "the server is ready but the smoke request failed: %s" % outcome.get("error"),
                    logs=server.logs_tail(container),
                )
    return result


def _remove_host_files(server, check_mode):
    if not server.host_dir.startswith("/") or not os.path.isdir(server.host_dir):
        return False
    if not check_mode:
        shutil.rmtree(server.host_dir)
    return True


def main():
    module = AnsibleModule(
        argument_spec={
            "spec": {"type": "dict", "required": True},
            "state": {"type": "str", "default": "started",
                      "choices": ["started", "restarted", "stopped", "absent", "pulled", "drained"]},
            "api_key": {"type": "str", "default": "", "no_log": True},
            "hf_token": {"type": "str", "default": "", "no_log": True},
            "pull": {"type": "str", "default": "missing", "choices": ["missing", "always", "never"]},
            "wait": {"type": "bool", "default": True},
            "wait_timeout": {"type": "int", "default": 5400},
            "wait_round": {"type": "int", "default": 0},
            "recreate": {"type": "bool", "default": False},
            "smoke": {"type": "bool", "default": False},
            "rollback": {"type": "bool", "default": False},
            "remove_files": {"type": "bool", "default": False},
            "only_wait": {"type": "bool", "default": False},
            "drain_timeout": {"type": "int", "default": 0},
        },
        supports_check_mode=True,
    )
    try:
        result = _run(module)
    except ServerError as exc:
        evidence = dict(exc.evidence)
        if "logs" in evidence:
            evidence["logs"] = evidence["logs"].splitlines()
        module.fail_json(msg=str(exc), **evidence)
    except DockerException as exc:
        module.fail_json(msg="the Docker engine refused: %s" % str(exc).strip()[:1000])
    exit_with_result(module, result)


if __name__ == "__main__":
    main()
