"""The lab's nvidia-smi stand-in, run as a program on this machine (no Docker): does it replay the real host?

With the state of the captured host (4 GPUs, its identities) every form must print exactly what the real nvidia-smi
printed there, timestamps aside. With faults in the state, the outputs change only where the fault says so, and
the parser of the collection reads them as it reads a real host.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ansible_collections.datacrunch.sglang.plugins.module_utils.gpu import nvidia_smi as parser

REPO_ROOT = Path(__file__).resolve().parents[2]
STANDIN = REPO_ROOT / "tests/lab/host/nvidia/nvidia_smi.py"
FIXTURES = REPO_ROOT / "tests/lab/host/nvidia/fixtures"
TIMESTAMP = re.compile(r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun) [A-Z][a-z]{2} [ 0-9]\d \d\d:\d\d:\d\d \d{4}")


class Smi:
    def __init__(self, state_path):
        self.state_path = state_path

    def state(self, **state):
        self.state_path.write_text(json.dumps(state))

    def run(self, *args, check=True):
        env = dict(os.environ, LAB_GPU_STATE=str(self.state_path), LAB_GPU_FIXTURES=str(FIXTURES))
        result = subprocess.run(
            [sys.executable, str(STANDIN), *args], capture_output=True, text=True, env=env, check=False
        )
        if check:
            assert result.returncode == 0, result.stdout + result.stderr
        return result


@pytest.fixture
def smi(tmp_path):
    return Smi(tmp_path / "gpu-state.json")


def untimed(text):
    return TIMESTAMP.sub("TIMESTAMP", text)


QUERY_FIELDS = (
    "index,uuid,name,pci.bus_id,driver_version,vbios_version,memory.total,memory.used,memory.free,persistence_mode,"
    "ecc.mode.current,ecc.errors.uncorrected.volatile.total,retired_pages.pending,temperature.gpu,power.limit,"
    "clocks.max.sm,mig.mode.current,compute_mode"
)


@pytest.mark.parametrize(
    ("args", "fixture"),
    [
        ((), "nvidia-smi.txt"),
        (("-L",), "nvidia-smi-L.txt"),
        (("-q",), "nvidia-smi-q.txt"),
        (("-q", "-x"), "nvidia-smi-q.xml"),
        (("topo", "-m"), "nvidia-smi-topo-m.txt"),
        (("nvlink", "-s"), "nvidia-smi-nvlink-s.txt"),
        ((f"--query-gpu={QUERY_FIELDS}", "--format=csv"), "nvidia-smi-query-gpu.csv"),
        (("--query-compute-apps=pid,process_name,used_memory", "--format=csv"), "nvidia-smi-query-compute-apps.csv"),
    ],
)
def test_replays_the_captured_host_exactly(smi, args, fixture):
    smi.state(gpu_count=4)
    assert untimed(smi.run(*args).stdout) == untimed((FIXTURES / fixture).read_text())


def test_noheader_nounits_matches_the_capture(smi):
    smi.state(gpu_count=4)
    captured = Path("/work/shared/fixtures/nvidia-h200-x4/nvidia-smi-query-gpu-noheader-nounits.csv")
    if not captured.exists():
        pytest.skip("the raw capture is not on this machine")
    output = smi.run(f"--query-gpu={QUERY_FIELDS}", "--format=csv,noheader,nounits").stdout
    assert output == captured.read_text()


def test_eight_gpus_with_distinct_identities(smi):
    smi.state(identity_seed="host-a")
    report = parser.parse_query_xml(smi.run("-q", "-x").stdout)
    gpus = report["gpus"]
    assert report["attached_gpus"] == 8
    assert [gpu["name"] for gpu in gpus] == ["NVIDIA H200"] * 8
    for key in ("uuid", "serial", "bus_id"):
        assert len({gpu[key] for gpu in gpus}) == 8, key
    assert [gpu["minor_number"] for gpu in gpus] == list(range(8))
    smi.state(identity_seed="host-b")
    other = parser.parse_query_xml(smi.run("-q", "-x").stdout)["gpus"]
    assert not {gpu["uuid"] for gpu in gpus} & {gpu["uuid"] for gpu in other}


def test_xml_keeps_the_real_header(smi):
    smi.state()
    text = smi.run("-q", "-x").stdout
    assert text.startswith('<?xml version="1.0" ?>\n<!DOCTYPE nvidia_smi_log SYSTEM "nvsmi_device_v13.dtd">\n')
    assert len(ET.fromstring(text.split("\n", 2)[2]).findall("gpu")) == 8  # noqa: S314 - the stand-in's own output


def test_topology_and_nvlink_of_eight(smi):
    smi.state()
    topology = parser.parse_topology(smi.run("topo", "-m").stdout)
    pairs = parser.nvlink_pairs(topology)
    assert len(pairs) == 28
    assert {pair["nvlinks"] for pair in pairs} == {18}
    status = parser.parse_nvlink_status(smi.run("nvlink", "-s").stdout)
    assert sorted(status) == list(range(8))
    assert all(
        len(gpu["links"]) == 18 and all(link["speed_gbps"] == 26.562 for link in gpu["links"])
        for gpu in status.values()
    )


def test_faults_show_where_the_real_tool_shows_them(smi):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        smi.state(
            driver_version="535.104.05",
            cuda_version="12.2",
            persistence_mode=False,
            ecc_uncorrected={"3": 7},
            retired_pages_pending=[3],
            mig_enabled=[2],
            nvlink_down=[5],
            processes=[{"gpu": 0, "pid": holder.pid, "name": "python3", "used_memory_mib": 4096}],
        )
        report = parser.parse_query_xml(smi.run("-q", "-x").stdout)
        gpus = report["gpus"]
        assert (report["driver_version"], report["cuda_version"]) == ("535.104.05", "12.2")
        assert [gpu["persistence_mode"] for gpu in gpus] == [False] * 8
        assert gpus[3]["ecc_uncorrected_volatile"] == 7
        assert gpus[3]["retired_pages"]["pending"] is True
        assert gpus[3]["remapped_rows"]["pending"] is True
        assert gpus[4]["ecc_uncorrected_volatile"] == 0
        assert [gpu["mig_mode"] for gpu in gpus] == [False, False, True, False, False, False, False, False]
        assert gpus[0]["memory_used_mib"] == 4096
        assert [process["pid"] for process in gpus[0]["processes"]] == [holder.pid]
        status = parser.parse_nvlink_status(smi.run("nvlink", "-s").stdout)
        assert [gpu for gpu, entry in status.items() if not any(link["active"] for link in entry["links"])] == [5]
        assert smi.run("nvlink", "-s", "-i", "5").stdout.count("<inactive>") == 18
        pairs = parser.nvlink_pairs(parser.parse_topology(smi.run("topo", "-m").stdout))
        assert sorted(tuple(pair["gpus"]) for pair in pairs if pair["nvlinks"] == 0) == [
            (0, 5),
            (1, 5),
            (2, 5),
            (3, 5),
            (4, 5),
            (5, 6),
            (5, 7),
        ]
        plain = smi.run().stdout
        assert "Driver Version: 535.104.05     CUDA Version: 12.2" in plain
        assert f"{holder.pid}      C   python3" in plain
        apps = smi.run("--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits").stdout
        assert apps == f"{holder.pid}, 4096\n"
    finally:
        holder.kill()
        holder.wait()
    # The process is gone: its memory is free again, as on a real GPU.
    assert smi.run("--query-gpu=memory.used", "--format=csv,noheader", "-i", "0").stdout == "0 MiB\n"


def test_persistence_mode_is_set_by_the_real_command(smi):
    smi.state(persistence_mode=False, identity_seed="x")
    assert smi.run("--query-gpu=persistence_mode", "--format=csv,noheader").stdout == "Disabled\n" * 8
    output = smi.run("-pm", "1").stdout
    assert output.count("Enabled persistence mode for GPU") == 8 and output.endswith("All done.\n")
    assert smi.run("--query-gpu=persistence_mode", "--format=csv,noheader").stdout == "Enabled\n" * 8
    assert json.loads(smi.state_path.read_text())["identity_seed"] == "x"


def test_fewer_gpus_and_none(smi):
    smi.state(gpu_count=2)
    assert smi.run("-L").stdout.count("\n") == 2
    smi.state(gpu_count=0)
    result = smi.run("-L", check=False)
    assert (result.returncode, result.stdout) == (6, "No devices were found\n")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--bogus",), "Invalid combination of input arguments"),
        (("-x",), "Invalid combination of input arguments"),
        (("topo",), "Invalid combination of input arguments"),
        (("--query-gpu=index",), "Invalid combination of input arguments"),
        (("--query-gpu=bogus", "--format=csv"), 'Field "bogus" is not a valid field to query.'),
        (("--query-gpu=index", "--format=json"), '"json" is not a valid format.'),
        (("-L", "-i", "12"), "No devices were found matching the identifier '12'"),
    ],
)
def test_unknown_forms_fail_like_nvidia_smi(smi, args, message):
    smi.state()
    result = smi.run(*args, check=False)
    assert result.returncode != 0
    assert message in result.stdout
