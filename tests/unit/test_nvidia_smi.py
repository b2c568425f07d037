"""nvidia-smi parsers, on outputs captured on a real 4x H200 host and on variants derived from them."""

import importlib.util
import os
import stat
from pathlib import Path

import pytest

from ansible_collections.datacrunch.sglang.plugins.module_utils.gpu import nvidia_smi
from ansible_collections.datacrunch.sglang.plugins.module_utils.gpu.nvidia_smi import NvidiaSmiError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "nvidia-smi"
STANDIN = FIXTURES / "nvidia-smi-standin"
SHARED = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "nvidia-h200-x4"


def read(variant, name):
    return (FIXTURES / variant / name).read_text()


def parsed(variant):
    report = nvidia_smi.parse_query_xml(read(variant, "nvidia-smi-q.xml"))
    topology = nvidia_smi.parse_topology(read(variant, "nvidia-smi-topo-m.txt"))
    status = nvidia_smi.parse_nvlink_status(read(variant, "nvidia-smi-nvlink-s.txt"))
    return report, nvidia_smi.summarize_nvlink(topology, status, len(report["gpus"]))


def listed_uuids(variant):
    return [line.split("UUID: ")[1].rstrip(")") for line in read(variant, "nvidia-smi-L.txt").splitlines()]


# --- the real host ----------------------------------------------------------------------------------------


def test_real_copy_is_unedited():
    if not SHARED.is_dir():
        pytest.skip("shared/fixtures is not beside this checkout")
    for name in ("nvidia-smi-q.xml", "nvidia-smi-topo-m.txt", "nvidia-smi-nvlink-s.txt", "nvidia-smi-L.txt"):
        assert (FIXTURES / "h200-x4" / name).read_bytes() == (SHARED / name).read_bytes(), name


def test_real_xml_driver_gpus_and_memory():
    report, _nvlink = parsed("h200-x4")
    assert report["driver_version"] == "580.159.04"
    assert report["cuda_version"] == "13.0"
    assert report["attached_gpus"] == 4
    gpus = report["gpus"]
    assert [gpu["index"] for gpu in gpus] == [0, 1, 2, 3]
    assert {gpu["name"] for gpu in gpus} == {"NVIDIA H200"}
    assert [gpu["uuid"] for gpu in gpus] == listed_uuids("h200-x4")
    assert [gpu["bus_id"] for gpu in gpus] == [
        "00000000:00:06.0",
        "00000000:00:07.0",
        "00000000:00:08.0",
        "00000000:00:09.0",
    ]
    first = gpus[0]
    assert (first["memory_total_mib"], first["memory_used_mib"], first["memory_free_mib"]) == (143771, 0, 143156)
    assert first["persistence_mode"] is True
    assert first["ecc_mode"] is True
    assert first["ecc_uncorrected_volatile"] == 0
    assert first["ecc_uncorrected_aggregate"] == 0
    # H200 reports remapped rows, not retired pages (N/A).
    assert first["retired_pages"] == {"count": None, "pending": None}
    assert first["remapped_rows"] == {"correctable": 0, "uncorrectable": 0, "pending": False, "failure": False}
    assert first["mig_mode"] is False
    assert first["compute_mode"] == "Default"
    assert first["processes"] == []
    assert first["architecture"] == "Hopper"


def test_real_topology_all_pairs_nv18():
    _report, nvlink = parsed("h200-x4")
    assert len(nvlink["pairs"]) == 6
    assert {pair["nvlinks"] for pair in nvlink["pairs"]} == {18}
    assert nvlink["all_pairs_joined"] is True
    assert nvlink["links"]["0"] == {"total": 18, "active": 18, "inactive": [], "speed_gbps": 26.562, "reported": True}


def test_topology_header_with_ansi_escapes_and_cpu_columns():
    topology = nvidia_smi.parse_topology(read("h200-x4", "nvidia-smi-topo-m.txt"))
    assert topology["devices"] == ["GPU0", "GPU1", "GPU2", "GPU3"]
    assert topology["matrix"]["GPU2"]["GPU2"] == "X"
    assert topology["matrix"]["GPU0"]["GPU3"] == "NV18"


