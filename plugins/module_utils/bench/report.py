# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark reports: one JSON document per run, a Markdown table, PNG plots, verdicts and the previous run.

A run document holds what was measured on one host (``bench_serving`` per concurrency, ``bench_one_batch``),
the profile's expected figures with a verdict for each, and the comparison with the previous run of the same
host and profile found in the report directory. Files are named
``<date>-<host>-<profile>-<image tag>.{json,md}`` plus ``-throughput.png`` and ``-latency.png`` so that a
directory listing sorts by time.

Expected figures come from a profile's ``expected`` mapping::

    expected:
      bench_one_batch:                # batch 1, input 128, output 256 unless the run says otherwise
        median_decode_throughput: 47.67
      bench_serving:
        4:                            # max concurrency
          output_throughput: 400
          median_tpot_ms: {max: 30}   # an explicit bound; a bare number takes its direction from the name
        1:
          per_user_decode_throughput: # 1000 / median TPOT: the decode speed one user sees
            min: 77
            published: "SGLang PR #3582 ..."  # where a published figure comes from

Throughputs are floors and latencies ceilings; ``tolerance_pct`` widens each bound by that share. A bound with
``published`` is a figure someone published (with its source), not one measured by this collection; the report
says so, and names the tool that produced each measured figure.
"""

from __future__ import annotations

import datetime
import json
import os
import re

from ansible_collections.datacrunch.sglang.plugins.module_utils.bench.output import PER_USER_DECODE
from ansible_collections.datacrunch.sglang.plugins.module_utils.common.atomic_file import replace_file
from ansible_collections.datacrunch.sglang.plugins.module_utils.common.image_ref import ImageRefError, parse_image_ref

SCHEMA_VERSION = 1
ONE_BATCH = "bench_one_batch"
SERVING = "bench_serving"

# Figures compared with the previous run and drawn in the tables, in order: (field, label, unit).
ONE_BATCH_FIGURES = (
    ("median_decode_throughput", "median decode", "token/s"),
    ("median_decode_latency", "median decode latency", "s"),
    ("prefill_latency", "prefill latency", "s"),
    ("prefill_throughput", "prefill", "token/s"),
    ("total_latency", "total latency", "s"),
    ("overall_throughput", "overall", "token/s"),
)
SERVING_FIGURES = (
    ("completed", "requests", ""),
    ("output_throughput", "output", "tok/s"),
    ("total_throughput", "total", "tok/s"),
    ("request_throughput", "requests", "req/s"),
    ("median_ttft_ms", "median TTFT", "ms"),
    ("p99_ttft_ms", "P99 TTFT", "ms"),
    ("median_tpot_ms", "median TPOT", "ms"),
    ("p99_tpot_ms", "P99 TPOT", "ms"),
    ("median_itl_ms", "median ITL", "ms"),
    ("median_e2e_latency_ms", "median E2E", "ms"),
    (PER_USER_DECODE, "per-user decode", "tok/s"),
    ("accept_length", "accept length", ""),
)
# The subset compared with the previous run: the figures a reader acts on.
COMPARED_FIGURES = {
    ONE_BATCH: ("median_decode_throughput", "median_decode_latency", "prefill_latency", "overall_throughput"),
    SERVING: ("output_throughput", "request_throughput", "median_ttft_ms", "median_tpot_ms", "p99_tpot_ms",
              PER_USER_DECODE, "accept_length"),
}
# Run-to-run variation on the same hardware (the manual procedure's decode steps vary by about 1%): changes
# smaller than this are shown but not called better or worse.
COMPARISON_NOISE_PCT = 2.0
# In the title of every report and plot of a run against the lab's stand-in server, so that a forwarded figure cannot
# pass for a measurement of real hardware.
SIMULATED_MARK = "simulated (lab stand-in)"
UNITS = {field: unit for field, _label, unit in ONE_BATCH_FIGURES + SERVING_FIGURES}
_HIGHER_IS_BETTER = re.compile(r"(throughput|goodput|per_s|accept_length|attainment|^completed$)")
_LOWER_IS_BETTER = re.compile(r"(latency|_ms$|ttft|tpot|itl|duration)")
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


class BenchReportError(ValueError):
    """Bad report input; the message names the input, the value and the fix."""


# --- naming ------------------------------------------------------------------------------------------


def image_tag(image):
    """The tag part of an image reference for file names: ``v0.5.18``, ``sha256-0123456789ab``, ``latest``."""
    try:
        ref = parse_image_ref(image)
    except ImageRefError:
        return _safe(image.rsplit(":", 1)[-1] if ":" in image else image) or "unknown"
    if ref["digest"] and not ref["tag"]:
        return "sha256-" + ref["digest"].split(":", 1)[1][:12]
    return ref["tag"] or "latest"


def _safe(text):
    return _UNSAFE_NAME.sub("_", str(text)).strip("._") or "unknown"


def _parse_time(text):
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)


def report_basename(document):
    """``20261128T221003Z-host-profile-tag``: sorts by time, names what was measured."""
    stamp = _parse_time(document["started_at"]).strftime("%Y%m%dT%H%M%SZ")
    return "-".join([stamp, _safe(document["host"]), _safe(document["profile"]), _safe(image_tag(document["image"]))])


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- figures -----------------------------------------------------------------------------------------


def figure_tool(program, concurrency, field):
    """The command that produced a figure, as the report names it."""
    if program == ONE_BATCH:
        # It loads the model itself and always decodes without speculative decoding (SGLang 0.5.18 and 0.5.23:
        # sglang/benchmark/one_batch.py, extend(), builds its batch with SpeculativeAlgorithm.NONE).
        return "python3 -m sglang.bench_one_batch (server stopped, no speculative decoding)"
    tool = "python3 -m sglang.bench_serving" + (f" --max-concurrency {concurrency}" if concurrency is not None else "")
    if field == PER_USER_DECODE:
        return tool + " (1000 / median_tpot_ms)"
    if field == "accept_length":
        # bench_serving reads it from /server_info, internal_states[0].avg_spec_accept_length, with the API key
        # (0.5.18 and 0.5.23: sglang/benchmark/serving.py, benchmark()).
        return tool + " (the server's /server_info)"
    return tool


def higher_is_better(field):
    """Direction of a figure by its SGLang field name: throughputs up, latencies down; None when unknown."""
    if _HIGHER_IS_BETTER.search(field):
        return True
    if _LOWER_IS_BETTER.search(field):
        return False
    return None


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def measured_figures(document):
    """Flatten a run document's results into {(program, concurrency or None, field): value}."""
    figures = {}
    one_batch = (document.get(ONE_BATCH) or {}).get("result") or {}
    for field, value in one_batch.items():
        if _is_number(value):
            figures[(ONE_BATCH, None, field)] = value
    for record in (document.get(SERVING) or {}).get("results") or []:
        concurrency = record.get("max_concurrency")
        for field, value in record.items():
            if _is_number(value):
                figures[(SERVING, concurrency, field)] = value
    return figures


