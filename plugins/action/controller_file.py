# -*- coding: utf-8 -*-
# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller-side half of datacrunch.sglang.controller_file: writes in-process, no module run, no connection."""

from __future__ import annotations

import os

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.text.converters import to_bytes

from ansible_collections.datacrunch.sglang.plugins.module_utils.common.atomic_file import replace_file
from ansible_collections.datacrunch.sglang.plugins.plugin_utils.controller_action import ControllerAction

ARGUMENT_SPEC = {
    "path": {"type": "path", "required": True},
    "content": {"type": "str", "required": True, "no_log": False},
    "mode": {"type": "raw", "default": "0644"},
    "directory_mode": {"type": "raw", "default": "0755"},
}


def _mode(value, name):
    try:
        return int(str(value), 8)
    except ValueError:
        raise AnsibleActionFail("controller_file: %s=%r is not an octal mode such as '0644'" % (name, value)) from None


class ActionModule(ControllerAction):
    NAME = "controller_file"
    ARGUMENT_SPEC = ARGUMENT_SPEC

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = self.task_args()
        path = os.path.abspath(os.path.expanduser(args["path"]))
        data = to_bytes(args["content"])
        mode = _mode(args["mode"], "mode")
        directory = os.path.dirname(path)

        try:
            with open(path, "rb") as handle:
                current = handle.read()
            current_mode = os.stat(path).st_mode & 0o7777
        except FileNotFoundError:
            current, current_mode = None, None
        result.update(path=path, changed=current != data or current_mode != mode)
        if self._task.diff and current != data:
            result["diff"] = {"before_header": path, "after_header": path,
                              "before": (current or b"").decode(errors="replace"), "after": args["content"]}
        if not result["changed"] or self._task.check_mode:
            return result
        os.makedirs(directory, mode=_mode(args["directory_mode"], "directory_mode"), exist_ok=True)
        replace_file(path, data, mode=mode)
        return result
