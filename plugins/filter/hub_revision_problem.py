# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: hub_revision_problem
short_description: Why a value is not a model revision (commit id, branch or tag), or an empty string
version_added: 0.1.0
author: datacrunch.sglang maintainers (@datacrunch-sglang)
description:
  - A revision is a 40-character commit id, or a branch or tag name by git's ref-name rules
    (C(git check-ref-format --allow-onelevel)) - no space or control character, none of the characters
    tilde, caret, colon, question mark, asterisk, open bracket and backslash, no C(..) or C(@{), no C(//), not C(@),
    not starting or ending with C(/), no part starting with C(.) or ending in C(.lock), not ending with C(.).
  - Returns a sentence naming the variable, the value and the rule; empty when the revision is fine.
  - C(datacrunch.sglang.hub_repo_id_problem) does the same for a model id.
options:
  _input:
    description: The revision.
    type: str
    required: true
  variable:
    description: The variable's name, for the message.
    type: str
    default: sglang_model_revision
"""

EXAMPLES = r"""
- name: Refuse a revision that is not one, before any host is contacted
  ansible.builtin.assert:
    that: sglang_model_revision | datacrunch.sglang.hub_revision_problem == ''
    fail_msg: "{{ sglang_model_revision | datacrunch.sglang.hub_revision_problem }}"
"""

RETURN = r"""
_value:
  description: The problem, or an empty string.
  type: str
"""

from ansible_collections.datacrunch.sglang.plugins.module_utils.hub.names import revision_problem


def hub_revision_problem(value, variable="sglang_model_revision"):
    return revision_problem(value, variable)


class FilterModule:
    def filters(self):
        return {"hub_revision_problem": hub_revision_problem}
