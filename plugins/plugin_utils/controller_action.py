# -*- coding: utf-8 -*-
# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The base of the collection's action plugins: they read their task's arguments against one argument spec and,
unless they say otherwise, run on the controller only."""

from __future__ import annotations

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.action import ActionBase

from ansible_collections.datacrunch.sglang.plugins.module_utils.plan.fleet_plan import PlanError, unit_topology


class ControllerAction(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False
    # The plugin's name as its errors start, and its options as Ansible's argument spec.
    NAME = ""
    ARGUMENT_SPEC: dict = {}

    def task_args(self):
        """The task's arguments checked against ARGUMENT_SPEC, defaults filled in; every error at once, named."""
        validation = ArgumentSpecValidator(self.ARGUMENT_SPEC).validate(self._task.args)
        if validation.error_messages:
            raise AnsibleActionFail("%s: %s" % (self.NAME, "; ".join(validation.error_messages)))
        return validation.validated_parameters

    @staticmethod
    def host_and_hostvars(task_vars):
        """The task's host and every host's variables."""
        return task_vars["inventory_hostname"], task_vars.get("hostvars", {})

    @staticmethod
    def unit_of(host, names, hostvars):
        """The unit that host belongs to among names (fleet_plan.unit_topology); its refusal fails this host."""
        try:
            return unit_topology(host, names, hostvars)
        except PlanError as exc:
            raise AnsibleActionFail("%s: %s" % (host, exc)) from None
