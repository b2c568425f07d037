# -*- coding: utf-8 -*-
# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: steps
type: stdout
short_description: The default screen output, less the lines that carry nothing to read
version_added: 0.1.0
author: datacrunch.sglang maintainers (@datacrunch-sglang)
description:
  - Prints what C(ansible.builtin.default) prints, in the same format, but at the default verbosity it leaves out
    what a person does not read. A task's header appears only above a line that is shown.
  - Left out are skipped tasks, C(included:) lines, and C(ok) results that carry no message (facts set, files read,
    inputs validated, the role argument checks). Shown are every change, every failure, every warning, every message
    (C(debug), the preflight table, the progress rounds, the summaries) and the recap.
  - Tasks that print while they run (C(datacrunch.sglang.print_text), C(datacrunch.sglang.bench_follow)) get their
    header before their text; a warning (C(print_text) with C(warning=true)) goes to stderr with no header.
  - With C(-v) or more it prints what C(ansible.builtin.default) prints.
  - The playbooks of this collection use it through the checkout's C(ansible.cfg). Your own playbooks can use it
    with C(stdout_callback = datacrunch.sglang.steps) in their C(ansible.cfg) or C(ANSIBLE_STDOUT_CALLBACK).
extends_documentation_fragment:
  - default_callback
  - result_format_callback
requirements:
  - set as stdout in configuration
"""

from ansible.module_utils.parsing.convert_bool import boolean
from ansible.playbook.task_include import TaskInclude
from ansible.plugins.callback.default import CallbackModule as DefaultCallbackModule

# Actions that print on the controller's screen while they run: their header goes first.
PRINTING_ACTIONS = frozenset(
    (
        "datacrunch.sglang.print_text",
        "print_text",
        "datacrunch.sglang.bench_follow",
        "bench_follow",
    )
)


def _fields(result):
    """The result's dict (CallbackTaskResult.result since ansible-core 2.19; TaskResult._result before)."""
    fields = getattr(result, "result", None)
    return fields if isinstance(fields, dict) else result._result


def _task(result):
    return getattr(result, "task", None) or result._task


class CallbackModule(DefaultCallbackModule):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "datacrunch.sglang.steps"

    def set_options(self, task_keys=None, var_options=None, direct=None):
        super().set_options(task_keys=task_keys, var_options=var_options, direct=direct)
        if self._quiet():
            # Skipped results are not shown, and a task's header waits for the first line shown under it.
            self._plugin_options["display_skipped_hosts"] = False

    def _quiet(self):
        return self._display.verbosity < 1

    def _nothing_to_read(self, result):
        """An ok result that the default output would show as a bare "ok: [host]" line."""
        fields = _fields(result)
        if isinstance(_task(result), TaskInclude):
            return True
        if fields.get("changed", False) or self._run_is_verbose(result):
            return False
        if fields.get("warnings") or fields.get("deprecations") or fields.get("exception"):
            return False
        return not any(
            isinstance(item, dict) and (item.get("changed") or item.get("_ansible_verbose_always"))
            for item in fields.get("results") or ()
        )

    def v2_runner_on_start(self, host, task):
        # A warning goes to stderr on its own line: it needs no header, and an empty one would stand alone.
        prints = task.action in PRINTING_ACTIONS and not boolean(task.args.get("warning", False), strict=False)
        if self._quiet() and prints and self._last_task_banner != task._uuid:
            self._print_task_banner(task)
        super().v2_runner_on_start(host, task)

    def v2_runner_on_ok(self, result):
        if self._quiet() and self._nothing_to_read(result):
            return
        super().v2_runner_on_ok(result)

    def v2_runner_item_on_ok(self, result):
        if self._quiet() and self._nothing_to_read(result):
            return
        super().v2_runner_item_on_ok(result)

    def v2_playbook_on_include(self, included_file):
        if self._quiet():
            return
        super().v2_playbook_on_include(included_file)
