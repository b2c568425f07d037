#!/usr/bin/python
# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: datacrunch_instance
short_description: Rent, start, shut down and release a DataCrunch (Verda) instance, by hostname
version_added: 0.1.0
author: datacrunch.sglang maintainers (@datacrunch-sglang)
description:
  - Creates, starts, shuts down or deletes one instance of a DataCrunch (now Verda) account, found by its hostname.
    The hostname is the identity - a second run with the same hostname changes nothing.
  - Before ordering, checks that the SSH keys exist and that the type is available in the location; without
    capacity it fails and orders nothing. An order that ends in status C(no_capacity) or C(error) is deleted again
    and reported.
  - With O(wait), returns once the instance is running and its SSH server answers on the public IP.
  - Runs on the controller (a play on localhost, or C(delegate_to=localhost)); standard library only.
attributes:
  check_mode:
    support: full
    description: Sends only reads; reports what it would order, start, shut down or delete.
  diff_mode:
    support: full
    description: Hostname, status, type, location and image before and after.
extends_documentation_fragment:
  - datacrunch.sglang.datacrunch
options:
  hostname:
    description: Hostname of the instance; its identity for this module. Letters, digits and hyphens.
    type: str
    required: true
  state:
    description:
      - V(running) - exists and runs (created or started as needed).
      - V(present) - exists, in whatever status (created if missing).
      - V(stopped) - exists and is shut down (still billed for its volumes).
      - V(absent) - deleted.
    type: str
    choices: [running, present, stopped, absent]
    default: running
  instance_type:
    description: Instance type, such as C(8H200.141S.176V). Needed to create; checked against an existing one.
    type: str
  image:
    description: OS image, such as C(ubuntu-24.04-cuda-13.0-open-docker), or the id of an OS volume to boot from.
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
    description: Id of a startup script of the account to run on first boot.
    type: str
  volumes:
    description: New data volumes to create and attach.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Volume name.
        type: str
        required: true
      size:
        description: Size in GB.
        type: int
        required: true
      type:
        description: Volume type.
        type: str
        choices: [NVMe, HDD]
        default: NVMe
  existing_volumes:
    description: Ids of existing volumes to attach.
    type: list
    elements: str
    default: []
  os_volume:
    description: OS volume name and size (GB); the image's default when unset.
    type: dict
    suboptions:
      name:
        description: Volume name.
        type: str
        required: true
      size:
        description: Size in GB.
        type: int
        required: true
  is_spot:
    description: Rent as a spot instance.
    type: bool
    default: false
  contract:
    description: Contract type.
    type: str
    choices: [PAY_AS_YOU_GO, LONG_TERM, SPOT]
  pricing:
    description: Pricing model.
    type: str
    choices: [FIXED_PRICE, DYNAMIC_PRICE]
  delete_volumes:
    description:
      - With O(state=absent), delete the OS and data volumes too (to the trash). Otherwise the API's default applies
        (the OS volume is deleted, data volumes are detached and kept).
    type: bool
    default: false
  wait:
    description: Wait until the instance reaches the state (and answers on SSH, see O(wait_for_ssh)).
    type: bool
    default: true
  wait_timeout:
    description: Seconds to wait in all.
    type: int
    default: 1800
  wait_for_ssh:
    description: With O(wait), also wait until an SSH server answers on the public IP.
    type: bool
    default: true
  ssh_port:
    description: Port of the SSH server.
    type: int
    default: 22
seealso:
  - module: datacrunch.sglang.datacrunch_cluster
  - plugin: datacrunch.sglang.datacrunch
    plugin_type: inventory
"""

EXAMPLES = r"""
- name: Rent an 8x H200 instance for DeepSeek-R1
  datacrunch.sglang.datacrunch_instance:
    hostname: sglang-r1-fin01
    instance_type: 8H200.141S.176V
    image: ubuntu-24.04-cuda-13.0-open-docker
    location: FIN-01
    ssh_keys: [my-laptop]
    os_volume: {name: sglang-r1-fin01-os, size: 1200}
  register: rented

- name: Shut it down for the night (volumes stay, and are billed)
  datacrunch.sglang.datacrunch_instance:
    hostname: sglang-r1-fin01
    state: stopped

- name: Release it
  datacrunch.sglang.datacrunch_instance:
    hostname: sglang-r1-fin01
    state: absent
"""

RETURN = r"""
instance:
  description: The instance as the API describes it (without its Jupyter token); null when absent or not yet created
    in check mode.
  returned: always
  type: dict
  sample: {id: 0b6f2c1e-1111-4c1a-9e55-000000000001, hostname: sglang-r1-fin01, status: running, ip: 192.0.2.11,
           instance_type: 8H200.141S.176V, location: FIN-01, image: ubuntu-24.04-cuda-12.8-open-docker}
actions:
  description: What was done (or would be, in check mode) - create, start, shutdown, delete.
  returned: always
  type: list
  elements: str
ssh_banner:
  description: The SSH server's banner, once it answered.
  returned: when it waited for SSH
  type: str
  sample: SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.datacrunch.sglang.plugins.module_utils.datacrunch import provision as datacrunch_provision


def main():
    module = AnsibleModule(
        argument_spec={
            "hostname": {"type": "str", "required": True},
            "state": {"type": "str", "default": "running", "choices": ["running", "present", "stopped", "absent"]},
            "instance_type": {"type": "str"},
            "image": {"type": "str"},
            "location": {"type": "str"},
            "ssh_keys": {"type": "list", "elements": "str", "default": [], "no_log": False},
            "description": {"type": "str"},
            "startup_script_id": {"type": "str"},
            "volumes": {
                "type": "list", "elements": "dict", "default": [],
                "options": {
                    "name": {"type": "str", "required": True},
                    "size": {"type": "int", "required": True},
                    "type": {"type": "str", "default": "NVMe", "choices": ["NVMe", "HDD"]},
                },
            },
            "existing_volumes": {"type": "list", "elements": "str", "default": []},
            "os_volume": {
                "type": "dict",
                "options": {"name": {"type": "str", "required": True}, "size": {"type": "int", "required": True}},
            },
            "is_spot": {"type": "bool", "default": False},
            "contract": {"type": "str", "choices": ["PAY_AS_YOU_GO", "LONG_TERM", "SPOT"]},
            "pricing": {"type": "str", "choices": ["FIXED_PRICE", "DYNAMIC_PRICE"]},
            "delete_volumes": {"type": "bool", "default": False},
            "wait": {"type": "bool", "default": True},
            "wait_timeout": {"type": "int", "default": 1800},
            "wait_for_ssh": {"type": "bool", "default": True},
            "ssh_port": {"type": "int", "default": 22},
            **datacrunch_provision.API_ARGUMENT_SPEC,
        },
        supports_check_mode=True,
    )
    datacrunch_provision.run_module(module, datacrunch_provision.ensure_instance)


if __name__ == "__main__":
    main()
