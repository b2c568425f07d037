#!/usr/bin/env python3
"""Stand-in for ``nvidia-smi`` in the lab's simulated DataCrunch 8x H200 hosts. It is not NVIDIA's tool.

It replays output captured on a real 4x H200 host (``fixtures/``), widened to the GPU count of a state file and
changed only where the state says so. The state is a JSON file in the host (``STATE_PATH``); the lab's fault tool
writes it, and ``nvidia-smi -pm 1`` changes it as the real tool changes the GPUs. Missing keys take the values of a
healthy 8x H200 host.

Forms: plain, ``-L``, ``-q``, ``-q -x``, ``topo -m``, ``nvlink -s``, ``--query-gpu=F,.. --format=csv[,noheader]
[,nounits]``, ``--query-compute-apps=F,.. --format=csv[..]``, ``-pm 0|1``, ``--version``, with ``-i`` selecting
GPUs. Anything else exits 2 as nvidia-smi does.

Standard library only: the lab's GPU hook copies this file into containers started with ``--gpus``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
from xml.sax.saxutils import escape

STATE_PATH = os.environ.get("LAB_GPU_STATE", "/var/lib/datacrunch-sglang-lab/gpu-state.json")
FIXTURES_DIR = os.environ.get("LAB_GPU_FIXTURES", "/usr/share/datacrunch-sglang-lab/nvidia")

# A healthy DataCrunch 8x H200 host with the captured host's driver.
DEFAULT_STATE = {
    "gpu_count": 8,
    "model": "NVIDIA H200",
    "driver_version": "580.159.04",
    "cuda_version": "13.0",
    "persistence_mode": True,
    # GPU index (as a string, JSON keys are strings) -> uncorrectable ECC errors since boot.
    "ecc_uncorrected": {},
    # GPU indices with pages (rows, on Hopper) waiting to be retired: they need a GPU reset.
    "retired_pages_pending": [],
    "mig_enabled": [],
    # {"gpu": index, "pid": n, "name": "...", "used_memory_mib": n}; entries whose pid is gone are not shown.
    "processes": [],
    # GPU indices whose 18 NVLinks are all inactive.
    "nvlink_down": [],
    # "" keeps GPUs 0-3 as captured; any other value derives per-host UUIDs and serials from it.
    "identity_seed": "",
    # Set by the GPU hook in a container: the host's GPU indices the container sees, in order.
    "visible": None,
    # Set by the GPU hook in a container: the processes belong to the host and are not listed.
    "processes_foreign": False,
}

LINKS_PER_GPU = 18
LINK_SPEED = "26.562 GB/s"
# Module ids as a HGX baseboard numbers its 8 GPUs; the first four are the captured ones.
MODULE_IDS = [6, 8, 5, 7, 2, 4, 1, 3]
INVALID = "Invalid combination of input arguments. Please run 'nvidia-smi -h' for help.\n"


class StandinError(Exception):
    """A condition nvidia-smi reports with a message and an exit code."""

    def __init__(self, message, code=2):
        super().__init__(message)
        self.code = code


# ---------------------------------------------------------------------------------------------------------------
# State
# ---------------------------------------------------------------------------------------------------------------


def load_state(path=STATE_PATH):
    state = dict(DEFAULT_STATE)
    try:
        with open(path, encoding="utf-8") as handle:
            stored = json.load(handle)
    except FileNotFoundError:
        return state
    except (OSError, ValueError) as error:
        raise StandinError(f"nvidia-smi stand-in: cannot read its state file {path}: {error}\n", 9) from error
    if not isinstance(stored, dict):
        raise StandinError(f"nvidia-smi stand-in: state file {path} must hold a JSON object\n", 9)
    state.update(stored)
    return state


def read_stored_state(path=STATE_PATH):
    """The state file's own keys, without defaults; {} when there is none."""
    try:
        with open(path, encoding="utf-8") as handle:
            stored = json.load(handle)
    except FileNotFoundError:
        return {}
    return stored if isinstance(stored, dict) else {}


def save_state(state, path=STATE_PATH):
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    temporary = f"{path}.tmp.{os.getpid()}"
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(state, handle, indent=2, sort_keys=True)
        handle.write("\n")
    os.replace(temporary, path)


