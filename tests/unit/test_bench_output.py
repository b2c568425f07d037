"""Parsers of SGLang's benchmark output, on the seed's real run and on records shaped as SGLang writes them."""

import json
from pathlib import Path

import pytest

from ansible_collections.datacrunch.sglang.plugins.module_utils.bench import output as bench_output
from ansible_collections.datacrunch.sglang.plugins.module_utils.bench.output import BenchOutputError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bench"


def fixture(name):
    return (FIXTURES / name).read_text()


# --- bench_one_batch, printed ----------------------------------------------------------------------


def test_seed_run_gives_the_published_median_decode():
    parsed = bench_output.parse_one_batch_printed(fixture("seed-one-batch-deepseek-r1-8xh200.txt"))
    runs = parsed["runs"]
    assert [run["phase"] for run in runs] == ["warmup", "benchmark"]
    measured = runs[1]
    assert measured["median_decode_throughput"] == 47.67
    assert measured["median_decode_latency"] == 0.02098
    assert measured["prefill_latency"] == 0.19635
    assert measured["prefill_throughput"] == 651.90
    assert measured["total_latency"] == 5.537
    assert measured["overall_throughput"] == 69.35
    assert measured["complete"] is True
    assert [step["latency"] for step in measured["decode_steps"]] == [0.021, 0.02078, 0.02092, 0.02086, 0.02085]
    # The old format states no batch size: left for the caller to fill.
    assert measured["batch_size"] is None
    # The warmup's own median is a different figure and must not be taken for the result.
    assert runs[0]["median_decode_throughput"] == 47.68


def test_seed_run_result_fills_the_requested_shape():
    result = bench_output.one_batch_result(
        fixture("seed-one-batch-deepseek-r1-8xh200.txt"),
        requested={"batch_size": 1, "input_len": 128, "output_len": 256, "run_name": "default"},
    )
    (run,) = result["runs"]
    assert (run["batch_size"], run["input_len"], run["output_len"]) == (1, 128, 256)
    assert run["median_decode_throughput"] == 47.67
    assert run["source"] == "printed"
    assert result["warmup"]["prefill_latency"] == 1.91032


def test_new_printed_format_with_step_numbers_and_batch_size():
    parsed = bench_output.parse_one_batch_printed(fixture("one-batch-v0.5.18.txt"))
    warmup, measured = parsed["runs"]
    assert warmup["phase"] == "warmup" and measured["phase"] == "benchmark"
    assert measured["batch_size"] == 1
    assert [step["step"] for step in measured["decode_steps"]] == [0, 1, 2, 3, 4]
    assert measured["median_decode_latency"] == 0.02071
    assert measured["median_decode_throughput"] == 48.28
    assert measured["total_latency"] == 5.472


def test_printed_runs_without_benchmark_marker_all_count():
    text = "\n".join(fixture("seed-one-batch-deepseek-r1-8xh200.txt").splitlines()[10:18])
    runs = bench_output.parse_one_batch_printed(text)["runs"]
    assert len(runs) == 1 and runs[0]["phase"] == "benchmark"
    assert runs[0]["median_decode_throughput"] == 47.67


def test_interrupted_run_is_incomplete_and_not_a_result():
    text = "\n".join(fixture("one-batch-v0.5.18.txt").splitlines()[:-1])  # no Total. line of the measured run
    runs = bench_output.parse_one_batch_printed(text)["runs"]
    assert runs[-1]["complete"] is False
    with pytest.raises(BenchOutputError, match=r"2 run\(s\) printed, 1 complete, no result file"):
        bench_output.one_batch_result(text)


def test_skipped_shape_is_reported():
    text = "Warmup ...\nskipping (512, 128, 256) due to max batch size limit\nBenchmark ...\n"
    parsed = bench_output.parse_one_batch_printed(text)
    assert parsed["skipped"] == [{"batch_size": 512, "input_len": 128, "output_len": 256}]
    with pytest.raises(BenchOutputError, match=r"skipped .*'batch_size': 512"):
        bench_output.one_batch_result(text)


# --- bench_one_batch, JSONL ------------------------------------------------------------------------


