# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Serve a complete snapshot from one host's Hugging Face cache to the other hosts (fan-out mode of model_cache).

One host downloads from the Hub; the others download from it over the private network with the same client code
(hf_snapshot pointed at this server as its endpoint), so that egress from the Hub is paid once. The server speaks
the part of the Hub's protocol that hf_snapshot uses: revision, tree listing, HEAD and GET (with Range) of
``/<repo>/resolve/<commit>/<path>``. It serves only the files of one commit that the caller verified, read-only, to
clients that present the one-time bearer token, and stops when a stop file appears or after a time limit.
Standard library only: it runs on the hosts.
"""

from __future__ import annotations

import hmac
import json
import os
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional
from urllib.parse import unquote, urlsplit

from ansible_collections.datacrunch.sglang.plugins.module_utils.hub.snapshot import CacheLayout, RemoteFile

CHUNK = 4 * 1024 * 1024
RANGE_RE = re.compile(r"^bytes=(\d+)-(\d*)$")


class PeerServer:
    def __init__(
        self,
        layout: CacheLayout,
        repo_id: str,
        revision: str,
        commit: str,
        files: List[RemoteFile],
        token: str,
        address: str = "0.0.0.0",  # noqa: S104 - the hosts' private network; the token guards it
        port: int = 18095,
    ) -> None:
        self.layout = layout
        self.repo_id = repo_id
        self.revisions = {revision, commit}
        self.commit = commit
        self.files = {f.path: f for f in files}
        self.token = token
        self.lock = threading.Lock()
        self.bytes_served = 0
        self.requests = 0
        self.peers: Dict[str, int] = {}
        self.httpd = ThreadingHTTPServer((address, port), self._handler())
        self.httpd.daemon_threads = True

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    def tree(self) -> List[Dict[str, Any]]:
        out = []
        for f in sorted(self.files.values(), key=lambda f: f.path):
            entry: Dict[str, Any] = {"type": "file", "path": f.path, "size": f.size, "oid": f.blob_id}
            if f.sha256:
                entry["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": 0}
            out.append(entry)
        return out

    def count(self, peer: str, nbytes: int) -> None:
        with self.lock:
            self.bytes_served += nbytes
            self.peers[peer] = self.peers.get(peer, 0) + nbytes

    def _handler(self):
        server = self
        api_re = re.compile(
            r"^/api/models/" + re.escape(self.repo_id) + r"/(?P<kind>revision|tree)/(?P<rev>[^/]+)/?(?P<rest>.*)$"
        )
        resolve_re = re.compile(r"^/" + re.escape(self.repo_id) + r"/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "datacrunch-sglang-peer"

            def log_message(self, fmt: str, *args: Any) -> None:
                return

            def _json(self, status: int, data: Any, headers: Optional[Dict[str, str]] = None) -> None:
                body = json.dumps(data).encode()
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _error(self, status: int, message: str, code: Optional[str] = None) -> None:
                headers = {"X-Error-Message": message}
                if code:
                    headers["X-Error-Code"] = code
                self._json(status, {"error": message}, headers)

            def _authorized(self) -> bool:
                auth = self.headers.get("Authorization", "")
                given = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
                return hmac.compare_digest(given.encode(), server.token.encode())

            def _route(self) -> None:
                with server.lock:
                    server.requests += 1
                if not self._authorized():
                    return self._error(401, "Invalid credentials in Authorization header")
                path = unquote(urlsplit(self.path).path)
                api = api_re.match(path)
                if api:
                    if api.group("rev") not in server.revisions:
                        return self._error(404, f"Invalid rev id: {api.group('rev')}", "RevisionNotFound")
                    if api.group("kind") == "revision":
                        return self._json(200, {
                            "id": server.repo_id,
                            "modelId": server.repo_id,
                            "sha": server.commit,
                            "private": True,
                            "gated": False,
                            "siblings": [{"rfilename": p} for p in sorted(server.files)],
                        })
                    if api.group("rest"):
                        return self._error(404, "Entry not found", "EntryNotFound")
                    return self._json(200, server.tree())
                resolve = resolve_re.match(path)
                if not resolve:
                    return self._error(404, "Repository not found", "RepoNotFound")
                if resolve.group("rev") not in server.revisions:
                    return self._error(404, f"Invalid rev id: {resolve.group('rev')}", "RevisionNotFound")
                f = server.files.get(resolve.group("path"))
                if f is None:
                    return self._error(404, "Entry not found", "EntryNotFound")
                self._file(f)

            def _file(self, f: RemoteFile) -> None:
                blob = server.layout.blob(f.etag)
                start, end, status = 0, f.size - 1, 200
                range_header = self.headers.get("Range")
                if range_header and self.command == "GET":
                    m = RANGE_RE.match(range_header.strip())
                    if not m or int(m.group(1)) >= max(f.size, 1):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{f.size}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    start = int(m.group(1))
                    end = min(int(m.group(2)), f.size - 1) if m.group(2) else f.size - 1
                    status = 206
                self.send_response(status)
                self.send_header("X-Repo-Commit", server.commit)
                self.send_header("ETag", f'"{f.etag}"')
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Type", "application/octet-stream")
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{end}/{f.size}")
                self.send_header("Content-Length", str(end - start + 1 if f.size else 0))
                self.end_headers()
                if self.command == "HEAD" or not f.size:
                    return
                sent = 0
                try:
                    with open(blob, "rb") as fh:
                        fh.seek(start)
                        left = end - start + 1
                        while left > 0:
                            chunk = fh.read(min(CHUNK, left))
                            if not chunk:
                                break
                            self.wfile.write(chunk)
                            sent += len(chunk)
                            left -= len(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True
                finally:
                    server.count(self.client_address[0], sent)

            def do_GET(self) -> None:
                self._route()

            def do_HEAD(self) -> None:
                self._route()

        return Handler

    def serve(self, seconds: float, stop_file: Optional[str] = None, poll: float = 0.5) -> Dict[str, Any]:
        """Serve until stop_file exists or seconds have passed. Returns what was served to whom."""
        thread = threading.Thread(target=self.httpd.serve_forever, name="hf-snapshot-peer", daemon=True)
        thread.start()
        started = time.monotonic()
        reason = "timeout"
        try:
            while time.monotonic() - started < seconds:
                if stop_file and os.path.exists(stop_file):
                    reason = "stop_file"
                    break
                time.sleep(poll)
        finally:
            self.httpd.shutdown()
            self.httpd.server_close()
            thread.join()
        return {
            "port": self.port,
            "stopped_by": reason,
            "seconds": round(time.monotonic() - started, 1),
            "requests": self.requests,
            "bytes_served": self.bytes_served,
            "bytes_per_peer": dict(self.peers),
        }
