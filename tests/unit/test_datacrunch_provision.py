"""Renting and releasing instances and Instant Clusters, against the API stand-in on loopback.

The world is the stand-in's state (what the account holds) and its request log (what was sent); the SSH wait is
checked against a loopback server that speaks the SSH protocol's first line.
"""

import sys
import time
from pathlib import Path

import pytest

from ansible_collections.datacrunch.sglang.plugins.module_utils.datacrunch import provision as datacrunch_provision
from ansible_collections.datacrunch.sglang.plugins.module_utils.datacrunch.api import (
    DataCrunchClient,
    DataCrunchError,
    resolve_settings,
)
from ansible_collections.datacrunch.sglang.plugins.module_utils.datacrunch.provision import (
    ProvisionError,
    ensure_cluster,
    ensure_instance,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lab" / "verda-api"))
import standin_control
from standin_control import CLIENT_ID, CLIENT_SECRET, BannerServer

IMAGE = "ubuntu-24.04-cuda-12.8-open-docker"
CLUSTER_IMAGE = "ubuntu-24.04-cuda-13.0-cluster"
H200 = "8H200.141S.176V"


@pytest.fixture
def sshd():
    server = BannerServer()
    yield server
    server.close()


@pytest.fixture
def standin():
    with standin_control.in_thread(pool=["127.0.0.1", "10.9.0.12", "10.9.0.13"]) as control:
        yield control


@pytest.fixture
def client(standin):
    return DataCrunchClient(resolve_settings(CLIENT_ID, CLIENT_SECRET, standin.base_url))


def instance_params(sshd, **overrides):
    params = {"hostname": "sglang-r1-t1", "state": "running", "instance_type": H200, "image": IMAGE,
              "location": "FIN-01", "ssh_keys": ["standin-default"], "wait": True, "wait_timeout": 30,
              "wait_for_ssh": True, "ssh_port": sshd.port}
    params.update(overrides)
    return params


def cluster_params(sshd, **overrides):
    params = {"hostname": "r1-tp16-t1", "state": "present", "cluster_type": "16H200", "image": CLUSTER_IMAGE,
              "location": "FIN-01", "ssh_keys": [], "wait": True, "wait_timeout": 30, "wait_for_ssh": True,
              "ssh_port": sshd.port, "shared_volume_size": 500}
    params.update(overrides)
    return params


def orders(standin):
    return [r for r in standin.requests() if r["method"] in ("POST", "PUT") and r["path"] != "/v1/oauth2/token"]


def instances(standin):
    return {i["hostname"]: i for i in standin.state()["instances"]}


# --- instances ---------------------------------------------------------------------------------------------------


def test_rent_an_instance_then_a_second_run_changes_nothing(standin, client, sshd):
    first = ensure_instance(client, instance_params(sshd))
    assert first["changed"] is True and first["actions"] == ["create"]
    assert first["instance"]["status"] == "running" and first["instance"]["ip"] == "127.0.0.1"
    assert first["ssh_banner"].startswith("SSH-2.0-")
    assert first["diff"]["before"] == {}
    assert first["diff"]["after"]["status"] == "running"
    held = instances(standin)["sglang-r1-t1"]
    assert held["ssh_key_ids"] == ["5d7c3c4e-3f5a-4a34-9c7a-5b0a3b0c1d01"]  # the key named standin-default
    assert held["location"] == "FIN-01" and held["instance_type"] == H200

    standin.clear_requests()
    second = ensure_instance(client, instance_params(sshd))
    assert (second["changed"], second["actions"]) == (False, [])
    assert second["diff"]["before"] == second["diff"]["after"]
    assert orders(standin) == []
    assert len(standin.state()["instances"]) == 1


def test_check_mode_sends_reads_only(standin, client, sshd):
    result = ensure_instance(client, instance_params(sshd), check_mode=True)
    assert (result["changed"], result["actions"], result["instance"]) == (True, ["create"], None)
    assert result["diff"]["after"]["instance_type"] == H200
    assert orders(standin) == []
    assert standin.state()["instances"] == []
    assert sshd.connections == 0

    ensure_instance(client, instance_params(sshd))
    assert ensure_instance(client, instance_params(sshd), check_mode=True)["changed"] is False
    gone = ensure_instance(client, instance_params(sshd, state="absent"), check_mode=True)
    assert (gone["changed"], gone["actions"]) == (True, ["delete"])
    assert instances(standin)["sglang-r1-t1"]["status"] == "running"


def test_shut_down_start_and_delete(standin, client, sshd):
    ensure_instance(client, instance_params(sshd))
    stopped = ensure_instance(client, instance_params(sshd, state="stopped"))
    assert (stopped["changed"], stopped["actions"]) == (True, ["shutdown"])
    assert instances(standin)["sglang-r1-t1"]["status"] == "offline"
    assert ensure_instance(client, instance_params(sshd, state="stopped"))["changed"] is False
    assert ensure_instance(client, instance_params(sshd, state="present"))["changed"] is False

    started = ensure_instance(client, instance_params(sshd, state="running"))
    assert (started["changed"], started["actions"]) == (True, ["start"])
    assert instances(standin)["sglang-r1-t1"]["status"] == "running"

    deleted = ensure_instance(client, instance_params(sshd, state="absent"))
    assert (deleted["changed"], deleted["actions"]) == (True, ["delete"])
    assert instances(standin) == {}
    assert standin.state()["pool"].count("127.0.0.1") == 1  # the address is free again
    assert ensure_instance(client, instance_params(sshd, state="absent"))["changed"] is False


def test_volumes_are_created_attached_and_deleted_on_request(standin, client, sshd):
    volumes = [{"name": "weights", "size": 2000, "type": "NVMe"}, {"name": "scratch", "size": 500, "type": "HDD"}]
    ensure_instance(client, instance_params(sshd, volumes=volumes, existing_volumes=["4f1c0d2e-vol"],
                                            os_volume={"name": "r1-os", "size": 1200}))
    held = instances(standin)["sglang-r1-t1"]
    assert len(held["volume_ids"]) == 3 and held["volume_ids"][-1] == "4f1c0d2e-vol"
    ensure_instance(client, instance_params(sshd, state="absent", delete_volumes=True))
    deleted = standin.state()["deleted_volumes"]
    assert [v["id"] for v in deleted] == [held["os_volume_id"], *held["volume_ids"]]
    assert not any(v["permanently"] for v in deleted)  # to the trash, where they can be restored


def test_by_default_release_keeps_the_data_volumes(standin, client, sshd):
    ensure_instance(client, instance_params(sshd, volumes=[{"name": "weights", "size": 2000}]))
    ensure_instance(client, instance_params(sshd, state="absent"))
    assert standin.state()["deleted_volumes"] == []  # the API's default: OS volume deleted, data volumes detached


def test_no_capacity_orders_nothing(standin, client, sshd):
    standin.set_pool([])
    with pytest.raises(ProvisionError) as error:
        ensure_instance(client, instance_params(sshd))
    message = str(error.value)
    assert error.value.code == "no_capacity"
    assert "instance_type='8H200.141S.176V'" in message and "location='FIN-01'" in message
    assert "nothing was ordered" in message
    assert orders(standin) == []


def test_an_order_that_lands_in_no_capacity_is_deleted_and_reported(standin, client, sshd):
    standin.fault("no_capacity", path="/v1/instances")
    with pytest.raises(ProvisionError) as error:
        ensure_instance(client, instance_params(sshd))
    assert error.value.code == "no_capacity"
    assert "ended in status 'no_capacity' and was deleted" in str(error.value)
    assert [(r["method"], r["path"]) for r in orders(standin)] == [("POST", "/v1/instances"), ("PUT", "/v1/instances")]


def test_missing_settings_for_a_new_instance_are_named_before_any_order(standin, client, sshd):
    with pytest.raises(ProvisionError) as error:
        ensure_instance(client, instance_params(sshd, image=None, location=None))
    assert "creating it needs image, location" in str(error.value)
    assert "FIN-01" in str(error.value)
    assert orders(standin) == []


def test_unknown_ssh_keys_are_named_with_the_keys_that_exist(standin, client, sshd):
    with pytest.raises(ProvisionError) as error:
        ensure_instance(client, instance_params(sshd, ssh_keys=["laptop"]))
    assert "ssh_keys entry 'laptop'" in str(error.value)
    assert "keys: standin-default" in str(error.value)
    assert orders(standin) == []


def test_a_bad_hostname_fails_before_any_request(standin, client, sshd):
    with pytest.raises(ProvisionError) as error:
        ensure_instance(client, instance_params(sshd, hostname="bad name"))
    assert "hostname='bad name' is not a valid hostname" in str(error.value)
    assert standin.requests() == []


def test_an_existing_instance_of_another_type_is_not_replaced(standin, client, sshd):
    ensure_instance(client, instance_params(sshd))
    with pytest.raises(ProvisionError) as error:
        ensure_instance(client, instance_params(sshd, instance_type="4H200.141S.176V"))
    assert "instance_type='4H200.141S.176V' was asked for" in str(error.value)
    assert "state: absent" in str(error.value)


def test_twin_hostnames_in_the_account_are_refused(standin, client, sshd):
    standin.seed(instances=[{"id": "aaaa0001", "hostname": "sglang-r1-t1", "status": "running", "ip": "192.0.2.1"},
                            {"id": "aaaa0002", "hostname": "sglang-r1-t1", "status": "offline", "ip": "192.0.2.2"}])
    with pytest.raises(ProvisionError) as error:
        ensure_instance(client, instance_params(sshd))
    assert "names 2 instances (aaaa0001, aaaa0002)" in str(error.value)


def test_the_jupyter_token_is_not_returned(standin, client, sshd):
    standin.seed(instances=[{"id": "aaaa0003", "hostname": "sglang-r1-t1", "status": "running", "ip": "127.0.0.1",
                             "instance_type": H200, "location": "FIN-01", "jupyter_token": "tok-123secret"}])
    result = ensure_instance(client, instance_params(sshd))
    assert "jupyter_token" not in result["instance"]
    assert "tok-123secret" not in repr(result)


def test_an_answer_that_is_not_ssh_is_not_taken_for_ssh():
    http = BannerServer(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    now = [0.0]

    def sleep(seconds):
        now[0] += seconds

    try:
        with pytest.raises(ProvisionError) as error:
            datacrunch_provision.wait_for_ssh("127.0.0.1", http.port, timeout=6, clock=lambda: now[0], sleep=sleep)
        assert "no SSH server answered on 127.0.0.1" in str(error.value)
        assert "not an SSH banner" in str(error.value)
    finally:
        http.close()


# --- answer shapes the SDKs document (the stand-in serves each, chosen per test) ------------------------------------


def test_an_order_answered_with_the_instance_as_json_is_rented_and_its_token_never_shown(standin, client, sshd):
    standin.shapes(create_instance="json")  # Go SDK instances.go: "sometimes JSON, sometimes plain text ID"
    result = ensure_instance(client, instance_params(sshd))
    assert (result["changed"], result["actions"]) == (True, ["create"])
    assert result["instance"]["status"] == "running" and result["instance"]["ip"] == "127.0.0.1"
    held = instances(standin)["sglang-r1-t1"]
    assert held["jupyter_token"].startswith("jupyter-")
    assert held["jupyter_token"] not in repr(result)
    assert [r["path"] for r in orders(standin)] == ["/v1/instances"]  # ordered once


def test_an_order_answered_without_a_usable_id_is_reported_without_quoting_the_answer(standin, client, sshd):
    class Odd(DataCrunchClient):
        def request(self, method, path, params=None, body=None):
            response = super().request(method, path, params=params, body=body)
            if method == "POST" and path == "/instances":
                response.body = b'{"jupyter_token": "jupyter-canary-51f0", "status": "ordered"}'
            return response

    odd = Odd(client.settings)
    with pytest.raises(DataCrunchError) as error:
        ensure_instance(odd, instance_params(sshd))
    assert "answered without a usable instance id" in str(error.value)
    assert "look for hostname 'sglang-r1-t1' in the console" in str(error.value)
    assert "jupyter-canary-51f0" not in str(error.value)


def test_availability_as_the_json_string_true(standin, client, sshd):
    standin.shapes(availability="string")  # Go SDK instances.go: "true"/"false" as a JSON string
    result = ensure_instance(client, instance_params(sshd))
    assert result["actions"] == ["create"]
    standin.set_pool([])
    with pytest.raises(ProvisionError) as error:
        ensure_instance(client, instance_params(sshd, hostname="sglang-r1-t2"))
    assert error.value.code == "no_capacity"


def test_an_instance_answered_invalid_instance_id_once_deleted_is_gone(standin, client, sshd):
    standin.shapes(unknown_instance="invalid_request")  # 400 "Invalid instance id", not 404
    ensure_instance(client, instance_params(sshd))
    released = ensure_instance(client, {"hostname": "sglang-r1-t1", "state": "absent", "wait_timeout": 30})
    assert (released["changed"], released["actions"]) == (True, ["delete"])
    assert instances(standin) == {}
    again = ensure_instance(client, {"hostname": "sglang-r1-t1", "state": "absent", "wait_timeout": 30})
    assert again["changed"] is False


def test_an_instance_deleted_meanwhile_counts_as_gone(standin, client, sshd):
    standin.shapes(unknown_instance="invalid_request", instance_action="multi_status")
    standin.seed(instances=[{"id": "aaaa0009", "hostname": "sglang-r1-t1", "status": "running", "ip": "127.0.0.1",
                             "instance_type": H200, "location": "FIN-01"}])

    class Racing(DataCrunchClient):
        def list_instances(self, status=None):
            listed = super().list_instances(status)
            standin.reset(pool=[])  # someone deletes it between the read and the delete
            standin.shapes(unknown_instance="invalid_request", instance_action="multi_status")
            return listed

    result = ensure_instance(Racing(client.settings), {"hostname": "sglang-r1-t1", "state": "absent",
                                                       "wait_timeout": 5})
    assert result["actions"] == ["delete"]


def test_a_running_instance_without_an_ip_yet_is_waited_for(standin, client, sshd):
    standin.shapes(running_without_ip_s=0.8)
    ordered = ensure_instance(client, instance_params(sshd, wait=False))
    assert ordered["instance"]["status"] in ("ordered", "provisioning")
    deadline = time.monotonic() + 10
    while instances(standin)["sglang-r1-t1"]["status"] != "running" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert instances(standin)["sglang-r1-t1"]["ip"] is None
    result = ensure_instance(client, instance_params(sshd))
    assert result["instance"]["ip"] == "127.0.0.1"
    assert result["ssh_banner"].startswith("SSH-2.0-")


def test_a_running_instance_that_never_gets_an_ip_ends_in_a_clear_error(standin, client, sshd):
    standin.shapes(running_without_ip_s=600)
    ensure_instance(client, instance_params(sshd, wait=False))
    deadline = time.monotonic() + 10
    while instances(standin)["sglang-r1-t1"]["status"] != "running" and time.monotonic() < deadline:
        time.sleep(0.1)
    with pytest.raises(ProvisionError) as error:
        ensure_instance(client, instance_params(sshd, wait_timeout=1))
    assert "instance 'sglang-r1-t1' is running but the API gives it no IP address yet after 1s" in str(error.value)
    assert sshd.connections == 0


def test_a_batch_action_answered_207_names_each_failing_instance(standin, client, sshd):
    standin.shapes(instance_action="multi_status")  # Go SDK instances_types.go: 207, a result per instance
    standin.seed(instances=[
        {"id": "aaaa0011", "hostname": "a", "status": "running", "ip": "127.0.0.1", "instance_type": H200},
        {"id": "aaaa0012", "hostname": "b", "status": "offline", "ip": "127.0.0.2", "instance_type": H200},
    ])
    with pytest.raises(DataCrunchError) as error:
        client.instance_action(["aaaa0011", "aaaa0012", "aaaa0013"], "shutdown")
    message = str(error.value)
    assert "PUT /instances (shutdown) failed for 2 of 3 instance(s)" in message
    assert "instance aaaa0012: HTTP 400 Instance aaaa0012 is offline, not running" in message
    assert "instance aaaa0013: HTTP 404 Instance aaaa0013 not found" in message
    assert [(i, s) for i, _m, s in error.value.failures] == [("aaaa0012", 400), ("aaaa0013", 404)]
    assert instances(standin)["a"]["status"] == "running"  # its shutdown was taken: offline after a moment
    time.sleep(0.5)
    assert instances(standin)["a"]["status"] == "offline"


def test_a_shutdown_refused_for_the_instance_is_reported_by_instance(standin, client, sshd):
    standin.shapes(instance_action="multi_status")
    ensure_instance(client, instance_params(sshd))
    held = instances(standin)["sglang-r1-t1"]

    class Refusing(DataCrunchClient):
        def instance_action(self, instance_ids, action, **kwargs):
            standin.seed(instances=[{**held, "status": "provisioning"}])  # it changed under our feet
            return super().instance_action(instance_ids, action, **kwargs)

    with pytest.raises(DataCrunchError) as error:
        ensure_instance(Refusing(client.settings), instance_params(sshd, state="stopped", wait_timeout=3))
    assert f"instance {held['id']}: HTTP 400 Instance {held['id']} is provisioning, not running" in str(error.value)


# --- Instant Clusters --------------------------------------------------------------------------------------------


def test_rent_a_cluster_then_a_second_run_changes_nothing_then_release_it(standin, client, sshd):
    first = ensure_cluster(client, cluster_params(sshd))
    assert (first["changed"], first["actions"]) == (True, ["create"])
    assert first["jump_host"] == "127.0.0.1"
    assert first["workers"] == [{"hostname": "r1-tp16-t1-node-1", "private_ip": "10.9.0.12"},
                                {"hostname": "r1-tp16-t1-node-2", "private_ip": "10.9.0.13"}]
    assert first["ssh_banner"].startswith("SSH-2.0-")
    held = standin.state()["clusters"][0]
    assert held["shared_volumes"][0]["name"] == "r1-tp16-t1-shared-volume"
    assert held["shared_volumes"][0]["size_in_gigabytes"] == 500

    standin.clear_requests()
    second = ensure_cluster(client, cluster_params(sshd))
    assert (second["changed"], second["actions"]) == (False, [])
    assert orders(standin) == []

    assert ensure_cluster(client, cluster_params(sshd, state="absent"), check_mode=True)["changed"] is True
    assert len(standin.state()["clusters"]) == 1
    released = ensure_cluster(client, cluster_params(sshd, state="absent"))
    assert (released["changed"], released["actions"]) == (True, ["discontinue"])
    assert [c["status"] for c in standin.state()["clusters"]] in ([], ["discontinued"])  # no longer billed
    time.sleep(0.3)
    assert standin.state()["clusters"] == []
    assert sorted(standin.state()["pool"]) == ["10.9.0.12", "10.9.0.13", "127.0.0.1"]
    assert ensure_cluster(client, cluster_params(sshd, state="absent"))["changed"] is False


def test_cluster_check_mode_and_no_capacity(standin, client, sshd):
    result = ensure_cluster(client, cluster_params(sshd), check_mode=True)
    assert (result["changed"], result["cluster"]) == (True, None)
    assert orders(standin) == []
    standin.set_pool(["127.0.0.1", "10.9.0.12"])  # a 16H200 needs a jump host and two workers
    with pytest.raises(ProvisionError) as error:
        ensure_cluster(client, cluster_params(sshd))
    assert error.value.code == "no_capacity"
    assert "cluster_type='16H200'" in str(error.value)
    assert orders(standin) == []
