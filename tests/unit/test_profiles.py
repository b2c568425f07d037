"""Profiles: shipped files resolve, extends merges, user profiles override, bad profiles are refused."""

import re
from pathlib import Path

import pytest
import yaml

from ansible_collections.datacrunch.sglang.plugins.module_utils.plan.profiles import (
    ProfileError,
    load_profile_files,
    resolve_profile,
    shipped_profiles_dir,
)

SHIPPED = load_profile_files(shipped_profiles_dir())
REPO = Path(__file__).resolve().parents[2]


def test_the_designed_profiles_ship():
    assert set(SHIPPED) == {"deepseek-r1", "deepseek-r1-mtp", "deepseek-r1-tp16", "deepseek-v3", "deepseek-r1-0528",
                            "deepseek-r1-throughput", "lab-tiny"}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_profiles_resolve(name):
    profile = resolve_profile(name, SHIPPED)
    assert profile["name"] == name
    assert profile["tp"] == profile["nodes"] * profile["gpus_per_node"]
    assert profile["description"]


def test_seed_profile_pins_the_commit_and_the_seed_figure():
    profile = resolve_profile("deepseek-r1", SHIPPED)
    assert profile["model"] == "deepseek-ai/DeepSeek-R1"
    assert re.fullmatch(r"[0-9a-f]{40}", profile["revision"])
    assert profile["sglang_args"]["trust-remote-code"] is True
    assert profile["dp_attention"] == 8
    assert profile["expected"]["bench_one_batch"]["median_decode_throughput"] == 47.67


def test_extends_merges_mappings_and_null_removes():
    v3 = resolve_profile("deepseek-v3", SHIPPED)
    assert "reasoning-parser" not in v3["sglang_args"]
    assert v3["sglang_args"]["trust-remote-code"] is True
    assert v3["sglang_args"]["tool-call-parser"] == "deepseekv3"
    assert v3["expected"] == {}
    tp16 = resolve_profile("deepseek-r1-tp16", SHIPPED)
    assert (tp16["nodes"], tp16["tp"], tp16["dp_attention"]) == (2, 16, 0)


def test_user_profiles_extend_and_override_shipped_ones():
    extra = {"mine": {"extends": "deepseek-r1", "sglang_args": {"mem-fraction-static": 0.8}},
             "deepseek-v3": {"extends": "deepseek-r1", "model": "my-org/DeepSeek-V3-mirror"}}
    mine = resolve_profile("mine", SHIPPED, extra)
    assert mine["sglang_args"]["mem-fraction-static"] == 0.8
    assert mine["sglang_args"]["trust-remote-code"] is True
    assert resolve_profile("deepseek-v3", SHIPPED, extra)["model"] == "my-org/DeepSeek-V3-mirror"
    with pytest.raises(ProfileError, match="extends loop"):
        resolve_profile("deepseek-r1", SHIPPED, {"deepseek-r1": {"extends": "deepseek-r1-mtp"}})


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"x": {"extends": "nope"}}, "extends 'nope', which is not a known profile"),
        ({"x": {"extends": "deepseek-r1", "tp": 16}}, r"tp=16 needs 16 GPUs, but nodes=1 x gpus_per_node=8 gives 8"),
        ({"x": {"extends": "deepseek-r1", "colour": "red"}}, "unknown field 'colour'"),
        ({"x": {"extends": "deepseek-r1", "nodes": "two"}}, "field 'nodes' must be int"),
        ({"x": {"model": "a/b", "nodes": 1, "gpus_per_node": 8}}, "lacks the required field 'tp'"),
        ({"x": {"extends": "deepseek-r1", "dp_attention": 3}}, "dp_attention=3 must divide tp=8"),
        ({"x": "deepseek-r1"}, r"sglang_profiles_extra\['x'\] must be a mapping"),
    ],
)
def test_bad_profiles_are_refused(extra, message):
    with pytest.raises(ProfileError, match=message):
        resolve_profile("x", SHIPPED, extra)


def test_unknown_profile_lists_the_known_ones():
    with pytest.raises(ProfileError, match=r"sglang_profile='deepseek-r2' is not a known profile\. Known profiles: "):
        resolve_profile("deepseek-r2", SHIPPED)


def test_collection_version_matches_galaxy():
    galaxy = yaml.safe_load((REPO / "galaxy.yml").read_text())
    role_vars = yaml.safe_load((REPO / "roles/sglang/vars/main.yml").read_text())
    assert str(role_vars["sglang_collection_version"]) == galaxy["version"]


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_speculative_profiles_are_judged_by_bench_serving_against_a_published_figure(name):
    """bench_one_batch decodes without speculation: a speculative profile expects no figure from it."""
    from ansible_collections.datacrunch.sglang.plugins.module_utils.plan.profiles import speculative_algorithm

    profile = resolve_profile(name, SHIPPED)
    if not speculative_algorithm(profile):
        return
    expected = profile["expected"]
    assert not expected.get("bench_one_batch")
    bound = expected["bench_serving"][1]["per_user_decode_throughput"]
    assert bound["min"] == 77.0 and "https://github.com/sgl-project/sglang/pull/3582" in bound["published"]


def test_mtp_profile_is_speculative():
    from ansible_collections.datacrunch.sglang.plugins.module_utils.plan.profiles import speculative_algorithm

    assert speculative_algorithm(resolve_profile("deepseek-r1-mtp", SHIPPED)) == "EAGLE"
    assert speculative_algorithm(resolve_profile("deepseek-r1", SHIPPED)) is None


def test_speculative_profile_with_a_single_batch_figure_is_refused():
    extra = {"fast": {"extends": "deepseek-r1-mtp", "expected": {"bench_one_batch": {"median_decode_throughput": 85}}}}
    with pytest.raises(ProfileError, match=r"profile 'fast' runs speculative decoding .* SpeculativeAlgorithm.NONE"):
        resolve_profile("fast", SHIPPED, extra)


def test_throughput_profile_cites_its_published_settings_and_figures():
    profile = resolve_profile("deepseek-r1-throughput", SHIPPED)
    text = (Path(shipped_profiles_dir()) / "deepseek-r1-throughput.yml").read_text()
    assert "benchmarks/dsr1_fp8_h200.sh" in text and "https://github.com/SemiAnalysisAI/InferenceX" in text
    assert profile["dp_attention"] == 0 and profile["tp"] == 8
    assert not profile["expected"].get("bench_one_batch")
    for fields in profile["expected"]["bench_serving"].values():
        for bound in fields.values():
            assert "not measured by this collection" in bound["published"]