def test_one_batch_jsonl_is_preferred_and_exact():
    jsonl = fixture("one-batch-v0.5.18.jsonl")
    raw = json.loads(jsonl)
    result = bench_output.one_batch_result(fixture("one-batch-v0.5.18.txt"), jsonl)
    (run,) = result["runs"]
    assert run["source"] == "jsonl"
    for field in bench_output.ONE_BATCH_FIELDS:
        assert run[field] == raw[field]
    # Same run, printed with 5 digits: the two forms agree to the printed precision.
    assert round(run["median_decode_latency"], 5) == 0.02071
    assert result["warmup"]["phase"] == "warmup"


def test_one_batch_jsonl_sweep_gives_one_record_per_shape():
    runs = bench_output.parse_one_batch_jsonl(fixture("one-batch-sweep-v0.5.18.jsonl"))
    assert [run["batch_size"] for run in runs] == [1, 8]
    assert all(run["median_decode_throughput"] > 0 for run in runs)


def test_one_batch_jsonl_keeps_unknown_fields_and_tolerates_missing_ones():
    runs = bench_output.parse_one_batch_jsonl('{"batch_size": 2, "median_decode_latency": 0.01, "new_field": 3}\n\n')
    assert runs[0]["new_field"] == 3
    assert runs[0]["overall_throughput"] is None


def test_one_batch_jsonl_rejects_garbage_with_line_number():
    with pytest.raises(BenchOutputError, match=r"line 2 is not JSON"):
        bench_output.parse_one_batch_jsonl('{"batch_size": 1}\n{"batch_size": 1, "med')
    with pytest.raises(BenchOutputError, match=r"line 1 is a list"):
        bench_output.parse_one_batch_jsonl("[1, 2]")


# --- bench_serving, printed ------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["0.5.18", "0.5.23"])
def test_serving_printed_current_format(version):
    records = bench_output.parse_serving_printed(fixture(f"serving-v{version}.txt"))
    assert [record["max_concurrency"] for record in records] == [1, 4, 16]
    first = records[0]
    assert first["backend"] == "sglang"
    assert first["request_rate"] == "inf"
    assert first["completed"] == 8
    assert first["total_output_tokens"] == 2048
    assert first["output_throughput"] == 46.04
    assert first["max_output_tokens_per_s"] == 51.56
    assert first["median_tpot_ms"] == 20.99
    assert first["p90_ttft_ms"] == 216.0
    assert first["max_itl_ms"] == 65.41
    assert first["mean_e2e_latency_ms"] == 5560.5


def test_serving_printed_new_sections_land_in_extra():
    first = bench_output.parse_serving_printed(fixture("serving-v0.5.23.txt"))[0]
    assert first["request_goodput"] == 0.16
    assert first["extra"]["goodput_slos_ms"] == "ttft:500 tpot:50"
    assert first["extra"]["goodput_ttft_slo_attainment"] == 95.0


def test_serving_printed_old_format():
    records = bench_output.parse_serving_printed(fixture("serving-v0.4.1.txt"))
    assert [record["max_concurrency"] for record in records] == [1, 4, 16]  # "Max reqeuest concurrency"
    first = records[0]
    assert first["p99_itl_ms"] > first["median_itl_ms"] > 0  # "Inter-token Latency"
    assert "p90_ttft_ms" not in first
    assert "extra" not in first


def test_serving_printed_not_set_concurrency_and_percentages():
    text = "\n".join(
        [
            "============ Serving Benchmark Result ============",
            "Max request concurrency:                 not set   ",
            "Successful requests:                     3         ",
            "---------------Cache Hit Details-----------------",
            "Total cached tokens:                     10        ",
            "  Device:                                6         ",
            "Cache hit rate:                          12.5%",
            "  Device:                                60.0%",
            "==================================================",
            "Successful requests:                     999       ",
        ]
    )
    (record,) = bench_output.parse_serving_printed(text)
    assert record["max_concurrency"] is None
    assert record["completed"] == 3
    assert record["extra"]["cache_hit_details_cache_hit_rate"] == 12.5
    assert record["extra"]["cache_hit_details_device"] == 6
    assert record["extra"]["cache_hit_details_device_"] == 60.0


# --- bench_serving, JSONL --------------------------------------------------------------------------


