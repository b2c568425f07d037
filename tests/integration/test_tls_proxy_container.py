"""The TLS proxy of role sglang_tls (module sglang_tls_proxy, module_utils/tls/proxy) on this machine's Docker engine,
through the collection's one Docker access layer (common/docker_sdk): a real nginx serving HTTPS from a read-only
mounted directory, replaced only when its hash label changes or it does not run, and never a container that is not
the collection's. Each test uses its own container name and port; every container is removed at the end."""

import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from ansible_collections.datacrunch.sglang.plugins.module_utils.common import docker_sdk
from ansible_collections.datacrunch.sglang.plugins.module_utils.tls import proxy
from ansible_collections.datacrunch.sglang.plugins.module_utils.tls.proxy import (
    LABEL_HASH,
    ProxyError,
    TlsProxy,
    proxy_spec,
    spec_hash,
)

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "datacrunch-sglang-lab/tls-proxy:bookworm"  # nginx from Debian's packages (tests/lab/tls-proxy/build.sh)
MISSING_IMAGE = "datacrunch-sglang-lab/not-built:never"
FULL_SETTLE = proxy.SETTLE_SECONDS

pytestmark = pytest.mark.skipif(shutil.which("docker") is None, reason="needs a Docker engine")

NGINX_CONF = """
worker_processes 1;
pid /tmp/nginx.pid;
error_log stderr warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {dir}/cert.pem;
        ssl_certificate_key {dir}/key.pem;
        location /health {{ return 200 "{answer}"; }}
    }}
}}
"""


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(autouse=True)
def quick_settle(monkeypatch):
    """A good proxy is watched for half a second here; the test of a refused configuration keeps the full time."""
    monkeypatch.setattr(proxy, "SETTLE_SECONDS", 0.5)


@pytest.fixture(scope="module", autouse=True)
def proxy_image():
    """The lab's nginx image, built here when missing (tests/lab/tls-proxy/build.sh: only when its inputs changed; it
    needs the lab's base image, which tests/setup.sh images builds)."""
    built = subprocess.run([str(ROOT / "tests/lab/tls-proxy/build.sh")], capture_output=True, text=True, check=False)
    assert built.returncode == 0, built.stderr


@pytest.fixture(scope="module")
def client():
    return docker_sdk.connect(timeout=60)


@pytest.fixture
def name(client):
    """A container name of this test alone; whatever carries it is removed at the end."""
    name = "dcsg-test-tls-%s" % uuid.uuid4().hex[:10]
    yield name
    container = docker_sdk.container_or_none(client, name)
    if container is not None:
        container.remove(force=True)


@pytest.fixture
def site(tmp_path):
    """A proxy directory: an nginx configuration on a free loopback port, a self-signed certificate and key."""
    directory = tmp_path / "tls"
    directory.mkdir(mode=0o700)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-days", "2", "-subj", "/CN=127.0.0.1", "-keyout", str(directory / "key.pem"),
                    "-out", str(directory / "cert.pem")], check=True, capture_output=True)  # fmt: skip
    port = free_port()

    def write(answer="ok", extra=""):
        (directory / "nginx.conf").write_text(NGINX_CONF.format(port=port, dir=directory, answer=answer) + extra)

    write()
    return {"dir": str(directory), "port": port, "write": write}


def https(port, path="/health"):
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    deadline = time.monotonic() + 15
    while True:
        try:
            with urllib.request.urlopen("https://127.0.0.1:%d%s" % (port, path), context=context, timeout=5) as answer:
                return answer.status, answer.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_the_proxy_serves_https_as_the_spec_wants_and_a_second_run_changes_nothing(client, name, site):
    spec = proxy_spec(name, IMAGE, site["dir"], "digest-1")
    result = TlsProxy(client).ensure(spec, "never")
    assert result["changed"] is True
    assert result["actions"] == ["create %s" % name]
    assert https(site["port"]) == (200, "ok")

    container = client.containers.get(name)
    host = container.attrs["HostConfig"]
    assert container.labels[LABEL_HASH] == spec_hash(spec) == result["tls_hash"]
    assert container.id == result["container_id"]
    assert host["NetworkMode"] == "host"
    assert host["RestartPolicy"]["Name"] == "unless-stopped"
    assert host["LogConfig"]["Config"] == {"max-size": "10m", "max-file": "3"}
    assert [(m["Source"], m["Destination"], m["RW"]) for m in container.attrs["Mounts"]] == [
        (site["dir"], site["dir"], False)]
    assert container.attrs["Config"]["Cmd"] == ["nginx", "-c", site["dir"] + "/nginx.conf", "-g", "daemon off;"]

    again = TlsProxy(client).ensure(spec, "never")
    assert (again["changed"], again["actions"], again["container_id"]) == (False, [], container.id)


