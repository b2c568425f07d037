"""Test stand-in (not SGLang): the traffic between the nodes of a multi-node unit after the rendezvous, and how a
lost node shows.

Which ports real SGLang 0.5.18 / 0.5.23 uses between nodes for TP over nnodes > 1 (read from their source):

- the --dist-init-addr port P: torch's TCPStore on rank 0, which every rank connects to
  (sglang/srt/distributed/bootstrap.py `_resolve_dist_init_method`: `tcp://HOST:P`; 0.5.18:
  model_runner.py init_torch_distributed);
- ports the kernel picks from its ephemeral range (net.ipv4.ip_local_port_range) on every node: NCCL's bootstrap
  and socket transport, Gloo's pairs (the CPU group of every GroupCoordinator, parallel_state.py), and the TP
  group's MessageQueue publisher on the writer's node (shm_broadcast.py MessageQueue.__init__: get_open_port(),
  which binds port 0, then bind_to_random_port in a 32-port window from it);
- with DP attention only: P+1 .. P+6 (PortArgs.init_new in server_args.py: port_base = P + 1, then detokenizer,
  rpc, metrics, scheduler input, load collector), P+13 (DP_ATTENTION_HANDSHAKE_PORT_DELTA, the worker-port
  handshake in data_parallel_controller.py) and the DP workers' sockets from ZeroMQ's bind_to_random_port
  (49152-65535 by pyzmq's default).
  The nccl_port of PortArgs is not used between nodes when --dist-init-addr is set.

The stand-in plays the first two for a unit without DP attention, both ways: each node listens on a port from the
kernel's ephemeral range and the other connects to it (rank 0 -> rank r as NCCL's bootstrap ring does, rank r ->
rank 0 as a Gloo pair). A firewall that drops those connections stops the unit at its start, as it stops SGLang.

After the start the unit's ranks exchange one message per scheduler step: rank 0's scheduler broadcasts the
requests it received to every TP rank on every loop iteration (recv_requests in
sglang/srt/managers/scheduler_components/request_receiver.py: broadcast_pyobj over the TP group's Gloo CPU group;
0.5.18: scheduler.py recv_requests), and each forward pass runs NCCL collectives. SGLang has no heartbeat between
nodes: a node that stops answering (host down, network cut) shows only as a step that never finishes. Then:

- rank 0's requests stop making progress; /health keeps answering 200; /health_generate answers 503 after
  SGLANG_HEALTH_CHECK_TIMEOUT (20 s: no output from the scheduler, http_server.py health_generate); a rank >= 1
  keeps answering 200 on both (its dummy health server answers 200 whatever the schedulers do:
  launch_dummy_health_check_server in sglang/srt/utils/common.py);
- with a batch in flight: the scheduler watchdog (--watchdog-timeout, 300 s; sglang/srt/utils/watchdog.py
  WatchdogRaw: no forward progress while a batch runs, then SIGQUIT to the parent 5 s later) or torch's NCCL
  watchdog (the groups' timeout is --dist-timeout: parallel_state.py _MODEL_PARALLEL_GROUP_TIMEOUT), whichever
  comes first, ends the rank as a crash (exit 0 as PID 1);
- idle (no batch): only the Gloo broadcast waits, with the CPU group's timeout: 7200 s (GroupCoordinator's
  gloo_timeout default in parallel_state.py), so an idle unit stays hung for two hours.

A peer whose process ended while its host stays up closes its connections: Gloo's TCP transport fails the next
operation with "Connection closed by peer" and the rank crashes at once. That comes from Gloo (a part of torch, not
of SGLang's source) and is not verified on GPUs here: treat it as the stand-in's best reading, not a measurement.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

# GroupCoordinator's gloo_timeout (sglang/srt/distributed/parallel_state.py, 0.5.18 and 0.5.23): 120 minutes
GLOO_TIMEOUT_SECONDS = 7200.0
# Seconds between the stand-in's idle scheduler steps (SGLang loops without pause; this keeps the CPU free)
IDLE_STEP_SECONDS = 0.2
# WatchdogRaw sleeps 5 s after its log line before it sends SIGQUIT to the parent
WATCHDOG_GRACE_SECONDS = 5.0

IDLE, FORWARD = b"i", b"f"


class GroupError(Exception):
    """A step failed; kind is 'closed', 'gloo-timeout', 'nccl-timeout' or 'watchdog'."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def stuck_timeout(dist_timeout: float, watchdog_timeout: float | None) -> tuple[float, str]:
    """How long a step with a batch in flight may wait, and what ends it."""
    watchdog = (watchdog_timeout or 300.0) + WATCHDOG_GRACE_SECONDS
    if watchdog < dist_timeout:
        return watchdog, "watchdog"
    return dist_timeout, "nccl-timeout"


