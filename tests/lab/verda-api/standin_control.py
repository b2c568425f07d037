"""Start the DataCrunch (Verda) API stand-in and steer it from tests: faults, pool, seed, request log.

In-process (a thread, for unit tests) or as its own process on loopback (for ansible-playbook and ansible-inventory
runs, which read VERDA_BASE_URL).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
SERVER = HERE / "verda_api_standin.py"
CLIENT_ID = "standin-client-7f3a"
CLIENT_SECRET = "standin-secret-d41c9b2e5a"  # only ever valid against the stand-in

sys.path.insert(0, str(HERE))
import verda_api_standin  # noqa: E402


class Control:
    """The stand-in's control endpoints (outside the API, no auth)."""

    def __init__(self, base_url):
        self.base_url = base_url
        self.root = base_url[: -len(verda_api_standin.API_PREFIX)] + verda_api_standin.ADMIN_PREFIX

    def _call(self, method, route, payload=None):
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(self.root + route, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            body = answer.read()
        return json.loads(body) if body else None

    def fault(self, kind, count=1, method=None, path=None, retry_after=1, **extra):
        self._call("POST", "/faults", {"kind": kind, "count": count, "method": method, "path": path,
                                       "retry_after": retry_after, **extra})

    def shapes(self, **spec):
        """Chooses among the answer shapes the SDKs document (verda_api_standin.SHAPES), until the next reset."""
        self._call("POST", "/shapes", spec)

    def clear_faults(self):
        self._call("DELETE", "/faults")

    def requests(self):
        return self._call("GET", "/requests")

    def clear_requests(self):
        self._call("DELETE", "/requests")

    def state(self):
        return self._call("GET", "/state")

    def tokens(self):
        """Every access and refresh token the stand-in handed out."""
        return self._call("GET", "/tokens")

    def seed(self, instances=(), clusters=()):
        self._call("POST", "/seed", {"instances": list(instances), "clusters": list(clusters)})

    def reset(self, pool=()):
        self._call("POST", "/reset", {"addresses": list(pool)})

    def set_pool(self, addresses):
        self._call("POST", "/pool", {"addresses": list(addresses)})

    def env(self):
        """The environment a client needs to reach this stand-in."""
        return {"VERDA_BASE_URL": self.base_url, "VERDA_CLIENT_ID": CLIENT_ID, "VERDA_CLIENT_SECRET": CLIENT_SECRET}


class BannerServer:
    """A stand-in for an SSH server's first words: answers every TCP connection on loopback with the protocol
    banner an SSH server sends first (or any other line, to test that it is refused). Nothing more of SSH."""

    def __init__(self, banner=b"SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13\r\n"):
        self.banner = banner
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(16)
        self.port = self.socket.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                connection, _address = self.socket.accept()
            except OSError:
                return
            self.connections += 1
            with connection:
                connection.sendall(self.banner)

    def close(self):
        self.socket.close()


@contextlib.contextmanager
def in_thread(**options):
    """The stand-in in this process, on a free loopback port."""
    options.setdefault("provision_seconds", 0.4)
    options.setdefault("action_seconds", 0.2)
    state = verda_api_standin.StandInState(CLIENT_ID, CLIENT_SECRET, **options)
    server = verda_api_standin.StandInServer(("127.0.0.1", 0), state)
    server.start_background()
    try:
        yield Control(server.base_url)
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def in_process(*args, env=None):
    """The stand-in as its own process (`python3 verda_api_standin.py ARGS`), on a free loopback port."""
    with tempfile.TemporaryDirectory(prefix="verda-standin-") as tmp:
        url_file = os.path.join(tmp, "url")
        command = [sys.executable, str(SERVER), "--listen", "127.0.0.1:0", "--url-file", url_file,
                   "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET, *args]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   env={**os.environ, **(env or {})})
        try:
            deadline = time.monotonic() + 15
            while not os.path.exists(url_file):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the API stand-in did not start: " + process.stderr.read().decode())
                time.sleep(0.05)
            with open(url_file, encoding="utf-8") as handle:
                yield Control(handle.read().strip())
        finally:
            process.terminate()
            process.wait(timeout=10)


REPO_ROOT = HERE.parents[2]
VENV_BIN = REPO_ROOT / ".venv" / "bin"
# Settings of the environment that would steer the collection away from the stand-in.
_FOREIGN = ("VERDA_", "DATACRUNCH_", "ANSIBLE_INVENTORY", "ANSIBLE_CACHE")


def ansible(tool, *args, control=None, env=None, timeout=600):
    """Runs an Ansible command line from the repository root against the stand-in; output is stdout + stderr."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith(_FOREIGN)}
    environment["PATH"] = f"{VENV_BIN}:{environment.get('PATH', '')}"
    environment["ANSIBLE_NOCOLOR"] = "1"
    if control is not None:
        environment.update(control.env())
    environment.update(env or {})
    completed = subprocess.run(
        [str(VENV_BIN / tool), *args], cwd=REPO_ROOT, env=environment, capture_output=True, text=True,
        timeout=timeout, check=False,
    )
    completed.output = completed.stdout + completed.stderr
    return completed