def _pid_alive(pid):
    return os.path.exists(f"/proc/{int(pid)}")


class Gpu:
    """One GPU as this host (or container) sees it: identity from the index on the host, faults from the state."""

    def __init__(self, state, index, physical):
        self.index = index
        self.physical = physical
        self.template = physical % 4
        seed = str(state["identity_seed"])
        self.model = state["model"]
        self.bus_device = 6 + physical
        self.bus_id = f"00000000:00:{self.bus_device:02X}.0"
        self.minor = physical
        self.board_id = f"0x{self.bus_device:x}"
        self.module_id = MODULE_IDS[physical] if physical < len(MODULE_IDS) else physical + 1
        digest = hashlib.sha256(f"{seed}/{physical}".encode()).hexdigest()
        self.uuid = f"GPU-{digest[0:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"
        self.serial = f"16540240{int(digest[32:40], 16) % 100000:05d}"
        self.pdi = f"0x{digest[40:56]}"
        if not seed and physical < 4:
            captured = _captured_identity()[physical]
            self.uuid, self.serial, self.pdi = captured["uuid"], captured["serial"], captured["pdi"]
        self.persistence = bool(state["persistence_mode"])
        self.mig = physical in _indices(state["mig_enabled"])
        self.ecc_uncorrected = int(dict(state["ecc_uncorrected"]).get(str(physical), 0))
        self.retired_pending = physical in _indices(state["retired_pages_pending"])
        self.nvlink_down = physical in _indices(state["nvlink_down"])
        self.processes = [
            process
            for process in state["processes"]
            if int(process.get("gpu", -1)) == physical and (state["processes_foreign"] or _pid_alive(process["pid"]))
        ]
        self.show_processes = not state["processes_foreign"]
        self.used_mib = sum(int(process.get("used_memory_mib", 0)) for process in self.processes)
        self.total_mib = 143771
        self.reserved_mib = 616
        self.free_mib = 143156 - self.used_mib


def _indices(values):
    return {int(value) for value in values or []}


def gpus_of(state, selection=None):
    count = int(state["gpu_count"])
    physical = list(range(count)) if state.get("visible") is None else [int(i) for i in state["visible"]]
    gpus = [Gpu(state, index, phys) for index, phys in enumerate(physical)]
    if selection is not None:
        gpus = [gpus[i] for i in selection]
    return gpus


# ---------------------------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------------------------

_FIXTURE_CACHE = {}


def fixture(name):
    if name not in _FIXTURE_CACHE:
        with open(os.path.join(FIXTURES_DIR, name), encoding="utf-8") as handle:
            _FIXTURE_CACHE[name] = handle.read()
    return _FIXTURE_CACHE[name]


def _captured_identity():
    xml = fixture("nvidia-smi-q.xml")
    return [
        {
            "uuid": re.search(r"<uuid>(.*?)</uuid>", block).group(1),
            "serial": re.search(r"<serial>(.*?)</serial>", block).group(1),
            "pdi": re.search(r"<pdi>(.*?)</pdi>", block).group(1),
        }
        for block in _xml_gpu_blocks(xml)[1]
    ]


def _xml_gpu_blocks(xml):
    """Split the captured XML into (head, [gpu blocks], tail); blocks start at '\\t<gpu ' and end after '</gpu>'."""
    starts = [match.start() for match in re.finditer(r"^\t<gpu id=", xml, re.MULTILINE)]
    ends = [match.end() for match in re.finditer(r"^\t</gpu>\n", xml, re.MULTILINE)]
    blocks = [xml[start:end] for start, end in zip(starts, ends, strict=True)]
    return xml[: starts[0]], blocks, xml[ends[-1] :]


def _text_gpu_blocks(text):
    starts = [match.start() for match in re.finditer(r"^GPU [0-9A-F]{8}:", text, re.MULTILINE)]
    blocks = [text[start : (starts[i + 1] if i + 1 < len(starts) else len(text))] for i, start in enumerate(starts)]
    return text[: starts[0]], blocks


def timestamp():
    return time.strftime("%a %b %d %H:%M:%S %Y")


# ---------------------------------------------------------------------------------------------------------------
# Plain, -L, topo -m, nvlink -s
# ---------------------------------------------------------------------------------------------------------------


