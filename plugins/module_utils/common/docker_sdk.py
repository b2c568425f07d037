# -*- coding: utf-8 -*-
# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The modules' one way to the host's Docker engine: the docker SDK, from the virtualenv role host_venv makes.

Everything that runs after host_venv (the server container, its status, the benchmarks, the TLS proxy) connects
here. The only other client is ``gpu/docker_engine.py`` (standard library over the Unix socket), because the
preflight runs under the system Python of a fresh host, before host_venv has made the virtualenv.

Importing this file never fails: without the SDK, ``connect`` raises ``DockerUnavailable`` with the fix, and the
SDK's exception names stay defined (as never-raised stand-ins) so that ``except`` clauses keep working.
"""

from __future__ import annotations

from ansible_collections.datacrunch.sglang.plugins.module_utils.common.labels import LABEL_PREFIX, is_ours

try:
    import docker
    from docker.errors import APIError, DockerException, ImageNotFound, NotFound
    from docker.types import DeviceRequest, LogConfig, Mount, Ulimit

    SDK_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - depends on the host
    docker = None
    SDK_IMPORT_ERROR = str(exc)
    DeviceRequest = LogConfig = Mount = Ulimit = None

    class DockerException(Exception):
        """Stand-in of docker.errors.DockerException: never raised without the SDK."""

    class APIError(DockerException):
        pass

    class NotFound(APIError):
        pass

    class ImageNotFound(NotFound):
        pass


HAS_DOCKER_SDK = docker is not None

# The SDK's names the other files take from here, so that they import without the SDK too.
__all__ = [
    "DEFAULT_TIMEOUT",
    "HAS_DOCKER_SDK",
    "LABEL_PREFIX",
    "APIError",
    "DeviceRequest",
    "DockerException",
    "DockerUnavailable",
    "ImageNotFound",
    "LogConfig",
    "Mount",
    "NotFound",
    "Ulimit",
    "connect",
    "container_or_none",
    "is_ours",
    "missing_sdk_message",
]
# Seconds a call to the engine may take before the SDK gives up (a pull or a stop may pass a longer one).
DEFAULT_TIMEOUT = 120


class DockerUnavailable(Exception):
    """The SDK is missing or the engine does not answer; the message says how to fix it."""


def missing_sdk_message():
    return (
        "the docker Python SDK is not importable on this host (%s); run the datacrunch.sglang.host_venv role first "
        "so that modules run in the collection's virtualenv" % SDK_IMPORT_ERROR
    )


def connect(timeout=DEFAULT_TIMEOUT):
    """A client of the host's engine (DOCKER_HOST, else the default socket) that has answered a ping."""
    if not HAS_DOCKER_SDK:
        raise DockerUnavailable(missing_sdk_message())
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except DockerException as exc:
        raise DockerUnavailable(
            "the Docker engine on this host does not answer (%s); start it (systemctl start docker)" % exc
        ) from None
    return client


def container_or_none(client, name):
    """The container of that name or id, None when the engine has none."""
    try:
        return client.containers.get(name)
    except NotFound:
        return None
