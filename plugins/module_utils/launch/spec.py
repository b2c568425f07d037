# -*- coding: utf-8 -*-
# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The launch spec: the one place that decides which SGLang container each host runs.

build_launch_spec() is a pure function from (profile, image and SGLang version, topology of the serving unit, user
settings) to the container one host must run: image, argv, environment, mounts, ulimits, shm, IPC and network mode,
GPU request, restart policy, labels with the spec hash, readiness probe and endpoint. Nothing else builds command
lines. Secrets never enter the spec: it names the root-only files that hold them.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from dataclasses import dataclass, field

from ansible_collections.datacrunch.sglang.plugins.module_utils.common.image_ref import (
    DEFAULT_SGLANG_IMAGE,
    ImageRefError,
    image_version,
    parse_image_ref,
)
from ansible_collections.datacrunch.sglang.plugins.module_utils.common.labels import LABEL_PREFIX
from ansible_collections.datacrunch.sglang.plugins.module_utils.common.network_address import (
    is_ip_address,
    is_private_address,
)
from ansible_collections.datacrunch.sglang.plugins.module_utils.gpu import nccl_ib
from ansible_collections.datacrunch.sglang.plugins.module_utils.launch.env_names import EnvNameError, check_env_name
from ansible_collections.datacrunch.sglang.plugins.module_utils.launch.flags import (
    FlagError,
    FlagTable,
    supported_versions,
)
from ansible_collections.datacrunch.sglang.plugins.module_utils.plan.role_inputs import address_error, docker_size_error

LABEL_SPEC_HASH = LABEL_PREFIX + "spec-hash"
LABEL_PROFILE = LABEL_PREFIX + "profile"
LABEL_CLUSTER = LABEL_PREFIX + "cluster"
LABEL_RANK = LABEL_PREFIX + "rank"
LABEL_COLLECTION_VERSION = LABEL_PREFIX + "collection-version"
LABEL_SECRETS_DIGEST = LABEL_PREFIX + "secrets-digest"
# The model and the commit the unit loads (the same commit on every rank: the fleet plan resolves it once per unit).
LABEL_MODEL = LABEL_PREFIX + "model"
# Labels that do not take part in the spec hash: a collection upgrade alone must not restart a server. The model
# label repeats what --model-path and --revision already put in the hash.
UNHASHED_LABELS = (LABEL_SPEC_HASH, LABEL_COLLECTION_VERSION, LABEL_SECRETS_DIGEST, LABEL_MODEL)

CONTAINER_CACHE_DIR = "/var/cache/sglang"
CONTAINER_SECRETS_DIR = "/run/datacrunch-sglang"
SERVER_CONFIG_FILE = "server-config.yaml"
HF_TOKEN_FILE = "hf_token"  # noqa: S105 - a file name, not a token
PLACEHOLDER = "<%s of %s>"

# Flags the spec renders itself; a profile or user flag resolving to one of these is a conflict, not an override.
OWNED_FLAG_DESTS = {
    "model_path": "the model comes from sglang_model or the profile's model",
    "revision": "the revision comes from sglang_model_revision or the profile (pinned to the prefetched commit)",
    "tp_size": "the tensor parallel size comes from the profile's tp",
    "host": "the bind address comes from sglang_server_bind_host",
    "port": "the port comes from sglang_port",
    "nnodes": "the node count comes from the hosts in sglang_cluster",
    "node_rank": "ranks come from sglang_node_rank or the order of inventory_hostname in the cluster",
    "dist_init_addr": "the rendezvous address comes from rank 0's sglang_private_ip and sglang_server_dist_port",
    "api_key": "the API key comes from sglang_api_key and reaches the server through a root-only config file",
    "config": "the config file carries the API key; put other flags in sglang_server_args",
    "enable_metrics": "metrics follow sglang_server_enable_metrics",
    "enable_metrics_for_all_schedulers": "metrics follow sglang_server_enable_metrics (every scheduler with DP "
    "attention)",
    "enable_dp_attention": "DP attention comes from the profile's dp_attention",
    "attn_dp_size": "DP attention comes from the profile's dp_attention",
}


class LaunchSpecError(ValueError):
    """A launch input is wrong; the message names the variable, the value and the fix."""


