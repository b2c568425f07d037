"""Fixtures of the playbooks/rent.yml tests in this folder: a lab of two simulated H200 hosts, the DataCrunch (Verda)
API stand-in renting them out, and an inventory shaped like inventories/datacrunch/.

Each test module names its own lab in LAB_NAME (a module attribute), so that the modules run side by side, each on its
own lab hosts. DCSG_KEEP_LAB=1 leaves a lab up afterwards.
"""

import os
import subprocess

import pytest
import yaml
from rental import LAB_SH, REPO_ROOT, api_stand_in


@pytest.fixture(scope="module")
def lab(request, tmp_path_factory):
    inventory_dir = tmp_path_factory.mktemp("lab-inventory")
    # Rented cluster workers have their local NVMe at /mnt/local_disk, where the weights go by default.
    env = {**os.environ, "LAB_NAME": request.module.LAB_NAME, "LAB_INVENTORY_DIR": str(inventory_dir),
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
    with api_stand_in("--pool", pool, "--jump-from-workers", "--provision-seconds", "2",
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