def render_plain(state, gpus):
    lines = fixture("nvidia-smi.txt").split("\n")
    head = lines[1:8]
    driver, cuda = state["driver_version"], state["cuda_version"]
    head[1] = f"| NVIDIA-SMI {driver:<23}Driver Version: {driver:<15}CUDA Version: {cuda:<9}|"
    captured = [lines[8 + 4 * i : 12 + 4 * i] for i in range(4)]
    out = [f"{timestamp()}       ", *head]
    for gpu in gpus:
        _first, second, _third, separator = captured[gpu.template]
        temp, perf, power, cap = re.match(r"\|\s*\S+\s+(\S+)\s+(\S+)\s+(\S+)\s*/\s*(\S+)", second).groups()
        utilization = "N/A" if gpu.mig else re.search(r"(\S+)\s+\S+\s+\|$", second).group(1)
        persistence = "On" if gpu.persistence else "Off"
        ecc = gpu.ecc_uncorrected
        out.append(f"|{gpu.index:>4}  {gpu.model:<31}{persistence:<3} |{gpu.bus_id:>19} Off |{ecc:>21} |")
        memory = f"{gpu.used_mib}MiB"
        out.append(
            f"|{'N/A':>4}{temp:>6}{perf:>6}{power:>16} / {cap:>5} |{memory:>11} / {gpu.total_mib}MiB |"
            f"{utilization:>8}{'Default':>13} |"
        )
        out.append(f"|{'':41}|{'':24}|{'Enabled' if gpu.mig else 'Disabled':>21} |")
        out.append(separator)
    out.append("")
    out.extend(lines[25:30])
    rows = [process for gpu in gpus if gpu.show_processes for process in _with_gpu(gpu)]
    if not rows:
        out.append(lines[30])
    for gpu, process in rows:
        name = str(process.get("name", ""))
        name = name if len(name) <= 35 else "..." + name[-32:]
        memory = f"{int(process.get('used_memory_mib', 0))}MiB"
        out.append(f"|{gpu.index:>5}{'N/A':>5}{'N/A':>5}{process['pid']:>17}{'C':>7}   {name:<35}{memory:>11} |")
    out.append(lines[31])
    return "\n".join(out) + "\n"


def _with_gpu(gpu):
    return [(gpu, process) for process in gpu.processes]


def render_list(gpus):
    return "".join(f"GPU {gpu.index}: {gpu.model} (UUID: {gpu.uuid})\n" for gpu in gpus)


def render_topology(gpus):
    captured = fixture("nvidia-smi-topo-m.txt").split("\n")
    rows = captured[1:5]
    legend = "\n".join(captured[5:])
    names = "\t".join(f"GPU{gpu.index}" for gpu in gpus)
    out = [f"\t\x1b[4m{names}\tCPU Affinity\tNUMA Affinity\tGPU NUMA ID\x1b[0m"]
    for gpu in gpus:
        cells = []
        for peer in gpus:
            if peer is gpu:
                cells.append(" X ")
            elif gpu.nvlink_down or peer.nvlink_down:
                cells.append("SYS")
            else:
                cells.append(f"NV{LINKS_PER_GPU}")
        # The captured row: name, 4 matrix cells, then CPU affinity, NUMA affinity, GPU NUMA ID.
        affinity = rows[gpu.template].split("\t")[5:]
        out.append("\t".join([f"GPU{gpu.index}", *cells, *affinity]))
    return "\n".join(out) + "\n" + legend


def render_nvlink_status(gpus):
    out = []
    for gpu in gpus:
        out.append(f"GPU {gpu.index}: {gpu.model} (UUID: {gpu.uuid})")
        speed = "<inactive>" if gpu.nvlink_down else LINK_SPEED
        out.extend(f"\t Link {link}: {speed}" for link in range(LINKS_PER_GPU))
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------------------------
# -q -x and -q: the captured reports, changed by path where the state changes them
# ---------------------------------------------------------------------------------------------------------------

_XML_LEAF = re.compile(r"^(\s*)<(\w+)>(.*)</\2>$")
_XML_OPEN = re.compile(r"^\s*<(\w+)[ >]")