@dataclass
class Node:
    """One host of a serving unit, as far as the launch needs to know it."""

    name: str
    rank: int | None = None
    private_ip: str | None = None
    gpus: int | None = None
    gpu_model: str | None = None
    interface: str | None = None
    ib_devices: list = field(default_factory=list)


def resolve_image(request):
    image = request.image or request.profile.get("image") or DEFAULT_SGLANG_IMAGE
    try:
        parse_image_ref(image)
        version = image_version(image, request.image_version)
    except ImageRefError as exc:
        raise LaunchSpecError("sglang_image=%r: %s" % (image, exc)) from None
    if not version:
        raise LaunchSpecError(
            "sglang_image=%r does not name an SGLang version in its tag, so its flags cannot be checked; set "
            "sglang_image_version to the SGLang version inside the image (known: %s)"
            % (image, ", ".join(supported_versions()))
        )
    if version not in supported_versions():
        raise LaunchSpecError(
            "sglang_image=%r is SGLang %s, which this collection has no flag data for (known: %s); use a known "
            "version, or set sglang_image_version to the known version whose flags the image accepts"
            % (image, version, ", ".join(supported_versions()))
        )
    return image, version


def assign_ranks(request):
    """Ranks of the unit: explicit sglang_node_rank values first, the rest by order of inventory_hostname."""
    nodes = sorted(request.nodes, key=lambda node: node.name)
    total = len(nodes)
    explicit = {}
    for node in nodes:
        if node.rank is None or node.rank < 0:
            continue
        if node.rank >= total:
            raise LaunchSpecError(
                "sglang_node_rank=%d on %s is out of range: sglang_cluster=%r has %d hosts, so ranks are 0..%d"
                % (node.rank, node.name, request.cluster, total, total - 1)
            )
        if node.rank in explicit:
            raise LaunchSpecError(
                "sglang_node_rank=%d is set on both %s and %s in sglang_cluster=%r; give each host its own rank"
                % (node.rank, explicit[node.rank], node.name, request.cluster)
            )
        explicit[node.rank] = node.name
    free = iter(rank for rank in range(total) if rank not in explicit)
    ranks = {}
    for node in nodes:
        ranks[node.name] = node.rank if node.rank is not None and node.rank >= 0 else next(free)
    return ranks


def _check_layout(request):
    profile = request.profile
    name = profile.get("name", "?")
    nodes = request.nodes
    if request.cluster:
        if len(nodes) != profile["nodes"]:
            raise LaunchSpecError(
                "sglang_profile=%s needs %d node(s) of %d GPUs (tp %d), but sglang_cluster=%r has %d host(s): %s; "
                "put exactly %d hosts in the cluster or choose a profile for %d node(s)"
                % (
                    name,
                    profile["nodes"],
                    profile["gpus_per_node"],
                    profile["tp"],
                    request.cluster,
                    len(nodes),
                    ", ".join(sorted(node.name for node in nodes)),
                    profile["nodes"],
                    len(nodes),
                )
            )
    elif profile["nodes"] != 1:
        raise LaunchSpecError(
            "sglang_profile=%s spans %d nodes, but %s has no sglang_cluster; give the %d hosts of the unit the same "
            "sglang_cluster value" % (name, profile["nodes"], request.host, profile["nodes"])
        )
    known_counts = {node.name: node.gpus for node in nodes if node.gpus is not None}
    if len(set(known_counts.values())) > 1:
        raise LaunchSpecError(
            "the hosts of sglang_cluster=%r have different GPU counts (%s); every host of a unit needs %d GPUs"
            % (
                request.cluster,
                ", ".join("%s: %d" % item for item in sorted(known_counts.items())),
                profile["gpus_per_node"],
            )
        )
    for host, count in sorted(known_counts.items()):
        if count < profile["gpus_per_node"]:
            raise LaunchSpecError(
                "sglang_profile=%s needs %d GPUs per node (tp %d over %d node(s)), but %s has %d GPUs; use a host "
                "with %d GPUs or a profile for %d"
                % (name, profile["gpus_per_node"], profile["tp"], profile["nodes"], host, count,
                   profile["gpus_per_node"], count)
            )


