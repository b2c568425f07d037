"""bench_serving's progress read from a real container on this machine's Docker engine: its tqdm bar is redrawn with
carriage returns, which Docker's logs hold only once the line ends, so sglang_bench reads it from the container's
attached stream while the run goes on."""

import subprocess

import pytest

from ansible_collections.datacrunch.sglang.plugins.module_utils.bench import runner as bench_runner

IMAGE = "datacrunch-sglang-lab/debian:bookworm"  # the lab's base image (tests/lab/lab.sh build): python3
# bench_serving's bar as tqdm draws it without a terminal: one step per finished request, 0.4 s apart.
BAR = (
    "import sys, time\n"
    "print('#Input tokens: 512', flush=True)\n"
    "for done in range(9):\n"
    "    sys.stderr.write('\\r%3d%%|          | %d/8 [00:0%d<00:03,  2.50it/s]' % (done * 100 // 8, done, done // 2))\n"
    "    sys.stderr.flush()\n"
    "    time.sleep(0.4)\n"
    "sys.stderr.write('\\n')\n"
)

pytestmark = pytest.mark.skipif(
    subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True, check=False).returncode != 0,
    reason=f"needs a Docker engine with {IMAGE} (tests/lab/lab.sh build)",
)


def test_the_requests_finished_show_while_the_run_goes_on(tmp_path, monkeypatch):
    monkeypatch.setattr(bench_runner, "PROGRESS_POLL_SECONDS", 0.5)
    runner = bench_runner.BenchRunner({"name": "progress-test", "image": IMAGE, "mounts": [], "env": {}}, timeout=60)
    seen = []
    exit_code, logs = runner.run("serving-c8", ["python3", "-c", BAR], str(tmp_path),
                                 on_output=lambda text: seen.append(bench_runner.requests_done(text)))  # fmt: skip
    assert exit_code == 0, logs
    finished = [done for done, _total in filter(None, seen)]
    assert any(0 < done < 8 for done in finished), seen  # during the run, not only at its end
    assert finished == sorted(finished)
    assert "#Input tokens: 512" in logs
