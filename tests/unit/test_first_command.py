"""The closing block of the first command (tests/lab/deploy-to-lab.sh) holds to what it says: every command it
prints names a file, playbook, inventory and subcommand of this checkout, and the API key file it names is the one
deploy.yml generates for the lab's inventory."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.any_python

ROOT = Path(__file__).resolve().parents[2]
NEXT_STEPS = ROOT / "tests/lab/next-steps.sh"
INVENTORY = "inventories/lab"


def bash(script, cwd=ROOT, **env):
    return subprocess.run(["bash", "-c", "set -euo pipefail; source %s; %s" % (NEXT_STEPS, script)], cwd=cwd,
                          env={**{k: v for k, v in os.environ.items() if k != "LAB_NAME"}, **env},
                          check=True, capture_output=True, text=True).stdout


def closing_block(**env):
    return bash('print_next_steps 10.211.0.11 http://10.211.0.11:30000 "$(lab_api_key_file %s)" %s 10.211.0.1'
                % (INVENTORY, INVENTORY), **env)


def commands(block):
    return [line.split(" # ")[0].strip() for line in block.splitlines() if line.startswith("  ")]


def test_the_block_says_where_the_endpoint_and_key_are_and_that_the_lab_is_simulated():
    block = closing_block()
    key_file = bash("lab_api_key_file %s" % INVENTORY).strip()
    assert "serves the stand-in SGLang server at http://10.211.0.11:30000" in block
    assert "simulated: no GPU" in block
    assert "API key: %s (mode 0600" % key_file in block
    assert 'curl -s -H "Authorization: Bearer $(cat %s)" http://10.211.0.11:30000/v1/models' % key_file in block


def test_every_command_names_what_the_checkout_has():
    names = commands(closing_block())
    playbooks = [shlex.split(command) for command in names if command.startswith("ansible-playbook ")]
    assert {words[1] for words in playbooks} == {
        "playbooks/status.yml", "playbooks/benchmark.yml", "playbooks/logs.yml", "playbooks/teardown.yml"}
    for words in playbooks:
        assert (ROOT / words[1]).is_file(), words
        assert words[2:] == ["-i", INVENTORY] and (ROOT / INVENTORY).is_dir(), words
    activate = [command for command in names if "activate" in command]
    assert activate == ["cd %s && source .venv/bin/activate" % ROOT]
    # The activated environment is the one that has the playbooks' tool.
    assert (ROOT / ".venv/bin/activate").is_file() and os.access(ROOT / ".venv/bin/ansible-playbook", os.X_OK)
    assert names[-1] == "tests/lab/lab.sh down"
    usage = (ROOT / "tests/lab/lab.sh").read_text()
    assert re.search(r"^#   lab\.sh down +remove the hosts, volumes, network", usage, re.MULTILINE)
    assert re.search(r"^    down\) cmd_down", usage, re.MULTILINE) or "down) cmd_down" in usage


def test_the_key_file_is_the_one_deploy_generates_for_that_inventory(tmp_path):
    inventory = tmp_path / "lab"
    inventory.mkdir()
    (inventory / "hosts.yml").write_text("all:\n  hosts:\n    lab-1:\n      ansible_connection: local\n")
    playbook = tmp_path / "key.yml"
    playbook.write_text(
        "- hosts: lab-1\n  gather_facts: false\n  vars_files: [%s]\n  tasks:\n"
        "    - ansible.builtin.debug: {msg: 'KEY={{ sglang_server_api_key_file }}'}\n"
        % (ROOT / "roles/sglang_server/defaults/main.yml"))
    run = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory), str(playbook)],
                         cwd=tmp_path, capture_output=True, text=True, check=True)
    from_ansible = re.search(r"KEY=(\S+?)\"", run.stdout).group(1)
    assert from_ansible == bash("lab_api_key_file %s" % inventory).strip()
    assert from_ansible != bash("lab_api_key_file %s" % (ROOT / "inventories/datacrunch")).strip()


def test_the_first_command_prints_the_block_for_the_inventory_it_deployed():
    script = (ROOT / "tests/lab/deploy-to-lab.sh").read_text()
    assert "ansible-playbook deploy.yml -i %s" % INVENTORY in script
    assert "key_file=$(lab_api_key_file %s)" % INVENTORY in script
    assert script.rstrip().endswith('print_next_steps "$host" "$endpoint" "$key_file" %s "$gateway"' % INVENTORY)
    assert 'v["lab_gateway"]' in script


def test_the_block_says_where_the_lab_services_listen():
    """The addresses it names are where tests/integration/test_lab_host.py finds the services listening."""
    block = closing_block()
    assert ("The lab services (Hub stand-in :18090, wheel index :18091, NVIDIA apt stand-in :18092) listen on "
            "127.0.0.1\nand 10.211.0.1 (the lab network's gateway) only, not on every interface.") in block
    moved = closing_block(HUB_PORT="28090", LAB_WHEEL_PORT="28091", LAB_NVIDIA_APT_PORT="28092")
    assert "(Hub stand-in :28090, wheel index :28091, NVIDIA apt stand-in :28092)" in moved
