#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: sglang_image
short_description: Make sure the SGLang image is on the host, and that a container of it sees the GPUs
version_added: 0.1.0
author: datacrunch.sglang maintainers (@datacrunch-sglang)
description:
  - Pulls the image per the pull policy, with the registry credentials of the host's Docker configuration (root's
    C(~/.docker/config.json), as C(docker login) writes it), as C(docker pull) does.
  - With O(gpus), then runs C(nvidia-smi -L) in a throw-away container of the image that asks for every GPU (as
    C(docker run --gpus all)) and requires that it lists that many GPUs, so that a toolkit problem shows as soon as
    the image is there.
  - The role C(datacrunch.sglang.model_cache) runs it in the background while the weights download, so that a
    wrong tag, a registry that refuses the host's credentials or a toolkit problem shows within one progress round
    instead of after the download.
options:
  image:
    description: The image reference, e.g. C(lmsysorg/sglang:v0.5.18).
    type: str
    required: true
  pull:
    description: C(missing) pulls only when the image is not on the host; C(always) asks the registry every time;
      C(never) fails when the image is not on the host.
    type: str
    default: missing
    choices: [missing, always, never]
  gpus:
    description: GPUs a container of the image must see (C(nvidia-smi -L)); 0 runs no probe.
    type: int
    default: 0
  probe_timeout:
    description: Seconds the probe container may run.
    type: int
    default: 120
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Reports the pull it would do; the probe runs only when the image is already there (it changes nothing).
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
  platform:
    description: Target OS/families that can be operated against.
    support: full
    platforms: posix
requirements:
  - docker (Python SDK) on the host, in the collection's virtualenv (role C(datacrunch.sglang.host_venv))
"""

EXAMPLES = r"""
- name: Pull the image in the background and probe the GPUs in it
  datacrunch.sglang.sglang_image:
    image: lmsysorg/sglang:v0.5.18
    gpus: 8
  async: 3600
  poll: 0
  register: pull_job
"""

RETURN = r"""
image:
  description: The image reference.
  returned: always
  type: str
id:
  description: The image id on the host (empty in check mode before a pull).
  returned: success
  type: str
pulled:
  description: Whether this run pulled a new image.
  returned: success
  type: bool
pull_seconds:
  description: Seconds the pull (or the look for the local image) took.
  returned: success
  type: float
probe:
  description: The GPU probe (C(ran), C(exit_code), C(output), C(seconds), C(status), C(summary), C(fix)), or null.
  returned: always
  type: dict
seconds:
  description: Seconds the whole call took.
  returned: success
  type: float
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.datacrunch.sglang.plugins.module_utils.common.docker_sdk import (
    DockerException,
    DockerUnavailable,
    connect,
)
from ansible_collections.datacrunch.sglang.plugins.module_utils.launch.image_pull import ImagePullError, prefetch_image


def main():
    module = AnsibleModule(
        argument_spec={
            "image": {"type": "str", "required": True},
            "pull": {"type": "str", "default": "missing", "choices": ["missing", "always", "never"]},
            "gpus": {"type": "int", "default": 0},
            "probe_timeout": {"type": "int", "default": 120},
        },
        supports_check_mode=True,
    )
    params = module.params
    try:
        # Long enough for a layer of a 30 GB image to be extracted between two progress messages.
        client = connect(timeout=900)
        result = prefetch_image(client, params["image"], params["pull"], params["gpus"], module.check_mode,
                                probe_timeout=params["probe_timeout"])
    except DockerUnavailable as exc:
        module.fail_json(msg=str(exc), image=params["image"], probe=None)
    except ImagePullError as exc:
        module.fail_json(msg=str(exc), image=params["image"], probe=exc.result.get("probe"))
    except DockerException as exc:
        module.fail_json(msg="the host's Docker engine does not answer: %s" % exc, image=params["image"], probe=None)
    module.exit_json(changed=result["pulled"] or bool(result["actions"]), **result)


if __name__ == "__main__":
    main()
