"""The modules datacrunch_instance and datacrunch_cluster run by Ansible against the API stand-in.

Each change runs four times - check mode, apply, apply again (unchanged), check again (unchanged) - and the world is
the stand-in's state: what the account holds. The SSH wait talks to a loopback server that speaks the first line of
the SSH protocol, at the address the stand-in hands out.
"""

import json
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lab" / "verda-api"))
import standin_control
from standin_control import CLIENT_SECRET, BannerServer, ansible

IMAGE = "ubuntu-24.04-cuda-12.8-open-docker"
CLUSTER_IMAGE = "ubuntu-24.04-cuda-13.0-cluster"


@pytest.fixture(scope="module")
def sshd():
    server = BannerServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def api():
    with standin_control.in_process("--provision-seconds", "1", "--action-seconds", "0.5") as control:
        yield control


@pytest.fixture
def standin(api):
    api.reset(pool=["127.0.0.1", "10.9.0.12", "10.9.0.13"])
    return api


class Run:
    def __init__(self, completed, result):
        self.rc = completed.returncode
        self.output = completed.output
        self.result = result

    @property
    def changed(self):
        return self.result.get("changed")


def module(standin, tmp_path, name, args, *flags):
    """`ansible localhost -m datacrunch.sglang.NAME -a JSON`; the result is read from the printed JSON."""
    completed = ansible("ansible", "localhost", "-m", f"datacrunch.sglang.{name}", "-a", json.dumps(args), *flags,
                        control=standin, env={"ANSIBLE_CALLBACK_RESULT_FORMAT": "json"})
    match = re.search(r"^localhost \| [A-Z!]+ => ", completed.stdout, re.MULTILINE)
    result = json.JSONDecoder().raw_decode(completed.stdout, match.end())[0] if match else {}
    assert CLIENT_SECRET not in completed.output
    return Run(completed, result)


def four_times(standin, tmp_path, name, args, world):
    """Check, apply, apply, check: only the first two report a change, only apply changes the world."""
    before = world()
    check = module(standin, tmp_path, name, args, "--check", "--diff")
    assert (check.rc, check.changed) == (0, True), check.output
    assert world() == before
    applied = module(standin, tmp_path, name, args, "--diff")
    assert (applied.rc, applied.changed) == (0, True), applied.output
    after = world()
    assert after != before
    again = module(standin, tmp_path, name, args)
    assert (again.rc, again.changed) == (0, False), again.output
    assert module(standin, tmp_path, name, args, "--check").changed is False
    assert world() == after
    return check, applied


def instance_states(standin):
    return {i["hostname"]: (i["status"], i["ip"]) for i in standin.state()["instances"]}


def test_instance_rent_shut_down_start_release(standin, sshd, tmp_path):
    args = {"hostname": "sglang-r1-it", "instance_type": "8H200.141S.176V", "image": IMAGE, "location": "FIN-01",
            "ssh_keys": ["standin-default"], "ssh_port": sshd.port, "os_volume": {"name": "os", "size": 1200},
            "wait_timeout": 60}
    check, applied = four_times(standin, tmp_path, "datacrunch_instance", args, lambda: instance_states(standin))
    assert check.result["actions"] == ["create"] and check.result["instance"] is None
    assert applied.result["instance"]["status"] == "running"
    assert applied.result["ssh_banner"].startswith("SSH-2.0-")
    assert '-{}\n+{\n+    "hostname": "sglang-r1-it",\n' in applied.output  # --diff: from nothing to the instance
    assert '+    "status": "running"\n' in applied.output
    assert instance_states(standin) == {"sglang-r1-it": ("running", "127.0.0.1")}

    four_times(standin, tmp_path, "datacrunch_instance", {**args, "state": "stopped"},
               lambda: instance_states(standin))
    assert instance_states(standin) == {"sglang-r1-it": ("offline", "127.0.0.1")}
    four_times(standin, tmp_path, "datacrunch_instance", {**args, "state": "running"},
               lambda: instance_states(standin))
    assert instance_states(standin) == {"sglang-r1-it": ("running", "127.0.0.1")}
    four_times(standin, tmp_path, "datacrunch_instance", {"hostname": "sglang-r1-it", "state": "absent"},
               lambda: instance_states(standin))
    assert instance_states(standin) == {}


