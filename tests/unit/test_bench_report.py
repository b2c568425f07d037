"""Benchmark reports: names, verdicts against profile figures, the previous run, and the files written."""

import json
import struct
import sys
from pathlib import Path

import pytest
import yaml

from ansible_collections.datacrunch.sglang.plugins.module_utils.bench import output as bench_output
from ansible_collections.datacrunch.sglang.plugins.module_utils.bench import report as bench_report
from ansible_collections.datacrunch.sglang.plugins.module_utils.bench.report import BenchReportError

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "bench"
PROFILES = ROOT / "roles" / "sglang_server" / "vars" / "profiles"


def seed_one_batch(started_at="2026-11-28T22:20:00Z"):
    result = bench_output.one_batch_result(
        (FIXTURES / "seed-one-batch-deepseek-r1-8xh200.txt").read_text(),
        requested={"batch_size": 1, "input_len": 128, "output_len": 256},
    )
    return {"started_at": started_at, "result": result["runs"][0]}


def serving(started_at="2026-11-28T22:10:03Z", scale=1.0):
    records = bench_output.parse_serving_jsonl((FIXTURES / "serving-v0.5.18.jsonl").read_text())
    for record in records:
        record["output_throughput"] *= scale
        record["median_tpot_ms"] /= scale
    return {
        "started_at": started_at,
        "settings": {"dataset_name": "random-ids", "input_len": 128, "output_len": 256},
        "results": records,
    }


def png_size(path):
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


# --- names -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "tag"),
    [
        ("lmsysorg/sglang:v0.5.18", "v0.5.18"),
        ("localhost/sglang-standin:v0.5.23", "v0.5.23"),
        ("lmsysorg/sglang", "latest"),
        ("lmsysorg/sglang@sha256:" + "ab" * 32, "sha256-abababababab"),
        ("lmsysorg/sglang:v0.5.18-cu130@sha256:" + "cd" * 32, "v0.5.18-cu130"),
        ("registry.example:5000/team/sglang:dev", "dev"),
    ],
)
def test_image_tag(image, tag):
    assert bench_report.image_tag(image) == tag


def test_report_basename_sorts_by_time_and_is_safe():
    document = {
        "started_at": "2026-11-28T22:10:03Z",
        "host": "gpu 1/a",
        "profile": "deepseek-r1",
        "image": "lmsysorg/sglang:v0.5.18",
    }
    assert bench_report.report_basename(document) == "20261128T221003Z-gpu_1_a-deepseek-r1-v0.5.18"


# --- expected figures and verdicts -------------------------------------------------------------------


def test_seed_figure_from_the_shipped_profile_passes_on_the_seed_run():
    profile = yaml.safe_load((PROFILES / "deepseek-r1.yml").read_text())
    document, _previous = bench_report.build_document(
        "h1", "deepseek-r1", "lmsysorg/sglang:v0.5.18", one_batch=seed_one_batch(), expected=profile["expected"]
    )
    (row,) = document["verdicts"]
    assert row["field"] == "median_decode_throughput"
    assert (row["expected"], row["measured"], row["verdict"]) == (47.67, 47.67, "pass")


def test_throughput_floor_latency_ceiling_and_tolerance():
    run = {bench_report.ONE_BATCH: {"result": {"median_decode_throughput": 47.0, "median_decode_latency": 0.0213}}}
    expected = {"bench_one_batch": {"median_decode_throughput": 47.67, "median_decode_latency": 0.021}}
    strict = {row["field"]: row["verdict"] for row in bench_report.evaluate(run, expected, 0)}
    assert strict == {"median_decode_throughput": "miss", "median_decode_latency": "miss"}
    loose = {row["field"]: row["verdict"] for row in bench_report.evaluate(run, expected, 5)}
    assert loose == {"median_decode_throughput": "pass", "median_decode_latency": "pass"}


def test_serving_bounds_per_concurrency_explicit_and_absent():
    document = {bench_report.SERVING: serving()}
    expected = {
        "bench_serving": {
            4: {"output_throughput": 150, "median_tpot_ms": {"max": 20}},
            "16": {"output_throughput": 10_000},
            64: {"output_throughput": 1},
        }
    }
    verdicts = {(row["concurrency"], row["field"]): row["verdict"] for row in bench_report.evaluate(document, expected)}
    assert verdicts == {
        (4, "output_throughput"): "pass",
        (4, "median_tpot_ms"): "miss",
        (16, "output_throughput"): "miss",
        (64, "output_throughput"): "absent",
    }


