# -*- coding: utf-8 -*-
# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The launch options of the SGLang server, declared once.

Each option of datacrunch.sglang.sglang_launch_spec is one LaunchOption in OPTIONS: its name, type, default, the role
variable that feeds it and the LaunchRequest field it becomes. From OPTIONS come the action's argument spec
(argument_spec()), the LaunchRequest dataclass and the mapping from validated arguments to a request
(launch_request()). The module's DOCUMENTATION, the role's defaults, argument specs and the task that builds the spec
are held to OPTIONS by tests/unit/test_launch_options.py.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from dataclasses import dataclass
from typing import Optional

TYPES = {"str": str, "int": int, "bool": bool, "dict": dict, "list": list}


def _strip(value):
    return (value or "").strip()


@dataclass(frozen=True)
class LaunchOption:
    """One option of the launch spec."""

    name: str
    type: str
    description: str
    default: object = None
    elements: str | None = None
    required: bool = False
    # The role variable of roles/sglang_server's "Build the launch spec" task that feeds the option, None where the
    # role computes the value (or never passes it). role_filter: a filter the task applies to that variable;
    # role_type: the variable's type in its role's argument spec where it differs from the option's (path: expanded
    # on the controller, a string to the module).
    role_var: str | None = None
    role_filter: str | None = None
    role_type: str | None = None
    # The LaunchRequest field: the option's name unless given here; False for options the action reads itself.
    field: str | bool | None = None
    # Applied to the validated value before it enters the request.
    clean: object = None

    @property
    def request_field(self):
        if self.field is False:
            return None
        return self.field or self.name

    def argument(self):
        spec = {"type": self.type}
        if self.required:
            spec["required"] = True
        if self.default is not None:
            spec["default"] = copy.deepcopy(self.default)
        if self.elements:
            spec["elements"] = self.elements
        return spec


Opt = LaunchOption

OPTIONS = (
    Opt("profile", "dict", "The resolved profile (from the datacrunch.sglang.sglang_profile lookup).", required=True),
    Opt("image", "str", "SGLang image; empty means the profile's or the pinned default.", "", role_var="sglang_image"),
    Opt("image_version", "str", "SGLang version of the image when its tag does not say.", "",
        role_var="sglang_image_version"),
    Opt("model", "str", "Model repository overriding the profile's.", ""),
    Opt("revision", "str", "Model revision overriding the profile's.", ""),
    Opt("snapshot", "dict", "The sglang_model_snapshot fact; when complete, the server runs offline on its commit."),
    Opt("port", "int", "Serving port.", 30000, role_var="sglang_port"),
    Opt("bind_host", "str", "Address the server binds to; empty means the host's private address when it has one, "
        "else every interface (guarded by the API key and the firewall).", "", role_var="sglang_server_bind_host"),
    Opt("dist_port", "int", "Rendezvous port of multi-node units.", 50000, role_var="sglang_server_dist_port"),
    Opt("hf_home", "str", "Hugging Face home on the host (mounted at the same path).", "/root/.cache/huggingface",
        role_var="sglang_hf_home", role_type="path"),
    Opt("hf_endpoint", "str", "Hub endpoint for servers that download themselves.", "", role_var="sglang_hf_endpoint"),
    Opt("cache_dir", "str", "Host directory of the JIT caches.", "/var/cache/datacrunch-sglang",
        role_var="sglang_cache_dir", role_type="path"),
    Opt("secrets_dir", "str", "Host directory of the root-only secret and spec files.", "/etc/datacrunch-sglang",
        role_var="sglang_server_secrets_dir", role_type="path"),
    Opt("container_name", "str", "Name of the container.", "sglang-server", role_var="sglang_server_container_name"),
    Opt("args", "dict", "SGLang flags overriding the profile's (flag to value; null or false removes).", {},
        role_var="sglang_server_args", field="user_args"),
    Opt("env", "dict", "Extra container environment.", {}, role_var="sglang_server_env", field="user_env"),
    Opt("env_names_extra", "list", "SGLANG_* names the image reads beyond those of its SGLang version.", [],
        elements="str", role_var="sglang_server_env_names_extra"),
    Opt("api_key", "bool", "Whether the server requires an API key (passed through a root-only config file).", True),
    Opt("hf_token", "bool", "Whether a Hugging Face token file is provided to the container.", False),
    Opt("enable_metrics", "bool", "Serve Prometheus metrics at /metrics.", True,
        role_var="sglang_server_enable_metrics"),
    Opt("shm_size", "str", "Shared memory of the container.", "32g", role_var="sglang_server_shm_size"),
    Opt("ulimits", "dict", "Container ulimits, name to limit (soft and hard; -1 is unlimited); SGLang's compose file "
        "asks for these.", {"memlock": -1, "stack": 67108864}, role_var="sglang_server_ulimits"),
    Opt("log_max_size", "str", "Size at which the container log rotates.", "100m",
        role_var="sglang_server_log_max_size"),
    Opt("log_max_files", "int", "Rotated container log files kept.", 5, role_var="sglang_server_log_max_files"),
    Opt("allow_public_rendezvous", "bool", "Accept a public rank 0 address for the rendezvous.", False,
        role_var="sglang_server_allow_public_rendezvous"),
    Opt("allow_deprecated_flags", "bool", "Accept flags the SGLang version deprecates.", False,
        role_var="sglang_server_allow_deprecated_flags"),
    Opt("nccl_ib_hca", "str", "NCCL_IB_HCA override.", "", role_var="sglang_server_nccl_ib_hca"),
    Opt("nccl_ib_gid_index", "str", "NCCL_IB_GID_INDEX override.", "", role_var="sglang_server_nccl_ib_gid_index",
        role_filter="string"),
    Opt("nccl_ib_pkey", "str", "NCCL_IB_PKEY override (an index into the P_Key table).", "",
        role_var="sglang_server_nccl_ib_pkey", role_filter="string", clean=_strip),
    Opt("nccl_socket_ifname", "str", "Interface for NCCL and Gloo.", "", role_var="sglang_server_nccl_socket_ifname"),
    Opt("cluster", "str", "This host's sglang_cluster, read when fleet_plan is not given.", "", field=False),
    Opt("node_rank", "int", "This host's sglang_node_rank (-1 for automatic), read when fleet_plan is not given.", -1,
        field=False),
    Opt("private_ip", "str", "This host's sglang_private_ip, read when fleet_plan is not given.", "", field=False),
    Opt("collection_version", "str", "Recorded in a container label.", "", role_var="sglang_collection_version"),
    Opt("plan", "bool", "Plan mode; values only a host can tell become explicit placeholders instead of errors.",
        False),
    Opt("fleet_plan", "dict", "The host's fleet plan (fact sglang_plan): the unit's members in rank order and their "
        "private addresses.", field=False),
)

