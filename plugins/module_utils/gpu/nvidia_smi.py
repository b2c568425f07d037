# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read what ``nvidia-smi`` says about a host's GPUs.

Three outputs are parsed:

* ``nvidia-smi -q -x``: the XML report (driver, CUDA, every GPU's identity, memory, modes, ECC, retired pages,
  remapped rows, MIG, processes). It is the most stable format nvidia-smi offers.
* ``nvidia-smi topo -m``: the connection matrix; ``NV<n>`` cells say two GPUs are joined by ``n`` NVLinks.
* ``nvidia-smi nvlink -s``: the state and speed of every NVLink of every GPU (``<inactive>`` for a link down).

The parsers are pure functions of text, so they are tested on outputs captured on real hosts. ``collect`` runs the
commands on a host. Standard library only: this code runs on hosts, under the system Python too.
"""

from __future__ import annotations

import re
import shutil
import xml.etree.ElementTree as ET

from ansible_collections.datacrunch.sglang.plugins.module_utils.common import host_command

# Where nvidia-smi lives when PATH is minimal (e.g. a login-less Ansible connection).
NVIDIA_SMI_DIRS = ("/usr/bin", "/usr/local/bin", "/usr/local/nvidia/bin", "/usr/sbin", "/bin", "/opt/nvidia/bin")

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


class NvidiaSmiError(Exception):
    """nvidia-smi printed something this parser cannot read."""


def _text(node, path, default=None):
    """Text of a child element, stripped; None for absent, empty, 'N/A' or '[N/A]'."""
    if node is None:
        return default
    child = node.find(path)
    if child is None or child.text is None:
        return default
    value = child.text.strip()
    if value in ("", "N/A", "[N/A]", "Not Supported", "[Not Supported]", "Unknown Error", "None"):
        return default
    return value


def _int(value):
    """First integer in a value such as '143771 MiB' or '0'; None when there is none."""
    if value is None:
        return None
    match = _NUMBER.search(value)
    if not match:
        return None
    return int(float(match.group(0)))


def _enabled(value):
    """'Enabled'/'Disabled' (and 'Yes'/'No') as a bool; None when not reported."""
    if value is None:
        return None
    lowered = value.strip().lower()
    if lowered in ("enabled", "yes", "on", "active"):
        return True
    if lowered in ("disabled", "no", "off", "not active", "inactive"):
        return False
    return None


def _sum_uncorrectable(node):
    """Uncorrected ECC errors of one counter group (volatile or aggregate), across driver generations.

    R580 reports sram_uncorrectable_parity, sram_uncorrectable_secded and dram_uncorrectable; older drivers report
    sram_uncorrectable/dram_uncorrectable, or double_bit/total. Counters that are not numbers are skipped.
    """
    if node is None:
        return None
    total = 0
    seen = False
    for child in node:
        tag = child.tag.lower()
        if "uncorrectable" in tag:
            number = _int(child.text.strip() if child.text else None)
            if number is not None:
                total += number
                seen = True
    if not seen:
        double_bit = node.find("double_bit")
        if double_bit is not None:
            number = _int(_text(double_bit, "total"))
            if number is not None:
                return number
        return None
    return total


def _processes(gpu_node):
    processes = []
    for info in gpu_node.findall("processes/process_info"):
        pid = _int(_text(info, "pid"))
        if pid is None:
            continue
        processes.append(
            {
                "pid": pid,
                "name": _text(info, "process_name", ""),
                "type": _text(info, "type", ""),
                "used_memory_mib": _int(_text(info, "used_memory")) or 0,
                "gpu_instance_id": _int(_text(info, "gpu_instance_id")),
                "compute_instance_id": _int(_text(info, "compute_instance_id")),
            }
        )
    return processes


def _mig_devices(gpu_node):
    container = gpu_node.find("mig_devices")
    if container is None:
        return 0
    return len(container.findall("mig_device"))


def _retired_pages(gpu_node):
    node = gpu_node.find("retired_pages")
    if node is None:
        return {"count": None, "pending": None}
    count = None
    for group in ("multiple_single_bit_retirement", "double_bit_retirement"):
        number = _int(_text(node, group + "/retired_count"))
        if number is not None:
            count = (count or 0) + number
    pending = _enabled(_text(node, "pending_retirement"))
    if pending is None:
        pending = _enabled(_text(node, "pending_blacklist"))
    return {"count": count, "pending": pending}


def _remapped_rows(gpu_node):
    node = gpu_node.find("remapped_rows")
    if node is None:
        return {"correctable": None, "uncorrectable": None, "pending": None, "failure": None}
    return {
        "correctable": _int(_text(node, "remapped_row_corr")),
        "uncorrectable": _int(_text(node, "remapped_row_unc")),
        "pending": _enabled(_text(node, "remapped_row_pending")),
        "failure": _enabled(_text(node, "remapped_row_failure")),
    }


def _gpu(index, node):
    ecc = node.find("ecc_errors")
    return {
        "index": index,
        "name": _text(node, "product_name", ""),
        "architecture": _text(node, "product_architecture", ""),
        "uuid": _text(node, "uuid", ""),
        "serial": _text(node, "serial", ""),
        "bus_id": _text(node, "pci/pci_bus_id") or node.get("id", ""),
        "minor_number": _int(_text(node, "minor_number")),
        "vbios_version": _text(node, "vbios_version", ""),
        "memory_total_mib": _int(_text(node, "fb_memory_usage/total")),
        "memory_reserved_mib": _int(_text(node, "fb_memory_usage/reserved")),
        "memory_used_mib": _int(_text(node, "fb_memory_usage/used")),
        "memory_free_mib": _int(_text(node, "fb_memory_usage/free")),
        "persistence_mode": _enabled(_text(node, "persistence_mode")),
        "compute_mode": _text(node, "compute_mode", ""),
        "mig_mode": _enabled(_text(node, "mig_mode/current_mig")),
        "mig_mode_pending": _enabled(_text(node, "mig_mode/pending_mig")),
        "mig_devices": _mig_devices(node),
        "ecc_mode": _enabled(_text(node, "ecc_mode/current_ecc")),
        "ecc_mode_pending": _enabled(_text(node, "ecc_mode/pending_ecc")),
        "ecc_uncorrected_volatile": _sum_uncorrectable(ecc.find("volatile") if ecc is not None else None),
        "ecc_uncorrected_aggregate": _sum_uncorrectable(ecc.find("aggregate") if ecc is not None else None),
        "retired_pages": _retired_pages(node),
        "remapped_rows": _remapped_rows(node),
        "fabric_state": _text(node, "fabric/state", ""),
        "fabric_status": _text(node, "fabric/status", ""),
        "temperature_c": _int(_text(node, "temperature/gpu_temp")),
        "power_limit_w": _int(_text(node, "gpu_power_readings/current_power_limit")),
        "processes": _processes(node),
    }


def parse_query_xml(text):
    """Parse ``nvidia-smi -q -x``.

    Returns ``{driver_version, cuda_version, attached_gpus, gpus: [...]}``; GPUs are in the report's order, which
    is nvidia-smi's index order (PCI bus order).
    """
    if not text or not text.strip():
        raise NvidiaSmiError("nvidia-smi -q -x printed nothing")
    # The report names an external DTD; ElementTree never fetches it.
    try:
        root = ET.fromstring(text)  # noqa: S314 - the local nvidia-smi's own report
    except ET.ParseError as exc:
        raise NvidiaSmiError(f"nvidia-smi -q -x printed XML that does not parse: {exc}") from exc
    if root.tag != "nvidia_smi_log":
        raise NvidiaSmiError(f"nvidia-smi -q -x printed <{root.tag}>, expected <nvidia_smi_log>")
    gpus = [_gpu(index, node) for index, node in enumerate(root.findall("gpu"))]
    return {
        "driver_version": _text(root, "driver_version", ""),
        "cuda_version": _text(root, "cuda_version", ""),
        "attached_gpus": _int(_text(root, "attached_gpus")),
        "gpus": gpus,
    }


def parse_topology(text):
    """Parse ``nvidia-smi topo -m`` into ``{devices: [...], matrix: {a: {b: cell}}}``.

    Devices are the column labels (GPU0.., NIC0..). Cells keep nvidia-smi's words: X, NV18, SYS, NODE, PHB, PXB,
    PIX. The ANSI underline nvidia-smi puts around the header is removed.
    """
    devices = []
    matrix = {}
    for raw in (text or "").splitlines():
        line = _ANSI.sub("", raw)
        if not line.strip():
            if devices and matrix:
                break
            continue
        tokens = line.split()
        if not devices:
            labels = []
            for token in tokens:
                if re.fullmatch(r"(GPU|NIC|NVS|MLX)\w*\d+", token) or re.fullmatch(r"mlx\d+_\d+", token):
                    labels.append(token)
                else:
                    break
            if labels and labels[0].startswith("GPU"):
                devices = labels
            continue
        if tokens and tokens[0] in devices:
            cells = tokens[1 : 1 + len(devices)]
            if len(cells) < len(devices):
                raise NvidiaSmiError(
                    f"nvidia-smi topo -m row {tokens[0]!r} has {len(cells)} cells for {len(devices)} devices"
                )
            matrix[tokens[0]] = dict(zip(devices, cells, strict=False))
        elif tokens and tokens[0] == "Legend:":
            break
    if not devices:
        raise NvidiaSmiError("nvidia-smi topo -m printed no GPU header")
    return {"devices": devices, "matrix": matrix}


def nvlink_pairs(topology):
    """Every pair of GPUs with the number of NVLinks joining them (0: not joined by NVLink)."""
    gpus = [device for device in topology["devices"] if device.startswith("GPU")]
    pairs = []
    for position, first in enumerate(gpus):
        for second in gpus[position + 1 :]:
            cell = topology["matrix"].get(first, {}).get(second, "")
            match = re.fullmatch(r"NV(\d+)", cell)
            pairs.append(
                {
                    "gpus": [int(first[3:]), int(second[3:])],
                    "link": cell,
                    "nvlinks": int(match.group(1)) if match else 0,
                }
            )
    return pairs


def parse_nvlink_status(text):
    """Parse ``nvidia-smi nvlink -s`` into ``{gpu_index: {uuid, links: [{link, active, speed_gbps}]}}``."""
    result = {}
    current = None
    for raw in (text or "").splitlines():
        line = raw.strip()
        header = re.match(r"GPU (\d+): (.*?)(?: \(UUID: ([^)]+)\))?$", line)
        if header:
            current = {"name": header.group(2), "uuid": header.group(3) or "", "links": [], "all_inactive": False}
            result[int(header.group(1))] = current
            continue
        if current is None:
            continue
        link = re.match(r"Link (\d+): (.*)$", line)
        if link:
            value = link.group(2).strip()
            inactive = "inactive" in value.lower()
            speed = None if inactive else _NUMBER.search(value)
            current["links"].append(
                {
                    "link": int(link.group(1)),
                    "active": not inactive,
                    "speed_gbps": float(speed.group(0)) if speed else None,
                }
            )
        elif "inactive" in line.lower():
            current["all_inactive"] = True
    return result


def summarize_nvlink(topology, status, gpu_count):
    """NVLink facts: pairs, whether every GPU pair is joined, and per-GPU link state (keyed by str(index))."""
    pairs = nvlink_pairs(topology) if topology else []
    links = {}
    for index in range(gpu_count):
        entry = (status or {}).get(index)
        if entry is None:
            links[str(index)] = {"total": 0, "active": 0, "inactive": [], "speed_gbps": None, "reported": False}
            continue
        active = [link for link in entry["links"] if link["active"]]
        speeds = sorted({link["speed_gbps"] for link in active if link["speed_gbps"] is not None})
        links[str(index)] = {
            "total": len(entry["links"]),
            "active": len(active),
            "inactive": [link["link"] for link in entry["links"] if not link["active"]],
            "speed_gbps": speeds[0] if len(speeds) == 1 else speeds or None,
            "reported": True,
        }
    return {
        "pairs": pairs,
        "all_pairs_joined": bool(topology) and all(pair["nvlinks"] > 0 for pair in pairs),
        "links": links,
    }


def find_nvidia_smi(path="nvidia-smi"):
    """The nvidia-smi executable, looked up on PATH and in the usual driver directories; None when absent."""
    if "/" in path:
        return path if shutil.which(path) else None
    found = shutil.which(path)
    if found:
        return found
    return shutil.which(path, path=":".join(NVIDIA_SMI_DIRS))


def _run(argv, timeout):
    completed, error = host_command.run(argv, timeout)
    if completed is None:
        return None, error
    if completed.returncode != 0:
        message = (completed.stdout.strip() + "\n" + completed.stderr.strip()).strip()
        return None, f"exit {completed.returncode}: {message.splitlines()[0] if message else 'no output'}"
    return completed.stdout, None


def collect(path="nvidia-smi", timeout=60):
    """Run nvidia-smi on this host and return the GPU facts.

    Never raises: a missing nvidia-smi or a failing driver is reported in ``present``/``error`` so that the
    preflight can say what is wrong. A hung GPU can make nvidia-smi hang: every call has a timeout.
    """
    executable = find_nvidia_smi(path)
    facts = {
        "present": executable is not None,
        "path": executable or "",
        "ok": False,
        "error": "",
        "driver_version": "",
        "cuda_version": "",
        "count": 0,
        "gpus": [],
        "nvlink": {"pairs": [], "all_pairs_joined": False, "links": {}},
        "nvlink_error": "",
        "topology": {},
    }
    if executable is None:
        facts["error"] = "nvidia-smi not found (looked on PATH and in {})".format(", ".join(NVIDIA_SMI_DIRS))
        return facts
    xml_text, error = _run([executable, "-q", "-x"], timeout)
    if error:
        facts["error"] = f"nvidia-smi -q -x failed: {error}"
        return facts
    try:
        report = parse_query_xml(xml_text)
    except NvidiaSmiError as exc:
        facts["error"] = str(exc)
        return facts
    facts.update(
        ok=True,
        driver_version=report["driver_version"],
        cuda_version=report["cuda_version"],
        count=len(report["gpus"]),
        gpus=report["gpus"],
    )
    topology = status = None
    problems = []
    if facts["count"] > 0:
        topo_text, error = _run([executable, "topo", "-m"], timeout)
        if error:
            problems.append(f"nvidia-smi topo -m failed: {error}")
        else:
            try:
                topology = parse_topology(topo_text)
            except NvidiaSmiError as exc:
                problems.append(str(exc))
        status_text, error = _run([executable, "nvlink", "-s"], timeout)
        if error:
            problems.append(f"nvidia-smi nvlink -s failed: {error}")
        else:
            status = parse_nvlink_status(status_text)
    facts["topology"] = topology["matrix"] if topology else {}
    facts["nvlink"] = summarize_nvlink(topology, status, facts["count"])
    facts["nvlink_error"] = "; ".join(problems)
    return facts
