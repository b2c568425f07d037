# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""From DataCrunch (Verda) API objects to inventory hosts: names, variables, groups. Pure; no Ansible.

Standalone instances are reached on their public IP. Instant Cluster workers are reached on their private IP through
the cluster's jump host, and carry ``sglang_cluster`` and ``sglang_private_ip`` so that the collection's roles treat
them as one multi-node unit.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
import shlex
import unicodedata

SSH_USER = "root"
DEFAULT_STATUSES = ("running",)
DEFAULT_SERVING_GPU_MODELS = ("H200",)
CLUSTER_LOCAL_DISK = "/mnt/local_disk"
CLUSTER_SHARED_MOUNT = "/home"
# <count><GPU model>.<...>: 8H200.141S.176V, 1V100.6V, 8A100.176V; cluster types: 16H200.
_TYPE_PATTERN = re.compile(r"^(\d+)([A-Za-z][A-Za-z0-9]*?)(?:\.|$)")
_GROUP_UNSAFE = re.compile(r"[^A-Za-z0-9_]")
# What an inventory host name keeps: letters, digits, dot, hyphen, underscore. Anything else (a space, a comma, a
# colon, a character outside ASCII) would break --limit patterns, SSH config or shell use of the name.
_HOST_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class InventoryOptions:
    """What to include and how to shape it; mirrors the inventory plugin's options."""

    def __init__(
        self,
        statuses=DEFAULT_STATUSES,
        instance_types=(),
        locations=(),
        hostname_patterns=(),
        include_instances=True,
        include_clusters=True,
        group_prefix="datacrunch",
        serving_group="sglang_servers",
        serving_gpu_models=DEFAULT_SERVING_GPU_MODELS,
        ssh_common_args="",
        ssh_private_key_file="",
    ):
        self.statuses = tuple(statuses or ())
        self.instance_types = tuple(instance_types or ())
        self.locations = tuple(locations or ())
        self.hostname_patterns = tuple(hostname_patterns or ())
        self.include_instances = include_instances
        self.include_clusters = include_clusters
        self.group_prefix = group_prefix
        self.serving_group = serving_group
        self.serving_gpu_models = tuple(serving_gpu_models or ())
        self.ssh_common_args = ssh_common_args or ""
        self.ssh_private_key_file = ssh_private_key_file or ""


class Host:
    __slots__ = ("groups", "name", "variables")

    def __init__(self, name, variables, groups):
        self.name = name
        self.variables = variables
        self.groups = groups

    def __repr__(self):
        return f"Host({self.name!r}, groups={self.groups!r})"


def group_name(*parts):
    """A valid Ansible group name from free text: anything but letters, digits and _ becomes _."""
    name = "_".join(str(part) for part in parts if part not in (None, ""))
    name = _GROUP_UNSAFE.sub("_", name)
    if name[:1].isdigit():
        name = "_" + name
    return name


def host_name(hostname, object_id=None):
    """A usable inventory name from an API hostname: accents dropped, other characters outside [A-Za-z0-9._-] become
    hyphens ("GPU box #1" -> "GPU-box-1", "työ-äly" -> "tyo-aly"); the id's first characters when nothing is left."""
    text = unicodedata.normalize("NFKD", str(hostname or "")).encode("ascii", "ignore").decode("ascii")
    name = _HOST_UNSAFE.sub("-", text).strip("-.")
    return name or str(object_id or "unnamed")[:8]


def parse_type(type_name):
    """(GPU count, GPU model) from an instance or cluster type name; (0, '') when it names no GPUs."""
    match = _TYPE_PATTERN.match(type_name or "")
    if not match:
        return 0, ""
    return int(match.group(1)), match.group(2).upper()


