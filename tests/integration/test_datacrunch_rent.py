"""playbooks/rent.yml end to end: the DataCrunch (Verda) API stand-in rents out lab hosts, Ansible reaches them.

The lab (tests/lab/lab.sh) runs two simulated H200 hosts reached over SSH; the API stand-in hands their addresses to
what is rented: an instance gets one, an Instant Cluster gets both as workers, the first of them doubling as its
jump host. The step playbooks are test material that leave a record on each host (how the SSH session arrived), or
fail on purpose. The world: records on the hosts, the stand-in's account state, the log file.

Environment: LAB_NAME (default dcsgdev-inv) names the lab; DCSG_KEEP_LAB=1 leaves it up afterwards.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lab" / "verda-api"))
import standin_control
from standin_control import CLIENT_SECRET, REPO_ROOT, ansible

LAB_NAME = os.environ.get("LAB_NAME", "dcsgdev-inv")
LAB_SH = REPO_ROOT / "tests" / "lab" / "lab.sh"
PROBE = "tests/lab/verda-api/playbooks/probe.yml"
FAIL = "tests/lab/verda-api/playbooks/fail.yml"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    inventory_dir = tmp_path_factory.mktemp("lab-inventory")
    # Rented cluster workers have their local NVMe at /mnt/local_disk, where the weights go by default.
    env = {**os.environ, "LAB_NAME": LAB_NAME, "LAB_INVENTORY_DIR": str(inventory_dir),
           "LAB_LOCAL_DISK_DIR": "/mnt/local_disk"}
    up = subprocess.run([str(LAB_SH), "up", "2"], env=env, capture_output=True, text=True, timeout=900, check=False)
    assert up.returncode == 0, up.stderr[-3000:]
    inventory = yaml.safe_load((inventory_dir / "hosts.yml").read_text())
    servers = inventory["all"]["children"]["sglang_servers"]
    hosts = {name: spec["ansible_host"] for name, spec in servers["hosts"].items()}
    yield {
        "hosts": hosts,  # lab container name -> address
        "by_address": {address: name for name, address in hosts.items()},
        "vars": inventory["all"]["vars"],
        "key": servers["vars"]["ansible_ssh_private_key_file"],
        "ssh_args": " ".join(servers["vars"]["ansible_ssh_common_args"].split()),
    }
    if os.environ.get("DCSG_KEEP_LAB") != "1":
        subprocess.run([str(LAB_SH), "down"], env=env, capture_output=True, text=True, timeout=600, check=False)


@pytest.fixture(scope="module")
def api(lab):
    pool = ",".join(lab["hosts"].values())
    with standin_control.in_process("--pool", pool, "--jump-from-workers", "--provision-seconds", "2",
                                    "--action-seconds", "0.5") as control:
        yield control


@pytest.fixture
def standin(api, lab):
    api.reset(pool=list(lab["hosts"].values()))
    return api


@pytest.fixture(scope="module")
def inventory(lab, tmp_path_factory):
    """An inventory shaped like inventories/datacrunch/: the same plugin config, with the lab's group_vars."""
    directory = tmp_path_factory.mktemp("datacrunch-inventory")
    (directory / "datacrunch.yml").write_text((REPO_ROOT / "inventories/datacrunch/datacrunch.yml").read_text())
    all_vars = directory / "group_vars" / "all"
    all_vars.mkdir(parents=True)
    (all_vars / "lab.yml").write_text(yaml.safe_dump(lab["vars"]))
    # The deepseek-r1-tp16 layout with the lab's tiny model, as in the multinode molecule scenario.
    (all_vars / "lab-profiles.yml").write_text(yaml.safe_dump({"sglang_profiles_extra": {"lab-tiny-tp16": {
        "extends": "deepseek-r1-tp16", "description": "Lab only - the deepseek-r1-tp16 layout with the tiny model",
        "model": "datacrunch-lab/tiny-deepseek-r1", "revision": "main", "model_size_gb": 0.1,
        "sglang_args": {"dist-timeout": 60}}}}))
    lab_group_vars = REPO_ROOT / "inventories" / "lab" / "group_vars"
    if lab_group_vars.is_dir():
        for source in sorted(lab_group_vars.iterdir()):
            group = source.stem if source.is_file() else source.name
            target = directory / "group_vars" / group
            target.mkdir(exist_ok=True)
            for item in [source] if source.is_file() else sorted(source.iterdir()):
                (target / f"lab-{item.name}").write_text(item.read_text())
    return directory


