#!/usr/bin/python
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: hf_snapshot
short_description: Prefetch and verify one revision of a Hugging Face Hub model in a host's Hugging Face cache
version_added: 0.1.0
author: datacrunch.sglang maintainers (@datacrunch-sglang)
description:
  - Makes the files of one revision of a Hub model repository complete in C(<hf_home>/hub/), the cache layout that
    huggingface_hub and SGLang read (C(models--org--name/blobs), C(snapshots/<commit>), C(refs/<branch>)). A server
    started with C(HF_HUB_OFFLINE=1) and the returned commit then finds every file without the network.
  - Resolves the revision (branch, tag or commit) to a commit and returns it, so that it can be pinned.
  - Compares the cache with the Hub's file list. The quick check looks at presence and sizes only, so a complete
    688 GB snapshot is confirmed in well under a second per hundred files. With O(verify=sha256) every LFS file is
    hashed and compared with the Hub's sha256 (other files with their git blob id), which catches same-size
    corruption. Files found truncated or corrupted are removed and fetched again.
  - Before downloading, asks the server for one file (a missing or rejected token or a gated repo fails here), and
    compares the bytes still missing with the free disk space, failing with the figures when they do not fit with
    O(disk_reserve_gb) to spare. Nothing is written before these checks pass.
  - Downloads O(parallelism) files at a time over plain HTTP (Xet is not used). A file of at least twice
    O(split_size) is fetched as pieces of O(split_size) over up to O(connections_per_file) connections (C(Range)
    requests), because mirrors and CDNs cap what one connection carries; smaller files come as one stream. The
    pieces wait in C(blobs/<etag>.<host>.<pid>.dcsg-part) with a map of the ranges
    in it (C(.dcsg-ranges)); C(blobs/<etag>) appears only when every range is there (and, with O(verify=sha256), the
    sha256 matches). C(blobs/<etag>.incomplete) is only ever a contiguous prefix, as older huggingface_hub versions
    expect when they resume it.
  - A download that was interrupted (a killed process, a lost host) resumes on the next run, asking only for the
    ranges that are missing. A server that ignores C(Range) gets the file asked for as one stream from byte 0, and
    the result says so (RV(files_range_ignored), RV(bytes_discarded)). Hosts that share one cache volume each write
    only partial files of their own, also where file locks do nothing (some network filesystems).
  - Every file that arrives is checked against the Hub's size; with O(verify=sha256) it is also hashed once (on the
    way in for one stream, after the last range for pieces) and checked against the Hub's sha256.
  - Writes a progress file (bytes done and to do, rate, ETA) while it downloads, for a caller that runs it with
    C(async) and prints the progress while waiting (the role C(datacrunch.sglang.model_cache) does).
  - With O(serve), afterwards serves the verified snapshot to other hosts over HTTP in the Hub's protocol until a
    stop file appears, so that they fetch from this host instead of the Hub (fan-out).
  - Needs C(huggingface_hub) on the host (the virtualenv of C(datacrunch.sglang.host_venv)).
