"""From DataCrunch (Verda) API objects to inventory hosts, on objects shaped as the API returns them."""

import json
import shlex
from pathlib import Path

import pytest

from ansible_collections.datacrunch.sglang.plugins.module_utils.datacrunch import inventory as datacrunch_inventory
from ansible_collections.datacrunch.sglang.plugins.module_utils.datacrunch.inventory import (
    InventoryOptions,
    build_hosts,
)

FLEET = json.loads((Path(__file__).resolve().parents[1] / "lab" / "verda-api" / "fleet-demo.json").read_text())


def by_name(hosts):
    return {host.name: host for host in hosts}


def build(**options):
    hosts, skipped = build_hosts(FLEET["instances"], FLEET["clusters"], InventoryOptions(**options))
    return by_name(hosts), skipped


def test_running_hosts_by_default_and_why_others_are_left_out():
    hosts, skipped = build()
    assert sorted(hosts) == ["sglang-r1-a", "sglang-r1-b", "tp16-fin01-node-1", "tp16-fin01-node-2", "train-a100"]
    assert skipped == []
    hosts, skipped = build(statuses=[])
    assert "sglang-r1-old" in hosts  # offline, but has an address
    assert skipped == [("sglang-r1-new", "no public IP yet")]


def test_an_instance_is_reached_as_root_on_its_public_ip_with_its_facts():
    host = build(ssh_common_args="-o StrictHostKeyChecking=accept-new")[0]["sglang-r1-a"]
    v = host.variables
    assert (v["ansible_host"], v["ansible_user"]) == ("192.0.2.11", "root")
    assert v["ansible_ssh_common_args"] == "-o StrictHostKeyChecking=accept-new"
    assert (v["datacrunch_instance_type"], v["datacrunch_gpu_model"], v["datacrunch_gpu_count"]) == (
        "8H200.141S.176V", "H200", 8)
    assert v["datacrunch_price_per_hour"] == 28.72  # sent as the string "28.72"
    assert v["datacrunch_location"] == "FIN-01"
    assert v["datacrunch_status"] == "running"
    assert v["datacrunch_image"] == "ubuntu-24.04-cuda-12.8-open-docker"
    assert v["datacrunch_os_name"] == "Ubuntu 24.04 + CUDA 12.8 Open + Docker"
    assert v["datacrunch_volume_ids"] == ["0b6f2c1e-data"]
    assert v["datacrunch_tags"] == {"team": "inference"}
    assert "sglang_cluster" not in v and "sglang_private_ip" not in v
    assert "jupyter-token-4b1d9e" not in repr(v)  # a secret the API sends with the instance
    assert host.groups == ["datacrunch", "datacrunch_instances", "datacrunch_type_8H200_141S_176V",
                           "datacrunch_location_FIN_01", "sglang_servers"]


def test_cluster_workers_are_reached_through_the_jump_host_and_form_one_sglang_cluster():
    hosts = build(ssh_common_args="-o StrictHostKeyChecking=accept-new", ssh_private_key_file="/keys/id ed")[0]
    workers = [hosts["tp16-fin01-node-1"], hosts["tp16-fin01-node-2"]]
    assert [w.variables["ansible_host"] for w in workers] == ["10.1.0.11", "10.1.0.12"]
    assert [w.variables["sglang_private_ip"] for w in workers] == ["10.1.0.11", "10.1.0.12"]
    assert {w.variables["sglang_cluster"] for w in workers} == {"tp16-fin01"}
    v = workers[0].variables
    assert (v["datacrunch_gpu_model"], v["datacrunch_gpu_count"], v["datacrunch_cluster_size"]) == ("H200", 8, 2)
    assert v["datacrunch_jump_host"] == "198.51.100.20"
    assert v["ansible_ssh_private_key_file"] == "/keys/id ed"
    # What ssh receives once Ansible splits the arguments: the hop uses the same options and key.
    args = shlex.split(v["ansible_ssh_common_args"])
    assert args[:2] == ["-o", "StrictHostKeyChecking=accept-new"]
    assert args[2] == "-o"
    proxy = args[3]
    assert proxy.startswith("ProxyCommand=")
    assert shlex.split(proxy[len("ProxyCommand="):]) == [
        "ssh", "-W", "%h:%p", "-q", "-o", "StrictHostKeyChecking=accept-new", "-i", "/keys/id ed",
        "root@198.51.100.20"]
    assert workers[0].groups == ["datacrunch", "datacrunch_cluster_workers", "datacrunch_type_16H200",
                                 "datacrunch_location_FIN_01", "datacrunch_cluster_tp16_fin01", "sglang_servers"]


def test_only_h200_hosts_serve_unless_told_otherwise():
    hosts = build()[0]
    assert "sglang_servers" not in hosts["train-a100"].groups
    hosts = build(serving_gpu_models=["H200", "A100"], serving_group="gpu_servers")[0]
    assert "gpu_servers" in hosts["train-a100"].groups
    assert "sglang_servers" not in hosts["sglang-r1-a"].groups
    hosts = build(serving_group="")[0]
    assert all("sglang_servers" not in host.groups for host in hosts.values())


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"locations": ["FIN-03"]}, ["sglang-r1-b"]),
        ({"instance_types": ["16H200"]}, ["tp16-fin01-node-1", "tp16-fin01-node-2"]),
        ({"instance_types": ["8A100.176V"]}, ["train-a100"]),
        ({"hostname_patterns": ["sglang-*"]}, ["sglang-r1-a", "sglang-r1-b"]),
        ({"hostname_patterns": ["tp16-*-node-2"]}, ["tp16-fin01-node-2"]),
        ({"hostname_patterns": ["tp16-fin01"]}, ["tp16-fin01-node-1", "tp16-fin01-node-2"]),
        ({"statuses": ["offline"]}, ["sglang-r1-old"]),
        ({"include_clusters": False}, ["sglang-r1-a", "sglang-r1-b", "train-a100"]),
        ({"include_instances": False}, ["tp16-fin01-node-1", "tp16-fin01-node-2"]),
    ],
)
def test_filters(options, expected):
    assert sorted(build(**options)[0]) == expected


