"""The SGLang test stand-in images (localhost/sglang-standin:v<version>) on this machine's Docker engine.

build.sh builds them (idempotently) FROM the lab's base image; containers get GPUs the way the lab's GPU hook
gives them (the lab's nvidia-smi stand-in inside) and weights from a Hugging Face cache mounted read-only, as
the collection mounts it. Containers are named $STANDIN_TEST_PREFIX-<random> and removed afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "tests/lab/sglang-standin"))

from standin_testing import (  # noqa: E402
    LAB_NVIDIA,
    REPO_ID,
    STANDIN_DIR,
    http,
    make_hf_cache,
    sse_events,
    wait_for,
)

from ansible_collections.datacrunch.sglang.plugins.module_utils.bench import output as bench_output  # noqa: E402

BASE_IMAGE = "datacrunch-sglang-lab/debian:bookworm"
PREFIX = os.environ.get("STANDIN_TEST_PREFIX", "sglang-standin-test")
API_KEY = "sk-image-test-77e0"

pytestmark = pytest.mark.skipif(shutil.which("docker") is None, reason="needs a Docker engine")


def docker(*args, check=True, timeout=120):
    result = subprocess.run(["docker", *map(str, args)], capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(map(str, args))} failed: {result.stderr}")
    return result


@pytest.fixture(scope="module")
def images():
    if docker("image", "inspect", BASE_IMAGE, check=False).returncode != 0:
        pytest.skip(f"{BASE_IMAGE} is missing: tests/lab/lab.sh build makes it")
    build = subprocess.run([str(STANDIN_DIR / "build.sh")], capture_output=True, text=True, timeout=900, check=False)
    assert build.returncode == 0, build.stderr
    return {v: f"localhost/sglang-standin:v{v}" for v in ("0.5.18", "0.5.23")}


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    """What a lab host hands a container: the GPU stand-in with its state, and the weights cache."""
    root = tmp_path_factory.mktemp("host")
    make_hf_cache(root / "hf")
    (root / "gpu-state.json").write_text(json.dumps({"gpu_count": 8}))
    for path in root.rglob("*"):  # readable by the container's root without this machine's owner
        path.chmod(path.stat().st_mode | 0o755 if path.is_dir() else path.stat().st_mode | 0o644)
    return root


@pytest.fixture
def run(host):
    """run(image, *command, gpus=True, detach=True, env={}): a container of the stand-in; removed at the end."""
    names = []

    def start(image, *command, gpus=True, detach=True, env=None):
        name = f"{PREFIX}-{uuid.uuid4().hex[:8]}"
        names.append(name)
        args = ["run", "--name", name, "-v", f"{host / 'hf'}:/root/.cache/huggingface:ro", "-e", "HF_HUB_OFFLINE=1"]
        args += ["-e", "SGLANG_STANDIN_LOAD_SECONDS=1", "-p", "127.0.0.1::30000"]
        if gpus:
            args += [
                "-v", f"{LAB_NVIDIA / 'nvidia_smi.py'}:/usr/bin/nvidia-smi:ro",
                "-v", f"{LAB_NVIDIA / 'fixtures'}:/usr/share/datacrunch-sglang-lab/nvidia:ro",
                "-v", f"{host / 'gpu-state.json'}:/var/lib/datacrunch-sglang-lab/gpu-state.json:ro",
            ]  # fmt: skip
        for key, value in (env or {}).items():
            args += ["-e", f"{key}={value}"]
        args += ["-d"] if detach else []
        result = docker(*args, image, *command, check=False, timeout=300)
        return name, result

    yield start
    for name in names:
        docker("rm", "-f", name, check=False)


def url_of(name: str) -> str:
    port = docker("port", name, "30000/tcp").stdout.split(":")[-1].strip()
    return f"http://127.0.0.1:{port}"


def exit_code(name: str) -> int:
    docker("wait", name, timeout=60)
    return int(docker("inspect", "-f", "{{.State.ExitCode}}", name).stdout.strip())


def logs(name: str) -> str:
    result = docker("logs", name)
    return result.stdout + result.stderr


def test_images_are_labelled_small_and_rebuilt_only_on_change(images):
    for version, image in images.items():
        info = json.loads(docker("image", "inspect", image).stdout)[0]
        labels = info["Config"]["Labels"]
        assert labels["org.opencontainers.image.title"] == "sglang-standin"
        assert labels["org.opencontainers.image.version"] == version
        assert f"SGLANG_STANDIN_VERSION={version}" in info["Config"]["Env"]
        assert info["Config"]["WorkingDir"] == "/sgl-workspace"
        base_size = json.loads(docker("image", "inspect", BASE_IMAGE).stdout)[0]["Size"]
        assert info["Size"] - base_size < 20 * 1024 * 1024  # python3-yaml, curl and the package
    ids = {image: docker("image", "inspect", "-f", "{{.Id}}", image).stdout for image in images.values()}
    again = subprocess.run([str(STANDIN_DIR / "build.sh")], capture_output=True, text=True, timeout=300, check=False)
    assert again.returncode == 0
    assert again.stderr.count("is up to date") == 2
    assert ids == {image: docker("image", "inspect", "-f", "{{.Id}}", image).stdout for image in images.values()}


def test_container_serves_with_api_key_and_stops_cleanly(images, run):
    name, result = run(
        images["0.5.23"],
        "python3", "-m", "sglang.launch_server", "--model", REPO_ID, "--tp", "8", "--attn-dp-size", "8",
        "--host", "0.0.0.0", "--api-key", API_KEY,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    url = url_of(name)
    wait_for(lambda: http("GET", f"{url}/health_generate")[0] == 200 if _answers(url) else False, 30, what="ready")
    assert http("GET", f"{url}/v1/models")[0] == 401
    auth = {"Authorization": f"Bearer {API_KEY}"}
    status, _headers, body = http("GET", f"{url}/server_info", headers=auth)
    assert status == 200
    assert json.loads(body)["version"] == "0.5.23"
    assert json.loads(body)["attn_dp_size"] == 8
    _status, _headers, raw = http(
        "POST", f"{url}/generate", {"text": "hi", "sampling_params": {"max_new_tokens": 3}, "stream": True}, auth
    )
    assert sse_events(raw)[-1] == "[DONE]"
    assert "The server is fired up and ready to roll!" in logs(name)
    # As SGLang does, the start-up line of all arguments carries the key (the container log is root's to read).
    leaking = [line for line in logs(name).splitlines() if API_KEY in line]
    assert len(leaking) == 1 and "server_args=ServerArgs(" in leaking[0], leaking
    docker("stop", "-t", "10", name, timeout=60)
    assert exit_code(name) == 0


def test_as_pid_1_a_crash_exits_0_and_sigterm_is_ignored_while_loading(images, run):
    """SGLang's kill_process_tree cannot SIGKILL PID 1, so a crash exits 0; with no SIGTERM handler while loading,
    docker stop waits its whole timeout and kills."""
    command = ("python3", "-m", "sglang.launch_server", "--model", REPO_ID, "--tp", "8")
    crashed, _started = run(images["0.5.23"], *command, env={"SGLANG_STANDIN_FAULT": "start-fail:weights"})
    wait_for(lambda: docker("inspect", "-f", "{{.State.Status}}", crashed).stdout.strip() == "exited", 30,
             what="the crash")
    assert exit_code(crashed) == 0
    assert "TP0] Scheduler hit an exception: Traceback" in logs(crashed)
    loading, _started = run(images["0.5.18"], *command, env={"SGLANG_STANDIN_LOAD_SECONDS": "60"})
    wait_for(lambda: "Load weight begin" in logs(loading), 30, what="loading")
    asked = time.monotonic()
    docker("stop", "-t", "2", loading)
    assert time.monotonic() - asked >= 2
    assert exit_code(loading) == 137


def _answers(url: str) -> bool:
    try:
        http("GET", f"{url}/health", timeout=2)
    except OSError:
        return False
    return True


def test_container_rejects_a_flag_its_version_lacks(images, run):
    name, _started = run(
        images["0.5.18"], "python3", "-m", "sglang.launch_server", "--model", REPO_ID, "--attn-dp-size", "8"
    )
    assert exit_code(name) == 2
    assert "sglang serve: error: unrecognized arguments: --attn-dp-size 8" in logs(name)


def test_container_without_gpus_fails_like_cuda(images, run):
    name, _started = run(
        images["0.5.18"], "python3", "-m", "sglang.launch_server", "--model", REPO_ID, "--tp", "8", gpus=False
    )
    assert exit_code(name) == 1
    assert "Found no NVIDIA driver on your system" in logs(name)


def test_bench_one_batch_in_the_container(images, run):
    _name, result = run(
        images["0.5.18"],
        "python3", "-m", "sglang.bench_one_batch", "--model", REPO_ID, "--tp", "8", "--batch-size", "1",
        "--input", "128", "--output", "256", detach=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    runs = bench_output.one_batch_result(result.stdout)["runs"]
    assert runs[0]["median_decode_throughput"] == pytest.approx(47.67, abs=0.01)
    _name, result = run(images["0.5.23"], "python3", "-m", "sglang.bench_one_batch", "--model", REPO_ID, detach=False)
    assert result.returncode == 1
    assert "No module named sglang.bench_one_batch" in result.stderr
