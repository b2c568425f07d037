"""playbooks/rent.yml end to end: the DataCrunch (Verda) API stand-in rents out lab hosts, Ansible reaches them.

The lab (tests/lab/lab.sh) runs two simulated H200 hosts reached over SSH; the API stand-in hands their addresses to
what is rented: an instance gets one, an Instant Cluster gets both as workers, the first of them doubling as its
jump host. The step playbooks are test material that leave a record on each host (how the SSH session arrived), or
fail on purpose. The world: records on the hosts, the stand-in's account state, the log file.

Environment: LAB_NAME (default dcsgdev-inv) names the lab; DCSG_KEEP_LAB=1 leaves it up afterwards. The real deploys
on rented hardware are in test_datacrunch_rent_deploy.py, on a lab of their own.
"""

import os

from rental import FAIL, account, ansible, record, rent, wait_released

LAB_NAME = os.environ.get("LAB_NAME", "dcsgdev-inv")


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
