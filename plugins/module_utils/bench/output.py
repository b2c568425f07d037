# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Parse what SGLang's benchmarks print and write into plain, comparable records.

Two programs, two forms each:

- ``bench_one_batch`` (``sglang.benchmark.one_batch`` in newer releases) prints one block per run
  (``Prefill.`` / ``Decode.`` / ``Decode.  median`` / ``Total.`` lines, a warmup run first, then
  ``Benchmark ...``) and appends one JSON line per measured run to ``--result-filename``.
  Older releases print ``Decode.  latency: ...`` for the first steps, newer ones
  ``Decode 0. Batch size: 1, latency: ...``.
- ``bench_serving`` prints a "Serving Benchmark Result" block and appends one JSON line per run to
  ``--output-file``. The field set grows from release to release, so every field is optional here and
  unknown ones are kept, not rejected.

Records use SGLang's own JSONL field names, so a printed run and a JSONL run of the same benchmark
compare field by field. Values that JSON cannot carry portably become strings or None
(``inf`` -> ``"inf"``, NaN -> None).

The serving JSONL embeds the server's ``/server_info``, which in SGLang holds every server argument,
the API key included. It never leaves this module: only its ``version`` is kept.
"""

from __future__ import annotations

import json
import math
import re

ONE_BATCH_FIELDS = (
    "run_name",
    "batch_size",
    "input_len",
    "output_len",
    "prefill_latency",
    "prefill_throughput",
    "median_decode_latency",
    "median_decode_throughput",
    "total_latency",
    "overall_throughput",
)

# Fields of a serving record that describe the workload rather than measure it.
SERVING_SETTING_FIELDS = (
    "tag",
    "backend",
    "dataset_name",
    "request_rate",
    "max_concurrency",
    "sharegpt_output_len",
    "random_input_len",
    "random_output_len",
    "random_range_ratio",
)

# Per-request arrays (``--output-details``) and the server's full argument dump: large, and the
# latter holds the API key.
_SERVING_DROPPED_FIELDS = frozenset(
    {
        "server_info",
        "input_lens",
        "output_lens",
        "ttfts",
        "itls",
        "generated_texts",
        "errors",
        "cached_tokens",
        "cached_tokens_details",
    }
)

# Names of credentials, as record keys (``api_key``, ``admin_api_key``, ``hf_token``) or environment variables
# (``OPENAI_API_KEY``, ``HF_TOKEN``); token counts such as ``total_output_tokens`` are not.
SECRET_NAME = re.compile(r"(?:^|_)(?:api_?key|token|secret|password|access_key|credentials?)(?:$|_)", re.IGNORECASE)

# Derived from bench_serving's own figures (1000 / median_tpot_ms), not printed by it.
PER_USER_DECODE = "per_user_decode_throughput"

_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[-+]?inf|nan"


class BenchOutputError(ValueError):
    """Raised when benchmark output cannot be read as what it claims to be."""


def _number(text):
    """Turn a printed number into int or float; ``inf`` stays a string, NaN becomes None."""
    text = text.strip()
    lowered = text.lower()
    if lowered in ("inf", "+inf", "infinity"):
        return "inf"
    if lowered in ("nan", "-nan"):
        return None
    if re.fullmatch(r"[-+]?\d+", text):
        return int(text)
    return float(text)


def _clean(value):
    """Make a JSON value portable: finite floats, ``"inf"`` for infinities, None for NaN."""
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    if isinstance(value, dict):
        return {key: _clean(item) for key, item in value.items() if not SECRET_NAME.search(str(key))}
    if isinstance(value, list):
        return [_clean(item) for item in value]
    return value


def _json_lines(text, source):
    """Yield (line number, object) for each non-empty line of a JSONL text."""
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise BenchOutputError(f"{source} line {number} is not JSON ({exc}): {line[:120]!r}") from exc
        if not isinstance(record, dict):
            raise BenchOutputError(f"{source} line {number} is a {type(record).__name__}, expected a JSON object")
        yield number, record


# --- bench_one_batch ---------------------------------------------------------------------------------

_PREFILL_RE = re.compile(rf"\bPrefill\.\s+latency:\s*(?P<latency>{_NUM})\s*s,\s*throughput:\s*(?P<throughput>{_NUM})")
_DECODE_STEP_RE = re.compile(
    rf"\bDecode(?:\s+(?P<step>\d+))?\.\s+(?:Batch size:\s*(?P<batch_size>\d+),\s*)?"
    rf"latency:\s*(?P<latency>{_NUM})\s*s,\s*throughput:\s*(?P<throughput>{_NUM})"
)
_DECODE_MEDIAN_RE = re.compile(
    rf"\bDecode\.\s+median latency:\s*(?P<latency>{_NUM})\s*s,\s*median throughput:\s*(?P<throughput>{_NUM})"
)
_TOTAL_RE = re.compile(rf"\bTotal\.\s+latency:\s*(?P<latency>{_NUM})\s*s,\s*throughput:\s*(?P<throughput>{_NUM})")
_SKIP_RE = re.compile(r"\bskipping \((?P<bs>\d+), (?P<il>\d+), (?P<ol>\d+)\) due to max batch size limit")
_WARMUP_RE = re.compile(r"^\s*Warmup \.\.\.\s*$")
_BENCHMARK_RE = re.compile(r"^\s*Benchmark \.\.\.\s*$")


def _new_run(phase):
    run = dict.fromkeys(ONE_BATCH_FIELDS)
    run.update({"phase": phase, "decode_steps": [], "complete": False, "source": "printed"})
    return run


def parse_one_batch_printed(text):
    """Parse the printed output of bench_one_batch: ``{"runs": [...], "skipped": [...]}``.

    One record per run, in order. Each carries ``phase`` (``warmup`` or ``benchmark``), the printed decode steps, and
    ``complete`` (its ``Total.`` line was seen). The printed form does not state the input and output
    lengths, and older releases not the batch size either: those stay None unless printed.
    Runs printed before a ``Benchmark ...`` line are the warmup; without that line every run counts.
    ``skipped`` lists the (batch_size, input_len, output_len) shapes SGLang refused as too large.
    """
    lines = text.splitlines()
    has_benchmark_marker = any(_BENCHMARK_RE.match(line) for line in lines)
    phase = "warmup" if has_benchmark_marker else "benchmark"
    runs = []
    skipped = []
    current = None
    for line in lines:
        if _BENCHMARK_RE.match(line):
            phase = "benchmark"
            current = None
            continue
        if _WARMUP_RE.match(line):
            phase = "warmup"
            current = None
            continue
        match = _SKIP_RE.search(line)
        if match:
            shape = {"batch_size": match["bs"], "input_len": match["il"], "output_len": match["ol"]}
            skipped.append({key: int(value) for key, value in shape.items()})
            continue
        match = _PREFILL_RE.search(line)
        if match:
            current = _new_run(phase)
            current["prefill_latency"] = _number(match["latency"])
            current["prefill_throughput"] = _number(match["throughput"])
            runs.append(current)
            continue
        if current is None:
            continue
        match = _DECODE_MEDIAN_RE.search(line)
        if match:
            current["median_decode_latency"] = _number(match["latency"])
            current["median_decode_throughput"] = _number(match["throughput"])
            continue
        match = _DECODE_STEP_RE.search(line)
        if match:
            step = {"latency": _number(match["latency"]), "throughput": _number(match["throughput"])}
            if match["step"] is not None:
                step["step"] = int(match["step"])
            if match["batch_size"] is not None:
                current["batch_size"] = int(match["batch_size"])
            current["decode_steps"].append(step)
            continue
        match = _TOTAL_RE.search(line)
        if match:
            current["total_latency"] = _number(match["latency"])
            current["overall_throughput"] = _number(match["throughput"])
            current["complete"] = True
            current = None
    return {"runs": runs, "skipped": skipped}


def parse_one_batch_jsonl(text, source="bench_one_batch result file"):
    """Parse bench_one_batch's result JSONL (one object per measured run; the warmup is not written)."""
    records = []
    for _line, raw in _json_lines(text, source):
        record = dict.fromkeys(ONE_BATCH_FIELDS)
        for key, value in raw.items():
            record[key] = _clean(value)
        record.update({"phase": "benchmark", "complete": True, "source": "jsonl"})
        records.append(record)
    return records


