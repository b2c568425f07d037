"""hf_snapshot against a real Hub-protocol server on loopback: the lab's Hub stand-in (olah + gate.py).

Each test runs the module's own entry point as a separate process (as Ansible does on a host), with the
collection on PYTHONPATH, and asserts what is on disk (files, sha256, symlinks) and what the server saw.
A private Hub instance is started for this module on free ports, so that throttling and stats never touch a lab
that is in use.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
HUB_SH = REPO_ROOT / "tests" / "lab" / "hub" / "hub.sh"
MODULE = REPO_ROOT / "plugins" / "modules" / "hf_snapshot.py"
REPO = "datacrunch-lab/tiny-deepseek-r1"
GATED = "datacrunch-lab/tiny-deepseek-r1-gated"
MAIN = "3708d8ea286d0c3779da69819147dd2b2c171273"
V1 = "d4b2603dbe40f660f91af0dc0f7e9316efeb55c7"
FOLDER = "models--datacrunch-lab--tiny-deepseek-r1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Hub:
    def __init__(self, state: Path) -> None:
        self.port = free_port()
        self.env = dict(os.environ, HUB_PORT=str(self.port), HUB_OLAH_PORT=str(free_port()), HUB_STATE_DIR=str(state))
        self.state = state
        self.url = f"http://127.0.0.1:{self.port}"

    def sh(self, *args: str) -> str:
        return subprocess.run([str(HUB_SH), *args], env=self.env, check=True, capture_output=True, text=True).stdout

    def control(self, path: str, data: dict | None = None) -> dict:
        body = json.dumps(data or {}).encode() if data is not None or path != "stats" else None
        req = urllib.request.Request(f"{self.url}/_lab/{path}", data=body, method="POST" if body else "GET")
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def stats(self) -> dict:
        return self.control("stats")["stats"]

    def lfs_objects(self, repo: str = REPO, rev: str = "main") -> dict[str, str]:
        """path -> sha256 of every LFS file of the repo at rev, read from the git repository the server serves."""
        git = self.state / "mirrors" / "models" / repo
        out = subprocess.run(["git", "-C", str(git), "ls-tree", "-r", "--name-only", rev],
                             check=True, capture_output=True, text=True).stdout.split()
        result = {}
        for path in out:
            blob = subprocess.run(["git", "-C", str(git), "show", f"{rev}:{path}"], check=True,
                                  capture_output=True).stdout
            m = re.match(rb"version https://git-lfs.github.com/spec/v1\noid sha256:([0-9a-f]{64})\n", blob)
            result[path] = m.group(1).decode() if m else hashlib.sha256(blob).hexdigest()
        return result


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    if shutil.which("git") is None:
        pytest.fail("git is needed to build the Hub stand-in's repositories: apt-get install git")
    h = Hub(tmp_path_factory.mktemp("hub-state"))
    h.sh("start")
    yield h
    h.sh("stop")


@pytest.fixture(autouse=True)
def reset_hub(hub):
    hub.control("reset", {})
    yield


def module_cmd(tmp_path: Path, args: dict) -> tuple[list[str], dict]:
    args_file = tmp_path / f"args-{time.monotonic_ns()}.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    env["PYTHONPATH"] = str(REPO_ROOT / "collections")
    return [sys.executable, str(MODULE), str(args_file)], env


def run_module(tmp_path: Path, **args) -> dict:
    cmd, env = module_cmd(tmp_path, args)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    try:
        result = json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"module printed no JSON (rc={proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    result["_rc"] = proc.returncode
    result["_stdout"] = proc.stdout
    result["_stderr"] = proc.stderr
    return result


def base_args(hub: Hub, hf_home: Path, **extra) -> dict:
    args = {"repo_id": REPO, "hf_home": str(hf_home), "endpoint": hub.url, "disk_reserve_gb": 0.01}
    args.update(extra)
    return args


def snapshot_sha256(hf_home: Path, commit: str = MAIN, folder: str = FOLDER) -> dict[str, str]:
    snap = hf_home / "hub" / folder / "snapshots" / commit
    return {
        str(p.relative_to(snap)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(snap.rglob("*"))
        if p.is_file()
    }


def blob_of(hf_home: Path, name: str, commit: str = MAIN) -> Path:
    return (hf_home / "hub" / FOLDER / "snapshots" / commit / name).resolve()


def all_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


def resolve_gets(stats: dict) -> dict[str, dict]:
    return {p: s for p, s in stats.items() if "/resolve/" in p and s["by_method"].get("GET")}


# ---------------------------------------------------------------------------------------------------------------------


def test_fresh_download_lands_in_the_hf_cache_exactly_as_the_hub_lists_it(hub, tmp_path):
    hf_home = tmp_path / "hf"
    r = run_module(tmp_path, **base_args(hub, hf_home, progress_file=str(tmp_path / "progress.json")))
    assert r["_rc"] == 0, r.get("msg")
    assert r["changed"] is True and r["complete"] is True
    assert r["commit"] == MAIN
    assert r["path"] == str(hf_home / "hub" / FOLDER / "snapshots" / MAIN)
    expected = hub.lfs_objects()
    assert snapshot_sha256(hf_home) == expected
    assert r["files"] == len(expected) == 16
    assert r["bytes_downloaded"] == r["bytes"] == sum(
        (hf_home / "hub" / FOLDER / "snapshots" / MAIN / p).stat().st_size for p in expected
    )
    # Blobs are named by the Hub's ETag (sha256 for LFS files) and the snapshot holds relative symlinks to them.
    shard = hf_home / "hub" / FOLDER / "snapshots" / MAIN / "model-00001-of-00008.safetensors"
    assert shard.is_symlink() and not os.path.isabs(os.readlink(shard))
    assert shard.resolve().name == expected["model-00001-of-00008.safetensors"]
    assert (hf_home / "hub" / FOLDER / "refs" / "main").read_text() == MAIN
    # The shards are real safetensors files: header length, JSON header, tensors named as DeepSeek names them.
    raw = shard.read_bytes()
    (header_len,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + header_len])
    assert any(k.startswith("model.") for k in header)
    index = json.loads((shard.parent / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"].values()) == {f"model-{i:05d}-of-00008.safetensors" for i in range(1, 9)}
    progress = json.loads((tmp_path / "progress.json").read_text())
    assert progress["state"] == "done" and progress["bytes_fetched"] == r["bytes_downloaded"]
    # huggingface_hub itself finds the snapshot offline, as SGLang will with HF_HUB_OFFLINE=1.
    code = (
        "import huggingface_hub,sys;"
        f"print(huggingface_hub.snapshot_download({REPO!r}, revision={MAIN!r}, local_files_only=True))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_HOME=str(hf_home), HF_HUB_OFFLINE="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == r["path"]


def test_second_run_changes_nothing_and_downloads_nothing(hub, tmp_path):
    hf_home = tmp_path / "hf"
    assert run_module(tmp_path, **base_args(hub, hf_home))["_rc"] == 0
    before = {p: os.stat(p).st_mtime_ns for p in (hf_home / "hub").rglob("*")}
    hub.control("reset", {})
    r = run_module(tmp_path, **base_args(hub, hf_home))
    assert r["_rc"] == 0 and r["changed"] is False and r["complete"] is True
    assert r["bytes_downloaded"] == 0 and r["files_to_fetch"] == 0
    assert resolve_gets(hub.stats()) == {}, "a complete snapshot must not download a byte"
    assert {p: os.stat(p).st_mtime_ns for p in (hf_home / "hub").rglob("*")} == before
    check = run_module(tmp_path, **base_args(hub, hf_home, _ansible_check_mode=True, _ansible_diff=True))
    assert check["changed"] is False and check["complete"] is True
    assert check["diff"]["before"] == check["diff"]["after"] == {"complete": True, "missing_or_bad": []}


def test_check_mode_reports_what_would_be_fetched_and_writes_nothing(hub, tmp_path):
    hf_home = tmp_path / "hf"
    r = run_module(tmp_path, **base_args(hub, hf_home, _ansible_check_mode=True,
                                         progress_file=str(tmp_path / "p.json")))
    assert r["_rc"] == 0, r.get("msg")
    assert r["changed"] is True and r["complete"] is False
    assert r["files_to_fetch"] == 16 and r["bytes_to_fetch"] == r["bytes"] > 3_000_000
    assert not hf_home.exists() and not (tmp_path / "p.json").exists()
    assert resolve_gets(hub.stats()) == {}


def test_interrupted_download_resumes_with_only_the_missing_bytes(hub, tmp_path):
    hf_home = tmp_path / "hf"
    blobs = hf_home / "hub" / FOLDER / "blobs"
    hub.control("faults", {"throttle_bps": 400_000})
    cmd, env = module_cmd(tmp_path, base_args(hub, hf_home, parallelism=2))
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    partial = None
    while time.monotonic() < deadline and partial is None:
        for p in blobs.glob("*.incomplete") if blobs.exists() else []:
            if p.stat().st_size > 0:
                partial = p
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert partial is not None, "the download never got mid-file"
    hub.control("faults", {"throttle_bps": 0})
    kept = partial.stat().st_size
    done_before = {p.name: p.stat().st_size for p in blobs.iterdir() if not p.name.endswith(".incomplete")}

    # A killed run leaves nothing that looks complete: the partial file is not in the snapshot.
    check = run_module(tmp_path, **base_args(hub, hf_home, _ansible_check_mode=True))
    assert check["complete"] is False and check["bytes_resumed"] >= kept

    hub.control("reset", {})
    r = run_module(tmp_path, **base_args(hub, hf_home))
    assert r["_rc"] == 0, r.get("msg")
    all_bytes = r["bytes"]
    assert r["bytes_resumed"] >= kept
    assert r["bytes_downloaded"] == all_bytes - sum(done_before.values()) - r["bytes_resumed"]
    served = resolve_gets(hub.stats())
    assert sum(s["bytes"] for s in served.values()) == r["bytes_downloaded"]
    ranges = [rng for s in served.values() for rng in s["ranges"]]
    assert f"bytes={kept}-" in ranges, f"the partial file was not resumed where it stopped: {ranges}"
    assert snapshot_sha256(hf_home) == hub.lfs_objects()
    assert not list(blobs.glob("*.incomplete"))


def test_hub_outage_mid_download_fails_clearly_and_a_new_run_completes(hub, tmp_path):
    hf_home = tmp_path / "hf"
    blobs = hf_home / "hub" / FOLDER / "blobs"
    hub.control("faults", {"throttle_bps": 300_000})
    cmd, env = module_cmd(tmp_path, base_args(hub, hf_home, parallelism=2, request_timeout=3,
                                              progress_file=str(tmp_path / "progress.json")))
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (blobs.exists() and any(blobs.glob("*.incomplete"))):
            time.sleep(0.05)
        hub.sh("stop")
        out, _err = proc.communicate(timeout=120)
    finally:
        hub.sh("start")
    result = json.loads(out)
    assert result["failed"] is True
    assert "a new run fetches only what is missing" in result["msg"]
    assert json.loads((tmp_path / "progress.json").read_text())["state"] == "failed"
    # Nothing half-written is presented as complete: the check says what is still missing.
    check = run_module(tmp_path, **base_args(hub, hf_home, _ansible_check_mode=True))
    assert check["complete"] is False and check["files_to_fetch"] > 0
    r = run_module(tmp_path, **base_args(hub, hf_home))
    assert r["_rc"] == 0 and r["complete"] is True
    assert snapshot_sha256(hf_home) == hub.lfs_objects()


def test_flipped_byte_is_caught_by_sha256_and_repaired(hub, tmp_path):
    hf_home = tmp_path / "hf"
    assert run_module(tmp_path, **base_args(hub, hf_home))["_rc"] == 0
    blob = blob_of(hf_home, "model-00003-of-00008.safetensors")
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))

    quick = run_module(tmp_path, **base_args(hub, hf_home))
    assert quick["changed"] is False, "the quick check looks at sizes only: same-size corruption passes it"

    r = run_module(tmp_path, **base_args(hub, hf_home, verify="sha256"))
    assert r["_rc"] == 0, r.get("msg")
    assert r["changed"] is True
    assert [(x["path"], x["status"]) for x in r["repaired"]] == [("model-00003-of-00008.safetensors", "corrupt")]
    assert r["bytes_downloaded"] == len(data)
    assert snapshot_sha256(hf_home) == hub.lfs_objects()
    again = run_module(tmp_path, **base_args(hub, hf_home, verify="sha256"))
    assert again["changed"] is False and again["bytes_downloaded"] == 0


def test_truncated_shard_is_caught_by_the_quick_check(hub, tmp_path):
    hf_home = tmp_path / "hf"
    assert run_module(tmp_path, **base_args(hub, hf_home))["_rc"] == 0
    blob = blob_of(hf_home, "model-00005-of-00008.safetensors")
    size = blob.stat().st_size
    with open(blob, "r+b") as fh:
        fh.truncate(size // 3)
    r = run_module(tmp_path, **base_args(hub, hf_home))
    assert r["_rc"] == 0, r.get("msg")
    assert [(x["path"], x["status"]) for x in r["repaired"]] == [("model-00005-of-00008.safetensors", "truncated")]
    assert r["bytes_downloaded"] == size
    assert snapshot_sha256(hf_home) == hub.lfs_objects()


def test_disk_too_small_is_refused_before_any_byte_is_written(hub, tmp_path):
    small = tmp_path / "small"
    small.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(small)], capture_output=True, check=False
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        r = run_module(tmp_path, **base_args(hub, small / "hf", disk_reserve_gb=0))
        assert r["_rc"] == 1 and r["failed"] is True
        assert "not enough disk space" in r["msg"]
        assert r["bytes_needed"] > r["bytes_free"]
        assert str(r["bytes_needed"]) in r["msg"] and str(r["bytes_free"]) in r["msg"]
        assert all_files(small) == []
        assert resolve_gets(hub.stats()) == {}
    finally:
        subprocess.run(["umount", str(small)], check=True)


def test_wrong_token_is_refused_before_anything_is_written(hub, tmp_path):
    hf_home = tmp_path / "hf"
    secret = "hf_thisTokenIsNotKnownAnywhere12345"
    r = run_module(tmp_path, **base_args(hub, hf_home, token=secret))
    assert r["_rc"] == 1
    assert "rejected the token" in r["msg"] and "sglang_hf_token" in r["msg"]
    assert secret not in r["_stdout"] + r["_stderr"]
    assert all_files(hf_home) == []


def test_gated_repo_needs_a_token_with_access(hub, tmp_path):
    hf_home = tmp_path / "hf"
    folder = hf_home / "hub" / "models--datacrunch-lab--tiny-deepseek-r1-gated"
    none = run_module(tmp_path, **base_args(hub, hf_home, repo_id=GATED))
    assert none["_rc"] == 1 and "is gated and no token was given" in none["msg"]
    assert all_files(hf_home) == []

    no_access = hub.sh("token", "no-access").strip()
    denied = run_module(tmp_path, **base_args(hub, hf_home, repo_id=GATED, token=no_access))
    assert denied["_rc"] == 1 and "gated" in denied["msg"] and no_access not in denied["_stdout"]
    assert "its account has not accepted the model's conditions" in denied["msg"], denied["msg"]
    assert "with access to it" not in denied["msg"]
    assert all_files(hf_home) == []

    granted = hub.sh("token", "granted").strip()
    progress = tmp_path / "progress.json"
    ok = run_module(tmp_path, **base_args(hub, hf_home, repo_id=GATED, token=granted, progress_file=str(progress)))
    assert ok["_rc"] == 0, ok.get("msg")
    assert ok["gated"] is True and ok["complete"] is True
    assert snapshot_sha256(hf_home, ok["commit"], folder.name) == hub.lfs_objects(GATED)
    for text in (ok["_stdout"], ok["_stderr"], progress.read_text()):
        assert granted not in text


def test_unknown_repo(hub, tmp_path):
    r = run_module(tmp_path, **base_args(hub, tmp_path / "hf", repo_id="datacrunch-lab/no-such-model"))
    assert r["_rc"] == 1
    assert "repo_id (sglang_model or the profile's model)='datacrunch-lab/no-such-model' was not found" in r["msg"]
    assert all_files(tmp_path / "hf") == []


def test_unknown_revision(hub, tmp_path):
    r = run_module(tmp_path, **base_args(hub, tmp_path / "hf", revision="no-such-branch"))
    assert r["_rc"] == 1
    assert "revision (sglang_model_revision or the profile's revision)='no-such-branch' does not exist" in r["msg"]
    assert all_files(tmp_path / "hf") == []


def test_unreachable_server(tmp_path):
    r = run_module(tmp_path, repo_id=REPO, hf_home=str(tmp_path / "hf"), endpoint=f"http://127.0.0.1:{free_port()}",
                   request_timeout=3)
    assert r["_rc"] == 1
    assert "cannot reach the Hub at http://127.0.0.1:" in r["msg"] and "sglang_hf_endpoint" in r["msg"]
    assert all_files(tmp_path / "hf") == []


def test_bad_inputs_fail_naming_the_input(tmp_path):
    r = run_module(tmp_path, repo_id="not-a-repo-id", hf_home=str(tmp_path / "hf"))
    assert r["_rc"] == 1 and "repo_id" in r["msg"] and "'not-a-repo-id'" in r["msg"] and "organisation/name" in r["msg"]
    r = run_module(tmp_path, repo_id=REPO, hf_home=str(tmp_path / "hf"), endpoint="ftp://mirror")
    assert r["_rc"] == 1 and "endpoint (sglang_hf_endpoint)='ftp://mirror'" in r["msg"]


def test_tag_and_commit_revisions_resolve_and_pin(hub, tmp_path):
    hf_home = tmp_path / "hf"
    tag = run_module(tmp_path, **base_args(hub, hf_home, revision="v1"))
    assert tag["_rc"] == 0 and tag["commit"] == V1
    assert (hf_home / "hub" / FOLDER / "refs" / "v1").read_text() == V1
    assert snapshot_sha256(hf_home, V1) == hub.lfs_objects(rev="v1")
    pinned = run_module(tmp_path, **base_args(hub, hf_home, revision=V1))
    assert pinned["_rc"] == 0 and pinned["changed"] is False and pinned["commit"] == V1
    # The second commit changed only README.md: every other blob is shared, one file is fetched.
    main = run_module(tmp_path, **base_args(hub, hf_home, revision="main"))
    assert main["commit"] == MAIN and main["files_to_fetch"] == 1


def test_allow_patterns_select_files(hub, tmp_path):
    hf_home = tmp_path / "hf"
    r = run_module(tmp_path, **base_args(hub, hf_home, allow_patterns=["*.json"], ignore_patterns=["tokenizer*"]))
    assert r["_rc"] == 0
    assert sorted(snapshot_sha256(hf_home)) == ["config.json", "generation_config.json", "model.safetensors.index.json"]


def test_peer_serves_its_verified_snapshot_to_another_host(hub, tmp_path):
    seed, peer = tmp_path / "seed", tmp_path / "peer"
    assert run_module(tmp_path, **base_args(hub, seed))["_rc"] == 0
    port = free_port()
    stop = tmp_path / "stop"
    token = "one-time-peer-token-0123456789"
    serve = {"address": "127.0.0.1", "port": port, "token": token, "seconds": 120, "stop_file": str(stop)}
    cmd, env = module_cmd(tmp_path, base_args(hub, seed, serve=serve))
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        peer_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        hub.control("reset", {})
        bad = run_module(tmp_path, repo_id=REPO, hf_home=str(peer), endpoint=peer_url, revision=MAIN,
                         token="wrong", disk_reserve_gb=0.01)
        assert bad["_rc"] == 1 and "rejected the token" in bad["msg"]
        r = run_module(tmp_path, repo_id=REPO, hf_home=str(peer), endpoint=peer_url, revision=MAIN, token=token,
                       disk_reserve_gb=0.01, verify="sha256")
        assert r["_rc"] == 0, r.get("msg")
        assert r["commit"] == MAIN and r["bytes_downloaded"] == r["bytes"]
        assert snapshot_sha256(peer) == hub.lfs_objects()
        assert resolve_gets(hub.stats()) == {}, "the peer must not download from the Hub"
    finally:
        stop.touch()
        out, _err = server.communicate(timeout=30)
    served = json.loads(out)["served"]
    assert served["stopped_by"] == "stop_file"
    assert served["bytes_served"] == r["bytes"]
