"""The one Docker access layer after host_venv (common/docker_sdk): its messages when the SDK or the engine is
missing, and what counts as the collection's own. The engine itself is used in
tests/integration/test_tls_proxy_container.py."""

import pytest

from ansible_collections.datacrunch.sglang.plugins.module_utils.common import docker_sdk
from ansible_collections.datacrunch.sglang.plugins.module_utils.launch import container as server_container
from ansible_collections.datacrunch.sglang.plugins.module_utils.launch import status as server_status
from ansible_collections.datacrunch.sglang.plugins.module_utils.launch.container import ServerError


def test_without_the_sdk_the_message_names_host_venv(monkeypatch):
    monkeypatch.setattr(docker_sdk, "HAS_DOCKER_SDK", False)
    monkeypatch.setattr(docker_sdk, "SDK_IMPORT_ERROR", "No module named 'docker'")
    with pytest.raises(docker_sdk.DockerUnavailable) as caught:
        docker_sdk.connect()
    assert "No module named 'docker'" in str(caught.value)
    assert "run the datacrunch.sglang.host_venv role first" in str(caught.value)


def test_an_engine_that_does_not_answer_says_how_to_start_it(monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", "unix://%s" % (tmp_path / "no-engine.sock"))
    with pytest.raises(docker_sdk.DockerUnavailable) as caught:
        docker_sdk.connect(timeout=5)
    assert "the Docker engine on this host does not answer" in str(caught.value)
    assert "systemctl start docker" in str(caught.value)


def test_the_server_and_its_status_report_a_missing_engine_as_their_own_error(monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", "unix://%s" % (tmp_path / "no-engine.sock"))
    spec = {"name": "sglang-server", "host_dirs": {"secrets": str(tmp_path)}}
    with pytest.raises(ServerError, match="systemctl start docker"):
        server_container.ServerContainer(spec)
    with pytest.raises(ServerError, match="systemctl start docker"):
        server_status.server_status("sglang-server", str(tmp_path))


@pytest.mark.parametrize(
    ("labels", "ours"),
    [
        ({"datacrunch.sglang.spec-hash": "abc"}, True),
        ({"datacrunch.sglang.tls-hash": "abc", "other": "x"}, True),
        ({"datacrunch.sglangx": "1", "com.example": "datacrunch.sglang.x"}, False),
        ({}, False),
        (None, False),
    ],
)
def test_what_is_ours_is_what_carries_a_label_of_the_collection(labels, ours):
    assert docker_sdk.is_ours(labels) is ours


def test_the_sdk_errors_keep_their_hierarchy():
    # The callers catch NotFound for a missing container and DockerException for any engine error.
    assert issubclass(docker_sdk.ImageNotFound, docker_sdk.NotFound)
    assert issubclass(docker_sdk.NotFound, docker_sdk.APIError)
    assert issubclass(docker_sdk.APIError, docker_sdk.DockerException)


class Containers:
    def __init__(self, known):
        self.known = known

    def get(self, name):
        if name not in self.known:
            raise docker_sdk.NotFound("No such container: %s" % name)
        return self.known[name]


class Client:
    def __init__(self, known):
        self.containers = Containers(known)


def test_a_missing_container_is_none():
    client = Client({"present": "the container"})
    assert docker_sdk.container_or_none(client, "present") == "the container"
    assert docker_sdk.container_or_none(client, "absent") is None
