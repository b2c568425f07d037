# -*- coding: utf-8 -*-
# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller-side half of datacrunch.sglang.sglang_plan: this host's part of the fleet plan; contacts no host."""

from __future__ import annotations

import posixpath

from ansible.errors import AnsibleActionFail

from ansible_collections.datacrunch.sglang.plugins.module_utils.hub.names import repo_id_problem, revision_problem
from ansible_collections.datacrunch.sglang.plugins.module_utils.plan.fleet_plan import (
    PlanError,
    hub_commit,
    is_commit,
    member_address,
    unit_commit,
)
from ansible_collections.datacrunch.sglang.plugins.plugin_utils.controller_action import ControllerAction

ARGUMENT_SPEC = {
    "profile": {"type": "dict", "required": True},
    "profile_name": {"type": "str", "required": True},
    "model": {"type": "str", "default": ""},
    "revision": {"type": "str", "default": ""},
    "image": {"type": "str", "default": ""},
    "image_version": {"type": "str", "default": ""},
    "hf_home": {"type": "str", "required": True},
    "hf_endpoint": {"type": "str", "default": ""},
    "cache_dir": {"type": "str", "required": True},
    "secrets_dir": {"type": "str", "default": "/etc/datacrunch-sglang"},
    "container_name": {"type": "str", "default": "sglang-server"},
    "port": {"type": "int", "default": 30000},
    "dist_port": {"type": "int", "default": 50000},
    "resolve_revision": {"type": "bool", "default": True},
    "refresh": {"type": "bool", "default": False},
    "commits_file": {"type": "path", "required": True},
}


class ActionModule(ControllerAction):
    NAME = "sglang_plan"
    ARGUMENT_SPEC = ARGUMENT_SPEC

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        args = self.task_args()
        me, hostvars = self.host_and_hostvars(task_vars)
        topology = self.unit_of(me, task_vars.get("groups", {}).get("all", []), hostvars)

        repo = args["model"] or args["profile"].get("model") or ""
        revision = args["revision"] or args["profile"].get("revision") or "main"
        commit, source = None, "not resolved (this playbook loads no model)"
        problem = repo_id_problem(repo) or revision_problem(revision)
        if problem and args["resolve_revision"]:
            raise AnsibleActionFail("%s: %s (profile %s)" % (me, problem, args["profile_name"]))
        if is_commit(revision):
            commit, source = revision, "pinned"
        elif args["resolve_revision"]:
            # The token is read here, never passed as a task argument, so no output can show it.
            token = self._templar.template(task_vars.get("sglang_hf_token") or "") or ""
            try:
                commit, source = unit_commit(
                    topology["name"],
                    repo,
                    revision,
                    args["commits_file"],
                    lambda repo_id, rev: hub_commit(args["hf_endpoint"], repo_id, rev, token=token),
                    refresh=args["refresh"],
                    write=not self._task.check_mode,
                )
            except PlanError as exc:
                raise AnsibleActionFail("%s (unit %s): %s" % (me, topology["name"], exc)) from None

        address, address_source = member_address(task_vars)
        repo_dir = posixpath.join(args["hf_home"], "hub", "models--" + repo.replace("/", "--"))
        plan = {
            "host": me,
            "unit": topology["name"],
            "cluster": topology["cluster"],
            "multi_node": topology["multi_node"],
            "members": topology["members"],
            "nnodes": topology["nnodes"],
            "rank": topology["ranks"][me],
            "rank0_host": topology["rank0_host"],
            "rank0_address": topology["rank0_address"],
            "addresses": topology["addresses"],
            "address": address,
            "address_source": address_source,
            "ports": {"serving": args["port"], "rendezvous": args["dist_port"]},
            "profile": args["profile_name"],
            "model": {
                "repo": repo,
                "revision": revision,
                "commit": commit,
                "commit_source": source,
                "snapshot_dir": posixpath.join(repo_dir, "snapshots", commit) if commit else None,
            },
            "image": args["image"] or args["profile"].get("image") or "",
            "image_version": args["image_version"],
            "hf_home": args["hf_home"],
            "hf_endpoint": args["hf_endpoint"],
            "cache_dir": args["cache_dir"],
            "secrets_dir": args["secrets_dir"],
            "container_name": args["container_name"],
            "endpoint": "http://%s:%d" % (task_vars.get("ansible_host") or me, args["port"]),
        }
        # Published by the role with set_fact (a fact returned here would be read as a top-level injected fact).
        result.update(changed=False, plan=plan)
        return result