def _bound(program, concurrency, field, spec):
    """Normalise one expected figure into (kind, value, published source or None); kind is 'min' or 'max'."""
    where = f"expected.{program}" + (f".{concurrency}" if concurrency is not None else "") + f".{field}"
    if isinstance(spec, dict):
        kinds = [kind for kind in ("min", "max") if kind in spec]
        unknown = sorted(set(spec) - {"min", "max", "published"})
        if len(kinds) != 1 or unknown or not _is_number(spec[kinds[0]]):
            raise BenchReportError(
                f"{where}={spec!r} must be a number or a mapping with one of min/max (and optionally published: "
                "its source), e.g. {min: 47.67}"
            )
        published = spec.get("published")
        if published is not None and (not isinstance(published, str) or not published.strip()):
            raise BenchReportError(f"{where}.published={published!r} must name the source of the published figure")
        return kinds[0], float(spec[kinds[0]]), (published.strip() if published else None)
    if not _is_number(spec):
        raise BenchReportError(f"{where}={spec!r} must be a number (or {{min: N}} / {{max: N}})")
    direction = higher_is_better(field)
    if direction is None:
        raise BenchReportError(
            f"{where}={spec!r}: cannot tell whether more or less is better for {field!r}; "
            f"write it as {{min: {spec}}} or {{max: {spec}}}"
        )
    return ("min" if direction else "max"), float(spec), None