def test_topology_with_nics():
    text = (
        "\tGPU0\tGPU1\tNIC0\tCPU Affinity\tNUMA Affinity\tGPU NUMA ID\n"
        "GPU0\t X \tNV6\tPIX\t6,14\t3\t\tN/A\n"
        "GPU1\tNV6\t X \tSYS\t4,12\t1\t\tN/A\n"
        "NIC0\tPIX\tSYS\t X \n\nLegend:\n"
    )
    topology = nvidia_smi.parse_topology(text)
    assert topology["devices"] == ["GPU0", "GPU1", "NIC0"]
    assert nvidia_smi.nvlink_pairs(topology) == [{"gpus": [0, 1], "link": "NV6", "nvlinks": 6}]


def test_nvlink_status_inactive_and_all_inactive():
    text = (
        "GPU 0: Tesla V100-SXM2-32GB (UUID: GPU-1)\n\t Link 0: 25.781 GB/s\n\t Link 1: <inactive>\n"
        "GPU 1: Tesla V100-SXM2-32GB (UUID: GPU-2)\n\t NVML: all links are inactive\n"
    )
    status = nvidia_smi.parse_nvlink_status(text)
    assert status[0]["links"] == [
        {"link": 0, "active": True, "speed_gbps": 25.781},
        {"link": 1, "active": False, "speed_gbps": None},
    ]
    assert status[1]["all_inactive"] is True
    assert status[1]["uuid"] == "GPU-2"


# --- derived variants -------------------------------------------------------------------------------------


def _derive_module():
    spec = importlib.util.spec_from_file_location("derive", FIXTURES / "derive.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_variants_match_derive_script():
    for name, files in _derive_module().variants().items():
        for filename, content in zip(
            ("nvidia-smi-q.xml", "nvidia-smi-topo-m.txt", "nvidia-smi-nvlink-s.txt", "nvidia-smi-L.txt"),
            files,
            strict=True,
        ):
            assert (FIXTURES / name / filename).read_text() == content, f"{name}/{filename}: run derive.py"


def test_eight_gpus():
    report, nvlink = parsed("h200-x8")
    assert report["attached_gpus"] == 8
    assert len(report["gpus"]) == 8
    uuids = [gpu["uuid"] for gpu in report["gpus"]]
    assert uuids == listed_uuids("h200-x8")
    assert len(set(uuids)) == 8
    assert len({gpu["bus_id"] for gpu in report["gpus"]}) == 8
    assert len(nvlink["pairs"]) == 28
    assert nvlink["all_pairs_joined"] is True


def test_gpu_missing():
    report, nvlink = parsed("h200-x8-gpu-missing")
    assert len(report["gpus"]) == 7
    assert report["attached_gpus"] == 7
    assert len(nvlink["pairs"]) == 21


def test_ecc_error():
    report, _nvlink = parsed("h200-x8-ecc-error")
    gpu3 = report["gpus"][3]
    assert gpu3["ecc_uncorrected_volatile"] == 2
    assert gpu3["ecc_uncorrected_aggregate"] == 2
    assert gpu3["remapped_rows"]["pending"] is True
    assert gpu3["remapped_rows"]["uncorrectable"] == 1
    assert all(gpu["ecc_uncorrected_volatile"] == 0 for gpu in report["gpus"] if gpu["index"] != 3)


def test_mig_on():
    report, _nvlink = parsed("h200-x8-mig-on")
    assert report["gpus"][0]["mig_mode"] is True
    assert [gpu["index"] for gpu in report["gpus"] if gpu["mig_mode"]] == [0]


def test_process_holding_memory():
    report, _nvlink = parsed("h200-x8-process")
    for gpu in report["gpus"]:
        assert gpu["processes"] == [
            {
                "pid": 4242,
                "name": "python3",
                "type": "C",
                "used_memory_mib": 122870,
                "gpu_instance_id": None,
                "compute_instance_id": None,
            }
        ]
        assert gpu["memory_used_mib"] == 122880


def test_old_driver():
    report, _nvlink = parsed("h200-x8-old-driver")
    assert (report["driver_version"], report["cuda_version"]) == ("550.54.15", "12.4")


def test_persistence_off():
    report, _nvlink = parsed("h200-x8-persistence-off")
    assert {gpu["persistence_mode"] for gpu in report["gpus"]} == {False}


def test_nvlink_down():
    _report, nvlink = parsed("h200-x8-nvlink-down")
    assert nvlink["all_pairs_joined"] is False
    unjoined = [pair["gpus"] for pair in nvlink["pairs"] if not pair["nvlinks"]]
    assert unjoined == [[0, 5], [1, 5], [2, 5], [3, 5], [4, 5], [5, 6], [5, 7]]
    assert nvlink["links"]["5"]["active"] == 0
    assert nvlink["links"]["5"]["inactive"] == list(range(18))
    assert nvlink["links"]["4"]["active"] == 18


def test_older_xml_layout_double_bit_and_retired_pages():
    text = """<?xml version="1.0" ?><nvidia_smi_log><driver_version>470.82.01</driver_version>
    <cuda_version>11.4</cuda_version><attached_gpus>1</attached_gpus>
    <gpu id="00000000:07:00.0"><product_name>Tesla V100-SXM2-32GB</product_name><uuid>GPU-x</uuid>
    <persistence_mode>Disabled</persistence_mode>
    <ecc_errors><volatile><single_bit><total>0</total></single_bit><double_bit><device_memory>3</device_memory>
    <total>3</total></double_bit></volatile></ecc_errors>
    <retired_pages><multiple_single_bit_retirement><retired_count>1</retired_count></multiple_single_bit_retirement>
    <double_bit_retirement><retired_count>2</retired_count></double_bit_retirement>
    <pending_retirement>Yes</pending_retirement></retired_pages>
    <fb_memory_usage><total>32510 MiB</total><used>0 MiB</used><free>32510 MiB</free></fb_memory_usage>
    <processes><process_info><pid>77</pid><type>C</type><process_name>train</process_name>
    <used_memory>100 MiB</used_memory></process_info></processes></gpu></nvidia_smi_log>"""
    gpu = nvidia_smi.parse_query_xml(text)["gpus"][0]
    assert gpu["ecc_uncorrected_volatile"] == 3
    assert gpu["retired_pages"] == {"count": 3, "pending": True}
    assert gpu["persistence_mode"] is False
    assert gpu["processes"][0]["pid"] == 77
    assert gpu["bus_id"] == "00000000:07:00.0"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "printed nothing"),
        ("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.", "does not parse"),
        ("<?xml version='1.0'?><other/>", "expected <nvidia_smi_log>"),
    ],
)
def test_bad_xml_is_a_clear_error(text, message):
    with pytest.raises(NvidiaSmiError, match=message):
        nvidia_smi.parse_query_xml(text)