def _xml_set(block, values):
    """Replace leaf values addressed by their element path below <gpu> (e.g. ('fb_memory_usage', 'used'))."""
    path, out = [], []
    for line in block.split("\n"):
        stripped = line.strip()
        leaf = _XML_LEAF.match(line)
        if leaf:
            key = (*path[1:], leaf.group(2))
            if key in values:
                line = f"{leaf.group(1)}<{leaf.group(2)}>{escape(str(values[key]))}</{leaf.group(2)}>"
        elif stripped.startswith("</"):
            path.pop()
        elif _XML_OPEN.match(line) and not stripped.endswith("/>"):
            path.append(_XML_OPEN.match(line).group(1))
        out.append(line)
    return "\n".join(out)


def _dynamic_values(state, gpu):
    enabled = "Enabled" if gpu.mig else "Disabled"
    return {
        "product_name": gpu.model,
        "persistence_mode": "Enabled" if gpu.persistence else "Disabled",
        "mig": enabled,
        "serial": gpu.serial,
        "uuid": gpu.uuid,
        "pdi": gpu.pdi,
        "minor": gpu.minor,
        "board_id": gpu.board_id,
        "module_id": gpu.module_id,
        "gsp": state["driver_version"],
        "bus": gpu.bus_id,
        "device": f"{gpu.bus_device:02X}",
        "used": f"{gpu.used_mib} MiB",
        "free": f"{gpu.free_mib} MiB",
        "ecc": gpu.ecc_uncorrected,
        "pending": "Yes" if gpu.retired_pending else None,
        "remap_pending": "Yes" if gpu.retired_pending else "No",
    }


def render_xml(state, gpus):
    head, blocks, tail = _xml_gpu_blocks(fixture("nvidia-smi-q.xml"))
    head = re.sub(r"<timestamp>.*?</timestamp>", f"<timestamp>{timestamp()}</timestamp>", head)
    head = re.sub(r"<driver_version>.*?<", f"<driver_version>{state['driver_version']}<", head)
    head = re.sub(r"<cuda_version>.*?<", f"<cuda_version>{state['cuda_version']}<", head)
    head = re.sub(r"<attached_gpus>.*?<", f"<attached_gpus>{len(gpus)}<", head)
    out = []
    for gpu in gpus:
        value = _dynamic_values(state, gpu)
        changes = {
            ("product_name",): value["product_name"],
            ("persistence_mode",): value["persistence_mode"],
            ("mig_mode", "current_mig"): value["mig"],
            ("mig_mode", "pending_mig"): value["mig"],
            ("serial",): value["serial"],
            ("uuid",): value["uuid"],
            ("pdi",): value["pdi"],
            ("minor_number",): value["minor"],
            ("board_id",): value["board_id"],
            ("platformInfo", "module_id"): value["module_id"],
            ("gsp_firmware_version",): value["gsp"],
            ("pci", "pci_device"): value["device"],
            ("pci", "pci_bus_id"): value["bus"],
            ("fb_memory_usage", "used"): value["used"],
            ("fb_memory_usage", "free"): value["free"],
            ("ecc_errors", "volatile", "dram_uncorrectable"): value["ecc"],
            ("ecc_errors", "aggregate", "dram_uncorrectable"): value["ecc"],
            ("remapped_rows", "remapped_row_pending"): value["remap_pending"],
        }
        if gpu.mig:
            changes[("utilization", "gpu_util")] = "N/A"
            changes[("utilization", "memory_util")] = "N/A"
        if value["pending"]:
            changes[("retired_pages", "pending_blacklist")] = value["pending"]
            changes[("retired_pages", "pending_retirement")] = value["pending"]
        block = _xml_set(blocks[gpu.template], changes)
        block = re.sub(r'<gpu id="[^"]*">', f'<gpu id="{gpu.bus_id}">', block, count=1)
        if gpu.show_processes and gpu.processes:
            entries = "".join(
                "\t\t\t<process_info>\n"
                "\t\t\t\t<gpu_instance_id>N/A</gpu_instance_id>\n"
                "\t\t\t\t<compute_instance_id>N/A</compute_instance_id>\n"
                f"\t\t\t\t<pid>{int(process['pid'])}</pid>\n"
                "\t\t\t\t<type>C</type>\n"
                f"\t\t\t\t<process_name>{escape(str(process.get('name', '')))}</process_name>\n"
                f"\t\t\t\t<used_memory>{int(process.get('used_memory_mib', 0))} MiB</used_memory>\n"
                "\t\t\t</process_info>\n"
                for process in gpu.processes
            )
            block = block.replace("\t\t<processes>\n\t\t</processes>", f"\t\t<processes>\n{entries}\t\t</processes>")
        out.append(block)
    # The captured report separates GPUs with an empty line.
    return head + "\n".join(out) + tail


