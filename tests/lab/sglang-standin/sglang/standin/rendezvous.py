"""Test stand-in (not SGLang): the multi-node rendezvous at --dist-init-addr, in the spirit of torch's TCPStore.

Rank 0 listens on the port of --dist-init-addr; ranks >= 1 connect to HOST:PORT, retrying until --dist-timeout,
and send one JSON line {rank, nnodes, tp, model, version}. Rank 0 checks that nnodes, tp, model and version agree
and that ranks are unique and in range; a mismatch ends both sides with exit status 1 and a log line naming it.
Once all ranks joined, each side sends a heartbeat line every second and takes five seconds without one, or a
closed connection, as the peer gone: rank 0 turns unready, a rank >= 1 exits non-zero.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable

HEARTBEAT_SECONDS = 1.0
PEER_TIMEOUT_SECONDS = 5.0


class RendezvousError(Exception):
    pass


def split_addr(addr: str) -> tuple[str, int]:
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        raise RendezvousError(f"--dist-init-addr {addr!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def _send(conn: socket.socket, payload: dict) -> None:
    conn.sendall((json.dumps(payload) + "\n").encode())


def _lines(conn: socket.socket):
    buffer = b""
    while True:
        chunk = conn.recv(4096)
        if not chunk:
            return
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            yield json.loads(line)


def _heartbeat(conn: socket.socket, on_lost: Callable[[str], None], what: str) -> None:
    """Send heartbeats and read the peer's; call on_lost once when the peer goes."""
    conn.settimeout(PEER_TIMEOUT_SECONDS)
    stop = threading.Event()

    def beat():
        while not stop.is_set():
            try:
                _send(conn, {"heartbeat": time.time()})
            except OSError:
                return
            stop.wait(HEARTBEAT_SECONDS)

    threading.Thread(target=beat, daemon=True).start()
    reason = f"{what} closed the connection"
    try:
        for _heartbeat in _lines(conn):
            pass
    except TimeoutError:
        reason = f"no heartbeat from {what} for {PEER_TIMEOUT_SECONDS:.0f} s"
    except (OSError, ValueError) as exc:
        reason = f"connection to {what} failed: {exc}"
    stop.set()
    on_lost(reason)


class Rank0:
    """The rank 0 side: accepts ranks 1..nnodes-1 and checks what they say against its own view."""

    def __init__(self, addr: str, identity: dict, log: Callable[[str], None]):
        self.host, self.port = split_addr(addr)
        self.identity = identity
        self.log = log
        self.listener = socket.create_server(("", self.port), reuse_port=False)
        self.joined: dict[int, socket.socket] = {}

    def _check(self, hello: dict) -> str:
        mine = self.identity
        for key in ("nnodes", "tp", "model", "version"):
            if hello.get(key) != mine[key]:
                theirs = hello.get(key)
                return f"{key} mismatch: rank {hello.get('rank')} has {key}={theirs!r}, rank 0 has {key}={mine[key]!r}"
        rank = hello.get("rank")
        if not isinstance(rank, int) or not 1 <= rank < mine["nnodes"]:
            nnodes = mine["nnodes"]
            return f"node rank {rank!r} is out of range for nnodes={nnodes} (ranks >= 1 expected: 1..{nnodes - 1})"
        if rank in self.joined:
            return f"node rank {rank} joined twice"
        return ""

    def wait_all(self, timeout: float) -> None:
        """Returns once every rank joined; raises RendezvousError on a mismatch or the timeout."""
        deadline = time.monotonic() + timeout
        needed = self.identity["nnodes"] - 1
        while len(self.joined) < needed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RendezvousError(
                    f"Timed out after {timeout:.0f} seconds waiting for clients. "
                    f"{len(self.joined) + 1}/{needed + 1} clients joined."
                )
            self.listener.settimeout(remaining)
            try:
                conn, peer = self.listener.accept()
            except TimeoutError:
                continue
            conn.settimeout(10)
            try:
                hello = next(_lines(conn))
            except (OSError, ValueError, StopIteration):
                conn.close()
                continue
            problem = self._check(hello)
            if problem:
                _send(conn, {"ok": False, "error": problem})
                conn.close()
                raise RendezvousError(f"rank from {peer[0]}: {problem}")
            _send(conn, {"ok": True})
            self.joined[hello["rank"]] = conn
            self.log(f"Node rank {hello['rank']} joined from {peer[0]} ({len(self.joined) + 1}/{needed + 1})")

    def watch(self, on_lost: Callable[[str], None]) -> None:
        for rank, conn in self.joined.items():
            threading.Thread(target=_heartbeat, args=(conn, on_lost, f"node rank {rank}"), daemon=True).start()


def join(addr: str, identity: dict, timeout: float, log: Callable[[str], None]) -> socket.socket:
    """The rank >= 1 side: connect (retrying until timeout), introduce itself, wait for rank 0's answer."""
    host, port = split_addr(addr)
    deadline = time.monotonic() + timeout
    attempt = 0
    while True:
        try:
            conn = socket.create_connection((host, port), timeout=5)
            break
        except OSError as exc:
            attempt += 1
            if time.monotonic() >= deadline:
                raise RendezvousError(
                    f"Timed out after {timeout:.0f} seconds connecting to {host}:{port} (rank 0): {exc}"
                ) from None
            if attempt == 1 or attempt % 10 == 0:
                log(f"Waiting for rank 0 at {host}:{port}: {exc}")
            time.sleep(1.0)
    _send(conn, identity)
    try:
        answer = next(_lines(conn))
    except (OSError, ValueError, StopIteration) as exc:
        raise RendezvousError(f"rank 0 at {host}:{port} closed the rendezvous: {exc}") from None
    if not answer.get("ok"):
        raise RendezvousError(f"rank 0 refused this node: {answer.get('error')}")
    return conn


def watch_rank0(conn: socket.socket, on_lost: Callable[[str], None]) -> None:
    threading.Thread(target=_heartbeat, args=(conn, on_lost, "rank 0"), daemon=True).start()