options:
  repo_id:
    description: Model repository on the Hub, C(organisation/name).
    type: str
    required: true
    aliases: [repo]
  revision:
    description: Branch, tag or 40-character commit id. A branch or tag is also recorded in C(refs/).
    type: str
    default: main
  hf_home:
    description:
      - The Hugging Face home on the host (C(HF_HOME)); the snapshot lands in its C(hub/) cache. A token stored in
        C(<hf_home>/token) is used when O(token) is not given.
    type: path
    required: true
  allow_patterns:
    description: Only files matching one of these glob patterns (a pattern ending in C(/) selects a folder).
    type: list
    elements: str
    default: []
  ignore_patterns:
    description: Leave out files matching one of these glob patterns.
    type: list
    elements: str
    default: []
  token:
    description:
      - Hugging Face token for gated or private repositories. Passed to huggingface_hub in the module's process,
        never on a command line, never logged.
    type: str
  endpoint:
    description: Hub endpoint, e.g. an olah mirror for sites behind a firewall. Empty means huggingface.co.
    type: str
    default: ""
  parallelism:
    description: Files downloaded (and hashed) at the same time.
    type: int
    default: 8
  connections_per_file:
    description:
      - Connections that fetch pieces of one large file at the same time (1 to 64; 1 fetches every file as one
        stream). With O(parallelism) files, up to O(parallelism) x O(connections_per_file) connections are open.
      - The default of 8 (64 connections with 8 files) fills a host's network where a mirror or CDN caps each
        connection, and costs little where none does.
    type: int
    default: 8
  split_size:
    description: Bytes of one piece of a large file (at least 65536). Files smaller than twice this come as one stream.
    type: int
    default: 67108864
  request_timeout:
    description: Seconds to wait for the server on each request before retrying (and, after retries, failing).
    type: float
    default: 30
  verify:
    description:
      - V(quick) checks presence and sizes against the Hub's list; V(sha256) also hashes every file.
    type: str
    choices: [quick, sha256]
    default: quick
  disk_reserve_gb:
    description: GiB that must stay free on the cache's filesystem after the download.
    type: float
    default: 10
  progress_file:
    description: Where to write the progress JSON while downloading (C(state), C(bytes_fetched), C(bytes_to_fetch),
      C(rate_bytes_per_s), C(eta_s), C(percent)). Not written in check mode.
    type: path
  serve:
    description:
      - After making the snapshot complete, serve it read-only to peers until O(serve.stop_file) exists or
        O(serve.seconds) have passed. Peers use this host as their O(endpoint) with O(serve.token) as their token.
    type: dict
    suboptions:
      address:
        description: Address to listen on (the host's private network).
        type: str
        default: 0.0.0.0
      port:
        description: TCP port to listen on.
        type: int
        default: 18095
      token:
        description: Bearer token the peers must present (one-time, generated by the caller).
        type: str
        required: true
      seconds:
        description: Longest time to serve.
        type: int
        default: 3600
      stop_file:
        description: Serving stops when this file exists.
        type: path
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Resolves the revision, lists and checks the cache, checks access and disk space; reports what would be
      fetched (RV(files_to_fetch), RV(bytes_to_fetch)) without writing anything.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
    details: Before and after state of the snapshot (complete, files missing or bad).
  idempotent:
    description: When run twice in a row outside check mode, with the same arguments, the second invocation
      indicates no change.
    support: full
    details: A complete snapshot gives C(changed=false); only missing or bad files are fetched.
"""

EXAMPLES = r"""
- name: Prefetch DeepSeek-R1 at a pinned commit, checking every byte
  datacrunch.sglang.hf_snapshot:
    repo_id: deepseek-ai/DeepSeek-R1
    revision: 56d4cbbb4d29f4355bab4b9a39ccb717a14ad5ad
    hf_home: /root/.cache/huggingface
    verify: sha256
    disk_reserve_gb: 50
  register: snapshot

- name: What a download would take, from an internal mirror
  datacrunch.sglang.hf_snapshot:
    repo_id: deepseek-ai/DeepSeek-R1
    hf_home: /root/.cache/huggingface
    endpoint: http://10.0.0.5:8090
    token: "{{ vault_hf_token }}"
    allow_patterns: ["*.safetensors", "*.json"]
  check_mode: true
"""

RETURN = r"""
repo:
  description: The repository.
  returned: always
  type: str
revision:
  description: The revision asked for.
  returned: always
  type: str
commit:
  description: The commit the revision resolved to (pin it to get the same files again).
  returned: always
  type: str
  sample: 56d4cbbb4d29f4355bab4b9a39ccb717a14ad5ad
path:
  description: The snapshot directory (what SGLang loads).
  returned: always
  type: str
complete:
  description: Whether every selected file is in the cache with the Hub's size (and sha256 with verify=sha256).
  returned: always
  type: bool
files:
  description: Number of files of the snapshot (after the patterns).
  returned: always
  type: int
bytes:
  description: Total size of those files.
  returned: always
  type: int
files_to_fetch:
  description: Files that were (or in check mode would be) fetched.
  returned: always
  type: int
bytes_to_fetch:
  description: Bytes that were (or would be) fetched, excluding parts already downloaded by an interrupted run.
  returned: always
  type: int
bytes_resumed:
  description: Bytes of partial files that a previous, interrupted run left and that this run kept and used (in check
    mode, that it would keep). A file that another process completed while this one waited counts 0.
  returned: always
  type: int
bytes_discarded:
  description: Bytes of partial files that could not be used after all (the server ignored C(Range) and sent the
    whole file) and were fetched again.
  returned: always
  type: int
files_ranged:
  description: Files fetched as pieces over several connections.
  returned: always
  type: int
files_range_ignored:
  description: Files whose server ignored C(Range), fetched again as one stream from byte 0.
  returned: always
  type: int
files_completed_elsewhere:
  description: Files that another process (a host sharing the cache volume) completed while this run waited for it.
  returned: always
  type: int
partial_files_removed:
  description:
    - Partial files (bytes and their range maps) that downloads no longer running left of blobs that are complete,
      removed by this run; in check mode, those a run would remove. Two hosts sharing a cache volume may fetch the
      same blob at once; one killed midway leaves its partial copy beside the blob the other completed.
  returned: always
  type: int
bytes_downloaded:
  description: Bytes downloaded by this run.
  returned: always
  type: int
files_downloaded:
  description: Files downloaded by this run.
  returned: always
  type: int
repaired:
  description: Files found bad (truncated, wrong size, corrupt) and fetched again.
  returned: always
  type: list
  elements: dict
seconds:
  description: Wall time of the whole call.
  returned: always
  type: float
rate_bytes_per_s:
  description: Mean download rate of this run.
  returned: when not in check mode
  type: int
gated:
  description: Whether the Hub says the repository is gated.
  returned: always
  type: bool
served:
  description: With O(serve), what was served (C(bytes_served), C(bytes_per_peer), C(requests), C(stopped_by)).
  returned: when serve is set
  type: dict
"""

import traceback

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.datacrunch.sglang.plugins.module_utils.common.module_io import request_from_params
from ansible_collections.datacrunch.sglang.plugins.module_utils.hub.snapshot import (
    CacheLayout,
    HubError,
    SnapshotRequest,
    ensure_snapshot,
)


def main():
    module = AnsibleModule(
        argument_spec={
            "repo_id": {"type": "str", "required": True, "aliases": ["repo"]},
            "revision": {"type": "str", "default": "main"},
            "hf_home": {"type": "path", "required": True},
            "allow_patterns": {"type": "list", "elements": "str", "default": []},
            "ignore_patterns": {"type": "list", "elements": "str", "default": []},
            "token": {"type": "str", "no_log": True},
            "endpoint": {"type": "str", "default": ""},
            "parallelism": {"type": "int", "default": 8},
            "connections_per_file": {"type": "int", "default": 8},
            "split_size": {"type": "int", "default": 64 * 1024 * 1024},
            "request_timeout": {"type": "float", "default": 30},
            "verify": {"type": "str", "default": "quick", "choices": ["quick", "sha256"]},
            "disk_reserve_gb": {"type": "float", "default": 10},
            "progress_file": {"type": "path"},
            "serve": {
                "type": "dict",
                "options": {
                    "address": {"type": "str", "default": "0.0.0.0"},  # noqa: S104 - the private network
                    "port": {"type": "int", "default": 18095},
                    "token": {"type": "str", "required": True, "no_log": True},
                    "seconds": {"type": "int", "default": 3600},
                    "stop_file": {"type": "path"},
                },
            },
        },
        supports_check_mode=True,
    )
    p = module.params
    req = request_from_params(
        SnapshotRequest, p, token=p["token"] or None, endpoint=p["endpoint"] or "", check_mode=module.check_mode
    )
    files = []
    try:
        result = ensure_snapshot(req, files_out=files)
    except HubError as exc:
        module.fail_json(msg=exc.message, **exc.details)
    except ImportError as exc:
        module.fail_json(
            msg=f"huggingface_hub is missing on the host ({exc}): run the role datacrunch.sglang.host_venv first, "
            "or set ansible_python_interpreter to a Python that has it",
            exception=traceback.format_exc(),
        )
    diff = result.pop("diff")
    if p["serve"] and not module.check_mode:
        from ansible_collections.datacrunch.sglang.plugins.module_utils.hub.peer import PeerServer

        serve = p["serve"]
        try:
            server = PeerServer(
                CacheLayout(req.cache_dir, req.repo_id),
                req.repo_id,
                req.revision,
                result["commit"],
                files,
                serve["token"],
                address=serve["address"],
                port=serve["port"],
            )
        except OSError as exc:
            module.fail_json(
                msg=f"cannot serve the snapshot on {serve['address']}:{serve['port']}: {exc}; "
                "pick a free port (serve.port) or address",
                **result,
            )
        result["served"] = server.serve(serve["seconds"], serve["stop_file"])
    if module._diff:
        result["diff"] = diff
    module.exit_json(**result)


if __name__ == "__main__":
    main()