_TEXT_VALUE = re.compile(r"^(\s*)(\S.*?)(\s+: )(.*)$")


def _text_set(block, values):
    """Replace values of '-q' lines addressed by the labels of their sections (e.g. ('FB Memory Usage', 'Used'))."""
    path, out = [], []
    for line in block.split("\n"):
        if not line.strip():
            out.append(line)
            continue
        depth = (len(line) - len(line.lstrip(" "))) // 4
        del path[max(depth - 1, 0) :]
        match = _TEXT_VALUE.match(line)
        if match and depth > 0:
            key = (*path, match.group(2).strip())
            if key in values:
                line = f"{match.group(1)}{match.group(2)}{match.group(3)}{values[key]}"
        elif depth > 0:
            path.append(line.strip())
        out.append(line)
    return "\n".join(out)


def _text_line(depth, label, value):
    indent = "    " * depth
    return f"{indent}{label:<{55 - len(indent)}}: {value}"


def render_query_text(state, gpus):
    head, blocks = _text_gpu_blocks(fixture("nvidia-smi-q.txt"))
    head = re.sub(r"(Timestamp\s+: ).*", lambda m: m.group(1) + timestamp(), head)
    head = re.sub(r"(Driver Version\s+: ).*", lambda m: m.group(1) + state["driver_version"], head)
    head = re.sub(r"(CUDA Version\s+: ).*", lambda m: m.group(1) + state["cuda_version"], head)
    head = re.sub(r"(Attached GPUs\s+: ).*", lambda m: m.group(1) + str(len(gpus)), head)
    out = [head]
    for gpu in gpus:
        value = _dynamic_values(state, gpu)
        changes = {
            ("Product Name",): value["product_name"],
            ("Persistence Mode",): value["persistence_mode"],
            ("MIG Mode", "Current"): value["mig"],
            ("MIG Mode", "Pending"): value["mig"],
            ("Serial Number",): value["serial"],
            ("GPU UUID",): value["uuid"],
            ("GPU PDI",): value["pdi"],
            ("Minor Number",): value["minor"],
            ("Board ID",): value["board_id"],
            ("Platform Info", "Module Id"): value["module_id"],
            ("GSP Firmware Version",): value["gsp"],
            ("PCI", "Device"): f"0x{value['device']}",
            ("PCI", "Bus Id"): value["bus"],
            ("FB Memory Usage", "Used"): value["used"],
            ("FB Memory Usage", "Free"): value["free"],
            ("ECC Errors", "Volatile", "DRAM Uncorrectable"): value["ecc"],
            ("ECC Errors", "Aggregate", "DRAM Uncorrectable"): value["ecc"],
            ("Remapped Rows", "Pending"): value["remap_pending"],
        }
        if gpu.mig:
            changes[("Utilization", "GPU")] = "N/A"
            changes[("Utilization", "Memory")] = "N/A"
        if value["pending"]:
            changes[("Retired Pages", "Pending Page Blacklist")] = value["pending"]
        block = _text_set(blocks[gpu.template], changes)
        block = re.sub(r"^GPU \S+", f"GPU {gpu.bus_id}", block, count=1)
        if gpu.show_processes and gpu.processes:
            lines = [_text_line(1, "Processes", "").rstrip(": ").rstrip()]
            for process in gpu.processes:
                lines += [
                    _text_line(2, "GPU instance ID", "N/A"),
                    _text_line(2, "Compute instance ID", "N/A"),
                    _text_line(2, "Process ID", int(process["pid"])),
                    _text_line(3, "Type", "C"),
                    _text_line(3, "Name", process.get("name", "")),
                    _text_line(3, "Used GPU Memory", f"{int(process.get('used_memory_mib', 0))} MiB"),
                ]
            none = re.search(r"^    Processes\s+: None$", block, flags=re.MULTILINE)
            block = block[: none.start()] + "\n".join(lines) + block[none.end() :]
        out.append(block)
    return "".join(out)


