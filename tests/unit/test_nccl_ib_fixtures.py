"""NCCL's InfiniBand settings on the sysfs fixtures (tests/fixtures/sysfs-infiniband): the preflight's probe reads each
tree, its checks judge it, and the launch spec of a deepseek-r1-tp16 unit renders what the fixture's README says.

No real InfiniBand fabric was available to test on: the trees follow the kernel's sysfs ABI and Verda's documentation.
"""

from pathlib import Path

import pytest

from ansible_collections.datacrunch.sglang.plugins.module_utils.gpu import checks as gpu_checks
from ansible_collections.datacrunch.sglang.plugins.module_utils.gpu import host_probe as probe
from ansible_collections.datacrunch.sglang.plugins.module_utils.gpu import nccl_ib
from ansible_collections.datacrunch.sglang.plugins.module_utils.launch.options import LaunchRequest
from ansible_collections.datacrunch.sglang.plugins.module_utils.launch.spec import (
    LaunchSpecError,
    Node,
    build_launch_spec,
)
from ansible_collections.datacrunch.sglang.plugins.module_utils.plan.profiles import (
    load_profile_files,
    resolve_profile,
    shipped_profiles_dir,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sysfs-infiniband"
NODES = ("node-1", "node-2")
EIGHT = "=" + ",".join("mlx5_%d" % index for index in range(8))
TP16 = resolve_profile("deepseek-r1-tp16", load_profile_files(shipped_profiles_dir()), {})

# case -> (NCCL_IB_HCA, NCCL_IB_GID_INDEX, NCCL_IB_PKEY, infiniband check status); None: not in the environment.
EXPECTED = {
    "infiniband-only": (EIGHT, None, "1", "pass"),
    "roce-only": ("=mlx5_0,mlx5_1,mlx5_2,mlx5_3", "3", None, "pass"),
    "infiniband-and-frontend-nic": (EIGHT, None, "1", "pass"),
    "several-partitions": (EIGHT, None, "1", "warn"),
}


def gathered(case, node):
    """What gpu_info returns on that node, as far as the network checks read it."""
    address = "10.1.0.%d" % (NODES.index(node) + 4)
    return {
        "ib_devices": probe.ib_state(str(FIXTURES / case / node)),
        "network": {
            "interfaces": {"lo": ["127.0.0.1"], "ens7": [address]},
            "private_addresses": [{"interface": "ens7", "address": address}],
        },
    }


def preflight(case, node):
    facts = {name: gathered(case, name) for name in NODES}
    req = {
        "multi_node": True,
        "rank": NODES.index(node),
        "peers": 1,
        "cluster": "unit-" + case,
        "unit_ib_devices": {name: facts[name]["ib_devices"] for name in NODES},
        "docker_required": False,
    }
    checks = {check["name"]: check for check in gpu_checks.evaluate(facts[node], req)["checks"]}
    return checks, gpu_checks.sglang_gpu(facts[node])


def launch_env(case, node, **overrides):
    members = []
    for name in NODES:
        gpu = gpu_checks.sglang_gpu(gathered(case, name))
        members.append(Node(name=name, private_ip=gpu["private_ip"], gpus=8, gpu_model="NVIDIA H200",
                            interface=gpu["private_interface"], ib_devices=gpu["ib_devices"]))
    request = LaunchRequest(profile=TP16, host=node, nodes=members, cluster="unit-" + case, **overrides)
    return build_launch_spec(request)


def test_every_fixture_case_is_covered():
    assert sorted(path.name for path in FIXTURES.iterdir() if path.is_dir()) == sorted(
        [*EXPECTED, "different-partitions"]
    )


def test_the_probe_reads_the_p_key_table():
    devices = probe.ib_state(str(FIXTURES / "several-partitions" / "node-1"))
    assert devices[0]["ports"][0]["pkeys"] == [
        {"index": 0, "value": "0x7fff"},
        {"index": 1, "value": "0x8001"},
        {"index": 2, "value": "0x8002"},
        {"index": 3, "value": "0x0012"},
    ]
    assert devices[0]["netdevs"] == ["ibp26s0"]


@pytest.mark.parametrize("case", sorted(EXPECTED))
@pytest.mark.parametrize("node", NODES)
def test_launch_and_preflight_on_each_fixture(case, node):
    hca, gid_index, pkey, status = EXPECTED[case]
    spec = launch_env(case, node)
    env = spec["env"]
    assert env.get("NCCL_IB_HCA") == hca
    assert env.get("NCCL_IB_GID_INDEX") == gid_index
    assert env.get("NCCL_IB_PKEY") == pkey
    assert spec["devices"] == ["/dev/infiniband"]
    checks, fact = preflight(case, node)
    assert checks["infiniband"]["status"] == status
    assert "NCCL_IB_HCA=" + hca in checks["infiniband"]["summary"]
    assert fact["nccl_ib"]["hca"] == hca
    if case != "roce-only":
        assert checks["infiniband partition"]["status"] == "pass"
    else:
        assert "infiniband partition" not in checks


def test_the_front_end_nic_is_never_a_rail():
    env = launch_env("infiniband-and-frontend-nic", "node-1")["env"]
    assert "mlx5_8" not in env["NCCL_IB_HCA"]
    assert "NCCL_IB_GID_INDEX" not in env


def test_several_partitions_fall_back_to_the_documented_index_with_a_warning():
    checks, _fact = preflight("several-partitions", "node-1")
    fix = checks["infiniband"]["fix"]
    assert "0x8001 at index 1, 0x8002 at index 2" in fix
    assert "NCCL_IB_PKEY=1" in fix and nccl_ib.PKEY_SOURCE in fix
    assert "sglang_server_nccl_ib_pkey" in fix


def test_the_one_partition_gives_its_index():
    devices = [{"name": "mlx5_0", "link_layer": "InfiniBand",
                "pkeys": [{"index": 0, "value": "0xffff"}, {"index": 3, "value": "0x8005"},
                          {"index": 4, "value": "0x0005"}]}]
    assert nccl_ib.settings(devices)["pkey"] == "3"
    assert nccl_ib.settings(devices)["pkey_value"] == "0x8005"
    assert nccl_ib.settings(devices)["notes"] == []
    # No partition but the default one: Verda's documented index, with a note.
    default_only = [{"name": "mlx5_0", "link_layer": "InfiniBand", "pkeys": [{"index": 0, "value": "0xffff"}]}]
    assert nccl_ib.settings(default_only)["pkey"] == "1"
    assert "no partition other than the default" in nccl_ib.settings(default_only)["notes"][0]


def test_overrides_win():
    env = launch_env("several-partitions", "node-1", nccl_ib_pkey="2", nccl_ib_hca="=mlx5_0",
                     nccl_ib_gid_index="0")["env"]
    assert env["NCCL_IB_PKEY"] == "2"
    assert env["NCCL_IB_HCA"] == "=mlx5_0"
    assert env["NCCL_IB_GID_INDEX"] == "0"


def test_different_partitions_are_refused_by_the_preflight_and_the_launch():
    for node in NODES:
        checks, _fact = preflight("different-partitions", node)
        check = checks["infiniband partition"]
        assert check["status"] == "fail"
        assert "node-1 0x8001, node-2 0x8002" in check["summary"]
        assert "one partition" in check["fix"]
        with pytest.raises(LaunchSpecError, match="node-1 0x8001, node-2 0x8002"):
            launch_env("different-partitions", node)