def test_null_removes_a_figure():
    expected = {
        "bench_one_batch": {"median_decode_throughput": None, "median_decode_latency": 0.03},
        "bench_serving": {4: None, 16: {"output_throughput": None}},
    }
    assert bench_report.expected_bounds(expected) == [
        ("bench_one_batch", None, "median_decode_latency", "max", 0.03, None)
    ]
    assert bench_report.expected_bounds({"bench_serving": None}) == []


@pytest.mark.parametrize(
    ("expected", "message"),
    [
        ({"bench_latency": {"x": 1}}, r"expected\.bench_latency is not a benchmark"),
        ({"bench_serving": {"four": {"output_throughput": 1}}}, r"key 'four' must be a max concurrency"),
        ({"bench_one_batch": {"median_decode_throughput": "fast"}}, r"'fast' must be a number"),
        ({"bench_one_batch": {"completed_ok": 3}}, r"cannot tell whether more or less is better"),
        ({"bench_one_batch": {"median_decode_latency": {"min": 1, "max": 2}}}, r"one of min/max"),
        ([47.67], r"must be a mapping"),
    ],
)
def test_bad_expected_figures_are_named(expected, message):
    with pytest.raises(BenchReportError, match=message):
        bench_report.evaluate({}, expected)


def test_bad_tolerance_and_missing_results_are_named():
    with pytest.raises(BenchReportError, match=r"tolerance_pct=150"):
        bench_report.evaluate({}, {}, 150)
    with pytest.raises(BenchReportError, match=r"no results to report"):
        bench_report.build_document("h1", "p", "img:v1")
    with pytest.raises(BenchReportError, match=r"host=''"):
        bench_report.build_document("", "p", "img:v1", one_batch=seed_one_batch())


# --- previous run ------------------------------------------------------------------------------------


def test_previous_run_is_the_latest_earlier_one_of_the_same_host_and_profile(tmp_path):
    def write(name, **fields):
        base = {"schema": 1, "host": "h1", "profile": "deepseek-r1", "started_at": "2026-11-01T00:00:00Z"}
        (tmp_path / name).write_text(json.dumps(base | fields))

    write("a.json", started_at="2026-11-20T00:00:00Z", image="img:old")
    write("b.json", started_at="2026-11-25T00:00:00Z", image="img:wanted")
    write("c.json", started_at="2026-11-26T00:00:00Z", host="h2")
    write("d.json", started_at="2026-11-26T00:00:00Z", profile="deepseek-r1-mtp")
    write("e.json", started_at="2026-11-29T00:00:00Z")  # later than the current run
    write("f.json", started_at="2026-11-27T00:00:00Z", schema=99)
    (tmp_path / "g.json").write_text("{not json")
    (tmp_path / "h.md").write_text("# not a report")
    current = {"host": "h1", "profile": "deepseek-r1", "started_at": "2026-11-28T00:00:00Z"}
    path, previous = bench_report.find_previous(str(tmp_path), current)
    assert Path(path).name == "b.json"
    assert previous["image"] == "img:wanted"
    assert bench_report.find_previous(str(tmp_path / "missing"), current) == (None, None)


def test_comparison_judges_direction():
    before = {bench_report.SERVING: serving(), bench_report.ONE_BATCH: seed_one_batch()}
    after = {bench_report.SERVING: serving(scale=0.5), bench_report.ONE_BATCH: seed_one_batch()}
    rows = {(row["concurrency"], row["field"]): row for row in bench_report.compare(before, after)}
    assert rows[(4, "output_throughput")]["change_pct"] == pytest.approx(-50)
    assert rows[(4, "output_throughput")]["better"] is False
    assert rows[(4, "median_tpot_ms")]["change_pct"] == pytest.approx(100)
    assert rows[(4, "median_tpot_ms")]["better"] is False
    assert rows[(None, "median_decode_throughput")]["better"] is None  # unchanged
    assert bench_report.compare(None, after) == []


# --- files -------------------------------------------------------------------------------------------


