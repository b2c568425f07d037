#!/usr/bin/python
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: gpu_info
short_description: Gather what a GPU host offers an SGLang server, in one call
version_added: 0.1.0
author: datacrunch.sglang maintainers (@datacrunch-sglang)
description:
  - Reads the host's NVIDIA GPUs from C(nvidia-smi -q -x) (driver, CUDA, count, names, UUIDs, bus ids, memory,
    persistence, ECC mode and uncorrected errors, retired pages, remapped rows, MIG, compute mode, processes holding
    GPU memory with the container they run in), the NVLink topology from C(nvidia-smi topo -m) and the state of
    every link from C(nvidia-smi nvlink -s).
  - Also reports the NVIDIA container toolkit (C(nvidia-ctk), the runtime hook, Docker's C(daemon.json)
    runtimes, CDI specs), the Docker engine (through its API socket), free disk for given paths, the size of
    C(/dev/shm), the TCP listeners on given ports and whether a container of this collection holds them, InfiniBand
    devices, the host's interfaces and private addresses.
  - Optionally runs C(nvidia-smi -L) in a throw-away container that asks for every GPU (as C(docker run --gpus all)),
    and a TCP rendezvous test between the nodes of a multi-node cluster.
  - Only reads the host; a probe container is removed again. The checks are judged on the controller by the
    role C(datacrunch.sglang.gpu_host) (filter C(datacrunch.sglang.gpu_preflight)), not here.
  - Runs under the system Python (standard library only).
