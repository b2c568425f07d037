# -*- coding: utf-8 -*-
# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller-side half of datacrunch.sglang.sglang_launch_spec: builds the host's launch spec, contacts no host."""

from __future__ import annotations

from ansible.errors import AnsibleActionFail

from ansible_collections.datacrunch.sglang.plugins.module_utils.launch.options import argument_spec, launch_request
from ansible_collections.datacrunch.sglang.plugins.module_utils.launch.spec import (
    LaunchSpecError,
    Node,
    build_launch_spec,
    docker_run_command,
)
from ansible_collections.datacrunch.sglang.plugins.plugin_utils.controller_action import ControllerAction


def _interface_of(address, interfaces):
    for name, addresses in (interfaces or {}).items():
        for entry in addresses or []:
            if str(entry).split("/", maxsplit=1)[0] == address:
                return name
    return None


def _node_from_vars(name, host_vars, explicit=None):
    """A unit member as the launch sees it: inventory variables first, then what gpu_host discovered."""
    explicit = explicit or {}
    gpu = host_vars.get("sglang_gpu") or {}
    private_ip = explicit.get("private_ip") or host_vars.get("sglang_private_ip") or gpu.get("private_ip") or None
    rank = explicit.get("node_rank", host_vars.get("sglang_node_rank", -1))
    try:
        rank = int(rank)
    except (TypeError, ValueError):
        raise AnsibleActionFail("sglang_node_rank=%r on %s must be an integer" % (rank, name)) from None
    return Node(
        name=name,
        rank=None if rank < 0 else rank,
        private_ip=private_ip,
        gpus=gpu.get("count"),
        gpu_model=gpu.get("model"),
        interface=gpu.get("private_interface") or _interface_of(private_ip, gpu.get("interfaces")),
        ib_devices=list(gpu.get("ib_devices") or []),
    )


class ActionModule(ControllerAction):
    NAME = "sglang_launch_spec"
    ARGUMENT_SPEC = argument_spec()

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        args = self.task_args()
        me, hostvars = self.host_and_hostvars(task_vars)
        cluster = args["cluster"] or ""

        fleet_plan = args["fleet_plan"]
        if not fleet_plan:
            # Called without the fleet plan (the module used on its own): the same plan, made here.
            own = {
                "sglang_cluster": cluster,
                "sglang_node_rank": args["node_rank"],
                "sglang_private_ip": args["private_ip"],
                "sglang_gpu": task_vars.get("sglang_gpu"),
            }
            view = {name: hostvars[name] for name in task_vars.get("groups", {}).get("all", []) if name != me}
            view[me] = own
            fleet_plan = self.unit_of(me, sorted(view), view)
        # The unit, its ranks and addresses as the fleet plan (datacrunch.sglang.sglang_plan) made them.
        cluster = fleet_plan.get("cluster") or ""
        ranks = {name: rank for rank, name in enumerate(fleet_plan.get("members") or [me])}
        addresses = fleet_plan.get("addresses") or {}
        nodes = [
            _node_from_vars(
                name,
                task_vars if name == me else hostvars[name],
                {"private_ip": addresses.get(name) or "", "node_rank": ranks[name]},
            )
            for name in sorted(ranks)
        ]
        if cluster:
            absent = sorted(node.name for node in nodes if node.name not in task_vars.get("ansible_play_hosts", []))
            if absent and not args["plan"]:
                raise AnsibleActionFail(
                    "sglang_cluster=%r is deployed as one unit, but this play leaves out %s; include every host of the "
                    "cluster (check --limit)" % (cluster, ", ".join(absent))
                )

        request = launch_request(args, host=me, nodes=nodes, cluster=cluster)
        try:
            spec = build_launch_spec(request)
        except LaunchSpecError as exc:
            raise AnsibleActionFail("%s: %s" % (me, exc)) from None
        result.update(changed=False, spec=spec, docker_run=docker_run_command(spec))
        return result
