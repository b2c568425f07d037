"""module_utils/gpu/docker_engine.py (stdlib HTTP over the engine's Unix socket) against a real HTTP server on a Unix
socket in tmp_path that answers as the Docker Engine API documents it (https://docs.docker.com/engine/api/v1.41/):
JSON bodies, `{"message": ...}` on errors, the multiplexed stream of logs and exec output.

It gives the answers a healthy engine on this machine cannot: a GPU probe that runs (no GPU here), failures in the
middle of a probe, errors that are not JSON. The same calls against this machine's real engine:
tests/integration/test_docker_engine.py.
"""

import json
import re
import socketserver
import struct
import threading
from http.server import BaseHTTPRequestHandler

import pytest

from ansible_collections.datacrunch.sglang.plugins.module_utils.gpu import docker_engine
from ansible_collections.datacrunch.sglang.plugins.module_utils.gpu.docker_engine import DockerApiError, DockerClient

CONTAINER_ID = "4f1c9a" + "0" * 58
EXEC_ID = "e7ec" + "1" * 60


def frame(stream, text):
    data = text.encode()
    return struct.pack(">BxxxI", stream, len(data)) + data


class FakeEngine(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """Routes (method, path regex) -> (status, body: dict/list -> JSON, bytes as they are, None -> empty);
    `asked` records (method, path, JSON body) of every request."""

    daemon_threads = True

    def __init__(self, path):
        self.routes = []
        self.asked = []
        super().__init__(path, self._handler())

    def answer(self, method, pattern, status, body=None):
        self.routes.insert(0, (method, re.compile(pattern + "$"), status, body))

    def _handler(self):
        engine = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _route(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                engine.asked.append((self.command, self.path, body))
                status, payload = 404, {"message": "page not found"}
                for method, pattern, route_status, route_body in engine.routes:
                    if method == self.command and pattern.match(self.path):
                        status, payload = route_status, route_body
                        break
                if isinstance(payload, (dict, list)):
                    data, kind = json.dumps(payload).encode(), "application/json"
                else:
                    data, kind = payload or b"", "text/plain"
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = _route

        return Handler


@pytest.fixture
def engine(tmp_path):
    path = str(tmp_path / "docker.sock")
    server = FakeEngine(path)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server, DockerClient(path, timeout=5)
    server.shutdown()
    server.server_close()


def test_socket_path_follows_a_unix_docker_host(monkeypatch):
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    assert docker_engine.socket_path() == "/var/run/docker.sock"
    assert docker_engine.socket_path("unix:///run/user/1000/docker.sock") == "/run/user/1000/docker.sock"
    monkeypatch.setenv("DOCKER_HOST", "unix:///srv/docker.sock")
    assert docker_engine.socket_path() == "/srv/docker.sock"
    monkeypatch.setenv("DOCKER_HOST", "tcp://10.0.0.5:2375")
    assert docker_engine.socket_path() == "/var/run/docker.sock"


def test_requests_go_to_the_pinned_api_version_with_a_json_body(engine):
    server, client = engine
    server.answer("POST", "/v1.41/containers/create", 201, {"Id": CONTAINER_ID, "Warnings": []})
    server.answer("POST", "/v1.41/containers/[0-9a-f]+/start", 204)
    created = client.request("POST", "/containers/create", body={"Image": "debian"})
    assert created == {"Id": CONTAINER_ID, "Warnings": []}
    assert client.request("POST", "/containers/%s/start" % CONTAINER_ID) is None
    assert server.asked == [("POST", "/v1.41/containers/create", {"Image": "debian"}),
                            ("POST", "/v1.41/containers/%s/start" % CONTAINER_ID, None)]


def test_errors_carry_the_engines_message_and_status(engine):
    server, client = engine
    server.answer("GET", "/v1.41/containers/nope/json", 404, {"message": "No such container: nope\n"})
    server.answer("GET", "/v1.41/info", 500, b"<html>proxy error</html>")
    server.answer("GET", "/v1.41/version", 503, b"")
    with pytest.raises(DockerApiError) as missing:
        client.get("/containers/nope/json")
    assert str(missing.value) == "No such container: nope" and missing.value.status == 404
    with pytest.raises(DockerApiError) as not_json:
        client.get("/info")
    assert str(not_json.value) == "<html>proxy error</html>" and not_json.value.status == 500
    with pytest.raises(DockerApiError) as empty:
        client.get("/version")
    assert str(empty.value) == "HTTP 503" and empty.value.status == 503


def test_a_socket_nobody_listens_on_is_an_api_error(tmp_path):
    client = DockerClient(str(tmp_path / "absent.sock"), timeout=2)
    with pytest.raises(DockerApiError) as error:
        client.get("/info")
    assert error.value.status is None and str(error.value).startswith("GET /info: ")


def test_engine_state_reads_runtimes_root_and_cdi_dirs(engine):
    server, client = engine
    server.answer("GET", "/v1.41/info", 200, {
        "Runtimes": {"runc": {"path": "runc"}, "nvidia": {"path": "nvidia-container-runtime"}},
        "DefaultRuntime": "nvidia", "DockerRootDir": "/mnt/docker", "CDISpecDirs": ["/etc/cdi", "/var/run/cdi"],
    })
    server.answer("GET", "/v1.41/version", 200, {"Version": "27.3.1", "ApiVersion": "1.47"})
    state = docker_engine.engine_state(client)
    assert state["installed"] is True and state["running"] is True and state["error"] == ""
    assert state["version"] == "27.3.1" and state["api_version"] == "1.47"
    assert state["runtimes"] == ["nvidia", "runc"] and state["default_runtime"] == "nvidia"
    assert state["root_dir"] == "/mnt/docker" and state["cdi_spec_dirs"] == ["/etc/cdi", "/var/run/cdi"]


def test_engine_state_when_the_engine_does_not_answer(engine, tmp_path):
    server, client = engine
    server.answer("GET", "/v1.41/info", 500, {"message": "daemon is shutting down"})
    state = docker_engine.engine_state(client)
    assert state["running"] is False
    assert state["error"] == "the Docker engine does not answer on %s: daemon is shutting down" % client.path
    absent = DockerClient(str(tmp_path / "none.sock"))
    state = docker_engine.engine_state(absent)
    assert state["running"] is False and state["error"] == "no Docker socket at %s" % absent.path


def test_image_state_present_absent_and_failing(engine):
    server, client = engine
    server.answer("GET", "/v1.41/images/lmsysorg%2Fsglang%3Av0.5.18/json", 200, {"Id": "sha256:abc", "Size": 42})
    server.answer("GET", "/v1.41/images/lmsysorg%2Fsglang%3Av0.5.23/json", 404,
                  {"message": "No such image: lmsysorg/sglang:v0.5.23"})
    server.answer("GET", "/v1.41/images/broken%3A1/json", 500, {"message": "layer does not exist"})
    assert docker_engine.image_state(client, "lmsysorg/sglang:v0.5.18") == {
        "image": "lmsysorg/sglang:v0.5.18", "present": True, "size": 42, "id": "sha256:abc", "error": ""}
    assert docker_engine.image_state(client, "lmsysorg/sglang:v0.5.23") == {
        "image": "lmsysorg/sglang:v0.5.23", "present": False, "size": 0, "id": "", "error": ""}
    assert docker_engine.image_state(client, "broken:1")["error"] == "layer does not exist"


def test_container_lists_are_empty_when_the_engine_fails(engine):
    server, client = engine
    server.answer("GET", r"/v1.41/containers/json.*", 500, {"message": "boom"})
    assert docker_engine.containers_publishing(client, 30000) == []
    assert docker_engine.our_containers(client) == []
    assert docker_engine.container_by_id(client, CONTAINER_ID) is None


def test_containers_publishing_matches_the_tcp_host_port_only(engine):
    server, client = engine
    server.answer("GET", r"/v1.41/containers/json", 200, [
        {"Id": "a1", "Names": ["/web"], "Image": "nginx", "Labels": {},
         "Ports": [{"PrivatePort": 80, "PublicPort": 30000, "Type": "tcp", "IP": "0.0.0.0"},
                   {"PrivatePort": 80, "PublicPort": 30000, "Type": "tcp", "IP": "::"}]},
        {"Id": "b2", "Names": ["/dns"], "Image": "coredns", "Labels": None,
         "Ports": [{"PrivatePort": 53, "PublicPort": 30000, "Type": "udp"}]},
        {"Id": "c3", "Names": None, "Image": "other", "Ports": [{"PrivatePort": 80}]},
    ])
    assert docker_engine.containers_publishing(client, 30000) == [
        {"id": "a1", "name": "web", "image": "nginx", "labels": {}}]


def test_our_containers_are_labelled_and_not_probes(engine):
    server, client = engine
    server.answer("GET", r"/v1.41/containers/json\?all=1", 200, [
        {"Id": "a1", "Names": ["/sglang-server"], "Image": "lmsysorg/sglang:v0.5.18", "State": "exited",
         "Labels": {"datacrunch.sglang.spec-hash": "f00"}},
        {"Id": "b2", "Names": ["/probe"], "Image": "lmsysorg/sglang:v0.5.18", "State": "running",
         "Labels": {"datacrunch.sglang.probe": "gpu"}},
        {"Id": "c3", "Names": ["/someone-elses"], "Image": "redis", "State": "running", "Labels": {"app": "redis"}},
    ])
    assert docker_engine.our_containers(client) == [
        {"id": "a1", "name": "sglang-server", "image": "lmsysorg/sglang:v0.5.18", "state": "exited",
         "labels": {"datacrunch.sglang.spec-hash": "f00"}}]


def test_container_by_id_reads_name_image_and_labels(engine):
    server, client = engine
    server.answer("GET", "/v1.41/containers/%s/json" % CONTAINER_ID, 200, {
        "Id": CONTAINER_ID, "Name": "/sglang-server",
        "Config": {"Image": "lmsysorg/sglang:v0.5.23", "Labels": {"datacrunch.sglang.rank": "0"}}})
    assert docker_engine.container_by_id(client, CONTAINER_ID) == {
        "id": CONTAINER_ID, "name": "sglang-server", "image": "lmsysorg/sglang:v0.5.23",
        "labels": {"datacrunch.sglang.rank": "0"}}


def test_demux_joins_stdout_and_stderr_frames_and_passes_plain_text():
    stream = frame(1, "GPU 0: NVIDIA H200 (UUID: GPU-1)\n") + frame(2, "warning\n") + frame(1, "GPU 1: NVIDIA H200\n")
    assert docker_engine._demux(stream) == "GPU 0: NVIDIA H200 (UUID: GPU-1)\nwarning\nGPU 1: NVIDIA H200\n"
    assert docker_engine._demux(b"GPU 0: NVIDIA H200 (tty)\n") == "GPU 0: NVIDIA H200 (tty)\n"
    assert docker_engine._demux(b"") == ""


def probe_routes(server, start=(204, None), wait=(200, {"StatusCode": 0, "Error": None}), delete=(204, None)):
    server.answer("POST", "/v1.41/containers/create", 201, {"Id": CONTAINER_ID, "Warnings": []})
    server.answer("POST", "/v1.41/containers/%s/start" % CONTAINER_ID, *start)
    server.answer("POST", "/v1.41/containers/%s/wait" % CONTAINER_ID, *wait)
    server.answer("GET", r"/v1.41/containers/%s/logs\?stdout=1&stderr=1" % CONTAINER_ID, 200,
                  frame(1, "GPU 0: NVIDIA H200 (UUID: GPU-a)\nGPU 1: NVIDIA H200 (UUID: GPU-b)\n"))
    server.answer("DELETE", r"/v1.41/containers/%s\?force=1&v=1" % CONTAINER_ID, *delete)


def test_gpu_probe_runs_asks_for_every_gpu_reads_the_output_and_removes_the_container(engine):
    server, client = engine
    probe_routes(server)
    result = docker_engine.gpu_probe(client, "lmsysorg/sglang:v0.5.18")
    assert result["ran"] is True and result["exit_code"] == 0 and result["error"] == ""
    assert result["output"] == "GPU 0: NVIDIA H200 (UUID: GPU-a)\nGPU 1: NVIDIA H200 (UUID: GPU-b)"
    method, path, body = server.asked[0]
    assert (method, path) == ("POST", "/v1.41/containers/create")
    assert body["Image"] == "lmsysorg/sglang:v0.5.18"
    assert body["Entrypoint"] == ["nvidia-smi"] and body["Cmd"] == ["-L"]
    assert body["Labels"] == {"datacrunch.sglang.probe": "gpu"}
    assert body["HostConfig"]["NetworkMode"] == "none"
    assert body["HostConfig"]["DeviceRequests"][0]["Count"] == -1
    assert body["HostConfig"]["DeviceRequests"][0]["Capabilities"] == [["gpu"]]
    assert [(m, p) for m, p, _b in server.asked][-1] == ("DELETE", "/v1.41/containers/%s?force=1&v=1" % CONTAINER_ID)


def test_gpu_probe_that_cannot_start_is_removed_and_says_why(engine):
    server, client = engine
    probe_routes(server, start=(500, {"message": 'could not select device driver "" with capabilities: [[gpu]]'}))
    result = docker_engine.gpu_probe(client, "lmsysorg/sglang:v0.5.18")
    assert result["ran"] is False and result["exit_code"] is None
    assert result["error"] == 'could not select device driver "" with capabilities: [[gpu]]'
    assert server.asked[-1][0] == "DELETE"


def test_gpu_probe_that_cannot_be_removed_says_so_after_the_first_error(engine):
    server, client = engine
    probe_routes(server, start=(500, {"message": "no GPU"}),
                 delete=(409, {"message": "removal of container is already in progress"}))
    result = docker_engine.gpu_probe(client, "img")
    assert result["error"] == ("no GPU; could not remove probe container %s: removal of container is already in "
                               "progress" % CONTAINER_ID[:12])
    probe_routes(server, delete=(500, {"message": "device busy"}))
    result = docker_engine.gpu_probe(client, "img")
    assert result["ran"] is True
    assert result["error"] == "could not remove probe container %s: device busy" % CONTAINER_ID[:12]


def test_gpu_probe_with_an_unexpected_answer_from_the_engine(engine):
    server, client = engine
    server.answer("POST", "/v1.41/containers/create", 201, {"Warnings": []})
    result = docker_engine.gpu_probe(client, "img")
    assert result["ran"] is False and result["error"].startswith("unexpected answer from the Docker engine: ")
    assert [m for m, _p, _b in server.asked] == ["POST"]  # nothing was created, nothing to remove


def test_gpu_exec_probe_runs_in_a_server_container(engine):
    server, client = engine
    server.answer("POST", "/v1.41/containers/%s/exec" % CONTAINER_ID, 201, {"Id": EXEC_ID})
    server.answer("POST", "/v1.41/exec/%s/start" % EXEC_ID, 200, frame(1, "GPU 0: NVIDIA H200 (UUID: GPU-a)\n"))
    server.answer("GET", "/v1.41/exec/%s/json" % EXEC_ID, 200, {"ExitCode": 0, "Running": False})
    container = {"id": CONTAINER_ID, "name": "sglang-server", "image": "lmsysorg/sglang:v0.5.18"}
    result = docker_engine.gpu_exec_probe(client, container)
    assert result["ran"] is True and result["exit_code"] == 0 and result["error"] == ""
    assert result["output"] == "GPU 0: NVIDIA H200 (UUID: GPU-a)" and result["via"] == "exec in sglang-server"
    assert server.asked[0][2] == {"AttachStdout": True, "AttachStderr": True, "Cmd": ["nvidia-smi", "-L"]}
    assert server.asked[1][2] == {"Detach": False, "Tty": False}


def test_gpu_exec_probe_failures(engine):
    server, client = engine
    container = {"id": CONTAINER_ID, "name": "sglang-server", "image": "img"}
    server.answer("POST", "/v1.41/containers/%s/exec" % CONTAINER_ID, 409,
                  {"message": "Container %s is not running" % CONTAINER_ID})
    result = docker_engine.gpu_exec_probe(client, container)
    assert result["ran"] is False and result["error"] == "Container %s is not running" % CONTAINER_ID
    server.answer("POST", "/v1.41/containers/%s/exec" % CONTAINER_ID, 201, {})
    result = docker_engine.gpu_exec_probe(client, container)
    assert result["ran"] is False and result["error"] == "unexpected answer from the Docker engine: 'Id'"
