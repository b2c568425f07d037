"""Preflight verdicts on facts: nvidia-smi facts come from the replayed real outputs, the rest is shaped as
gpu_info returns it. Each fault must fail its own check, with a message that says what and how to fix."""

import copy
from pathlib import Path

import pytest

from ansible_collections.datacrunch.sglang.plugins.module_utils.gpu import checks as gpu_checks
from ansible_collections.datacrunch.sglang.plugins.module_utils.gpu import nvidia_smi

STANDIN = Path(__file__).resolve().parents[1] / "fixtures" / "nvidia-smi" / "nvidia-smi-standin"
GIB = 1024**3
OUR_CONTAINER = {
    "id": "c0ffee",
    "name": "sglang",
    "image": "lmsysorg/sglang:v0.5.18",
    "labels": {"datacrunch.sglang.spec-hash": "x"},
}


def gpu_facts(variant, monkeypatch):
    monkeypatch.setenv("NVIDIA_SMI_FIXTURE", variant)
    return nvidia_smi.collect(str(STANDIN))


@pytest.fixture
def healthy(monkeypatch):
    return {
        "gpu": gpu_facts("h200-x8", monkeypatch),
        "toolkit": {
            "installed": True,
            "version": "1.18.0",
            "binaries": {"nvidia-ctk": "/usr/bin/nvidia-ctk", "nvidia-container-runtime-hook": "/usr/bin/hook"},
            "daemon_json_runtimes": ["nvidia"],
            "cdi_specs": [],
        },
        "docker": {
            "installed": True,
            "running": True,
            "version": "28.1.1",
            "api_version": "1.49",
            "runtimes": ["nvidia", "runc"],
            "root_dir": "/var/lib/docker",
        },
        "images": [{"image": "lmsysorg/sglang:v0.5.18", "present": True, "size": 40 * GIB}],
        "container_probe": {
            "image": "lmsysorg/sglang:v0.5.18",
            "ran": True,
            "exit_code": 0,
            "seconds": 1.5,
            "output": "\n".join(f"GPU {i}: NVIDIA H200 (UUID: GPU-{i})" for i in range(8)),
        },
        "disk": {
            "/root/.cache/huggingface": {"free": 2000 * GIB, "total": 3000 * GIB, "mount": "/", "error": ""},
            "/var/cache/datacrunch-sglang": {"free": 2000 * GIB, "total": 3000 * GIB, "mount": "/", "error": ""},
            "/var/lib/docker": {"free": 2000 * GIB, "total": 3000 * GIB, "mount": "/", "error": ""},
        },
        "sizes": {"/root/.cache/huggingface/hub/models--deepseek-ai--DeepSeek-R1": {"bytes": 0}},
        "shm": {"total": 700 * GIB, "free": 700 * GIB},
        "ports": {
            "30000": {"port": 30000, "free": True, "listeners": []},
            "50000": {"port": 50000, "free": True, "listeners": []},
        },
        "network": {
            "interfaces": {"lo": ["127.0.0.1"], "ens7": ["10.0.0.4"]},
            "private_addresses": [{"interface": "ens7", "address": "10.0.0.4"}],
        },
        "ib_devices": [],
    }


@pytest.fixture
def req():
    return {
        "profile": "deepseek-r1",
        "gpu_model": "H200",
        "gpu_count": 8,
        "image": "lmsysorg/sglang:v0.5.18",
        "container_probe": True,
        "disk": [
            {
                "name": "model",
                "path": "/root/.cache/huggingface",
                "need_bytes": 723 * 10**9,
                "present_path": "/root/.cache/huggingface/hub/models--deepseek-ai--DeepSeek-R1",
            },
            {"name": "caches", "path": "/var/cache/datacrunch-sglang", "need_bytes": 20 * 10**9},
        ],
        "image_bytes": 50 * 10**9,
        "shm_min_bytes": 16 * GIB,
        "port": 30000,
    }


def by_name(result):
    return {check["name"]: check for check in result["checks"]}


def failing(result):
    return {check["name"]: check for check in result["checks"] if check["status"] == "fail"}


