# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: hub_repo_id_problem
short_description: Why a value is not a Hugging Face model id, or an empty string
version_added: 0.1.0
author: datacrunch.sglang maintainers (@datacrunch-sglang)
description:
  - Checks a model id by huggingface_hub's own rule (C(validate_repo_id)) - C(name) or C(namespace/name), each part 1
    to 96 of A-Z a-z 0-9 - _ ., not starting or ending with - or ., no C(--) or C(..), not ending in C(.git).
  - Returns a sentence naming the variable, the value and the rule; empty when the id is fine.
  - C(datacrunch.sglang.hub_revision_problem) does the same for a revision.
options:
  _input:
    description: The model id.
    type: str
    required: true
  variable:
    description: The variable's name, for the message.
    type: str
    default: sglang_model
"""

EXAMPLES = r"""
- name: Refuse a model id that is not one, before any host is contacted
  ansible.builtin.assert:
    that: sglang_model | datacrunch.sglang.hub_repo_id_problem == ''
    fail_msg: "{{ sglang_model | datacrunch.sglang.hub_repo_id_problem }}"
"""

RETURN = r"""
_value:
  description: The problem, or an empty string.
  type: str
"""

from ansible_collections.datacrunch.sglang.plugins.module_utils.hub.names import repo_id_problem


def hub_repo_id_problem(value, variable="sglang_model"):
    return repo_id_problem(value, variable)


class FilterModule:
    def filters(self):
        return {"hub_repo_id_problem": hub_repo_id_problem}