def rent(standin, lab, inventory, tmp_path, *extra, steps=(PROBE,), profile="lab-tiny", step_args=()):
    variables = {"datacrunch_profile": profile, "datacrunch_ssh_keys": ["standin-default"],
                 "datacrunch_wait_timeout": 120, "datacrunch_log_dir": str(tmp_path / "logs"),
                 "datacrunch_step_args": ["-e", f"sglang_benchmark_report_dir={tmp_path / 'reports'}", *step_args]}
    if steps:
        variables["datacrunch_steps"] = list(steps)
    env = {"DATACRUNCH_SSH_PRIVATE_KEY_FILE": lab["key"], "DATACRUNCH_SSH_COMMON_ARGS": lab["ssh_args"]}
    run = ansible("ansible-playbook", "playbooks/rent.yml", "-i", str(inventory), "-e", json.dumps(variables),
                  *extra, control=standin, env=env, timeout=900)
    assert CLIENT_SECRET not in run.output
    return run


def record(lab, address):
    """What the probe step left on the lab host at this address, and clears it for the next test."""
    name = lab["by_address"][address]
    command = "cat /root/rent-probe.json && rm /root/rent-probe.json"
    shown = subprocess.run(["docker", "exec", name, "sh", "-c", command], capture_output=True, text=True, check=False)
    return json.loads(shown.stdout) if shown.returncode == 0 else None


def account(standin):
    state = standin.state()
    return {"instances": [(i["hostname"], i["status"]) for i in state["instances"]],
            "clusters": [(c["hostname"], c["status"]) for c in state["clusters"]]}