def test_healthy_host_passes(healthy, req):
    result = gpu_checks.evaluate(healthy, req)
    assert failing(result) == {}
    assert result["failed"] is False
    checks = by_name(result)
    assert checks["gpus"]["summary"].startswith("8 x NVIDIA H200")
    assert checks["nvlink"]["summary"] == "all 28 GPU pairs joined (NV18), all links up"
    assert checks["container gpus"]["summary"].startswith("a container sees 8 GPUs")
    assert checks["disk /"]["status"] == "pass"
    assert checks["fabric"]["status"] == "skip"


@pytest.mark.parametrize(
    ("variant", "check", "words", "fix_words"),
    [
        ("h200-x8-gpu-missing", "gpus", "7 x NVIDIA H200: profile deepseek-r1 needs 8 x H200", "a GPU is missing:"),
        ("h200-x8-old-driver", "driver", "driver 550.54.15 is older than 580.65.06", "upgrade the NVIDIA driver"),
        ("h200-x8-ecc-error", "ecc", "GPU3: 2 uncorrected ECC errors since boot, row remap pending", "reset"),
        ("h200-x8-mig-on", "mig", "MIG mode is on for GPU 0", "-mig 0"),
        ("h200-x8-persistence-off", "persistence", "persistence mode is off on GPU 0-7", "nvidia-persistenced"),
        ("h200-x8-nvlink-down", "nvlink", "GPU pairs not joined by NVLink: 0-5 (SYS)", "fabricmanager"),
        ("h200-x8-process", "gpu processes", "pid 4242 (python3) holds 959.9 GiB on GPU 0-7", "pid 4242"),
    ],
)
def test_each_gpu_fault_fails_its_own_check(healthy, req, monkeypatch, variant, check, words, fix_words):
    healthy["gpu"] = gpu_facts(variant, monkeypatch)
    result = gpu_checks.evaluate(healthy, req)
    failed = failing(result)
    assert check in failed, result["checks"]
    assert words in failed[check]["summary"]
    assert fix_words in failed[check]["fix"]
    assert result["failed"] is True


def test_fault_fails_only_its_check(healthy, req, monkeypatch):
    healthy["gpu"] = gpu_facts("h200-x8-mig-on", monkeypatch)
    assert set(failing(gpu_checks.evaluate(healthy, req))) == {"mig"}


def test_missing_gpu_also_fails_the_container_count(healthy, req, monkeypatch):
    healthy["gpu"] = gpu_facts("h200-x8-gpu-missing", monkeypatch)
    assert set(failing(gpu_checks.evaluate(healthy, req))) == {"gpus", "container gpus"}


def test_inactive_links_are_named(healthy, req):
    healthy["gpu"]["nvlink"]["links"]["2"]["inactive"] = [3, 4, 5, 9]
    check = failing(gpu_checks.evaluate(healthy, req))["nvlink"]
    assert check["summary"] == "inactive links: GPU2 link 3-5,9"


def test_our_server_on_the_gpus_is_fine(healthy, req, monkeypatch):
    healthy["gpu"] = gpu_facts("h200-x8-process", monkeypatch)
    for device in healthy["gpu"]["gpus"]:
        for process in device["processes"]:
            process.update(ours=True, container=OUR_CONTAINER)
    checks = by_name(gpu_checks.evaluate(healthy, req))
    assert checks["gpu processes"]["status"] == "pass"


def test_foreign_container_on_the_gpus_is_named(healthy, req, monkeypatch):
    healthy["gpu"] = gpu_facts("h200-x8-process", monkeypatch)
    for device in healthy["gpu"]["gpus"]:
        for process in device["processes"]:
            process.update(ours=False, container={"name": "someones-vllm", "id": "abc"})
    check = failing(gpu_checks.evaluate(healthy, req))["gpu processes"]
    assert "in container someones-vllm" in check["summary"]
    assert check["fix"] == (
        "free the GPUs (this collection stops only its own containers): stop container someones-vllm if it should "
        "not run on this host, or deploy to another host"
    )


def test_no_nvidia_smi(healthy, req):
    healthy["gpu"] = nvidia_smi.collect("/nonexistent/nvidia-smi")
    result = gpu_checks.evaluate(healthy, req)
    assert "nvidia-smi" in failing(result)
    assert "install the NVIDIA driver" in failing(result)["nvidia-smi"]["fix"]
    # The GPU checks that need nvidia-smi are not reported as passing.
    assert "nvlink" not in by_name(result)


