# -*- coding: utf-8 -*-
# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The plan of the fleet: which hosts form a serving unit, their ranks and addresses, and the commit they load.

Every role reads the plan (the fact ``sglang_plan``); none computes members, ranks or addresses itself. The plan is
computed from the inventory (``groups['all']`` and each host's variables), never from the play's hosts, so ``serial``
and ``--limit`` never change a unit. Ranks come from ``launch_spec.assign_ranks``, the only code that orders members.

A model revision that is a branch or a tag is resolved to a commit once per unit, on the controller, and recorded in
a controller file (one per inventory): later runs keep the unit on that commit until a refresh asks to move it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import urllib.error
import urllib.parse
from types import SimpleNamespace

from ansible.module_utils.urls import ConnectionError as UrlConnectionError
from ansible.module_utils.urls import open_url

from ansible_collections.datacrunch.sglang.plugins.module_utils.common.atomic_file import replace_file
from ansible_collections.datacrunch.sglang.plugins.module_utils.gpu.checks import private_address
from ansible_collections.datacrunch.sglang.plugins.module_utils.launch.spec import LaunchSpecError, Node, assign_ranks

COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
DEFAULT_HUB = "https://huggingface.co"
HUB_TIMEOUT = 20


class PlanError(ValueError):
    """The plan cannot be made; the message names the variable, the value and the fix."""


def is_commit(revision):
    return bool(COMMIT_RE.match(str(revision or "")))


def _text(value):
    return "" if value is None else str(value)


def member_address(host_vars):
    """A host's private address: sglang_private_ip when set, else the one the gpu_host preflight discovered (its
    published sglang_gpu fact, or, between its gathering and its report, the gathered network facts)."""
    given = _text(host_vars.get("sglang_private_ip")).strip()
    if given:
        return given, "sglang_private_ip"
    gpu = host_vars.get("sglang_gpu") or {}
    found = _text(gpu.get("private_ip")).strip()
    if not found and host_vars.get("gpu_host_facts"):
        found = private_address(host_vars.get("gpu_host_facts") or {})["address"]
    if found:
        return found, "discovered by the preflight"
    return None, None


def unit_name_of(host, host_vars):
    cluster = _text(host_vars.get("sglang_cluster")).strip()
    return cluster or None


def unit_members(host, inventory_hosts, hostvars):
    """The hosts of host's unit, from the inventory: every host with the same sglang_cluster, or host alone."""
    cluster = unit_name_of(host, hostvars.get(host) or {})
    if not cluster:
        return None, [host]
    members = sorted(
        name for name in inventory_hosts if unit_name_of(name, hostvars.get(name) or {}) == cluster
    )
    if host not in members:
        members.append(host)
        members.sort()
    return cluster, members


def _explicit_rank(name, host_vars):
    rank = host_vars.get("sglang_node_rank")
    if rank is None or _text(rank).strip() == "":
        return None
    try:
        rank = int(rank)
    except (TypeError, ValueError):
        raise PlanError(
            "sglang_node_rank=%r on %s is not an integer; give a rank 0..N-1 or leave it unset (-1)" % (rank, name)
        ) from None
    return rank if rank >= 0 else None


def unit_ranks(cluster, members, hostvars):
    """{host: rank} of a unit: explicit sglang_node_rank values first, the rest by inventory_hostname."""
    nodes = [Node(name=name, rank=_explicit_rank(name, hostvars.get(name) or {})) for name in members]
    try:
        return assign_ranks(SimpleNamespace(nodes=nodes, cluster=cluster))
    except LaunchSpecError as exc:
        raise PlanError(str(exc)) from None


def unit_topology(host, inventory_hosts, hostvars):
    """Unit, members ordered by rank, ranks and addresses of host's unit."""
    cluster, members = unit_members(host, inventory_hosts, hostvars)
    ranks = unit_ranks(cluster, members, hostvars) if cluster else {host: 0}
    ordered = sorted(members, key=lambda name: ranks[name])
    addresses = {}
    for name in ordered:
        addresses[name] = member_address(hostvars.get(name) or {})[0]
    rank0 = ordered[0]
    return {
        "name": cluster or host,
        "cluster": cluster or "",
        "multi_node": bool(cluster) and len(ordered) > 1,
        "members": ordered,
        "ranks": ranks,
        "nnodes": len(ordered),
        "rank0_host": rank0,
        "rank0_address": addresses[rank0],
        "addresses": addresses,
    }


# -- revisions -------------------------------------------------------------------------------------------------------


def hub_commit(endpoint, repo, revision, token=""):
    """The commit a branch or tag names on the Hub (GET /api/models/{repo}/revision/{revision}, as huggingface_hub's
    model_info does). Raises PlanError with the fix; the token never enters a message."""
    base = (endpoint or DEFAULT_HUB).rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise PlanError("sglang_hf_endpoint=%s is not an http(s) URL; use e.g. https://huggingface.co" % base)
    url = "%s/api/models/%s/revision/%s" % (base, repo, urllib.parse.quote(revision, safe=""))
    headers = {"User-Agent": "datacrunch.sglang"}
    if token:
        headers["Authorization"] = "Bearer %s" % token
    pin = (
        "pin the commit instead: set sglang_model_revision to the 40-character commit id of %s that the unit should "
        "load (the Hub shows it under Files and versions > History)" % repo
    )
    try:
        with open_url(url, headers=headers, timeout=HUB_TIMEOUT, follow_redirects="safe") as answer:
            data = json.loads(answer.read().decode("utf-8"))
    except urllib.error.HTTPError as exc:
        code = exc.headers.get("X-Error-Code", "") if exc.headers else ""
        if exc.code == 404 and code == "RevisionNotFound":
            raise PlanError(
                "sglang_model_revision=%s: the Hub at %s has no branch or tag %r in %s; name an existing branch, tag "
                "or commit" % (revision, base, revision, repo)
            ) from None
        if exc.code == 401 and token:
            raise PlanError(
                "the Hub at %s rejected the token in sglang_hf_token (401) while resolving %s@%s to a commit; set "
                "sglang_hf_token to a valid token, or leave it empty for a public model" % (base, repo, revision)
            ) from None
        if exc.code in (401, 403, 404):
            raise PlanError(
                "sglang_model=%r: the Hub at %s answers %d (%s) for it: check the name (organisation/name, e.g. "
                "deepseek-ai/DeepSeek-R1), and for a gated or private model set sglang_hf_token to a token with access"
                % (repo, base, exc.code, code or exc.reason)
            ) from None
        raise PlanError(
            "sglang_model_revision=%s is a branch or tag, and the Hub at %s answered %d while resolving it to a "
            "commit; %s" % (revision, base, exc.code, pin)
        ) from None
    except (urllib.error.URLError, UrlConnectionError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise PlanError(
            "sglang_model_revision=%s is a branch or tag, and the controller cannot reach the Hub at %s to resolve it "
            "to one commit for every node (%s); %s" % (revision, base, reason, pin)
        ) from None
    sha = _text(data.get("sha") if isinstance(data, dict) else None)
    if not is_commit(sha):
        raise PlanError(
            "the Hub at %s gave no commit for %s@%s (sha=%r); %s" % (base, repo, revision, sha, pin)
        )
    return sha


def run_id():
    """Identifies this ansible-playbook run: the controller process that forked the worker running the plan."""
    parent = os.getppid()
    try:
        with open("/proc/%d/stat" % parent, encoding="ascii") as stat:
            started = stat.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        started = ""
    return "%d-%s" % (parent, started)


@contextlib.contextmanager
def _locked(path):
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=0o700, exist_ok=True)
    with open(path + ".lock", "a", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _read_record(path):
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise PlanError(
            "sglang_model_commits_file=%s cannot be read (%s); fix or remove it (the next run records the units' "
            "commits again)" % (path, exc)
        ) from None
    return data if isinstance(data, dict) else {}


def _write_record(path, data):
    replace_file(path, json.dumps(data, indent=2, sort_keys=True) + "\n", mode=0o600)


def unit_commit(unit, repo, revision, record_file, resolve, refresh=False, write=True, this_run=None):
    """(commit, source) for a unit: a commit as given; else the commit recorded for the unit, while it still names the
    same repo and revision (and no refresh asks to move it); else resolve(repo, revision), recorded for the next runs.

    The record is read and written under a lock, so the nodes of a unit, planned in parallel, get the same commit."""
    if is_commit(revision):
        return revision, "pinned"
    this_run = this_run or run_id()
    with _locked(record_file):
        record = _read_record(record_file)
        entry = record.get(unit) or {}
        same = entry.get("repo") == repo and entry.get("revision") == revision and is_commit(entry.get("commit"))
        if same and (not refresh or entry.get("run") == this_run):
            return entry["commit"], "recorded" if entry.get("run") != this_run else entry.get("source", "hub")
        commit = resolve(repo, revision)
        if write:
            record[unit] = {"repo": repo, "revision": revision, "commit": commit, "run": this_run, "source": "hub"}
            _write_record(record_file, record)
        return commit, "hub"
