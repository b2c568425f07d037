# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the preflight asks the host's Docker engine, through its API on the Unix socket.

Standard library only (http.client over AF_UNIX), because the preflight (``gpu_info``) runs under the system Python
of a fresh host, before role host_venv has made the virtualenv that holds the docker SDK. This is the collection's
only Docker client besides the SDK: everything that runs after host_venv (the server container, its status, the
benchmarks, the TLS proxy) goes through ``common/docker_sdk.py`` instead, and nothing should be added here that the
preflight does not need. (``gpu_probe`` is also what the image prefetch runs, so that its GPU check is the
preflight's own.) Read-only except ``gpu_probe``, which runs a throw-away container and removes it.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import struct
import time
import urllib.parse

DEFAULT_SOCKET = "/var/run/docker.sock"
API_VERSION = "v1.41"  # Docker 20.10; every newer engine answers it too
PROBE_LABEL = "datacrunch.sglang.probe"
ENGINE_BINARIES = ("dockerd", "docker")
SEARCH_DIRS = ("/usr/bin", "/usr/local/bin", "/usr/sbin", "/usr/local/sbin", "/bin", "/sbin", "/snap/bin")


class DockerApiError(Exception):
    def __init__(self, message, status=None):
        super().__init__(message)
        self.status = status


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


def socket_path(docker_host=""):
    """The engine's socket: DOCKER_HOST=unix://... when set, else /var/run/docker.sock."""
    host = docker_host or os.environ.get("DOCKER_HOST", "")
    if host.startswith("unix://"):
        return host[len("unix://") :]
    return DEFAULT_SOCKET


class DockerClient:
    def __init__(self, path=DEFAULT_SOCKET, timeout=30):
        self.path = path
        self.timeout = timeout

    def request(self, method, url, body=None, timeout=None, raw=False):
        connection = _UnixConnection(self.path, timeout or self.timeout)
        try:
            headers = {"Host": "docker"}
            payload = None
            if body is not None:
                payload = json.dumps(body).encode()
                headers["Content-Type"] = "application/json"
            connection.request(method, f"/{API_VERSION}{url}", body=payload, headers=headers)
            response = connection.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise DockerApiError(f"{method} {url}: {exc}") from exc
        finally:
            connection.close()
        if response.status >= 400:
            try:
                message = json.loads(data.decode()).get("message", "")
            except ValueError:
                message = data.decode(errors="replace")
            raise DockerApiError(message.strip() or f"HTTP {response.status}", response.status)
        if raw:
            return data
        if not data:
            return None
        return json.loads(data.decode())

    def get(self, url, **kwargs):
        return self.request("GET", url, **kwargs)


def _which(name):
    return shutil.which(name) or shutil.which(name, path=":".join(SEARCH_DIRS))


def engine_state(client):
    """The engine as the preflight needs it: running, version, runtimes, root dir, CDI dirs."""
    state = {
        "socket": client.path,
        "installed": any(_which(name) for name in ENGINE_BINARIES) or os.path.exists(client.path),
        "running": False,
        "version": "",
        "api_version": "",
        "runtimes": [],
        "default_runtime": "",
        "root_dir": "",
        "cdi_spec_dirs": [],
        "error": "",
    }
    if not os.path.exists(client.path):
        state["error"] = f"no Docker socket at {client.path}"
        return state
    try:
        info = client.get("/info")
        version = client.get("/version")
    except DockerApiError as exc:
        state["error"] = f"the Docker engine does not answer on {client.path}: {exc}"
        return state
    state.update(
        running=True,
        version=version.get("Version", ""),
        api_version=version.get("ApiVersion", ""),
        runtimes=sorted((info.get("Runtimes") or {}).keys()),
        default_runtime=info.get("DefaultRuntime", ""),
        root_dir=info.get("DockerRootDir", ""),
        cdi_spec_dirs=info.get("CDISpecDirs") or [],
    )
    return state


def image_state(client, reference):
    """Whether an image is in the engine, and its size."""
    try:
        image = client.get("/images/{}/json".format(urllib.parse.quote(reference, safe="")))
    except DockerApiError as exc:
        if exc.status == 404:
            return {"image": reference, "present": False, "size": 0, "id": "", "error": ""}
        return {"image": reference, "present": False, "size": 0, "id": "", "error": str(exc)}
    return {"image": reference, "present": True, "size": image.get("Size", 0), "id": image.get("Id", ""), "error": ""}


def container_by_id(client, container_id):
    """name, image, labels of a container; None when the engine does not know the id."""
    try:
        data = client.get(f"/containers/{container_id}/json")
    except DockerApiError:
        return None
    config = data.get("Config") or {}
    return {
        "id": data.get("Id", container_id),
        "name": (data.get("Name") or "").lstrip("/"),
        "image": config.get("Image", ""),
        "labels": config.get("Labels") or {},
    }


def _listed(container):
    """Id, name, image and labels of an entry of the engine's container list (GET /containers/json)."""
    return {
        "id": container.get("Id", ""),
        "name": ((container.get("Names") or ["/"])[0]).lstrip("/"),
        "image": container.get("Image", ""),
        "labels": container.get("Labels") or {},
    }


def containers_publishing(client, port):
    """Containers that publish a host TCP port (what a docker-proxy listener serves)."""
    try:
        containers = client.get("/containers/json")
    except DockerApiError:
        return []
    found = []
    for container in containers or []:
        for binding in container.get("Ports") or []:
            if binding.get("PublicPort") == port and binding.get("Type", "tcp") == "tcp":
                found.append(_listed(container))
                break
    return found


def our_containers(client):
    """Containers this collection made (any ``datacrunch.sglang.*`` label): id, name, image, state, labels."""
    try:
        containers = client.get("/containers/json?all=1")
    except DockerApiError:
        return []
    ours = []
    for container in containers or []:
        labels = container.get("Labels") or {}
        if any(key.startswith("datacrunch.sglang.") for key in labels) and PROBE_LABEL not in labels:
            ours.append({**_listed(container), "state": container.get("State", "")})
    return ours


def gpu_exec_probe(client, container, command=("nvidia-smi", "-L"), timeout=120):
    """Run ``nvidia-smi -L`` inside a running container of ours that asked for every GPU (a server of the same
    image): the same proof as a throw-away ``docker run --gpus all``, without creating a container."""
    result = {"image": container["image"], "ran": False, "exit_code": None, "output": "", "error": "", "seconds": 0.0,
              "via": "exec in %s" % container["name"]}
    started = time.monotonic()
    try:
        created = client.request(
            "POST",
            "/containers/{}/exec".format(container["id"]),
            body={"AttachStdout": True, "AttachStderr": True, "Cmd": list(command)},
        )
        output = client.request("POST", "/exec/{}/start".format(created["Id"]), body={"Detach": False, "Tty": False},
                                raw=True, timeout=timeout)
        result["output"] = _demux(output).strip()
        result["exit_code"] = client.get("/exec/{}/json".format(created["Id"])).get("ExitCode")
        result["ran"] = True
    except DockerApiError as exc:
        result["error"] = str(exc)
    except (KeyError, TypeError, ValueError) as exc:
        result["error"] = f"unexpected answer from the Docker engine: {exc}"
    result["seconds"] = round(time.monotonic() - started, 2)
    return result


def _demux(data):
    """Docker's multiplexed log stream (8-byte frame headers) to text; plain text passes through."""
    out = []
    position = 0
    while position + 8 <= len(data) and data[position] in (0, 1, 2) and data[position + 1 : position + 4] == b"\0\0\0":
        (size,) = struct.unpack(">I", data[position + 4 : position + 8])
        out.append(data[position + 8 : position + 8 + size])
        position += 8 + size
    if position == 0:
        return data.decode(errors="replace")
    return b"".join(out).decode(errors="replace")


def gpu_probe(client, image, command=("nvidia-smi", "-L"), timeout=120):
    """Run ``nvidia-smi -L`` in a container that asks for every GPU (``docker run --gpus all``), then remove it.

    Returns ``{ran, exit_code, output, error, seconds}``. The container is removed whatever happens.
    """
    result = {"image": image, "ran": False, "exit_code": None, "output": "", "error": "", "seconds": 0.0}
    started = time.monotonic()
    body = {
        "Image": image,
        "Entrypoint": [command[0]],
        "Cmd": list(command[1:]),
        "Labels": {PROBE_LABEL: "gpu"},
        "HostConfig": {
            "NetworkMode": "none",
            "DeviceRequests": [
                {"Driver": "", "Count": -1, "DeviceIDs": None, "Capabilities": [["gpu"]], "Options": {}}
            ],
        },
    }
    container_id = None
    try:
        created = client.request("POST", "/containers/create", body=body)
        container_id = created["Id"]
        client.request("POST", f"/containers/{container_id}/start")
        waited = client.request("POST", f"/containers/{container_id}/wait", timeout=timeout)
        result["exit_code"] = waited.get("StatusCode")
        logs = client.request("GET", f"/containers/{container_id}/logs?stdout=1&stderr=1", raw=True)
        result["output"] = _demux(logs).strip()
        result["ran"] = True
    except DockerApiError as exc:
        result["error"] = str(exc)
    except (KeyError, TypeError, ValueError) as exc:
        result["error"] = f"unexpected answer from the Docker engine: {exc}"
    finally:
        if container_id:
            try:
                client.request("DELETE", f"/containers/{container_id}?force=1&v=1")
            except DockerApiError as exc:
                result["error"] = (result["error"] + "; " if result["error"] else "") + (
                    f"could not remove probe container {container_id[:12]}: {exc}"
                )
    result["seconds"] = round(time.monotonic() - started, 2)
    return result
