"""The driver an SGLang image needs, and the advice when the host's is too old."""

import pytest

from ansible_collections.datacrunch.sglang.plugins.module_utils.gpu import cuda_compat


@pytest.mark.parametrize(
    ("image", "cuda", "floor"),
    [
        ("lmsysorg/sglang:v0.5.18", "13.0", "580.65.06"),
        ("lmsysorg/sglang:v0.5.23", "13.0", "580.65.06"),
        ("lmsysorg/sglang:v0.5.18-cu130", "13.0", "580.65.06"),
        ("lmsysorg/sglang:v0.5.18-cu129", "12.9", "575.51.03"),
        ("lmsysorg/sglang:v0.5.3-cu126", "12.6", "560.28.03"),
        ("lmsysorg/sglang:v0.5.6-cu129-amd64", "12.9", "575.51.03"),
        ("lmsysorg/sglang:v0.4.4.post1-cu124", "12.4", "550.54.14"),
        ("lmsysorg/sglang:v0.4.1", "12.4", "550.54.14"),
        ("localhost/sglang-standin:v0.5.18", "13.0", "580.65.06"),
        ("registry.example:5000/team/sglang:v0.5.18-cu128@sha256:" + "a" * 64, "12.8", "570.26"),
    ],
)
def test_image_cuda(image, cuda, floor):
    info = cuda_compat.image_cuda(image)
    assert (info["cuda"], info["min_driver"]) == (cuda, floor)


@pytest.mark.parametrize(
    ("image", "reason"),
    [
        ("lmsysorg/sglang:latest", "moves between releases"),
        ("lmsysorg/sglang:dev", "moves between releases"),
        ("lmsysorg/sglang@sha256:" + "b" * 64, "digest alone"),
        ("lmsysorg/sglang:v0.5.3", "is not known"),
        ("my/sglang:custom", "does not say the SGLang version"),
    ],
)
def test_unknown_cuda_says_why(image, reason):
    info = cuda_compat.image_cuda(image)
    assert info["cuda"] is None
    assert reason in info["source"]


def test_version_hint_for_a_digest():
    assert cuda_compat.image_cuda("lmsysorg/sglang@sha256:" + "b" * 64, "0.5.18")["cuda"] == "13.0"


def test_driver_comparison_is_numeric():
    assert cuda_compat.driver_at_least("580.159.04", "580.65.06")
    assert not cuda_compat.driver_at_least("575.57.08", "580.65.06")
    assert cuda_compat.driver_at_least("570.26", "570.26")
    assert not cuda_compat.driver_at_least("", "570.26")


def test_real_host_driver_runs_the_pinned_image():
    verdict = cuda_compat.check_driver("lmsysorg/sglang:v0.5.18", "580.159.04")
    assert verdict["ok"] is True
    assert verdict["message"] == "driver 580.159.04 >= 580.65.06 needed by lmsysorg/sglang:v0.5.18 (CUDA 13.0)"


def test_older_driver_is_offered_the_fitting_variant():
    verdict = cuda_compat.check_driver("lmsysorg/sglang:v0.5.18", "575.57.08")
    assert verdict["ok"] is False
    assert "575.57.08 is older than 580.65.06" in verdict["message"]
    assert verdict["fix"].startswith("set sglang_image: lmsysorg/sglang:v0.5.18-cu129 ")


def test_r560_driver_gets_the_cu126_variant():
    verdict = cuda_compat.check_driver("lmsysorg/sglang:v0.5.18-cu130", "560.35.03")
    assert verdict["ok"] is False
    assert "lmsysorg/sglang:v0.5.18-cu126" in verdict["fix"]


def test_too_old_for_every_variant_says_upgrade():
    verdict = cuda_compat.check_driver("lmsysorg/sglang:v0.5.18", "550.54.15")
    assert verdict["ok"] is False
    assert verdict["fix"].startswith("upgrade the NVIDIA driver to >= 580.65.06 (R580)")


def test_explicit_floor_wins():
    verdict = cuda_compat.check_driver("lmsysorg/sglang:v0.5.18", "575.57.08", min_driver="570")
    assert verdict["ok"] is True
    verdict = cuda_compat.check_driver("lmsysorg/sglang:latest", "575.57.08", min_driver="590.1")
    assert verdict["ok"] is False
    assert verdict["source"] == "set explicitly"


def test_unknown_floor_is_not_a_pass():
    verdict = cuda_compat.check_driver("lmsysorg/sglang:latest", "580.159.04")
    assert verdict["ok"] is None
    assert "pin a versioned tag" in verdict["fix"]


def test_missing_driver():
    verdict = cuda_compat.check_driver("lmsysorg/sglang:v0.5.18", "")
    assert verdict["ok"] is False
    assert "install the NVIDIA driver" in verdict["fix"]


def test_every_variant_has_a_floor():
    for suffix in cuda_compat.VARIANTS:
        cuda = f"{int(suffix[2:4])}.{int(suffix[4])}"
        assert cuda in cuda_compat.MIN_DRIVER
