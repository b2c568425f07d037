# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: gpu_fabric_threshold
short_description: Smallest healthy all-reduce bus bandwidth for a host's GPU count
version_added: 0.1.0
author: datacrunch.sglang maintainers (@datacrunch-sglang)
description:
  - A fraction of the bus bandwidth measured on H200 hosts of that many NVLink-joined GPUs (GB/s, bf16, 1 GiB).
  - 0 for fewer than two GPUs.
options:
  _input:
    description: Number of GPUs in the test.
    type: int
    required: true
  fraction:
    description: Fraction of the reference that still counts as healthy.
    type: float
    default: 0.8
"""

EXAMPLES = r"""
- name: Threshold of an 8-GPU host
  ansible.builtin.debug:
    msg: "{{ 8 | datacrunch.sglang.gpu_fabric_threshold }}"
"""

RETURN = r"""
_value:
  description: Bus bandwidth in GB/s.
  type: float
"""

from ansible_collections.datacrunch.sglang.plugins.module_utils.gpu.checks import fabric_threshold


def gpu_fabric_threshold(gpu_count, fraction=0.8):
    return fabric_threshold(int(gpu_count), float(fraction))


class FilterModule:
    def filters(self):
        return {"gpu_fabric_threshold": gpu_fabric_threshold}
