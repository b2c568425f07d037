"""SGLang's own parser (tests/sglang_parser) against the generated flag data and the stand-in that parses with it.

Needs .venv-sglang-parser (tests/sglang_parser/setup.sh). The same argvs go through SGLang's real parser of each
version and through the stand-in's rebuilt one: exit status, argparse's message, deprecation warnings and the
parsed values must agree.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PARSER_DIR = REPO_ROOT / "tests/sglang_parser"
VENV_PYTHON = REPO_ROOT / ".venv-sglang-parser/bin/python"
VERSIONS = ["0.5.18", "0.5.23"]

pytestmark = pytest.mark.skipif(
    not VENV_PYTHON.exists() or not all((PARSER_DIR / ".cache" / f"sglang-{v}").is_dir() for v in VERSIONS),
    reason="SGLang's parser is not set up: run tests/sglang_parser/setup.sh",
)

sys.path.insert(0, str(REPO_ROOT / "tests/lab/sglang-standin"))
from sglang.standin import flags as standin_flags  # noqa: E402

SEED = ["--model", "deepseek-ai/DeepSeek-R1", "--tp", "8", "--trust-remote-code", "--enable-dp-attention"]
ARGVS = [
    SEED,
    [*SEED, "--dp", "8", "--host", "0.0.0.0", "--port", "30000", "--enable-metrics", "--api-key", "k"],
    ["--model-path", "m", "--attn-dp-size", "8", "--tp-size", "8"],
    ["--model", "m", "--tp=16", "--nnodes", "2", "--node-rank", "1", "--dist-init-addr", "10.0.0.1:5000"],
    ["--model", "m", "--tensor-parallel-size", "x"],
    ["--model", "m", "--kv-cache-dtype", "fp8_e4m3", "--mem-fraction-static", "0.85"],
    ["--model", "m", "--kv-cache-dtype", "fp9"],
    ["--model", "m", "--reasoning-parser", "deepseek-r1", "--tool-call-parser", "deepseekv3"],
    ["--model", "m", "--speculative-algorithm", "EAGLE", "--speculative-num-steps", "3"],
    ["--model", "m", "--enable-dp"],
    ["--model", "m", "--cuda-graph-max-bs", "8", "--disable-cuda-graph"],
    ["--model", "m", "--context-length", "32k", "--json-model-override-args", "{}"],
    ["--model", "m", "--no-such-flag"],
    ["--model", "m", "--collect-tokens-histogram"],
    ["--model", "m", "--monokernel-backend", "amd"],
    ["--model", "m", "--lora-paths", "a", "b=c"],
    ["--tp", "8"],
    ["--model", "m", "--trust-remote"],
]
CONFIGS = {
    "plain": "model-path: deepseek-ai/DeepSeek-R1\ntp: 8\ntrust-remote-code: true\nenable-metrics: false\n",
    "values": "model: m\nmem-fraction-static: 0.8\nwatchdog-timeout: 600\nserved-model-name: r1\ndp-size: 8\n",
    "unsupported": "model: m\nlora-paths: [a, b]\n",
    "bad-type": "model: m\ntp: eight\n",
}


def _standin(version: str, argv: list[str]) -> dict:
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            merged = standin_flags.merge_config(list(argv), version) if "--config" in argv else list(argv)
            namespace = standin_flags.server_parser(version=version).parse_args(merged)
    except SystemExit as exc:
        return {"rc": exc.code, "stderr": err.getvalue()}
    except ValueError as exc:
        return {"rc": 1, "stderr": err.getvalue(), "message": f"ValueError: {exc}"}
    return {"rc": 0, "stderr": err.getvalue(), "args": json.loads(json.dumps(vars(namespace), default=str))}


def _messages(stderr: str) -> list[str]:
    """stderr without argparse's usage block (its {a,b} sets print in hash order, which varies per process)."""
    return [line for line in stderr.splitlines() if line and not line.startswith(("usage:", " "))]


@pytest.fixture(scope="module")
def config_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("configs")
    paths = {}
    for name, text in CONFIGS.items():
        paths[name] = folder / f"{name}.yaml"
        paths[name].write_text(text)
    return paths


@pytest.fixture(scope="module")
def cases(config_files):
    argvs = [*ARGVS, *(["--config", str(path)] for path in config_files.values())]
    argvs.append(["--config", str(config_files["plain"]), "--tp", "4"])
    items = [{"version": v, "argv": a} for v in VERSIONS for a in argvs]
    out = subprocess.run(
        [sys.executable, str(PARSER_DIR / "check_argv.py"), "--json"],
        input=json.dumps(items),
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return list(zip(items, json.loads(out.stdout), strict=True))


def test_the_corpus_covers_every_outcome(cases):
    outcomes = {real["rc"] for _item, real in cases}
    assert outcomes == {0, 1, 2}


def test_standin_parses_as_the_real_parser(cases):
    differences = []
    for item, real in cases:
        mine = _standin(item["version"], item["argv"])
        same = mine["rc"] == real["rc"] and _messages(mine["stderr"]) == _messages(real["stderr"])
        if real["rc"] == 0:
            same = same and mine["args"] == real["args"]
        if real["rc"] == 1:
            same = same and mine.get("message") == real["message"]
        if not same:
            differences.append((item, real["rc"], real["message"], mine["rc"], _messages(mine["stderr"])[-1:]))
    assert not differences


def test_config_merge_reads_yaml_as_sglang_does(cases, config_files):
    by_argv = {(i["version"], tuple(i["argv"])): r for i, r in cases}
    for version in VERSIONS:
        plain = by_argv[(version, ("--config", str(config_files["plain"])))]
        assert plain["rc"] == 0
        assert plain["args"]["tp_size"] == 8
        assert plain["args"]["trust_remote_code"] is True
        assert plain["args"]["enable_metrics"] is False
        # the command line wins over the file
        assert by_argv[(version, ("--config", str(config_files["plain"]), "--tp", "4"))]["args"]["tp_size"] == 4
        unsupported = by_argv[(version, ("--config", str(config_files["unsupported"])))]
        assert unsupported["rc"] == 1
        assert "Unsupported config option 'lora_paths'" in unsupported["message"]


def test_generated_module_is_current():
    out = subprocess.run(
        [sys.executable, str(PARSER_DIR / "generate_flags.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr


def test_check_argv_command_line():
    ok = subprocess.run(
        [sys.executable, str(PARSER_DIR / "check_argv.py"), "0.5.18", "--", *SEED],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["enable_dp_attention"] is True
    bad = subprocess.run(
        [sys.executable, str(PARSER_DIR / "check_argv.py"), "0.5.18", "--", *SEED, "--attn-dp-size", "8"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2
    assert bad.stderr.splitlines()[-1] == "sglang serve: error: unrecognized arguments: --attn-dp-size 8"