# ---------------------------------------------------------------------------------------------------------------
# --query-gpu and --query-compute-apps
# ---------------------------------------------------------------------------------------------------------------


def _gpu_fields(state, gpu, count):
    """field -> (value, unit); unit None for fields printed without one."""
    ecc = gpu.ecc_uncorrected
    captured = fixture("nvidia-smi-query-gpu.csv").split("\n")[1 + gpu.template].split(", ")
    temperature = captured[13]
    return {
        "timestamp": (time.strftime("%Y/%m/%d %H:%M:%S.000"), None),
        "driver_version": (state["driver_version"], None),
        "count": (count, None),
        "index": (gpu.index, None),
        "name": (gpu.model, None),
        "serial": (gpu.serial, None),
        "uuid": (gpu.uuid, None),
        "pci.bus_id": (gpu.bus_id, None),
        "pci.domain": ("0x0000", None),
        "pci.bus": ("0x00", None),
        "pci.device": (f"0x{gpu.bus_device:02X}", None),
        "pci.device_id": ("0x233510DE", None),
        "pci.sub_device_id": ("0x18BF10DE", None),
        "pcie.link.gen.current": (5, None),
        "pcie.link.gen.max": (5, None),
        "pcie.link.width.current": (16, None),
        "pcie.link.width.max": (16, None),
        "vbios_version": ("96.00.A5.00.1A", None),
        "display_mode": ("Requested functionality has been deprecated", None),
        "display_active": ("Disabled", None),
        "persistence_mode": ("Enabled" if gpu.persistence else "Disabled", None),
        "accounting.mode": ("Disabled", None),
        "compute_mode": ("Default", None),
        "compute_cap": ("9.0", None),
        "pstate": ("P0", None),
        "fan.speed": ("[N/A]", "%"),
        "memory.total": (gpu.total_mib, "MiB"),
        "memory.reserved": (gpu.reserved_mib, "MiB"),
        "memory.used": (gpu.used_mib, "MiB"),
        "memory.free": (gpu.free_mib, "MiB"),
        "utilization.gpu": ("[N/A]" if gpu.mig else 0, "%"),
        "utilization.memory": ("[N/A]" if gpu.mig else 0, "%"),
        "ecc.mode.current": ("Enabled", None),
        "ecc.mode.pending": ("Enabled", None),
        "ecc.errors.corrected.volatile.total": (0, None),
        "ecc.errors.corrected.aggregate.total": (0, None),
        "ecc.errors.uncorrected.volatile.total": (ecc, None),
        "ecc.errors.uncorrected.aggregate.total": (ecc, None),
        "retired_pages.pending": ("Yes" if gpu.retired_pending else "[N/A]", None),
        "remapped_rows.pending": ("Yes" if gpu.retired_pending else "No", None),
        "remapped_rows.failure": ("No", None),
        "temperature.gpu": (temperature, None),
        "temperature.memory": (temperature, None),
        "power.draw": ("76.69", "W"),
        "power.limit": ("700.00", "W"),
        "power.default_limit": ("700.00", "W"),
        "power.max_limit": ("700.00", "W"),
        "enforced.power.limit": ("700.00", "W"),
        "clocks.sm": (345, "MHz"),
        "clocks.mem": (3201, "MHz"),
        "clocks.gr": (345, "MHz"),
        "clocks.max.sm": (1980, "MHz"),
        "clocks.max.memory": (3201, "MHz"),
        "clocks.max.graphics": (1980, "MHz"),
        "mig.mode.current": ("Enabled" if gpu.mig else "Disabled", None),
        "mig.mode.pending": ("Enabled" if gpu.mig else "Disabled", None),
    }


GPU_FIELD_ALIASES = {
    "gpu_name": "name",
    "gpu_serial": "serial",
    "gpu_uuid": "uuid",
    "gpu_bus_id": "pci.bus_id",
    "clocks.max.mem": "clocks.max.memory",
    "clocks.current.sm": "clocks.sm",
    "clocks.current.memory": "clocks.mem",
    "clocks.max.gr": "clocks.max.graphics",
}

APP_FIELD_ALIASES = {"used_memory": "used_gpu_memory", "name": "process_name", "gpu_name": "gpu_name"}