def test_docker_missing(healthy, req):
    healthy["docker"] = {"installed": False, "running": False, "error": "no Docker socket at /var/run/docker.sock"}
    healthy["toolkit"] = {"installed": False, "binaries": {}, "daemon_json_runtimes": [], "cdi_specs": []}
    healthy["container_probe"] = {
        "image": "x",
        "ran": False,
        "skipped": True,
        "error": "the Docker engine is not running",
    }
    result = gpu_checks.evaluate(healthy, req)
    failed = failing(result)
    assert set(failed) == {"docker engine", "nvidia toolkit"}
    assert "install Docker Engine" in failed["docker engine"]["fix"]
    assert "gpu_host_install_toolkit: true" in failed["nvidia toolkit"]["fix"]
    assert by_name(result)["container gpus"]["status"] == "skip"


def test_toolkit_installed_but_not_configured(healthy, req):
    healthy["toolkit"]["binaries"] = {"nvidia-ctk": "/usr/bin/nvidia-ctk"}
    healthy["toolkit"]["daemon_json_runtimes"] = []
    healthy["docker"]["runtimes"] = ["runc"]
    check = failing(gpu_checks.evaluate(healthy, req))["toolkit configured"]
    assert "nvidia-ctk runtime configure --runtime=docker" in check["fix"]


def test_configured_but_engine_not_restarted(healthy, req):
    healthy["toolkit"]["binaries"] = {"nvidia-ctk": "/usr/bin/nvidia-ctk"}
    healthy["docker"]["runtimes"] = ["runc"]
    check = failing(gpu_checks.evaluate(healthy, req))["toolkit configured"]
    assert "systemctl restart docker" in check["fix"]


def test_container_probe_error_is_shown(healthy, req):
    healthy["container_probe"] = {
        "image": "img",
        "ran": False,
        "exit_code": None,
        "error": 'could not select device driver "" with capabilities: [[gpu]]',
    }
    check = failing(gpu_checks.evaluate(healthy, req))["container gpus"]
    assert "could not select device driver" in check["summary"]


def test_probe_image_not_pulled_is_a_warning(healthy, req):
    healthy["container_probe"] = {
        "image": "img",
        "ran": False,
        "skipped": True,
        "error": "image img is not on the host yet",
    }
    check = by_name(gpu_checks.evaluate(healthy, req))["container gpus"]
    assert check["status"] == "warn"


def test_disk_needs_add_up_per_mount(healthy, req):
    for state in healthy["disk"].values():
        state["free"] = 700 * GIB
    healthy["images"][0]["present"] = False
    check = failing(gpu_checks.evaluate(healthy, req))["disk /"]
    assert check["summary"].startswith("700.0 GiB free on /, needs 738.5 GiB: model 673.3 GiB")
    assert "image 46.6 GiB (/var/lib/docker)" in check["summary"]
    assert check["fix"].startswith("free 38.5 GiB on /: remove old images (`docker image prune -a`)")
    assert "lmsysorg/sglang:v0.5.18 is smaller than gpu_host_image_size_gb=50 GB, set that to its size" in check["fix"]
    assert "`hf cache delete`" in check["fix"] and "sglang_hf_home" in check["fix"]


def test_a_full_docker_root_is_fixed_by_the_image_ways_alone(healthy, req):
    healthy["disk"]["/var/lib/docker"] = {"free": 40 * GIB, "total": 100 * GIB, "mount": "/var/lib/docker", "error": ""}
    healthy["images"][0]["present"] = False
    check = failing(gpu_checks.evaluate(healthy, req))["disk /var/lib/docker"]
    assert check["summary"] == "40.0 GiB free on /var/lib/docker, needs 46.6 GiB: image 46.6 GiB (/var/lib/docker)"
    assert check["fix"].startswith("free 6.6 GiB on /var/lib/docker: remove old images")
    assert "data-root" in check["fix"]
    assert "sglang_hf_home" not in check["fix"] and "hf cache delete" not in check["fix"]
    req["image_bytes"] = 39 * 10**9
    assert "disk /var/lib/docker" not in failing(gpu_checks.evaluate(healthy, req))


