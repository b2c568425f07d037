# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Everything the GPU preflight needs to know about a host, gathered in one pass.

``gather`` is what the ``gpu_info`` module calls: nvidia-smi (GPUs, NVLink), the NVIDIA container toolkit, the
Docker engine, free disk for given paths, /dev/shm, TCP listeners on given ports and who holds them (a process, a
container, ours or foreign), InfiniBand devices, the host's interfaces and addresses, and optionally a container
that asks for every GPU and a rendezvous test between nodes. It only reads, except the GPU probe container,
which it removes again.

The checks themselves are judged on the controller from these facts (``gpu/checks.py``, through the
``gpu_preflight`` filter).
Standard library only: it runs under the system Python of a fresh host.
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import json
import os
import re
import shutil
import socket
import struct
import threading
import time

from ansible_collections.datacrunch.sglang.plugins.module_utils.common import host_command
from ansible_collections.datacrunch.sglang.plugins.module_utils.common.labels import is_ours, our_labels
from ansible_collections.datacrunch.sglang.plugins.module_utils.common.network_address import is_private_address
from ansible_collections.datacrunch.sglang.plugins.module_utils.common.tcp_listeners import (
    listening_sockets,
    socket_owners,
)
from ansible_collections.datacrunch.sglang.plugins.module_utils.gpu import docker_engine as gpu_docker
from ansible_collections.datacrunch.sglang.plugins.module_utils.gpu import nvidia_smi

SUBSETS = ("gpu", "toolkit", "docker", "storage", "ports", "network")
TOOLKIT_BINARIES = (
    "nvidia-ctk",
    "nvidia-container-runtime",
    "nvidia-container-runtime-hook",
    "nvidia-container-cli",
)
DAEMON_JSON = "/etc/docker/daemon.json"
CDI_FILES = ("/etc/cdi/nvidia.yaml", "/etc/cdi/nvidia.json", "/var/run/cdi/nvidia.yaml", "/var/run/cdi/nvidia.json")
VIRTUAL_INTERFACES = re.compile(r"^(lo|docker\d*|br-|veth|virbr|cni|flannel|cali|vxlan|tun|tap|kube|dummy)")
SHM = "/dev/shm"  # noqa: S108 - measured, never written
RENDEZVOUS_HELLO = b"datacrunch.sglang preflight rendezvous\n"


def _which(name):
    return shutil.which(name) or shutil.which(name, path=":".join(gpu_docker.SEARCH_DIRS))


def _run(argv, timeout=15):
    completed, error = host_command.run(argv, timeout)
    if completed is None:
        return None, error
    if completed.returncode != 0:
        return None, (completed.stderr or completed.stdout).strip()
    return completed.stdout, None


# --------------------------------------------------------------------------------------------------------------
# NVIDIA container toolkit
# --------------------------------------------------------------------------------------------------------------


def toolkit_state():
    """Toolkit binaries, its version, the package, Docker's daemon.json runtimes and CDI specs."""
    binaries = {name: _which(name) or "" for name in TOOLKIT_BINARIES}
    state = {
        "installed": bool(binaries["nvidia-ctk"] or binaries["nvidia-container-runtime-hook"]),
        "binaries": binaries,
        "version": "",
        "package_version": "",
        "daemon_json_runtimes": [],
        "daemon_json_default_runtime": "",
        "daemon_json_error": "",
        "cdi_specs": [path for path in CDI_FILES if os.path.exists(path)],
    }
    if binaries["nvidia-ctk"]:
        out, _error = _run([binaries["nvidia-ctk"], "--version"])
        if out:
            match = re.search(r"version\s+v?([0-9][\w.\-]*)", out)
            state["version"] = match.group(1) if match else out.splitlines()[0].strip()
    if _which("dpkg-query"):
        out, _error = _run(["dpkg-query", "-W", "-f", "${Status}\t${Version}", "nvidia-container-toolkit"])
        if out and out.startswith("install ok installed"):
            state["package_version"] = out.split("\t", 1)[1].strip()
    if os.path.exists(DAEMON_JSON):
        try:
            with open(DAEMON_JSON, encoding="utf-8") as handle:
                daemon = json.load(handle)
            state["daemon_json_runtimes"] = sorted((daemon.get("runtimes") or {}).keys())
            state["daemon_json_default_runtime"] = daemon.get("default-runtime", "")
        except (OSError, ValueError, AttributeError) as exc:
            state["daemon_json_error"] = f"{DAEMON_JSON}: {exc}"
    return state