def one_batch_result(printed_text, jsonl_text="", requested=None):
    """The measured single-batch runs of one bench_one_batch invocation, best source first.

    JSONL records carry full precision and the run's shape; the printed form is the fallback for
    releases or runs that wrote no file. ``requested`` (batch_size, input_len, output_len, run_name)
    fills what the printed form leaves out. Raises BenchOutputError when no complete measured run is
    found, quoting what was seen.
    """
    requested = requested or {}
    runs = parse_one_batch_jsonl(jsonl_text) if jsonl_text and jsonl_text.strip() else []
    parsed = parse_one_batch_printed(printed_text or "")
    printed = parsed["runs"]
    if not runs:
        runs = [run for run in printed if run["phase"] == "benchmark" and run["complete"]]
        if len(runs) == 1:
            for key in ("run_name", "batch_size", "input_len", "output_len"):
                if runs[0].get(key) is None and requested.get(key) is not None:
                    runs[0][key] = requested[key]
    if not runs:
        seen = sum(1 for run in printed if run["complete"])
        skipped = parsed["skipped"]
        detail = f"; SGLang skipped {skipped} (batch too large for the KV cache)" if skipped else ""
        raise BenchOutputError(
            f"bench_one_batch produced no measured run: {len(printed)} run(s) printed, {seen} complete, "
            f"no result file{detail}"
        )
    warmup = [run for run in printed if run["phase"] == "warmup"]
    return {"runs": runs, "warmup": warmup[0] if warmup else None, "skipped": parsed["skipped"]}


