"""A TP16 unit over two lab hosts (simulated 8x H200 hosts; the stand-in ranks really rendezvous over the lab network)
beside a single-node server on a third host, all from one inventory.
"""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))
from tests.support.lab_checks import (
    http,
    inner_inspect,
    lab_exec,
    lab_host_address,
    recap_changed,
    run_playbook,
)

RANK0, RANK1, SOLO = "dcsg-mol-multinode-1", "dcsg-mol-multinode-2", "dcsg-mol-multinode-3"
CONTAINER = "sglang-server"


@pytest.fixture(scope="module")
def api_key():
    return Path(os.environ["SCENARIO_API_KEY_FILE"]).read_text().strip()


def server(host):
    container = inner_inspect(host, CONTAINER)
    assert container is not None, "no server container on %s" % host
    return container


def arg(container, flag):
    args = container["Args"]
    return args[args.index(flag) + 1]


def endpoint(host):
    return "http://%s:30000" % lab_host_address(host)


def generation_status(host):
    """Rank 0's /health_generate status; 0 when nothing answers."""
    try:
        return http(endpoint(host) + "/health_generate")[0]
    except OSError:
        return 0


def wait_for(predicate, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(1)
    return False


def test_ranks_run_with_their_rank_and_rank0s_address():
    rank0, rank1 = server(RANK0), server(RANK1)
    for rank, container in enumerate((rank0, rank1)):
        assert container["State"]["Status"] == "running"
        assert arg(container, "--tp-size") == "16"
        assert arg(container, "--nnodes") == "2"
        assert arg(container, "--node-rank") == str(rank)
        assert arg(container, "--dist-init-addr") == "%s:50000" % lab_host_address(RANK0)
        assert container["HostConfig"]["RestartPolicy"]["Name"] in ("no", "")
        labels = container["Config"]["Labels"]
        assert labels["datacrunch.sglang.cluster"] == "lab-unit"
        assert labels["datacrunch.sglang.rank"] == str(rank)
        env = dict(item.split("=", 1) for item in container["Config"]["Env"])
        host_ip = lab_host_address((RANK0, RANK1)[rank])
        assert env["SGLANG_HOST_IP"] == host_ip
        interface = lab_exec((RANK0, RANK1)[rank], "sh", "-c", "ip -o -4 addr show | grep ' %s/' | awk '{print $2}'"
                             % host_ip).strip()
        assert env["NCCL_SOCKET_IFNAME"] == interface and env["GLOO_SOCKET_IFNAME"] == interface


def test_the_rendezvous_completed_and_rank0_serves(api_key):
    logs = lab_exec(RANK0, "sh", "-c", "docker logs %s 2>&1" % CONTAINER)
    assert "Node rank 1 joined from %s (2/2)" % lab_host_address(RANK1) in logs
    status, body = http(endpoint(RANK0) + "/v1/chat/completions", api_key,
                        {"model": "datacrunch-lab/tiny-deepseek-r1",
                         "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})
    assert status == 200 and json.loads(body)["choices"]
    # Rank 1 runs only the dummy health server, as SGLang's non-zero ranks do.
    assert http(endpoint(RANK1) + "/health")[0] == 200
    assert http(endpoint(RANK1) + "/v1/models", api_key)[0] == 404


def test_the_single_node_server_lives_beside_the_unit(api_key):
    solo = server(SOLO)
    assert "--nnodes" not in solo["Args"]
    assert solo["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert http(endpoint(SOLO) + "/v1/models", api_key)[0] == 200


MODEL_DIR = "hub/models--datacrunch-lab--tiny-deepseek-r1"
LOCAL_HF_HOME = "/mnt/local_disk/huggingface"
SHARED_HF_HOME = "/mnt/shared/datacrunch-sglang/huggingface"


def hf_home_mount(container):
    return {mount["Destination"]: mount["Source"] for mount in container["Mounts"]}


def weight_files(host, hf_home):
    out = lab_exec(host, "sh", "-c", "find %s/%s/snapshots -name '*.safetensors' | sort" % (hf_home, MODEL_DIR),
                   check=False)
    return out.split()


def mount_root(host, path):
    """The directory of its filesystem that is mounted at path (field 4 of /proc/self/mountinfo), or None."""
    for line in lab_exec(host, "cat", "/proc/self/mountinfo").splitlines():
        fields = line.split()
        if len(fields) > 4 and fields[4] == path:
            return fields[3]
    return None


def test_the_unit_loads_weights_from_each_workers_local_disk():
    for host in (RANK0, RANK1):
        container = server(host)
        assert hf_home_mount(container)[LOCAL_HF_HOME] == LOCAL_HF_HOME
        assert weight_files(host, LOCAL_HF_HOME), "no weights on %s's local disk" % host
        # The local disk is a mount of the host's own (the stand-in of its NVMe: a volume per host), not the
        # shared one. Both volumes lie on this machine's disk, so they differ by the directory mounted, not the device.
        local_root, shared_root = mount_root(host, "/mnt/local_disk"), mount_root(host, "/mnt/shared")
        assert local_root and shared_root and local_root != shared_root, (local_root, shared_root)
        assert "--weight-loader-prefetch-checkpoints" not in container["Args"]
    # Nothing went to the shared volume. (The OS disk's default path holds the copy prepare.yml seeded on every
    # host before the deploy; the unit's containers do not mount it, as checked above.)
    assert not weight_files(RANK0, "/mnt/shared/datacrunch-sglang/huggingface")
    assert "/root/.cache/huggingface" not in hf_home_mount(server(RANK0))
    # A host outside any Instant Cluster keeps the default path.
    assert hf_home_mount(server(SOLO))["/root/.cache/huggingface"] == "/root/.cache/huggingface"


CONNECT_CHECK = (
    "import socket, sys\n"
    "s = socket.socket(); s.settimeout(3)\n"
    "try:\n    s.connect((sys.argv[1], int(sys.argv[2]))); print('open')\n"
    "except ConnectionRefusedError:\n    print('refused')\n"
    "except OSError:\n    print('dropped')\n"
)


def reach(source, target, port):
    """What a new TCP connection from lab host source to target:port meets: open, refused or dropped."""
    return lab_exec(source, "python3", "-c", CONNECT_CHECK, lab_host_address(target), str(port)).strip()


def unit_ports(host):
    """(the peer's NCCL/Gloo port this rank connected to, the one it listens on), from the stand-in's log."""
    logs = lab_exec(host, "sh", "-c", "docker logs %s 2>&1" % CONTAINER)
    match = re.search(r"connected to node rank \d at [0-9.]+:(\d+) .* this node listens on (\d+)", logs)
    assert match, logs[-2000:]
    return int(match.group(1)), int(match.group(2))


def test_the_ranks_talk_through_the_firewall_on_the_ports_sglang_uses():
    """The stand-in's ranks connect to each other as SGLang's do: rank 0's store on the rendezvous port, and both
    ways on ports from the kernel's ephemeral range (NCCL, Gloo). The unit came up through the firewall, which lets
    the other rank in and drops everybody else on those ports."""
    rank1_port, rank0_port = unit_ports(RANK0)
    assert unit_ports(RANK1) == (rank0_port, rank1_port)
    low, high = (int(word) for word in lab_exec(RANK1, "cat", "/proc/sys/net/ipv4/ip_local_port_range").split())
    assert low <= rank0_port <= high and low <= rank1_port <= high
    assert reach(RANK0, RANK1, rank1_port) == "open"
    assert reach(RANK1, RANK0, rank0_port) == "open"
    assert reach(RANK1, RANK0, 50000) == "open"
    # A host of the same private network outside the unit (it may use the serving port)
    assert reach(SOLO, RANK1, rank1_port) == "dropped"
    assert reach(SOLO, RANK0, rank0_port) == "dropped"
    assert reach(SOLO, RANK0, 50000) == "dropped"
    assert reach(SOLO, RANK0, 30000) == "open"


def test_a_hung_unit_is_judged_by_rank0s_generation_and_a_rerun_restarts_it_whole(api_key):
    """The network between the ranks breaks under an idle unit: SGLang's ranks wait in their collectives (idle, for
    Gloo's two hours), /health stays 200 on rank 0 and rank 1; only rank 0's generation tells. deploy.yml restarts
    the unit, although nothing in its spec changed."""
    before = {host: server(host)["Id"] for host in (RANK0, RANK1, SOLO)}
    rank1_port, rank0_port = unit_ports(RANK0)
    cut = ("nft add table inet lab_cut && "
           "nft add chain inet lab_cut in '{ type filter hook input priority -50; }' && "
           "nft add chain inet lab_cut out '{ type filter hook output priority -50; }' && "
           "nft add rule inet lab_cut in tcp dport %(r1)d drop && "
           "nft add rule inet lab_cut in tcp sport %(r0)d drop && "
           "nft add rule inet lab_cut out tcp sport %(r1)d drop && "
           "nft add rule inet lab_cut out tcp dport %(r0)d drop"
           % {"r0": rank0_port, "r1": rank1_port})
    lab_exec(RANK1, "sh", "-c", cut)
    try:
        assert wait_for(lambda: generation_status(RANK0) == 503, timeout=30)
        assert http(endpoint(RANK0) + "/health")[0] == 200
        assert http(endpoint(RANK1) + "/health")[0] == 200
        assert http(endpoint(RANK1) + "/health_generate")[0] == 200
        assert server(RANK0)["State"]["Status"] == server(RANK1)["State"]["Status"] == "running"
        result = run_playbook("deploy.yml")
        assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    finally:
        lab_exec(RANK1, "nft", "delete", "table", "inet", "lab_cut", check=False)
    # The unit's restart crosses several readiness rounds (a real TP16 load takes 30-60 minutes), each showing
    # rank 0's start-up step. (Two at least: on a loaded 2-core machine a round's own overhead eats into the 9 s.)
    assert "not ready yet (round 1," in result.stdout
    after = {host: server(host)["Id"] for host in (RANK0, RANK1, SOLO)}
    assert after[RANK0] != before[RANK0] and after[RANK1] != before[RANK1]
    assert after[SOLO] == before[SOLO]
    assert generation_status(RANK0) == 200
    assert recap_changed(result.stdout)[SOLO] == 0
    # And nothing to do afterwards.
    again = run_playbook("deploy.yml")
    assert again.returncode == 0
    assert set(recap_changed(again.stdout).values()) == {0}


def test_a_killed_rank_ends_rank_0_at_once_as_a_crash():
    """Rank 1's connections close with it: rank 0 fails its next step with the others and crashes, as SGLang's Gloo
    broadcast does ("Connection closed by peer"), and exits 0 as PID 1. The next deploy restarts the unit (the last
    test here does)."""
    lab_exec(RANK1, "docker", "kill", CONTAINER)
    assert wait_for(lambda: server(RANK0)["State"]["Status"] == "exited", timeout=30), "rank 0 kept running"
    assert server(RANK0)["State"]["ExitCode"] == 0
    assert "Connection closed by peer" in lab_exec(RANK0, "sh", "-c", "docker logs %s 2>&1" % CONTAINER)
    assert generation_status(RANK0) == 0


def _unchanged_after(result, before):
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-2000:]
    for host, container_id in before.items():
        assert server(host)["Id"] == container_id, "%s was touched" % host
    return " ".join(output.split())


def test_a_third_host_in_a_tp16_unit_fails_before_any_change(tmp_path):
    before = {host: server(host)["Id"] for host in (RANK0, RANK1, SOLO)}
    extra = tmp_path / "third.yml"
    extra.write_text("sglang_servers:\n  hosts:\n    %s:\n      sglang_cluster: lab-unit\n"
                     "      sglang_profile: lab-tiny-tp16\n" % SOLO)
    output = _unchanged_after(run_playbook("deploy.yml", "--inventory", str(extra)), before)
    assert "needs 2 node(s) of 8 GPUs (tp 16), but sglang_cluster='lab-unit' has 3 host(s)" in output


def test_duplicate_ranks_fail_before_any_change():
    before = {host: server(host)["Id"] for host in (RANK0, RANK1)}
    output = _unchanged_after(run_playbook("deploy.yml", "--extra-vars", "sglang_node_rank=1"), before)
    assert "sglang_node_rank=1 is set on both" in output


def test_a_public_rendezvous_address_fails_before_any_change():
    before = {host: server(host)["Id"] for host in (RANK0, RANK1)}
    output = _unchanged_after(run_playbook("deploy.yml", "--limit", "%s,%s" % (RANK0, RANK1),
                                           "--extra-vars", "sglang_private_ip=185.22.7.10"), before)
    assert "is a public address" in output


def test_a_limit_to_one_rank_is_refused_on_the_controller():
    before = {host: server(host)["Id"] for host in (RANK0, RANK1)}
    result = run_playbook("deploy.yml", "--limit", RANK1)
    output = _unchanged_after(result, before)
    assert ("sglang_cluster='lab-unit' is deployed as one unit of 2 hosts, but this play leaves out %s" % RANK0
            in output), output[-3000:]
    assert recap_changed(result.stdout).get(RANK1) == 0


def test_a_public_rendezvous_address_on_rank_1_is_refused(tmp_path):
    before = {host: server(host)["Id"] for host in (RANK0, RANK1)}
    extra = tmp_path / "public-rank1.yml"
    extra.write_text("sglang_servers:\n  hosts:\n    %s:\n      sglang_private_ip: 185.22.7.11\n" % RANK1)
    output = _unchanged_after(run_playbook("deploy.yml", "--limit", "%s,%s" % (RANK0, RANK1),
                                           "--inventory", str(extra)), before)
    assert "sglang_private_ip=185.22.7.11 on %s (rank 1 of sglang_cluster='lab-unit') is a public address" % RANK1 in (
        output), output[-3000:]


def test_fewer_forks_than_the_unit_has_hosts_is_refused_with_the_setting():
    before = {host: server(host)["Id"] for host in (RANK0, RANK1)}
    output = _unchanged_after(run_playbook("deploy.yml", "--forks", "1"), before)
    assert "sglang_cluster='lab-unit' has 2 hosts, but Ansible runs each task on at most 1 hosts at once" in output


def test_different_gpu_counts_fail_before_any_change():
    before = {host: server(host)["Id"] for host in (RANK0, RANK1)}
    lab = [os.path.join(os.environ["MOLECULE_PROJECT_DIRECTORY"], "tests/lab/lab.sh")]
    env = {"LAB_NAME": "dcsg-mol-multinode"}
    subprocess.run([*lab, "fault", RANK1, "gpus", "4"], check=True, env={**os.environ, **env})
    try:
        output = _unchanged_after(run_playbook("deploy.yml", "--limit", "%s,%s" % (RANK0, RANK1)), before)
        assert "4 x NVIDIA H200" in output or "has 4 GPUs" in output
    finally:
        subprocess.run([*lab, "heal", RANK1], check=True, env={**os.environ, **env})


REPO = "datacrunch-lab/tiny-deepseek-r1"
# The lab Hub's tiny repo: main is its second commit, tag v1 its first (tests/lab/hub/README.md). The unit follows the
# scenario's own branch (create.yml), which starts at main's commit: moving it touches no other scenario.
MAIN_COMMIT, V1_COMMIT = "3708d8ea286d0c3779da69819147dd2b2c171273", "d4b2603dbe40f660f91af0dc0f7e9316efeb55c7"
HUB = Path(__file__).resolve().parents[4] / "tests" / "lab" / "hub" / "hub.sh"
UNIT = "%s,%s" % (RANK0, RANK1)
# sglang_node_rank 0 on the second host of the unit, nothing on the first: the first becomes rank 1.
SWAPPED = "sglang_servers:\n  hosts:\n    %s:\n      sglang_node_rank: 0\n" % RANK1
IN_ORDER = ("sglang_servers:\n  hosts:\n    %s:\n      sglang_node_rank: 0\n    %s:\n      sglang_node_rank: 1\n"
            % (RANK0, RANK1))


BRANCH = "lab-multinode"


def move_branch(target):
    subprocess.run([str(HUB), "move-branch", REPO, BRANCH, target], check=True, capture_output=True)


def one_host_at_a_time(tmp_path, name, *inventories):
    """Each host's plan from a play with serial: 1 and --limit of the unit."""
    out = tmp_path / name
    extra = []
    for number, text in enumerate(inventories):
        path = tmp_path / ("%s-%d.yml" % (name, number))
        path.write_text(text)
        extra += ["--inventory", str(path)]
    result = run_playbook("extensions/molecule/multinode/plan_one_host_at_a_time.yml", *extra, "--limit", UNIT,
                          "--extra-vars", "plan_out=%s" % out)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return {host: json.loads((out / ("%s.json" % host)).read_text()) for host in (RANK0, RANK1)}


def running_ranks():
    return {host: int(server(host)["Config"]["Labels"]["datacrunch.sglang.rank"]) for host in (RANK0, RANK1)}


def test_the_plan_made_one_host_at_a_time_agrees_with_the_running_unit(tmp_path):
    running = running_ranks()
    assert running == {RANK0: 0, RANK1: 1}
    for name, inventories in (("implicit", ()), ("explicit", (IN_ORDER,))):
        plans = one_host_at_a_time(tmp_path, name, *inventories)
        for host, plan in plans.items():
            assert plan["members"] == [RANK0, RANK1], (name, plan)
            assert plan["rank"] == running[host], (name, plan)
            assert plan["rank0_host"] == RANK0 and plan["unit"] == "lab-unit"
            # The commit deploy.yml resolved and recorded for the unit, which the containers load.
            assert plan["model"]["commit"] == arg(server(host), "--revision") == MAIN_COMMIT
    swapped = one_host_at_a_time(tmp_path, "swapped", SWAPPED)
    assert {host: plan["rank"] for host, plan in swapped.items()} == {RANK0: 1, RANK1: 0}
    assert {plan["rank0_host"] for plan in swapped.values()} == {RANK1}


def test_swapped_ranks_shared_weights_and_a_moved_branch_then_a_refresh(api_key, tmp_path):
    swapped = tmp_path / "swapped.yml"
    swapped.write_text(SWAPPED)
    deploy = ("deploy.yml", "--inventory", str(swapped), "--limit", UNIT, "--extra-vars", "sglang_model_storage=shared")
    move_branch(V1_COMMIT)
    try:
        result = run_playbook(*deploy)
        output = result.stdout + result.stderr
        assert result.returncode == 0, output[-3000:]
        # The ranks follow sglang_node_rank: the second host is rank 0, and the rendezvous test, the launch and the
        # containers agree on it.
        assert running_ranks() == {RANK0: 1, RANK1: 0}
        for host in (RANK0, RANK1):
            container = server(host)
            assert arg(container, "--node-rank") == str(running_ranks()[host])
            assert arg(container, "--dist-init-addr") == "%s:50000" % lab_host_address(RANK1)
            # The branch moved on the Hub since the unit was deployed: the unit stays on its recorded commit.
            assert arg(container, "--revision") == MAIN_COMMIT
            # The weights on the shared volume, read with SGLang's checkpoint prefetch.
            assert hf_home_mount(container)[SHARED_HF_HOME] == SHARED_HF_HOME
            assert "--weight-loader-prefetch-checkpoints" in container["Args"]
            assert json.loads(arg(container, "--model-loader-extra-config")) == {"enable_multithread_load": True}
        assert "reached %s:50000" % lab_host_address(RANK1) in output
        assert "1 of 1 peers reached port 50000" in output
        assert "Node rank 1 joined from %s (2/2)" % lab_host_address(RANK0) in lab_exec(
            RANK1, "sh", "-c", "docker logs %s 2>&1" % CONTAINER)
        # One download into the shared volume, seen by both workers.
        assert weight_files(RANK0, SHARED_HF_HOME) == weight_files(RANK1, SHARED_HF_HOME) != []
        assert http(endpoint(RANK1) + "/health_generate")[0] == 200
        again = run_playbook(*deploy)
        assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
        assert set(recap_changed(again.stdout).values()) == {0}

        # A refresh moves both nodes of the unit to the branch's new commit, together.
        refresh = run_playbook("playbooks/redeploy.yml", *deploy[1:], "--extra-vars", "sglang_model_refresh=true")
        assert refresh.returncode == 0, (refresh.stdout + refresh.stderr)[-3000:]
        for host in (RANK0, RANK1):
            assert arg(server(host), "--revision") == V1_COMMIT
        assert http(endpoint(RANK1) + "/health_generate")[0] == 200
    finally:
        move_branch(MAIN_COMMIT)