def _csv(rows, header, options):
    """rows: list of lists of (value, unit); header: names."""
    out = []
    if "noheader" not in options:
        out.append(", ".join(header))
    for row in rows:
        cells = []
        for value, unit in row:
            text = str(value)
            if unit and "nounits" not in options and not text.startswith("["):
                text = f"{text} {unit}"
            cells.append(text)
        out.append(", ".join(cells))
    return "".join(line + "\n" for line in out)


def _parse_format(value):
    options = [item.strip() for item in (value or "").split(",") if item.strip()]
    if not options or options[0] != "csv" or any(o not in ("csv", "noheader", "nounits") for o in options):
        raise StandinError(f'"{value}" is not a valid format.\n')
    return set(options)


def render_query_gpu(state, gpus, fields, options):
    names = [field.strip() for field in fields.split(",") if field.strip()]
    all_gpus = gpus
    header, rows = [], [[] for _gpu in all_gpus]
    for name in names:
        canonical = GPU_FIELD_ALIASES.get(name, name)
        sample = _gpu_fields(state, all_gpus[0], len(all_gpus))
        if canonical not in sample:
            raise StandinError(f'Field "{name}" is not a valid field to query.\n\n')
        unit = sample[canonical][1]
        header.append(f"{canonical} [{unit}]" if unit else canonical)
        for row, gpu in zip(rows, all_gpus, strict=True):
            row.append(_gpu_fields(state, gpu, len(all_gpus))[canonical])
    return _csv(rows, header, options)


def render_query_apps(state, gpus, fields, options):
    names = [field.strip() for field in fields.split(",") if field.strip()]
    known = ("pid", "process_name", "used_gpu_memory", "gpu_uuid", "gpu_bus_id", "gpu_name", "gpu_serial", "timestamp")
    header = []
    for name in names:
        canonical = APP_FIELD_ALIASES.get(name, name)
        if canonical not in known:
            raise StandinError(f'Field "{name}" is not a valid field to query.\n\n')
        header.append("used_gpu_memory [MiB]" if canonical == "used_gpu_memory" else canonical)
    rows = []
    for gpu in gpus:
        if not gpu.show_processes:
            continue
        for process in gpu.processes:
            values = {
                "pid": (int(process["pid"]), None),
                "process_name": (process.get("name", ""), None),
                "used_gpu_memory": (int(process.get("used_memory_mib", 0)), "MiB"),
                "gpu_uuid": (gpu.uuid, None),
                "gpu_bus_id": (gpu.bus_id, None),
                "gpu_name": (gpu.model, None),
                "gpu_serial": (gpu.serial, None),
                "timestamp": (time.strftime("%Y/%m/%d %H:%M:%S.000"), None),
            }
            rows.append([values[APP_FIELD_ALIASES.get(name, name)] for name in names])
    return _csv(rows, header, options)


# ---------------------------------------------------------------------------------------------------------------
# -pm, --version
# ---------------------------------------------------------------------------------------------------------------


def set_persistence(state, gpus, value, path):
    wanted = value.strip().lower() in ("1", "enabled", "enable")
    if value.strip().lower() not in ("0", "1", "enabled", "disabled", "enable", "disable"):
        raise StandinError(INVALID)
    word = "Enabled" if wanted else "Disabled"
    out = []
    for gpu in gpus:
        if gpu.persistence == wanted:
            out.append(f"Persistence mode is already {word} for GPU {gpu.bus_id}.")
        else:
            out.append(f"{word} persistence mode for GPU {gpu.bus_id}.")
    stored = read_stored_state(path)
    stored["persistence_mode"] = wanted
    save_state(stored, path)
    out.append("All done.")
    return "\n".join(out) + "\n"


def render_version(state):
    driver = state["driver_version"]
    nvml = ".".join(driver.split(".")[:2])
    return (
        f"NVIDIA-SMI version  : {driver}\n"
        f"NVML version        : {nvml}\n"
        f"DRIVER version      : {driver}\n"
        f"CUDA Version        : {state['cuda_version']}\n"
    )