def test_serving_jsonl_current_format_drops_server_info_and_per_request_arrays():
    text = fixture("serving-v0.5.18.jsonl")
    raw = [json.loads(line) for line in text.splitlines()]
    records = bench_output.parse_serving_jsonl(text)
    assert [record["max_concurrency"] for record in records] == [1, 4, 16]
    for got, want in zip(records, raw, strict=True):
        assert got["output_throughput"] == want["output_throughput"]
        assert got["median_tpot_ms"] == want["median_tpot_ms"]
        assert got["request_rate"] == "inf"
        assert got["server_version"] == "0.5.18"
        assert "server_info" not in got
        assert "ttfts" not in got and "generated_texts" not in got
    # The fixture's server_info carries an API key, as SGLang's /server_info does: it must not survive.
    assert "sk-fixture-must-not-leak" in text
    assert "sk-fixture-must-not-leak" not in json.dumps(records)


def test_serving_jsonl_new_nested_fields_are_kept():
    record = bench_output.parse_serving_jsonl(fixture("serving-v0.5.23.jsonl"))[0]
    assert record["slo_attainment_by_metric"] == {"ttft": 0.95, "tpot": 0.92}
    assert record["goodput_slos_ms"] == {"ttft": 500.0, "tpot": 50.0}


def test_serving_jsonl_old_format():
    records = bench_output.parse_serving_jsonl(fixture("serving-v0.4.1.jsonl"))
    assert [record["max_concurrency"] for record in records] == [1, 4, 16]
    assert "server_version" not in records[0]
    assert "max_output_tokens_per_s" not in records[0]
    assert records[0]["median_itl_ms"] > 0


def test_serving_jsonl_secrets_are_dropped_at_any_depth_and_nan_becomes_none():
    line = json.dumps(
        {"completed": 1, "api_key": "k1", "nested": {"hf_token": "k2", "total_tokens": 5}, "mean_ttft_ms": float("nan")}
    )
    (record,) = bench_output.parse_serving_jsonl(line)
    assert "api_key" not in record
    assert record["nested"] == {"total_tokens": 5}
    assert record["mean_ttft_ms"] is None


def test_serving_printed_and_jsonl_agree():
    printed = bench_output.parse_serving_printed(fixture("serving-v0.5.18.txt"))
    jsonl = bench_output.parse_serving_jsonl(fixture("serving-v0.5.18.jsonl"))
    for text_record, json_record in zip(printed, jsonl, strict=True):
        # SGLang prints "Max ITL" but does not write it to the file.
        assert set(text_record) - set(json_record) == {"max_itl_ms"}
        for key, value in text_record.items():
            if key in ("source", "extra", "max_itl_ms"):
                continue
            if isinstance(value, float):
                assert value == pytest.approx(json_record[key], abs=0.006), key
            else:
                assert value == json_record[key], key


def test_serving_result_prefers_jsonl_then_printed_and_fills_requested():
    text = fixture("serving-v0.5.18.txt")
    first_line = fixture("serving-v0.5.18.jsonl").splitlines()[0]
    assert bench_output.serving_result(text, first_line)["source"] == "jsonl"
    last_block = text[text.rindex("benchmark_args") :]
    record = bench_output.serving_result(last_block, "", requested={"num_prompts": 64, "random_input_len": 128})
    assert record["source"] == "printed"
    assert record["max_concurrency"] == 16
    assert record["num_prompts"] == 64


def test_serving_result_failures_are_explained():
    with pytest.raises(BenchOutputError, match="no 'Serving Benchmark Result' block"):
        bench_output.serving_result("Server at http://127.0.0.1:30000/v1/models is not ready. Exiting.")
    zero = "============ Serving Benchmark Result ============\nMax request concurrency:  4\nSuccessful requests:  0\n"
    with pytest.raises(BenchOutputError, match=r"no request at max_concurrency=4"):
        bench_output.serving_result(zero)


def test_serving_result_derives_the_per_user_decode_speed():
    """1000 / median TPOT: what a speculative profile is judged by at concurrency 1 (bench_one_batch cannot run it)."""
    first_line = (FIXTURES / "serving-v0.5.18.jsonl").read_text().splitlines()[0]
    record = bench_output.serving_result("", first_line)
    assert record["max_concurrency"] == 1
    assert record["per_user_decode_throughput"] == pytest.approx(1000 / record["median_tpot_ms"])
    assert record["per_user_decode_throughput"] == pytest.approx(47.63, abs=0.01)
