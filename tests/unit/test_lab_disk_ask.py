"""The lab's hosts share this machine's disk, so the preflight's disk checks on a lab host measure the machine
running the tests. What the lab inventory has the preflight ask for must stay a few GB, far below what a CI machine
has free once everything is built (about 40 GiB): a converge must not fail there for a figure that describes a real
SGLang image or real weights, not the lab's."""

from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.any_python

ROOT = Path(__file__).resolve().parents[2]
LAB_VARS = yaml.safe_load((ROOT / "inventories/lab/group_vars/all.yml").read_text())
GPU_HOST_DEFAULTS = yaml.safe_load((ROOT / "roles/gpu_host/defaults/main.yml").read_text())
LAB_PROFILE = yaml.safe_load((ROOT / "roles/sglang_server/vars/profiles/lab-tiny.yml").read_text())


def lab_value(name):
    return float(LAB_VARS.get(name, GPU_HOST_DEFAULTS[name]))


def test_the_lab_asks_this_machines_disk_for_a_few_gb():
    # The three asks of roles/gpu_host/tasks/validate.yml: the weights (with their margin), the caches, the image
    # when it is not on the host yet (the default scenario pulls it from the lab registry).
    model = float(LAB_PROFILE["model_size_gb"]) * lab_value("gpu_host_model_size_margin")
    asks = {"model": model, "caches": lab_value("gpu_host_cache_free_gb"), "image": lab_value("gpu_host_image_size_gb")}
    assert sum(asks.values()) <= 5, asks
    # Real hosts keep the figures of real images and caches.
    assert GPU_HOST_DEFAULTS["gpu_host_image_size_gb"] == 50 and GPU_HOST_DEFAULTS["gpu_host_cache_free_gb"] == 20