def expected_bounds(expected):
    """Flatten a profile's ``expected`` mapping into [(program, concurrency, field, kind, value, published)]."""
    if not expected:
        return []
    if not isinstance(expected, dict):
        raise BenchReportError(f"expected={expected!r} must be a mapping with {ONE_BATCH} and/or {SERVING}")
    bounds = []
    for program, figures in expected.items():
        if figures is None:  # a user's null removes what a profile sets
            continue
        if program not in (ONE_BATCH, SERVING):
            raise BenchReportError(
                f"expected.{program} is not a benchmark; use {ONE_BATCH}: {{field: value}} or "
                f"{SERVING}: {{concurrency: {{field: value}}}}"
            )
        if not isinstance(figures, dict):
            raise BenchReportError(f"expected.{program}={figures!r} must be a mapping")
        if program == ONE_BATCH:
            for field, spec in figures.items():
                if spec is not None:
                    bounds.append((program, None, str(field), *_bound(program, None, field, spec)))
            continue
        for concurrency, fields in figures.items():
            if fields is None:
                continue
            try:
                level = int(concurrency)
            except (TypeError, ValueError):
                raise BenchReportError(
                    f"expected.{SERVING} key {concurrency!r} must be a max concurrency (an integer), "
                    f"e.g. {SERVING}: {{4: {{output_throughput: 400}}}}"
                ) from None
            if not isinstance(fields, dict):
                raise BenchReportError(f"expected.{SERVING}.{level}={fields!r} must be a mapping of field to value")
            for field, spec in fields.items():
                if spec is not None:
                    bounds.append((program, level, str(field), *_bound(program, level, field, spec)))
    return bounds


def evaluate(document, expected, tolerance_pct=0.0):
    """Verdicts of a run against expected figures: one row per bound, verdict ``pass``, ``miss`` or ``absent``."""
    if not _is_number(tolerance_pct) or not 0 <= tolerance_pct < 100:
        raise BenchReportError(f"tolerance_pct={tolerance_pct!r} must be a number from 0 to below 100, e.g. 5")
    figures = measured_figures(document)
    rows = []
    for program, concurrency, field, kind, value, published in expected_bounds(expected):
        factor = 1 - tolerance_pct / 100 if kind == "min" else 1 + tolerance_pct / 100
        threshold = value * factor
        measured = figures.get((program, concurrency, field))
        if measured is None:
            verdict = "absent"
        elif kind == "min":
            verdict = "pass" if measured >= threshold else "miss"
        else:
            verdict = "pass" if measured <= threshold else "miss"
        rows.append(
            {
                "program": program,
                "concurrency": concurrency,
                "field": field,
                "kind": kind,
                "expected": value,
                "threshold": threshold,
                "measured": measured,
                "verdict": verdict,
                "tool": figure_tool(program, concurrency, field),
                "published": published,
            }
        )
    return rows


def describe_figure(row):
    where = row["program"] + (f" at concurrency {row['concurrency']}" if row.get("concurrency") is not None else "")
    return f"{row['field']} ({where})"


def misses(verdicts):
    return [row for row in verdicts if row["verdict"] == "miss"]


# --- previous run and comparison ---------------------------------------------------------------------


def find_previous(report_dir, document):
    """The latest earlier report of the same host and profile in report_dir: (path, document) or (None, None).

    Reports are recognised by content, not by name: a renamed or copied file still counts. Unreadable JSON
    files are skipped.
    """
    if not os.path.isdir(report_dir):
        return None, None
    best = (None, None)
    current = document["started_at"]
    for entry in sorted(os.listdir(report_dir)):
        if not entry.endswith(".json"):
            continue
        path = os.path.join(report_dir, entry)
        try:
            with open(path, encoding="utf-8") as handle:
                candidate = json.load(handle)
        except (OSError, ValueError):
            continue
        if not isinstance(candidate, dict) or candidate.get("schema") != SCHEMA_VERSION:
            continue
        if (candidate.get("host"), candidate.get("profile")) != (document["host"], document["profile"]):
            continue
        started = candidate.get("started_at")
        if not isinstance(started, str) or started >= current:
            continue
        if best[1] is None or started > best[1]["started_at"]:
            best = (path, candidate)
    return best


