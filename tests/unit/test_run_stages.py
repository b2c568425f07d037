"""tests/run.sh, the test suite's runner, fails the run when any command of a stage fails, not only its last one.

A copy of the runner in a temporary tree, its stage functions replaced by stand-ins of two commands each (the first
fails when FAIL names the stage, the second always succeeds), and tests/setup.sh by a script that does nothing: what is
checked is the runner's own logic (foreground, side-by-side and background stages, molecule's lanes), not the stages.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.any_python

ROOT = Path(__file__).resolve().parents[2]
STAGES = ("lint", "sanity", "unit", "compat", "build", "integration")
SCENARIOS = ("default", "preflight", "prefetch", "multinode", "benchmark", "redeploy", "security")


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    tree = tmp_path_factory.mktemp("runner")
    text = (ROOT / "tests/run.sh").read_text()
    for name in STAGES:
        stand_in = (
            f'stage_{name}() {{\n    echo "start {name}" >>"$REPO_ROOT/events"\n    [[ ${{FAIL:-}} != {name} ]]\n'
            f'    echo "end {name}" >>"$REPO_ROOT/events"\n}}\n'
        )
        text, count = re.subn(r"stage_%s\(\) \{\n.*?\n\}\n" % name, lambda _m, s=stand_in: s, text, flags=re.S)
        assert count == 1, f"tests/run.sh no longer defines stage_{name} as this test expects"
    molecule = '{ echo "molecule $scenario" >>"$REPO_ROOT/events"; [[ ${FAIL:-} != "$scenario" ]]; }'
    text, count = re.subn(r'molecule test -s "\$scenario"', molecule, text)
    assert count == 1, "tests/run.sh no longer runs `molecule test -s \"$scenario\"` as this test expects"
    (tree / "tests").mkdir()
    (tree / "tests/run.sh").write_text(text)
    setup = tree / "tests/setup.sh"
    setup.write_text('#!/usr/bin/env bash\necho "setup $*" >>"$(dirname "$0")/../events"\n')
    setup.chmod(0o755)
    for scenario in SCENARIOS:
        (tree / "extensions/molecule" / scenario).mkdir(parents=True)
        (tree / "extensions/molecule" / scenario / "molecule.yml").write_text("---\n")
    return tree


def run(tree: Path, *args: str, fail: str = "", env: dict[str, str] | None = None) -> tuple[int, str, list[str]]:
    events = tree / "events"
    events.unlink(missing_ok=True)
    env = {**os.environ, "FAIL": fail, **(env or {})}
    result = subprocess.run(["bash", "tests/run.sh", *args], cwd=tree, env=env, capture_output=True, text=True,
                            timeout=120, check=False)
    return result.returncode, result.stderr, events.read_text().splitlines() if events.exists() else []


def test_every_stage_passes_and_the_summary_lists_each_scenario(runner):
    rc, err, events = run(runner)
    assert rc == 0, err
    assert "run: all stages passed" in err
    for scenario in SCENARIOS:
        assert f"    molecule {scenario}: " in err
    assert {f"end {name}" for name in STAGES} <= set(events)
    # Molecule waits for the stages in the background, and integration for the images.
    first_scenario = min(events.index(f"molecule {scenario}") for scenario in SCENARIOS)
    assert max(events.index("end lint"), events.index("end sanity"), events.index("end integration")) < first_scenario
    assert events.index("setup images") < events.index("start integration")


@pytest.mark.parametrize("stage", STAGES)
def test_a_failing_command_that_is_not_a_stages_last_fails_the_run(runner, stage):
    rc, err, events = run(runner, fail=stage)
    assert rc == 1, err
    assert f"{stage}: " in err and "(failed)" in err
    assert f"end {stage}" not in events, "the stage went on after its failing command"
    assert not any(line.startswith("molecule ") for line in events), "molecule ran after a failed stage"


def test_a_failing_scenario_fails_the_run_and_is_named(runner):
    rc, err, _events = run(runner, fail="prefetch")
    assert rc == 1, err
    assert re.search(r"\n    molecule prefetch: \d+ s \(failed\)\n", err), err


@pytest.mark.parametrize("stage", ["compat", "lint"])
def test_a_stage_asked_for_alone_fails_on_its_first_failing_command(runner, stage):
    rc, err, events = run(runner, "--no-setup", stage, fail=stage)
    assert rc == 1, err
    assert f"end {stage}" not in events


def test_one_lane_runs_every_scenario_in_turn(runner):
    rc, err, events = run(runner, "--no-setup", "molecule", env={"MOLECULE_LANES": "1"})
    assert rc == 0, err
    assert [line.split()[1] for line in events if line.startswith("molecule ")] == [
        "multinode", "prefetch", "default", "benchmark", "preflight", "redeploy", "security"]


def test_three_lanes_start_together(runner):
    rc, err, events = run(runner, "--no-setup", "molecule")
    assert rc == 0, err
    ran = [line.split()[1] for line in events if line.startswith("molecule ")]
    assert sorted(ran) == sorted(SCENARIOS)
    # Each lane's scenarios in their order; the stand-in scenarios take no time, so only the order within a lane holds.
    for lane in (["multinode", "prefetch"], ["default", "benchmark", "preflight"], ["redeploy", "security"]):
        assert [name for name in ran if name in lane] == lane


def test_a_lane_count_it_cannot_run_is_named(runner):
    rc, err, events = run(runner, "--no-setup", "molecule", env={"MOLECULE_LANES": "2"})
    assert rc == 1
    assert "MOLECULE_LANES=2" in err and "3 lanes" in err
    assert not any(line.startswith("molecule ") for line in events)
