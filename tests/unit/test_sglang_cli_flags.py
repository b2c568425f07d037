"""The generated SGLang flag data (plugins/module_utils/launch/cli_flags.py) and its lookups."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "collections") not in sys.path:
    sys.path.insert(0, str(ROOT / "collections"))

from ansible_collections.datacrunch.sglang.plugins.module_utils.launch import cli_flags as flags  # noqa: E402

VERSIONS = ["0.5.18", "0.5.23"]
ACTIONS = {
    "store",
    "store_true",
    "store_false",
    "store_const",
    "append",
    "count",
    "help",
    "boolean_optional",
    "lora_paths",
    "deprecated",
    "deprecated_store_true",
    "deprecated_store_const",
    "deprecated_alias",
}
TYPES = {
    None,
    "str",
    "int",
    "float",
    "json",
    "json_list",
    "human_readable_int",
    "nullable_str",
    "cuda_graph_config",
    "cuda_graph_backend",
}
# Flags this collection renders for DeepSeek-R1 on H200, in both versions.
DEPLOYMENT_FLAGS = [
    "--model-path",
    "--revision",
    "--tp-size",
    "--dp-size",
    "--trust-remote-code",
    "--host",
    "--port",
    "--api-key",
    "--served-model-name",
    "--enable-metrics",
    "--nnodes",
    "--node-rank",
    "--dist-init-addr",
    "--dist-timeout",
    "--mem-fraction-static",
    "--kv-cache-dtype",
    "--reasoning-parser",
    "--tool-call-parser",
    "--speculative-algorithm",
    "--speculative-num-steps",
    "--enable-torch-compile",
    "--torch-compile-max-bs",
    "--watchdog-timeout",
    "--config",
]


def test_versions_are_the_supported_ones_in_order():
    assert flags.supported_versions() == VERSIONS
    assert set(flags.SGLANG_CONFIG_STORE_TRUE) == set(VERSIONS)
    assert set(flags.SGLANG_CONFIG_UNSUPPORTED) == set(VERSIONS)
    assert set(flags.SGLANG_CLI_ALLOW_ABBREV) == set(VERSIONS)


@pytest.mark.parametrize("version", VERSIONS)
def test_every_entry_is_well_formed(version):
    table = flags.SGLANG_CLI_FLAGS[version]
    assert len(table) > 450
    for option, spec in table.items():
        assert option.startswith("-"), option
        assert spec["action"] in ACTIONS, (option, spec["action"])
        assert spec["type"] in TYPES, (option, spec["type"])
        assert spec["nargs"] in (None, 0, "?", "*", "+") or isinstance(spec["nargs"], int), option
        assert spec["choices"] is None or (isinstance(spec["choices"], list) and spec["choices"]), option
        assert spec["deprecated"] is None or spec["deprecated"].strip(), option
        assert "\033" not in (spec["deprecated"] or ""), option
        primary = table[spec["primary"]]
        assert primary["dest"] == spec["dest"], option
        assert primary["primary"] == spec["primary"], option
        if spec["action"] in ("store_true", "store_false", "deprecated_store_true", "help"):
            assert spec["nargs"] == 0, option


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("flag", DEPLOYMENT_FLAGS)
def test_flags_the_collection_renders_are_known(version, flag):
    spec = flags.flag_spec(version, flag)
    assert spec is not None, f"{flag} missing from {version}"
    assert spec["primary"] == flag


@pytest.mark.parametrize("version", VERSIONS)
def test_aliases_share_dest_and_primary(version):
    assert flags.flag_spec(version, "--model")["dest"] == "model_path"
    assert flags.canonical_flag(version, "--model") == "--model-path"
    for spelling in ("--tp", "--tp-size", "--tensor-parallel-size", "--tp=8"):
        assert flags.canonical_flag(version, spelling) == "--tp-size", spelling
        assert flags.flag_spec(version, spelling)["dest"] == "tp_size"
    assert flags.canonical_flag(version, "--ep") == "--ep-size"
    assert flags.canonical_flag(version, "--nccl-init-addr") == "--dist-init-addr"


@pytest.mark.parametrize("version", VERSIONS)
def test_values_and_switches(version):
    assert flags.takes_value(version, "--tp") is True
    assert flags.takes_value(version, "--model") is True
    assert flags.takes_value(version, "--trust-remote-code") is False
    assert flags.takes_value(version, "--enable-dp-attention") is False
    assert flags.flag_spec(version, "--tp-size")["type"] == "int"
    assert flags.flag_spec(version, "--mem-fraction-static")["type"] == "float"
    assert "fp8_e4m3" in flags.flag_spec(version, "--kv-cache-dtype")["choices"]
    assert "deepseek-r1" in flags.flag_spec(version, "--reasoning-parser")["choices"]
    assert flags.flag_spec(version, "--port")["default"] == 30000
    assert flags.flag_spec(version, "--host")["default"] == "127.0.0.1"


def test_dp_attention_is_current_in_0_5_18():
    spec = flags.flag_spec("0.5.18", "--enable-dp-attention")
    assert spec["action"] == "store_true"
    assert spec["deprecated"] is None
    assert flags.flag_spec("0.5.18", "--attn-dp-size") is None
    with pytest.raises(ValueError, match=r"SGLang 0\.5\.18 does not accept --attn-dp-size"):
        flags.canonical_flag("0.5.18", "--attn-dp-size")


def test_dp_attention_is_deprecated_in_0_5_23_for_attn_dp_size():
    spec = flags.flag_spec("0.5.23", "--enable-dp-attention")
    assert spec["action"] == "deprecated_store_true"
    assert "--attn-dp-size" in spec["deprecated"]
    assert spec["deprecated"].startswith("'--enable-dp-attention' is deprecated")
    attn = flags.flag_spec("0.5.23", "--attn-dp-size")
    assert attn["type"] == "int"
    assert attn["deprecated"] is None
    assert flags.takes_value("0.5.23", "--attn-dp-size") is True


@pytest.mark.parametrize("version", VERSIONS)
def test_config_merger_booleans(version):
    store_true = flags.SGLANG_CONFIG_STORE_TRUE[version]
    assert {"trust_remote_code", "enable_metrics", "enable_torch_compile"} <= store_true
    assert "tp_size" not in store_true
    assert "lora_paths" in flags.SGLANG_CONFIG_UNSUPPORTED[version]


@pytest.mark.parametrize("version", VERSIONS)
def test_abbreviations_follow_argparse(version):
    # argparse accepts a unique prefix and refuses an ambiguous one.
    assert flags.match_flag(version, "--trust-remote")[0] == "--trust-remote-code"
    option, reason = flags.match_flag(version, "--enable-dp")
    assert option is None
    assert "ambiguous option: --enable-dp could match" in reason
    assert flags.flag_spec(version, "--enable-dp") is None
    assert flags.flag_spec(version, "--no-such-flag") is None


@pytest.mark.parametrize("version", VERSIONS)
def test_boolean_optional_negation_keeps_its_meaning(version):
    option = next(o for o, s in flags.SGLANG_CLI_FLAGS[version].items() if s["action"] == "boolean_optional")
    negative = next(
        o
        for o, s in flags.SGLANG_CLI_FLAGS[version].items()
        if s["primary"] == option and o != option and o.startswith("--no-")
    )
    assert flags.canonical_flag(version, option) == option
    assert flags.canonical_flag(version, negative) == negative


def test_cuda_graph_max_bs_was_split_per_phase():
    # 0.5.18 still takes the old spelling with a warning; in 0.5.23 it is only an ambiguous prefix.
    old = flags.flag_spec("0.5.18", "--cuda-graph-max-bs")
    assert old["action"] == "deprecated_alias"
    assert old["dest"] == "cuda_graph_max_bs_decode"
    assert "--cuda-graph-max-bs" not in flags.SGLANG_CLI_FLAGS["0.5.23"]
    assert flags.flag_spec("0.5.23", "--cuda-graph-max-bs") is None
    assert flags.flag_spec("0.5.23", "--cuda-graph-max-bs-decode")["type"] == "int"


def test_unknown_version_names_the_supported_ones():
    with pytest.raises(ValueError, match=r"'0\.4\.1' has no flag data: supported versions are 0\.5\.18, 0\.5\.23"):
        flags.flag_spec("0.4.1", "--tp")


def test_lookups_return_copies():
    spec = flags.flag_spec("0.5.18", "--tp")
    spec["dest"] = "changed"
    assert flags.flag_spec("0.5.18", "--tp")["dest"] == "tp_size"


def test_module_says_it_is_generated():
    head = (ROOT / "plugins/module_utils/launch/cli_flags.py").read_text().splitlines()[:3]
    assert "Generated by tests/sglang_parser/generate_flags.py" in head[0]
    assert any("Regenerate:" in line for line in head)


@pytest.mark.parametrize("version", VERSIONS)
def test_bench_tools_flags(version):
    one_batch = flags.SGLANG_BENCH_FLAGS["one_batch"][version]
    for option in ("--batch-size", "--input-len", "--output-len", "--result-filename", "--run-name"):
        assert option in one_batch, option
    assert one_batch["--batch-size"]["nargs"] == "+"
    assert one_batch["--result-filename"]["default"] == "result.jsonl"
    # bench_one_batch also takes every server option; those are not repeated here
    assert not set(one_batch) & set(flags.SGLANG_CLI_FLAGS[version])
    serving = flags.SGLANG_BENCH_FLAGS["serving"][version]
    assert {"sglang", "sglang-oai", "sglang-oai-chat"} <= set(serving["--backend"]["choices"])
    assert {"random", "random-ids", "sharegpt"} <= set(serving["--dataset-name"]["choices"])
    for option in ("--base-url", "--host", "--port", "--num-prompts", "--max-concurrency", "--output-file"):
        assert option in serving, option
    assert serving["--request-rate"]["default"] == float("inf")
    assert flags.SGLANG_BENCH_SERVING_DESCRIPTION[version] == "Benchmark the online serving throughput."


def test_goodput_is_new_in_0_5_23_bench_serving():
    assert "--goodput" not in flags.SGLANG_BENCH_FLAGS["serving"]["0.5.18"]
    assert flags.SGLANG_BENCH_FLAGS["serving"]["0.5.23"]["--goodput"]["type"] == "goodput_slo"