def price(value):
    """The API sends prices as numbers or strings; None when it sends neither."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _address(value):
    """A textual IP address from the API, or None; refuses anything else (it goes into an SSH command line)."""
    if not value:
        return None
    try:
        return str(ipaddress.ip_address(str(value).strip()))
    except ValueError:
        return None


def _size(block, key="size_in_gigabytes"):
    return (block or {}).get(key) if isinstance(block, dict) else None


def _tags(tags):
    """Tags as a mapping key -> value (freeform tags have an empty value)."""
    result = {}
    for tag in tags or []:
        if isinstance(tag, dict) and tag.get("key"):
            result[str(tag["key"])] = tag.get("value") or ""
        elif isinstance(tag, str):
            result[tag] = ""
    return result


def _kept(options, location, type_name):
    if options.locations and location not in options.locations:
        return False
    return not options.instance_types or type_name in options.instance_types


def _named(options, names):
    if not options.hostname_patterns:
        return True
    return any(fnmatch.fnmatchcase(name, pattern) for name in names if name for pattern in options.hostname_patterns)


def _ssh_variables(options, address, jump=None):
    variables = {"ansible_host": address, "ansible_user": SSH_USER}
    if options.ssh_private_key_file:
        variables["ansible_ssh_private_key_file"] = options.ssh_private_key_file
    common = options.ssh_common_args
    if jump:
        # ProxyCommand rather than ProxyJump: the hop to the jump host then gets the same options and key, which
        # ProxyJump would take from ~/.ssh/config only.
        hop = ["ssh", "-W", "%h:%p", "-q"]
        hop += shlex.split(options.ssh_common_args)
        if options.ssh_private_key_file:
            hop += ["-i", options.ssh_private_key_file]
        hop += [f"{SSH_USER}@{jump}"]
        proxy = "-o " + shlex.quote("ProxyCommand=" + " ".join(shlex.quote(arg) for arg in hop))
        common = f"{common} {proxy}".strip()
    if common:
        variables["ansible_ssh_common_args"] = common
    return variables


def _keyed(options, key, value):
    """The group of hosts that share a value (a type, a location); none for a host without one."""
    if not isinstance(value, str) or not value.strip():
        return []
    return [group_name(options.group_prefix, key, value)]


def _serves(options, gpu_model):
    return bool(options.serving_group) and gpu_model in options.serving_gpu_models


def instance_host(instance, options):
    """The host of a standalone instance, or None when it is filtered out or has no address yet."""
    type_name = instance.get("instance_type") or ""
    gpu_count, gpu_model = parse_type(type_name)
    gpu = instance.get("gpu") or {}
    gpu_count = gpu.get("number_of_gpus", gpu_count) if isinstance(gpu, dict) else gpu_count
    public_ip = _address(instance.get("ip"))
    private_ip = _address(instance.get("private_ip"))
    variables = {
        "datacrunch_kind": "instance",
        "datacrunch_id": instance.get("id"),
        "datacrunch_hostname": instance.get("hostname"),
        "datacrunch_description": instance.get("description"),
        "datacrunch_status": instance.get("status"),
        "datacrunch_instance_type": type_name,
        "datacrunch_gpu_model": gpu_model,
        "datacrunch_gpu_count": gpu_count,
        "datacrunch_gpu_description": gpu.get("description") if isinstance(gpu, dict) else None,
        "datacrunch_gpu_memory_gb": _size(instance.get("gpu_memory")),
        "datacrunch_memory_gb": _size(instance.get("memory")),
        "datacrunch_cpu_cores": _size(instance.get("cpu"), "number_of_cores"),
        "datacrunch_location": instance.get("location"),
        "datacrunch_image": instance.get("image"),
        "datacrunch_os_name": instance.get("os_name"),
        "datacrunch_price_per_hour": price(instance.get("price_per_hour")),
        "datacrunch_is_spot": bool(instance.get("is_spot")),
        "datacrunch_contract": instance.get("contract"),
        "datacrunch_pricing": instance.get("pricing"),
        "datacrunch_created_at": instance.get("created_at"),
        "datacrunch_public_ip": public_ip,
        "datacrunch_private_ip": private_ip,
        "datacrunch_ssh_key_ids": list(instance.get("ssh_key_ids") or []),
        "datacrunch_os_volume_id": instance.get("os_volume_id"),
        "datacrunch_volume_ids": list(instance.get("volume_ids") or []),
        "datacrunch_tags": _tags(instance.get("tags")),
    }
    variables.update(_ssh_variables(options, public_ip))
    groups = [
        options.group_prefix,
        group_name(options.group_prefix, "instances"),
        *_keyed(options, "type", type_name),
        *_keyed(options, "location", instance.get("location")),
    ]
    if _serves(options, gpu_model):
        groups.append(options.serving_group)
    return Host(host_name(instance.get("hostname"), instance.get("id")), variables, groups)


def _shared_mount(cluster):
    for volume in cluster.get("shared_volumes") or []:
        if isinstance(volume, dict) and str(volume.get("mount_point") or "").startswith("/"):
            return volume["mount_point"]
    return CLUSTER_SHARED_MOUNT


def cluster_hosts(cluster, options):
    """The hosts of an Instant Cluster's workers, reached through the cluster's jump host."""
    cluster_type = cluster.get("cluster_type") or ""
    total_gpus, gpu_model = parse_type(cluster_type)
    workers = [worker for worker in cluster.get("worker_nodes") or [] if isinstance(worker, dict)]
    gpus_per_worker = total_gpus // len(workers) if workers and total_gpus else 0
    jump = _address(cluster.get("ip"))
    cluster_name = cluster.get("hostname") or cluster.get("id")
    shared = {
        "datacrunch_kind": "cluster_worker",
        "datacrunch_cluster_id": cluster.get("id"),
        "datacrunch_cluster_hostname": cluster.get("hostname"),
        "datacrunch_cluster_type": cluster_type,
        "datacrunch_cluster_status": cluster.get("status"),
        "datacrunch_cluster_price_per_hour": price(cluster.get("price_per_hour")),
        "datacrunch_cluster_size": len(workers),
        "datacrunch_shared_volumes": [
            {key: volume.get(key) for key in ("id", "name", "mount_point", "size_in_gigabytes")}
            for volume in cluster.get("shared_volumes") or []
            if isinstance(volume, dict)
        ],
        "datacrunch_jump_host": jump,
        # Storage of a worker, as Verda documents it (docs.verda.com/clusters/instant-clusters/good-to-know): local
        # NVMe at /mnt/local_disk, a shared filesystem at /home (or the shared volume rented with the cluster).
        # Published as facts that the roles' defaults read, never as sglang_* host variables that would beat
        # group_vars.
        "datacrunch_local_disk": CLUSTER_LOCAL_DISK,
        "datacrunch_shared_mount": _shared_mount(cluster),
        "datacrunch_gpu_model": gpu_model,
        "datacrunch_gpu_count": gpus_per_worker,
        "datacrunch_location": cluster.get("location"),
        "datacrunch_image": cluster.get("image"),
        "datacrunch_os_name": cluster.get("os_name"),
        "datacrunch_contract": cluster.get("contract"),
        "datacrunch_created_at": cluster.get("created_at"),
        "datacrunch_ssh_key_ids": list(cluster.get("ssh_key_ids") or []),
        "datacrunch_tags": _tags(cluster.get("tags")),
        "sglang_cluster": cluster_name,
    }
    groups = [
        options.group_prefix,
        group_name(options.group_prefix, "cluster_workers"),
        *_keyed(options, "type", cluster_type),
        *_keyed(options, "location", cluster.get("location")),
        group_name(options.group_prefix, "cluster", cluster_name),
    ]
    if _serves(options, gpu_model):
        groups.append(options.serving_group)
    hosts = []
    for worker in workers:
        private_ip = _address(worker.get("private_ip"))
        variables = dict(shared)
        variables.update({
            "datacrunch_id": worker.get("id"),
            "datacrunch_hostname": worker.get("hostname"),
            "datacrunch_status": worker.get("status") or cluster.get("status"),
            "datacrunch_private_ip": private_ip,
            "datacrunch_public_ip": _address(worker.get("public_ip")),
            "sglang_private_ip": private_ip,
        })
        variables.update(_ssh_variables(options, private_ip, jump=jump))
        hosts.append(Host(host_name(worker.get("hostname"), worker.get("id")), variables, list(groups)))
    return hosts


def build_hosts(instances, clusters, options):
    """(hosts, skipped): the inventory, and (name, reason) for what was left out for want of an address."""
    hosts = []
    skipped = []
    statuses = set(options.statuses)
    worker_ids = set()
    if options.include_clusters:
        for cluster in clusters or []:
            for worker in cluster.get("worker_nodes") or []:
                if isinstance(worker, dict):
                    worker_ids.add(worker.get("id"))
            if statuses and cluster.get("status") not in statuses:
                continue
            if not _kept(options, cluster.get("location"), cluster.get("cluster_type")):
                continue
            for host in cluster_hosts(cluster, options):
                if statuses and host.variables["datacrunch_status"] not in statuses:
                    continue
                if not _named(options, [host.variables["datacrunch_hostname"], cluster.get("hostname")]):
                    continue
                if not host.variables["datacrunch_jump_host"] or not host.variables["ansible_host"]:
                    skipped.append((host.name, "cluster has no jump host or worker private IP yet"))
                    continue
                hosts.append(host)
    if options.include_instances:
        for instance in instances or []:
            # Should the API list cluster workers among instances too, they are hosts once, as workers.
            if instance.get("id") in worker_ids:
                continue
            if statuses and instance.get("status") not in statuses:
                continue
            if not _kept(options, instance.get("location"), instance.get("instance_type")):
                continue
            if not _named(options, [instance.get("hostname")]):
                continue
            host = instance_host(instance, options)
            if not host.variables["ansible_host"]:
                skipped.append((host.name, "no public IP yet"))
                continue
            hosts.append(host)
    return _unique_names(hosts), skipped


def _unique_names(hosts):
    """Hostnames need not be unique in an account (nor their usable forms); inventory names must be. Later twins get
    the first characters of their id appended."""
    seen = set()
    for host in sorted(hosts, key=lambda h: (h.name, str(h.variables.get("datacrunch_created_at") or ""))):
        if host.name in seen:
            host.name = f"{host.name}-{str(host.variables.get('datacrunch_id'))[:8]}"
        seen.add(host.name)
    return sorted(hosts, key=lambda h: h.name)