def compare(previous, document):
    """Rows of (figure, previous, now, change %, better?) for the figures both runs measured."""
    if not previous:
        return []
    before = measured_figures(previous)
    now = measured_figures(document)
    wanted = [(ONE_BATCH, None, field) for field in COMPARED_FIGURES[ONE_BATCH]]
    levels = sorted({key[1] for key in now if key[0] == SERVING and key[1] is not None})
    wanted += [(SERVING, level, field) for level in levels for field in COMPARED_FIGURES[SERVING]]
    rows = []
    for key in wanted:
        if key not in before or key not in now:
            continue
        old, new = before[key], now[key]
        change = None if old == 0 else (new - old) / abs(old) * 100
        direction = higher_is_better(key[2])
        judged = change is not None and direction is not None and abs(change) >= COMPARISON_NOISE_PCT
        better = ((change > 0) == direction) if judged else None
        rows.append(
            {
                "program": key[0],
                "concurrency": key[1],
                "field": key[2],
                "previous": old,
                "now": new,
                "change_pct": change,
                "better": better,
            }
        )
    return rows


# --- the document ------------------------------------------------------------------------------------


def build_document(
    host,
    profile,
    image,
    serving=None,
    one_batch=None,
    expected=None,
    tolerance_pct=0.0,
    report_dir=None,
    started_at=None,
    model="",
    sglang_version="",
    note="",
    simulated=False,
):
    """Assemble the run document: results, verdicts, the previous run and the comparison with it. simulated: the
    server is the lab's stand-in (the document, the Markdown and the plots say so)."""
    for name, value in (("host", host), ("profile", profile), ("image", image)):
        if not isinstance(value, str) or not value.strip():
            raise BenchReportError(f"{name}={value!r} must name the {name} of the benchmarked server")
    if not serving and not one_batch:
        raise BenchReportError(
            "no results to report: give bench_serving and/or bench_one_batch results from the sglang_bench module"
        )
    times = [
        part.get("started_at") for part in (serving or {}, one_batch or {}) if isinstance(part.get("started_at"), str)
    ]
    started_at = started_at or (min(times) if times else utc_now())
    try:
        _parse_time(started_at)
    except ValueError:
        raise BenchReportError(f"started_at={started_at!r} must be UTC as YYYY-MM-DDTHH:MM:SSZ") from None
    if not sglang_version:
        sglang_version = next(
            (
                record["server_version"]
                for record in (serving or {}).get("results") or []
                if isinstance(record.get("server_version"), str)
            ),
            "",
        )
    document = {
        "schema": SCHEMA_VERSION,
        "host": host,
        "profile": profile,
        "image": image,
        "sglang_version": sglang_version,
        "model": model,
        "started_at": started_at,
        "note": note,
        "simulated": bool(simulated),
        SERVING: serving or None,
        ONE_BATCH: one_batch or None,
        "expected": expected or {},
        "tolerance_pct": tolerance_pct,
    }
    document["verdicts"] = evaluate(document, expected or {}, tolerance_pct)
    previous_path, previous = find_previous(report_dir, document) if report_dir else (None, None)
    document["previous"] = (
        {
            "file": os.path.basename(previous_path),
            "started_at": previous["started_at"],
            "image": previous.get("image"),
            "sglang_version": previous.get("sglang_version", ""),
        }
        if previous
        else None
    )
    document["comparison"] = compare(previous, document)
    return document, previous


# --- Markdown ----------------------------------------------------------------------------------------


def _fmt(value, unit=""):
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if unit == "s" and isinstance(value, float):
        return f"{value:.5f}" if value < 1 else f"{value:.3f}"
    if isinstance(value, int):
        return str(value)
    if abs(value) >= 100:
        return f"{value:,.1f}"
    return f"{value:.2f}"


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def _describe_serving(settings):
    parts = []
    if settings.get("dataset_name"):
        parts.append(f"{settings['dataset_name']} prompts")
    if settings.get("input_len") and settings.get("output_len"):
        parts.append(f"{settings['input_len']} tokens in, {settings['output_len']} out")
    if settings.get("num_prompts"):
        parts.append(f"{settings['num_prompts']} requests per level")
    elif settings.get("prompts_per_concurrency"):
        parts.append(f"{settings['prompts_per_concurrency']} requests per concurrent slot")
    if settings.get("request_rate") not in (None, "", "inf"):
        parts.append(f"{settings['request_rate']} requests/s")
    return ": " + ", ".join(parts) if parts else ""