def _check_rendezvous_addresses(request, ranks):
    """Every rank's rendezvous address must be an IP on a private network: the unit's torch.distributed, NCCL and
    Gloo traffic flows between all ranks, not only towards rank 0."""
    for node in sorted(request.nodes, key=lambda item: ranks[item.name]):
        address = node.private_ip
        if not address:
            continue
        if not is_ip_address(address):
            raise LaunchSpecError(
                "sglang_private_ip=%r on %s (rank %d of sglang_cluster=%r) is not an IP address; set it to the host's "
                "address on the private network" % (address, node.name, ranks[node.name], request.cluster)
            )
        if not is_private_address(address) and not request.allow_public_rendezvous:
            raise LaunchSpecError(
                "sglang_private_ip=%s on %s (rank %d of sglang_cluster=%r) is a public address: the rendezvous and "
                "NCCL traffic would cross the internet unencrypted. Use the hosts' private network (DataCrunch Instant "
                "Clusters give workers private addresses), or set sglang_server_allow_public_rendezvous=true to "
                "accept the risk" % (address, node.name, ranks[node.name], request.cluster)
            )


def _rank0_address(request, ranks):
    _check_rendezvous_addresses(request, ranks)
    rank0 = next(node for node in request.nodes if ranks[node.name] == 0)
    address = rank0.private_ip
    if not address:
        if request.plan:
            return PLACEHOLDER % ("sglang_private_ip", rank0.name)
        raise LaunchSpecError(
            "the private address of %s (rank 0 of sglang_cluster=%r) is unknown; set sglang_private_ip for it or "
            "run the gpu_host preflight, which discovers it" % (rank0.name, request.cluster)
        )
    return address


def _bind_host(request, me):
    """The address the server binds to: the explicit one, else the host's private address, else every interface."""
    if request.bind_host:
        return request.bind_host
    if me.private_ip and is_private_address(me.private_ip):
        return me.private_ip
    if request.plan and not me.private_ip:
        return PLACEHOLDER % ("private address (else 0.0.0.0)", me.name)
    return "0.0.0.0"  # noqa: S104 - no private network: the API key and the host firewall guard the port


def _flag_origin(source, flag):
    return "%s[%r]" % (source, flag)


def _collect_args(request, table):
    """Profile flags overridden by user flags, keyed by canonical option; conflicts with owned flags refused. Every
    refused flag is reported at once (a user fixing sglang_server_args sees them all in one run)."""
    merged = {}
    origins = {}
    problems = []
    for source, mapping in (
        ("profile %s sglang_args" % request.profile.get("name"), request.profile.get("sglang_args") or {}),
        ("sglang_server_args", request.user_args or {}),
    ):
        if not isinstance(mapping, dict):
            raise LaunchSpecError("%s must be a mapping of SGLang flag to value, got %r" % (source, mapping))
        for flag, value in mapping.items():
            origin = _flag_origin(source, flag)
            problem = _flag_problem(request, table, flag, value, origin)
            if problem:
                problems.append(problem)
                continue
            canonical = table.canonical(flag)
            merged[canonical] = value
            origins[canonical] = origin
    if len(problems) == 1:
        raise LaunchSpecError(problems[0])
    if problems:
        raise LaunchSpecError("%d SGLang flags refused:\n- %s" % (len(problems), "\n- ".join(problems)))
    return merged, origins


def _flag_problem(request, table, flag, value, origin):
    """Why flag=value (from origin) cannot go on the command line (an unknown, owned or deprecated flag, or a value
    its type or choices refuse), or ''."""
    if not table.knows(flag):
        return (
            "%s: SGLang %s has no flag %s (%s); check the spelling against `python3 -m sglang.launch_server "
            "--help` of that version" % (origin, table.version, FlagTable.normalize(flag), table.why_unknown(flag))
        )
    dest = table.dest(flag)
    if dest in OWNED_FLAG_DESTS:
        return "%s conflicts with a flag the launch renders itself (%s): %s" % (
            origin, table.canonical(flag), OWNED_FLAG_DESTS[dest])
    notice = table.deprecation(flag)
    if notice and not request.allow_deprecated_flags and value not in (None, False):
        return (
            "%s: %s is deprecated in SGLang %s (%s); use the current syntax, or set "
            "sglang_server_allow_deprecated_flags=true" % (origin, table.canonical(flag), table.version, notice)
        )
    try:
        table.render(flag, value, origin)
    except FlagError as exc:
        return str(exc)
    return ""