# --- bench_serving -----------------------------------------------------------------------------------

_SERVING_HEADER_RE = re.compile(r"=+\s*Serving Benchmark Result\s*=+")
_SERVING_END_RE = re.compile(r"^\s*={20,}\s*$")
_SECTION_RE = re.compile(r"^\s*-{3,}\s*(?P<title>[^-].*?)\s*-{3,}\s*$")
_LABEL_RE = re.compile(r"^(?P<indent>\s*)(?P<label>\S[^:]*?):\s+(?P<value>\S.*?)\s*$")
_LATENCY_LABEL_RE = re.compile(
    r"^(?P<stat>Mean|Median|Std|P\d+(?:\.\d+)?|Max|Min)\s+(?P<metric>E2E Latency|TTFT|TPOT|ITL)\s+\(ms\)$",
    re.IGNORECASE,
)

# Printed label -> JSONL field name, for the labels that are not "<stat> <metric> (ms)".
_SERVING_LABELS = {
    "backend": "backend",
    "traffic request rate": "request_rate",
    "max request concurrency": "max_concurrency",
    "max reqeuest concurrency": "max_concurrency",  # the spelling of older releases
    "successful requests": "completed",
    "benchmark duration (s)": "duration",
    "total input tokens": "total_input_tokens",
    "total input text tokens": "total_input_text_tokens",
    "total input vision tokens": "total_input_vision_tokens",
    "total generated tokens": "total_output_tokens",
    "total generated tokens (retokenized)": "total_output_tokens_retokenized",
    "request throughput (req/s)": "request_throughput",
    "input token throughput (tok/s)": "input_throughput",
    "output token throughput (tok/s)": "output_throughput",
    "peak output token throughput (tok/s)": "max_output_tokens_per_s",
    "peak concurrent requests": "max_concurrent_requests",
    "total token throughput (tok/s)": "total_throughput",
    "concurrency": "concurrency",
    "accept length": "accept_length",
    "request goodput (req/s)": "request_goodput",
}
_METRIC_KEYS = {"e2e latency": "e2e_latency", "ttft": "ttft", "tpot": "tpot", "itl": "itl"}


