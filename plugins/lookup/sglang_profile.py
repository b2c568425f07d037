# -*- coding: utf-8 -*-
# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: sglang_profile
short_description: Resolve a datacrunch.sglang model profile
version_added: 0.1.0
author: datacrunch.sglang maintainers (@datacrunch-sglang)
description:
  - Returns the model profile with the given name, with its C(extends) chain applied and validated.
  - Profiles ship as YAML files in the collection's C(roles/sglang_server/vars/profiles/); users add or override
    profiles through O(extra) (the C(sglang_profiles_extra) variable).
  - Runs on the controller only.
options:
  _terms:
    description: Name of the profile (one).
    required: true
  extra:
    description: Extra profiles keyed by name, with the same fields as the shipped files; they win on a name clash.
    type: dict
    default: {}
"""

EXAMPLES = r"""
- name: Show the GPUs the profile needs
  ansible.builtin.debug:
    msg: "{{ profile.nodes }} x {{ profile.gpus_per_node }} GPUs, tp {{ profile.tp }}"
  vars:
    profile: "{{ lookup('datacrunch.sglang.sglang_profile', sglang_profile, extra=sglang_profiles_extra) }}"
"""

RETURN = r"""
_raw:
  description: The resolved profile (a one-element list; C(lookup) returns the mapping itself).
  type: list
  elements: dict
  contains:
    name:
      description: Profile name.
      type: str
    model:
      description: Model repository or path.
      type: str
    revision:
      description: Model revision - a branch, a tag or a commit.
      type: str
    nodes:
      description: Nodes in one serving unit.
      type: int
    gpus_per_node:
      description: GPUs each node contributes.
      type: int
    tp:
      description: Tensor parallel size.
      type: int
    dp_attention:
      description: Data-parallel attention width (0 or 1 is off).
      type: int
    sglang_args:
      description: SGLang flags and their values.
      type: dict
    env:
      description: Extra container environment.
      type: dict
    min_driver:
      description: Minimum NVIDIA driver (empty means the image's CUDA decides).
      type: str
    expected:
      description: Benchmark figures the profile should reach.
      type: dict
"""

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

from ansible_collections.datacrunch.sglang.plugins.module_utils.plan.profiles import (
    ProfileError,
    load_profile_files,
    resolve_profile,
    shipped_profiles_dir,
)


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        if len(terms) != 1:
            raise AnsibleLookupError("sglang_profile takes exactly one profile name, got %d" % len(terms))
        try:
            shipped = load_profile_files(shipped_profiles_dir())
            return [resolve_profile(terms[0], shipped, self.get_option("extra") or {})]
        except ProfileError as exc:
            raise AnsibleLookupError(str(exc)) from None
