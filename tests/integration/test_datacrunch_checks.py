"""Inputs refused on the controller, before any host is contacted: an inventory without serving hosts, and a model id
or revision that breaks Hugging Face's or git's naming rules.

The "host" is a loopback port that answers with an SSH banner and counts connections: any contact shows.
"""

import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lab" / "verda-api"))
from standin_control import REPO_ROOT, BannerServer, ansible


@pytest.fixture
def sshd():
    server = BannerServer()
    yield server
    server.close()


def inventory(tmp_path, group, sshd):
    path = tmp_path / "hosts.yml"
    host = {"ansible_host": "127.0.0.1", "ansible_port": sshd.port, "ansible_user": "root",
            "ansible_ssh_common_args": "-o ConnectTimeout=3 -o StrictHostKeyChecking=no"}
    path.write_text(yaml.safe_dump({"all": {"children": {group: {"hosts": {"r1-a": host}}}}}))
    return str(path)


def test_a_model_id_and_revision_that_break_the_naming_rules_fail_before_any_host_is_contacted(tmp_path, sshd):
    run = ansible("ansible-playbook", "-i", inventory(tmp_path, "sglang_servers", sshd), "deploy.yml",
                  "-e", "sglang_model='not a repo id'", "-e", "sglang_model_revision=v1..2", timeout=120)
    assert run.returncode != 0, run.output
    assert "sglang_model='not a repo id' is not a Hugging Face model id: huggingface_hub's rule" in run.output
    assert "sglang_model_revision='v1..2' is not a revision: a revision is a 40-character commit id" in run.output
    assert sshd.connections == 0


def test_an_inventory_without_serving_hosts_fails_and_says_why(tmp_path, sshd):
    hosts = inventory(tmp_path, "gpu_boxes", sshd)
    run = ansible("ansible-playbook", "-i", hosts, "deploy.yml", timeout=120)
    assert run.returncode != 0, run.output
    assert f"No host matched sglang_servers in the inventory {hosts}: nothing" in " ".join(run.output.split())
    assert "-e sglang_hosts=GROUP" in run.output
    assert sshd.connections == 0


def test_every_playbook_on_the_serving_hosts_checks_the_inventory_first():
    for path in sorted((REPO_ROOT / "playbooks").glob("*.yml")):
        plays = yaml.safe_load(path.read_text())
        targets = [play.get("hosts", "") for play in plays]
        if not any("sglang_servers" in str(target) for target in targets):
            continue
        assert plays[0].get("ansible.builtin.import_playbook") == "check_hosts.yml", path.name
