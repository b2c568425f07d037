# -*- coding: utf-8 -*-
# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Is a model's snapshot complete in a host's Hugging Face cache? A quick, offline look (no hashing, no Hub).

What SGLang needs to start offline: the snapshot directory of the commit (`hub/models--org--name/snapshots/<commit>`,
a ref such as `main` resolved through `refs/<ref>`, as huggingface_hub lays the cache out), its `config.json`, and
every shard that `model.safetensors.index.json` names (else at least one `*.safetensors` or `*.bin`), each a file
that resolves (the snapshot's entries are links into `blobs/`).
"""

from __future__ import annotations

import json
import os
import re

COMMIT = re.compile(r"^[0-9a-f]{40}$")


DEFAULT_HF_HOME = "/root/.cache/huggingface"


def repo_cache_dir(hf_home, repo):
    return os.path.join(hf_home or DEFAULT_HF_HOME, "hub", "models--" + repo.replace("/", "--"))


def snapshot_problem(hf_home, model, revision):
    """Why the model cannot be loaded from the cache (one sentence), or None when the snapshot is complete."""
    if model.startswith("/"):
        snapshot = model
    else:
        repo_dir = repo_cache_dir(hf_home, model)
        ref = revision or "main"
        if COMMIT.match(ref):
            commit = ref
        else:
            ref_file = os.path.join(repo_dir, "refs", ref)
            try:
                with open(ref_file, encoding="utf-8") as handle:
                    commit = handle.read().strip()
            except OSError:
                return "revision %r of %s is not in the cache (%s is missing)" % (ref, model, ref_file)
        snapshot = os.path.join(repo_dir, "snapshots", commit)
    if not os.path.isdir(snapshot):
        return "the snapshot %s is not in the cache" % snapshot
    if not os.path.isfile(os.path.join(snapshot, "config.json")):
        return "config.json is missing in %s" % snapshot
    index = os.path.join(snapshot, "model.safetensors.index.json")
    if os.path.exists(index):
        try:
            with open(index, encoding="utf-8") as handle:
                shards = sorted(set((json.load(handle).get("weight_map") or {}).values()))
        except (OSError, ValueError) as exc:
            return "%s is not readable JSON (%s)" % (index, exc)
        missing = [shard for shard in shards if not os.path.isfile(os.path.join(snapshot, shard))]
        if missing:
            return "%d of %d weight shards are missing in %s (e.g. %s)" % (len(missing), len(shards), snapshot,
                                                                           missing[0])
        return None
    names = os.listdir(snapshot)
    if not any(name.endswith((".safetensors", ".bin")) and os.path.isfile(os.path.join(snapshot, name))
               for name in names):
        return "no weights (*.safetensors) in %s" % snapshot
    return None
