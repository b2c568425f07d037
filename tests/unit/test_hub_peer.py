"""module_utils/hub/peer.py: one host's verified snapshot served to the others, over real HTTP on loopback.

A Hugging Face cache laid out in tmp_path holds the blobs; the peer server serves them on a free port and is asked
with http.client as hf_snapshot's client asks the Hub: the revision, the tree, HEAD and GET (with Range) of
/<repo>/resolve/<commit>/<path>, always with the one-time bearer token.
"""

import hashlib
import http.client
import json
import threading
import time

import pytest

from ansible_collections.datacrunch.sglang.plugins.module_utils.hub.peer import PeerServer
from ansible_collections.datacrunch.sglang.plugins.module_utils.hub.snapshot import CacheLayout, RemoteFile

REPO = "lab/tiny-r1"
COMMIT = "5dde110d1a9ee857b90a6710b7138f9130ce6fa0"
TOKEN = "one-time-peer-token-unit-0123"
WEIGHTS = bytes(range(256)) * 40  # 10240 bytes
CONFIG = b'{"model_type": "deepseek_v3"}\n'


def counted(server, total, timeout=5.0):
    """The byte count once the handler threads have finished (a client has its body before the server counts it)."""
    deadline = time.monotonic() + timeout
    while server.bytes_served < total and time.monotonic() < deadline:
        time.sleep(0.01)
    return server.bytes_served


@pytest.fixture
def cache(tmp_path):
    layout = CacheLayout(str(tmp_path / "hub"), REPO)
    weights_sha = hashlib.sha256(WEIGHTS).hexdigest()
    files = [
        RemoteFile("model.safetensors", len(WEIGHTS), "b" * 40, weights_sha),
        RemoteFile("config.json", len(CONFIG), "c" * 40),
        RemoteFile("empty.txt", 0, "e" * 40),
    ]
    for f, content in zip(files, (WEIGHTS, CONFIG, b""), strict=True):
        blob = tmp_path / "hub" / layout.folder_name / "blobs" / f.etag
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(content)
    return layout, files