def test_no_capacity_fails_and_orders_nothing(standin, sshd, tmp_path):
    standin.set_pool([])
    run = module(standin, tmp_path, "datacrunch_instance", {
        "hostname": "sglang-r1-nocap", "instance_type": "8H200.141S.176V", "image": IMAGE, "location": "FIN-02",
        "ssh_keys": ["standin-default"]})
    assert run.rc != 0
    assert "no capacity for instance_type='8H200.141S.176V' in location='FIN-02'" in run.result["msg"]
    assert run.result["code"] == "no_capacity"
    assert standin.state()["instances"] == []


def test_missing_inputs_are_named_before_anything_changes(standin, tmp_path):
    args = {"hostname": "sglang-r1-x", "instance_type": "8H200.141S.176V"}
    run = module(standin, tmp_path, "datacrunch_instance", args)
    assert run.rc != 0
    assert "creating it needs image, location: set image, location" in run.result["msg"]
    assert standin.state()["instances"] == []


def test_the_secret_stays_out_of_verbose_output(standin, tmp_path):
    run = module(standin, tmp_path, "datacrunch_instance", {"hostname": "absent-one", "state": "absent"}, "-vvvv")
    assert run.rc == 0 and run.changed is False
    for token in standin.tokens():
        assert token not in run.output


def test_an_order_answered_as_json_rents_and_no_jupyter_token_is_shown(standin, sshd, tmp_path):
    standin.shapes(create_instance="json")  # the Go SDK's "sometimes JSON" answer: the instance, its token included
    args = {"hostname": "sglang-r1-json", "instance_type": "8H200.141S.176V", "image": IMAGE, "location": "FIN-01",
            "ssh_keys": ["standin-default"], "ssh_port": sshd.port, "wait_timeout": 60}
    run = module(standin, tmp_path, "datacrunch_instance", args, "-vvvv", "--diff")
    assert (run.rc, run.changed) == (0, True), run.output
    held = {i["hostname"]: i for i in standin.state()["instances"]}["sglang-r1-json"]
    assert held["status"] == "running" and held["jupyter_token"].startswith("jupyter-")
    assert held["jupyter_token"] not in run.output
    for token in standin.tokens():
        assert token not in run.output


def test_cluster_rent_and_release(standin, sshd, tmp_path):
    args = {"hostname": "r1-tp16-it", "cluster_type": "16H200", "image": CLUSTER_IMAGE, "location": "FIN-01",
            "ssh_keys": ["standin-default"], "ssh_port": sshd.port, "shared_volume_size": 800, "wait_timeout": 60}

    def clusters():
        return {c["hostname"]: (c["status"], c["ip"], [w["private_ip"] for w in c["worker_nodes"]])
                for c in standin.state()["clusters"]}

    check, applied = four_times(standin, tmp_path, "datacrunch_cluster", args, clusters)
    assert check.result["actions"] == ["create"]
    assert applied.result["jump_host"] == "127.0.0.1"
    assert [w["private_ip"] for w in applied.result["workers"]] == ["10.9.0.12", "10.9.0.13"]
    assert clusters() == {"r1-tp16-it": ("running", "127.0.0.1", ["10.9.0.12", "10.9.0.13"])}

    released = module(standin, tmp_path, "datacrunch_cluster", {"hostname": "r1-tp16-it", "state": "absent"})
    assert (released.rc, released.changed) == (0, True), released.output
    assert [status for status, _workers, _volumes in clusters().values()] in ([], ["discontinued"])
    again = module(standin, tmp_path, "datacrunch_cluster", {"hostname": "r1-tp16-it", "state": "absent"})
    assert (again.rc, again.changed) == (0, False), again.output


def test_cluster_without_capacity(standin, tmp_path):
    standin.set_pool(["127.0.0.1"])
    run = module(standin, tmp_path, "datacrunch_cluster", {
        "hostname": "r1-tp16-nocap", "cluster_type": "16H200", "image": CLUSTER_IMAGE, "location": "FIN-01"})
    assert run.rc != 0
    assert "no capacity for cluster_type='16H200'" in run.result["msg"]
    assert standin.state()["clusters"] == []


@pytest.mark.parametrize("name", ["datacrunch_instance", "datacrunch_cluster"])
def test_module_documentation_renders(name):
    run = ansible("ansible-doc", f"datacrunch.sglang.{name}")
    assert run.returncode == 0, run.output
    assert "check_mode" in run.stdout