def test_new_files_replace_the_proxy_and_check_mode_only_says_so(client, name, site):
    first = TlsProxy(client).ensure(proxy_spec(name, IMAGE, site["dir"], "digest-1"), "never")
    site["write"](answer="new")
    new_spec = proxy_spec(name, IMAGE, site["dir"], "digest-2")

    checked = TlsProxy(client, check_mode=True).ensure(new_spec, "never")
    assert checked["changed"] is True
    assert checked["actions"] == ["replace %s (its spec changed)" % name]
    assert checked["diff"]["before"]["tls_hash"] == first["tls_hash"]
    assert checked["diff"]["after"]["tls_hash"] == spec_hash(new_spec)
    assert client.containers.get(name).id == first["container_id"]
    assert https(site["port"]) == (200, "ok")

    replaced = TlsProxy(client).ensure(new_spec, "never")
    assert replaced["changed"] is True and replaced["container_id"] != first["container_id"]
    assert client.containers.get(name).labels[LABEL_HASH] == spec_hash(new_spec)
    assert https(site["port"]) == (200, "new")


def test_a_stopped_proxy_is_started_again(client, name, site):
    spec = proxy_spec(name, IMAGE, site["dir"], "digest-1")
    TlsProxy(client).ensure(spec, "never")
    client.containers.get(name).stop(timeout=5)
    result = TlsProxy(client).ensure(spec, "never")
    assert result["changed"] is True
    assert result["actions"] == ["replace %s (it is exited)" % name]
    assert client.containers.get(name).status == "running"
    assert https(site["port"]) == (200, "ok")


def test_a_missing_image_with_pull_never_fails_before_the_running_proxy_is_touched(client, name, site):
    running = TlsProxy(client).ensure(proxy_spec(name, IMAGE, site["dir"], "digest-1"), "never")
    with pytest.raises(ProxyError, match="sglang_tls_pull=never forbids pulling it"):
        TlsProxy(client).ensure(proxy_spec(name, MISSING_IMAGE, site["dir"], "digest-1"), "never")
    assert client.containers.get(name).id == running["container_id"]
    assert https(site["port"]) == (200, "ok")


def test_a_configuration_nginx_refuses_fails_with_its_words(client, name, site, monkeypatch):
    monkeypatch.setattr(proxy, "SETTLE_SECONDS", FULL_SETTLE)
    site["write"](extra="this is not nginx;\n")
    with pytest.raises(ProxyError, match="stopped right after it started") as caught:
        TlsProxy(client).ensure(proxy_spec(name, IMAGE, site["dir"], "digest-bad"), "never")
    assert "unknown directive" in caught.value.logs


def test_a_container_that_is_not_ours_is_never_replaced_nor_removed(client, name, site):
    foreign = client.containers.run(IMAGE, ["sleep", "300"], name=name, detach=True, labels={"com.example": "x"})
    with pytest.raises(ProxyError, match="is not the collection's"):
        TlsProxy(client).ensure(proxy_spec(name, IMAGE, site["dir"], "digest-1"), "never")
    removal = TlsProxy(client).remove(name)
    assert removal["changed"] is False and "left alone" in removal["warnings"][0]
    assert client.containers.get(name).id == foreign.id


def test_removal_removes_the_proxy_once_and_check_mode_keeps_it(client, name, site):
    created = TlsProxy(client).ensure(proxy_spec(name, IMAGE, site["dir"], "digest-1"), "never")
    checked = TlsProxy(client, check_mode=True).remove(name)
    assert checked["changed"] is True and checked["actions"] == ["remove %s" % name]
    assert client.containers.get(name).id == created["container_id"]

    assert TlsProxy(client).remove(name)["changed"] is True
    assert docker_sdk.container_or_none(client, name) is None
    assert TlsProxy(client).remove(name)["changed"] is False


def run_module(args, *flags):
    """The module as a play runs it (ad hoc, on this machine): its result, "failed" set from the status word."""
    env = dict(os.environ, ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_STDOUT_CALLBACK="oneline",
               ANSIBLE_CALLBACK_RESULT_FORMAT="json", ANSIBLE_PYTHON_INTERPRETER=sys.executable)  # fmt: skip
    ansible = str(Path(sys.executable).parent / "ansible")
    module = "datacrunch.sglang.sglang_tls_proxy"
    completed = subprocess.run(
        [ansible, "localhost", "-c", "local", "-m", module, "-a", json.dumps(args), *flags],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    line = next(line for line in completed.stdout.splitlines() if line.startswith("localhost | "))
    status, result = line.split(" => ", 1)
    return dict(json.loads(result), failed="FAILED" in status)


def test_the_module_reports_check_mode_diff_and_idempotence(client, name, site):
    args = {"container_name": name, "image": IMAGE, "pull": "never", "dir": site["dir"], "config_digest": "d1"}
    checked = run_module(args, "--check", "--diff", "-vvv")  # -vvv: the callback keeps the diff in the result
    assert checked["changed"] is True and checked["diff"]["before"] == {"state": "absent"}
    assert docker_sdk.container_or_none(client, name) is None

    made = run_module(args)
    assert made["changed"] is True and made["failed"] is False
    assert https(site["port"]) == (200, "ok")
    assert run_module(args)["changed"] is False

    refused = run_module(dict(args, image=MISSING_IMAGE))
    assert refused["failed"] is True and "sglang_tls_pull=never" in refused["msg"]
    assert run_module({"container_name": name, "state": "absent"})["changed"] is True
    assert docker_sdk.container_or_none(client, name) is None
