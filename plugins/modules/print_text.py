#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: print_text
short_description: Print text on the controller's screen as it is, or as a warning
version_added: 0.1.0
author: datacrunch.sglang maintainers (@datacrunch-sglang)
description:
  - Prints O(text) on the controller's screen line by line, as it is. Unlike C(ansible.builtin.debug), the text does
    not go through the callback's result format, so a table reads the same whether C(ansible.cfg) was read (YAML
    results) or not (JSON results, when a playbook runs from another directory).
  - With O(warning=true) the text is shown as one Ansible warning instead (each distinct warning once per run).
  - It runs inside the controller's Ansible process and contacts no host. Empty text prints nothing.
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Prints the same in check mode.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
  idempotent:
    description: When run twice in a row outside check mode, with the same arguments, the second invocation
      indicates no change.
    support: full
    details: Never changes anything.
options:
  text:
    description: The text; a list is printed one item per line.
    type: raw
    required: true
  warning:
    description: Show the text as a warning.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Show the fleet
  datacrunch.sglang.print_text:
    text: "{{ fleet | datacrunch.sglang.fleet_status }}"
  run_once: true
"""

RETURN = r"""
lines:
  description: Number of lines printed.
  returned: always
  type: int
"""
