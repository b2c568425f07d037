# -*- coding: utf-8 -*-
# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller-side datacrunch.sglang.print_text: text on the screen as it is, whatever the result format."""

from __future__ import annotations

from ansible.utils.display import Display

from ansible_collections.datacrunch.sglang.plugins.plugin_utils.controller_action import ControllerAction

ARGUMENT_SPEC = {
    "text": {"type": "raw", "required": True},
    "warning": {"type": "bool", "default": False},
}


def text_lines(text):
    if text is None:
        return []
    if isinstance(text, (list, tuple)):
        return [str(line) for line in text]
    text = str(text)
    return text.splitlines() if text else []


class ActionModule(ControllerAction):
    NAME = "print_text"
    ARGUMENT_SPEC = ARGUMENT_SPEC

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = self.task_args()
        lines = text_lines(args["text"])
        if lines and args["warning"]:
            Display().warning("\n".join(lines))
        elif lines:
            Display().display("\n".join(lines))
        result.update(changed=False, lines=len(lines))
        return result
