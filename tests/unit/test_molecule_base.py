"""Every molecule scenario, merged on the shared base (extensions/molecule/config.yml) as molecule merges them
(dicts key by key, lists replaced), runs against this checkout: its ansible.cfg and collections, the lab's create and
destroy playbooks (the shared ones in extensions/molecule/shared unless it names its own), the lab's group_vars, no
Galaxy dependency step."""

from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.any_python

ROOT = Path(__file__).resolve().parents[2]
BASE = yaml.safe_load((ROOT / "extensions/molecule/config.yml").read_text())
SCENARIOS = sorted(path.parent.name for path in (ROOT / "extensions/molecule").glob("*/molecule.yml"))


def merged(base, top):
    result = dict(base)
    for key, value in top.items():
        result[key] = merged(base[key], value) if isinstance(base.get(key), dict) and isinstance(value, dict) else value
    return result


def test_every_scenario_is_found():
    assert SCENARIOS == ["benchmark", "default", "multinode", "prefetch", "preflight", "redeploy", "security"]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_the_scenario_runs_against_this_checkout(scenario):
    folder = ROOT / "extensions/molecule" / scenario
    config = merged(BASE, yaml.safe_load((folder / "molecule.yml").read_text()))
    env = config["provisioner"]["env"]
    assert env["ANSIBLE_CONFIG"] == "${MOLECULE_PROJECT_DIRECTORY}/ansible.cfg"
    assert env["ANSIBLE_COLLECTIONS_PATH"] == "${MOLECULE_PROJECT_DIRECTORY}/collections"
    assert env["LAB_NAME"] and env["LAB_INVENTORY_DIR"] == "${MOLECULE_EPHEMERAL_DIRECTORY}/inventory"
    # The lab's settings reach every scenario's inventory (the stand-in image, the lab Hub, disk asks a few GB in
    # size on hosts that share this machine's disk): molecule links them into the inventory it rebuilds before each
    # step, resolving the link from the scenario's folder.
    links = config["provisioner"]["inventory"]["links"]
    assert (folder / links["group_vars"]).resolve() == ROOT / "inventories/lab/group_vars", links
    assert config["dependency"]["enabled"] is False and config["prerun"] is False
    for step, playbook in config["provisioner"]["playbooks"].items():
        assert (folder / playbook).is_file(), "%s: %s names %s, which is not in %s" % (scenario, step, playbook, folder)
    assert {"create", "converge", "destroy"} <= set(config["provisioner"]["playbooks"])
    # The shared create starts one lab host per platform.
    if config["provisioner"]["playbooks"]["create"] == "../shared/create.yml":
        assert config["platforms"] and all(item["name"].startswith(env["LAB_NAME"]) for item in config["platforms"])
    assert config["scenario"]["test_sequence"][0] == "destroy" and config["scenario"]["test_sequence"][-1] in (
        "destroy", "verify")