def error_for(kind: str, peer: str, waited: float, dist_timeout: float, watchdog_timeout: float | None) -> GroupError:
    if kind == "closed":
        return GroupError(kind, f"[gloo/transport/tcp/pair.cc:598] Connection closed by peer [{peer}]")
    if kind == "gloo-timeout":
        return GroupError(kind, f"[gloo/transport/tcp/pair.cc:534] Timed out waiting {int(waited * 1000)}ms for "
                                f"recv operation to complete (peer {peer})")
    if kind == "watchdog":
        return GroupError(kind, f"Scheduler watchdog timeout (self.watchdog_timeout={watchdog_timeout or 300.0}, "
                                "self.soft=False)")
    return GroupError(kind, "Watchdog caught collective operation timeout: WorkNCCL(SeqNum=1024, OpType=ALLREDUCE, "
                            f"NumelIn=7168, NumelOut=7168, Timeout(ms)={int(dist_timeout * 1000)}) ran for "
                            f"{int(waited * 1000) + 5} milliseconds before timing out.")


def _recv_byte(conn: socket.socket, timeout: float) -> bytes:
    """One byte, or b'' when the peer closed; TimeoutError after timeout."""
    conn.settimeout(timeout)
    return conn.recv(1)


class Rank0Group:
    """Rank 0's side: one step (a message to every rank, an answer from every rank) per scheduler iteration."""

    def __init__(self, links: dict, dist_timeout: float, watchdog_timeout: float | None,
                 on_error: Callable[[GroupError], None]):
        self.links = links  # {rank: (to_rank, from_rank, peer address)}
        self.dist_timeout = dist_timeout
        self.watchdog_timeout = watchdog_timeout
        self.on_error = on_error
        self.lock = threading.Lock()
        self.progress = threading.Condition()
        self.last_step = time.monotonic()
        self.last_any_step = self.last_step

    def start(self) -> None:
        threading.Thread(target=self._idle_loop, daemon=True).start()

    def _idle_loop(self) -> None:
        while True:
            if time.monotonic() - self.last_any_step >= IDLE_STEP_SECONDS:
                self.step(forward=False)
            time.sleep(IDLE_STEP_SECONDS / 2)

    def step(self, forward: bool) -> None:
        """One broadcast and its answers; blocks while a peer does not answer; on failure reports it and blocks for
        good (the process ends from the main thread, as a crash)."""
        with self.lock:
            self.last_any_step = time.monotonic()
            if forward:
                timeout, kind = stuck_timeout(self.dist_timeout, self.watchdog_timeout)
            else:
                timeout, kind = GLOO_TIMEOUT_SECONDS, "gloo-timeout"
            for _rank, (to_rank, from_rank, peer) in sorted(self.links.items()):
                started = time.monotonic()
                try:
                    to_rank.sendall(FORWARD if forward else IDLE)
                    answer = _recv_byte(from_rank, timeout)
                except TimeoutError:
                    self._fail(error_for(kind, peer, time.monotonic() - started, self.dist_timeout,
                                         self.watchdog_timeout))
                except OSError:
                    answer = b""
                if not answer:
                    self._fail(error_for("closed", peer, 0, self.dist_timeout, self.watchdog_timeout))
            with self.progress:
                self.last_step = time.monotonic()
                self.progress.notify_all()

    def _fail(self, error: GroupError) -> None:
        self.on_error(error)
        threading.Event().wait()  # the step never returns; the lock stays held, as a rank stuck in a collective

    def progressed_since(self, tic: float, timeout: float) -> bool:
        """Whether a step finished after tic, waiting up to timeout (health_generate's test: any output since)."""
        with self.progress:
            return self.progress.wait_for(lambda: self.last_step > tic, timeout)


def serve_rank_n(from_rank0: socket.socket, to_rank0: socket.socket, peer: str, dist_timeout: float,
                 watchdog_timeout: float | None, on_error: Callable[[GroupError], None]) -> None:
    """A rank >= 1: answer every step of rank 0. While a batch is in flight (the last step was a forward) it waits as
    the watchdogs allow, otherwise with Gloo's timeout."""

    def loop():
        forward = False
        while True:
            if forward:
                timeout, kind = stuck_timeout(dist_timeout, watchdog_timeout)
            else:
                timeout, kind = GLOO_TIMEOUT_SECONDS, "gloo-timeout"
            started = time.monotonic()
            try:
                message = _recv_byte(from_rank0, timeout)
                if message:
                    to_rank0.sendall(message)
            except TimeoutError:
                on_error(error_for(kind, peer, time.monotonic() - started, dist_timeout, watchdog_timeout))
                return
            except OSError:
                message = b""
            if not message:
                on_error(error_for("closed", peer, 0, dist_timeout, watchdog_timeout))
                return
            forward = message == FORWARD

    threading.Thread(target=loop, daemon=True).start()
