# -*- coding: utf-8 -*-
# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: rollout_batches
short_description: Plan a rollout by serving unit
version_added: 0.1.0
author: datacrunch.sglang maintainers (@datacrunch-sglang)
description:
  - Groups hosts into serving units (a single-node host, or every host of one C(sglang_cluster), ordered by rank) and
    units into batches, for a play that rolls a change one batch at a time with C(serial).
  - A host's cluster and rank come from its fleet plan (fact C(sglang_plan)), else from its C(sglang_launch_spec).
positional: _input, hostvars, batch
options:
  _input:
    description: Hosts of the play.
    type: list
    elements: str
    required: true
  hostvars:
    description: The C(hostvars) of the play.
    type: raw
    required: true
  batch:
    description: Units per batch, a number or a percentage of the units (C(25%)).
    type: raw
    default: 1
"""

EXAMPLES = r"""
- name: Plan the rollout
  ansible.builtin.set_fact:
    rollout: "{{ ansible_play_hosts | datacrunch.sglang.rollout_batches(hostvars, 1) }}"
"""

RETURN = r"""
_value:
  description: C(units), C(batches), C(order) (hosts in unit order), C(serial) (hosts per batch), C(description).
  type: dict
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.datacrunch.sglang.plugins.module_utils.plan.rollout import RolloutError, plan_rollout


def rollout_batches(hosts, hostvars, batch=1):
    def host_cluster(host):
        host_vars = hostvars[host]
        # The unit and rank of the fleet plan (fact sglang_plan); the launch spec for hosts planned before it.
        plan = host_vars.get("sglang_plan") or host_vars.get("sglang_launch_spec") or {}
        cluster = plan.get("cluster", "") or ""
        return str(cluster), int(plan.get("rank", 0) or 0)

    try:
        return plan_rollout(list(hosts), host_cluster, batch)
    except RolloutError as exc:
        raise AnsibleFilterError(str(exc)) from None


class FilterModule:
    def filters(self):
        return {"rollout_batches": rollout_batches}