def test_topology_without_header_is_an_error():
    with pytest.raises(NvidiaSmiError, match="no GPU header"):
        nvidia_smi.parse_topology("garbage\n")


# --- collect(): running a real executable -------------------------------------------------------------------


def test_collect_through_standin(monkeypatch):
    monkeypatch.setenv("NVIDIA_SMI_FIXTURE", "h200-x8-nvlink-down")
    facts = nvidia_smi.collect(str(STANDIN))
    assert facts["present"] is True
    assert facts["ok"] is True
    assert facts["count"] == 8
    assert facts["driver_version"] == "580.159.04"
    assert facts["nvlink"]["all_pairs_joined"] is False
    assert facts["nvlink_error"] == ""


def test_collect_without_nvidia_smi():
    facts = nvidia_smi.collect("/nonexistent/nvidia-smi")
    assert facts["present"] is False
    assert facts["ok"] is False
    assert "not found" in facts["error"]


def _script(tmp_path, body):
    path = tmp_path / "nvidia-smi"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def test_collect_with_failing_driver(tmp_path):
    path = _script(
        tmp_path,
        'echo "NVIDIA-SMI has failed because it couldn\'t communicate with the NVIDIA driver."; exit 9\n',
    )
    facts = nvidia_smi.collect(path)
    assert facts["present"] is True
    assert facts["ok"] is False
    assert "exit 9" in facts["error"]
    assert "couldn't communicate" in facts["error"]


def test_collect_times_out_on_a_hung_gpu(tmp_path):
    path = _script(tmp_path, "exec sleep 30\n")
    facts = nvidia_smi.collect(path, timeout=1)
    assert facts["ok"] is False
    assert "timed out after 1 s" in facts["error"]


def test_collect_reports_topology_failure(tmp_path):
    xml = FIXTURES / "h200-x4" / "nvidia-smi-q.xml"
    path = _script(tmp_path, f'[ "$1" = -q ] && exec cat {xml}\necho "topo not supported" >&2; exit 3\n')
    facts = nvidia_smi.collect(path)
    assert facts["ok"] is True
    assert facts["count"] == 4
    assert "topo -m failed: exit 3: topo not supported" in facts["nvlink_error"]
    assert facts["nvlink"]["all_pairs_joined"] is False


def test_find_on_driver_dirs(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    found = nvidia_smi.find_nvidia_smi()
    # Either the machine has one in a driver directory or none is found; never a crash.
    assert found is None or os.access(found, os.X_OK)
