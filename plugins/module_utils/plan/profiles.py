# -*- coding: utf-8 -*-
# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Model profiles: load the shipped YAML files, merge user profiles, resolve `extends`, validate.

A profile is data: which model, how many nodes and GPUs, the tensor parallel layout, SGLang flags, and the
benchmark figures expected from it. Everything that renders a command line reads a profile resolved here.
"""

from __future__ import annotations

import copy
import os
import re

PROFILE_FIELDS = {
    "description": str,
    "extends": str,
    "model": str,
    "revision": str,
    "image": str,
    "model_size_gb": (int, float),
    "gpu_model": str,
    "nodes": int,
    "gpus_per_node": int,
    "tp": int,
    "dp_attention": int,
    "sglang_args": dict,
    "env": dict,
    "min_driver": str,
    "expected": dict,
}
REQUIRED_FIELDS = ("model", "nodes", "gpus_per_node", "tp")
# Mappings that a child profile merges key by key into its parent's (a key set to null removes it).
MERGED_FIELDS = ("sglang_args", "env", "expected")
PROFILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
MAX_EXTENDS_DEPTH = 8


class ProfileError(ValueError):
    """A profile is missing or malformed; the message names the profile, the field and the fix."""


def shipped_profiles_dir():
    """The profiles shipped in roles/sglang_server/vars/profiles of this collection."""
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.normpath(os.path.join(here, "..", "..", "..", "roles", "sglang_server", "vars", "profiles"))


def load_profile_files(directory):
    """Read every <name>.yml in directory into {name: raw mapping}."""
    import yaml  # controller-side only: profiles are resolved before anything reaches a host

    profiles = {}
    for entry in sorted(os.listdir(directory)):
        name, ext = os.path.splitext(entry)
        if ext not in (".yml", ".yaml"):
            continue
        path = os.path.join(directory, entry)
        with open(path, encoding="utf-8") as handle:
            # libyaml's loader when PyYAML has it (the profile is resolved many times per host and play).
            data = yaml.load(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}  # noqa: S506 - a safe loader
        if not isinstance(data, dict):
            raise ProfileError("profile file %s must hold a mapping, not %s" % (path, type(data).__name__))
        profiles[name] = data
    return profiles


def _merge(parent, child):
    merged = copy.deepcopy(parent)
    merged.pop("description", None)
    for key, value in child.items():
        if key == "extends":
            continue
        if key in MERGED_FIELDS and isinstance(value, dict) and value and isinstance(merged.get(key), dict):
            combined = dict(merged[key])
            for sub_key, sub_value in value.items():
                if sub_value is None:
                    combined.pop(sub_key, None)
                else:
                    combined[sub_key] = copy.deepcopy(sub_value)
            merged[key] = combined
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _drop_nulls(mapping):
    return {key: value for key, value in mapping.items() if value is not None}


def resolve_profile(name, shipped, extra=None):
    """Return the validated profile `name` with its `extends` chain applied.

    shipped: {name: raw} from the collection; extra: {name: raw} from sglang_profiles_extra (wins on a name clash).
    """
    catalog = dict(shipped)
    for extra_name, raw in (extra or {}).items():
        if not isinstance(raw, dict):
            raise ProfileError(
                "sglang_profiles_extra[%r] must be a mapping of profile fields, got %s"
                % (extra_name, type(raw).__name__)
            )
        catalog[extra_name] = raw
    if not isinstance(name, str) or not name:
        raise ProfileError(
            "sglang_profile must be a profile name, got %r; known: %s" % (name, ", ".join(sorted(catalog)))
        )
    if name not in catalog:
        raise ProfileError(
            "sglang_profile=%r is not a known profile. Known profiles: %s. Add your own under sglang_profiles_extra "
            "(it may extend a shipped one: {extends: deepseek-r1, ...})." % (name, ", ".join(sorted(catalog)))
        )

    chain = [name]
    while "extends" in catalog[chain[-1]]:
        parent = catalog[chain[-1]]["extends"]
        if parent not in catalog:
            raise ProfileError(
                "profile %r extends %r, which is not a known profile (known: %s)"
                % (chain[-1], parent, ", ".join(sorted(catalog)))
            )
        if parent in chain or len(chain) > MAX_EXTENDS_DEPTH:
            raise ProfileError("profile %r has an extends loop: %s" % (name, " -> ".join([*chain, parent])))
        chain.append(parent)

    profile = {}
    for link in reversed(chain):
        profile = _merge(profile, catalog[link])
    if "description" in catalog[name]:
        profile["description"] = catalog[name]["description"]
    for key in MERGED_FIELDS:
        if key in profile:
            profile[key] = _drop_nulls(profile[key] or {})
    profile["name"] = name
    validate_profile(profile)
    return profile


def validate_profile(profile):
    name = profile.get("name", "?")
    for field in profile:
        if field == "name":
            continue
        if field not in PROFILE_FIELDS:
            raise ProfileError(
                "profile %r has an unknown field %r; profile fields are: %s"
                % (name, field, ", ".join(sorted(PROFILE_FIELDS)))
            )
        expected_type = PROFILE_FIELDS[field]
        value = profile[field]
        if expected_type is int and isinstance(value, bool):
            raise ProfileError("profile %r field %r must be an integer, got %r" % (name, field, value))
        if value is not None and not isinstance(value, expected_type):
            raise ProfileError(
                "profile %r field %r must be %s, got %r"
                % (name, field, getattr(expected_type, "__name__", "a number"), value)
            )
    for field in REQUIRED_FIELDS:
        if profile.get(field) in (None, ""):
            raise ProfileError("profile %r lacks the required field %r" % (name, field))
    for field in ("nodes", "gpus_per_node", "tp"):
        if profile[field] < 1:
            raise ProfileError("profile %r field %r must be at least 1, got %r" % (name, field, profile[field]))
    dp_attention = profile.get("dp_attention") or 0
    if dp_attention < 0 or (dp_attention > 1 and profile["tp"] % dp_attention):
        raise ProfileError(
            "profile %r: dp_attention=%r must divide tp=%r (0 or 1 turns DP attention off)"
            % (name, dp_attention, profile["tp"])
        )
    gpus = profile["nodes"] * profile["gpus_per_node"]
    replicas = _plain_dp(profile)
    if profile["tp"] * replicas != gpus:
        raise ProfileError(
            "profile %r: tp=%d%s needs %d GPUs, but nodes=%d x gpus_per_node=%d gives %d; make tp x dp match the GPUs"
            % (
                name,
                profile["tp"],
                " x dp=%d" % replicas if replicas > 1 else "",
                profile["tp"] * replicas,
                profile["nodes"],
                profile["gpus_per_node"],
                gpus,
            )
        )
    for key, value in (profile.get("env") or {}).items():
        if not isinstance(value, (str, int, float, bool)):
            raise ProfileError("profile %r env %r must be a string, got %r" % (name, key, value))
    if speculative_algorithm(profile) and (profile.get("expected") or {}).get("bench_one_batch"):
        raise ProfileError(
            "profile %r runs speculative decoding (speculative-algorithm %s) but expects bench_one_batch figures: "
            "bench_one_batch always decodes without it (SGLang builds its batch with SpeculativeAlgorithm.NONE), so "
            "it cannot measure this profile. Set expected.bench_one_batch to null and expect bench_serving figures "
            "at concurrency 1 (per_user_decode_throughput) instead"
            % (name, speculative_algorithm(profile))
        )


def speculative_algorithm(profile):
    """The speculative decoding algorithm a profile's flags turn on, or None."""
    args = profile.get("sglang_args") or {}
    for flag in ("speculative-algorithm", "--speculative-algorithm"):
        value = args.get(flag)
        if value not in (None, False, "", "NONE", "none"):
            return str(value)
    return None


def _plain_dp(profile):
    """Data-parallel replicas outside DP attention (each replica holds its own tp GPUs)."""
    if (profile.get("dp_attention") or 0) > 1:
        return 1
    args = profile.get("sglang_args") or {}
    for flag in ("dp", "dp-size", "data-parallel-size"):
        value = args.get(flag, args.get("--" + flag))
        if isinstance(value, int) and not isinstance(value, bool) and value > 1:
            return value
    return 1
