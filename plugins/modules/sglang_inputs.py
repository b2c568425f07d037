#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: sglang_inputs
short_description: Check the inputs of every role a deploy runs, on the controller, before any host changes
version_added: 0.1.0
author: datacrunch.sglang maintainers (@datacrunch-sglang)
description:
  - Checks the variables the user set (inventory, group_vars, C(-e)) against the C(meta/argument_specs.yml) of every
    role in O(roles) at once, instead of each role checking its own when it starts, after the roles before it have
    changed the host. Booleans are strict (C(ture) is refused, not read as false).
  - Then checks what a type cannot express - TCP ports, Docker sizes (C(sglang_server_shm_size)), IP addresses
    (C(sglang_server_bind_host), C(sglang_private_ip)) and a user-chosen C(sglang_api_key) (not blank, no whitespace,
    not starting with C(-), at least 16 characters).
  - With O(whole_units), refuses a play that leaves out part of a multi-node unit (for example with C(--limit)) and a
    unit larger than Ansible's C(forks), since every node of a unit must run the rendezvous test and the launch at
    the same time.
  - Each error names the variable, the value (never a secret's) and the fix. Contacts no host.
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Checks the same in check mode.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
  idempotent:
    description: When run twice in a row outside check mode, with the same arguments, the second invocation
      indicates no change.
    support: full
    details: Never changes anything.
options:
  roles:
    description: The roles (of this collection) whose inputs to check.
    type: list
    elements: str
    default: [sglang, gpu_host, sglang_firewall, host_venv, model_cache, sglang_server, sglang_tls]
  whole_units:
    description: Refuse a play that leaves out part of a multi-node unit, or whose C(forks) is smaller than a unit.
    type: bool
    default: true
notes:
  - Runs on the controller only (an action plugin); the role M(datacrunch.sglang.sglang_server) still checks its own
    spec when it starts.
"""

EXAMPLES = r"""
- name: Check the inputs of every role before anything changes on a host
  datacrunch.sglang.sglang_inputs:
"""

RETURN = r"""
checked:
  description: The variables that were checked.
  returned: success
  type: list
  elements: str
errors:
  description: Each refused input, one sentence naming the variable, the value and the fix.
  returned: failure
  type: list
  elements: str
"""