def _dp_attention_args(request, table):
    width = request.profile.get("dp_attention") or 0
    if width <= 1:
        return []
    if table.knows("--attn-dp-size"):
        return ["--attn-dp-size", str(width)]
    if table.knows("--enable-dp-attention"):
        return ["--enable-dp-attention", table.canonical("--dp-size"), str(width)]
    raise LaunchSpecError(
        "sglang_profile=%s asks for dp_attention=%d, but SGLang %s has no DP attention flag"
        % (request.profile.get("name"), width, table.version)
    )


PREFETCH_FLAG = "--weight-loader-prefetch-checkpoints"
LOADER_CONFIG_FLAG = "--model-loader-extra-config"


def _shared_storage_args(request, table, extra, origins):
    """Weights on a shared filesystem (model_cache's shared mode): each rank prefetches a share of the checkpoint into
    the page cache, so the filesystem is read once rather than once per rank. SGLang (0.5.18, 0.5.23) then turns
    multithreaded loading off unless enable_multithread_load is set in --model-loader-extra-config: keep it explicit.
    """
    if (request.snapshot or {}).get("storage") == "shared" and table.knows(PREFETCH_FLAG):
        prefetch = table.canonical(PREFETCH_FLAG)
        if prefetch not in extra:
            extra[prefetch] = True
            origins[prefetch] = "sglang_model_snapshot (weights on shared storage)"
    prefetch_on = any(value is True and table.dest(flag) == "weight_loader_prefetch_checkpoints"
                      for flag, value in extra.items())
    if not prefetch_on or not table.knows(LOADER_CONFIG_FLAG):
        return
    option = table.canonical(LOADER_CONFIG_FLAG)
    config = extra.get(option) or {}
    if isinstance(config, str):
        try:
            config = json.loads(config)
        except ValueError:
            raise LaunchSpecError(
                "%s=%r is not JSON; give a mapping, e.g. {\"enable_multithread_load\": true, \"num_threads\": 8}"
                % (origins.get(option, option), config)
            ) from None
    if not isinstance(config, dict):
        raise LaunchSpecError("%s=%r must be a JSON mapping" % (origins.get(option, option), config))
    if "enable_multithread_load" not in config:
        extra[option] = dict(config, enable_multithread_load=True)
        origins.setdefault(option, "weights on shared storage")


def _slug(text):
    return re.sub(r"[^A-Za-z0-9._-]+", "-", str(text)).strip("-").lower() or "unknown"


def cache_key(image, gpu_model, tp, dp_attention, nnodes):
    """A JIT cache is only valid for one image, GPU architecture and parallel layout."""
    digest = hashlib.sha256(("%s|%s|%s|%s|%s" % (image, gpu_model, tp, dp_attention, nnodes)).encode()).hexdigest()
    return "%s-%s-tp%d-dpa%d-nn%d-%s" % (
        _slug(parse_image_ref(image)["tag"] or "image")[:40],
        _slug(gpu_model)[:40],
        tp,
        dp_attention,
        nnodes,
        digest[:12],
    )


def _model_and_revision(request):
    model = request.model or request.profile["model"]
    snapshot = request.snapshot or {}
    if snapshot.get("complete") and snapshot.get("commit"):
        if snapshot.get("repo") and snapshot["repo"] != model:
            raise LaunchSpecError(
                "sglang_model_snapshot is for %s but the launch wants %s; run the model_cache role for the same model"
                % (snapshot["repo"], model)
            )
        return model, snapshot["commit"], True
    revision = request.revision or request.profile.get("revision") or ""
    return model, revision, False