def _verdict_mark(verdict):
    return {"pass": "pass", "miss": "**MISS**", "absent": "not measured"}.get(verdict, verdict)


def render_markdown(document, plot_names=()):
    """The report as Markdown: header, verdicts, single-batch and serving tables, comparison, plots."""
    started = _parse_time(document["started_at"]).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"# SGLang benchmark: {document['host']}, {document['profile']}, {image_tag(document['image'])}"
        + (f", {SIMULATED_MARK}" if document.get("simulated") else ""),
        "",
        f"- Host: `{document['host']}`",
        f"- Profile: `{document['profile']}`" + (f" (model `{document['model']}`)" if document.get("model") else ""),
        f"- Image: `{document['image']}`"
        + (f" (SGLang {document['sglang_version']})" if document.get("sglang_version") else ""),
        f"- Started: {started}",
    ]
    if document.get("simulated"):
        lines.append(f"- {SIMULATED_MARK.capitalize()}: the server is the lab's stand-in, not SGLang on GPUs; no "
                     "figure here is a measurement of real hardware.")
    if document.get("note"):
        lines.append(f"- Note: {document['note']}")
    lines.append("")

    verdicts = document.get("verdicts") or []
    lines += ["## Expected figures", ""]
    if verdicts:
        rows = []
        for row in verdicts:
            bound = ">=" if row["kind"] == "min" else "<="
            rows.append(
                [
                    row["program"],
                    row["concurrency"] if row["concurrency"] is not None else "-",
                    row["field"],
                    _fmt(row["measured"], UNITS.get(row["field"], "")),
                    f"{bound} {_fmt(row['threshold'], UNITS.get(row['field'], ''))} "
                    f"(expected {_fmt(row['expected'], UNITS.get(row['field'], ''))}, "
                    f"tolerance {document.get('tolerance_pct', 0):g}%)",
                    _verdict_mark(row["verdict"]),
                    f"`{row.get('tool') or figure_tool(row['program'], row['concurrency'], row['field'])}`",
                    f"published, not measured here: {row['published']}" if row.get("published") else "profile",
                ]
            )
        lines += _table(
            ["benchmark", "concurrency", "figure", "measured", "threshold", "verdict", "measured with",
             "expected from"],
            rows,
        )
    else:
        lines.append("The profile sets no expected figures.")
    lines.append("")

    one_batch = document.get(ONE_BATCH)
    if one_batch and one_batch.get("result"):
        result = one_batch["result"]
        shape = ", ".join(
            f"{label} {result.get(key)}"
            for key, label in (("batch_size", "batch"), ("input_len", "input"), ("output_len", "output"))
            if result.get(key) is not None
        )
        lines += [f"## Single batch ({ONE_BATCH}: {shape})", ""]
        lines += [f"Measured with `{figure_tool(ONE_BATCH, None, '')}`.", ""]
        header = [f"{label} ({unit})" for _field, label, unit in ONE_BATCH_FIGURES]
        lines += _table(header, [[_fmt(result.get(field), unit) for field, _label, unit in ONE_BATCH_FIGURES]])
        lines.append("")

    serving = document.get(SERVING)
    if serving and serving.get("results"):
        lines += [
            f"## Serving ({SERVING}" + _describe_serving(serving.get("settings") or {}) + ")",
            "",
            f"Measured with `{figure_tool(SERVING, None, '')} --max-concurrency <concurrency>`; per-user decode is "
            f"1000 / median TPOT of the same run, the accept length (speculative decoding) comes from the server's "
            "/server_info as bench_serving read it.",
            "",
        ]
        header = ["concurrency"] + [f"{label} ({unit})" if unit else label for _field, label, unit in SERVING_FIGURES]
        rows = [
            [_fmt(record.get("max_concurrency"))]
            + [_fmt(record.get(field)) for field, _label, _unit in SERVING_FIGURES]
            for record in serving["results"]
        ]
        lines += _table(header, rows)
        lines.append("")

    lines += ["## Compared with the previous run", ""]
    previous = document.get("previous")
    if previous:
        lines.append(
            f"Previous: `{previous['file']}` ({_parse_time(previous['started_at']).strftime('%Y-%m-%d %H:%M UTC')}, "
            f"image `{previous.get('image')}`)."
        )
        lines.append("")
        lines.append(
            f"One run of each: a change within ±{COMPARISON_NOISE_PCT:g}% is run-to-run noise, and is called better or "
            "worse only beyond it."
        )
        lines.append("")
        rows = []
        for row in document.get("comparison") or []:
            change = "-" if row["change_pct"] is None else f"{row['change_pct']:+.1f}%"
            judged = {True: "better", False: "worse", None: ""}[row["better"]]
            if row["better"] is None and row["change_pct"] is not None and higher_is_better(row["field"]) is not None:
                judged = "within noise"
            rows.append(
                [
                    row["program"],
                    row["concurrency"] if row["concurrency"] is not None else "-",
                    row["field"],
                    _fmt(row["previous"], UNITS.get(row["field"], "")),
                    _fmt(row["now"], UNITS.get(row["field"], "")),
                    f"{change} {judged}".strip(),
                ]
            )
        lines += _table(["benchmark", "concurrency", "figure", "previous", "now", "change"], rows)
    else:
        lines.append(f"No earlier report of `{document['host']}` with profile `{document['profile']}` was found.")
    lines.append("")

    if plot_names:
        lines += ["## Plots", ""]
        lines += [f"![{name}]({name})" for name in plot_names]
        lines.append("")
    return "\n".join(lines)


