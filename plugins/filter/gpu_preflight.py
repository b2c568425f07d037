# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: gpu_preflight
short_description: Judge a GPU host from the facts gpu_info gathered
version_added: 0.1.0
author: datacrunch.sglang maintainers (@datacrunch-sglang)
description:
  - Runs every preflight check of the C(datacrunch.sglang.gpu_host) role on the controller, from the result of
    M(datacrunch.sglang.gpu_info) and the requirements the role builds from the profile and its variables.
  - Returns the checks (name, status pass/fail/warn/skip/degraded, summary, fix), whether the host failed or is
    degraded, a printable table, and the C(sglang_gpu) fact the launch reads.
positional: requirements
options:
  _input:
    description: The registered result of M(datacrunch.sglang.gpu_info).
    type: dict
    required: true
  requirements:
    description: What the host must offer (see C(plugins/module_utils/gpu/checks.py) for the keys).
    type: dict
    required: true
  host:
    description: Name shown in the table's first line.
    type: str
    default: host
  private_ip:
    description: C(sglang_private_ip), preferred over the discovered address.
    type: str
    default: ""
"""

EXAMPLES = r"""
- name: Judge the host
  ansible.builtin.set_fact:
    preflight: "{{ gathered | datacrunch.sglang.gpu_preflight(requirements, host=inventory_hostname) }}"
"""

RETURN = r"""
_value:
  description: C(checks), C(failed), C(degraded), C(counts), C(table) (lines), C(failures) (lines), C(sglang_gpu).
  type: dict
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.datacrunch.sglang.plugins.module_utils.gpu.checks import (
    evaluate,
    render_table,
    sglang_gpu,
)


def gpu_preflight(facts, requirements, host="host", private_ip=""):
    if not isinstance(facts, dict) or not isinstance(requirements, dict):
        raise AnsibleFilterError("gpu_preflight expects the gpu_info result and a requirements mapping")
    result = evaluate(facts, requirements)
    result["table"] = render_table(host, result)
    result["failures"] = [
        f"{check['name']}: {check['summary']}" + (f" -> fix: {check['fix']}" if check["fix"] else "")
        for check in result["checks"]
        if check["status"] in ("fail", "degraded")
    ]
    result["sglang_gpu"] = sglang_gpu(facts, private_ip or requirements.get("private_ip") or "")
    return result


class FilterModule:
    def filters(self):
        return {"gpu_preflight": gpu_preflight}
