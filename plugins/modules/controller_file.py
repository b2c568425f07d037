#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: controller_file
short_description: Write a report or plan file on the controller
version_added: 0.1.0
author: datacrunch.sglang maintainers (@datacrunch-sglang)
description:
  - Writes O(content) to O(path) on the controller, atomically, creating the parent directories. It runs inside
    the controller's Ansible process and contacts no host, so writing reports costs no module run.
  - Reports C(changed) only when the content or the mode differ.
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Reports whether the file would change and writes nothing.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
    details: Shows the content before and after.
  idempotent:
    description: When run twice in a row outside check mode, with the same arguments, the second invocation
      indicates no change.
    support: full
    details: Writing the same content twice changes nothing the second time.
options:
  path:
    description: File on the controller.
    type: path
    required: true
  content:
    description: Content of the file.
    type: str
    required: true
  mode:
    description: Permissions of the file, as an octal string.
    type: raw
    default: "0644"
  directory_mode:
    description: Permissions of parent directories it creates.
    type: raw
    default: "0755"
"""

EXAMPLES = r"""
- name: Keep the launch spec of each host
  datacrunch.sglang.controller_file:
    path: "plan/{{ inventory_hostname }}.json"
    content: "{{ sglang_launch_spec | to_nice_json }}"
"""

RETURN = r"""
path:
  description: Absolute path of the file.
  returned: always
  type: str
"""