# --- plots -------------------------------------------------------------------------------------------


def _serving_series(document, field):
    records = ((document or {}).get(SERVING) or {}).get("results") or []
    points = sorted(
        (record["max_concurrency"], record[field])
        for record in records
        if _is_number(record.get("max_concurrency")) and _is_number(record.get(field))
    )
    return [point[0] for point in points], [point[1] for point in points]


def render_plots(document, previous, throughput_path, latency_path):
    """Draw throughput and latency against concurrency into two PNG files. Needs matplotlib (Agg).

    Returns the paths written ([] when the run has no serving results). Raises ImportError without matplotlib.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, LogFormatter, NullLocator, ScalarFormatter

    levels, _values = _serving_series(document, "output_throughput")
    if not levels:
        return []
    title = (
        ("%s | " % SIMULATED_MARK.upper() if document.get("simulated") else "")
        + f"{document['host']} | {document['profile']} | {image_tag(document['image'])} | "
        f"{_parse_time(document['started_at']).strftime('%Y-%m-%d %H:%M UTC')}"
    )
    previous_label = (
        f"previous run ({_parse_time(previous['started_at']).strftime('%Y-%m-%d %H:%M')}, "
        f"{image_tag(previous.get('image') or '')})"
        if previous
        else ""
    )

    def concurrency_axis(axis, log_y=False):
        axis.set_xscale("log", base=2)
        axis.xaxis.set_major_locator(FixedLocator(levels))
        axis.xaxis.set_minor_locator(NullLocator())
        axis.xaxis.set_major_formatter(ScalarFormatter())
        axis.set_xlabel("max concurrency (requests in flight)")
        axis.grid(True, which="major", alpha=0.3)
        # Room beside the outer points and above the highest for their labels.
        axis.set_xlim(levels[0] / 1.5, levels[-1] * 1.5)
        if log_y:
            # Latencies: a P99 spike ten times the median would flatten the median on a linear scale.
            axis.set_yscale("log")
            # Plain numbers (25, 30, 40), not 2.5 x 10^1, on the decades and between them.
            for formatter, setter in ((LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)),
                                       axis.yaxis.set_major_formatter),
                                      (LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)),
                                       axis.yaxis.set_minor_formatter)):
                setter(formatter)
            low, high = axis.get_ylim()
            axis.set_ylim(low / 1.3, high * 1.6)
        else:
            axis.set_ylim(0, axis.get_ylim()[1] * 1.1)
        # Below the plot, where it never covers a point.
        axis.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)

    pending = []

    def annotate(axis, xs, ys, fmt):
        # Placed once everything is drawn and scaled (place_labels): clear of every marker and of each other.
        pending.extend((axis, x, y, fmt.format(y)) for x, y in zip(xs, ys, strict=False))

    def previous_on(axis, field, label):
        """The previous run's curve of one figure, dashed and grey, for comparison."""
        xs, ys = _serving_series(previous, field) if previous else ([], [])
        if xs:
            axis.plot(
                xs, ys, marker="o", linestyle="--", color="tab:gray", alpha=0.8, label=f"{label}, {previous_label}"
            )

    def expected_bounds_on(axis, fields):
        """The profile's bounds for these figures as red bars, and a red ring around each point that misses."""
        rows = [
            row
            for row in document.get("verdicts") or []
            if row["program"] == SERVING and row["field"] in fields and row["concurrency"] in levels
        ]
        for kind, label in (("min", "expected (floor)"), ("max", "expected (ceiling)")):
            bounds = [(row["concurrency"], row["threshold"]) for row in rows if row["kind"] == kind]
            if bounds:
                bars = axis.scatter(
                    [point[0] for point in bounds],
                    [point[1] for point in bounds],
                    marker="_",
                    s=400,
                    linewidths=2,
                    color="tab:red",
                    label=label,
                    zorder=5,
                )
                bars.datacrunch_marker = "_"  # a flat bar: only its width covers anything
        missed = [(row["concurrency"], row["measured"]) for row in rows if row["verdict"] == "miss"]
        if missed:
            axis.scatter(
                [point[0] for point in missed],
                [point[1] for point in missed],
                marker="o",
                s=220,
                facecolors="none",
                edgecolors="tab:red",
                linewidths=2,
                label="misses the expected figure",
                zorder=6,
            )

    written = []

    figure, axis = plt.subplots(figsize=(8, 6), dpi=120, layout="constrained")
    xs, ys = _serving_series(document, "output_throughput")
    axis.plot(xs, ys, marker="o", linewidth=2, color="tab:blue", label="output tokens/s")
    annotate(axis, xs, ys, "{:,.0f}")
    xs_total, ys_total = _serving_series(document, "total_throughput")
    if xs_total:
        axis.plot(
            xs_total, ys_total, marker="s", linewidth=1.5, color="tab:green", label="total (input + output) tokens/s"
        )
    previous_on(axis, "output_throughput", "output tokens/s")
    expected_bounds_on(axis, ("output_throughput", "total_throughput"))
    concurrency_axis(axis)
    axis.set_ylabel("tokens per second (all requests together)")
    axis.set_title(f"Serving throughput\n{title}", fontsize=10)
    _place_labels(figure, pending)
    figure.savefig(throughput_path)
    plt.close(figure)
    written.append(throughput_path)

    figure, (ttft_axis, tpot_axis) = plt.subplots(1, 2, figsize=(11, 6), dpi=120, layout="constrained")
    for axis, series, heading in (
        (ttft_axis, (("median_ttft_ms", "median", "o", "-"), ("p99_ttft_ms", "P99", "^", ":")), "Time to first token"),
        (
            tpot_axis,
            (
                ("median_tpot_ms", "median TPOT", "o", "-"),
                ("p99_tpot_ms", "P99 TPOT", "^", ":"),
                ("median_itl_ms", "median ITL", "s", "-."),
            ),
            "Time per output token",
        ),
    ):
        for field, label, marker, style in series:
            xs, ys = _serving_series(document, field)
            if xs:
                axis.plot(xs, ys, marker=marker, linestyle=style, linewidth=1.8, label=label)
                if label.startswith("median") and field != "median_itl_ms":
                    annotate(axis, xs, ys, "{:,.1f}")
        expected_bounds_on(axis, [field for field, _label, _marker, _style in series])
        previous_on(axis, series[0][0], series[0][1])
        concurrency_axis(axis, log_y=True)
        axis.set_ylabel("milliseconds, log scale (lower is better)")
        axis.set_title(heading, fontsize=10)
    figure.suptitle(f"Serving latency\n{title}", fontsize=10)
    _place_labels(figure, pending)
    figure.savefig(latency_path)
    plt.close(figure)
    written.append(latency_path)
    return written


