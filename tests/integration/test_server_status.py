"""module_utils/launch/status.py (server_status, what sglang_server_info reports) on this machine's real Docker
engine: a missing server, the SGLang stand-in serving with an API key, the same server stopped, and GPU memory read
through the lab's nvidia-smi stand-in. Containers are named dcsg-unit-<random> and removed at the end.
"""

from __future__ import annotations

import subprocess
import time

import pytest

docker = pytest.importorskip("docker")

from support.server_specs import STANDIN_IMAGE, gpu_bin, make_host, remove_containers, server_spec  # noqa: E402

from ansible_collections.datacrunch.sglang.plugins.module_utils.launch.container import (  # noqa: E402
    SPEC_FILE,
    ServerContainer,
    ServerError,
)
from ansible_collections.datacrunch.sglang.plugins.module_utils.launch.status import (  # noqa: E402
    gpu_memory_used_mib,
    read_stored_spec,
    server_status,
)

API_KEY = "sk-status-test-31d7"
HF_TOKEN = "hf_status_test_secret_0a"


@pytest.fixture(scope="module")
def client():
    engine = docker.from_env(timeout=60)
    try:
        engine.images.get(STANDIN_IMAGE)
    except docker.errors.ImageNotFound:
        pytest.skip("%s is missing: tests/lab/sglang-standin/build.sh makes it" % STANDIN_IMAGE)
    return engine


@pytest.fixture(scope="module")
def serving(client, tmp_path_factory):
    """A ready stand-in server with an API key, as the launch leaves it: its spec next to its secrets."""
    host = make_host(tmp_path_factory.mktemp("host"))
    spec = server_spec(host, api_key=True)
    sc = ServerContainer(spec, secrets={"api_key": API_KEY}, client=client)
    try:
        sc.ensure_host_files()
        container = sc.create(sc.secrets_digest())
        sc.wait_ready(container, 60, 0, poll=0.2)
        yield spec, container, str(host / "secrets")
    finally:
        remove_containers(client, [spec["name"]])


def test_a_server_that_does_not_exist_is_absent(client, tmp_path):
    status = server_status("dcsg-unit-never-created", str(tmp_path), client=client)
    assert status == {"exists": False, "state": "absent", "ready": False, "gpu_memory_used_mib": None}


def test_a_serving_server_is_ready_ours_and_idle(client, serving):
    spec, container, secrets_dir = serving
    status = server_status(spec["name"], secrets_dir, api_key=API_KEY, client=client)
    assert status["exists"] is True and status["ours"] is True
    assert status["container_id"] == container.id and status["state"] == "running"
    assert status["ready"] is True and status["readiness"] == "health_generate 200"
    assert status["exit_code"] == 0 and status["oom_killed"] is False and status["restart_count"] == 0
    assert 0 <= status["uptime_s"] < 300
    assert status["image"] == STANDIN_IMAGE and status["image_id"] == client.images.get(STANDIN_IMAGE).id
    assert (status["profile"], status["cluster"], status["rank"]) == ("lab-tiny", "", "0")
    assert status["spec_hash"] == spec["spec_hash"]
    assert status["model"] == "lab/tiny-r1" and status["endpoint"] == spec["endpoint"]
    # The load from /metrics (served without the key, as SGLang serves it).
    assert status["running_requests"] == 0 and status["queued_requests"] == 0
    assert status["token_usage"] == 0
    assert "logs" not in status


