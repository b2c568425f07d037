"""playbooks/rent.yml with the real steps: a cluster and an instance rented from the DataCrunch (Verda) API stand-in,
deployed and benchmarked by playbooks/deploy.yml and playbooks/benchmark.yml on lab hosts (simulated H200 hosts).

A lab of its own (conftest.py), apart from test_datacrunch_rent.py's, so that the two run side by side.
Environment: RENT_DEPLOY_LAB_NAME (default dcsgdev-rent-deploy) names the lab; DCSG_KEEP_LAB=1 leaves it up.
"""

import os

from rental import account, rent, served, wait_released

LAB_NAME = os.environ.get("RENT_DEPLOY_LAB_NAME", "dcsgdev-rent-deploy")


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
