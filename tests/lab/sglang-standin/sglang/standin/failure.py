"""Test stand-in (not SGLang): how SGLang ends when a rank fails, and what it does with SIGTERM.

A crash exits 0 in a container. A scheduler process (one per GPU) that raises logs
`Scheduler hit an exception: <traceback>` with its rank prefix and sends SIGQUIT to the main process
(sglang/srt/managers/scheduler.py, run_scheduler_process). The main process's handler logs and calls
kill_process_tree(os.getpid()) (launch_phase_sigquit_handler in sglang/srt/entrypoints/engine.py while loading;
SignalHandler.running_phase_sigquit_handler in sglang/srt/managers/tokenizer_manager.py once serving; a failed
warm-up request calls it from _execute_server_warmup in sglang/srt/entrypoints/http_server.py). kill_process_tree
(sglang/srt/utils/common.py) SIGKILLs the children, then itself, then calls sys.exit(0). As PID 1 of a container
the self-SIGKILL is ignored (the kernel delivers no signal to a namespace's init from inside unless it has a
handler), so the container exits with code 0; outside a container the process dies by SIGKILL. The ranks still
blocked in a collective log NCCL errors of their own after the failing rank's traceback, so the root cause is not
at the end of the log. Ranks are logged with the prefix configure_logger gives them: `[time DPd TPt EPe]`
(run_scheduler_process).

SIGTERM:
- While loading (distributed init, weights, JIT, CUDA graphs) SGLang has no SIGTERM handler: the default action
  kills a plain process, and PID 1 ignores it, so `docker stop` waits its whole timeout and ends in SIGKILL.
- Once the HTTP server runs on rank 0, TokenizerManager.auto_create_handle_loop installs
  SignalHandler.sigterm_handler (sglang/srt/managers/tokenizer_manager.py): it logs, sets gracefully_exit, and
  sigterm_watchdog (same file) notices within 5 s (it polls every 5 s), logs the requests still running every 5 s
  until none are left, sends ShutdownReq, waits up to 15 s for the schedulers, then kill_process_tree(include
  parent) and sys.exit(0): exit 0 as PID 1.
- Ranks >= 1 (nnodes > 1): 0.5.18 installs no handler (ignored as PID 1); 0.5.23 logs `SIGTERM received on
  node_rank N; waiting for the rank-0 ShutdownReq broadcast ...` and keeps running (Engine._launch_subprocesses,
  sglang/srt/entrypoints/engine.py).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

from sglang.standin.logs import log

# sigterm_watchdog's poll interval (tokenizer_manager.py: `await asyncio.sleep(5)`)
DRAIN_POLL_SECONDS = 5.0

# What a sibling rank blocked in a collective prints when the failing rank goes away: torch's NCCL watchdog.
_SIBLING_TRACE = (
    "Traceback (most recent call last):",
    '  File "/sgl-workspace/sglang/python/sglang/srt/managers/scheduler.py", line 3107, in event_loop_overlap',
    "    batch = self.get_next_batch_to_run()",
    '  File "/sgl-workspace/sglang/python/sglang/srt/distributed/parallel_state.py", line 584, in all_reduce',
    "    torch.distributed.all_reduce(input_, group=self.device_group)",
    '  File "/usr/local/lib/python3.12/dist-packages/torch/distributed/distributed_c10d.py", line 2806, in all_reduce',
    "    work.wait()",
    "torch.distributed.DistBackendError: [PG ID 2 PG GUID 3 Rank {rank}] NCCL communicator was aborted on rank "
    "{rank}: remote process exited or there was a network error. NCCL error: remote process exited",
)


def _stamp() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


def rank_prefix(args, tp_rank: int) -> str:
    """The prefix run_scheduler_process gives a scheduler's log lines (scheduler.py, configure_logger call)."""
    prefix = ""
    dp = getattr(args, "dp_size", 1) or 1
    if dp > 1 or getattr(args, "enable_dp_attention", False):
        per_dp = max(args.tp_size // dp, 1)
        prefix += f" DP{tp_rank // per_dp}"
    if getattr(args, "pp_size", 1) > 1:
        prefix += " PP0"
    if args.tp_size > 1:
        prefix += f" TP{tp_rank}"
    if (getattr(args, "ep_size", 1) or 1) > 1:
        prefix += f" EP{tp_rank}"
    return prefix


def local_tp_ranks(args) -> list[int]:
    per_node = max(args.tp_size // max(args.nnodes, 1), 1)
    first = args.node_rank * per_node
    return list(range(first, first + per_node))


def _rank_log(prefix: str, text: str) -> None:
    for index, line in enumerate(text.splitlines()):
        # logging prints a multi-line message once: the prefix on its first line only
        sys.stderr.write(f"[{_stamp()}{prefix}] {line}\n" if index == 0 else line + "\n")
    sys.stderr.flush()


def kill_process_tree_self() -> None:
    """kill_process_tree(os.getpid()) (sglang/srt/utils/common.py): SIGKILL itself, then sys.exit(0)."""
    log(f"kill_process_tree called: parent_pid={os.getpid()}, include_parent=True, pid={os.getpid()}")
    sys.stderr.flush()
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)  # ignored by PID 1 of a container
    time.sleep(0.2)
    os._exit(0)


def scheduler_crash(args, exception: str, message: str, where: str, serving: bool, failing: int = 0) -> None:
    """A scheduler raised (the failing-th of this node's ranks): its traceback, the others' NCCL errors, SIGQUIT to
    the main process, exit 0."""
    ranks = local_tp_ranks(args)
    failing = ranks[min(failing, len(ranks) - 1)]
    _rank_log(
        rank_prefix(args, failing),
        "Scheduler hit an exception: Traceback (most recent call last):\n"
        f'  File "/sgl-workspace/sglang/python/sglang/srt/managers/scheduler.py", line 5058, in run_scheduler_process\n'
        "    scheduler.run_event_loop()\n"
        f'  File "/sgl-workspace/sglang/python/{where}", line 1, in <module>\n'
        f"{exception}: {message}\n",
    )
    for rank in [rank for rank in ranks if rank != failing]:
        _rank_log(rank_prefix(args, rank),
                  "Scheduler hit an exception: " + "\n".join(_SIBLING_TRACE).format(rank=rank) + "\n")
    if serving:
        log("SIGQUIT received. signum=<Signals.SIGQUIT: 3>, frame=None. It usually means one child failed.")
    else:
        log("Received sigquit from a child process. It usually means the child failed.")
    kill_process_tree_self()


def group_failure(args, error, serving: bool) -> None:
    """A rank's step between the nodes failed (sglang/standin/collective.py): Gloo or NCCL raised in a scheduler,
    or the scheduler watchdog (sglang/srt/utils/watchdog.py WatchdogRaw) logged and sent SIGQUIT to the parent."""
    if error.kind == "watchdog":
        ranks = local_tp_ranks(args)
        for rank in ranks:
            _rank_log(rank_prefix(args, rank), str(error))
        log("SIGQUIT received. signum=<Signals.SIGQUIT: 3>, frame=None. It usually means one child failed.")
        kill_process_tree_self()
    exception = "torch.distributed.DistBackendError" if error.kind == "nccl-timeout" else "RuntimeError"
    where = ("torch/distributed/distributed_c10d.py" if error.kind == "nccl-timeout"
             else "sglang/srt/utils/common.py")
    scheduler_crash(args, exception, str(error), where, serving=serving)


def warmup_failure(message: str) -> None:
    """_execute_server_warmup (sglang/srt/entrypoints/http_server.py): log, then kill_process_tree, exit 0."""
    log("Initialization failed. warmup error: Traceback (most recent call last):\n"
        '  File "/sgl-workspace/sglang/python/sglang/srt/entrypoints/http_server.py", line 2199, in '
        "_execute_server_warmup\n"
        "    assert res.status_code == 200, f\"{res=}, {res.text=}\"\n"
        f"AssertionError: {message}")
    kill_process_tree_self()


class Shutdown:
    """SIGTERM as SGLang handles it once rank 0 serves: drain, then exit (see the module's docstring)."""

    def __init__(self, state, poll: float = DRAIN_POLL_SECONDS):
        self.state = state
        self.poll = poll
        self.requested = threading.Event()

    def install(self) -> None:
        def sigterm_handler(signum, frame):
            log(f"SIGTERM received. signum={signum!r} frame={frame!r}. Draining requests and shutting down...")
            self.requested.set()
            self.state.shutting_down.set()

        signal.signal(signal.SIGTERM, sigterm_handler)
        threading.Thread(target=self._watchdog, daemon=True).start()

    def _watchdog(self) -> None:
        while not self.requested.is_set():
            time.sleep(self.poll)
        while True:
            with self.state.lock:
                remaining = self.state.running + self.state.queued
            log(f"Gracefully exiting... Remaining number of requests {remaining}. Remaining requests "
                f"remaining_rids={list(range(remaining))}.")
            if remaining > 0:
                time.sleep(self.poll)
            else:
                break
        kill_process_tree_self()


def rank_n_sigterm(version: str, node_rank: int) -> None:
    """Ranks >= 1: 0.5.18 keeps the default action (ignored as PID 1); 0.5.23 logs and waits for rank 0."""
    if version == "0.5.18":
        return

    def sigterm_handler(signum, frame):
        log(f"SIGTERM received on node_rank {node_rank}; waiting for the rank-0 ShutdownReq broadcast to stop the "
            "schedulers.")

    signal.signal(signal.SIGTERM, sigterm_handler)