# Where a point's label may go, in order of preference, as (x, y) offsets in points and the alignment that keeps
# the text on that side: above left first (the curves arrive from the lower left), then the other corners, then
# further out.
LABEL_PLACES = [
    ((-6, 6), "right", "bottom"), ((6, 6), "left", "bottom"), ((6, -6), "left", "top"), ((-6, -6), "right", "top"),
    ((0, 14), "center", "bottom"), ((0, -14), "center", "top"), ((-14, 14), "right", "bottom"),
    ((14, 14), "left", "bottom"), ((14, -14), "left", "top"), ((-14, -14), "right", "top"),
]


def marker_boxes(axis):
    """The display boxes (x0, y0, x1, y1) of every marker drawn on an axis: the points of its lines and scatters."""
    import numpy

    boxes = []
    scale = axis.figure.dpi / 72.0
    for line in axis.get_lines():
        if line.get_marker() in (None, "", "None", " "):
            continue
        half = line.get_markersize() * scale / 2 + line.get_markeredgewidth() * scale
        points = axis.transData.transform(numpy.column_stack(line.get_data()))
        boxes += [(x - half, y - half, x + half, y + half) for x, y in points]
    for collection in axis.collections:
        offsets = collection.get_offsets()
        if not len(offsets):
            continue
        sizes = collection.get_sizes()
        widths = collection.get_linewidths()
        points = collection.get_offset_transform().transform(offsets)
        wide_only = getattr(collection, "datacrunch_marker", "") == "_"
        for index, (x, y) in enumerate(points):
            side = numpy.sqrt(sizes[index % len(sizes)]) * scale
            edge = widths[index % len(widths)] * scale if len(widths) else scale
            half_w, half_h = side / 2 + edge, (edge if wide_only else side / 2 + edge)
            boxes.append((x - half_w, y - half_h, x + half_w, y + half_h))
    return boxes


