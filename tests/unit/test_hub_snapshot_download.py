"""module_utils/hub/snapshot.py and hub/ranged.py, the whole download, in-process: ensure_snapshot (with the real
huggingface_hub client) fetches a snapshot over loopback HTTP from a peer server (module_utils/hub/peer.py, which
speaks the part of the Hub's protocol hf_snapshot uses) into an empty Hugging Face cache in tmp_path.

What is checked is the cache on disk afterwards (blobs, snapshot links, refs) and the progress file; then a second
run that finds everything, a blob cut short, a range download left half-done by a killed run, and the refusals.
"""

import hashlib
import json
import os
import socket
import subprocess
import threading

import pytest

from ansible_collections.datacrunch.sglang.plugins.module_utils.hub import ranged
from ansible_collections.datacrunch.sglang.plugins.module_utils.hub import snapshot as hub
from ansible_collections.datacrunch.sglang.plugins.module_utils.hub.peer import PeerServer

pytest.importorskip("huggingface_hub")

REPO = "lab/tiny-r1"
COMMIT = "5dde110d1a9ee857b90a6710b7138f9130ce6fa0"
TOKEN = "one-time-peer-token-download-42"
# Large enough to be fetched in ranges of MIN_SPLIT_SIZE over several connections.
SHARD = hashlib.sha256(b"shard").digest() * (3 * hub.MIN_SPLIT_SIZE // 32 + 1000)
FILES = {
    "config.json": b'{"model_type": "deepseek_v3", "architectures": ["DeepseekV3ForCausalLM"]}\n',
    "model.safetensors.index.json": b'{"weight_map": {"a": "model-00001-of-00001.safetensors"}}\n',
    "model-00001-of-00001.safetensors": SHARD,
}
LFS = {"model-00001-of-00001.safetensors"}


@pytest.fixture
def seed(tmp_path):
    """The host that has the snapshot: blobs in its cache, and the files as the Hub lists them."""
    layout = hub.CacheLayout(str(tmp_path / "seed" / "hub"), REPO)
    os.makedirs(os.path.join(layout.repo_dir, "blobs"))
    files = []
    for path, content in FILES.items():
        staging = tmp_path / "staging"
        staging.write_bytes(content)
        blob_id = hub.git_blob_id(str(staging), len(content))
        sha = hashlib.sha256(content).hexdigest() if path in LFS else None
        remote = hub.RemoteFile(path, len(content), blob_id, sha)
        os.replace(staging, layout.blob(remote.etag))
        files.append(remote)
    return layout, files


@pytest.fixture
def peer(seed, monkeypatch):
    layout, files = seed
    server = PeerServer(layout, REPO, "main", COMMIT, files, TOKEN, address="127.0.0.1", port=0)
    thread = threading.Thread(target=server.httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    # load_hf sets these for huggingface_hub; put them back afterwards for the other tests of this process.
    for name in ("HF_HOME", "HF_ENDPOINT", "HF_HUB_DOWNLOAD_TIMEOUT", "HF_HUB_ETAG_TIMEOUT", "HF_HUB_DISABLE_XET",
                 "HF_HUB_DISABLE_PROGRESS_BARS", "HF_HUB_DISABLE_TELEMETRY"):
        monkeypatch.setenv(name, os.environ.get(name, ""))
        if not os.environ[name]:
            monkeypatch.delenv(name)
    yield server, "http://127.0.0.1:%d" % server.port
    server.httpd.shutdown()
    server.httpd.server_close()


def request(tmp_path, endpoint, **overrides):
    values = {
        "repo_id": REPO, "hf_home": str(tmp_path / "dest"), "revision": "main", "token": TOKEN, "endpoint": endpoint,
        "parallelism": 2, "connections_per_file": 3, "split_size": hub.MIN_SPLIT_SIZE, "request_timeout": 10,
        "verify": "sha256", "disk_reserve_gb": 0.001, "progress_file": str(tmp_path / "progress.json"),
    }
    values.update(overrides)
    return hub.SnapshotRequest(**values)


def snapshot_contents(tmp_path):
    snapshot = tmp_path / "dest" / "hub" / "models--lab--tiny-r1" / "snapshots" / COMMIT
    return {path: (snapshot / path).read_bytes() for path in FILES if (snapshot / path).exists()}


def test_a_snapshot_is_downloaded_into_an_empty_cache(tmp_path, peer):
    server, endpoint = peer
    result = hub.ensure_snapshot(request(tmp_path, endpoint))
    assert snapshot_contents(tmp_path) == FILES
    repo_dir = tmp_path / "dest" / "hub" / "models--lab--tiny-r1"
    assert (repo_dir / "refs" / "main").read_text() == COMMIT
    link = repo_dir / "snapshots" / COMMIT / "model-00001-of-00001.safetensors"
    assert link.is_symlink() and os.readlink(link) == "../../blobs/" + hashlib.sha256(SHARD).hexdigest()
    assert result["complete"] is True and result["changed"] is True and result["commit"] == COMMIT
    total = sum(len(content) for content in FILES.values())
    assert result["files"] == 3 and result["bytes"] == total
    assert result["files_downloaded"] == 3 and result["bytes_downloaded"] == total
    assert result["files_ranged"] == 1  # the shard, in pieces over several connections
    assert server.bytes_served == total
    progress = json.loads((tmp_path / "progress.json").read_text())
    assert progress["state"] == "done" and progress["complete"] is True
    # Nothing of ours is left beside the blobs.
    assert sorted(os.listdir(repo_dir / "blobs")) == sorted(
        [hashlib.sha256(SHARD).hexdigest()] + [f.etag for f in server.files.values() if f.path not in LFS])


def test_a_complete_snapshot_is_not_fetched_again(tmp_path, peer):
    server, endpoint = peer
    hub.ensure_snapshot(request(tmp_path, endpoint))
    served = server.bytes_served
    again = hub.ensure_snapshot(request(tmp_path, endpoint))
    assert again["changed"] is False and again["files_to_fetch"] == 0 and again["bytes_downloaded"] == 0
    assert server.bytes_served == served


def test_a_blob_cut_short_is_repaired(tmp_path, peer):
    _server, endpoint = peer
    hub.ensure_snapshot(request(tmp_path, endpoint))
    blob = tmp_path / "dest" / "hub" / "models--lab--tiny-r1" / "blobs" / hashlib.sha256(SHARD).hexdigest()
    with open(blob, "r+b") as handle:
        handle.truncate(1000)
    result = hub.ensure_snapshot(request(tmp_path, endpoint, verify="quick"))
    assert [entry["path"] for entry in result["repaired"]] == ["model-00001-of-00001.safetensors"]
    assert result["bytes_downloaded"] == len(SHARD)
    assert snapshot_contents(tmp_path) == FILES


def test_a_range_download_left_by_a_killed_run_is_resumed(tmp_path, peer):
    server, endpoint = peer
    etag = hashlib.sha256(SHARD).hexdigest()
    blobs = tmp_path / "dest" / "hub" / "models--lab--tiny-r1" / "blobs"
    blobs.mkdir(parents=True)
    # What a killed run of this host left: the first piece written, and the ranges file naming it.
    finished = subprocess.Popen(["true"])  # its pid names a process that no longer exists
    finished.wait()
    dead_pid = finished.pid
    part = ranged.PartFile(str(blobs), etag, len(SHARD), owner="%s.%d" % (socket.gethostname(), dead_pid))
    part.open()
    with open(part.path, "r+b") as handle:
        handle.write(SHARD[: hub.MIN_SPLIT_SIZE])
    part.mark(0, hub.MIN_SPLIT_SIZE)  # [start, end)
    part.save()
    part.close()
    assert ranged.kept_bytes(str(blobs), etag, len(SHARD)) == hub.MIN_SPLIT_SIZE
    result = hub.ensure_snapshot(request(tmp_path, endpoint))
    assert result["bytes_resumed"] == hub.MIN_SPLIT_SIZE
    assert server.bytes_served == sum(len(content) for content in FILES.values()) - hub.MIN_SPLIT_SIZE
    assert snapshot_contents(tmp_path) == FILES
    assert not [name for name in os.listdir(blobs) if "dcsg-" in name]


def test_check_mode_says_what_it_would_fetch_and_writes_nothing(tmp_path, peer):
    server, endpoint = peer
    result = hub.ensure_snapshot(request(tmp_path, endpoint, check_mode=True))
    assert result["changed"] is True and result["complete"] is False
    assert result["files_to_fetch"] == 3 and result["bytes_to_fetch"] == sum(len(c) for c in FILES.values())
    assert result["diff"]["before"]["missing_or_bad"] == sorted(FILES)
    assert snapshot_contents(tmp_path) == {} and not (tmp_path / "progress.json").exists()
    assert server.bytes_served == 0


def test_files_out_receives_the_listing_and_patterns_select(tmp_path, peer):
    _server, endpoint = peer
    listed = []
    result = hub.ensure_snapshot(request(tmp_path, endpoint, allow_patterns=["*.json"]), files_out=listed)
    assert sorted(f.path for f in listed) == ["config.json", "model.safetensors.index.json"]
    assert result["files"] == 2
    assert set(snapshot_contents(tmp_path)) == {"config.json", "model.safetensors.index.json"}
    with pytest.raises(hub.HubError) as none:
        hub.ensure_snapshot(request(tmp_path, endpoint, allow_patterns=["*.bin"]))
    assert "matches allow_patterns=['*.bin']" in none.value.message and "widen the patterns" in none.value.message


def test_a_wrong_token_is_refused_before_anything_is_written(tmp_path, peer):
    _server, endpoint = peer
    with pytest.raises(hub.HubError) as refused:
        hub.ensure_snapshot(request(tmp_path, endpoint, token="not-the-token"))
    assert "401" in refused.value.message or "token" in refused.value.message.lower()
    assert snapshot_contents(tmp_path) == {}
    progress = json.loads((tmp_path / "progress.json").read_text())
    assert progress["state"] == "failed" and progress["message"] == refused.value.message


def test_an_unknown_revision_is_refused_with_the_fix(tmp_path, peer):
    _server, endpoint = peer
    with pytest.raises(hub.HubError) as unknown:
        hub.ensure_snapshot(request(tmp_path, endpoint, revision="v9"))
    # A peer lists no refs and answers RepoNotFound for the listing: the message says what to check.
    assert "was not found at %s" % endpoint in unknown.value.message
    assert "check the spelling" in unknown.value.message
    assert snapshot_contents(tmp_path) == {}


def test_what_a_killed_download_left_beside_a_blob_completed_elsewhere_is_removed_once(tmp_path, peer):
    # Two hosts on one cache volume fetched the shard at once; one was killed midway, the other completed it. No
    # later run fetches the shard again, so the sweep at the end of a run is what removes the killed one's copy.
    server, endpoint = peer
    hub.ensure_snapshot(request(tmp_path, endpoint))
    etag = hashlib.sha256(SHARD).hexdigest()
    blobs = tmp_path / "dest" / "hub" / "models--lab--tiny-r1" / "blobs"
    finished = subprocess.Popen(["true"])
    finished.wait()
    part = ranged.PartFile(str(blobs), etag, len(SHARD), owner="%s.%d" % (socket.gethostname(), finished.pid))
    part.open()
    part.mark(0, 10)
    part.save()
    part.close()
    leftovers = sorted(os.path.basename(p) for p in (part.path, part.ranges_path))
    served = server.bytes_served

    check = hub.ensure_snapshot(request(tmp_path, endpoint, check_mode=True))
    assert check["changed"] is True and check["complete"] is True and check["partial_files_removed"] == 2
    assert set(leftovers) <= set(os.listdir(blobs))
    result = hub.ensure_snapshot(request(tmp_path, endpoint))
    assert result["changed"] is True and result["partial_files_removed"] == 2 and result["files_to_fetch"] == 0
    assert not [name for name in os.listdir(blobs) if "dcsg-" in name]
    assert snapshot_contents(tmp_path) == FILES and server.bytes_served == served
    again = hub.ensure_snapshot(request(tmp_path, endpoint))
    assert again["changed"] is False and again["partial_files_removed"] == 0
