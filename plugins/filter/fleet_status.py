# -*- coding: utf-8 -*-
# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: fleet_status
short_description: Render the fleet table of SGLang servers
version_added: 0.1.0
author: datacrunch.sglang maintainers (@datacrunch-sglang)
description:
  - Turns the M(datacrunch.sglang.sglang_server_info) results of every host into an aligned table - host, unit,
    unit health, model, profile, image, container state, ready, uptime, running and queued requests, GPU memory.
  - A multi-node unit is judged as a whole - C(ok) when every rank runs and rank 0 is ready, C(degraded) when only
    part of it runs, C(down) when none does.
positional: _input
options:
  _input:
    description: Results keyed by host.
    type: dict
    required: true
  rows:
    description: Return the rows as mappings instead of text lines.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Show the fleet
  ansible.builtin.debug:
    msg: "{{ statuses | datacrunch.sglang.fleet_status }}"
"""

RETURN = r"""
_value:
  description: Text lines (header first), or the rows as mappings with O(rows).
  type: list
"""

from ansible_collections.datacrunch.sglang.plugins.module_utils.plan.fleet_status import fleet_rows, fleet_table


def fleet_status(statuses, rows=False):
    return fleet_rows(statuses) if rows else fleet_table(statuses)


class FilterModule:
    def filters(self):
        return {"fleet_status": fleet_status}
