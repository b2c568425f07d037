#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: sglang_launch_spec
short_description: Build the SGLang launch spec of a host (controller only)
version_added: 0.1.0
author: datacrunch.sglang maintainers (@datacrunch-sglang)
description:
  - Computes, on the controller, the container a host must run to serve a model profile - image, SGLang command line,
    environment, mounts, ulimits, shared memory, IPC and network mode, GPU request, restart policy, labels with the
    spec hash, readiness probe and endpoint. It contacts no host.
  - For a multi-node unit (hosts sharing O(cluster)), members and ranks come from the fleet plan (O(fleet_plan)):
    C(sglang_node_rank) first, the rest by C(inventory_hostname); rank 0's private address and O(dist_port) form C(--dist-init-addr); the layout is
    checked against the profile (node count, GPUs per node, unique ranks, a private rendezvous address).
  - Flags are rendered in the syntax of the image's SGLang version and checked against the options that version's
    own parser accepts; a profile or user flag that conflicts with one the spec renders itself is refused.
  - Secrets never enter the spec; it names the root-only files that M(datacrunch.sglang.sglang_container) writes.
  - Returns the spec; role M(datacrunch.sglang.sglang_server) keeps it as the fact C(sglang_launch_spec).
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Computes the same spec in check mode.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
  idempotent:
    description: When run twice in a row outside check mode, with the same arguments, the second invocation
      indicates no change.
    support: full
    details: Never changes anything.
options:
  profile:
    description: The resolved profile (from the C(datacrunch.sglang.sglang_profile) lookup).
    type: dict
    required: true
  image:
    description: SGLang image; empty means the profile's or the pinned default.
    type: str
    default: ""
  image_version:
    description: SGLang version of the image when its tag does not say.
    type: str
    default: ""
  model:
    description: Model repository overriding the profile's.
    type: str
    default: ""
  revision:
    description: Model revision overriding the profile's.
    type: str
    default: ""
  snapshot:
    description: The C(sglang_model_snapshot) fact; when complete, the server runs offline on its commit.
    type: dict
  port:
    description: Serving port.
    type: int
    default: 30000
  bind_host:
    description: Address the server binds to; empty means the host's private address when it has one, else 0.0.0.0.
    type: str
    default: ""
  dist_port:
    description: Rendezvous port of multi-node units.
    type: int
    default: 50000
  hf_home:
    description: Hugging Face home on the host (mounted at the same path).
    type: str
    default: "/root/.cache/huggingface"
  hf_endpoint:
    description: Hub endpoint for servers that download themselves.
    type: str
    default: ""
  cache_dir:
    description: Host directory of the JIT caches.
    type: str
    default: "/var/cache/datacrunch-sglang"
  secrets_dir:
    description: Host directory of the root-only secret and spec files.
    type: str
    default: "/etc/datacrunch-sglang"
  container_name:
    description: Name of the container.
    type: str
    default: "sglang-server"
  args:
    description: SGLang flags overriding the profile's (flag to value; null or false removes).
    type: dict
    default: {}
  env:
    description:
      - Extra container environment. Names that look like credentials are refused, and so are C(SGLANG_*) names
        that the image's SGLang version does not read (removed, deprecated or misspelt) unless listed in
        O(env_names_extra).
    type: dict
    default: {}
  env_names_extra:
    description:
      - C(SGLANG_*) names the image reads beyond those of its SGLang version (a patched or newer build); they pass
        the check of O(env) and of the profile's C(env). Names that look like credentials are refused all the same.
    type: list
    elements: str
    default: []
  api_key:
    description: Whether the server requires an API key (passed through a root-only config file).
    type: bool
    default: true
  hf_token:
    description: Whether a Hugging Face token file is provided to the container.
    type: bool
    default: false
  enable_metrics:
    description: Serve Prometheus metrics at /metrics.
    type: bool
    default: true
  shm_size:
    description: Shared memory of the container.
    type: str
    default: "32g"
  ulimits:
    description: Container ulimits, name to limit (soft and hard; -1 is unlimited).
    type: dict
    default: {memlock: -1, stack: 67108864}
  log_max_size:
    description: Size at which the container log rotates.
    type: str
    default: "100m"
  log_max_files:
    description: Rotated container log files kept.
    type: int
    default: 5
  allow_public_rendezvous:
    description: Accept a public rank 0 address for the rendezvous.
    type: bool
    default: false
  allow_deprecated_flags:
    description: Accept flags the SGLang version deprecates.
    type: bool
    default: false
  nccl_ib_hca:
    description:
      - NCCL_IB_HCA override. Default from the host's active RDMA devices as the preflight published them in
        C(sglang_gpu) - its InfiniBand devices only, matched exactly (C(=mlx5_0,mlx5_1)), or its RoCE devices on a
        RoCE-only host.
    type: str
    default: ""
  nccl_ib_gid_index:
    description: NCCL_IB_GID_INDEX override (default 3 when every RDMA device of the host is RoCE, else unset).
    type: str
    default: ""
  nccl_ib_pkey:
    description:
      - NCCL_IB_PKEY override (an index into the P_Key table). Default on InfiniBand hosts - the one index whose
        entry is a full member of a non-default partition, else 1 as Verda documents for Instant Clusters; unset on
        RoCE-only hosts.
    type: str
    default: ""
  nccl_socket_ifname:
    description: Interface for NCCL and Gloo (default the one holding the private address).
    type: str
    default: ""
  cluster:
    description: This host's C(sglang_cluster).
    type: str
    default: ""
  node_rank:
    description: This host's C(sglang_node_rank) (-1 for automatic).
    type: int
    default: -1
  private_ip:
    description: This host's C(sglang_private_ip).
    type: str
    default: ""
  collection_version:
    description: Recorded in a container label.
    type: str
    default: ""
  plan:
    description: Plan mode; values only a host can tell become explicit placeholders instead of errors.
    type: bool
    default: false
  fleet_plan:
    description:
      - The host's fleet plan (fact C(sglang_plan) from M(datacrunch.sglang.sglang_plan)) - the unit's members in rank
        order and their private addresses. When given, O(cluster), O(node_rank) and O(private_ip) are not read.
      - Without it the same plan is made from the inventory and those options.
    type: dict
"""

EXAMPLES = r"""
- name: Build this host's launch spec
  datacrunch.sglang.sglang_launch_spec:
    profile: "{{ lookup('datacrunch.sglang.sglang_profile', sglang_profile, extra=sglang_profiles_extra) }}"
    image: "{{ sglang_image }}"
    cluster: "{{ sglang_cluster }}"
"""

RETURN = r"""
spec:
  description: The launch spec.
  returned: always
  type: dict
docker_run:
  description: The equivalent docker run command line; it holds no secret, since secrets are files.
  returned: always
  type: str
"""
