"""hf_snapshot's logic without a server: inputs, the cache layout, the quick and sha256 checks, disk, progress."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from ansible_collections.datacrunch.sglang.plugins.module_utils.hub import snapshot as hub
from ansible_collections.datacrunch.sglang.plugins.module_utils.hub.snapshot import (
    CacheLayout,
    HubError,
    RemoteFile,
    SnapshotRequest,
)

COMMIT = "a" * 40


def remote(path: str, data: bytes, lfs: bool = True) -> RemoteFile:
    blob_id = hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()
    sha256 = hashlib.sha256(data).hexdigest() if lfs else None
    return RemoteFile(path=path, size=len(data), blob_id=blob_id, sha256=sha256)


def put(layout: CacheLayout, f: RemoteFile, data: bytes, link: bool = True) -> None:
    blob = layout.blob(f.etag)
    os.makedirs(os.path.dirname(blob), exist_ok=True)
    with open(blob, "wb") as fh:
        fh.write(data)
    if link:
        hub.link_pointer(layout, COMMIT, f)


@pytest.fixture
def layout(tmp_path):
    return CacheLayout(str(tmp_path / "hub"), "org/model")


# --- inputs ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("repo_id", "no-slash", "repo_id (sglang_model or the profile's model)='no-slash' is not a Hub model id"),
        ("repo_id", "a/b/c", "'a/b/c' is not a Hub model id"),
        ("revision", "", "revision (sglang_model_revision or the profile's revision)='' is not a revision"),
        ("revision", " main", "' main' is not a revision"),
        ("hf_home", "relative/path", "hf_home (sglang_hf_home)='relative/path' is not an absolute path"),
        ("endpoint", "mirror:8090", "endpoint (sglang_hf_endpoint)='mirror:8090' is not an http(s) URL"),
        ("verify", "md5", "verify='md5'"),
        ("parallelism", 0, "parallelism=0"),
        ("request_timeout", 0, "request_timeout=0"),
        ("disk_reserve_gb", -1, "disk_reserve_gb=-1"),
    ],
)
def test_bad_inputs_name_the_input_the_value_and_the_fix(field, value, needle):
    req = SnapshotRequest(repo_id="org/model", hf_home="/root/.cache/huggingface")
    setattr(req, field, value)
    with pytest.raises(HubError) as err:
        hub.validate_request(req)
    assert needle in err.value.message
    assert ": use" in err.value.message or ": remove" in err.value.message


def test_token_with_white_space_is_refused_without_showing_it():
    req = SnapshotRequest(repo_id="org/model", hf_home="/h", token="hf_secret\n")
    with pytest.raises(HubError) as err:
        hub.validate_request(req)
    assert "hf_secret" not in err.value.message and "white space" in err.value.message


def test_good_inputs_pass():
    hub.validate_request(SnapshotRequest(repo_id="deepseek-ai/DeepSeek-R1", hf_home="/h", revision=COMMIT,
                                         endpoint="http://10.0.0.5:8090"))


def test_patterns_select_like_huggingface_hub():
    files = [RemoteFile(p, 1, "x") for p in ["config.json", "model-1.safetensors", "figures/a.png", "README.md"]]
    assert [f.path for f in hub.select_files(files, [], [])] == [f.path for f in files]
    assert [f.path for f in hub.select_files(files, ["*.json", "*.safetensors"], [])] == [
        "config.json", "model-1.safetensors"]
    assert [f.path for f in hub.select_files(files, [], ["figures/", "*.md"])] == ["config.json", "model-1.safetensors"]


# --- the cache ---------------------------------------------------------------------------------------------------


def test_layout_is_huggingface_hubs(layout, tmp_path):
    assert layout.repo_dir == str(tmp_path / "hub" / "models--org--model")
    assert layout.pointer(COMMIT, "sub/dir/file.json").endswith(f"snapshots/{COMMIT}/sub/dir/file.json")
    assert layout.lock("e" * 64) == str(tmp_path / "hub" / ".locks" / "models--org--model" / ("e" * 64 + ".lock"))


def test_link_is_relative_and_resolves_to_the_blob(layout):
    f = remote("sub/w.safetensors", b"weights")
    put(layout, f, b"weights")
    pointer = layout.pointer(COMMIT, f.path)
    assert not os.path.isabs(os.readlink(pointer))
    assert os.path.realpath(pointer) == os.path.realpath(layout.blob(f.sha256))


def test_quick_check_sees_presence_and_size(layout):
    ok, short, absent = remote("a", b"0123456789"), remote("b", b"abcdefghij"), remote("c", b"zz")
    put(layout, ok, b"0123456789")
    put(layout, short, b"abc")
    states = {s.file.path: s for s in hub.inspect_cache(layout, COMMIT, [ok, short, absent], "quick", 1)}
    assert states["a"].status == "ok" and not states["a"].needs_fetch
    assert states["b"].status == "truncated" and states["b"].bytes_to_fetch == 10
    assert states["c"].status == "missing" and states["c"].bytes_to_fetch == 2


def test_same_size_corruption_passes_quick_and_fails_sha256(layout):
    f = remote("w", b"0123456789")
    put(layout, f, b"0123456789")
    with open(layout.blob(f.etag), "r+b") as fh:
        fh.seek(5)
        fh.write(b"X")
    assert hub.inspect_file(layout, COMMIT, f, "quick").status == "ok"
    state = hub.inspect_file(layout, COMMIT, f, "sha256")
    assert state.status == "corrupt" and "sha256" in state.detail


def test_sha256_check_of_non_lfs_files_uses_the_git_blob_id(layout):
    f = remote("config.json", b'{"a": 1}\n', lfs=False)
    put(layout, f, b'{"a": 1}\n')
    assert hub.inspect_file(layout, COMMIT, f, "sha256").status == "ok"
    with open(layout.blob(f.etag), "wb") as fh:
        fh.write(b'{"a": 2}\n')
    assert hub.inspect_file(layout, COMMIT, f, "sha256").status == "corrupt"


def test_partial_download_counts_towards_what_is_left(layout):
    f = remote("w", b"x" * 100)
    os.makedirs(os.path.dirname(layout.partial(f.etag)))
    with open(layout.partial(f.etag), "wb") as fh:
        fh.write(b"x" * 60)
    state = hub.inspect_file(layout, COMMIT, f, "quick")
    assert state.status == "missing" and state.partial_bytes == 60 and state.bytes_to_fetch == 40


def test_partial_longer_than_the_file_is_not_a_prefix(layout):
    f = remote("w", b"x" * 10)
    os.makedirs(os.path.dirname(layout.partial(f.etag)))
    with open(layout.partial(f.etag), "wb") as fh:
        fh.write(b"x" * 60)
    assert hub.inspect_file(layout, COMMIT, f, "quick").bytes_to_fetch == 10


def test_blob_present_without_link_is_relinked_not_fetched(layout):
    f = remote("w", b"data")
    put(layout, f, b"data", link=False)
    state = hub.inspect_file(layout, COMMIT, f, "quick")
    assert state.status == "relink" and not state.needs_fetch


def test_discard_removes_the_bad_copy_only(layout):
    good, bad = remote("good", b"good"), remote("bad", b"bad!")
    put(layout, good, b"good")
    put(layout, bad, b"ba")
    hub.discard(layout, COMMIT, hub.inspect_file(layout, COMMIT, bad, "quick"))
    assert not os.path.lexists(layout.pointer(COMMIT, "bad")) and not os.path.exists(layout.blob(bad.etag))
    assert os.path.exists(layout.pointer(COMMIT, "good"))


def test_ref_written_for_branches_not_commits(layout):
    assert hub.write_ref(layout, COMMIT, COMMIT, check_mode=False) is False
    assert hub.write_ref(layout, "main", COMMIT, check_mode=True) is True
    assert not os.path.exists(layout.ref("main"))
    assert hub.write_ref(layout, "main", COMMIT, check_mode=False) is True
    with open(layout.ref("main")) as fh:
        assert fh.read() == COMMIT
    assert hub.write_ref(layout, "main", COMMIT, check_mode=False) is False


# --- disk ----------------------------------------------------------------------------------------------------------


def test_disk_check_refuses_with_the_figures():
    req = SnapshotRequest(repo_id="deepseek-ai/DeepSeek-R1", hf_home="/data/hf", disk_reserve_gb=10)
    need, free = 688_586_727_753, 500 * 1024**3
    with pytest.raises(HubError) as err:
        hub.check_disk(req, need, free=free)
    msg = err.value.message
    assert "688586727753 bytes" in msg and f"{free} bytes" in msg and "disk_reserve_gb=10" in msg
    assert "sglang_hf_home" in msg and "/data/hf" in msg
    assert err.value.details == {"bytes_needed": need, "bytes_free": free, "bytes_reserve": 10 * 1024**3}


def test_disk_check_passes_with_room_and_counts_the_reserve():
    req = SnapshotRequest(repo_id="o/m", hf_home="/h", disk_reserve_gb=1)
    assert hub.check_disk(req, 100, free=2 * 1024**3)["bytes_free"] == 2 * 1024**3
    with pytest.raises(HubError):
        hub.check_disk(req, 1024**3 + 1, free=2 * 1024**3)
    assert hub.check_disk(req, 0, free=0)["bytes_needed"] == 0, "nothing to fetch never fails"


def test_free_bytes_of_a_path_that_does_not_exist_yet(tmp_path):
    assert hub.free_bytes(str(tmp_path / "not" / "yet")) > 0


# --- the writer that hashes on the way in -----------------------------------------------------------------------


def test_progress_file_reports_rate_eta_and_state(tmp_path):
    path = tmp_path / "p" / "progress.json"
    progress = hub.Progress(str(path), {"repo": "o/m", "bytes_to_fetch": 1000, "files_to_fetch": 2})
    progress.add(250)
    progress.file_done()
    progress.write("downloading")
    data = json.loads(path.read_text())
    assert data["state"] == "downloading" and data["bytes_fetched"] == 250 and data["percent"] == 25.0
    assert data["files_fetched"] == 1 and data["repo"] == "o/m"
    assert "rate_bytes_per_s" in data and "eta_s" in data
    progress.write("failed", message="boom")
    assert json.loads(path.read_text())["message"] == "boom"


# --- errors from huggingface_hub, explained --------------------------------------------------------------------


def http_error(cls, status, headers=None):
    import httpx2

    request = httpx2.Request("GET", "http://hub.example/api/models/o/m/revision/main")
    response = httpx2.Response(status, headers=headers or {}, request=request)
    return cls("boom", response=response)


def test_errors_are_explained_with_the_input_to_change():
    from huggingface_hub import errors

    req = SnapshotRequest(repo_id="o/m", hf_home="/h", revision="v9", endpoint="http://hub.example", token="t")
    assert "sglang_model_revision" in hub.explain(http_error(errors.RevisionNotFoundError, 404), req, "x").message
    assert "'o/m' was not found" in hub.explain(http_error(errors.RepositoryNotFoundError, 401), req, "x").message
    gated = hub.explain(http_error(errors.GatedRepoError, 403), req, "x").message
    assert "gated and a token was given" in gated and "sglang_hf_token" in gated
    rejected = hub.explain(
        http_error(errors.HfHubHTTPError, 401, {"X-Error-Message": "Invalid credentials in Authorization header"}),
        req, "x").message
    assert "rejected the token" in rejected and "invalid or expired" in rejected
    unreachable = hub.explain(ConnectionError("refused"), req, "resolving").message
    assert "cannot reach the Hub at http://hub.example" in unreachable and "sglang_hf_endpoint" in unreachable


def test_human_bytes():
    assert hub.human_bytes(512) == "512 B"
    assert hub.human_bytes(688_586_727_753) == "641.3 GiB"


def test_remote_file_etag_is_the_blob_name():
    assert remote("w", b"x").etag == hashlib.sha256(b"x").hexdigest()
    assert remote("c", b"x", lfs=False).etag == remote("c", b"x", lfs=False).blob_id
