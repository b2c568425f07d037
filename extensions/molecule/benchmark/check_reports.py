"""Checks on the controller after the two benchmark runs of this scenario: the report files, their verdicts,
the comparison of the second run with the first, readable PNG plots, and no API key anywhere.

Usage: check_reports.py REPORT_DIR API_KEY_FILE RUN_LOG...
"""

import json
import re
import struct
import sys
from pathlib import Path


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name} is not a PNG"
    assert len(data) > 20_000, f"{path.name} is only {len(data)} bytes: an empty plot?"
    return struct.unpack(">II", data[16:24])


def verdicts(document):
    return {(row["program"], row["concurrency"], row["field"]): row["verdict"] for row in document["verdicts"]}


def main(report_dir, key_file, *logs):
    report_dir = Path(report_dir)
    reports = sorted(report_dir.glob("*.json"))
    assert len(reports) == 2, f"expected the reports of 2 runs in {report_dir}, found {[p.name for p in reports]}"
    first, second = (json.loads(path.read_text()) for path in reports)
    for path, document in zip(reports, (first, second), strict=True):
        base = path.parent / path.name.removesuffix(".json")  # names hold dots (v0.5.18): no with_suffix
        assert base.name.endswith("-lab-tiny-v0.5.18"), base.name  # <date>-<host>-<profile>-<image tag>
        assert base.name.split("-", 1)[1].startswith(document["host"]), base.name
        markdown = Path(f"{base}.md").read_text()
        assert "stand-in" in markdown, "the report must say that the lab's server is a stand-in"
        sizes = {kind: png_size(Path(f"{base}-{kind}.png")) for kind in ("throughput", "latency")}
        assert sizes == {"throughput": (960, 720), "latency": (1320, 720)}, sizes
        levels = document["bench_serving"]["results"]
        assert [level["max_concurrency"] for level in levels] == [1, 4, 8]
        assert all(level["completed"] == level["num_prompts"] and level["failed"] == 0 for level in levels), levels
        one_batch = document["bench_one_batch"]
        assert one_batch["server"]["stopped"] and one_batch["server"]["restarted"], one_batch["server"]
        assert (one_batch["result"]["batch_size"], one_batch["result"]["input_len"]) == (1, 128)

    decode = "bench_one_batch", None, "median_decode_throughput"
    tpot = "bench_serving", 4, "median_tpot_ms"
    assert verdicts(first) == {decode: "pass", tpot: "pass"}, verdicts(first)
    assert verdicts(second) == {decode: "miss", tpot: "miss"}, verdicts(second)
    assert abs(first["bench_one_batch"]["result"]["median_decode_throughput"] - 50) < 1
    assert abs(second["bench_one_batch"]["result"]["median_decode_throughput"] - 30) < 1
    assert second["previous"]["file"] == reports[0].name, second["previous"]
    worse = {(row["program"], row["concurrency"], row["field"]): row["better"] for row in second["comparison"]}
    assert worse[decode] is False and worse[tpot] is False, worse
    first_md, second_md = (Path(str(path).removesuffix(".json") + ".md").read_text() for path in reports)
    assert "| bench_one_batch | - | median_decode_throughput | 30." in second_md and "**MISS**" in second_md
    assert "**MISS**" not in first_md

    # bench_serving's progress, shown while it runs: a line as each level starts, and the end (the requests finished
    # inside a level show on real runs; here a level takes about a second: tests/integration/test_bench_progress.py).
    progress = [tuple(map(int, match)) for match in re.findall(
        r"bench_serving \[\S+\]: concurrency (\d+) \((\d+) of 3 levels\): (\d+)/(\d+) requests finished",
        Path(logs[0]).read_text())]  # fmt: skip
    assert {(level, index) for level, index, _done, _total in progress} == {(1, 1), (4, 2), (8, 3)}, progress
    assert (8, 3, 32, 32) in progress, progress
    assert re.search(r"\(3 of 3 levels\): 32/32 requests finished, \d+ s: done", Path(logs[0]).read_text())

    key = Path(key_file).read_text().strip()
    assert len(key) >= 16, "the scenario's API key file holds no key"
    for path in [*report_dir.iterdir(), *map(Path, logs)]:
        assert key.encode() not in path.read_bytes(), f"the API key appears in {path}"
    print(f"reports ok: {reports[0].name} (pass), {reports[1].name} (miss, compared with the first)")


if __name__ == "__main__":
    main(*sys.argv[1:])