options:
  gather_subset:
    description:
      - What to gather. V(all) is every subset.
    type: list
    elements: str
    default: [all]
    choices: [all, gpu, toolkit, docker, storage, ports, network]
  nvidia_smi:
    description: The nvidia-smi command; a bare name is looked up on C(PATH) and in the usual driver directories.
    type: str
    default: nvidia-smi
  nvidia_smi_timeout:
    description: Seconds each nvidia-smi call may take (a hung GPU can hang nvidia-smi).
    type: int
    default: 60
  paths:
    description: Paths whose filesystem's free space to report (the nearest existing parent is measured).
      Docker's root directory is added when the engine answers.
    type: list
    elements: path
    default: []
  sizes:
    description: Directories whose files' total size to report (symbolic links are not followed).
    type: list
    elements: path
    default: []
  ports:
    description: TCP ports whose listeners to report, with the process and container that hold them.
    type: list
    elements: int
    default: []
  images:
    description: Images whose presence in the Docker engine to report.
    type: list
    elements: str
    default: []
  container_probe:
    description:
      - Run C(nvidia-smi -L) in a container of this image that asks for every GPU, then remove it.
      - Skipped (and said so) when the image is not on the host or the engine is not running.
    type: dict
    suboptions:
      image:
        description: Image to run; it needs no nvidia-smi of its own (the NVIDIA hook mounts the host's).
        type: str
        required: true
      timeout:
        description: Seconds the container may run.
        type: int
        default: 120
  rendezvous:
    description:
      - TCP test of the multi-node rendezvous port. Run it on all nodes of a cluster in the same task (forks at
        least the cluster size); rank 0 listens, the others connect and say hello.
    type: dict
    suboptions:
      listen_port:
        description: On rank 0, the port to listen on.
        type: int
      peers:
        description: On rank 0, how many peers to wait for.
        type: int
        default: 0
      connect_host:
        description: On the other ranks, rank 0's address.
        type: str
      connect_port:
        description: On the other ranks, rank 0's port.
        type: int
      timeout:
        description: Seconds to wait for the peers, or for rank 0 to answer.
        type: int
        default: 20
  docker_host:
    description: The engine's socket as C(unix:///path); default C(DOCKER_HOST) or C(/var/run/docker.sock).
    type: str
    default: ""
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Nothing is changed in either mode; the probe container runs in check mode too and is removed.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
  platform:
    description: Target OS/families that can be operated against.
    support: full
    platforms: posix
notes:
  - Processes of other users are only attributed to a container when the module runs as root.
seealso:
  - name: nvidia-smi documentation
    description: The fields of the XML report.
    link: https://docs.nvidia.com/deploy/nvidia-smi/index.html
"""

EXAMPLES = r"""
- name: Gather the GPU host facts the preflight needs
  datacrunch.sglang.gpu_info:
    paths: [/root/.cache/huggingface, /var/cache/datacrunch-sglang]
    ports: [30000]
    images: [lmsysorg/sglang:v0.5.18]
    container_probe:
      image: lmsysorg/sglang:v0.5.18
  register: host

- name: Show driver and GPUs
  ansible.builtin.debug:
    msg: "{{ host.gpu.driver_version }}: {{ host.gpu.count }} x {{ host.gpu.gpus[0].name }}"
"""

RETURN = r"""
gpu:
  description: nvidia-smi's view. C(present) false when there is no nvidia-smi, C(ok) false when it failed.
  returned: when gathered
  type: dict
  contains:
    present: {description: nvidia-smi was found., type: bool}
    ok: {description: nvidia-smi answered., type: bool}
    error: {description: Why not., type: str}
    driver_version: {description: Driver version., type: str, sample: 580.159.04}
    cuda_version: {description: Highest CUDA the driver supports., type: str, sample: "13.0"}
    count: {description: Number of GPUs., type: int, sample: 8}
    gpus:
      description: One entry per GPU, in nvidia-smi's index order.
      type: list
      elements: dict
      sample:
        - {index: 0, name: NVIDIA H200, uuid: GPU-ea772337-2505-0652-5724-8ef76d0f062f, bus_id: "00000000:00:06.0",
           memory_total_mib: 143771, memory_used_mib: 0, persistence_mode: true, ecc_mode: true,
           ecc_uncorrected_volatile: 0, mig_mode: false, compute_mode: Default, processes: []}
    nvlink:
      description: C(pairs) (each GPU pair with its NVLink count), C(all_pairs_joined), per-GPU C(links) state.
      type: dict
toolkit:
  description: NVIDIA container toolkit binaries, version, package, daemon.json runtimes, CDI specs.
  returned: when gathered
  type: dict
docker:
  description: Docker engine state (running, version, runtimes, root dir).
  returned: when gathered
  type: dict
images:
  description: Presence and size of the requested images.
  returned: when gathered
  type: list
  elements: dict
container_probe:
  description: Result of nvidia-smi -L in a GPU container (C(ran), C(exit_code), C(output), C(error)).
  returned: when requested
  type: dict
disk:
  description: Free and total bytes per requested path (and Docker's root dir).
  returned: when gathered
  type: dict
sizes:
  description: Bytes of files under each requested directory.
  returned: when gathered
  type: dict
shm:
  description: Size and free bytes of /dev/shm.
  returned: when gathered
  type: dict
ports:
  description: Per port, whether it is free and who listens (pid, process, container, ours).
  returned: when gathered
  type: dict
network:
  description: Hostname, interfaces with their addresses, default route interface, private addresses.
  returned: when gathered
  type: dict
ib_devices:
  description:
    - InfiniBand/RoCE devices with port state, link layer, rate, network interfaces, and each port's P_Key table
      (C(pkeys), the non-empty entries as C(index) and C(value) such as C(0x8001), read from sysfs).
  returned: when gathered
  type: list
  elements: dict
rendezvous:
  description: Result of the rendezvous test.
  returned: when requested
  type: dict
seconds:
  description: Time the gathering took.
  returned: always
  type: float
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.datacrunch.sglang.plugins.module_utils.common.module_io import pick
from ansible_collections.datacrunch.sglang.plugins.module_utils.gpu.host_probe import SUBSETS, gather


def main():
    module = AnsibleModule(
        argument_spec={
            "gather_subset": {"type": "list", "elements": "str", "default": ["all"], "choices": ["all", *SUBSETS]},
            "nvidia_smi": {"type": "str", "default": "nvidia-smi"},
            "nvidia_smi_timeout": {"type": "int", "default": 60},
            "paths": {"type": "list", "elements": "path", "default": []},
            "sizes": {"type": "list", "elements": "path", "default": []},
            "ports": {"type": "list", "elements": "int", "default": []},
            "images": {"type": "list", "elements": "str", "default": []},
            "container_probe": {
                "type": "dict",
                "options": {"image": {"type": "str", "required": True}, "timeout": {"type": "int", "default": 120}},
            },
            "rendezvous": {
                "type": "dict",
                "options": {
                    "listen_port": {"type": "int"},
                    "peers": {"type": "int", "default": 0},
                    "connect_host": {"type": "str"},
                    "connect_port": {"type": "int"},
                    "timeout": {"type": "int", "default": 20},
                },
                "mutually_exclusive": [["listen_port", "connect_host"]],
                "required_one_of": [["listen_port", "connect_host"]],
                "required_together": [["connect_host", "connect_port"]],
            },
            "docker_host": {"type": "str", "default": ""},
        },
        supports_check_mode=True,
    )
    params = module.params
    subsets = SUBSETS if "all" in params["gather_subset"] else params["gather_subset"]
    for port in params["ports"]:
        if not 1 <= port <= 65535:
            module.fail_json(msg=f"ports: {port!r} is not a TCP port number (1-65535)")
    facts = gather(
        subsets=subsets,
        nvidia_smi_path=params["nvidia_smi"],
        nvidia_smi_timeout=params["nvidia_smi_timeout"],
        **pick(params, ("paths", "sizes", "ports", "images", "container_probe", "rendezvous", "docker_host")),
    )
    module.exit_json(changed=False, **facts)


if __name__ == "__main__":
    main()
