"""Which OS image to rent for an SGLang image: the images the API stand-in says a type accepts, and the rule."""

import sys
from pathlib import Path

import pytest

from ansible_collections.datacrunch.sglang.plugins.module_utils.datacrunch.api import DataCrunchClient, resolve_settings
from ansible_collections.datacrunch.sglang.plugins.module_utils.datacrunch.images import (
    ImageChoiceError,
    choose_os_image,
    os_image_cuda,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lab" / "verda-api"))
import standin_control
import verda_api_standin
from standin_control import CLIENT_ID, CLIENT_SECRET

R1_IMAGE = "lmsysorg/sglang:v0.5.18"  # CUDA 13.0: needs an R580+ driver


@pytest.fixture(scope="module")
def accepted():
    """What the stand-in lists for an 8x H200 instance and for a 16H200 cluster."""
    with standin_control.in_thread() as control:
        client = DataCrunchClient(resolve_settings(CLIENT_ID, CLIENT_SECRET, control.base_url))
        yield {"instance": client.list_images("8H200.141S.176V"), "cluster": client.list_images("16H200", cluster=True)}


@pytest.mark.parametrize(("name", "cuda"), [
    ("ubuntu-24.04-cuda-12.8-open-docker", "12.8"), ("ubuntu-24.04-cuda-13.0-cluster", "13.0"),
    ("ubuntu-22.04-cuda-12.4-docker", "12.4"), ("ubuntu-24.04", None), ("ubuntu-22.04-cuda12.9", "12.9"),
])
def test_the_cuda_line_of_an_os_image(name, cuda):
    assert os_image_cuda(name) == cuda


def test_the_pinned_sglang_image_gets_a_cuda_13_image_for_instances_and_clusters(accepted):
    instance = choose_os_image(accepted["instance"], "instance type 8H200.141S.176V", R1_IMAGE)
    assert (instance["image"], instance["cuda"], instance["min_driver"]) == (
        "ubuntu-24.04-cuda-13.0-open-docker", "13.0", "580.65.06")
    cluster = choose_os_image(accepted["cluster"], "cluster type 16H200", "", cluster=True)  # "": the pinned default
    assert cluster["image"] == "ubuntu-24.04-cuda-13.0-cluster"
    assert cluster["sglang_image"] == R1_IMAGE


def test_an_older_cuda_build_of_sglang_may_take_an_older_image_and_prefers_docker(accepted):
    cu126 = "lmsysorg/sglang:v0.5.18-cu126"  # CUDA 12.6: driver >= 560.28.03, more than a CUDA 12.4 image's
    chosen = choose_os_image(["ubuntu-24.04", "ubuntu-22.04-cuda-12.4-docker", "ubuntu-24.04-cuda-12.8-open"], "x",
                             cu126)
    assert chosen["image"] == "ubuntu-24.04-cuda-12.8-open"
    chosen = choose_os_image(["ubuntu-24.04-cuda-13.0-open", "ubuntu-22.04-cuda-12.8-open-docker"], "x", cu126)
    assert chosen["image"] == "ubuntu-22.04-cuda-12.8-open-docker"  # an instance needs Docker: it comes first
    chosen = choose_os_image(["ubuntu-24.04-cuda-13.0-open", "ubuntu-22.04-cuda-12.8-open-docker"], "x", cu126,
                             cluster=True)
    assert chosen["image"] == "ubuntu-24.04-cuda-13.0-open"
    chosen = choose_os_image(accepted["instance"], "instance type 8H200.141S.176V", "lmsysorg/sglang:v0.5.18-cu126")
    assert chosen["image"] == "ubuntu-24.04-cuda-13.0-open-docker"  # the newest fitting line


def test_an_explicit_image_that_cannot_carry_the_driver_is_refused_with_both_names_and_the_way_out(accepted):
    with pytest.raises(ImageChoiceError) as error:
        choose_os_image(accepted["instance"], "instance type 8H200.141S.176V", R1_IMAGE,
                        wanted="ubuntu-24.04-cuda-12.8-open-docker")
    message = str(error.value)
    assert "datacrunch_image (module option image)='ubuntu-24.04-cuda-12.8-open-docker' (CUDA 12.8)" in message
    assert "sglang_image 'lmsysorg/sglang:v0.5.18' (CUDA 13.0, driver >= 580.65.06)" in message
    assert "instance type 8H200.141S.176V accepts: " + ", ".join(verda_api_standin.INSTANCE_IMAGES) in message
    assert "datacrunch_image_force: true" in message
    forced = choose_os_image(accepted["instance"], "x", R1_IMAGE, wanted="ubuntu-24.04-cuda-12.8-open-docker",
                             force=True)
    assert forced["image"] == "ubuntu-24.04-cuda-12.8-open-docker"
    fine = choose_os_image(accepted["instance"], "x", R1_IMAGE, wanted="ubuntu-24.04-cuda-13.0-open-docker")
    assert fine["image"] == "ubuntu-24.04-cuda-13.0-open-docker"


def test_an_image_the_type_does_not_accept_is_refused(accepted):
    with pytest.raises(ImageChoiceError) as error:
        choose_os_image(accepted["cluster"], "cluster type 16H200", R1_IMAGE, cluster=True,
                        wanted="ubuntu-24.04-cuda-13.0-open-docker")
    assert "is not an OS image that cluster type 16H200 accepts (it accepts: ubuntu-24.04-cuda-13.0-cluster, " in (
        str(error.value))


def test_no_fitting_image_says_what_to_change():
    with pytest.raises(ImageChoiceError) as error:
        choose_os_image(["ubuntu-22.04-cuda-12.9-cluster"], "cluster type 16H200", R1_IMAGE, cluster=True)
    assert "none of the OS images cluster type 16H200 accepts (ubuntu-22.04-cuda-12.9-cluster)" in str(error.value)
    assert "-cu129" in str(error.value)
    chosen = choose_os_image(["ubuntu-22.04-cuda-12.9-cluster"], "cluster type 16H200",
                             "lmsysorg/sglang:v0.5.18-cu129", cluster=True)
    assert chosen["image"] == "ubuntu-22.04-cuda-12.9-cluster"


def test_an_sglang_image_of_unknown_cuda_gets_the_newest_line(accepted):
    chosen = choose_os_image(accepted["instance"], "x", "lmsysorg/sglang:latest")
    assert chosen["image"] == "ubuntu-24.04-cuda-13.0-open-docker"
    assert "unknown" in chosen["reason"]
