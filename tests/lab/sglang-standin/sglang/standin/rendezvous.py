"""Test stand-in (not SGLang): the multi-node rendezvous at --dist-init-addr, in the spirit of torch's TCPStore.

Rank 0 listens on the port of --dist-init-addr; ranks >= 1 connect to HOST:PORT, retrying until --dist-timeout,
and send one JSON line {rank, nnodes, tp, model, version, addr, port}. Rank 0 checks that nnodes, tp, model and
version agree and that ranks are unique and in range; a mismatch ends both sides with exit status 1 and a log line
naming it. addr:port is where the rank listens for the traffic that NCCL and Gloo carry between the nodes (a port
from the kernel's ephemeral range, as theirs are); rank 0 answers with its own. Then each side connects to the
other's (see collective.py for which ports real SGLang uses and why). There is no heartbeat: SGLang has none.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable

HEARTBEAT_SECONDS = 1.0
PEER_TIMEOUT_SECONDS = 5.0


class RendezvousError(Exception):
    pass


class DataLinkError(RendezvousError):
    """The ranks met at the store but could not connect on their NCCL/Gloo ports (a firewall, a wrong interface)."""


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


def _read_line(conn: socket.socket) -> dict:
    """One JSON line, read byte by byte so that nothing sent after it is taken from the socket."""
    line = b""
    while not line.endswith(b"\n"):
        byte = conn.recv(1)
        if not byte:
            raise ValueError("connection closed before a full line")
        line += byte
    return json.loads(line)


def data_listener(host: str) -> socket.socket:
    """A listening socket on a port the kernel picks from its ephemeral range, as NCCL's and Gloo's are."""
    return socket.create_server((host, 0))


def connect_until(host: str, port: int, deadline: float, what: str) -> socket.socket:
    """Connect, retrying until the deadline (a firewall that drops the packets makes every attempt time out)."""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DataLinkError(f"{what}: connect to {host}:{port} timed out")
        try:
            return socket.create_connection((host, port), timeout=min(remaining, 10))
        except OSError as exc:
            if time.monotonic() >= deadline:
                raise DataLinkError(f"{what}: connect to {host}:{port} failed: {exc}") from None
            time.sleep(0.5)


def accept_ranks(listener: socket.socket, ranks: set, deadline: float, what: str) -> dict:
    """Accept one connection from each of ranks (each sends its rank as one JSON line)."""
    accepted = {}
    while set(accepted) != set(ranks):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            missing = sorted(set(ranks) - set(accepted))
            raise DataLinkError(
                f"{what}: no connection from node rank(s) {missing} on port {listener.getsockname()[1]} in time"
            )
        listener.settimeout(remaining)
        try:
            conn, _peer = listener.accept()
        except TimeoutError:
            continue
        conn.settimeout(10)
        try:
            hello = _read_line(conn)
        except (OSError, ValueError):
            conn.close()
            continue
        if hello.get("rank") in ranks:
            conn.settimeout(None)
            accepted[hello["rank"]] = conn
    return accepted


class Rank0:
    """The rank 0 side: accepts ranks 1..nnodes-1 and checks what they say against its own view."""

    def __init__(self, addr: str, identity: dict, log: Callable[[str], None], data_host: str = ""):
        self.host, self.port = split_addr(addr)
        self.identity = identity
        self.log = log
        self.listener = socket.create_server(("", self.port), reuse_port=False)
        self.data = data_listener(data_host)
        self.joined: dict[int, socket.socket] = {}
        self.hellos: dict[int, dict] = {}

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
            _send(conn, {"ok": True, "addr": conn.getsockname()[0], "port": self.data.getsockname()[1]})
            self.joined[hello["rank"]] = conn
            self.hellos[hello["rank"]] = hello
            self.log(f"Node rank {hello['rank']} joined from {peer[0]} ({len(self.joined) + 1}/{needed + 1})")

    def connect_data(self, deadline: float) -> dict:
        """Connect to every rank's data port and accept every rank's connection to ours: {rank: (to, from, peer)}."""
        outgoing = {}
        for rank, hello in sorted(self.hellos.items()):
            conn = connect_until(hello["addr"], hello["port"], deadline, f"NCCL bootstrap to node rank {rank}")
            _send(conn, {"rank": 0})
            outgoing[rank] = (conn, f"{hello['addr']}:{hello['port']}")
            self.log(f"[stand-in] connected to node rank {rank} at {hello['addr']}:{hello['port']} (NCCL/Gloo "
                     f"traffic; this node listens on {self.data.getsockname()[1]})")
        incoming = accept_ranks(self.data, set(self.hellos), deadline, "Gloo connect from the other nodes")
        return {rank: (outgoing[rank][0], incoming[rank], outgoing[rank][1]) for rank in outgoing}


def join(addr: str, identity: dict, timeout: float, log: Callable[[str], None], data_host: str = "") -> dict:
    """The rank >= 1 side: connect (retrying until timeout), introduce itself, wait for rank 0's answer, then connect
    to rank 0's data port and accept rank 0's connection to ours. Returns {to, from, peer, store}."""
    host, port = split_addr(addr)
    deadline = time.monotonic() + timeout
    attempt = 0
    data = data_listener(data_host)
    while True:
        try:
            conn = socket.create_connection((host, port), timeout=5)
            _send(conn, {**identity, "addr": conn.getsockname()[0], "port": data.getsockname()[1]})
            answer = next(_lines(conn))
            break
        except (OSError, ValueError, StopIteration) as exc:
            # Refused (rank 0 not listening yet) or closed before an answer (a rank 0 of the unit's previous run
            # that is still going away): try again until the timeout, as a store client keeps trying to connect.
            attempt += 1
            if time.monotonic() >= deadline:
                raise RendezvousError(
                    f"Timed out after {timeout:.0f} seconds connecting to {host}:{port} (rank 0): {exc or 'closed'}"
                ) from None
            if attempt == 1 or attempt % 10 == 0:
                log(f"Waiting for rank 0 at {host}:{port}: {exc or 'closed'}")
            time.sleep(1.0)
    if not answer.get("ok"):
        raise RendezvousError(f"rank 0 refused this node: {answer.get('error')}")
    to_rank0 = connect_until(answer["addr"], answer["port"], deadline, "Gloo connect to node rank 0")
    _send(to_rank0, {"rank": identity["rank"]})
    log(f"[stand-in] connected to node rank 0 at {answer['addr']}:{answer['port']} (NCCL/Gloo traffic; this node "
        f"listens on {data.getsockname()[1]})")
    from_rank0 = accept_ranks(data, {0}, deadline, "NCCL bootstrap from node rank 0")[0]
    return {"to": to_rank0, "from": from_rank0, "peer": f"{answer['addr']}:{answer['port']}", "store": conn,
            "listener": data}