def test_a_worker_still_provisioning_is_left_out_of_a_running_cluster():
    cluster = json.loads(json.dumps(FLEET["clusters"][0]))
    cluster["worker_nodes"][1]["status"] = "provisioning"
    hosts, _skipped = build_hosts([], [cluster], InventoryOptions())
    assert [host.name for host in hosts] == ["tp16-fin01-node-1"]


def test_a_cluster_without_a_jump_host_yet_is_reported_not_listed():
    cluster = json.loads(json.dumps(FLEET["clusters"][0]))
    cluster["ip"] = None
    hosts, skipped = build_hosts([], [cluster], InventoryOptions())
    assert hosts == []
    assert [name for name, _reason in skipped] == ["tp16-fin01-node-1", "tp16-fin01-node-2"]


def test_addresses_that_are_not_ip_addresses_never_reach_an_ssh_command_line():
    cluster = json.loads(json.dumps(FLEET["clusters"][0]))
    cluster["ip"] = "1.2.3.4 -oProxyCommand=touch /tmp/x"
    instance = dict(FLEET["instances"][0], ip="$(reboot)")
    hosts, skipped = build_hosts([instance], [cluster], InventoryOptions())
    assert hosts == []
    assert len(skipped) == 3


def test_twin_hostnames_stay_apart():
    first = FLEET["instances"][0]
    twin = dict(first, id="ffffffff-0000-4000-8000-000000000000", created_at="2026-11-22T00:00:00Z", ip="192.0.2.99")
    hosts, _skipped = build_hosts([twin, first], [], InventoryOptions())
    assert [(h.name, h.variables["ansible_host"]) for h in hosts] == [
        ("sglang-r1-a", "192.0.2.11"), ("sglang-r1-a-ffffffff", "192.0.2.99")]


def test_cluster_workers_listed_among_instances_too_are_hosts_once():
    worker = FLEET["clusters"][0]["worker_nodes"][0]
    as_instance = dict(FLEET["instances"][0], id=worker["id"], hostname=worker["hostname"], ip="192.0.2.50")
    hosts, _skipped = build_hosts([as_instance], FLEET["clusters"], InventoryOptions())
    assert [h.variables["datacrunch_kind"] for h in hosts if h.name == worker["hostname"]] == ["cluster_worker"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [("8H200.141S.176V", (8, "H200")), ("16H200", (16, "H200")), ("1V100.6V", (1, "V100")),
     ("8A100.176V", (8, "A100")), ("CPU.4V.16G", (0, "")), ("", (0, ""))],
)
def test_type_names(name, expected):
    assert datacrunch_inventory.parse_type(name) == expected


def test_group_names_are_valid_ansible_names():
    assert datacrunch_inventory.group_name("datacrunch", "type", "8H200.141S.176V") == "datacrunch_type_8H200_141S_176V"
    assert datacrunch_inventory.group_name("16H200") == "_16H200"
    assert datacrunch_inventory.group_name("dc", "cluster", "a b/c") == "dc_cluster_a_b_c"


def test_prices_as_numbers_strings_or_nothing():
    assert datacrunch_inventory.price("28.72") == 28.72
    assert datacrunch_inventory.price(3) == 3.0
    assert datacrunch_inventory.price(None) is None
    assert datacrunch_inventory.price("n/a") is None


def test_a_host_without_a_location_or_type_is_in_no_location_or_type_group():
    instance = dict(FLEET["instances"][0], location=None)
    del instance["instance_type"]
    cluster = dict(FLEET["clusters"][0], location="")
    hosts, _skipped = build_hosts([instance], [cluster], InventoryOptions())
    for host in hosts:
        assert "datacrunch_location" not in host.groups and "datacrunch_type" not in host.groups, host.groups
        assert not [group for group in host.groups if group.startswith("datacrunch_location")]
    assert "datacrunch_cluster_tp16_fin01" in by_name(hosts)["tp16-fin01-node-1"].groups


def test_hostnames_become_usable_inventory_names_and_keep_the_original():
    first = FLEET["instances"][0]
    spaced = dict(first, hostname="GPU box #1", id="aaaaaaaa-0000-4000-8000-000000000001")
    accented = dict(first, hostname="työ-äly", id="bbbbbbbb-0000-4000-8000-000000000002", ip="192.0.2.2")
    clash = dict(first, hostname="GPU box 1", id="cccccccc-0000-4000-8000-000000000003", ip="192.0.2.3",
                 created_at="2026-11-23T00:00:00Z")
    nothing = dict(first, hostname="  ", id="dddddddd-0000-4000-8000-000000000004", ip="192.0.2.4")
    hosts = by_name(build_hosts([spaced, accented, clash, nothing], [], InventoryOptions())[0])
    assert sorted(hosts) == ["GPU-box-1", "GPU-box-1-cccccccc", "dddddddd", "tyo-aly"]
    assert hosts["GPU-box-1"].variables["datacrunch_hostname"] == "GPU box #1"
    assert hosts["GPU-box-1-cccccccc"].variables["datacrunch_hostname"] == "GPU box 1"
    assert hosts["tyo-aly"].variables["datacrunch_hostname"] == "työ-äly"