# --------------------------------------------------------------------------------------------------------------
# Storage
# --------------------------------------------------------------------------------------------------------------


def _nearest_up(path, found):
    """path, or its nearest parent for which found(parent) holds (the root at the latest)."""
    while not found(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def _existing_ancestor(path):
    return _nearest_up(os.path.abspath(path), os.path.exists)


def _mount_point(path):
    return _nearest_up(os.path.realpath(path), os.path.ismount)


def disk_state(path):
    """Free and total bytes of the filesystem that holds `path` (or would hold it, for a path not made yet)."""
    existing = _existing_ancestor(path)
    try:
        stat = os.statvfs(existing)
    except OSError as exc:
        return {"path": path, "measured_at": existing, "error": str(exc), "free": 0, "total": 0, "mount": ""}
    return {
        "path": path,
        "measured_at": existing,
        "exists": existing == os.path.abspath(path),
        "mount": _mount_point(existing),
        "free": stat.f_bavail * stat.f_frsize,
        "total": stat.f_blocks * stat.f_frsize,
        "error": "",
    }


def bytes_under(path):
    """Bytes of the regular files under a directory, symlinks not followed (the HF cache keeps data in blobs/)."""
    total = 0
    files = 0
    if not os.path.isdir(path):
        return {"path": path, "bytes": 0, "files": 0, "exists": False}
    for root, _dirs, names in os.walk(path):
        for name in names:
            try:
                info = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            if not os.path.islink(os.path.join(root, name)):
                total += info.st_size
                files += 1
    return {"path": path, "bytes": total, "files": files, "exists": True}


# --------------------------------------------------------------------------------------------------------------
# TCP listeners and who holds them
# --------------------------------------------------------------------------------------------------------------


def _process_name(pid):
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8") as handle:
            return handle.read().strip()
    except OSError:
        return ""


def _process_cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


_CONTAINER_ID = re.compile(r"(?:docker[-/]|/docker/|containerd[-/:])?([0-9a-f]{64})")


def container_ids_of(pid):
    """Container ids in a process's cgroup path, innermost last (cgroup v1 and v2, nested engines)."""
    try:
        with open(f"/proc/{pid}/cgroup", encoding="utf-8") as handle:
            return parse_cgroup(handle.read())
    except OSError:
        return []


def parse_cgroup(text):
    """Container ids (64 hex digits) in the paths of a /proc/PID/cgroup file, outermost first."""
    ids = []
    for line in text.splitlines():
        for match in _CONTAINER_ID.finditer(line.split(":", 2)[-1]):
            if match.group(1) not in ids:
                ids.append(match.group(1))
    return ids


def _is_ours(labels):
    return is_ours({key: value for key, value in (labels or {}).items() if key != gpu_docker.PROBE_LABEL})


def describe_process(pid, client):
    """A process with its container (when it runs in one the local engine knows) and whether it is ours."""
    entry = {
        "pid": pid,
        "name": _process_name(pid),
        "cmdline": _process_cmdline(pid)[:200],
        "container": None,
        "ours": False,
    }
    if client is None:
        return entry
    for container_id in reversed(container_ids_of(pid)):
        container = gpu_docker.container_by_id(client, container_id)
        if container:
            entry["container"] = {
                "id": container["id"][:12],
                "name": container["name"],
                "image": container["image"],
                "labels": our_labels(container["labels"]),
            }
            entry["ours"] = _is_ours(container["labels"])
            break
    return entry


def listeners_state(ports, client):
    """For each port: the TCP listeners on it and who holds them."""
    state = {}
    watched = [listener for listener in listening_sockets() if listener["port"] in ports]
    owners = socket_owners([listener["inode"] for listener in watched])
    for port in ports:
        held = []
        for listener in watched:
            if listener["port"] != port:
                continue
            pid = owners.get(listener["inode"])
            holder = (
                describe_process(pid, client)
                if pid
                else {"pid": None, "name": "", "cmdline": "", "container": None, "ours": False}
            )
            if holder["name"] == "docker-proxy" and client is not None:
                published = gpu_docker.containers_publishing(client, port)
                if published:
                    container = published[0]
                    holder["container"] = {
                        "id": container["id"][:12],
                        "name": container["name"],
                        "image": container["image"],
                        "labels": our_labels(container["labels"]),
                    }
                    holder["ours"] = _is_ours(container["labels"])
            held.append({"address": listener["address"], **holder})
        state[str(port)] = {"port": port, "free": not held, "listeners": held}
    return state


# --------------------------------------------------------------------------------------------------------------
# Network: interfaces, addresses, InfiniBand
# --------------------------------------------------------------------------------------------------------------

_SIOCGIFADDR = 0x8915


def _ipv4_of(name):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        packed = fcntl.ioctl(sock.fileno(), _SIOCGIFADDR, struct.pack("256s", name[:15].encode()))
        return socket.inet_ntoa(packed[20:24])
    except OSError:
        return None
    finally:
        sock.close()


def _ipv6_addresses():
    out = {}
    try:
        with open("/proc/net/if_inet6", encoding="ascii") as handle:
            for line in handle:
                fields = line.split()
                if len(fields) < 6:
                    continue
                address = str(ipaddress.IPv6Address(bytes.fromhex(fields[0])))
                out.setdefault(fields[5], []).append(address)
    except OSError:
        pass
    return out


def _default_route_interface():
    try:
        with open("/proc/net/route", encoding="ascii") as handle:
            for line in handle.readlines()[1:]:
                fields = line.split()
                if len(fields) > 2 and fields[1] == "00000000":
                    return fields[0]
    except OSError:
        pass
    return ""


def interfaces_state():
    """{name: [addresses]} for every interface that is up or has an address, from `ip -j addr` or the kernel."""
    interfaces = {}
    ip_tool = _which("ip")
    if ip_tool:
        out, _error = _run([ip_tool, "-j", "addr", "show"])
        if out:
            try:
                for link in json.loads(out):
                    interfaces[link["ifname"]] = [
                        info["local"] for info in link.get("addr_info", []) if "local" in info
                    ]
            except (ValueError, KeyError, TypeError):
                interfaces = {}
    if not interfaces:
        ipv6 = _ipv6_addresses()
        for _index, name in socket.if_nameindex():
            addresses = []
            ipv4 = _ipv4_of(name)
            if ipv4:
                addresses.append(ipv4)
            addresses.extend(ipv6.get(name, []))
            interfaces[name] = addresses
    return interfaces


def private_addresses(interfaces, default_interface=""):
    """Private IPv4 addresses on physical-looking interfaces, the default route's interface first."""
    candidates = []
    for name in sorted(interfaces, key=lambda item: (item != default_interface, item)):
        if VIRTUAL_INTERFACES.match(name):
            continue
        for address in interfaces[name]:
            if ":" not in address and is_private_address(address):
                candidates.append({"interface": name, "address": address})
    return candidates


def _pkey_table(directory, read):
    """The non-empty entries of a port's P_Key table: one file per index holding e.g. ``0x8001`` (the kernel's
    documented sysfs ABI, Documentation/ABI/stable/sysfs-class-infiniband)."""
    entries = []
    try:
        indexes = sorted(int(item) for item in os.listdir(directory) if item.isdigit())
    except OSError:
        return entries
    for index in indexes:
        text = read(os.path.join(directory, str(index)))
        try:
            value = int(text, 16)
        except ValueError:
            continue
        if value & 0x7FFF:
            entries.append({"index": index, "value": "0x%04x" % value})
    return entries


def ib_state(root="/sys/class/infiniband"):
    """InfiniBand / RoCE devices with their ports' state, link layer, rate, P_Key table and network interfaces."""
    devices = []
    try:
        names = sorted(os.listdir(root))
    except OSError:
        return devices

    def read(path):
        try:
            with open(path, encoding="utf-8") as handle:
                return handle.read().strip()
        except OSError:
            return ""

    for name in names:
        ports = []
        try:
            port_names = sorted(os.listdir(os.path.join(root, name, "ports")), key=int)
        except (OSError, ValueError):
            port_names = []
        for port in port_names:
            base = os.path.join(root, name, "ports", port)
            ports.append(
                {
                    "port": int(port),
                    "state": read(os.path.join(base, "state")).split(":")[-1].strip(),
                    "phys_state": read(os.path.join(base, "phys_state")).split(":")[-1].strip(),
                    "link_layer": read(os.path.join(base, "link_layer")),
                    "rate": read(os.path.join(base, "rate")),
                    "pkeys": _pkey_table(os.path.join(base, "pkeys"), read),
                }
            )
        try:
            netdevs = sorted(os.listdir(os.path.join(root, name, "device", "net")))
        except OSError:
            netdevs = []
        devices.append({"name": name, "ports": ports, "netdevs": netdevs})
    return devices


# --------------------------------------------------------------------------------------------------------------
# Rendezvous between nodes
# --------------------------------------------------------------------------------------------------------------


def rendezvous_listen(port, expect, timeout, address="0.0.0.0"):  # noqa: S104 - rank 0 listens for its peers
    """Listen on the rendezvous port until `expect` peers said hello or `timeout` passed."""
    result = {"mode": "listen", "port": port, "listening": False, "in_use": False, "peers": [], "error": ""}
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        server.bind((address, port))
        server.listen(64)
    except OSError as exc:
        server.close()
        result["in_use"] = exc.errno == errno.EADDRINUSE
        result["error"] = f"cannot listen on {address}:{port}: {exc.strerror or exc}"
        return result
    result["listening"] = True
    deadline = time.monotonic() + timeout
    try:
        while len(result["peers"]) < expect and time.monotonic() < deadline:
            server.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                conn, peer = server.accept()
            except TimeoutError:
                break
            with conn:
                conn.settimeout(5)
                try:
                    hello = conn.recv(256)
                    if hello.startswith(RENDEZVOUS_HELLO.strip()):
                        conn.sendall(b"ok\n")
                        result["peers"].append(peer[0])
                except OSError:
                    continue
    finally:
        server.close()
    return result


def rendezvous_connect(host, port, timeout):
    """Connect to rank 0's rendezvous port until it answers or `timeout` passed."""
    result = {
        "mode": "connect",
        "host": host,
        "port": port,
        "reached": False,
        "answered": False,
        "attempts": 0,
        "error": "",
        "seconds": 0.0,
    }
    started = time.monotonic()
    deadline = started + timeout
    while time.monotonic() < deadline:
        result["attempts"] += 1
        try:
            with socket.create_connection((host, port), timeout=min(5, max(0.5, deadline - time.monotonic()))) as conn:
                result["reached"] = True
                conn.settimeout(5)
                conn.sendall(RENDEZVOUS_HELLO)
                try:
                    result["answered"] = conn.recv(16).startswith(b"ok")
                except OSError:
                    result["answered"] = False
                result["error"] = ""
                break
        except OSError as exc:
            result["error"] = f"{host}:{port}: {exc.strerror or exc}"
            time.sleep(0.5)
    result["seconds"] = round(time.monotonic() - started, 2)
    return result


# --------------------------------------------------------------------------------------------------------------
# One pass
# --------------------------------------------------------------------------------------------------------------


def gather(
    subsets=SUBSETS,
    nvidia_smi_path="nvidia-smi",
    nvidia_smi_timeout=60,
    paths=(),
    sizes=(),
    ports=(),
    images=(),
    container_probe=None,
    rendezvous=None,
    docker_host="",
):
    """Gather the facts of the chosen subsets; never raises for a host problem (it is reported instead)."""
    started = time.monotonic()
    subsets = set(subsets)
    facts = {"subsets": sorted(subsets)}
    rendezvous_thread = None
    rendezvous_result = {}
    if rendezvous:
        # Started first: peers run the same task at the same moment and retry until the listener is up.
        def _rendezvous():
            if rendezvous.get("listen_port"):
                rendezvous_result.update(
                    rendezvous_listen(rendezvous["listen_port"], rendezvous.get("peers", 0), rendezvous["timeout"])
                )
            else:
                rendezvous_result.update(
                    rendezvous_connect(rendezvous["connect_host"], rendezvous["connect_port"], rendezvous["timeout"])
                )

        rendezvous_thread = threading.Thread(target=_rendezvous, daemon=True)
        rendezvous_thread.start()

    client = gpu_docker.DockerClient(gpu_docker.socket_path(docker_host))
    engine_up = os.path.exists(client.path)
    if "gpu" in subsets:
        gpu = nvidia_smi.collect(nvidia_smi_path, nvidia_smi_timeout)
        for device in gpu["gpus"]:
            device["processes"] = [
                {
                    **process,
                    **{
                        k: v
                        for k, v in describe_process(process["pid"], client if engine_up else None).items()
                        if k in ("container", "ours", "cmdline")
                    },
                }
                for process in device["processes"]
            ]
        facts["gpu"] = gpu
    if "toolkit" in subsets:
        facts["toolkit"] = toolkit_state()
    docker = None
    if "docker" in subsets or "storage" in subsets:
        docker = gpu_docker.engine_state(client)
    if "docker" in subsets:
        facts["docker"] = docker
        facts["images"] = (
            [gpu_docker.image_state(client, image) for image in images]
            if docker["running"]
            else [
                {"image": image, "present": False, "size": 0, "id": "", "error": "engine not running"}
                for image in images
            ]
        )
        facts["ours"] = gpu_docker.our_containers(client) if docker["running"] else []
        serving = [
            container
            for container in facts["ours"]
            if container["state"] == "running"
            and "datacrunch.sglang.spec-hash" in container["labels"]
            and container_probe
            and container["image"] == container_probe.get("image")
        ]
        if container_probe and container_probe.get("image"):
            if serving:
                facts["container_probe"] = gpu_docker.gpu_exec_probe(
                    client, serving[0], timeout=container_probe.get("timeout", 120)
                )
            elif not docker["running"]:
                facts["container_probe"] = {
                    "image": container_probe["image"],
                    "ran": False,
                    "skipped": True,
                    "error": "the Docker engine is not running",
                }
            elif (
                not any(image["present"] for image in facts["images"] if image["image"] == container_probe["image"])
                and not gpu_docker.image_state(client, container_probe["image"])["present"]
            ):
                facts["container_probe"] = {
                    "image": container_probe["image"],
                    "ran": False,
                    "skipped": True,
                    "error": "image {} is not on the host yet".format(container_probe["image"]),
                }
            else:
                facts["container_probe"] = gpu_docker.gpu_probe(
                    client, container_probe["image"], timeout=container_probe.get("timeout", 120)
                )
    if "storage" in subsets:
        all_paths = list(paths)
        if docker and docker.get("root_dir") and docker["root_dir"] not in all_paths:
            all_paths.append(docker["root_dir"])
        facts["disk"] = {path: disk_state(path) for path in all_paths}
        facts["sizes"] = {path: bytes_under(path) for path in sizes}
        facts["shm"] = (
            disk_state(SHM) if os.path.isdir(SHM) else {"path": SHM, "total": 0, "free": 0, "error": "no /dev/shm"}
        )
    if "ports" in subsets:
        facts["ports"] = listeners_state(list(ports), client if engine_up else None)
    if "network" in subsets:
        interfaces = interfaces_state()
        default_interface = _default_route_interface()
        facts["network"] = {
            "hostname": socket.gethostname(),
            "interfaces": interfaces,
            "default_interface": default_interface,
            "private_addresses": private_addresses(interfaces, default_interface),
        }
        facts["ib_devices"] = ib_state()
    if rendezvous_thread is not None:
        rendezvous_thread.join(rendezvous["timeout"] + 10)
        facts["rendezvous"] = rendezvous_result or {"error": "the rendezvous test did not finish"}
    facts["seconds"] = round(time.monotonic() - started, 2)
    return facts
