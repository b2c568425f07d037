"""The sglang_bench module's report mode, run as Ansible runs a module: its own process, arguments from a file.

Report mode needs no host and no Docker; the benchmark modes are exercised in the lab (molecule scenario benchmark).
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ansible_collections.datacrunch.sglang.plugins.module_utils.bench import output as bench_output

ROOT = Path(__file__).resolve().parents[2]
MODULE = ROOT / "plugins" / "modules" / "sglang_bench.py"
FIXTURES = ROOT / "tests" / "fixtures" / "bench"


def run_module(tmp_path, check_mode=False, **args):
    if check_mode:
        args["_ansible_check_mode"] = True
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    env = dict(os.environ, PYTHONPATH=str(ROOT / "collections"))
    completed = subprocess.run(
        [sys.executable, str(MODULE), str(args_file)], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    return completed.returncode, json.loads(completed.stdout)


def results():
    serving = {
        "started_at": "2026-11-28T22:10:03Z",
        "image": "lmsysorg/sglang:v0.5.18",
        "settings": {"dataset_name": "random-ids", "input_len": 128, "output_len": 256},
        "results": bench_output.parse_serving_jsonl((FIXTURES / "serving-v0.5.18.jsonl").read_text()),
    }
    one_batch = bench_output.one_batch_result(
        (FIXTURES / "seed-one-batch-deepseek-r1-8xh200.txt").read_text(),
        requested={"batch_size": 1, "input_len": 128, "output_len": 256},
    )
    return serving, {"started_at": "2026-11-28T22:20:00Z", "result": one_batch["runs"][0]}


def report_args(tmp_path, expected, **extra):
    serving, one_batch = results()
    return dict(
        mode="report",
        report_dir=str(tmp_path / "reports"),
        host="gpu-1",
        profile="deepseek-r1",
        expected=expected,
        tolerance_pct=5,
        bench_serving=serving,
        bench_one_batch=one_batch,
        variable_prefix="sglang_benchmark_",
        **extra,
    )


def test_a_pass_writes_the_report_and_succeeds(tmp_path):
    rc, result = run_module(tmp_path, **report_args(tmp_path, {"bench_one_batch": {"median_decode_throughput": 47.67}}))
    assert rc == 0, result
    assert result["changed"] is True
    assert [row["verdict"] for row in result["report"]["verdicts"]] == ["pass"]
    names = sorted(path.name for path in (tmp_path / "reports").iterdir())
    assert names == [
        "20261128T221003Z-gpu-1-deepseek-r1-v0.5.18-latency.png",
        "20261128T221003Z-gpu-1-deepseek-r1-v0.5.18-throughput.png",
        "20261128T221003Z-gpu-1-deepseek-r1-v0.5.18.json",
        "20261128T221003Z-gpu-1-deepseek-r1-v0.5.18.md",
    ]


def test_a_miss_fails_after_writing_the_report(tmp_path):
    expected = {"bench_one_batch": {"median_decode_throughput": 60}, "bench_serving": {4: {"median_tpot_ms": 20}}}
    rc, result = run_module(tmp_path, **report_args(tmp_path, expected))
    assert rc != 0 and result["failed"] is True
    assert "gpu-1: 2 figure(s) below the profile's threshold" in result["msg"]
    assert (
        "median_decode_throughput (bench_one_batch): measured 47.67, at least 57 expected (60 with 5% tolerance)"
        in (result["msg"])
    )
    assert "set sglang_benchmark_on_miss=warn" in result["msg"]
    assert len(result["report"]["misses"]) == 2
    assert (tmp_path / "reports").is_dir() and len(list((tmp_path / "reports").glob("*.md"))) == 1


def test_a_miss_only_warns_when_asked(tmp_path):
    expected = {"bench_one_batch": {"median_decode_throughput": 60}}
    rc, result = run_module(tmp_path, **report_args(tmp_path, expected, on_miss="warn"))
    assert rc == 0, result
    warnings = json.dumps(result.get("warnings"))
    assert "below the profile's threshold: median_decode_throughput (bench_one_batch)" in warnings


def test_check_mode_lists_the_files_and_writes_none(tmp_path):
    rc, result = run_module(tmp_path, check_mode=True, **report_args(tmp_path, {}))
    assert rc == 0, result
    assert len(result["report"]["files"]) == 4
    assert not (tmp_path / "reports").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"expected": {"bench_one_batch": {"median_decode_throughput": "fast"}}}, r"'fast' must be a number"),
        ({"expected": {}, "tolerance_pct": 120}, r"tolerance_pct=120"),
    ],
)
def test_validation_without_results_checks_the_figures(tmp_path, args, message):
    rc, result = run_module(tmp_path, check_mode=True, mode="report", **args)
    assert rc != 0
    assert re.search(message, result["msg"]), result["msg"]


def test_validation_without_results_passes_good_figures(tmp_path):
    expected = {"bench_one_batch": {"median_decode_throughput": 47.67}}
    rc, result = run_module(tmp_path, check_mode=True, mode="report", expected=expected)
    assert rc == 0, result
    assert result["changed"] is False
    assert result["report"]["verdicts"][0]["verdict"] == "absent"


def test_report_dir_must_be_absolute(tmp_path):
    args = dict(report_args(tmp_path, {}))
    args["report_dir"] = "reports/bench"
    rc, result = run_module(tmp_path, **args)
    assert rc != 0
    assert "report_dir='reports/bench' must be an absolute path" in result["msg"]


def test_benchmark_without_a_deployed_server_names_the_fix(tmp_path):
    rc, result = run_module(
        tmp_path, mode="serving", server_dir=str(tmp_path / "none"), variable_prefix="sglang_benchmark_"
    )
    assert rc != 0
    assert "sglang_benchmark_server_dir=" in result["msg"] and "deploy the server first" in result["msg"]