def build(tmp_path, scale=1.0, started_at=None, image="lmsysorg/sglang:v0.5.18"):
    expected = {
        "bench_one_batch": {"median_decode_throughput": 47.67},
        "bench_serving": {4: {"output_throughput": 150}},
    }
    return bench_report.build_document(
        "dcsg-lab-1",
        "deepseek-r1",
        image,
        serving=serving(scale=scale),
        one_batch=seed_one_batch(),
        expected=expected,
        tolerance_pct=5,
        report_dir=str(tmp_path),
        started_at=started_at,
    )


def test_report_files_json_markdown_and_plots(tmp_path):
    document, previous = build(tmp_path, started_at="2026-11-27T08:00:00Z")
    assert previous is None
    first = bench_report.write_report(str(tmp_path), document, previous)
    assert first["warnings"] == []
    names = sorted(Path(path).name for path in first["files"])
    assert names == [
        "20261127T080000Z-dcsg-lab-1-deepseek-r1-v0.5.18-latency.png",
        "20261127T080000Z-dcsg-lab-1-deepseek-r1-v0.5.18-throughput.png",
        "20261127T080000Z-dcsg-lab-1-deepseek-r1-v0.5.18.json",
        "20261127T080000Z-dcsg-lab-1-deepseek-r1-v0.5.18.md",
    ]

    document, previous = build(tmp_path, scale=0.5, image="lmsysorg/sglang:v0.5.23")
    second = bench_report.write_report(str(tmp_path), document, previous)
    json_path, md_path, throughput_png, latency_png = second["files"]
    saved = json.loads(Path(json_path).read_text())
    assert saved["previous"]["file"] == "20261127T080000Z-dcsg-lab-1-deepseek-r1-v0.5.18.json"
    assert saved["previous"]["image"] == "lmsysorg/sglang:v0.5.18"
    verdicts = {(row["program"], row["concurrency"], row["field"]): row["verdict"] for row in saved["verdicts"]}
    assert verdicts == {
        ("bench_one_batch", None, "median_decode_throughput"): "pass",
        ("bench_serving", 4, "output_throughput"): "miss",
    }
    markdown = Path(md_path).read_text()
    assert "| bench_serving | 4 | output_throughput | 80.57 | >= 142.5 (expected 150.0, tolerance 5%) | **MISS** |" in (
        markdown
    )
    assert "| bench_one_batch | - | median_decode_throughput | 47.67 | >= 45.29" in markdown
    assert "| 4 | 16 | 80.57 |" in markdown
    assert "| bench_serving | 4 | output_throughput | 161.1 | 80.57 | -50.0% worse |" in markdown
    assert f"![{Path(throughput_png).name}]({Path(throughput_png).name})" in markdown
    assert png_size(throughput_png) == (960, 720)
    assert png_size(latency_png) == (1320, 720)
    assert Path(throughput_png).stat().st_size > 20_000


def test_reports_never_hold_the_api_key(tmp_path):
    assert "sk-fixture-must-not-leak" in (FIXTURES / "serving-v0.5.18.jsonl").read_text()
    document, previous = build(tmp_path)
    result = bench_report.write_report(str(tmp_path), document, previous)
    for path in result["files"]:
        assert b"sk-fixture-must-not-leak" not in Path(path).read_bytes()


def test_check_mode_writes_nothing(tmp_path):
    document, previous = build(tmp_path / "reports")
    result = bench_report.write_report(str(tmp_path / "reports"), document, previous, check_mode=True)
    assert len(result["files"]) == 4
    assert not (tmp_path / "reports").exists()


