"""module_utils/gpu/host_probe.py where it meets this machine's real Docker engine: a process traced to the container
it runs in, a published port traced through docker-proxy to its container, and one gather() pass over the docker,
ports, storage and gpu subsets with each way the container probe can go (exec in a serving container of the image,
a throw-away container, an image not there yet).

GPUs come from the lab's nvidia-smi stand-in; this machine has no GPU runtime, so the throw-away probe fails with the
engine's own words. Containers are named dcsg-unit-<random> and removed at the end of each test.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import uuid

import pytest
from support.server_specs import gpu_bin

from ansible_collections.datacrunch.sglang.plugins.module_utils.gpu import docker_engine
from ansible_collections.datacrunch.sglang.plugins.module_utils.gpu import host_probe as probe

BASE_IMAGE = "datacrunch-sglang-lab/debian:bookworm"
# The image of the "serving" container the exec probe goes into: no other test runs a spec-labelled container of it.
SERVING_IMAGE = "localhost/sglang-standin:v0.5.18"

pytestmark = pytest.mark.skipif(shutil.which("docker") is None, reason="needs a Docker engine")


def docker(*args, check=True):
    result = subprocess.run(["docker", *map(str, args)], capture_output=True, text=True, timeout=120, check=False)
    if check and result.returncode != 0:
        raise AssertionError("docker %s failed: %s" % (" ".join(map(str, args)), result.stderr))
    return result


@pytest.fixture
def client():
    for image in (BASE_IMAGE, SERVING_IMAGE):
        if docker("image", "inspect", image, check=False).returncode != 0:
            pytest.skip("%s is missing: tests/lab/lab.sh build makes it" % image)
    return docker_engine.DockerClient(docker_engine.socket_path(), timeout=60)


@pytest.fixture
def run():
    """run(*docker run options and command) -> (name, id, pid) of a detached container, removed at the end."""
    names = []

    def start(*args):
        name = "dcsg-unit-%s" % uuid.uuid4().hex[:10]
        names.append(name)
        container_id = docker("run", "-d", "--name", name, *args).stdout.strip()
        pid = int(docker("inspect", "-f", "{{.State.Pid}}", name).stdout)
        return name, container_id, pid

    yield start
    for name in names:
        docker("rm", "-f", name, check=False)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_process_is_traced_to_its_container_and_told_ours_or_not(client, run):
    name, container_id, pid = run("--label", "datacrunch.sglang.profile=unit", "--label", "other=kept-out",
                                  BASE_IMAGE, "sleep", "301")
    assert probe.container_ids_of(pid)[-1] == container_id
    entry = probe.describe_process(pid, client)
    assert entry == {
        "pid": pid, "name": "sleep", "cmdline": "sleep 301", "ours": True,
        "container": {"id": container_id[:12], "name": name, "image": BASE_IMAGE,
                      "labels": {"datacrunch.sglang.profile": "unit"}},
    }
    foreign, _id, foreign_pid = run("--label", "dcsg-unit=1", BASE_IMAGE, "sleep", "302")
    entry = probe.describe_process(foreign_pid, client)
    assert entry["ours"] is False and entry["container"]["name"] == foreign and entry["container"]["labels"] == {}
    # Without the engine: the process alone.
    assert probe.describe_process(pid, None) == {"pid": pid, "name": "sleep", "cmdline": "sleep 301",
                                                 "container": None, "ours": False}


def test_a_published_port_is_traced_through_docker_proxy_to_its_container(client, run):
    port = free_port()
    name, container_id, _pid = run("--label", "datacrunch.sglang.profile=unit", "-p", "127.0.0.1:%d:8080" % port,
                                   BASE_IMAGE, "sleep", "303")
    with socket.socket() as own:
        own.bind(("127.0.0.1", 0))
        own.listen(1)
        own_port = own.getsockname()[1]
        closed = free_port()
        state = probe.listeners_state([port, own_port, closed], client)
    (proxy,) = state[str(port)]["listeners"]
    assert state[str(port)]["free"] is False
    assert proxy["name"] == "docker-proxy" and proxy["address"] == "127.0.0.1" and proxy["ours"] is True
    assert proxy["container"] == {"id": container_id[:12], "name": name, "image": BASE_IMAGE,
                                  "labels": {"datacrunch.sglang.profile": "unit"}}
    (mine,) = state[str(own_port)]["listeners"]
    assert mine["pid"] == os.getpid() and mine["ours"] is False
    assert state[str(closed)] == {"port": closed, "free": True, "listeners": []}
    unresolved = probe.listeners_state([port], None)[str(port)]["listeners"][0]
    assert unresolved["name"] == "docker-proxy" and unresolved["container"] is None


def gather(tmp_path, monkeypatch, **kwargs):
    smi, env = gpu_bin(tmp_path / "gpus", 8)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return probe.gather(nvidia_smi_path=smi, docker_host="unix://" + docker_engine.socket_path(), **kwargs)


def test_gather_execs_the_gpu_probe_in_a_serving_container_of_the_image(client, run, tmp_path, monkeypatch):
    name, container_id, _pid = run("--label", "datacrunch.sglang.spec-hash=unit", SERVING_IMAGE, "sleep", "304")
    port = free_port()
    facts = gather(tmp_path, monkeypatch, subsets=("gpu", "docker", "ports", "storage"), ports=[port],
                   paths=[str(tmp_path / "hf")], sizes=[str(tmp_path / "gpus")],
                   images=[SERVING_IMAGE, "localhost/dcsg-unit-absent:1"],
                   container_probe={"image": SERVING_IMAGE, "timeout": 60})
    assert facts["subsets"] == ["docker", "gpu", "ports", "storage"]
    assert len(facts["gpu"]["gpus"]) == 8
    for device in facts["gpu"]["gpus"]:
        for process in device["processes"]:
            assert {"container", "ours", "cmdline"} <= set(process)
    info = json.loads(docker("info", "--format", "{{json .}}").stdout)
    assert facts["docker"]["running"] is True and facts["docker"]["root_dir"] == info["DockerRootDir"]
    assert [(image["image"], image["present"]) for image in facts["images"]] == [
        (SERVING_IMAGE, True), ("localhost/dcsg-unit-absent:1", False)]
    assert container_id in [container["id"] for container in facts["ours"]]
    exec_probe = facts["container_probe"]
    assert exec_probe["via"] == "exec in %s" % name
    # The stand-in image has no nvidia-smi of its own: the exec runs and says so.
    assert exec_probe["ran"] is True and exec_probe["exit_code"] in (126, 127)
    assert set(facts["disk"]) == {str(tmp_path / "hf"), info["DockerRootDir"]}
    assert facts["disk"][str(tmp_path / "hf")]["measured_at"] == str(tmp_path)
    sizes = facts["sizes"][str(tmp_path / "gpus")]
    assert sizes["exists"] is True and sizes["files"] == 2 and sizes["bytes"] > 0  # bin/nvidia-smi, gpu-state.json
    assert facts["shm"]["path"] == "/dev/shm" and facts["shm"]["total"] > 0
    assert facts["ports"][str(port)]["free"] is True


def test_gather_runs_a_throw_away_probe_or_waits_for_the_image(client, tmp_path, monkeypatch):
    facts = gather(tmp_path, monkeypatch, subsets=("docker",), container_probe={"image": BASE_IMAGE, "timeout": 60})
    throw_away = facts["container_probe"]
    assert throw_away["ran"] is False and "could not select device driver" in throw_away["error"]
    assert "via" not in throw_away
    absent = gather(tmp_path, monkeypatch, subsets=("docker",),
                    container_probe={"image": "localhost/dcsg-unit-absent:2"})
    assert absent["container_probe"] == {"image": "localhost/dcsg-unit-absent:2", "ran": False, "skipped": True,
                                         "error": "image localhost/dcsg-unit-absent:2 is not on the host yet"}