USAGE = """NVIDIA System Management Interface -- lab stand-in (replays a captured H200 host; not NVIDIA's tool)

nvidia-smi [-i ID] [-L | -q [-x] | --query-gpu=F,.. --format=csv[,noheader][,nounits]
           | --query-compute-apps=F,.. --format=csv[..] | -pm 0/1 | --version]
nvidia-smi topo -m
nvidia-smi nvlink -s
"""


# ---------------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------------


def _split_option(args, i):
    """'--name=value' or '--name value' / '-n value' -> (value, next index)."""
    arg = args[i]
    if "=" in arg and arg.startswith("--"):
        return arg.split("=", 1)[1], i + 1
    if i + 1 >= len(args):
        raise StandinError(INVALID)
    return args[i + 1], i + 2


def _selection(state, value):
    if value is None:
        return None
    gpus = gpus_of(state)
    chosen = []
    for item in value.split(","):
        item = item.strip()
        matches = [gpu.index for gpu in gpus if item in (str(gpu.index), gpu.uuid, gpu.bus_id, gpu.serial)]
        if not matches:
            raise StandinError(f"No devices were found matching the identifier '{item}'\n", 6)
        chosen.extend(matches)
    return chosen


def run(argv, state_path=STATE_PATH):
    state = load_state(state_path)
    args = list(argv)
    if args[:1] == ["topo"]:
        if args[1:] not in (["-m"], ["--matrix"]):
            raise StandinError(INVALID)
        return render_topology(_require_gpus(gpus_of(state)))
    if args[:1] == ["nvlink"]:
        status, selection, i = False, None, 1
        while i < len(args):
            if args[i] in ("-s", "--status"):
                status, i = True, i + 1
            elif args[i] in ("-i", "--id") or args[i].startswith("--id="):
                selection, i = _split_option(args, i)
            else:
                raise StandinError(INVALID)
        if not status:
            raise StandinError(INVALID)
        return render_nvlink_status(_require_gpus(gpus_of(state, _selection(state, selection))))
    opts = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("-h", "--help"):
            return USAGE
        if arg == "--version":
            opts["version"] = True
            i += 1
        elif arg in ("-L", "--list-gpus"):
            opts["list"] = True
            i += 1
        elif arg in ("-q", "--query"):
            opts["query"] = True
            i += 1
        elif arg in ("-x", "--xml-format"):
            opts["xml"] = True
            i += 1
        elif arg in ("-i", "--id") or arg.startswith("--id="):
            opts["id"], i = _split_option(args, i)
        elif arg.startswith("--query-gpu"):
            opts["query_gpu"], i = _split_option(args, i)
        elif arg.startswith("--query-compute-apps"):
            opts["query_apps"], i = _split_option(args, i)
        elif arg.startswith("--format"):
            opts["format"], i = _split_option(args, i)
        elif arg in ("-pm", "--persistence-mode") or arg.startswith("--persistence-mode="):
            opts["pm"], i = _split_option(args, i)
        else:
            raise StandinError(INVALID)
    modes = [key for key in ("version", "list", "query", "query_gpu", "query_apps", "pm") if key in opts]
    if len(modes) > 1 or ("xml" in opts and modes != ["query"]) or ("format" in opts and not modes):
        raise StandinError(INVALID)
    if "version" in opts:
        return render_version(state)
    gpus = _require_gpus(gpus_of(state, _selection(state, opts.get("id"))))
    if "pm" in opts:
        return set_persistence(state, gpus, opts["pm"], state_path)
    if "list" in opts:
        return render_list(gpus)
    if "query" in opts:
        return render_xml(state, gpus) if "xml" in opts else render_query_text(state, gpus)
    if "query_gpu" in opts or "query_apps" in opts:
        if "format" not in opts:
            raise StandinError(INVALID)
        options = _parse_format(opts["format"])
        if "query_gpu" in opts:
            return render_query_gpu(state, gpus, opts["query_gpu"], options)
        return render_query_apps(state, gpus, opts["query_apps"], options)
    return render_plain(state, gpus)


def _require_gpus(gpus):
    if not gpus:
        raise StandinError("No devices were found\n", 6)
    return gpus


def main(argv=None):
    try:
        sys.stdout.write(run(sys.argv[1:] if argv is None else argv))
    except StandinError as error:
        sys.stdout.write(str(error))
        return error.code
    return 0


if __name__ == "__main__":
    sys.exit(main())
