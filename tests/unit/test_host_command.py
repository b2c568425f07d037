"""module_utils/common/host_command.py: a read-only host command with a timeout that never raises, run for real."""

import sys
import time

from ansible_collections.datacrunch.sglang.plugins.module_utils.common import host_command


def test_a_command_runs_with_its_output_and_exit_code():
    completed, error = host_command.run(
        [sys.executable, "-c", "import sys; print('GPU 0: H200'); print('warn', file=sys.stderr); sys.exit(3)"], 30)
    assert error is None
    assert completed.returncode == 3
    assert completed.stdout == "GPU 0: H200\n" and completed.stderr == "warn\n"


def test_a_missing_command_is_a_reason_not_an_exception(tmp_path):
    completed, error = host_command.run([str(tmp_path / "nvidia-smi"), "-L"], 30)
    assert completed is None
    assert "No such file or directory" in error and "nvidia-smi" in error


def test_a_hung_command_is_stopped_at_its_timeout():
    started = time.monotonic()
    completed, error = host_command.run([sys.executable, "-c", "import time; time.sleep(30)"], 0.5)
    assert completed is None and error == "timed out after 0.5 s"
    assert time.monotonic() - started < 10
