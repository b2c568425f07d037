"""The playbooks read the same from any directory: playbooks/status.yml, run from the repository root, from
playbooks/ and from elsewhere (where ansible.cfg is not read), prints the same fleet table, with the checkout's
collection. A real ansible-playbook run against this machine (local connection, its real Docker engine), whose host
virtualenv is this checkout's environment."""

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
CONTAINER = "dcsg-anywhere-absent-server"

pytestmark = pytest.mark.skipif(subprocess.run(["docker", "info"], capture_output=True, check=False).returncode != 0,
                                reason="needs a Docker engine")


@pytest.fixture(scope="module")
def inventory(tmp_path_factory):
    work = tmp_path_factory.mktemp("anywhere")
    venv = work / "venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin/python"
    python.write_text("#!/bin/sh\nexec %s \"$@\"\n" % sys.executable)
    python.chmod(0o755)
    requirements = ROOT / "roles/host_venv/files/requirements.txt"
    # host_venv's stamp of a current virtualenv: nothing is installed on this machine.
    stamp = "%s||%s" % (requirements.read_text().rstrip("\n"), sys.executable)
    (venv / ".datacrunch-sglang.sha256").write_text(hashlib.sha256(stamp.encode()).hexdigest() + "\n")
    (work / "inventory").mkdir()
    (work / "inventory/hosts.yml").write_text(
        "all:\n  children:\n    sglang_servers:\n      hosts:\n        this-machine:\n"
        "          ansible_connection: local\n"
        "          ansible_python_interpreter: %s\n"
        "          host_venv_path: %s\n"
        "          host_venv_python: %s\n"
        "          sglang_server_container_name: %s\n"
        "          sglang_server_secrets_dir: %s\n"
        "          sglang_server_api_key_file: %s\n"
        % (sys.executable, venv, sys.executable, CONTAINER, work / "secrets", work / "api-key"))
    return work / "inventory"


def status_table(inventory, cwd):
    env = {name: value for name, value in os.environ.items() if not name.startswith("ANSIBLE_")}
    run = subprocess.run([str(ANSIBLE_PLAYBOOK), str(ROOT / "playbooks/status.yml"), "-i", str(inventory)],
                         cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "[WARNING]: The playbook is in the checkout" not in run.stdout + run.stderr
    shown = run.stdout.split("TASK [datacrunch.sglang.sglang_server : Show the fleet]", 1)[1]
    return [line for line in shown.splitlines()[1:] if line.strip() and not line.startswith(("ok:", "PLAY"))][:4]


def test_status_prints_the_same_table_from_the_root_from_playbooks_and_from_elsewhere(inventory, tmp_path):
    from_root = status_table(inventory, ROOT)
    assert re.match(r"^\s*host\b", from_root[0], re.IGNORECASE), from_root
    assert any("this-machine" in line for line in from_root), from_root
    assert not any('"msg"' in line or "\\n" in line for line in from_root), from_root
    assert status_table(inventory, ROOT / "playbooks") == from_root
    assert status_table(inventory, tmp_path) == from_root