def spec_hash(spec):
    hashed = {key: value for key, value in spec.items() if key not in ("labels", "spec_hash")}
    hashed["labels"] = {key: value for key, value in spec["labels"].items() if key not in UNHASHED_LABELS}
    return hashlib.sha256(json.dumps(hashed, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def build_launch_spec(request):
    """The container that request.host must run (see module docstring)."""
    profile = request.profile
    if not request.nodes or request.host not in [node.name for node in request.nodes]:
        raise LaunchSpecError("%s must be one of the nodes of its unit" % request.host)
    if not isinstance(request.port, int) or not 1 <= request.port <= 65535:
        raise LaunchSpecError("sglang_port=%r must be a TCP port number (1-65535)" % (request.port,))
    dist_port = request.dist_port
    if not isinstance(dist_port, int) or not 1 <= dist_port <= 65535 or dist_port == request.port:
        raise LaunchSpecError(
            "sglang_server_dist_port=%r must be a TCP port number other than sglang_port=%r"
            % (request.dist_port, request.port)
        )
    for variable, path in (("sglang_hf_home", request.hf_home), ("sglang_cache_dir", request.cache_dir)):
        if not isinstance(path, str) or not path.startswith("/"):
            raise LaunchSpecError("%s=%r must be an absolute path on the host" % (variable, path))
    for message in (
        docker_size_error("sglang_server_shm_size", request.shm_size),
        docker_size_error("sglang_server_log_max_size", request.log_max_size),
        address_error("sglang_server_bind_host", request.bind_host),
    ):
        if message:
            raise LaunchSpecError(message)
    if not re.match(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$", request.container_name or ""):
        raise LaunchSpecError(
            "sglang_server_container_name=%r is not a valid container name (letters, digits, _ . -)"
            % (request.container_name,)
        )

    image, version = resolve_image(request)
    table = FlagTable(version)
    ranks = assign_ranks(request)
    _check_layout(request)
    me = next(node for node in request.nodes if node.name == request.host)
    rank = ranks[me.name]
    nnodes = len(request.nodes) if request.cluster else 1
    model, revision, offline = _model_and_revision(request)
    bind_host = _bind_host(request, me)

    try:
        extra, _origins = _collect_args(request, table)
        _shared_storage_args(request, table, extra, _origins)
        argv = ["python3", "-m", "sglang.launch_server"]
        argv += table.render("--model-path", model, "model")
        if revision:
            argv += table.render("--revision", revision, "revision")
        argv += table.render("--tp-size", profile["tp"], "profile tp")
        argv += _dp_attention_args(request, table)
        argv += table.render("--host", bind_host, "sglang_server_bind_host")
        argv += table.render("--port", request.port, "sglang_port")
        if nnodes > 1:
            argv += table.render("--nnodes", nnodes, "sglang_cluster")
            argv += table.render("--node-rank", rank, "sglang_node_rank")
            argv += table.render(
                "--dist-init-addr", "%s:%d" % (_rank0_address(request, ranks), request.dist_port), "rendezvous"
            )
        if request.enable_metrics:
            argv += table.render("--enable-metrics", True, "sglang_server_enable_metrics")
            if (profile.get("dp_attention") or 0) > 1:
                # A scheduler records metrics only where attn_tp_rank == 0 unless this is set (0.5.18 and 0.5.23:
                # sglang/srt/observability/metrics_collector.py, SchedulerMetricsCollectorContext.init_new, and
                # sglang/srt/managers/scheduler.py, Scheduler.__init__); SGLang's help for the flag recommends it with
                # DP attention. With dp_attention == tp every rank has attn_tp_rank 0, so it changes what is reported
                # where dp_attention < tp; it is rendered with any DP attention so that no layout loses schedulers.
                argv += table.render("--enable-metrics-for-all-schedulers", True, "sglang_server_enable_metrics")
        if request.api_key:
            argv += table.render(
                "--config", "%s/%s" % (CONTAINER_SECRETS_DIR, SERVER_CONFIG_FILE), "sglang_api_key"
            )
        for option in sorted(extra):
            argv += table.render(option, extra[option], _origins[option])
    except FlagError as exc:
        raise LaunchSpecError(str(exc)) from None

    gpu_model = me.gpu_model or profile.get("gpu_model") or ""
    if not me.gpu_model and request.plan:
        gpu_model = gpu_model or PLACEHOLDER % ("gpu model", me.name)
    key = cache_key(image, gpu_model or "gpu", profile["tp"], profile.get("dp_attention") or 0, nnodes)
    host_cache = "%s/%s" % (request.cache_dir.rstrip("/"), key)

    env = {
        "HF_HOME": request.hf_home,
        "SGLANG_CACHE_DIR": CONTAINER_CACHE_DIR + "/sglang",
        # SGLang's own JIT kernels (DeepSeek's MLA KV-buffer and activation kernels among them) build here; unset,
        # they go to ~/.cache/sglang/jit inside the container and are rebuilt in every new one (0.5.18 and 0.5.23:
        # sglang/kernels/jit/utils/compile/cache.py, build_key_dir, which ignores SGLANG_CACHE_DIR).
        "SGLANG_JIT_CACHE_DIR": CONTAINER_CACHE_DIR + "/sglang-jit",
        "SGLANG_DG_CACHE_DIR": CONTAINER_CACHE_DIR + "/deep_gemm",
        "TORCHINDUCTOR_CACHE_DIR": CONTAINER_CACHE_DIR + "/inductor",
        "TRITON_CACHE_DIR": CONTAINER_CACHE_DIR + "/triton",
        "FLASHINFER_WORKSPACE_BASE": CONTAINER_CACHE_DIR + "/flashinfer",
        "CUDA_CACHE_PATH": CONTAINER_CACHE_DIR + "/cuda",
        "CUDA_CACHE_MAXSIZE": "4294967296",
    }
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    elif request.hf_endpoint:
        if "@" in request.hf_endpoint.split("://", 1)[-1].split("/", 1)[0]:
            raise LaunchSpecError(
                "sglang_hf_endpoint carries credentials in its URL, which docker inspect would show in the "
                "container's environment; give the mirror's address alone and the token as sglang_hf_token"
            )
        env["HF_ENDPOINT"] = request.hf_endpoint
    if request.hf_token:
        env["HF_TOKEN_PATH"] = "%s/%s" % (CONTAINER_SECRETS_DIR, HF_TOKEN_FILE)

    devices = []
    cap_add = []
    if nnodes > 1:
        ifname = request.nccl_socket_ifname or me.interface
        if not ifname:
            if not request.plan:
                raise LaunchSpecError(
                    "the network interface holding %s's private address is unknown; run the gpu_host preflight "
                    "(it discovers it) or set sglang_server_nccl_socket_ifname" % me.name
                )
            ifname = PLACEHOLDER % ("interface", me.name)
        env["GLOO_SOCKET_IFNAME"] = ifname
        env["NCCL_SOCKET_IFNAME"] = ifname
        env["SGLANG_HOST_IP"] = me.private_ip or PLACEHOLDER % ("sglang_private_ip", me.name)
        mismatch = nccl_ib.partition_mismatch({node.name: node.ib_devices for node in request.nodes}, request.cluster)
        if mismatch:
            raise LaunchSpecError("%s; %s" % (mismatch, nccl_ib.PARTITION_FIX))
        ib = nccl_ib.settings(me.ib_devices, request.nccl_ib_hca, request.nccl_ib_gid_index, request.nccl_ib_pkey)
        if ib["hca"]:
            env["NCCL_IB_HCA"] = ib["hca"]
            devices.append("/dev/infiniband")
            cap_add.append("IPC_LOCK")
        if ib["gid_index"]:
            env["NCCL_IB_GID_INDEX"] = ib["gid_index"]
        if ib["pkey"]:
            env["NCCL_IB_PKEY"] = ib["pkey"]
    for origin, mapping in (
        ("profile %s env" % profile.get("name", "?"), profile.get("env") or {}),
        ("sglang_server_env", request.user_env or {}),
    ):
        if not isinstance(mapping, dict):
            raise LaunchSpecError("%s=%r must be a mapping of variable name to value" % (origin, mapping))
        for key_name, value in sorted(mapping.items(), key=lambda item: str(item[0])):
            try:
                check_env_name(key_name, origin, version, request.env_names_extra)
            except EnvNameError as exc:
                raise LaunchSpecError(str(exc)) from None
            env[str(key_name)] = str(value)

    mounts = [
        {"source": request.hf_home, "target": request.hf_home, "read_only": False},
        {"source": host_cache, "target": CONTAINER_CACHE_DIR, "read_only": False},
    ]
    secrets_host_dir = "%s/%s" % (request.secrets_dir.rstrip("/"), request.container_name)
    secret_files = {}
    if request.api_key:
        secret_files[SERVER_CONFIG_FILE] = "api_key"
    if request.hf_token:
        secret_files[HF_TOKEN_FILE] = "hf_token"
    if secret_files:
        mounts.append({"source": secrets_host_dir + "/secrets", "target": CONTAINER_SECRETS_DIR, "read_only": True})

    all_interfaces = ("0.0.0.0", "::")  # noqa: S104 - recognising the wildcard, not binding to it
    probe_host = bind_host if bind_host not in all_interfaces else "127.0.0.1"
    advertised = probe_host if probe_host != "127.0.0.1" else (me.private_ip or "127.0.0.1")
    if ":" in probe_host:
        probe_host = "[%s]" % probe_host
    if ":" in advertised:
        advertised = "[%s]" % advertised
    spec = {
        "name": request.container_name,
        "image": image,
        "sglang_version": version,
        "command": argv,
        "env": env,
        "mounts": mounts,
        "devices": devices,
        "cap_add": cap_add,
        "network_mode": "host",
        "ipc_mode": "host",
        "shm_size": request.shm_size,
        "ulimits": [{"name": name, "soft": int(limit), "hard": int(limit)}
                    for name, limit in sorted(request.ulimits.items())],
        "gpus": "all",
        # A rank that comes back alone after a reboot would hang the rendezvous: the unit restarts as a whole.
        "restart_policy": "unless-stopped" if nnodes == 1 else "no",
        "log_config": {
            "type": "json-file",
            "config": {"max-size": request.log_max_size, "max-file": str(request.log_max_files)},
        },
        "labels": {
            LABEL_PROFILE: profile.get("name", ""),
            LABEL_CLUSTER: request.cluster or "",
            LABEL_RANK: str(rank),
            LABEL_COLLECTION_VERSION: request.collection_version,
            LABEL_MODEL: "%s@%s" % (model, revision) if revision else model,
        },
        "host_dirs": {"cache": host_cache, "secrets": secrets_host_dir},
        "secret_files": secret_files,
        "rank": rank,
        "nnodes": nnodes,
        "cluster": request.cluster or "",
        "model": model,
        "revision": revision,
        "offline": offline,
        "port": request.port,
        "bind_host": bind_host,
        "endpoint": "http://%s:%d" % (advertised, request.port),
        "readiness": {
            "kind": "http" if rank == 0 else "running",
            "url": "http://%s:%d/health_generate" % (probe_host, request.port),
            "base_url": "http://%s:%d" % (probe_host, request.port),
        },
    }
    spec["spec_hash"] = spec_hash(spec)
    spec["labels"][LABEL_SPEC_HASH] = spec["spec_hash"]
    return spec


def docker_run_command(spec):
    """The `docker run` command equivalent to a spec, for plans and for people: one option per line, the lines ending
    in a backslash, so that it pastes into a shell as it is printed. Placeholders (`<... of host>`) stay quoted."""
    lines = [["docker", "run", "--detach", "--name", spec["name"]]]
    if spec.get("gpus"):
        lines.append(["--gpus", spec["gpus"]])
    lines += [["--network", spec["network_mode"]], ["--ipc", spec["ipc_mode"]], ["--shm-size", spec["shm_size"]]]
    for ulimit in spec["ulimits"]:
        lines.append(["--ulimit", "%s=%s:%s" % (ulimit["name"], ulimit["soft"], ulimit["hard"])])
    lines.append(["--restart", spec["restart_policy"]])
    lines.append(["--log-driver", spec["log_config"]["type"]])
    for key, value in sorted(spec["log_config"]["config"].items()):
        lines.append(["--log-opt", "%s=%s" % (key, value)])
    for device in spec.get("devices") or []:
        lines.append(["--device", device])
    for cap in spec.get("cap_add") or []:
        lines.append(["--cap-add", cap])
    for mount in spec["mounts"]:
        lines.append(
            ["--volume", "%s:%s%s" % (mount["source"], mount["target"], ":ro" if mount["read_only"] else "")]
        )
    for key, value in sorted(spec["env"].items()):
        lines.append(["--env", "%s=%s" % (key, value)])
    for key, value in sorted(spec["labels"].items()):
        lines.append(["--label", "%s=%s" % (key, value)])
    lines.append([spec["image"]])
    # The server's command: its program, then one option (with its values) per line.
    command = list(spec["command"])
    first_option = next((at for at, word in enumerate(command) if word.startswith("--")), len(command))
    lines.append(command[:first_option])
    for word in command[first_option:]:
        if word.startswith("--"):
            lines.append([word])
        else:
            lines[-1].append(word)
    return " \\\n    ".join(" ".join(shlex.quote(word) for word in line) for line in lines if line)