@pytest.fixture
def peer(cache):
    """A serving peer on a free loopback port; ask(method, path, token=TOKEN, headers) -> (status, headers, body)."""
    layout, files = cache
    server = PeerServer(layout, REPO, "main", COMMIT, files, TOKEN, address="127.0.0.1", port=0)
    thread = threading.Thread(target=server.httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()

    def ask(method, path, token=TOKEN, headers=None):
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        try:
            sent = dict(headers or {})
            if token is not None:
                sent["Authorization"] = "Bearer %s" % token
            connection.request(method, path, headers=sent)
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()

    yield server, ask
    server.httpd.shutdown()
    server.httpd.server_close()


def test_without_the_token_nothing_is_served(peer):
    server, ask = peer
    for token in (None, "wrong-token", ""):
        status, headers, body = ask("GET", "/%s/resolve/%s/config.json" % (REPO, COMMIT), token=token)
        assert status == 401
        assert headers["X-Error-Message"] == "Invalid credentials in Authorization header"
        assert json.loads(body) == {"error": "Invalid credentials in Authorization header"}
    assert server.requests == 3 and server.bytes_served == 0


def test_revision_answers_the_commit_and_files_for_the_branch_and_the_commit(peer):
    _server, ask = peer
    for revision in ("main", COMMIT):
        status, headers, body = ask("GET", "/api/models/%s/revision/%s" % (REPO, revision))
        assert status == 200 and headers["Content-Type"] == "application/json"
        info = json.loads(body)
        assert info["sha"] == COMMIT and info["id"] == REPO
        assert info["siblings"] == [{"rfilename": name} for name in ("config.json", "empty.txt", "model.safetensors")]


def test_an_unknown_revision_is_the_hubs_revision_not_found(peer):
    _server, ask = peer
    status, headers, _body = ask("GET", "/api/models/%s/revision/v2" % REPO)
    assert status == 404 and headers["X-Error-Code"] == "RevisionNotFound"
    assert headers["X-Error-Message"] == "Invalid rev id: v2"
    status, headers, _body = ask("GET", "/%s/resolve/other/config.json" % REPO)
    assert status == 404 and headers["X-Error-Code"] == "RevisionNotFound"


def test_tree_lists_each_file_with_its_lfs_digest(peer):
    _server, ask = peer
    status, _headers, body = ask("GET", "/api/models/%s/tree/%s" % (REPO, COMMIT))
    assert status == 200
    tree = json.loads(body)
    assert [entry["path"] for entry in tree] == ["config.json", "empty.txt", "model.safetensors"]
    weights = tree[2]
    assert weights["size"] == len(WEIGHTS) and weights["oid"] == "b" * 40
    assert weights["lfs"] == {"oid": hashlib.sha256(WEIGHTS).hexdigest(), "size": len(WEIGHTS), "pointerSize": 0}
    assert "lfs" not in tree[0]
    status, headers, _body = ask("GET", "/api/models/%s/tree/%s/subdir" % (REPO, COMMIT))
    assert status == 404 and headers["X-Error-Code"] == "EntryNotFound"


def test_get_serves_the_blob_with_the_hubs_headers_and_counts_it(peer):
    server, ask = peer
    status, headers, body = ask("GET", "/%s/resolve/%s/model.safetensors" % (REPO, COMMIT))
    assert status == 200 and body == WEIGHTS
    assert headers["X-Repo-Commit"] == COMMIT
    assert headers["ETag"] == '"%s"' % hashlib.sha256(WEIGHTS).hexdigest()
    assert headers["Accept-Ranges"] == "bytes" and headers["Content-Length"] == str(len(WEIGHTS))
    status, _headers, body = ask("GET", "/%s/resolve/main/config.json" % REPO)
    assert status == 200 and body == CONFIG
    assert counted(server, len(WEIGHTS) + len(CONFIG)) == len(WEIGHTS) + len(CONFIG)
    assert server.peers == {"127.0.0.1": len(WEIGHTS) + len(CONFIG)}


def test_head_gives_the_metadata_without_the_body(peer):
    server, ask = peer
    status, headers, body = ask("HEAD", "/%s/resolve/%s/config.json" % (REPO, COMMIT))
    assert status == 200 and body == b""
    assert headers["ETag"] == '"%s"' % ("c" * 40) and headers["Content-Length"] == str(len(CONFIG))
    status, headers, body = ask("HEAD", "/%s/resolve/%s/missing.bin" % (REPO, COMMIT))
    assert status == 404 and body == b"" and headers["X-Error-Code"] == "EntryNotFound"
    assert server.bytes_served == 0


def test_range_requests_resume_a_partial_download(peer):
    server, ask = peer
    path = "/%s/resolve/%s/model.safetensors" % (REPO, COMMIT)
    status, headers, body = ask("GET", path, headers={"Range": "bytes=10000-"})
    assert status == 206 and body == WEIGHTS[10000:]
    assert headers["Content-Range"] == "bytes 10000-10239/10240"
    status, headers, body = ask("GET", path, headers={"Range": "bytes=5-9"})
    assert status == 206 and body == WEIGHTS[5:10] and headers["Content-Range"] == "bytes 5-9/10240"
    status, _headers, body = ask("GET", path, headers={"Range": "bytes=10230-99999"})
    assert status == 206 and body == WEIGHTS[10230:]
    assert counted(server, 240 + 5 + 10) == 240 + 5 + 10


@pytest.mark.parametrize("value", ["bytes=10240-", "bytes=-5", "lines=1-2"])
def test_an_unsatisfiable_range_is_416_with_the_size(peer, value):
    _server, ask = peer
    status, headers, body = ask("GET", "/%s/resolve/%s/model.safetensors" % (REPO, COMMIT), headers={"Range": value})
    assert status == 416 and body == b""
    assert headers["Content-Range"] == "bytes */10240"


def test_an_empty_file_is_served_empty(peer):
    _server, ask = peer
    status, headers, body = ask("GET", "/%s/resolve/%s/empty.txt" % (REPO, COMMIT))
    assert status == 200 and body == b"" and headers["Content-Length"] == "0"


def test_only_the_one_repository_is_served(peer):
    _server, ask = peer
    for path in ("/lab/other/resolve/%s/config.json" % COMMIT, "/api/models/lab/other/revision/main", "/"):
        status, headers, _body = ask("GET", path)
        assert status == 404 and headers["X-Error-Code"] == "RepoNotFound", path


def test_serve_stops_on_its_stop_file_and_reports_what_it_served(cache, tmp_path):
    layout, files = cache
    server = PeerServer(layout, REPO, "main", COMMIT, files, TOKEN, address="127.0.0.1", port=0)
    port = server.port
    stop = tmp_path / "stop"

    def client():
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("GET", "/%s/resolve/%s/config.json" % (REPO, COMMIT),
                           headers={"Authorization": "Bearer " + TOKEN})
        assert connection.getresponse().read() == CONFIG
        connection.close()
        stop.touch()

    caller = threading.Thread(target=client, daemon=True)
    caller.start()
    report = server.serve(seconds=30, stop_file=str(stop), poll=0.05)
    caller.join(5)
    assert report["stopped_by"] == "stop_file" and report["port"] == port
    assert report["requests"] == 1 and report["bytes_served"] == len(CONFIG)
    assert report["bytes_per_peer"] == {"127.0.0.1": len(CONFIG)}
    assert report["seconds"] < 30


def test_serve_ends_after_its_time_and_closes_the_port(cache):
    layout, files = cache
    server = PeerServer(layout, REPO, "main", COMMIT, files, TOKEN, address="127.0.0.1", port=0)
    port = server.port
    started = time.monotonic()
    report = server.serve(seconds=0.3, poll=0.05)
    assert report["stopped_by"] == "timeout" and report["requests"] == 0
    assert time.monotonic() - started >= 0.3
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    with pytest.raises(ConnectionRefusedError):
        connection.request("GET", "/")
