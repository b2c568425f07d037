# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Judge a GPU host from the facts ``gpu_info`` gathered: one pass/fail line per check, each with its fix.

Pure functions of data, run on the controller (through the ``gpu_preflight`` filter), so a fleet's preflight
costs one module call per host however many checks there are.

``requirements`` (built by the ``gpu_host`` role from the profile and its variables):

============================  ===========================================================================
key                           meaning
============================  ===========================================================================
profile                       profile name (for messages)
gpu_model, gpu_count          the GPU model (a substring of nvidia-smi's name, e.g. H200) and count per node
image, image_version          the SGLang image and, when its tag does not say it, its version
min_driver                    a driver floor that overrides the image's (the profile's or the user's)
require_persistence           persistence mode must be on
docker_required               the Docker engine, the toolkit and the container probe are checked
container_probe               the probe container was asked for
disk                          [{name, path, need_bytes, present_path?}]: space that must be free per path
announced_mounts              mounts the inventory announces (datacrunch_local_disk, datacrunch_shared_mount): a disk
                              path under one of them must lie on it
image_bytes                   space the image needs in Docker's root dir when it is not there yet
image_pull                    sglang_server_pull: never makes a missing image a failure (and needs no space)
shm_min_bytes                 smallest /dev/shm (the server runs with --ipc=host)
port                          the serving port: free, or held by this collection's container
multi_node, rank, peers       cluster layout; the rendezvous result is judged on every node
cluster, unit_ib_devices      sglang_cluster and {host: ib_devices as gathered} of every host of the unit
rendezvous_port               rank 0's rendezvous port
private_ip                    sglang_private_ip when set (must be on the host)
fabric                        {busbw_gbps, min_busbw_gbps, size_bytes, ...} from the all-reduce test, or None
============================  ===========================================================================
"""

from __future__ import annotations

from ansible_collections.datacrunch.sglang.plugins.module_utils.common.network_address import is_private_address
from ansible_collections.datacrunch.sglang.plugins.module_utils.gpu import cuda_compat, nccl_ib

PASS, FAIL, WARN, SKIP, DEGRADED = "pass", "fail", "warn", "skip", "degraded"
GIB = 1024**3
SHM = "/dev/shm"  # noqa: S108 - measured, never written
GB = 1000**3

# All-reduce bus bandwidth (GB/s, bf16, 1 GiB, NCCL through PyTorch, one process per GPU) measured on H200 hosts
# whose GPUs are all joined by NVLink. The threshold is a fraction of it; counts not measured use the nearest
# smaller count (on an NVSwitch host the bus bandwidth does not fall as GPUs are added).
FABRIC_REFERENCE_GBPS = {2: 355.0, 4: 355.0}
FABRIC_THRESHOLD_FRACTION = 0.8


def fabric_threshold(gpu_count, fraction=FABRIC_THRESHOLD_FRACTION):
    """Smallest healthy all-reduce bus bandwidth (GB/s) for a host of `gpu_count` NVLink-joined GPUs."""
    if gpu_count < 2:
        return 0.0
    known = [count for count in FABRIC_REFERENCE_GBPS if count <= gpu_count] or [min(FABRIC_REFERENCE_GBPS)]
    return round(FABRIC_REFERENCE_GBPS[max(known)] * fraction, 1)


def _check(name, status, summary, fix=""):
    return {"name": name, "status": status, "summary": summary, "fix": fix}


def _ranges(numbers):
    """[0, 1, 2, 5] -> '0-2,5'."""
    numbers = sorted(set(numbers))
    parts = []
    start = previous = None
    for number in numbers:
        if start is None:
            start = previous = number
        elif number == previous + 1:
            previous = number
        else:
            parts.append(str(start) if start == previous else f"{start}-{previous}")
            start = previous = number
    if start is not None:
        parts.append(str(start) if start == previous else f"{start}-{previous}")
    return ",".join(parts)


def _gib(value):
    return f"{value / GIB:.1f} GiB"


def _gpu_checks(gpu, req):
    checks = []
    if not gpu.get("present"):
        checks.append(
            _check(
                "nvidia-smi",
                FAIL,
                gpu.get("error") or "nvidia-smi not found",
                "install the NVIDIA driver (R580+ for CUDA 13 images; on DataCrunch pick an image with the driver, "
                "e.g. ubuntu-24.04-cuda-13.0-open-docker) and check that `nvidia-smi` runs",
            )
        )
        return checks, False
    if not gpu.get("ok"):
        checks.append(
            _check(
                "nvidia-smi",
                FAIL,
                gpu.get("error") or "nvidia-smi failed",
                "nvidia-smi cannot talk to the driver: check `dmesg | grep -i -e nvrm -e xid`, that the kernel "
                "module is loaded (`lsmod | grep nvidia`), and reboot after a driver upgrade",
            )
        )
        return checks, False
    gpus = gpu.get("gpus") or []
    names = sorted({device.get("name", "") for device in gpus})
    checks.append(_check("nvidia-smi", PASS, f"driver {gpu.get('driver_version')}, CUDA {gpu.get('cuda_version')}"))

    # GPU model and count.
    want_model = str(req.get("gpu_model") or "")
    want_count = int(req.get("gpu_count") or 0)
    matching = [device for device in gpus if want_model.lower() in device.get("name", "").lower()]
    described = f"{len(gpus)} x {', '.join(names) or 'no GPU'}"
    if len(matching) >= want_count and (len(matching) == len(gpus) or not want_model):
        checks.append(
            _check("gpus", PASS, f"{described} (profile {req.get('profile')} needs {want_count} x {want_model})")
        )
    elif len(gpus) < want_count:
        checks.append(
            _check(
                "gpus",
                FAIL,
                f"{described}: profile {req.get('profile')} needs {want_count} x {want_model} per node",
                f"use a host with {want_count} x {want_model} (DataCrunch {want_count}{want_model}.141S.176V) or a "
                "profile for fewer GPUs (sglang_profile); if this host should have them, a GPU is missing: look for "
                "'fallen off the bus' or Xid errors in `dmesg`, reboot, and replace the node if it stays missing",
            )
        )
    else:
        checks.append(
            _check(
                "gpus",
                FAIL,
                f"{described}: profile {req.get('profile')} needs {want_model} GPUs",
                f"use a host with {want_count} x {want_model} (DataCrunch instance type "
                f"{want_count}{want_model}.141S.176V), or set sglang_profile / gpu_host_gpu_model to match the host",
            )
        )

    # Driver against the image's CUDA.
    verdict = cuda_compat.check_driver(
        req.get("image", ""), gpu.get("driver_version", ""), req.get("image_version", ""), req.get("min_driver", "")
    )
    if verdict["ok"] is True:
        checks.append(_check("driver", PASS, verdict["message"]))
    elif verdict["ok"] is False:
        checks.append(_check("driver", FAIL, verdict["message"], verdict["fix"]))
    else:
        checks.append(_check("driver", WARN, verdict["message"], verdict["fix"]))

    # NVLink: every pair joined, every link up.
    nvlink = gpu.get("nvlink") or {}
    links = nvlink.get("links") or {}
    unjoined = [pair for pair in nvlink.get("pairs") or [] if not pair.get("nvlinks")]
    inactive = {int(index): state.get("inactive") for index, state in links.items() if state.get("inactive")}
    if len(gpus) < 2:
        checks.append(_check("nvlink", PASS, "one GPU: no NVLink needed"))
    elif gpu.get("nvlink_error") and not nvlink.get("pairs"):
        checks.append(
            _check(
                "nvlink",
                FAIL,
                f"cannot read the NVLink topology: {gpu.get('nvlink_error')}",
                "run `nvidia-smi topo -m` and `nvidia-smi nvlink -s` on the host; on NVSwitch hosts check "
                "`systemctl status nvidia-fabricmanager`",
            )
        )
    elif unjoined or inactive:
        parts = []
        if unjoined:
            shown = ", ".join(f"{p['gpus'][0]}-{p['gpus'][1]} ({p.get('link') or '?'})" for p in unjoined[:8])
            more = f" and {len(unjoined) - 8} more" if len(unjoined) > 8 else ""
            parts.append(f"GPU pairs not joined by NVLink: {shown}{more}")
        if inactive:
            parts.append(
                "inactive links: "
                + "; ".join(f"GPU{index} link {_ranges(ids)}" for index, ids in sorted(inactive.items()))
            )
        checks.append(
            _check(
                "nvlink",
                FAIL,
                "; ".join(parts),
                "tensor parallel traffic would fall back to PCIe: check `systemctl status nvidia-fabricmanager` "
                "(NVSwitch hosts), reset the GPUs or reboot; if links stay down, replace the node",
            )
        )
    else:
        counts = sorted({pair["nvlinks"] for pair in nvlink.get("pairs") or []})
        pairs = len(nvlink.get("pairs") or [])
        checks.append(
            _check("nvlink", PASS, f"all {pairs} GPU pairs joined (NV{'/'.join(str(c) for c in counts)}), all links up")
        )

    # ECC, retired pages, remapped rows.
    bad = []
    for device in gpus:
        problems = []
        if device.get("ecc_uncorrected_volatile"):
            problems.append(f"{device['ecc_uncorrected_volatile']} uncorrected ECC errors since boot")
        retired = device.get("retired_pages") or {}
        if retired.get("pending"):
            problems.append("page retirement pending")
        remapped = device.get("remapped_rows") or {}
        if remapped.get("pending"):
            problems.append("row remap pending")
        if remapped.get("failure"):
            problems.append("row remap failed")
        if problems:
            bad.append(f"GPU{device['index']}: {', '.join(problems)}")
    ecc_off = [device["index"] for device in gpus if device.get("ecc_mode") is False]
    if bad:
        checks.append(
            _check(
                "ecc",
                FAIL,
                "; ".join(bad),
                "reset the affected GPU (`nvidia-smi -r -i N` with no process on it) or reboot so pending "
                "retirements/remaps take effect; if uncorrected errors come back, replace the node",
            )
        )
    elif ecc_off:
        checks.append(
            _check("ecc", WARN, f"ECC is off on GPU {_ranges(ecc_off)}", "`nvidia-smi -e 1`, then reset the GPUs")
        )
    else:
        checks.append(_check("ecc", PASS, "no uncorrected ECC errors, no pending retirement or row remap"))

    # MIG and compute mode.
    mig = [device["index"] for device in gpus if device.get("mig_mode")]
    prohibited = [device["index"] for device in gpus if device.get("compute_mode") == "Prohibited"]
    exclusive = [device["index"] for device in gpus if "Exclusive" in str(device.get("compute_mode", ""))]
    if mig:
        checks.append(
            _check(
                "mig",
                FAIL,
                f"MIG mode is on for GPU {_ranges(mig)}: SGLang needs whole GPUs",
                f"`nvidia-smi -i {_ranges(mig)} -mig 0` (no process on the GPU), then reset the GPU or reboot",
            )
        )
    else:
        checks.append(_check("mig", PASS, "MIG off on every GPU"))
    if prohibited:
        checks.append(
            _check(
                "compute mode",
                FAIL,
                f"compute mode Prohibited on GPU {_ranges(prohibited)}",
                f"`nvidia-smi -i {_ranges(prohibited)} -c DEFAULT`",
            )
        )
    elif exclusive:
        checks.append(
            _check(
                "compute mode",
                WARN,
                f"compute mode Exclusive_Process on GPU {_ranges(exclusive)}",
                f"`nvidia-smi -i {_ranges(exclusive)} -c DEFAULT`",
            )
        )
    else:
        checks.append(_check("compute mode", PASS, "Default on every GPU"))

    # Persistence mode.
    off = [device["index"] for device in gpus if device.get("persistence_mode") is False]
    if off and req.get("require_persistence", True):
        checks.append(
            _check(
                "persistence",
                FAIL,
                f"persistence mode is off on GPU {_ranges(off)}",
                "`systemctl enable --now nvidia-persistenced` (or `nvidia-smi -pm 1`), or set "
                "gpu_host_enable_persistence: true",
            )
        )
    else:
        checks.append(_check("persistence", PASS, "persistence mode on" if not off else "persistence off (allowed)"))

    # Processes holding GPU memory.
    foreign = {}
    ours = 0
    for device in gpus:
        for process in device.get("processes") or []:
            if process.get("ours"):
                ours += 1
                continue
            key = process.get("pid")
            entry = foreign.setdefault(key, {"process": process, "gpus": [], "mib": 0})
            entry["gpus"].append(device["index"])
            entry["mib"] += process.get("used_memory_mib") or 0
    if foreign:
        described = []
        stops = []
        for pid, entry in sorted(foreign.items(), key=lambda item: str(item[0])):
            process = entry["process"]
            container = process.get("container") or {}
            where = f" in container {container.get('name')}" if container else ""
            described.append(
                f"pid {pid} ({process.get('name') or '?'}{where}) holds {entry['mib'] / 1024:.1f} GiB "
                f"on GPU {_ranges(entry['gpus'])}"
            )
            stops.append(f"container {container['name']}" if container else f"pid {pid} ({process.get('name') or '?'})")
        checks.append(
            _check(
                "gpu processes",
                FAIL,
                "; ".join(described) + " (not a datacrunch.sglang container)",
                "free the GPUs (this collection stops only its own containers): stop " + ", ".join(stops)
                + " if it should not run on this host, or deploy to another host",
            )
        )
    else:
        checks.append(
            _check(
                "gpu processes",
                PASS,
                f"only our server holds GPU memory ({ours} processes)" if ours else "no process holds GPU memory",
            )
        )
    return checks, True


def _docker_checks(facts, req, gpu_ok):
    checks = []
    docker = facts.get("docker") or {}
    toolkit = facts.get("toolkit") or {}
    if not docker.get("running"):
        if docker.get("installed"):
            fix = "start it: `systemctl enable --now docker`"
        else:
            fix = "install Docker Engine (`apt-get install docker.io`, or docker-ce from Docker's repository)"
        checks.append(_check("docker engine", FAIL, docker.get("error") or "the Docker engine is not running", fix))
    else:
        checks.append(
            _check("docker engine", PASS, f"Docker {docker.get('version')} (API {docker.get('api_version')})")
        )

    binaries = toolkit.get("binaries") or {}
    if not toolkit.get("installed"):
        checks.append(
            _check(
                "nvidia toolkit",
                FAIL,
                "the NVIDIA container toolkit is not installed (no nvidia-ctk, no nvidia-container-runtime-hook)",
                "set gpu_host_install_toolkit: true to install it from NVIDIA's apt repository, or follow NVIDIA's "
                "Container Toolkit install guide",
            )
        )
    else:
        version = toolkit.get("version") or toolkit.get("package_version") or "version unknown"
        checks.append(_check("nvidia toolkit", PASS, f"nvidia-container-toolkit {version}"))

    runtimes = set(docker.get("runtimes") or []) | set(toolkit.get("daemon_json_runtimes") or [])
    configured = []
    if "nvidia" in runtimes:
        configured.append("nvidia runtime")
    if binaries.get("nvidia-container-runtime-hook"):
        configured.append("GPU device driver (runtime hook on PATH)")
    if toolkit.get("cdi_specs"):
        configured.append("CDI spec")
    if not toolkit.get("installed"):
        checks.append(_check("toolkit configured", SKIP, "needs the NVIDIA container toolkit"))
    elif not configured:
        checks.append(
            _check(
                "toolkit configured",
                FAIL,
                "Docker has no NVIDIA runtime and no GPU device driver",
                "`nvidia-ctk runtime configure --runtime=docker && systemctl restart docker`, or set "
                "gpu_host_configure_toolkit: true",
            )
        )
    elif (
        docker.get("running")
        and "nvidia" in (toolkit.get("daemon_json_runtimes") or [])
        and "nvidia" not in (docker.get("runtimes") or [])
    ):
        checks.append(
            _check(
                "toolkit configured",
                FAIL,
                "daemon.json names the nvidia runtime but the running engine does not have it",
                "restart the engine to load it: `systemctl restart docker`",
            )
        )
    else:
        checks.append(_check("toolkit configured", PASS, ", ".join(configured)))

    probe = facts.get("container_probe")
    count = (facts.get("gpu") or {}).get("count") or 0
    if not req.get("container_probe"):
        checks.append(_check("container gpus", SKIP, "not asked (gpu_host_container_probe: false)"))
    elif probe is None or probe.get("skipped"):
        reason = (probe or {}).get("error") or "not run"
        status = SKIP if not docker.get("running") else WARN
        checks.append(
            _check(
                "container gpus",
                status,
                f"probe not run: {reason}",
                ""
                if status == SKIP
                else "the prefetch runs it once it has pulled the image (deploy.yml), or set "
                "gpu_host_container_probe_image to an image already on the host",
            )
        )
    else:
        checks.append(container_gpus_check(probe, count if gpu_ok else None))
    return checks


def container_gpus_check(probe, count=None):
    """Judge ``nvidia-smi -L`` run in a container that asked for every GPU: it ran, and (when ``count`` is given) it
    listed that many GPUs. The preflight and the prefetch's probe (once the image is pulled) both judge with it."""
    if not probe.get("ran") or probe.get("exit_code") != 0:
        error = probe.get("error") or probe.get("output") or f"exit code {probe.get('exit_code')}"
        return _check(
            "container gpus",
            FAIL,
            f"`docker run --gpus all {probe.get('image')} nvidia-smi -L` failed: {error[:300]}",
            "configure the toolkit for Docker (`nvidia-ctk runtime configure --runtime=docker`, restart docker) "
            "and check `docker run --rm --gpus all IMAGE nvidia-smi -L` by hand",
        )
    seen = [line for line in (probe.get("output") or "").splitlines() if line.startswith("GPU ")]
    if count is not None and len(seen) != count:
        return _check(
            "container gpus",
            FAIL,
            f"a container sees {len(seen)} GPUs, the host has {count}",
            "check NVIDIA_VISIBLE_DEVICES / the toolkit's configuration (`nvidia-ctk config`), and CDI specs "
            "(`nvidia-ctk cdi list`)",
        )
    return _check("container gpus", PASS, f"a container sees {len(seen)} GPUs ({probe.get('seconds')} s)")


def _disk_fix(mount, short, names, req):
    """What to do about a full mount, for the things that need room on it: the image and the Hub cache have
    different ways out."""
    ways = []
    if "image" in names:
        ways.append(
            "remove old images (`docker image prune -a`), move Docker's data-root (/etc/docker/daemon.json) to a "
            f"bigger volume, or, if {req.get('image')} is smaller than gpu_host_image_size_gb="
            f"{(req.get('image_bytes') or 0) / 10**9:g} GB, set that to its size"
        )
    if names - {"image"}:
        ways.append(
            "remove old model revisions (`hf cache delete`), mount a bigger volume there, or point sglang_hf_home / "
            "sglang_cache_dir at a volume with room"
        )
    return f"free {_gib(short)} on {mount}: " + "; ".join(ways)


def _storage_checks(facts, req):
    checks = []
    disk = facts.get("disk") or {}
    sizes = facts.get("sizes") or {}
    needs = {}  # mount -> {"free": bytes, "items": [(name, bytes)]}

    def add(name, path, need):
        state = disk.get(path)
        if state is None or state.get("error"):
            checks.append(
                _check(f"disk {name}", FAIL, f"cannot measure free space at {path}: {(state or {}).get('error')}")
            )
            return
        entry = needs.setdefault(state.get("mount") or path, {"free": state.get("free", 0), "items": []})
        entry["items"].append((name, path, max(0, int(need))))

    for item in req.get("disk") or []:
        off_mount = _announced_mount_check(item["name"], item["path"], disk.get(item["path"]),
                                           req.get("announced_mounts"))
        if off_mount:
            checks.append(off_mount)
        present = 0
        if item.get("present_path"):
            present = (sizes.get(item["present_path"]) or {}).get("bytes", 0)
        add(item["name"], item["path"], item["need_bytes"] - present)
    docker = facts.get("docker") or {}
    root = docker.get("root_dir")
    if root and req.get("image"):
        images = {image.get("image"): image for image in facts.get("images") or []}
        if (images.get(req["image"]) or {}).get("present"):
            add("image", root, 0)
        elif req.get("image_pull") == "never":
            checks.append(
                _check(
                    "image",
                    FAIL,
                    f"image {req['image']} is not on this host and sglang_server_pull=never forbids pulling it",
                    "load it on the host (`docker load`), or set sglang_server_pull=missing",
                )
            )
        else:
            add("image", root, req.get("image_bytes") or 0)
    for mount, entry in sorted(needs.items()):
        total = sum(need for _name, _path, need in entry["items"])
        listed = ", ".join(f"{name} {_gib(need)} ({path})" for name, path, need in entry["items"])
        if entry["free"] >= total:
            checks.append(_check(f"disk {mount}", PASS, f"{_gib(entry['free'])} free, needs {_gib(total)}: {listed}"))
        else:
            checks.append(
                _check(
                    f"disk {mount}",
                    FAIL,
                    f"{_gib(entry['free'])} free on {mount}, needs {_gib(total)}: {listed}",
                    _disk_fix(mount, total - entry["free"], {name for name, _path, _need in entry["items"]}, req),
                )
            )
    shm = facts.get("shm") or {}
    want = int(req.get("shm_min_bytes") or 0)
    if want:
        if (shm.get("total") or 0) >= want:
            checks.append(_check(SHM, PASS, f"{_gib(shm.get('total', 0))} (needs {_gib(want)})"))
        else:
            checks.append(
                _check(
                    SHM,
                    FAIL,
                    f"{SHM} is {_gib(shm.get('total') or 0)}, the server (--ipc=host) needs {_gib(want)}",
                    f"`mount -o remount,size={int(want / GIB) + 1}G {SHM}` and make it permanent in /etc/fstab",
                )
            )
    return checks


def _announced_mount_check(name, path, state, announced):
    """A path under a mount the inventory announces (datacrunch_local_disk, datacrunch_shared_mount) must lie on that
    mount: when the drive is not mounted, the files would silently fill the filesystem below it (the OS disk)."""
    candidates = [str(mount).rstrip("/") for mount in announced or [] if str(mount).startswith("/")]
    expected = max((mount for mount in candidates if path == mount or path.startswith(mount + "/")), key=len,
                   default="")
    if not expected or not state or state.get("error") or state.get("mount") == expected:
        return None
    return _check(
        f"disk {name}",
        FAIL,
        f"{path} would be on {state.get('mount') or '?'}, not on {expected}, the volume the inventory announces "
        f"(datacrunch_local_disk / datacrunch_shared_mount): {expected} is not mounted",
        f"mount the volume at {expected} (see `findmnt {expected}`), or set sglang_hf_home / sglang_cache_dir to a "
        "path on a mounted volume",
    )


def _port_check(facts, port, label, fix_var):
    state = (facts.get("ports") or {}).get(str(port))
    if state is None:
        return _check(label, SKIP, f"port {port} not gathered")
    if state.get("free"):
        return _check(label, PASS, f"port {port} free")
    foreign = [listener for listener in state.get("listeners") or [] if not listener.get("ours")]
    if not foreign:
        names = sorted({(listener.get("container") or {}).get("name", "?") for listener in state["listeners"]})
        return _check(label, PASS, f"port {port} held by our server ({', '.join(names)})")
    holder = foreign[0]
    container = holder.get("container") or {}
    who = f"pid {holder.get('pid')} ({holder.get('name') or '?'})" if holder.get("pid") else "an unknown process"
    if container:
        who += f" in container {container.get('name')}"
    if not holder.get("pid"):
        who += f" (`ss -ltnp 'sport = :{port}'` names it)"
    # Never suggest stopping what is not ours: the holder may be sshd, a database or another team's server.
    return _check(
        label,
        FAIL,
        f"port {port} is taken by {who} on {holder.get('address')}, not by a datacrunch.sglang container",
        f"set {fix_var} to a port nothing on the host listens on",
    )


def _network_checks(facts, req):
    checks = [_port_check(facts, req.get("port"), "serving port", "sglang_port")] if req.get("port") else []
    network = facts.get("network") or {}
    addresses = [address for names in (network.get("interfaces") or {}).values() for address in names]
    wanted = req.get("private_ip") or ""
    if wanted and wanted not in addresses:
        checks.append(
            _check(
                "private address",
                FAIL,
                f"sglang_private_ip={wanted} is not an address of this host ({', '.join(addresses) or 'none'})",
                "set sglang_private_ip to one of the host's private addresses, or leave it empty to discover it",
            )
        )
    elif req.get("multi_node"):
        found = private_address(facts, wanted)
        if found["address"]:
            checks.append(_check("private address", PASS, f"{found['address']} on {found['interface']}"))
        else:
            checks.append(
                _check(
                    "private address",
                    FAIL,
                    "no private (RFC 1918) address on this host for the rendezvous and NCCL",
                    "set sglang_private_ip (DataCrunch Instant Clusters give workers private addresses)",
                )
            )
    if not req.get("multi_node"):
        return checks
    if req.get("rank") == 0:
        checks.append(_port_check(facts, req.get("rendezvous_port"), "rendezvous port", "sglang_server_dist_port"))
    result = facts.get("rendezvous") or {}
    if not result:
        checks.append(_check("rendezvous", SKIP, "not run"))
    elif result.get("mode") == "listen":
        peers = result.get("peers") or []
        want = int(req.get("peers") or 0)
        if result.get("in_use"):
            checks.append(_check("rendezvous", SKIP, f"port {result.get('port')} in use: peers test their reach"))
        elif len(peers) >= want:
            checks.append(_check("rendezvous", PASS, f"{len(peers)} of {want} peers reached port {result.get('port')}"))
        else:
            checks.append(
                _check(
                    "rendezvous",
                    FAIL,
                    f"only {len(peers)} of {want} peers reached port {result.get('port')} "
                    f"({', '.join(peers) or 'none'})" + (f": {result.get('error')}" if result.get("error") else ""),
                    f"open TCP port {result.get('port')} (and NCCL's ports) between the nodes' private addresses "
                    "(ufw/iptables/security groups), and run the preflight with forks >= the cluster size",
                )
            )
    elif result.get("reached"):
        checks.append(_check("rendezvous", PASS, f"reached {result.get('host')}:{result.get('port')}"))
    else:
        checks.append(
            _check(
                "rendezvous",
                FAIL,
                f"cannot reach rank 0 at {result.get('host')}:{result.get('port')}: {result.get('error')}",
                "open the port between the nodes' private addresses (firewall, security group) and check that "
                "sglang_private_ip of rank 0 is on the network the nodes share",
            )
        )
    active_ib = [device for device in facts.get("ib_devices") or [] if _active_ports(device)]
    if not active_ib:
        checks.append(
            _check(
                "infiniband",
                WARN,
                "no active InfiniBand/RoCE port: NCCL between nodes falls back to TCP sockets (slow)",
                "use hosts with an RDMA fabric (DataCrunch Instant Clusters) for multi-node tensor parallel",
            )
        )
    else:
        nccl = nccl_ib.settings(_published_ib_devices(facts))
        summary = ", ".join(device["name"] for device in active_ib)
        rendered = [
            "%s=%s" % (name, value)
            for name, value in (("NCCL_IB_HCA", nccl["hca"]), ("NCCL_IB_GID_INDEX", nccl["gid_index"]),
                                ("NCCL_IB_PKEY", nccl["pkey"]))
            if value
        ]
        summary += " (%s): %s" % (nccl["link_layer"] or "unknown link layer", " ".join(rendered) or "no NCCL_IB_*")
        if nccl["pkey_value"]:
            summary += " (partition %s)" % nccl["pkey_value"]
        if nccl["notes"]:
            checks.append(_check("infiniband", WARN, summary, "; ".join(nccl["notes"])))
        else:
            checks.append(_check("infiniband", PASS, summary))
    unit = {host: _published_ib_devices({"ib_devices": devices})
            for host, devices in (req.get("unit_ib_devices") or {}).items()}
    if len(unit) > 1:
        mismatch = nccl_ib.partition_mismatch(unit, req.get("cluster") or "")
        if mismatch:
            checks.append(_check("infiniband partition", FAIL, mismatch, nccl_ib.PARTITION_FIX))
        elif nccl_ib.infiniband_devices(_published_ib_devices(facts)):
            held = nccl_ib.partitions(_published_ib_devices(facts))
            checks.append(
                _check("infiniband partition", PASS, "every host of the unit holds %s" % ("/".join(held) or "none"))
            )
    return checks


def _published_ib_devices(facts):
    """Active RDMA devices as sglang_gpu publishes them (what the launch reads)."""
    devices = []
    for device in facts.get("ib_devices") or []:
        active = _active_ports(device)
        if active:
            devices.append(
                {
                    "name": device["name"],
                    "link_layer": active[0].get("link_layer", ""),
                    "rate": active[0].get("rate", ""),
                    "netdevs": device.get("netdevs") or [],
                    "pkeys": active[0].get("pkeys") or [],
                }
            )
    return devices


def _active_ports(device):
    return [port for port in device.get("ports") or [] if str(port.get("state", "")).upper() == "ACTIVE"]


def _fabric_check(fabric):
    if not fabric:
        return _check("fabric", SKIP, "all-reduce test not asked (gpu_host_fabric_test: false)")
    if fabric.get("visible_gpus") is not None and fabric["visible_gpus"] < 2:
        return _check("fabric", SKIP, f"{fabric['visible_gpus']} GPU visible: no all-reduce to measure")
    if fabric.get("error"):
        return _check(
            "fabric",
            FAIL,
            f"all-reduce test failed: {fabric['error']}",
            "run it by hand to see NCCL's error: NCCL_DEBUG=INFO",
        )
    busbw = float(fabric.get("busbw_gbps") or 0)
    threshold = float(fabric.get("min_busbw_gbps") or 0)
    size = fabric.get("size_bytes") or 0
    label = (
        f"all-reduce over {fabric.get('gpus')} GPUs: bus bandwidth {busbw:.0f} GB/s at {_gib(size)}"
        f" (threshold {threshold:.0f} GB/s)"
    )
    if busbw >= threshold:
        return _check("fabric", PASS, label)
    return _check(
        "fabric",
        DEGRADED,
        label + ": node degraded",
        "check `nvidia-smi nvlink -s` and `nvidia-smi topo -m`, the fabric manager, GPU clocks and throttling "
        "(`nvidia-smi -q -d PERFORMANCE`); replace the node if it stays slow",
    )


def private_address(facts, preferred=""):
    """The address for rendezvous and NCCL: sglang_private_ip when set, else the host's first private address."""
    network = facts.get("network") or {}
    interfaces = network.get("interfaces") or {}
    if preferred:
        for name, addresses in interfaces.items():
            if preferred in addresses:
                return {"address": preferred, "interface": name}
        return {"address": preferred, "interface": ""}
    for candidate in network.get("private_addresses") or []:
        if is_private_address(candidate.get("address")):
            return {"address": candidate["address"], "interface": candidate.get("interface", "")}
    return {"address": "", "interface": ""}


def sglang_gpu(facts, preferred_ip=""):
    """The fact the launch reads: count, model, driver, CUDA, memory, UUIDs, NVLink, IB, interfaces, private IP."""
    gpu = facts.get("gpu") or {}
    gpus = gpu.get("gpus") or []
    names = [device.get("name", "") for device in gpus]
    model = max(set(names), key=names.count) if names else ""
    address = private_address(facts, preferred_ip)
    ib_devices = _published_ib_devices(facts)
    return {
        "count": len(gpus),
        "model": model,
        "driver": gpu.get("driver_version", ""),
        "cuda": gpu.get("cuda_version", ""),
        "memory_mib": min((device.get("memory_total_mib") or 0 for device in gpus), default=0),
        "uuids": [device.get("uuid", "") for device in gpus],
        "bus_ids": [device.get("bus_id", "") for device in gpus],
        "nvlink_all_pairs": bool((gpu.get("nvlink") or {}).get("all_pairs_joined")) if len(gpus) > 1 else True,
        "ib_devices": ib_devices,
        "nccl_ib": nccl_ib.settings(ib_devices),
        "interfaces": (facts.get("network") or {}).get("interfaces") or {},
        "private_ip": address["address"],
        "private_interface": address["interface"],
    }


def evaluate(facts, req):
    """All checks for one host: ``{checks, failed, degraded, counts}``."""
    gpu_checks, gpu_ok = _gpu_checks(facts.get("gpu") or {}, req)
    checks = list(gpu_checks)
    if req.get("docker_required", True):
        checks += _docker_checks(facts, req, gpu_ok)
    checks += _storage_checks(facts, req)
    checks += _network_checks(facts, req)
    checks.append(_fabric_check(req.get("fabric")))
    counts = {}
    for check in checks:
        counts[check["status"]] = counts.get(check["status"], 0) + 1
    return {
        "checks": checks,
        "failed": counts.get(FAIL, 0) > 0,
        "degraded": counts.get(DEGRADED, 0) > 0,
        "counts": counts,
    }


def render_table(host, result):
    """One table per host: status, check, what was found; the fix under each failing line."""
    lines = [f"{host}: " + ", ".join(f"{count} {status}" for status, count in sorted(result["counts"].items()))]
    name_width = max((len(check["name"]) for check in result["checks"]), default=10)
    for check in result["checks"]:
        lines.append(f"  {check['status'].upper():8} {check['name']:{name_width}}  {check['summary']}")
        if check["fix"] and check["status"] in (FAIL, WARN, DEGRADED):
            lines.append(f"  {'':8} {'':{name_width}}  fix: {check['fix']}")
    return lines
