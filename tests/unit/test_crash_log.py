"""A crash as SGLang 0.5.18/0.5.23 logs it: every rank's first error is found, not only the last lines."""

from ansible_collections.datacrunch.sglang.plugins.module_utils.launch.crash_log import (
    crashed,
    describe_exit,
    excerpt,
    root_cause,
)


def _sibling(rank):
    # What a rank blocked in a collective logs when another rank died (torch's NCCL watchdog), 9 lines.
    return [
        f"[2026-12-03 10:40:02 DP{rank} TP{rank} EP{rank}] Scheduler hit an exception: Traceback (most recent call "
        "last):",
        '  File "/sgl-workspace/sglang/python/sglang/srt/managers/scheduler.py", line 3107, in event_loop_overlap',
        "    batch = self.get_next_batch_to_run()",
        '  File "/sgl-workspace/sglang/python/sglang/srt/distributed/parallel_state.py", line 584, in all_reduce',
        "    torch.distributed.all_reduce(input_, group=self.device_group)",
        '  File "/usr/local/lib/python3.12/dist-packages/torch/distributed/distributed_c10d.py", line 2806, in all_'
        "reduce",
        "    work.wait()",
        f"torch.distributed.DistBackendError: [PG ID 2 PG GUID 3 Rank {rank}] NCCL communicator was aborted on rank "
        f"{rank}: remote process exited",
    ]


EIGHT_RANK_CRASH = "\n".join([
    "[2026-12-03 10:40:00 DP0 TP0 EP0] Decode batch, #running-req: 12, #token: 3712, token usage: 0.01, gen "
    "throughput (token/s): 611.20, #queue-req: 0, ",
    "[2026-12-03 10:40:01 DP3 TP3 EP3] Scheduler hit an exception: Traceback (most recent call last):",
    '  File "/sgl-workspace/sglang/python/sglang/srt/managers/scheduler.py", line 5058, in run_scheduler_process',
    "    scheduler.run_event_loop()",
    '  File "/sgl-workspace/sglang/python/sglang/srt/layers/moe/ep_moe/layer.py", line 412, in forward',
    "    hidden_states = self.dispatcher.dispatch(hidden_states, topk_output)",
    "RuntimeError: CUDA error: an illegal memory access was encountered",
    *[line for rank in (0, 1, 2, 4, 5, 6, 7) for line in _sibling(rank)],
    "[2026-12-03 10:40:03] SIGQUIT received. signum=<Signals.SIGQUIT: 3>, frame=None. It usually means one child "
    "failed.",
    "[2026-12-03 10:40:03] kill_process_tree called: parent_pid=1, include_parent=True, pid=1",
]) + "\n"


def test_the_root_cause_of_an_eight_rank_crash_is_outside_the_last_40_lines_but_in_the_excerpt():
    last_40 = "\n".join(EIGHT_RANK_CRASH.splitlines()[-40:])
    assert "illegal memory access" not in last_40
    shown = excerpt(EIGHT_RANK_CRASH, tail=40)
    assert "RuntimeError: CUDA error: an illegal memory access was encountered" in shown
    assert shown.splitlines()[0] == "-- first error of rank DP3 TP3 EP3:"
    # every rank is named with its own first error, the main process too
    for rank in range(8):
        assert f"rank DP{rank} TP{rank} EP{rank}:" in shown
    assert "-- first error of the main process:" in shown
    assert root_cause(EIGHT_RANK_CRASH) == "RuntimeError: CUDA error: an illegal memory access was encountered"


def test_exit_code_0_after_a_crash_reads_as_a_crash():
    assert crashed(EIGHT_RANK_CRASH)
    said = describe_exit(0, False, EIGHT_RANK_CRASH)
    assert said.startswith("crashed (exit code 0")
    assert said.endswith(": RuntimeError: CUDA error: an illegal memory access was encountered")
    assert describe_exit(137, True, "").startswith("killed by the kernel for lack of memory")
    # restarted by Docker: the crashed run's code is gone, and 0 (the new run's) must not be claimed
    assert "exit code 0" not in describe_exit(None, False, EIGHT_RANK_CRASH)
    assert describe_exit(None, False, EIGHT_RANK_CRASH).startswith("crashed (restarted")


def test_a_bare_python_traceback_before_logging_is_found():
    text = "\n".join([
        "[2026-12-03 10:00:00] server_args=ServerArgs(model_path='x')",
        "Traceback (most recent call last):",
        '  File "/usr/local/lib/python3.12/dist-packages/transformers/utils/hub.py", line 479, in cached_files',
        "OSError: We couldn't connect to 'https://huggingface.co' to load the files",
    ])
    assert root_cause(text) == "OSError: We couldn't connect to 'https://huggingface.co' to load the files"
    assert not excerpt("[2026-12-03 10:00:00] all well\n").startswith("--")