def test_logs_come_with_timestamps_and_without_secrets(client, serving):
    spec, container, secrets_dir = serving
    everything = server_status(spec["name"], secrets_dir, api_key=API_KEY, secrets=[HF_TOKEN], logs_tail=-1,
                               client=client)
    assert "The server is fired up and ready to roll!" in everything["logs"]
    assert API_KEY not in everything["logs"] and "server_args=ServerArgs(" in everything["logs"]
    assert everything["log_lines"] == len(everything["logs"].splitlines()) > 5
    assert everything["logs"].splitlines()[0][:4].isdigit()  # docker's RFC 3339 timestamp
    metrics_line = '"GET /metrics HTTP/1.1" 200'
    served_before = -1
    while True:  # until the earlier calls' access lines are all stored
        count = container.logs().decode().count(metrics_line)
        if count == served_before:
            break
        served_before = count
        time.sleep(0.3)
    last = server_status(spec["name"], secrets_dir, logs_tail=3, client=client)
    assert last["log_lines"] == 3
    # The server logs a request's access line as it answers; the engine may store it a moment after the call read the
    # logs. Once it is there, the three lines read are the log's last three, but for this call's own access lines.
    deadline = time.monotonic() + 10
    while container.logs().decode().count(metrics_line) == served_before and time.monotonic() < deadline:
        time.sleep(0.1)
    full = container.logs(timestamps=True).decode()
    assert full.count(metrics_line) == served_before + 1, "this call's /metrics request was not logged"
    assert last["logs"] in full
    later = full.split(last["logs"], 1)[1].strip().splitlines()
    assert all('"GET /health_generate HTTP/1.1"' in line or metrics_line in line for line in later), later
    assert metrics_line in (last["logs"].splitlines() + later)[-1]


def test_without_its_spec_file_a_server_is_described_by_the_engine_alone(client, serving, tmp_path):
    spec, _container, _secrets_dir = serving
    (tmp_path / spec["name"]).mkdir()
    (tmp_path / spec["name"] / SPEC_FILE).write_text("{not json")
    assert read_stored_spec(str(tmp_path), spec["name"]) is None
    status = server_status(spec["name"], str(tmp_path), client=client)
    assert status["state"] == "running" and status["ready"] is False and status["readiness"] == "running"
    assert status["model"] == "" and status["spec_hash"] == spec["spec_hash"]


def test_a_stopped_server_is_reported_with_its_exit(client, tmp_path):
    host = make_host(tmp_path / "host")
    spec = server_spec(host)
    sc = ServerContainer(spec, client=client)
    try:
        sc.ensure_host_files()
        container = sc.create("")
        sc.wait_ready(container, 60, 0, poll=0.2)
        container.stop(timeout=20)
        status = server_status(spec["name"], str(host / "secrets"), client=client)
        assert status["exists"] is True and status["state"] == "exited"
        assert status["ready"] is False and status["readiness"] == "exited"
        assert status["exit_code"] == 0 and status["uptime_s"] == 0
        assert status["model"] == "lab/tiny-r1" and "running_requests" not in status
    finally:
        remove_containers(client, [spec["name"]])


def test_gpu_memory_is_the_sum_over_the_gpus(tmp_path, monkeypatch):
    smi, env = gpu_bin(tmp_path / "gpus", 8)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    answer = subprocess.run([smi, "--query-gpu=memory.used", "--format=csv,noheader,nounits"], capture_output=True,
                            text=True, check=True).stdout
    assert len(answer.split()) == 8
    assert gpu_memory_used_mib(smi) == int(sum(float(line) for line in answer.split()))


def test_gpu_memory_is_none_without_a_working_nvidia_smi(tmp_path):
    assert gpu_memory_used_mib(str(tmp_path / "no-such-nvidia-smi")) is None
    broken = tmp_path / "nvidia-smi"
    broken.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed because it could not communicate with the NVIDIA "
                      "driver.' >&2\nexit 9\n")
    broken.chmod(0o755)
    assert gpu_memory_used_mib(str(broken)) is None
    silent = tmp_path / "nvidia-smi-empty"
    silent.write_text("#!/bin/sh\necho '[N/A]'\n")
    silent.chmod(0o755)
    assert gpu_memory_used_mib(str(silent)) is None


def test_an_engine_that_does_not_answer_is_an_error(monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", "unix://%s" % (tmp_path / "no-engine.sock"))
    started = time.monotonic()
    with pytest.raises(ServerError) as down:
        server_status("dcsg-unit-any", str(tmp_path))
    assert "the Docker engine on this host does not answer" in str(down.value)
    assert "no-engine.sock" in str(down.value) or "No such file or directory" in str(down.value)
    assert time.monotonic() - started < 30
