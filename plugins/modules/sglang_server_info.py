#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: sglang_server_info
short_description: Report what the SGLang server on a host is doing
version_added: 0.1.0
author: datacrunch.sglang maintainers (@datacrunch-sglang)
description:
  - Reads, without changing anything, the state of the server container that
    M(datacrunch.sglang.sglang_container) runs - container state, uptime, restarts, image, profile, unit and rank,
    readiness (rank 0 answers C(/health_generate); other ranks run), running and queued requests from
    C(/metrics), and the GPU memory in use on the host.
  - Optionally returns the container's last log lines, with the API key and token replaced by a mask.
  - Needs the docker Python SDK on the host (role M(datacrunch.sglang.host_venv) provides it).
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Reads only; runs the same in check mode.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
  idempotent:
    description: When run twice in a row outside check mode, with the same arguments, the second invocation
      indicates no change.
    support: full
    details: Never changes anything.
options:
  name:
    description: Name of the server container.
    type: str
    default: sglang-server
  secrets_dir:
    description: Host directory where the server's spec is kept.
    type: path
    default: /etc/datacrunch-sglang
  api_key:
    description: API key of the endpoint, for C(/metrics); also masked in the logs.
    type: str
    default: ""
  hf_token:
    description: Hugging Face token, only to mask it in the logs.
    type: str
    default: ""
  logs_tail:
    description: Return this many last log lines (-1 for all, 0 for none).
    type: int
    default: 0
"""

EXAMPLES = r"""
- name: Read the server's state
  datacrunch.sglang.sglang_server_info:
    api_key: "{{ sglang_server_api_key_value }}"
  register: server
"""

RETURN = r"""
exists:
  description: Whether the container exists.
  returned: always
  type: bool
state:
  description: Container state (running, exited, restarting, absent...).
  returned: always
  type: str
ready:
  description: Whether the server answered its readiness probe.
  returned: always
  type: bool
uptime_s:
  description: Seconds since the container started (0 when not running).
  returned: when the container exists
  type: int
running_requests:
  description: Requests being served, from /metrics (rank 0 with metrics on).
  returned: when available
  type: float
queued_requests:
  description: Requests waiting, from /metrics (summed over DP ranks; a per-priority breakdown is not added twice).
  returned: when available
  type: float
token_usage:
  description: >-
    KV cache usage (0 to 1) of the fullest DP rank, from /metrics. Each DP rank has its own KV pool and publishes
    its own series; the fullest one is what limits new requests.
  returned: when available
  type: float
token_usage_mean:
  description: KV cache usage averaged over the DP ranks.
  returned: when available
  type: float
gen_throughput:
  description: Generation throughput in tokens per second, summed over the DP ranks.
  returned: when available
  type: float
gpu_memory_used_mib:
  description: GPU memory in use on the host, all GPUs together.
  returned: always
  type: int
logs:
  description: Last log lines, secrets masked.
  returned: when logs_tail is not 0
  type: str
log_lines:
  description: How many lines RV(logs) holds.
  returned: when logs_tail is not 0
  type: int
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.datacrunch.sglang.plugins.module_utils.launch.container import ServerError
from ansible_collections.datacrunch.sglang.plugins.module_utils.launch.status import server_status


def main():
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "default": "sglang-server"},
            "secrets_dir": {"type": "path", "default": "/etc/datacrunch-sglang"},
            "api_key": {"type": "str", "default": "", "no_log": True},
            "hf_token": {"type": "str", "default": "", "no_log": True},
            "logs_tail": {"type": "int", "default": 0},
        },
        supports_check_mode=True,
    )
    params = module.params
    try:
        status = server_status(params["name"], params["secrets_dir"], params["api_key"], [params["hf_token"]],
                               params["logs_tail"])
    except ServerError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=False, **status)


if __name__ == "__main__":
    main()