def _overlaps(box, other):
    return box[0] < other[2] and other[0] < box[2] and box[1] < other[3] and other[1] < box[3]


def _place_labels(figure, pending):
    """Write each point's label at the first place where it covers no marker and no label placed before it (the
    preferred place when none is free)."""
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    taken = {}
    for axis, x, y, text in pending:
        if axis not in taken:
            taken[axis] = list(marker_boxes(axis))
        chosen = None
        for offset, ha, va in LABEL_PLACES:
            label = axis.annotate(
                text, (x, y), textcoords="offset points", xytext=offset, ha=ha, va=va, fontsize=8,
                bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.8},
            )  # fmt: skip
            extent = label.get_window_extent(renderer)
            box = (extent.x0, extent.y0, extent.x1, extent.y1)
            if not any(_overlaps(box, other) for other in taken[axis]):
                chosen = (label, box)
                break
            label.remove()
        if chosen is None:
            offset, ha, va = LABEL_PLACES[0]
            label = axis.annotate(
                text, (x, y), textcoords="offset points", xytext=offset, ha=ha, va=va, fontsize=8,
                bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.8},
            )  # fmt: skip
            extent = label.get_window_extent(renderer)
            chosen = (label, (extent.x0, extent.y0, extent.x1, extent.y1))
        taken[axis].append(chosen[1])


# --- files -------------------------------------------------------------------------------------------


def write_report(report_dir, document, previous=None, check_mode=False):
    """Write ``<name>.json``, ``<name>.md`` and the PNG plots into report_dir.

    Returns {"files": [...], "warnings": [...], "basename": name}. In check mode nothing is written and the
    files listed are those a run would write. Without matplotlib the plots are skipped with a warning.
    """
    base = os.path.join(report_dir, report_basename(document))
    json_path, md_path = base + ".json", base + ".md"
    throughput_path, latency_path = base + "-throughput.png", base + "-latency.png"
    has_serving = bool((document.get(SERVING) or {}).get("results"))
    planned_plots = [throughput_path, latency_path] if has_serving else []
    warnings = []
    if check_mode:
        return {"files": [json_path, md_path, *planned_plots], "warnings": warnings, "basename": base}

    os.makedirs(report_dir, exist_ok=True)
    plots = []
    if planned_plots:
        try:
            plots = render_plots(document, previous, throughput_path, latency_path)
        except ImportError:
            warnings.append(
                "matplotlib is not installed on the controller: the PNG plots were not drawn "
                "(install it with `pip install matplotlib`); the JSON and Markdown reports were written"
            )
    document = dict(document, files={"plots": [os.path.basename(path) for path in plots]})
    _write_text(json_path, json.dumps(document, indent=2, sort_keys=False) + "\n")
    _write_text(md_path, render_markdown(document, [os.path.basename(path) for path in plots]))
    return {"files": [json_path, md_path, *plots], "warnings": warnings, "basename": base}


def _write_text(path, text):
    replace_file(path, text)
