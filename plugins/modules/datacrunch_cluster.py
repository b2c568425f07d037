#!/usr/bin/python
# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: datacrunch_cluster
short_description: Rent and release a DataCrunch (Verda) Instant Cluster, by hostname
version_added: 0.1.0
author: datacrunch.sglang maintainers (@datacrunch-sglang)
description:
  - Creates or discontinues one Instant Cluster of a DataCrunch (now Verda) account, found by its hostname. The
    hostname is the identity - a second run with the same hostname changes nothing.
  - An Instant Cluster is several GPU nodes (C(16H200) is 2 nodes x 8 H200) on a private network with a shared
    filesystem, reached over SSH through a jump host on the cluster's public IP. It is where multi-node tensor
    parallelism belongs.
  - Before ordering, checks that the SSH keys exist and that the cluster type is available in the location; without
    capacity it fails and orders nothing. An order that ends in status C(error) is released again and reported.
  - With O(wait), returns once the cluster runs, every worker has its private IP and the jump host answers on SSH.
    The workers themselves are reached through the jump host; the inventory plugin M(datacrunch.sglang.datacrunch)
    sets that up.
  - Runs on the controller; standard library only.
attributes:
  check_mode:
    support: full
    description: Sends only reads; reports what it would order or release.
  diff_mode:
    support: full
    description: Hostname, status, cluster type, location and image before and after.
extends_documentation_fragment:
  - datacrunch.sglang.datacrunch
options:
  hostname:
    description: Hostname of the cluster; its identity for this module. Workers are named after it.
    type: str
    required: true
  state:
    description: V(present) - exists and runs. V(absent) - discontinued (local storage deleted, shared volumes kept).
    type: str
    choices: [present, absent]
    default: present
  cluster_type:
    description: Cluster type, such as C(16H200). Needed to create; checked against an existing one.
    type: str
  image:
    description:
      - OS image for the nodes, such as C(ubuntu-24.04-cuda-13.0-cluster). Clusters take images of their own list;
        M(datacrunch.sglang.datacrunch_image) chooses one.
    type: str
  location:
    description: Location code (C(FIN-01), C(FIN-02), C(FIN-03), C(ICE-01)). Needed to create.
    type: str
  ssh_keys:
    description: SSH keys of the account to install for root, by id or by name.
    type: list
    elements: str
    default: []
  description:
    description: Description shown in the console. Defaults to the hostname.
    type: str
  startup_script_id:
    description: Id of a startup script of the account to run on the nodes' first boot.
    type: str
  shared_volume_name:
    description: Name of the shared filesystem volume created with the cluster. Defaults to C(<hostname>-shared-volume).
    type: str
  shared_volume_size:
    description: Size of the shared volume in GB. Defaults to the API's 30000.
    type: int
  existing_volumes:
    description: Ids of existing volumes to attach.
    type: list
    elements: str
    default: []
  contract:
    description: Contract type.
    type: str
    choices: [PAY_AS_YOU_GO, LONG_TERM]
    default: PAY_AS_YOU_GO
  wait:
    description: Wait until the cluster runs with all workers addressed (and the jump host answers on SSH).
    type: bool
    default: true
  wait_timeout:
    description: Seconds to wait in all.
    type: int
    default: 3600
  wait_for_ssh:
    description: With O(wait), also wait until an SSH server answers on the jump host.
    type: bool
    default: true
  ssh_port:
    description: Port of the jump host's SSH server.
    type: int
    default: 22
seealso:
  - module: datacrunch.sglang.datacrunch_instance
  - plugin: datacrunch.sglang.datacrunch
    plugin_type: inventory
"""

EXAMPLES = r"""
- name: Rent a 2 x 8 H200 Instant Cluster for DeepSeek-R1 with TP16
  datacrunch.sglang.datacrunch_cluster:
    hostname: r1-tp16-fin01
    cluster_type: 16H200
    image: ubuntu-24.04-cuda-13.0-cluster
    location: FIN-01
    ssh_keys: [my-laptop]
    shared_volume_size: 2000
  register: cluster

- name: Read the new workers from the API
  ansible.builtin.meta: refresh_inventory

- name: Release it
  datacrunch.sglang.datacrunch_cluster:
    hostname: r1-tp16-fin01
    state: absent
"""

RETURN = r"""
cluster:
  description: The cluster as the API describes it; null when absent or not yet created in check mode.
  returned: always
  type: dict
jump_host:
  description: Public IP of the cluster's jump host.
  returned: with state=present
  type: str
  sample: 198.51.100.20
workers:
  description: Hostname and private IP of each worker node.
  returned: with state=present
  type: list
  elements: dict
  sample: [{hostname: r1-tp16-fin01-node-1, private_ip: 10.1.0.11}, {hostname: r1-tp16-fin01-node-2,
           private_ip: 10.1.0.12}]
actions:
  description: What was done (or would be, in check mode) - create, discontinue.
  returned: always
  type: list
  elements: str
ssh_banner:
  description: The jump host's SSH banner, once it answered.
  returned: when it waited for SSH
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.datacrunch.sglang.plugins.module_utils.datacrunch import provision as datacrunch_provision


def main():
    module = AnsibleModule(
        argument_spec={
            "hostname": {"type": "str", "required": True},
            "state": {"type": "str", "default": "present", "choices": ["present", "absent"]},
            "cluster_type": {"type": "str"},
            "image": {"type": "str"},
            "location": {"type": "str"},
            "ssh_keys": {"type": "list", "elements": "str", "default": [], "no_log": False},
            "description": {"type": "str"},
            "startup_script_id": {"type": "str"},
            "shared_volume_name": {"type": "str"},
            "shared_volume_size": {"type": "int"},
            "existing_volumes": {"type": "list", "elements": "str", "default": []},
            "contract": {"type": "str", "default": "PAY_AS_YOU_GO", "choices": ["PAY_AS_YOU_GO", "LONG_TERM"]},
            "wait": {"type": "bool", "default": True},
            "wait_timeout": {"type": "int", "default": 3600},
            "wait_for_ssh": {"type": "bool", "default": True},
            "ssh_port": {"type": "int", "default": 22},
            **datacrunch_provision.API_ARGUMENT_SPEC,
        },
        supports_check_mode=True,
    )
    datacrunch_provision.run_module(module, datacrunch_provision.ensure_cluster)


if __name__ == "__main__":
    main()
