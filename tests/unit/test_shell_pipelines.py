"""No script under `set -o pipefail` pipes into a reader that stops early (`head`, `grep -q`, `grep -m`).

Such a reader exits at its first line; the writer's next write then fails (SIGPIPE, or Python's BrokenPipeError) and,
with pipefail, so does the pipeline, on a race the writer usually wins on one machine and loses on another. Seen for
real: `ansible --version | head -n 1` failed the compat stage of a CI run. The scripts capture the writer's output
first (`$(...)`) and match that instead; a pipeline whose status is ignored (`|| true`) may still use them.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.any_python

ROOT = Path(__file__).resolve().parents[2]
EARLY_READER = re.compile(r"(?<!\|)\|\s*(head\b|grep\s+(-\w*[qm]\w*\b|--quiet|--max-count))")


def pipefail_scripts() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    paths = [ROOT / name for name in listed.decode().split("\0") if name]
    return [p for p in paths if p.is_file() and p.suffix in ("", ".sh") and "pipefail" in p.read_text(errors="ignore")]


def commands(text: str) -> list[tuple[int, str]]:
    """Logical commands: a line ending in `|`, `||`, `&&` or `\\` goes on with the next one."""
    joined, start, current = [], 0, ""
    for number, line in enumerate(text.splitlines(), 1):
        if not current:
            start = number
        stripped = line.split(" #", 1)[0].rstrip()
        current += " " + stripped.rstrip("\\")
        if stripped.endswith(("|", "&&", "\\")):
            continue
        joined.append((start, current.strip()))
        current = ""
    return joined


def early_reader_pipelines(text: str) -> list[tuple[int, str]]:
    return [
        (number, command)
        for number, command in commands(text)
        if EARLY_READER.search(command) and not re.search(r"\|\|\s*true\b", command)
    ]


def test_the_hazard_is_real_a_pipeline_into_head_fails_under_pipefail():
    run = subprocess.run(["bash", "-c", "set -o pipefail; seq 1 500000 | head -n 1 >/dev/null"], check=False)
    assert run.returncode != 0


def test_the_check_finds_the_pipelines_it_is_meant_to_find():
    found = early_reader_pipelines(
        "v=$(ansible --version | head -n 1)\n"
        "ansible-doc x 2>&1 |\n    grep -q y || broken+=(x)\n"
        "curl -fsS url | grep -qxF a || die\n"
        "grep -n x f | head -n 80 >&2 || true\n"
        "[[ $(curl url || true) == *.whl* ]] || die\n"
        "a || grep -q x f\n"
    )
    assert [number for number, _command in found] == [1, 2, 4]


@pytest.mark.parametrize("script", pipefail_scripts(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_pipefail_script_pipes_into_an_early_reader(script):
    found = early_reader_pipelines(script.read_text())
    assert not found, "\n".join(
        f"{script.relative_to(ROOT)}:{number}: {command}\n  capture the output first and match it: "
        'grep -q PATTERN <<<"$(command || true)"'
        for number, command in found
    )
