"""The README's excerpts of the first command, a deploy and a benchmark are what the checkout prints: the closing
block is rendered by tests/lab/next-steps.sh with the README's values, and every line of the deploy's and the
benchmark's excerpts has the shape its task prints (tests/unit/test_deploy_summary.py and test_bench_follow.py hold
those tasks to these shapes)."""

import os
import re
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.any_python

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
CHECKOUT = "/root/datacrunch-sglang"  # where the README's user has the checkout


def excerpt(first_line):
    start = README.index("```text\n" + first_line) + len("```text\n")
    return README[start:README.index("\n```", start)]


def test_the_first_commands_closing_block_is_what_next_steps_prints():
    script = (
        f'source tests/lab/next-steps.sh; key=$(lab_api_key_file {CHECKOUT}/inventories/lab); '
        'print_next_steps 10.211.4.11 http://10.211.4.11:30000 "$key" inventories/lab 10.211.4.1'
    )
    env = {k: v for k, v in os.environ.items() if k not in ("LAB_NAME", "HUB_PORT", "LAB_WHEEL_PORT",
                                                            "LAB_NVIDIA_APT_PORT")}  # fmt: skip
    printed = subprocess.run(["bash", "-c", script], cwd=ROOT, env=dict(env, HOME="/root"), check=True,
                             capture_output=True, text=True).stdout  # fmt: skip
    assert excerpt("Deployed.") == printed.strip("\n").replace(str(ROOT), CHECKOUT)


def test_the_deploy_excerpt_ends_with_the_summary_lines():
    lines = excerpt("TASK [datacrunch.sglang.sglang_firewall").splitlines()
    summary = lines[lines.index(next(line for line in lines if line.startswith("SGLang serves on"))):]
    assert [line.split(":")[0] for line in summary[1:6]] == [
        "  endpoint", "  model", "  image", "  API key", "  smoke test"]
    assert re.fullmatch(r'  smoke test: asked "Reply with the single word: ready."; the server replied in [\d.]+ s '
                        r'\(\d+ tokens\): ".*"', summary[5])  # fmt: skip
    assert any(line.endswith("- expected in the lab: its hosts are containers without systemd") for line in lines)


def test_the_benchmark_excerpt_shows_progress_lines_and_the_closing_figures():
    lines = excerpt("TASK [datacrunch.sglang.sglang_benchmark : Follow").splitlines()
    progress = [line for line in lines if line.startswith("bench_serving [")]
    shape = r"bench_serving \[\S+\]: concurrency \d+ \(\d+ of \d+ levels\): \d+/\d+ requests finished, \d+ s"
    assert progress and all(re.fullmatch(shape + r"( \(\d+ failed\))?(: done)?", line) for line in progress)
    assert progress[-1].endswith(": done")
    closing = lines[lines.index(next(line for line in lines if line.startswith("Benchmark of "))):]
    assert "simulated (lab stand-in)" in closing[0]
    assert [line.split(":")[0] for line in closing[1:5]] == [
        "  bench_serving output tokens/s by concurrency", "  bench_one_batch median decode", "  compared with",
        "  report"]