def test_missing_image_that_may_not_be_pulled_fails_and_needs_no_room(healthy, req):
    for state in healthy["disk"].values():
        state["free"] = 720 * GIB  # room for the weights and caches, not for the image as well
    healthy["images"][0]["present"] = False
    req["image_pull"] = "never"
    failed = failing(gpu_checks.evaluate(healthy, req))
    assert set(failed) == {"image"}
    assert failed["image"]["summary"] == (
        "image lmsysorg/sglang:v0.5.18 is not on this host and sglang_server_pull=never forbids pulling it"
    )
    assert "docker load" in failed["image"]["fix"]
    req["image_pull"] = "missing"
    assert set(failing(gpu_checks.evaluate(healthy, req))) == {"disk /"}


def test_weights_already_present_need_no_room(healthy, req):
    for state in healthy["disk"].values():
        state["free"] = 30 * GIB
    healthy["sizes"]["/root/.cache/huggingface/hub/models--deepseek-ai--DeepSeek-R1"]["bytes"] = 723 * 10**9
    assert "disk /" not in failing(gpu_checks.evaluate(healthy, req))


def test_full_disk_on_its_own_mount(healthy, req):
    healthy["disk"]["/root/.cache/huggingface"] = {
        "free": 10 * 1024**2,
        "total": 10 * 1024**2,
        "mount": "/root/.cache/huggingface",
        "error": "",
    }
    failed = failing(gpu_checks.evaluate(healthy, req))
    assert set(failed) == {"disk /root/.cache/huggingface"}


def test_small_shm(healthy, req):
    healthy["shm"] = {"total": 64 * 1024**2}
    check = failing(gpu_checks.evaluate(healthy, req))["/dev/shm"]
    assert "needs 16.0 GiB" in check["summary"]
    assert "remount,size=17G" in check["fix"]


def test_port_taken_by_a_foreign_process(healthy, req):
    healthy["ports"]["30000"] = {
        "port": 30000,
        "free": False,
        "listeners": [{"address": "0.0.0.0", "pid": 777, "name": "nginx", "container": None, "ours": False}],
    }
    check = failing(gpu_checks.evaluate(healthy, req))["serving port"]
    assert check["summary"] == (
        "port 30000 is taken by pid 777 (nginx) on 0.0.0.0, not by a datacrunch.sglang container"
    )
    assert check["fix"] == "set sglang_port to a port nothing on the host listens on"
    assert "kill" not in check["fix"]


def test_port_held_by_our_server(healthy, req):
    healthy["ports"]["30000"] = {
        "port": 30000,
        "free": False,
        "listeners": [{"address": "0.0.0.0", "pid": 5, "name": "python3", "container": OUR_CONTAINER, "ours": True}],
    }
    check = by_name(gpu_checks.evaluate(healthy, req))["serving port"]
    assert check == {
        "name": "serving port",
        "status": "pass",
        "summary": "port 30000 held by our server (sglang)",
        "fix": "",
    }


def test_multi_node_rendezvous(healthy, req):
    req.update(multi_node=True, rank=0, peers=1, rendezvous_port=50000)
    healthy["rendezvous"] = {"mode": "listen", "port": 50000, "listening": True, "peers": ["10.0.0.5"]}
    checks = by_name(gpu_checks.evaluate(healthy, req))
    assert checks["rendezvous"]["status"] == "pass"
    assert checks["rendezvous port"]["status"] == "pass"
    assert checks["private address"]["summary"] == "10.0.0.4 on ens7"
    assert checks["infiniband"]["status"] == "warn"

    healthy["rendezvous"] = {"mode": "listen", "port": 50000, "listening": True, "peers": []}
    assert "only 0 of 1 peers" in failing(gpu_checks.evaluate(healthy, req))["rendezvous"]["summary"]

    req["rank"] = 1
    healthy["rendezvous"] = {
        "mode": "connect",
        "host": "10.0.0.4",
        "port": 50000,
        "reached": False,
        "error": "10.0.0.4:50000: timed out",
    }
    check = failing(gpu_checks.evaluate(healthy, req))["rendezvous"]
    assert check["summary"] == "cannot reach rank 0 at 10.0.0.4:50000: 10.0.0.4:50000: timed out"


def test_private_ip_not_on_host(healthy, req):
    req["private_ip"] = "10.9.9.9"
    check = failing(gpu_checks.evaluate(healthy, req))["private address"]
    assert "sglang_private_ip=10.9.9.9 is not an address of this host" in check["summary"]


