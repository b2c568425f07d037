#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: sglang_plan
short_description: This host's part of the fleet plan - unit, rank, addresses, commit (controller only)
version_added: 0.1.0
author: datacrunch.sglang maintainers (@datacrunch-sglang)
description:
  - Computes, on the controller, the facts that make a fleet (role C(datacrunch.sglang.sglang) publishes them as
    C(sglang_plan)) - the
    host's serving unit (hosts sharing C(sglang_cluster) in the inventory, else the host alone), its members ordered
    by rank, this host's rank (C(sglang_node_rank) first, the rest by C(inventory_hostname)), rank 0's private address,
    the rendezvous and serving ports, the profile, the model, the commit every node of the unit loads, the image,
    the cache and secret paths and the endpoint.
  - Members and ranks come from the inventory (C(groups['all'])), never from the play's hosts, so C(serial) and
    C(--limit) never change a unit.
  - A private address is C(sglang_private_ip), else the one the C(datacrunch.sglang.gpu_host) preflight discovered
    (fact C(sglang_gpu)); before the preflight an unknown address is C(null).
  - A model revision that is a branch or a tag is resolved to a commit once per unit on the controller, through the
    Hub API, and recorded in O(commits_file); later runs keep the unit on that commit until O(refresh) moves it. A
    commit id is used as given. Without Hub access an unpinned revision is refused with the fix.
  - The Hub token is read from the variable C(sglang_hf_token), never from a task argument, and never returned.
  - Run by role C(datacrunch.sglang.sglang), which every role of the collection depends on.
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Computes the same plan; a commit resolved in check mode is not recorded.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
  idempotent:
    description: When run twice in a row outside check mode, with the same arguments, the second invocation
      indicates no change.
    support: full
    details: Never changes a host; the commit record on the controller only grows.
options:
  profile:
    description: The resolved profile (from the C(datacrunch.sglang.sglang_profile) lookup).
    type: dict
    required: true
  profile_name:
    description: The profile's name (C(sglang_profile)).
    type: str
    required: true
  model:
    description: Hub model id; empty for the profile's.
    type: str
    default: ""
  revision:
    description: Branch, tag or commit; empty for the profile's (C(main) when the profile names none).
    type: str
    default: ""
  image:
    description: SGLang image; empty for the profile's.
    type: str
    default: ""
  image_version:
    description: SGLang version of the image when its tag does not say it.
    type: str
    default: ""
  hf_home:
    description: Hugging Face home on the host.
    type: str
    required: true
  hf_endpoint:
    description: Hub endpoint; empty for huggingface.co.
    type: str
    default: ""
  cache_dir:
    description: Host directory of the JIT caches.
    type: str
    required: true
  secrets_dir:
    description: Host directory of the root-only secret files.
    type: str
    default: /etc/datacrunch-sglang
  container_name:
    description: Name of the server container.
    type: str
    default: sglang-server
  port:
    description: Serving port.
    type: int
    default: 30000
  dist_port:
    description: Rendezvous port of multi-node units (C(--dist-init-addr) on rank 0's private address).
    type: int
    default: 50000
  resolve_revision:
    description: Resolve a branch or tag to a commit; off for playbooks that load no model (status, logs, teardown).
    type: bool
    default: true
  refresh:
    description: Resolve the branch or tag again and move the unit to its current commit (C(sglang_model_refresh)).
    type: bool
    default: false
  commits_file:
    description: Controller file recording each unit's commit (JSON, mode 0600), one per inventory.
    type: path
    required: true
"""

EXAMPLES = r"""
- name: Plan this host's part of the fleet
  datacrunch.sglang.sglang_plan:
    profile: "{{ sglang_profile_data }}"
    profile_name: "{{ sglang_profile }}"
    hf_home: "{{ sglang_hf_home }}"
    cache_dir: "{{ sglang_cache_dir }}"
    commits_file: "{{ sglang_model_commits_file }}"
"""

RETURN = r"""
plan:
  description: The host's plan, also published as the fact C(sglang_plan).
  returned: always
  type: dict
  contains:
    unit:
      description: The unit's name (C(sglang_cluster), or the host for a single node).
      type: str
    members:
      description: The unit's hosts, ordered by rank.
      type: list
      elements: str
    rank:
      description: This host's rank in the unit.
      type: int
    rank0_address:
      description: Rank 0's private address (C(null) until known).
      type: str
    model:
      description: C(repo), C(revision) as asked, C(commit) every node loads, C(commit_source) (pinned, hub,
        recorded).
      type: dict
"""
