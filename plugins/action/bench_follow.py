# -*- coding: utf-8 -*-
# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""datacrunch.sglang.bench_follow: wait for a background sglang_bench run, one progress line per round."""

from __future__ import annotations

import base64
import json
import time

from ansible.errors import AnsibleActionFail
from ansible.utils.display import Display

from ansible_collections.datacrunch.sglang.plugins.plugin_utils.controller_action import ControllerAction

ARGUMENT_SPEC = {
    "jid": {"type": "str", "required": True},
    "progress_file": {"type": "path", "required": True},
    "interval": {"type": "int", "default": 10},
    "timeout": {"type": "int", "default": 0},
}
ENDED = ("done", "failed")


def progress_line(host, progress):
    """One line of a serving benchmark's progress file, as the user reads it; None when it says nothing yet."""
    if not isinstance(progress, dict) or progress.get("level") is None:
        return None
    levels = progress.get("levels") or []
    line = "bench_serving [%s]: concurrency %s (%s of %d levels): %s/%s requests finished, %d s" % (
        host, progress["level"], progress.get("level_index", "?"), len(levels), progress.get("requests_done", 0),
        progress.get("requests_total", "?"), int(progress.get("elapsed_s") or 0))
    if progress.get("requests_failed"):
        line += " (%s failed)" % progress["requests_failed"]
    return line + (": %s" % progress["state"] if progress.get("state") in ENDED else "")


class ActionModule(ControllerAction):
    NAME = "bench_follow"
    ARGUMENT_SPEC = ARGUMENT_SPEC
    _requires_connection = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = self.task_args()
        host = (task_vars or {}).get("inventory_hostname", "?")
        async_dir = self._remote_expand_user(self.get_shell_option("async_dir", default="~/.ansible_async"))
        interval = max(1, args["interval"])
        started = time.monotonic()
        shown = None
        while True:
            status = self._execute_module(
                module_name="ansible.legacy.async_status", task_vars=task_vars,
                module_args={"jid": args["jid"], "mode": "status", "_async_dir": async_dir})  # fmt: skip
            progress = self._progress(args["progress_file"], task_vars)
            finished = bool(status.get("finished"))
            # A file left by an earlier run says done while this one has not ended: not shown.
            if finished or (progress or {}).get("state") not in ENDED:
                line = progress_line(host, progress)
                if line and line != shown:
                    Display().display(line)
                    shown = line
            if finished or status.get("failed"):
                break
            if args["timeout"] and time.monotonic() - started > args["timeout"]:
                raise AnsibleActionFail(
                    "bench_follow: the background job %s did not end within %d s" % (args["jid"], args["timeout"]))
            time.sleep(interval)
        for key in ("started", "finished", "ansible_job_id", "results_file", "stdout", "stderr", "stdout_lines",
                    "stderr_lines", "invocation", "_ansible_parsed"):  # fmt: skip
            status.pop(key, None)
        result.update(status)
        result["changed"] = False
        return result

    def _progress(self, path, task_vars):
        read = self._execute_module(module_name="ansible.legacy.slurp", module_args={"src": path}, task_vars=task_vars)
        if read.get("failed") or "content" not in read:
            return None
        try:
            return json.loads(base64.b64decode(read["content"]))
        except ValueError:
            return None