def test_fabric_threshold_and_degraded(healthy, req):
    assert gpu_checks.fabric_threshold(1) == 0.0
    assert gpu_checks.fabric_threshold(4) == pytest.approx(gpu_checks.FABRIC_REFERENCE_GBPS[4] * 0.8)
    assert gpu_checks.fabric_threshold(8) == gpu_checks.fabric_threshold(4)
    req["fabric"] = {"gpus": 8, "busbw_gbps": 120.0, "min_busbw_gbps": 284.0, "size_bytes": GIB}
    result = gpu_checks.evaluate(healthy, req)
    assert by_name(result)["fabric"]["status"] == "degraded"
    assert result["degraded"] is True
    assert result["failed"] is False
    req["fabric"]["busbw_gbps"] = 355.0
    assert by_name(gpu_checks.evaluate(healthy, req))["fabric"]["status"] == "pass"
    req["fabric"] = {"gpus": 1, "visible_gpus": 1, "error": "an all-reduce needs 2 or more GPUs; 1 visible, 1 asked"}
    assert by_name(gpu_checks.evaluate(healthy, req))["fabric"]["status"] == "skip"


def test_sglang_gpu_fact(healthy):
    healthy["ib_devices"] = [
        {
            "name": "mlx5_0",
            "ports": [{"state": "ACTIVE", "link_layer": "InfiniBand", "rate": "400"}],
            "netdevs": ["ibp1"],
        },
        {"name": "mlx5_1", "ports": [{"state": "DOWN"}], "netdevs": []},
    ]
    fact = gpu_checks.sglang_gpu(healthy)
    assert fact["count"] == 8
    assert fact["model"] == "NVIDIA H200"
    assert fact["driver"] == "580.159.04"
    assert fact["cuda"] == "13.0"
    assert fact["memory_mib"] == 143771
    assert len(fact["uuids"]) == 8
    assert fact["nvlink_all_pairs"] is True
    assert fact["ib_devices"] == [
        {"name": "mlx5_0", "link_layer": "InfiniBand", "rate": "400", "netdevs": ["ibp1"], "pkeys": []}
    ]
    assert fact["private_ip"] == "10.0.0.4"
    assert fact["private_interface"] == "ens7"
    assert gpu_checks.sglang_gpu(healthy, "127.0.0.1")["private_interface"] == "lo"


def test_table_lists_fixes_of_failures(healthy, req, monkeypatch):
    healthy["gpu"] = gpu_facts("h200-x8-old-driver", monkeypatch)
    lines = gpu_checks.render_table("gpu-1", gpu_checks.evaluate(copy.deepcopy(healthy), req))
    assert lines[0].startswith("gpu-1: 1 fail")
    text = "\n".join(lines)
    assert "FAIL     driver" in text
    assert "fix: upgrade the NVIDIA driver to >= 580.65.06" in text


def test_role_default_image_is_the_launch_default():
    import yaml

    from ansible_collections.datacrunch.sglang.plugins.module_utils.common.image_ref import DEFAULT_SGLANG_IMAGE

    role_vars = Path(__file__).resolve().parents[2] / "roles" / "gpu_host" / "vars" / "main.yml"
    assert yaml.safe_load(role_vars.read_text())["gpu_host_default_image"] == DEFAULT_SGLANG_IMAGE


def test_a_path_under_an_announced_mount_must_lie_on_it(healthy, req):
    local = "/mnt/local_disk/huggingface"
    req["disk"] = [{"name": "model", "path": local, "need_bytes": GIB}]
    req["announced_mounts"] = ["/mnt/local_disk", "/home"]
    healthy["disk"][local] = {"free": 2000 * GIB, "total": 3000 * GIB, "mount": "/", "error": ""}
    check = failing(gpu_checks.evaluate(healthy, req))["disk model"]
    assert "/mnt/local_disk/huggingface would be on /, not on /mnt/local_disk" in check["summary"]
    assert "findmnt /mnt/local_disk" in check["fix"]
    healthy["disk"][local]["mount"] = "/mnt/local_disk"
    assert "disk model" not in failing(gpu_checks.evaluate(healthy, req))
    assert by_name(gpu_checks.evaluate(healthy, req))["disk /mnt/local_disk"]["status"] == "pass"
