"""`ansible-playbook playbooks/plan.yml` for deepseek-r1-tp16 units whose hosts hold the RDMA devices of the sysfs
fixtures (tests/fixtures/sysfs-infiniband): the plan shows the NCCL settings each fabric needs, and a unit whose hosts
are in different InfiniBand partitions is refused, naming both hosts and their P_Keys.

Each unit's sglang_gpu is what the preflight publishes after reading the fixture tree (the probe and checks of
gpu_info / gpu_host, run here on the tree). No real InfiniBand fabric was available to test on.
"""

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from ansible_collections.datacrunch.sglang.plugins.module_utils.gpu import checks as gpu_checks
from ansible_collections.datacrunch.sglang.plugins.module_utils.gpu import host_probe as probe

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = REPO_ROOT / "tests" / "fixtures" / "sysfs-infiniband"
EIGHT = "=" + ",".join("mlx5_%d" % index for index in range(8))
# case -> NCCL_IB_* in the plan of both hosts (absent: not set)
EXPECTED = {
    "infiniband-only": {"NCCL_IB_HCA": EIGHT, "NCCL_IB_PKEY": "1"},
    "roce-only": {"NCCL_IB_HCA": "=mlx5_0,mlx5_1,mlx5_2,mlx5_3", "NCCL_IB_GID_INDEX": "3"},
    "infiniband-and-frontend-nic": {"NCCL_IB_HCA": EIGHT, "NCCL_IB_PKEY": "1"},
    "several-partitions": {"NCCL_IB_HCA": EIGHT, "NCCL_IB_PKEY": "1"},
}
# unit -> (fixture, host variables): the user's choice of partition wins over the fallback.
UNITS = {case: (case, {}) for case in [*EXPECTED, "different-partitions"]}
UNITS["several-partitions-chosen"] = ("several-partitions", {"sglang_server_nccl_ib_pkey": "2"})
EXPECTED["several-partitions-chosen"] = {"NCCL_IB_HCA": EIGHT, "NCCL_IB_PKEY": "2"}


def sglang_gpu(case, node, address):
    facts = {
        "gpu": {"gpus": [{"name": "NVIDIA H200", "uuid": "GPU-%s-%d" % (node, i)} for i in range(8)]},
        "ib_devices": probe.ib_state(str(FIXTURES / case / node)),
        "network": {
            "interfaces": {"lo": ["127.0.0.1"], "ens7": [address]},
            "private_addresses": [{"interface": "ens7", "address": address}],
        },
    }
    return gpu_checks.sglang_gpu(facts)


@pytest.fixture(scope="module")
def plan(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("plan-infiniband")
    hosts = {}
    for index, (unit, (case, extra)) in enumerate(sorted(UNITS.items())):
        for rank, node in enumerate(("node-1", "node-2")):
            address = "10.%d.0.%d" % (20 + index, 10 + rank)
            hosts["%s-%s" % (unit, node)] = {
                "ansible_connection": "local",
                "sglang_cluster": unit,
                "sglang_private_ip": address,
                "sglang_gpu": sglang_gpu(case, node, address),
                **extra,
            }
    inventory = tmp / "hosts.yml"
    inventory.write_text(yaml.safe_dump({
        "all": {"vars": {"sglang_profile": "deepseek-r1-tp16", "sglang_api_key": "plan-test-key-0123456789",
                         "ansible_python_interpreter": str(REPO_ROOT / ".venv" / "bin" / "python")}},
        "sglang_servers": {"hosts": hosts},
    }))
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO_ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    run = subprocess.run(
        [str(REPO_ROOT / ".venv" / "bin" / "ansible-playbook"), "playbooks/plan.yml", "-i", str(inventory),
         "-e", "plan_dir=%s" % (tmp / "plan")],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    specs = {path.stem: json.loads(path.read_text()) for path in (tmp / "plan").glob("*.json")}
    return run, specs


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_the_plan_shows_the_nccl_settings_of_each_fabric(plan, case):
    _run, specs = plan
    for node in ("node-1", "node-2"):
        env = specs["%s-%s" % (case, node)]["env"]
        assert {key: value for key, value in env.items() if key.startswith("NCCL_IB_")} == EXPECTED[case]
        assert specs["%s-%s" % (case, node)]["devices"] == ["/dev/infiniband"]


def test_a_unit_in_different_partitions_is_refused_naming_both_hosts(plan):
    run, specs = plan
    output = " ".join((run.stdout + run.stderr).split())
    assert run.returncode != 0
    assert not any(name.startswith("different-partitions") for name in specs)
    assert ("different-partitions-node-1 0x8001, different-partitions-node-2 0x8002" in output), output[-3000:]
    assert "NCCL between them cannot work" in output