def _slug(text):
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def _printed_value(text):
    text = text.strip()
    if text.lower() == "not set":
        return None
    if text.endswith("%"):
        try:
            return _number(text[:-1])
        except ValueError:
            return text
    try:
        return _number(text)
    except ValueError:
        return text


def _serving_label_key(label):
    match = _LATENCY_LABEL_RE.match(label)
    if match:
        stat = match["stat"].lower()
        return f"{stat}_{_METRIC_KEYS[match['metric'].lower()]}_ms"
    return _SERVING_LABELS.get(label.lower())


def parse_serving_printed(text):
    """Parse every "Serving Benchmark Result" block of bench_serving's printed output, in order.

    Known labels map to SGLang's JSONL field names; unknown ones (new releases add sections such as
    cache hits or goodput) are kept under ``extra`` keyed by section and label.
    """
    records = []
    current = None
    section = ""
    for line in text.splitlines():
        if _SERVING_HEADER_RE.search(line):
            current = {"extra": {}, "source": "printed"}
            section = ""
            records.append(current)
            continue
        if current is None:
            continue
        if _SERVING_END_RE.match(line):
            current = None
            continue
        match = _SECTION_RE.match(line)
        if match:
            section = _slug(match["title"])
            continue
        match = _LABEL_RE.match(line)
        if not match:
            continue
        key = None if match["indent"] else _serving_label_key(match["label"])
        value = _printed_value(match["value"])
        if key:
            current[key] = value
        else:
            extra_key = "_".join(part for part in (section, _slug(match["label"])) if part)
            while extra_key in current["extra"]:
                extra_key += "_"
            current["extra"][extra_key] = value
    for record in records:
        if not record["extra"]:
            del record["extra"]
    return records


def _serving_record(raw):
    record = {}
    for key, value in raw.items():
        if key in _SERVING_DROPPED_FIELDS or SECRET_NAME.search(key) or isinstance(value, list):
            continue
        record[key] = _clean(value)
    server_info = raw.get("server_info")
    if isinstance(server_info, dict) and isinstance(server_info.get("version"), str):
        record["server_version"] = server_info["version"]
    record["source"] = "jsonl"
    return record


def parse_serving_jsonl(text, source="bench_serving output file"):
    """Parse bench_serving's output JSONL: one record per run, per-request arrays and server_info dropped."""
    return [_serving_record(raw) for _line, raw in _json_lines(text, source)]


def serving_result(printed_text, jsonl_text="", requested=None):
    """The measured result of one bench_serving invocation (one concurrency level).

    The JSONL record is preferred (full precision, every field); the printed block is the fallback.
    ``requested`` (max_concurrency, random_input_len, random_output_len, ...) fills settings the
    printed form leaves out. Raises BenchOutputError when neither form holds a result.
    """
    requested = requested or {}
    records = parse_serving_jsonl(jsonl_text) if jsonl_text and jsonl_text.strip() else []
    if not records:
        records = parse_serving_printed(printed_text or "")
    if not records:
        raise BenchOutputError(
            "bench_serving produced no result: no result file and no 'Serving Benchmark Result' block"
        )
    record = records[-1]
    for key, value in requested.items():
        if record.get(key) is None and value is not None:
            record[key] = value
    if not record.get("completed"):
        raise BenchOutputError(
            f"bench_serving completed no request at max_concurrency={record.get('max_concurrency')}: "
            "the server answered none of the benchmark requests"
        )
    tpot = record.get("median_tpot_ms")
    if isinstance(tpot, (int, float)) and not isinstance(tpot, bool) and tpot > 0:
        # The decode speed one user sees; at concurrency 1 it is what bench_one_batch_server --batch-size 1 reports
        # and what speculative decoding is judged by (bench_one_batch cannot run it).
        record[PER_USER_DECODE] = 1000.0 / tpot
    return record
