"""module_utils/gpu/docker_engine.py (the preflight's standard-library client) against this machine's real Docker
engine: what it reads agrees with the docker CLI, and a GPU probe on an engine without a GPU runtime fails with the
engine's own words and leaves no container behind. The answers a healthy engine here cannot give (a probe that
runs on GPUs, failures mid-way): tests/unit/test_docker_engine_api.py.

Containers are named dcsg-unit-<random>, labelled, and removed at the end of each test.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import uuid

import pytest

from ansible_collections.datacrunch.sglang.plugins.module_utils.gpu import docker_engine

BASE_IMAGE = "datacrunch-sglang-lab/debian:bookworm"

pytestmark = pytest.mark.skipif(shutil.which("docker") is None, reason="needs a Docker engine")


def docker(*args, check=True):
    result = subprocess.run(["docker", *map(str, args)], capture_output=True, text=True, timeout=120, check=False)
    if check and result.returncode != 0:
        raise AssertionError("docker %s failed: %s" % (" ".join(map(str, args)), result.stderr))
    return result


@pytest.fixture
def client():
    if docker("image", "inspect", BASE_IMAGE, check=False).returncode != 0:
        pytest.skip("%s is missing: tests/lab/lab.sh build makes it" % BASE_IMAGE)
    return docker_engine.DockerClient(docker_engine.socket_path(), timeout=60)


@pytest.fixture
def run():
    """run(*docker run options and command) -> (name, id) of a detached container, removed at the end."""
    names = []

    def start(*args):
        name = "dcsg-unit-%s" % uuid.uuid4().hex[:10]
        names.append(name)
        container_id = docker("run", "-d", "--name", name, "--label", "datacrunch.sglang.test=1", *args).stdout.strip()
        return name, container_id

    yield start
    for name in names:
        docker("rm", "-f", name, check=False)


def test_engine_state_agrees_with_the_cli(client):
    state = docker_engine.engine_state(client)
    info = json.loads(docker("info", "--format", "{{json .}}").stdout)
    assert state["running"] is True and state["installed"] is True and state["error"] == ""
    assert state["version"] == docker("version", "--format", "{{.Server.Version}}").stdout.strip()
    assert state["api_version"] == docker("version", "--format", "{{.Server.APIVersion}}").stdout.strip()
    assert state["runtimes"] == sorted(info["Runtimes"]) and "runc" in state["runtimes"]
    assert state["default_runtime"] == info["DefaultRuntime"]
    assert state["root_dir"] == info["DockerRootDir"]


def test_image_state_of_a_present_and_an_absent_image(client):
    inspected = json.loads(docker("image", "inspect", BASE_IMAGE).stdout)[0]
    assert docker_engine.image_state(client, BASE_IMAGE) == {
        "image": BASE_IMAGE, "present": True, "size": inspected["Size"], "id": inspected["Id"], "error": ""}
    absent = "localhost/dcsg-unit-absent:%s" % uuid.uuid4().hex[:8]
    assert docker_engine.image_state(client, absent) == {
        "image": absent, "present": False, "size": 0, "id": "", "error": ""}


def test_containers_by_id_by_label_and_by_published_port(client, run):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    name, container_id = run("--label", "datacrunch.sglang.profile=f00d", "-p", "127.0.0.1:%d:8080" % port,
                             BASE_IMAGE, "sleep", "300")
    labels = json.loads(docker("inspect", "--format", "{{json .Config.Labels}}", name).stdout)
    assert labels["datacrunch.sglang.profile"] == "f00d"
    assert docker_engine.container_by_id(client, container_id) == {
        "id": container_id, "name": name, "image": BASE_IMAGE, "labels": labels}
    assert docker_engine.container_by_id(client, "dcsg-unit-no-such-container") is None
    publishing = docker_engine.containers_publishing(client, port)
    assert [entry["name"] for entry in publishing] == [name]
    ours = {entry["name"]: entry for entry in docker_engine.our_containers(client)}
    assert ours[name]["id"] == container_id and ours[name]["state"] == "running"
    docker("stop", "-t", "0", name)
    ours = {entry["name"]: entry for entry in docker_engine.our_containers(client)}
    assert ours[name]["state"] == "exited"  # stopped ones are listed too
    assert docker_engine.containers_publishing(client, port) == []


def test_exec_probe_runs_in_a_running_container_and_reads_its_streams(client, run):
    name, container_id = run(BASE_IMAGE, "sleep", "300")
    container = {"id": container_id, "name": name, "image": BASE_IMAGE}
    result = docker_engine.gpu_exec_probe(
        client, container, command=("sh", "-c", "echo 'GPU 0: NVIDIA H200 (UUID: GPU-x)'; echo warn >&2; exit 3"))
    assert result["ran"] is True and result["error"] == ""
    assert result["exit_code"] == 3
    # stdout and stderr frames, in the order the engine sent them
    assert sorted(result["output"].splitlines()) == ["GPU 0: NVIDIA H200 (UUID: GPU-x)", "warn"]
    assert result["via"] == "exec in %s" % name
    docker("stop", "-t", "0", name)
    stopped = docker_engine.gpu_exec_probe(client, container)
    assert stopped["ran"] is False and "is not running" in stopped["error"]


def probe_containers():
    return docker("ps", "-aq", "--filter", "label=%s" % docker_engine.PROBE_LABEL).stdout.split()


def test_gpu_probe_without_a_gpu_runtime_fails_with_the_engines_words_and_leaves_nothing(client):
    before = probe_containers()
    result = docker_engine.gpu_probe(client, BASE_IMAGE)
    assert result["ran"] is False and result["exit_code"] is None
    assert "could not select device driver" in result["error"] and "gpu" in result["error"]
    assert probe_containers() == before


def test_gpu_probe_of_an_absent_image_says_so(client):
    result = docker_engine.gpu_probe(client, "localhost/dcsg-unit-absent:1")
    assert result["ran"] is False
    assert "No such image: localhost/dcsg-unit-absent:1" in result["error"]


def test_a_socket_without_an_engine(tmp_path):
    path = str(tmp_path / "docker.sock")
    state = docker_engine.engine_state(docker_engine.DockerClient(path))
    assert state["running"] is False and state["error"] == "no Docker socket at %s" % path
    assert docker_engine.socket_path("unix://" + path) == path
    assert os.path.exists(docker_engine.DEFAULT_SOCKET)
