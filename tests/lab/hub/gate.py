"""A small HTTP front for olah that adds the Hub behaviours olah's offline mode lacks. Lab test material.

olah (offline mode) serves local git repositories with the Hub's API, but it has no notion of tokens or gated repos,
ignores ``Range`` on file downloads (so an interrupted download could not resume) and answers an unknown revision as
an unknown repository. This front passes every request through to olah and adds only:

- tokens: a request whose ``Authorization: Bearer`` token is not one of the lab tokens gets the Hub's
  ``401 Invalid credentials in Authorization header``;
- gated repos: their metadata says ``"gated": "manual"``; a file download without a token gets ``401`` with
  ``X-Error-Code: GatedRepo``, with a valid token that was not granted access ``403 GatedRepo`` (as the Hub does);
- ``Range`` on ``/resolve/`` downloads: ``206 Partial Content`` with ``Content-Range``;
- an unknown revision of a known repo: ``404`` with ``X-Error-Code: RevisionNotFound``; the refs of an unknown repo:
  ``404`` with ``X-Error-Code: RepoNotFound``;
- lab controls under ``/_lab/``: ``GET /_lab/stats`` (requests and body bytes served per path and client),
  ``POST /_lab/reset``, ``POST /_lab/faults`` with JSON ``{"throttle_bps": N}`` (0: no limit) to slow file bodies
  down so that a test can interrupt a download mid-file (``"throttle_clients": [ADDRESS, ...]`` slows only those
  clients), ``{"ignore_range": true}`` to answer every file download
  with the whole file (``200``) as olah itself does, ``{"mirror_errors": true}`` to pass olah's own answer to an
  unknown revision through (``401 RepoNotFound``, as a client talking to olah directly gets it);
  ``GET /_lab/listen`` (the addresses the gate listens on), ``POST /_lab/listen`` and ``POST /_lab/unlisten`` with
  ``{"address": A}`` (from this machine only) to listen on one more lab network's gateway, or no more, on the same
  port, with the same state.

It listens on the addresses given, never on every interface unless told so: 127.0.0.1 for this machine and each lab
network's gateway for the lab hosts.

Usage: gate.py --listen 127.0.0.1:18090 [--listen 10.211.1.1:18090 ...] --upstream 127.0.0.1:19090 --mirrors DIR
       --config lab-tokens.json
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

API_RE = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/(?P<kind>revision|tree|paths-info|refs)(?:/(?P<rest>.*))?$")
RESOLVE_RE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")
RANGE_RE = re.compile(r"^bytes=(\d+)-(\d*)$")
HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "server", "date"}
CHUNK = 1 << 20


class Gate:
    def __init__(self, upstream: str, mirrors: Path, config: dict) -> None:
        self.upstream_host, _colon, port = upstream.partition(":")
        self.upstream_port = int(port)
        self.mirrors = mirrors
        self.tokens: dict[str, dict] = config.get("tokens", {})
        self.gated: set[str] = set(config.get("gated", []))
        self.lock = threading.Lock()
        self.stats: dict[str, dict] = {}
        self.throttle_bps = 0
        # Addresses the throttle applies to (empty: every client), so that one lab's test slows only its own hosts.
        self.throttle_clients: list[str] = []
        self.ignore_range = False
        self.mirror_errors = False
        self.port = 0
        self.handler: type | None = None
        self.servers: dict[str, ThreadingHTTPServer] = {}

    def listen(self, address: str) -> None:
        """Serve on ADDRESS too (idempotent); an OSError when the address cannot be bound."""
        with self.lock:
            if address in self.servers:
                return
            server = ThreadingHTTPServer((address, self.port), self.handler)
            server.daemon_threads = True
            self.servers[address] = server
        threading.Thread(target=server.serve_forever, daemon=True).start()

    def unlisten(self, address: str) -> None:
        with self.lock:
            server = self.servers.pop(address, None)
        if server is not None:
            # Requests are handled in threads of their own, never in serve_forever's: shutdown() cannot wait on itself.
            server.shutdown()
            server.server_close()

    def addresses(self) -> list[str]:
        with self.lock:
            return sorted(self.servers)

    def record(
        self, method: str, path: str, status: int, nbytes: int, byte_range: str | None, client: str = ""
    ) -> None:
        with self.lock:
            entry = self.stats.setdefault(
                path, {"requests": 0, "bytes": 0, "by_method": {}, "ranges": [], "clients": {}}
            )
            entry["requests"] += 1
            entry["bytes"] += nbytes
            entry["clients"][client] = entry["clients"].get(client, 0) + nbytes
            entry["by_method"][method] = entry["by_method"].get(method, 0) + 1
            if byte_range:
                entry["ranges"].append(byte_range)
            entry["last_status"] = status

    def repo_exists(self, repo: str) -> bool:
        return (self.mirrors / "models" / repo / ".git").is_dir()


def make_handler(gate: Gate):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "lab-hub-gate"

        def log_message(self, fmt: str, *args) -> None:  # keep the lab's console quiet
            return

        # -- helpers -------------------------------------------------------------------------------------------
        def _send(self, status: int, body: bytes = b"", headers: dict | None = None, ctype: str = "application/json"):
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            gate.record(
                self.command, self._path(), status, 0 if self.command == "HEAD" else len(body), None,
                self.client_address[0],
            )

        def _error(self, status: int, message: str, code: str | None = None) -> None:
            headers = {"X-Error-Message": message}
            if code:
                headers["X-Error-Code"] = code
            self._send(status, json.dumps({"error": message}).encode(), headers)

        def _path(self) -> str:
            return unquote(urlsplit(self.path).path)

        def _token(self) -> str | None:
            auth = self.headers.get("Authorization", "")
            return auth[7:].strip() if auth.lower().startswith("bearer ") else None

        def _upstream(self, method: str, body: bytes | None = None) -> http.client.HTTPResponse:
            target = self.path
            api = API_RE.match(self._path())
            if api and api.group("kind") == "tree" and "/" not in (api.group("rest") or ""):
                # olah redirects a tree listing to the same path with a trailing slash, at its own address:
                # ask for that form directly so that clients never see olah's address.
                split = urlsplit(self.path)
                target = split.path.rstrip("/") + "/" + (f"?{split.query}" if split.query else "")
            headers = {}
            if body is not None:
                headers = {"Content-Type": self.headers.get("Content-Type", "application/json")}
            conn = http.client.HTTPConnection(gate.upstream_host, gate.upstream_port, timeout=60)
            conn.request(method, target, body=body, headers=headers)
            return conn.getresponse()

        # -- control --------------------------------------------------------------------------------------------
        def _control(self) -> None:
            path = self._path()
            if path == "/_lab/stats" and self.command == "GET":
                with gate.lock:
                    body = json.dumps({"stats": gate.stats, "throttle_bps": gate.throttle_bps,
                                       "throttle_clients": gate.throttle_clients,
                                       "ignore_range": gate.ignore_range,
                                       "mirror_errors": gate.mirror_errors}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            if path == "/_lab/reset" and self.command == "POST":
                with gate.lock:
                    gate.stats.clear()
                    gate.throttle_bps = 0
                    gate.throttle_clients = []
                    gate.ignore_range = False
                    gate.mirror_errors = False
                return self._send(200, b"{}")
            if path == "/_lab/faults" and self.command == "POST":
                length = int(self.headers.get("Content-Length") or 0)
                data = json.loads(self.rfile.read(length) or b"{}")
                with gate.lock:
                    gate.throttle_bps = int(data.get("throttle_bps", 0))
                    gate.throttle_clients = [str(client) for client in data.get("throttle_clients") or []]
                    gate.ignore_range = bool(data.get("ignore_range", False))
                    gate.mirror_errors = bool(data.get("mirror_errors", False))
                return self._send(200, b"{}")
            if path == "/_lab/listen" and self.command == "GET":
                return self._send(200, json.dumps({"addresses": gate.addresses(), "port": gate.port}).encode())
            if path in ("/_lab/listen", "/_lab/unlisten") and self.command == "POST":
                if self.client_address[0] != "127.0.0.1":
                    return self._error(403, "listen controls are for this machine only (127.0.0.1)")
                length = int(self.headers.get("Content-Length") or 0)
                address = str(json.loads(self.rfile.read(length) or b"{}").get("address", ""))
                try:
                    (gate.listen if path == "/_lab/listen" else gate.unlisten)(address)
                except OSError as error:
                    return self._error(400, f"cannot listen on {address}:{gate.port}: {error}")
                return self._send(200, json.dumps({"addresses": gate.addresses()}).encode())
            self._error(404, f"unknown lab control {path}")

        # -- the Hub behaviours ------------------------------------------------------------------------------------
        def _handle(self) -> None:
            path = self._path()
            if path.startswith("/_lab/"):
                return self._control()
            token = self._token()
            if token is not None and token not in gate.tokens:
                return self._error(401, "Invalid credentials in Authorization header")

            api = API_RE.match(path)
            resolve = RESOLVE_RE.match(path)
            repo = (api or resolve).group("repo") if (api or resolve) else None

            if resolve and repo in gate.gated:
                if token is None:
                    return self._error(
                        401,
                        f"Access to model {repo} is restricted. You must have access to it and be authenticated "
                        "to access it. Please log in.",
                        "GatedRepo",
                    )
                if repo not in gate.tokens[token].get("granted", []):
                    return self._error(
                        403,
                        f"Access to model {repo} is restricted and you are not in the authorized list. "
                        f"Visit the repository page to ask for access.",
                        "GatedRepo",
                    )

            if api and api.group("kind") == "refs" and not gate.repo_exists(repo) and not gate.mirror_errors:
                # olah says EntryNotFound ("refs are not cached"); the Hub says the repository is unknown.
                return self._error(404, "Repository not found", "RepoNotFound")
            if api and api.group("kind") == "revision":
                return self._revision(repo, api.group("rest") or "")
            if resolve and self.command == "GET":
                return self._file_get()
            self._passthrough()

        def _revision(self, repo: str, rev: str) -> None:
            resp = self._upstream(self.command)
            body = resp.read()
            if resp.status != 200 and gate.repo_exists(repo) and not gate.mirror_errors:
                return self._error(404, f"Invalid rev id: {rev}", "RevisionNotFound")
            if resp.status == 200 and repo in gate.gated and self.command == "GET":
                data = json.loads(body)
                data["gated"] = "manual"
                body = json.dumps(data).encode()
            headers = {k: v for k, v in resp.getheaders() if k.lower() not in HOP_HEADERS | {"content-type"}}
            self._send(resp.status, body, headers, resp.getheader("Content-Type", "application/json"))

        def _passthrough(self) -> None:
            body = None
            if self.command == "POST":
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            resp = self._upstream(self.command, body)
            body = resp.read()
            headers = {k: v for k, v in resp.getheaders() if k.lower() not in HOP_HEADERS | {"content-type"}}
            if RESOLVE_RE.match(self._path()):
                headers["Accept-Ranges"] = "bytes"
            if self.command == "HEAD":
                # olah's HEAD carries the file size in Content-Length; keep it, send no body.
                self.send_response(resp.status)
                for k, v in headers.items():
                    self.send_header(k, v)
                length = resp.getheader("Content-Length")
                if length is not None:
                    self.send_header("Content-Length", length)
                self.end_headers()
                gate.record("HEAD", self._path(), resp.status, 0, None, self.client_address[0])
                return
            self._send(resp.status, body, headers, resp.getheader("Content-Type", "application/octet-stream"))

        def _file_get(self) -> None:
            head = self._upstream("HEAD")
            head.read()
            if head.status != 200:
                return self._passthrough()
            size = int(head.getheader("Content-Length"))
            start, end = 0, size - 1
            status = 200
            range_header = self.headers.get("Range")
            if range_header and gate.ignore_range:
                range_header = None  # olah's own behaviour: the whole file, whatever was asked
            if range_header:
                m = RANGE_RE.match(range_header.strip())
                if not m:
                    return self._error(416, f"Unsupported range {range_header}")
                start = int(m.group(1))
                end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
                if start >= size or start > end:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    gate.record("GET", self._path(), 416, 0, range_header, self.client_address[0])
                    return
                status = 206
            resp = self._upstream("GET")
            self.send_response(status)
            for k, v in head.getheaders():
                if k.lower() not in HOP_HEADERS:
                    self.send_header(k, v)
            self.send_header("Accept-Ranges", "bytes")
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            self.send_header("Content-Length", str(end - start + 1))
            self.end_headers()
            sent = 0
            skipped = 0
            began = time.monotonic()
            try:
                while True:
                    chunk = resp.read(CHUNK)
                    if not chunk:
                        break
                    if skipped < start:
                        drop = min(len(chunk), start - skipped)
                        skipped += drop
                        chunk = chunk[drop:]
                    want = end - start + 1 - sent
                    chunk = chunk[:want]
                    if not chunk:
                        continue
                    for i in range(0, len(chunk), 16384):
                        piece = chunk[i:i + 16384]
                        self.wfile.write(piece)
                        sent += len(piece)
                        bps = gate.throttle_bps
                        if bps and (not gate.throttle_clients or self.client_address[0] in gate.throttle_clients):
                            ahead = sent / bps - (time.monotonic() - began)
                            if ahead > 0:
                                time.sleep(ahead)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True
            finally:
                gate.record("GET", self._path(), status, sent, range_header, self.client_address[0])

        def do_GET(self) -> None:
            self._handle()

        def do_HEAD(self) -> None:
            self._handle()

        def do_POST(self) -> None:
            self._handle()

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--listen", required=True, action="append", help="ADDR:PORT (repeated: one port for all)")
    parser.add_argument("--upstream", required=True, help="olah's ADDR:PORT")
    parser.add_argument("--mirrors", required=True, type=Path)
    parser.add_argument("--config", required=True, type=Path)
    args = parser.parse_args()
    gate = Gate(args.upstream, args.mirrors, json.loads(args.config.read_text()))
    gate.handler = make_handler(gate)
    ports = {listen.rpartition(":")[2] for listen in args.listen}
    if len(ports) != 1:
        parser.error(f"--listen: one port for every address, not {sorted(ports)}")
    gate.port = int(ports.pop())
    for listen in args.listen:
        gate.listen(listen.rpartition(":")[0])
    threading.Event().wait()


if __name__ == "__main__":
    main()
