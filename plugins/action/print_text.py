# -*- coding: utf-8 -*-
# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller-side datacrunch.sglang.print_text: text on the screen as it is, whatever the result format."""

from __future__ import annotations

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

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


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        validation = ArgumentSpecValidator(ARGUMENT_SPEC).validate(self._task.args)
        if validation.error_messages:
            raise AnsibleActionFail("print_text: %s" % "; ".join(validation.error_messages))
        args = validation.validated_parameters
        lines = text_lines(args["text"])
        if lines and args["warning"]:
            Display().warning("\n".join(lines))
        elif lines:
            Display().display("\n".join(lines))
        result.update(changed=False, lines=len(lines))
        return result
