"""The SGLang stand-in finds a model's config and tokenizer as SGLang does, offline, from the Hugging Face cache.

Each case is a copy of the lab's tiny DeepSeek-R1 repository (tests/lab/hub/build_repos.py: the same config.json,
auto_map, remote-code configuration module and tokenizer files) in one offline cache, with one thing missing or
wrong. SGLang's own get_config and get_tokenizer (the real 0.5.18 and 0.5.23 packages, in .venv-sglang-parser,
called as the server calls them at start-up: model path, --revision, --trust-remote-code) and the stand-in's
model.resolve must agree on each: both succeed, or both fail with the same exception class.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "tests" / "lab" / "sglang-standin"))
sys.path.insert(0, str(REPO_ROOT / "tests" / "lab" / "hub"))
sys.path.insert(0, str(REPO_ROOT / "tests" / "sglang_parser"))

import build_repos  # noqa: E402
from real_parser import VENV_PYTHON, supported_versions  # noqa: E402
from sglang.standin import model as standin_model  # noqa: E402

COMMIT = "3708d8ea286d0c3779da69819147dd2b2c171273"
STUB_MODULE = '"""A configuration module that defines no configuration class."""\n'

# name: (what differs from the complete repository, --revision, --trust-remote-code)
CASES = {
    "complete": ({}, None, True),
    "complete-at-commit": ({}, COMMIT, True),
    "complete-without-remote-code": ({}, None, False),
    "no-refs-main": ({"refs/main": None}, None, True),
    "no-refs-main-at-commit": ({"refs/main": None}, COMMIT, True),
    "unknown-branch": ({}, "release", True),
    "no-config": ({"config.json": None}, COMMIT, True),
    "no-configuration-module": ({"configuration_deepseek.py": None}, COMMIT, True),
    "no-configuration-module-without-remote-code": ({"configuration_deepseek.py": None}, COMMIT, False),
    "stub-configuration-module": ({"configuration_deepseek.py": STUB_MODULE}, COMMIT, True),
    "no-tokenizer": ({"tokenizer.json": None}, COMMIT, True),
    "no-tokenizer-config": ({"tokenizer_config.json": None}, COMMIT, True),
}


def _files():
    return {
        "config.json": json.dumps(build_repos.CONFIG, indent=2),
        "configuration_deepseek.py": build_repos.CONFIGURATION_MODULE,
        "tokenizer.json": json.dumps(build_repos._tokenizer(), ensure_ascii=False),
        "tokenizer_config.json": json.dumps(build_repos.TOKENIZER_CONFIG, ensure_ascii=False),
        "model.safetensors.index.json": json.dumps({"weight_map": {"w": "model-00001-of-00001.safetensors"}}),
        "model-00001-of-00001.safetensors": "weights",
    }


def _write_cache(hf_home: Path) -> None:
    """One repository per case, laid out as huggingface_hub lays out its cache (blobs, snapshot links, refs)."""
    for name, (changes, _revision, _trust) in CASES.items():
        base = hf_home / "hub" / f"models--lab--{name}"
        snapshot = base / "snapshots" / COMMIT
        snapshot.mkdir(parents=True)
        (base / "blobs").mkdir()
        files = dict(_files())
        files.update({key: value for key, value in changes.items() if key != "refs/main"})
        for filename, content in files.items():
            if content is None:
                continue
            blob = base / "blobs" / f"blob-{filename}"
            blob.write_text(content, encoding="utf-8")
            (snapshot / filename).symlink_to(os.path.relpath(blob, snapshot))
        if "refs/main" not in changes:
            (base / "refs").mkdir()
            (base / "refs" / "main").write_text(COMMIT)


def _real(hf_home: Path) -> dict:
    """{version: {case: outcome}} from SGLang's own code, one process per version, run side by side."""
    cases = [{"model": f"lab/{name}", "revision": revision, "trust_remote_code": trust}
             for name, (_changes, revision, trust) in CASES.items()]
    env = dict(os.environ, HF_HOME=str(hf_home), HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error")
    env.pop("HF_HUB_CACHE", None)
    env.pop("HF_TOKEN", None)
    script = str(REPO_ROOT / "tests" / "sglang_parser" / "real_parser.py")
    procs = {
        version: subprocess.Popen(
            [str(VENV_PYTHON), script, "model", version],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        for version in supported_versions()
    }
    results = {}
    for version, proc in procs.items():
        out, err = proc.communicate(json.dumps(cases), timeout=600)
        assert proc.returncode == 0, err[-3000:]
        results[version] = dict(zip(CASES, json.loads(out), strict=True))
    return results


def _outcome_of_real(result: dict) -> str:
    for key in ("config_error", "tokenizer_error"):
        if result[key]:
            return result[key].split(":", 1)[0]
    return "ok"


def _outcome_of_standin(name: str, hf_home: Path, monkeypatch) -> str:
    _changes, revision, trust = CASES[name]
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    try:
        found = standin_model.resolve(f"lab/{name}", revision, trust)
    except standin_model.ModelNotFound:
        return "OSError"
    except standin_model.ModelFilesInvalid as exc:
        return exc.error_class
    assert found.commit == COMMIT and found.context_length == build_repos.CONFIG["max_position_embeddings"]
    return "ok"


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    hf_home = tmp_path_factory.mktemp("hf")
    _write_cache(hf_home)
    return hf_home


@pytest.fixture(scope="module")
def real_by_version(cache):
    return _real(cache)


@pytest.fixture(params=supported_versions())
def real(request, real_by_version):
    return real_by_version[request.param]


def test_the_complete_lab_repository_loads_in_real_sglang_offline(real):
    """The lab's repository as the Hub stand-in serves it: SGLang's own code finds its config and tokenizer."""
    assert real["complete"]["config"] == {"model_type": "deepseek_v3", "max_position_embeddings": 4096}
    assert real["complete"]["tokenizer"]
    assert _outcome_of_real(real["stub-configuration-module"]) == "AttributeError"


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_standin_agrees_with_sglang(name, real, cache, monkeypatch):
    assert _outcome_of_standin(name, cache, monkeypatch) == _outcome_of_real(real[name]), real[name]
