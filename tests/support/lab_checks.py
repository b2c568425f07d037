"""Helpers for tests that check the lab's world: commands inside lab hosts, their inner containers, real
ansible-playbook runs from the repository, and HTTP against the endpoints. Lab hosts are containers on this
machine's Docker engine (simulated H200 hosts), so `docker exec` reaches them without going through Ansible.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = REPO_ROOT / ".venv" / "bin" / "ansible-playbook"


def lab_exec(host, *command, check=True, timeout=120):
    """Run a command inside a lab host; its stdout."""
    completed = subprocess.run(
        ["docker", "exec", host, *command], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and completed.returncode != 0:
        raise AssertionError("%s on %s failed (%d): %s" % (command, host, completed.returncode, completed.stderr))
    return completed.stdout


def inner_inspect(host, container):
    """`docker inspect` of a container in a lab host's own engine, or None when it does not exist."""
    out = lab_exec(host, "docker", "inspect", container, check=False)
    data = json.loads(out or "[]")
    return data[0] if data else None


def lab_host_address(host):
    out = subprocess.run(
        ["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", host],
        capture_output=True, text=True, check=True,
    ).stdout
    return out.split()[0]


def http(url, api_key=None, payload=None, timeout=60):
    """(status, body as text) of a GET, or a POST of payload as JSON."""
    headers = {"Content-Type": "application/json"} if payload is not None else {}
    if api_key:
        headers["Authorization"] = "Bearer " + api_key
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def scenario_inventory_args():
    """The --inventory arguments of the running molecule scenario."""
    ephemeral = os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]
    scenario = os.environ["MOLECULE_SCENARIO_DIRECTORY"]
    args = ["--inventory", os.path.join(ephemeral, "inventory", "hosts.yml")]
    extra = os.path.join(scenario, "inventory", "scenario.yml")
    if os.path.exists(extra):
        args += ["--inventory", extra]
    return args


def run_playbook(playbook, *args, env=None, timeout=900):
    """Run ansible-playbook from the repository root as a user would; the CompletedProcess (never raises)."""
    environment = dict(os.environ)
    environment.update(ANSIBLE_CONFIG=str(REPO_ROOT / "ansible.cfg"), ANSIBLE_FORCE_COLOR="0", PY_COLORS="0")
    environment.update(env or {})
    command = [str(ANSIBLE_PLAYBOOK), str(REPO_ROOT / playbook), *scenario_inventory_args(), *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, env=environment,
                          timeout=timeout, check=False)


def recap_changed(output):
    """changed= counts per host from a PLAY RECAP."""
    counts = {}
    for line in output.splitlines():
        if " : ok=" in line and "changed=" in line:
            host = line.split()[0]
            counts[host] = int(line.split("changed=")[1].split()[0])
    return counts