def wait_released(standin, lab):
    """After release the stand-in takes a moment to hand the addresses back to its pool."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if account(standin) == {"instances": [], "clusters": []} and len(standin.state()["pool"]) == len(lab["hosts"]):
            return True
        time.sleep(0.2)
    return False


def test_rent_an_instance_run_the_steps_and_release_it(standin, lab, inventory, tmp_path):
    first_address = standin.state()["pool"][0]
    run = rent(standin, lab, inventory, tmp_path)
    assert run.returncode == 0, run.output
    got = record(lab, first_address)
    assert got == {"inventory_hostname": "rent-lab-tiny", "sglang_profile": "lab-tiny", "sglang_cluster": "",
                   "sglang_private_ip": "", "ssh_client": lab["vars"]["lab_gateway"]}
    assert wait_released(standin, lab), account(standin)
    log = (tmp_path / "logs" / "rent-rent-lab-tiny.log").read_text()
    assert "rent-lab-tiny" in log and "PLAY RECAP" in log


def test_rent_a_cluster_and_reach_its_workers_through_the_jump_host(standin, lab, inventory, tmp_path):
    addresses = standin.state()["pool"][:2]
    jump = addresses[0]  # --jump-from-workers: the first worker's address is the cluster's public IP
    run = rent(standin, lab, inventory, tmp_path, profile="deepseek-r1-tp16")
    assert run.returncode == 0, run.output
    records = [record(lab, address) for address in addresses]
    assert [r["inventory_hostname"] for r in records] == ["rent-deepseek-r1-tp16-node-1",
                                                          "rent-deepseek-r1-tp16-node-2"]
    assert [r["sglang_private_ip"] for r in records] == addresses
    assert {r["sglang_cluster"] for r in records} == {"rent-deepseek-r1-tp16"}
    assert {r["sglang_profile"] for r in records} == {"deepseek-r1-tp16"}
    # Both SSH sessions arrived from the jump host, not from the controller's side of the lab network.
    assert {r["ssh_client"] for r in records} == {jump}
    assert wait_released(standin, lab), account(standin)


def test_a_failing_step_still_releases_the_hardware(standin, lab, inventory, tmp_path):
    run = rent(standin, lab, inventory, tmp_path, steps=(FAIL,))
    assert run.returncode != 0
    assert f"{FAIL} failed on rent-lab-tiny (exit code 2)" in run.output
    assert "the step failed on purpose" in run.output
    assert "TASK [Release the rented instance]" in run.output
    assert wait_released(standin, lab), account(standin)


def test_keep_leaves_the_hardware_and_an_existing_one_is_not_released(standin, lab, inventory, tmp_path):
    kept = rent(standin, lab, inventory, tmp_path, "-e", "datacrunch_keep=true")
    assert kept.returncode == 0, kept.output
    assert "instance rent-lab-tiny is kept (datacrunch_keep is true)" in kept.output
    assert account(standin)["instances"] == [("rent-lab-tiny", "running")]

    # Shut down, it is still there for the next run, which starts it, uses it and leaves it: it did not rent it.
    address = next(i["ip"] for i in standin.state()["instances"])
    stopped = ansible("ansible", "localhost", "-m", "datacrunch.sglang.datacrunch_instance", "-a",
                      "hostname=rent-lab-tiny state=stopped", control=standin)
    assert stopped.returncode == 0, stopped.output
    assert account(standin)["instances"] == [("rent-lab-tiny", "offline")]
    record(lab, address)  # the first run's record goes
    reused = rent(standin, lab, inventory, tmp_path)
    assert reused.returncode == 0, reused.output
    assert record(lab, address)["inventory_hostname"] == "rent-lab-tiny"
    assert "instance rent-lab-tiny is kept (it existed before this run)" in reused.output
    assert account(standin)["instances"] == [("rent-lab-tiny", "running")]

    released = rent(standin, lab, inventory, tmp_path, "-e", "datacrunch_release_existing=true")
    assert released.returncode == 0, released.output
    assert wait_released(standin, lab), account(standin)


def test_no_capacity_rents_and_releases_nothing(standin, lab, inventory, tmp_path):
    standin.set_pool([])
    run = rent(standin, lab, inventory, tmp_path)
    assert run.returncode != 0
    assert "no capacity for instance_type='8H200.141S.176V' in location='FIN-01'" in run.output
    assert account(standin) == {"instances": [], "clusters": []}
    assert [r for r in standin.requests() if r["method"] in ("POST", "PUT") and "oauth2" not in r["path"]] == []


def test_inputs_are_checked_before_anything_is_rented(standin, lab, inventory, tmp_path):
    run = rent(standin, lab, inventory, tmp_path, "-e", '{"datacrunch_ssh_keys": []}')
    assert run.returncode != 0
    assert "datacrunch_ssh_keys is empty" in run.output
    run = rent(standin, lab, inventory, tmp_path, profile="no-such-profile")
    assert run.returncode != 0
    assert "no-such-profile" in run.output
    run = rent(standin, lab, inventory, tmp_path, steps=("playbooks/none.yml",))
    assert run.returncode != 0
    assert "datacrunch_steps names playbooks/none.yml, which is not a file" in run.output
    # Only the inventory's reads reached the API.
    assert {(r["method"], r["path"]) for r in standin.requests()} == {
        ("POST", "/v1/oauth2/token"), ("GET", "/v1/instances"), ("GET", "/v1/clusters")}


def served(lab, address):
    """(profile, cluster, rank) of the SGLang server container on the lab host at this address, or None."""
    labels = "|".join('{{.Label "datacrunch.sglang.%s"}}' % name for name in ("profile", "cluster", "rank"))
    shown = subprocess.run(
        ["docker", "exec", lab["by_address"][address], "docker", "ps", "--filter", "name=^sglang-server$",
         "--format", labels], capture_output=True, text=True, check=False)
    line = shown.stdout.strip()
    return tuple(line.split("|")) if line else None


# Rented hardware comes fresh; the lab's hosts are reused from test to test and keep what a deploy left (its host
# firewall among it). The cluster deploy runs on hosts no deploy touched yet, as on a fresh rental.
def test_the_real_deploy_on_a_rented_cluster_serves_one_tp16_unit(standin, lab, inventory, tmp_path):
    addresses = standin.state()["pool"][:2]
    run = rent(standin, lab, inventory, tmp_path, steps=("playbooks/deploy.yml",), profile="lab-tiny-tp16")
    assert run.returncode == 0, run.output
    assert [served(lab, address) for address in addresses] == [
        ("lab-tiny-tp16", "rent-lab-tiny-tp16", "0"), ("lab-tiny-tp16", "rent-lab-tiny-tp16", "1")]
    assert wait_released(standin, lab), account(standin)


def test_the_real_deploy_and_benchmark_on_a_rented_instance(standin, lab, inventory, tmp_path):
    address = standin.state()["pool"][0]
    # The default steps: deploy, then benchmark (one concurrency level and no bench_one_batch here: the benchmark
    # scenario runs the whole sweep; this test is about the steps running on the rented host).
    run = rent(standin, lab, inventory, tmp_path, steps=(),
               step_args=("-e", '{"sglang_benchmark_concurrency": [1], "sglang_benchmark_one_batch": false}'))
    assert run.returncode == 0, run.output
    assert "playbooks/deploy.yml, playbooks/benchmark.yml" in run.output
    assert served(lab, address)[0] == "lab-tiny"
    reports = sorted((tmp_path / "reports").glob("*-rent-lab-tiny-lab-tiny-*.json"))
    assert reports, list((tmp_path / "reports").iterdir())
    assert wait_released(standin, lab), account(standin)
