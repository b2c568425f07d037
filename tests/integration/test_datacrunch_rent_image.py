"""playbooks/rent.yml refuses an OS image that cannot carry the driver the SGLang image needs, before anything is
rented. The API stand-in alone, no lab; the choice by rule on a rented instance and cluster is checked end to end in the
tests under rent/."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lab" / "verda-api"))
import standin_control
from standin_control import CLIENT_SECRET, REPO_ROOT, ansible


@pytest.fixture(scope="module")
def api():
    with standin_control.in_process("--provision-seconds", "0.1", "--action-seconds", "0.1") as control:
        yield control


@pytest.fixture
def inventory(tmp_path):
    (tmp_path / "datacrunch.yml").write_text((REPO_ROOT / "inventories/datacrunch/datacrunch.yml").read_text())
    return str(tmp_path)


def rent(api, inventory, tmp_path, profile, **extra):
    variables = {"datacrunch_profile": profile, "datacrunch_ssh_keys": ["standin-default"],
                 "datacrunch_wait_timeout": 60, "datacrunch_log_dir": str(tmp_path / "logs"), **extra}
    run = ansible("ansible-playbook", "playbooks/rent.yml", "-i", inventory, "-e", json.dumps(variables),
                  control=api, timeout=300)
    assert CLIENT_SECRET not in run.output
    return run


def sent(api):
    return [(r["method"], r["path"], r["status"]) for r in api.requests() if r["method"] in ("POST", "PUT")
            and "oauth2" not in r["path"]]


def test_an_image_without_the_driver_the_sglang_image_needs_is_refused_before_anything_is_rented(
        api, inventory, tmp_path):
    api.reset(pool=["127.0.0.1"])
    run = rent(api, inventory, tmp_path, "deepseek-r1", datacrunch_image="ubuntu-24.04-cuda-12.8-open-docker")
    assert run.returncode != 0
    message = " ".join(run.output.split())
    assert ("datacrunch_image (module option image)='ubuntu-24.04-cuda-12.8-open-docker' (CUDA 12.8) does not carry "
            "a driver for sglang_image 'lmsysorg/sglang:v0.5.18' (CUDA 13.0, driver >= 580.65.06). instance type "
            "8H200.141S.176V accepts: ubuntu-24.04-cuda-12.8-open-docker, ubuntu-24.04-cuda-13.0-open-docker"
            ) in message
    assert "datacrunch_image_force: true" in message
    assert sent(api) == []
    assert api.state()["instances"] == []
