#!/usr/bin/python
# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: datacrunch_image
short_description: Choose the DataCrunch (Verda) OS image for an instance or cluster type and an SGLang image
version_added: 0.1.0
author: datacrunch.sglang maintainers (@datacrunch-sglang)
description:
  - Asks the API which OS images the type accepts (C(GET /images?instance_type=), for Instant Cluster types
    C(GET /images/cluster?instance_type=)) and chooses one whose CUDA line (in its name, such as C(cuda-13.0)) ships a
    driver the SGLang image needs - C(lmsysorg/sglang:v0.5.18) is a CUDA 13 build, which needs an R580+ driver.
    Among those that fit it prefers the newest CUDA line, and for instances the C(-docker) images (Docker and the
    NVIDIA container toolkit come with them).
  - An explicit O(image) is checked the same way and refused when the type does not accept it or it does not fit,
    naming both images and the accepted ones; O(force) takes it as it is.
  - No source documents which driver each OS image ships - the GPU preflight's driver check on the host stays the
    authority.
  - Reads only; runs on the controller, standard library only.
attributes:
  check_mode:
    support: full
    description: Reads only, in any mode.
  diff_mode:
    support: none
    description: Changes nothing, so there is nothing to compare.
extends_documentation_fragment:
  - datacrunch.sglang.datacrunch
options:
  instance_type:
    description: Instance type, such as C(8H200.141S.176V). One of O(instance_type) and O(cluster_type) is required.
    type: str
  cluster_type:
    description: Instant Cluster type, such as C(16H200).
    type: str
  sglang_image:
    description: The SGLang image to serve with. Empty - the collection's pinned default.
    type: str
    default: ""
  sglang_image_version:
    description: The SGLang version of O(sglang_image), when its tag does not say it.
    type: str
    default: ""
  image:
    description: An OS image chosen by hand, to be checked. Empty - choose by rule.
    type: str
    default: ""
  force:
    description: Take O(image) as it is, unchecked.
    type: bool
    default: false
seealso:
  - module: datacrunch.sglang.datacrunch_instance
  - module: datacrunch.sglang.datacrunch_cluster
"""

EXAMPLES = r"""
- name: Choose the OS image for an 8x H200 instance serving lmsysorg/sglang:v0.5.18
  datacrunch.sglang.datacrunch_image:
    instance_type: 8H200.141S.176V
    sglang_image: lmsysorg/sglang:v0.5.18
  register: os_image

- name: Rent it with that image
  datacrunch.sglang.datacrunch_instance:
    hostname: sglang-r1-fin01
    instance_type: 8H200.141S.176V
    image: "{{ os_image.image }}"
    location: FIN-01
    ssh_keys: [my-laptop]
"""

RETURN = r"""
image:
  description: The OS image to rent.
  returned: always
  type: str
  sample: ubuntu-24.04-cuda-13.0-open-docker
cuda:
  description: The CUDA line in the chosen image's name; null when it has none.
  returned: always
  type: str
  sample: "13.0"
accepted:
  description: The OS images the type accepts.
  returned: always
  type: list
  elements: str
sglang_cuda:
  description: The CUDA the SGLang image is built for; null when unknown.
  returned: always
  type: str
  sample: "13.0"
min_driver:
  description: The driver the SGLang image needs; null when unknown.
  returned: always
  type: str
  sample: 580.65.06
reason:
  description: Why this image.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.datacrunch.sglang.plugins.module_utils.datacrunch import images as datacrunch_images
from ansible_collections.datacrunch.sglang.plugins.module_utils.datacrunch import provision as datacrunch_provision


def main():
    module = AnsibleModule(
        argument_spec={
            "instance_type": {"type": "str"},
            "cluster_type": {"type": "str"},
            "sglang_image": {"type": "str", "default": ""},
            "sglang_image_version": {"type": "str", "default": ""},
            "image": {"type": "str", "default": ""},
            "force": {"type": "bool", "default": False},
            **datacrunch_provision.API_ARGUMENT_SPEC,
        },
        required_one_of=[("instance_type", "cluster_type")],
        mutually_exclusive=[("instance_type", "cluster_type")],
        supports_check_mode=True,
    )
    datacrunch_provision.run_module(module, choose_image)


def choose_image(client, p, check_mode):
    """The OS image the API accepts for the type that runs the SGLang image (it changes nothing, in either mode)."""
    cluster = bool(p["cluster_type"])
    type_name = p["cluster_type"] or p["instance_type"]
    accepted = client.list_images(type_name, cluster=cluster)
    result = datacrunch_images.choose_os_image(
        accepted, ("cluster type " if cluster else "instance type ") + type_name, p["sglang_image"],
        p["sglang_image_version"], p["image"], p["force"], cluster=cluster,
    )
    return dict(result, changed=False)


if __name__ == "__main__":
    main()
