# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: collection_origin_problem
short_description: Whether the datacrunch.sglang that runs is another copy than the checkout of the playbook
version_added: 0.1.0
author: datacrunch.sglang maintainers (@datacrunch-sglang)
description:
  - Given a playbook's directory (C(playbook_dir)), finds the checkout of datacrunch.sglang that holds it (the
    nearest directory above with this collection's C(galaxy.yml)) and compares it with the copy of the collection
    whose plugins run. A stale copy in C(~/.ansible/collections) or C(ANSIBLE_COLLECTIONS_PATH) found first would run
    other roles and modules than the checkout's.
  - Returns a sentence naming both paths and the fix; empty when they are the same, or when the playbook is not in
    a checkout.
options:
  _input:
    description: The playbook's directory.
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Warn when the collection that runs is not this checkout's
  datacrunch.sglang.print_text:
    text: "{{ playbook_dir | datacrunch.sglang.collection_origin_problem }}"
    warning: true
"""

RETURN = r"""
_value:
  description: The problem, or an empty string.
  type: str
"""

import os

RUNNING_ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def _is_this_collection(directory):
    try:
        with open(os.path.join(directory, "galaxy.yml"), encoding="utf-8") as handle:
            text = handle.read()
    except OSError:
        return False
    lines = {line.strip() for line in text.splitlines()}
    return "namespace: datacrunch" in lines and "name: sglang" in lines


def origin_problem(playbook_dir, running_root):
    directory = os.path.realpath(playbook_dir)
    while not _is_this_collection(directory):
        parent = os.path.dirname(directory)
        if parent == directory:
            return ""
        directory = parent
    running = os.path.realpath(running_root)
    if running == directory:
        return ""
    return (
        "The playbook is in the checkout %s, but the datacrunch.sglang that runs is %s: its roles and modules may "
        "differ from the checkout's. Remove that copy (or take it out of collections_path / ANSIBLE_COLLECTIONS_PATH), "
        "or run the playbooks of the copy you mean" % (directory, running))


def collection_origin_problem(playbook_dir):
    return origin_problem(playbook_dir, RUNNING_ROOT)


class FilterModule:
    def filters(self):
        return {"collection_origin_problem": collection_origin_problem}