def test_without_matplotlib_the_reports_are_still_written(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    document, previous = build(tmp_path)
    result = bench_report.write_report(str(tmp_path), document, previous)
    assert [Path(path).suffix for path in result["files"]] == [".json", ".md"]
    assert all(Path(path).is_file() for path in result["files"])
    assert "matplotlib is not installed" in result["warnings"][0]
    assert "## Plots" not in Path(result["files"][1]).read_text()
    assert not list(tmp_path.glob("*.png"))


def test_one_batch_only_report_has_no_plots(tmp_path):
    document, previous = bench_report.build_document(
        "h1", "deepseek-r1", "lmsysorg/sglang:v0.5.18", one_batch=seed_one_batch(), report_dir=str(tmp_path)
    )
    result = bench_report.write_report(str(tmp_path), document, previous)
    assert [Path(path).suffix for path in result["files"]] == [".json", ".md"]
    markdown = Path(result["files"][1]).read_text()
    assert "## Single batch (bench_one_batch: batch 1, input 128, output 256)" in markdown
    assert "| 47.67 | 0.02098 | 0.19635 | 651.9 | 5.537 | 69.35 |" in markdown
    assert "The profile sets no expected figures." in markdown


# --- speculative profiles: judged against the running server, published figures named -----------------------------


def mtp_run(median_tpot_ms, accept_length):
    record = bench_output.serving_result("", (FIXTURES / "serving-v0.5.18.jsonl").read_text().splitlines()[0])
    record.update(median_tpot_ms=median_tpot_ms, accept_length=accept_length)
    record = bench_output.serving_result("", json.dumps(record))
    return {"started_at": "2026-11-28T22:10:03Z", "settings": {"input_len": 128, "output_len": 256},
            "results": [record]}


@pytest.mark.parametrize(("median_tpot_ms", "verdict"), [(12.5, "pass"), (20.98, "miss")])
def test_mtp_profile_is_judged_by_bench_serving_at_concurrency_one(tmp_path, median_tpot_ms, verdict):
    from ansible_collections.datacrunch.sglang.plugins.module_utils.plan.profiles import (
        load_profile_files,
        resolve_profile,
    )

    expected = resolve_profile("deepseek-r1-mtp", load_profile_files(str(PROFILES)))["expected"]
    document, previous = bench_report.build_document(
        "h1", "deepseek-r1-mtp", "lmsysorg/sglang:v0.5.18", serving=mtp_run(median_tpot_ms, 3.1), expected=expected
    )
    (row,) = document["verdicts"]
    assert (row["program"], row["concurrency"], row["field"]) == ("bench_serving", 1, "per_user_decode_throughput")
    assert row["expected"] == 77.0 and row["verdict"] == verdict
    assert "PR #3582" in row["published"]
    markdown = Path(bench_report.write_report(str(tmp_path), document, previous)["files"][1]).read_text()
    line = next(text for text in markdown.splitlines() if "per_user_decode_throughput" in text)
    assert "`python3 -m sglang.bench_serving --max-concurrency 1 (1000 / median_tpot_ms)`" in line
    assert "published, not measured here: SGLang PR #3582" in line
    assert "accept length" in markdown and "| 3.10 |" in markdown


def test_every_figure_of_a_report_names_its_tool(tmp_path):
    document, previous = build(tmp_path)
    markdown = Path(bench_report.write_report(str(tmp_path), document, previous)["files"][1]).read_text()
    rows = [text for text in markdown.split("## Expected figures")[1].split("##")[0].splitlines()
            if text.startswith("| bench_")]
    assert rows and all("`python3 -m sglang.bench_" in text for text in rows)
    assert "Measured with `python3 -m sglang.bench_one_batch (server stopped, no speculative decoding)`" in markdown
    assert "Measured with `python3 -m sglang.bench_serving --max-concurrency <concurrency>`" in markdown


def test_published_figures_need_a_source():
    for bound, message in (({"min": 77, "published": ""}, r"published=.*must name the source"),
                           ({"min": 77, "source": "x"}, "one of min/max")):
        with pytest.raises(BenchReportError, match=message):
            bench_report.expected_bounds({"bench_serving": {1: {"per_user_decode_throughput": bound}}})


def test_a_lab_run_says_simulated_in_the_json_the_markdown_and_every_plot(tmp_path, monkeypatch):
    import matplotlib.figure

    drawn = []
    savefig = matplotlib.figure.Figure.savefig

    def recording_savefig(figure, path, *args, **kwargs):
        titles = [figure._suptitle.get_text()] if figure._suptitle else []
        titles += [axis.get_title() for axis in figure.axes]
        drawn.append((Path(path).name, " ".join(titles), [axis.get_yscale() for axis in figure.axes]))
        return savefig(figure, path, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", recording_savefig)
    document, previous = bench_report.build_document(
        "dcsg-lab-1", "lab-tiny", "localhost/sglang-standin:v0.5.18", serving=serving(),
        report_dir=str(tmp_path), simulated=True)
    json_path, md_path, *_plots = bench_report.write_report(str(tmp_path), document, previous)["files"]
    assert json.loads(Path(json_path).read_text())["simulated"] is True
    assert Path(md_path).read_text().splitlines()[0] == (
        "# SGLang benchmark: dcsg-lab-1, lab-tiny, v0.5.18, simulated (lab stand-in)")
    assert [name.rsplit("-", 1)[1] for name, _title, _scales in drawn] == ["throughput.png", "latency.png"]
    for _name, title, _scales in drawn:
        assert "SIMULATED (LAB STAND-IN) | dcsg-lab-1" in title
    # Latency on a log scale: a P99 ten times the median leaves the median readable.
    assert drawn[1][2] == ["log", "log"]


def test_a_real_run_says_nothing_of_a_simulation(tmp_path):
    document, previous = build(tmp_path)
    _json, md_path, *_plots = bench_report.write_report(str(tmp_path), document, previous)["files"]
    assert document["simulated"] is False
    assert "simulated" not in Path(md_path).read_text().lower()


def test_changes_within_the_noise_band_are_called_within_noise(tmp_path):
    document, previous = build(tmp_path, started_at="2026-11-27T08:00:00Z")
    bench_report.write_report(str(tmp_path), document, previous)
    document, previous = build(tmp_path, scale=1.01)
    markdown = Path(bench_report.write_report(str(tmp_path), document, previous)["files"][1]).read_text()
    assert "a change within ±2% is run-to-run noise" in markdown
    assert "| bench_serving | 4 | output_throughput | 161.1 | 162.8 | +1.0% within noise |" in markdown
    assert " better |" not in markdown and " worse |" not in markdown


def test_plot_labels_cover_no_marker_and_no_other_label(tmp_path, monkeypatch):
    """Each figure label (throughput, median TTFT and TPOT) stays clear of every marker of every curve, of the
    expected bounds' bars and of the rings around misses, and of the other labels."""
    import matplotlib.figure
    import numpy

    def marker_boxes(axis):
        scale = axis.figure.dpi / 72.0
        boxes = []
        for line in axis.get_lines():
            if line.get_marker() in (None, "", "None", " "):
                continue
            half = line.get_markersize() * scale / 2
            for x, y in axis.transData.transform(numpy.column_stack(line.get_data())):
                boxes.append((x - half, y - half, x + half, y + half))
        for collection in axis.collections:
            extents = collection.get_paths()[0].get_extents()  # the marker's shape, unit size
            for index, (x, y) in enumerate(collection.get_offset_transform().transform(collection.get_offsets())):
                size = numpy.sqrt(collection.get_sizes()[index % len(collection.get_sizes())]) * scale
                boxes.append((x + extents.x0 * size, y + extents.y0 * size, x + extents.x1 * size,
                              y + extents.y1 * size))  # fmt: skip
        return boxes

    def overlap(a, b):
        return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]

    collisions = []
    savefig = matplotlib.figure.Figure.savefig

    def checking_savefig(figure, path, *args, **kwargs):
        figure.canvas.draw()
        renderer = figure.canvas.get_renderer()
        for axis in figure.axes:
            labels = [(text.get_text(), text.get_window_extent(renderer)) for text in axis.texts]
            labels = [(name, (box.x0, box.y0, box.x1, box.y1)) for name, box in labels]
            for index, (name, box) in enumerate(labels):
                collisions.extend((Path(path).name, name, "marker") for marker in marker_boxes(axis)
                                  if overlap(box, marker))  # fmt: skip
                collisions.extend((Path(path).name, name, other) for other, other_box in labels[index + 1:]
                                  if overlap(box, other_box))  # fmt: skip
        return savefig(figure, path, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", checking_savefig)
    run = serving()
    tpot = {record["max_concurrency"]: record["median_tpot_ms"] for record in run["results"]}
    ttft = {record["max_concurrency"]: record["median_ttft_ms"] for record in run["results"]}
    levels = sorted(tpot)
    # A miss (a ring around the point) and ceilings just above the points: what sits next to a label in practice.
    expected = {"bench_serving": {
        levels[1]: {"median_tpot_ms": tpot[levels[1]] * 0.9},
        levels[2]: {"median_tpot_ms": tpot[levels[2]] * 1.08, "median_ttft_ms": ttft[levels[2]] * 1.1},
        levels[0]: {"output_throughput": 1.0},
    }}  # fmt: skip
    document, previous = bench_report.build_document(
        "dcsg-lab-1", "deepseek-r1", "lmsysorg/sglang:v0.5.18", serving=run, expected=expected, tolerance_pct=0,
        report_dir=str(tmp_path))  # fmt: skip
    bench_report.write_report(str(tmp_path), document, previous)
    assert collisions == []
