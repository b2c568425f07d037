#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: sglang_firewall
short_description: Keep the nftables host firewall of an SGLang host
version_added: 0.1.0
author: datacrunch.sglang maintainers (@datacrunch-sglang)
description:
  - Keeps one nftables table of its own (C(table inet datacrunch_sglang) by default) that lets only the client
    networks reach the serving port and only the other hosts of the same multi-node unit reach the rendezvous and
    NCCL ports. SSH always stays open and the host itself (loopback) reaches every port.
  - The table only drops new connections to those ports, and what it accepts cannot override another table's
    drop, so rules and tables it does not own keep working. It is replaced in one C(nft -f) transaction; no other
    table is touched.
  - Changes only when the loaded table differs from the wanted one, or its file or boot-time loading is missing.
  - Writes the table to O(rules_file) and loads it at boot through nftables.service (an C(include) line at the end
    of C(/etc/nftables.conf)) where that service is enabled, else through a oneshot systemd unit of its own.
  - Options map to the variables of role M(datacrunch.sglang.sglang_firewall) (C(sglang_firewall_<option>)), which
    error messages name.
  - Needs C(nft) (package nftables) and C(ip) (iproute2) on the host; standard library Python only.
attributes:
  check_mode:
    description: Can run in check mode and return the changed status prediction without modifying the target.
    support: full
    details: Renders the table, lets nft check it (C(nft -c)) and reports what would change, loading nothing.
  diff_mode:
    description: Returns details on what has changed (or would change) in diff mode.
    support: full
    details: The loaded table against the wanted one, and the boot-time files.
  idempotent:
    description: When run twice in a row outside check mode with the same arguments, the second changes nothing.
    support: full
    details: A loaded table that matches, with its file and boot-time loading in place, is left alone.
options:
  state:
    description: C(present) keeps the table; C(absent) removes the table, its file and its boot-time loading.
    type: str
    choices: [present, absent]
    default: present
  table:
    description: Name of the nftables table (family C(inet)) that this module owns.
    type: str
    default: datacrunch_sglang
  client_ports:
    description: Ports open to the client networks (the serving port, or the TLS proxy's).
    type: list
    elements: raw
    default: [30000]
  client_cidrs:
    description:
      - Networks (CIDR) or addresses allowed on O(client_ports). The word C(private) stands for the RFC 1918
        networks of this host's physical interfaces (container bridges excluded).
      - An empty list leaves the client ports to the host itself.
    type: list
    elements: str
    default: [private]
  local_ports:
    description: Ports only the host itself may reach (the plain serving port behind a TLS proxy).
    type: list
    elements: raw
    default: []
  unit_ports:
    description: Ports and ranges (C(50000-50063)) that only the unit's other hosts may reach.
    type: list
    elements: raw
    default: []
  unit_peers:
    description: Addresses (or networks) of the other hosts of this host's multi-node unit.
    type: list
    elements: str
    default: []
  protect_ephemeral_ports:
    description:
      - Treat the host's ephemeral port range (C(net.ipv4.ip_local_port_range)) as unit ports, because NCCL and
        Gloo listen on ports the kernel picks from it.
    type: bool
    default: true
  ssh_ports:
    description:
      - SSH ports, always accepted. The port of the SSH connection the module runs over (E(SSH_CONNECTION)) is
        added to them.
    type: list
    elements: raw
    default: [22]
  refuse:
    description: What happens to a refused connection, C(drop) (silent) or C(reject) (TCP reset).
    type: str
    choices: [drop, reject]
    default: drop
  rules_file:
    description: Where the table is written on the host (C(nft -f) loads it).
    type: path
    default: /etc/nftables.d/datacrunch-sglang.nft
  persist:
    description: Load the table at boot. C(false) removes the boot-time loading this module added.
    type: bool
    default: true
  no_systemd_note:
    description:
      - Said at the end of the warning that a host without systemd will not load the table again after a reboot,
        where that is expected (the lab's hosts are containers without systemd). Empty says nothing more.
    type: str
    default: ""
"""

EXAMPLES = r"""
- name: Serving port for the private networks, rendezvous and NCCL for the unit's other host
  datacrunch.sglang.sglang_firewall:
    client_ports: [30000]
    client_cidrs: [private, 203.0.113.7/32]
    unit_ports: ["50000-50063", "30100-31000"]
    unit_peers: [10.0.0.12]

- name: Remove the firewall
  datacrunch.sglang.sglang_firewall:
    state: absent
"""

RETURN = r"""
ruleset:
  description: The wanted table as nft lists it.
  returned: state=present
  type: str
rules_file:
  description: The file on the host that loads the table.
  returned: state=present
  type: str
client_networks:
  description: The networks allowed on the client ports, C(private) resolved.
  returned: state=present
  type: list
  elements: str
unit_networks:
  description: The unit's other hosts allowed on the unit ports.
  returned: state=present
  type: list
  elements: str
client_ports:
  description: Ports open to the client networks.
  returned: state=present
  type: list
  elements: int
local_ports:
  description: Ports for the host itself only.
  returned: state=present
  type: list
  elements: int
unit_ports:
  description: Port ranges for the unit's hosts only, the ephemeral range included.
  returned: state=present
  type: list
  elements: str
ssh_ports:
  description: SSH ports, always open.
  returned: state=present
  type: list
  elements: int
persistence:
  description: How the table comes back after a reboot (C(none) when it does not).
  returned: always
  type: str
actions:
  description: What the module did (or would do in check mode).
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.datacrunch.sglang.plugins.module_utils.common.module_io import (
    exit_with_result,
    request_from_params,
)
from ansible_collections.datacrunch.sglang.plugins.module_utils.firewall.host import HostFirewall
from ansible_collections.datacrunch.sglang.plugins.module_utils.firewall.ruleset import FirewallError, FirewallRequest


def main():
    module = AnsibleModule(
        argument_spec={
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "table": {"type": "str", "default": "datacrunch_sglang"},
            "client_ports": {"type": "list", "elements": "raw", "default": [30000]},
            "client_cidrs": {"type": "list", "elements": "str", "default": ["private"]},
            "local_ports": {"type": "list", "elements": "raw", "default": []},
            "unit_ports": {"type": "list", "elements": "raw", "default": []},
            "unit_peers": {"type": "list", "elements": "str", "default": []},
            "protect_ephemeral_ports": {"type": "bool", "default": True},
            "ssh_ports": {"type": "list", "elements": "raw", "default": [22]},
            "refuse": {"type": "str", "choices": ["drop", "reject"], "default": "drop"},
            "rules_file": {"type": "path", "default": "/etc/nftables.d/datacrunch-sglang.nft"},
            "persist": {"type": "bool", "default": True},
            "no_systemd_note": {"type": "str", "default": ""},
        },
        supports_check_mode=True,
    )
    params = module.params

    def runner(argv, stdin=None):
        return module.run_command(argv, data=stdin, binary_data=True)

    firewall = HostFirewall(params["table"], runner, rules_file=params["rules_file"], check_mode=module.check_mode)
    try:
        if params["state"] == "absent":
            result = firewall.remove()
        else:
            request = request_from_params(FirewallRequest, params)
            result = firewall.ensure(request, persist=params["persist"], persist_note=params["no_systemd_note"])
    except (FirewallError, OSError) as exc:
        module.fail_json(msg="host firewall: %s" % exc, actions=firewall.actions)
    exit_with_result(module, result)


if __name__ == "__main__":
    main()
