# -*- coding: utf-8 -*-
# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller-side half of datacrunch.sglang.sglang_inputs: checks every role's inputs, contacts no host."""

from __future__ import annotations

import difflib
import os
import re

from ansible import context
from ansible.errors import AnsibleActionFail, AnsibleError
from ansible.utils.display import Display

from ansible_collections.datacrunch.sglang.plugins.module_utils.plan.role_inputs import check_role_inputs

try:
    from yaml import CSafeLoader as SafeLoader
except ImportError:  # pragma: no cover - PyPI's PyYAML ships libyaml
    from yaml import SafeLoader
import yaml

from ansible_collections.datacrunch.sglang.plugins.plugin_utils.controller_action import ControllerAction

ROLES_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "roles")
DEPLOY_ROLES = ["sglang", "gpu_host", "sglang_firewall", "host_venv", "model_cache", "sglang_server", "sglang_tls"]

ARGUMENT_SPEC = {
    "roles": {"type": "list", "elements": "str", "default": DEPLOY_ROLES},
    "whole_units": {"type": "bool", "default": True},
}

_SPEC_CACHE = {}

# The prefixes of this collection's variables: a -e variable with one of them that nothing here reads is a typo.
COLLECTION_PREFIXES = ("sglang_", "gpu_host_", "host_venv_", "model_cache_", "check_hosts_")
PLAYBOOKS_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "playbooks")
_KNOWN_NAMES = []


def role_specs(roles):
    specs = {}
    for role in roles:
        path = os.path.join(ROLES_DIR, role, "meta", "argument_specs.yml")
        if path not in _SPEC_CACHE:
            try:
                with open(path, encoding="utf-8") as handle:
                    _SPEC_CACHE[path] = yaml.load(handle, Loader=SafeLoader)
            except OSError as exc:
                raise AnsibleActionFail("sglang_inputs: role %s has no argument specs (%s)" % (role, exc)) from None
        specs[role] = _SPEC_CACHE[path]
    return specs


def known_names():
    """Every variable name with the collection's prefixes that a role or playbook of the collection declares or reads:
    the options of every role's argument specs, and each such name in the roles' and playbooks' YAML."""
    if not _KNOWN_NAMES:
        pattern = re.compile(r"\b(?:%s)[a-z0-9_]*" % "|".join(COLLECTION_PREFIXES))
        names = set()
        for top in (ROLES_DIR, PLAYBOOKS_DIR):
            for directory, _subdirs, files in os.walk(top):
                for name in files:
                    if name.endswith((".yml", ".yaml", ".j2")):
                        with open(os.path.join(directory, name), encoding="utf-8") as handle:
                            names.update(pattern.findall(handle.read()))
        _KNOWN_NAMES.extend(sorted(names))
    return _KNOWN_NAMES


def unknown_extra_vars(extra_vars, known):
    """One warning per -e variable with the collection's prefixes that no role or playbook knows, with the nearest
    known name. extra_vars: the -e arguments as given (key=value words, YAML/JSON, or @file)."""
    given = set()
    for argument in extra_vars or ():
        argument = str(argument).strip()
        if argument.startswith("@"):
            try:
                with open(os.path.expanduser(argument[1:]), encoding="utf-8") as handle:
                    data = yaml.load(handle, Loader=SafeLoader)
            except (OSError, yaml.YAMLError):
                continue
        elif argument.startswith(("{", "[")):
            try:
                data = yaml.load(argument, Loader=SafeLoader)
            except yaml.YAMLError:
                continue
        else:
            data = dict.fromkeys(re.findall(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)=", argument))
        if isinstance(data, dict):
            given.update(str(name) for name in data)
    known = set(known)
    warnings = []
    for name in sorted(given):
        if not name.startswith(COLLECTION_PREFIXES) or name in known:
            continue
        nearest = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.75)
        warnings.append(
            "-e %s: no role or playbook of datacrunch.sglang reads this variable, so it changes nothing%s"
            % (name, "; did you mean %s?" % nearest[0] if nearest else "; see the roles' README for the names"))
    return warnings


def unit_errors(groups, hostvars, play_hosts, forks):
    """Units the play leaves partly out, and units larger than the hosts Ansible runs a task on at once."""
    units = {}
    for host in groups.get("all", []):
        cluster = str((hostvars.get(host) or {}).get("sglang_cluster") or "")
        if cluster:
            units.setdefault(cluster, []).append(host)
    errors = []
    for cluster, members in sorted(units.items()):
        inside = [host for host in members if host in play_hosts]
        if not inside:
            continue
        absent = sorted(set(members) - set(inside))
        if absent:
            errors.append(
                "sglang_cluster=%r is deployed as one unit of %d hosts, but this play leaves out %s (check --limit and "
                "the play's hosts): a unit starts, is tested and restarts as a whole; include every host of the unit"
                % (cluster, len(members), ", ".join(absent)))
        if forks and len(members) > forks:
            errors.append(
                "sglang_cluster=%r has %d hosts, but Ansible runs each task on at most %d hosts at once (forks=%d): "
                "the rendezvous test and the launch need every node of a unit at the same time. Raise forks to at "
                "least %d (ansible.cfg [defaults] forks, ANSIBLE_FORKS, or -f)"
                % (cluster, len(members), forks, forks, len(members)))
    return errors


class ActionModule(ControllerAction):
    NAME = "sglang_inputs"
    ARGUMENT_SPEC = ARGUMENT_SPEC

    def _user_values(self, names, task_vars):
        values = {}
        for name in names:
            if name not in task_vars:
                continue
            try:
                values[name] = self._templar.template(task_vars[name])
            except AnsibleError:
                # Needs facts of the host (for example sglang_private_ip from ansible_default_ipv4): checked there.
                continue
        return values

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        for warning in unknown_extra_vars(context.CLIARGS.get("extra_vars"), known_names()):
            Display().warning(warning)  # Display repeats no warning: one line per variable, not one per host
        args = self.task_args()
        specs = role_specs(args["roles"])
        names = set()
        for document in specs.values():
            names.update((((document or {}).get("argument_specs") or {}).get("main") or {}).get("options") or {})
        errors = check_role_inputs(specs, self._user_values(sorted(names), task_vars))
        if args["whole_units"]:
            errors += unit_errors(
                task_vars.get("groups") or {},
                task_vars.get("hostvars") or {},
                task_vars.get("ansible_play_hosts_all") or [],
                int(context.CLIARGS.get("forks") or 0),
            )
        if errors:
            result.update(failed=True, errors=errors,
                          msg="%s: %d input(s) refused before anything changed on a host:\n- %s"
                          % (task_vars.get("inventory_hostname"), len(errors), "\n- ".join(errors)))
            return result
        result.update(changed=False, checked=sorted(names))
        return result