BY_NAME = {option.name: option for option in OPTIONS}


def argument_spec():
    """The argument spec of datacrunch.sglang.sglang_launch_spec (fresh copies of the defaults on each call)."""
    return {option.name: option.argument() for option in OPTIONS}


def _request_fields():
    # pylint: disable=invalid-field-call  # the fields go to make_dataclass below
    # What the action knows besides the options: the host, the members of its unit and the unit's name.
    required = [("host", str), ("nodes", list)]
    optional = [("cluster", str, dataclasses.field(default=""))]
    for option in OPTIONS:
        if option.request_field is None:
            continue
        kind = TYPES[option.type]
        if option.required:
            required.insert(0, (option.request_field, kind))
        elif option.default is None:
            optional.append((option.request_field, Optional[kind], dataclasses.field(default=None)))
        elif isinstance(option.default, (dict, list)):
            factory = functools.partial(copy.deepcopy, option.default)
            optional.append((option.request_field, kind, dataclasses.field(default_factory=factory)))
        else:
            optional.append((option.request_field, kind, dataclasses.field(default=option.default)))
    return required + optional


LaunchRequest = dataclasses.make_dataclass(
    "LaunchRequest",
    _request_fields(),
    namespace={"__doc__": "What build_launch_spec() needs: the launch options (see OPTIONS) and the unit."},
)
LaunchRequest.__module__ = __name__


def launch_request(args, host, nodes, cluster=""):
    """The LaunchRequest of validated arguments (argument_spec()) for one host of a unit; the request holds copies,
    so that nothing it does reaches the arguments or the argument spec's defaults."""
    values = {}
    for option in OPTIONS:
        if option.request_field is None:
            continue
        value = copy.deepcopy(args.get(option.name, option.default))
        values[option.request_field] = option.clean(value) if option.clean else value
    return LaunchRequest(host=host, nodes=nodes, cluster=cluster, **values)
