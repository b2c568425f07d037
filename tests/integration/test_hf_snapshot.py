"""hf_snapshot against a real Hub-protocol server on loopback: the lab's Hub stand-in (olah + gate.py).

Each test runs the module's own entry point as a separate process (as Ansible does on a host), with the
collection on PYTHONPATH, and asserts what is on disk (files, sha256, symlinks) and what the server saw.
A private Hub instance is started for this module on free ports, so that throttling and stats never touch a lab
that is in use.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
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
        self._lfs: dict[tuple[str, str], dict[str, str]] = {}

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
        # Read once per repo and revision (a git process per file): the repositories do not change during the tests.
        if (repo, rev) not in self._lfs:
            self._lfs[(repo, rev)] = self._read_lfs_objects(repo, rev)
        return dict(self._lfs[(repo, rev)])

    def _read_lfs_objects(self, repo: str, rev: str) -> dict[str, str]:
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


def wait_for_quiet_hub(hub, quiet: float = 3.0, timeout: float = 20.0) -> None:
    """Until the hub's request stats stop changing: a killed client's requests still under way on the server (a
    throttled piece takes over a second) are counted when the server ends them, and must not land after a reset."""
    deadline, last, quiet_since = time.monotonic() + timeout, None, time.monotonic()
    while time.monotonic() < deadline:
        now = hub.stats()
        if now != last:
            last, quiet_since = now, time.monotonic()
        elif time.monotonic() - quiet_since >= quiet:
            return
        time.sleep(0.25)
    raise AssertionError(f"the hub still served requests {timeout} s after the client was killed")


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


def partial_maps(blobs: Path) -> dict[str, dict]:
    """etag -> {size, ranges} of every partial file map that downloads left in blobs/."""
    maps = {}
    for p in blobs.glob("*.dcsg-ranges") if blobs.exists() else []:
        try:
            data = json.loads(p.read_text())
        except FileNotFoundError:
            continue  # completed (or adopted) meanwhile
        maps[data["etag"]] = data
    return maps


def partial_bytes(blobs: Path) -> int:
    """Bytes that partial files in blobs/ hold: ranges listed in the maps, or a contiguous .incomplete prefix."""
    if not blobs.exists():
        return 0
    listed = sum(e - s for m in partial_maps(blobs).values() for s, e in m["ranges"])
    prefixes = 0
    for p in blobs.glob("*.incomplete"):
        with contextlib.suppress(FileNotFoundError):
            prefixes += p.stat().st_size
    return listed + prefixes


def merged(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for s, e in sorted(intervals):
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [tuple(pair) for pair in out]


def gaps(size: int, ranges: list) -> list[tuple[int, int]]:
    result, pos = [], 0
    for s, e in merged([tuple(r) for r in ranges]):
        if s > pos:
            result.append((pos, s))
        pos = max(pos, e)
    if pos < size:
        result.append((pos, size))
    return result


def asked_ranges(entry: dict, size: int) -> list[tuple[int, int]]:
    """The byte ranges a client asked for in the server's request log (a GET without Range: the whole file)."""
    asked = []
    for r in entry["ranges"]:
        m = re.match(r"^bytes=(\d+)-(\d*)$", r)
        asked.append((int(m.group(1)), int(m.group(2)) + 1 if m.group(2) else size))
    whole = entry["by_method"].get("GET", 0) - len(entry["ranges"])
    asked.extend([(0, size)] * whole)
    return asked


def tree_etags(hub: Hub) -> dict[str, tuple[str, int]]:
    """path -> (etag, size) as the Hub lists the files (the sha256 for LFS files, the git blob id otherwise)."""
    with urllib.request.urlopen(f"{hub.url}/api/models/{REPO}/tree/{MAIN}?recursive=true", timeout=10) as resp:
        entries = json.loads(resp.read())
    return {e["path"]: ((e.get("lfs") or {}).get("oid") or e["oid"], e["size"]) for e in entries if e["type"] == "file"}


def wait_for_partial_bytes(blobs: Path, proc: subprocess.Popen, seconds: float = 60) -> int:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        kept = partial_bytes(blobs)
        if kept > 0:
            return kept
        time.sleep(0.05)
    return 0


def test_interrupted_download_resumes_asking_only_for_the_missing_ranges(hub, tmp_path):
    hf_home = tmp_path / "hf"
    blobs = hf_home / "hub" / FOLDER / "blobs"
    # Pieces of 64 KiB over 4 connections per file: the shards (about 400 KB) are fetched as ranges.
    args = base_args(hub, hf_home, parallelism=2, connections_per_file=4, split_size=65536)
    # A piece takes over a second: the first ranges file (written a second into a file) lists some pieces, not all.
    hub.control("faults", {"throttle_bps": 50_000})
    cmd, env = module_cmd(tmp_path, args)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if any(len(m["ranges"]) and gaps(m["size"], m["ranges"]) for m in partial_maps(blobs).values()):
            time.sleep(0.3)  # a few pieces under way
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kept = partial_maps(blobs)
    kept_bytes = sum(e - s for m in kept.values() for s, e in m["ranges"])
    assert kept_bytes > 0, "the download never got mid-file"
    # Nothing half-written looks complete: no blob of a partial file, no .incomplete file with holes.
    assert not any((blobs / etag).exists() for etag in kept)
    assert not list(blobs.glob("*.incomplete"))
    done_before = {p.name: p.stat().st_size for p in blobs.iterdir() if "." not in p.name}

    check = run_module(tmp_path, **dict(args, _ansible_check_mode=True))
    assert check["complete"] is False and check["bytes_resumed"] >= max(
        sum(e - s for s, e in m["ranges"]) for m in kept.values()
    )

    wait_for_quiet_hub(hub)
    hub.control("reset", {})
    r = run_module(tmp_path, **args)
    assert r["_rc"] == 0, r.get("msg")
    assert r["bytes_resumed"] == kept_bytes
    assert r["bytes_downloaded"] == r["bytes"] - sum(done_before.values()) - kept_bytes
    assert r["files_ranged"] >= 1
    # The server's request log: for each file, the ranges asked for are exactly what the killed run had not
    # recorded, each byte asked once.
    etags = tree_etags(hub)
    served = resolve_gets(hub.stats())
    assert sum(s["bytes"] for s in served.values()) == r["bytes_downloaded"]
    for path, entry in served.items():
        name = path.split(f"/resolve/{MAIN}/", 1)[1]
        etag, size = etags[name]
        asked = asked_ranges(entry, size)
        missing = gaps(size, kept[etag]["ranges"]) if etag in kept else [(0, size)]
        assert merged(asked) == missing, f"{name}: asked {sorted(asked)}, missing {missing}"
        assert sum(e - s for s, e in asked) == sum(e - s for s, e in missing), f"{name}: a byte asked twice"
    assert snapshot_sha256(hf_home) == hub.lfs_objects()
    assert not [p.name for p in blobs.iterdir() if "." in p.name], "partial files left behind"


def test_server_that_ignores_range_sends_whole_files_and_the_result_says_so(hub, tmp_path):
    hf_home = tmp_path / "hf"
    blobs = hf_home / "hub" / FOLDER / "blobs"
    hub.control("faults", {"throttle_bps": 200_000})
    cmd, env = module_cmd(tmp_path, base_args(hub, hf_home, parallelism=2))
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_partial_bytes(blobs, proc)
    time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kept = partial_bytes(blobs)
    assert kept > 0, "the download never got mid-file"

    hub.control("reset", {})
    hub.control("faults", {"ignore_range": True})  # as olah answers: 200 and the whole file
    progress_file = tmp_path / "progress.json"
    r = run_module(tmp_path, **base_args(hub, hf_home, progress_file=str(progress_file)))
    assert r["_rc"] == 0, r.get("msg")
    assert r["bytes_resumed"] == 0, f"{r['bytes_resumed']} bytes reported as resumed, but the server sent whole files"
    assert r["bytes_discarded"] == kept and r["files_range_ignored"] >= 1
    progress = json.loads(progress_file.read_text())
    assert progress["state"] == "done"
    assert progress["bytes_fetched"] == progress["bytes_to_fetch"] == r["bytes_downloaded"]
    assert progress["percent"] == 100.0
    assert snapshot_sha256(hf_home) == hub.lfs_objects()
    assert not [p.name for p in blobs.iterdir() if "." in p.name], "partial files left behind"


# A filesystem whose file locks do nothing (some network filesystems): every flock succeeds at once.
NO_LOCKS = "import fcntl\n\nfcntl.flock = lambda fd, op: None\n"


def shared_cmd(tmp_path: Path, args: dict, locks: bool) -> tuple[list[str], dict]:
    cmd, env = module_cmd(tmp_path, args)
    if not locks:
        site = tmp_path / "no-locks"
        site.mkdir(exist_ok=True)
        (site / "sitecustomize.py").write_text(NO_LOCKS)
        env["PYTHONPATH"] = f"{site}{os.pathsep}{env['PYTHONPATH']}"
    return cmd, env


# With working file locks the hosts only wait for each other (the next test); with locks that do nothing (some network
# filesystems) they download the same files at once, which is the case that must still end right. SHARED_CACHE_LOCKS=1
# runs it with working locks.
def test_two_hosts_sharing_one_cache_volume_killed_at_seeded_points_end_with_correct_blobs(hub, tmp_path):
    locks = os.environ.get("SHARED_CACHE_LOCKS") == "1"
    seed = int(os.environ.get("SHARED_CACHE_SEED") or random.randrange(1 << 32))
    rng = random.Random(seed)
    shared = tmp_path / "shared-volume"
    blobs = shared / "hub" / FOLDER / "blobs"
    args = base_args(hub, shared, parallelism=4, connections_per_file=3, split_size=65536, verify="sha256")
    hub.control("faults", {"throttle_bps": 400_000})

    def start(name: str) -> subprocess.Popen:
        cmd, env = shared_cmd(tmp_path, args, locks)
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    # Both hosts start together and each is killed at a seeded point (seconds after its start, after the interpreter
    # and huggingface_hub are loaded, so that the kill lands mid-download).
    for rnd in (1,):
        kills = {name: round(rng.uniform(1.2, 2.4), 2) for name in ("host-a", "host-b")}
        print(f"seed {seed} (rerun with SHARED_CACHE_SEED={seed}), locks={'flock' if locks else 'none'}, "
              f"round {rnd}: kill after {kills} s")
        procs = {name: start(name) for name in kills}
        began = time.monotonic()
        for name, at in sorted(kills.items(), key=lambda kv: kv[1]):
            time.sleep(max(0.0, began + at - time.monotonic()))
            procs[name].send_signal(signal.SIGKILL)
        for proc in procs.values():
            proc.communicate(timeout=60)
    hub.control("faults", {"throttle_bps": 0})
    # Both again, to the end, at the same time.
    procs = {name: start(name) for name in ("host-a", "host-b")}
    results = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        results[name] = json.loads(out)
        assert not results[name].get("failed"), f"{name}: {results[name].get('msg')}\n{err[-2000:]}"
    assert all(r["complete"] for r in results.values())
    assert snapshot_sha256(shared) == hub.lfs_objects()
    # Every blob is what its name says (the sha256 for LFS files), and nothing partial is left.
    etags = {etag for etag, _size in tree_etags(hub).values()}
    names = sorted(p.name for p in blobs.iterdir())
    assert names == sorted(etags), f"left in blobs/: {sorted(set(names) - etags)}"
    for p in blobs.iterdir():
        if len(p.name) == 64:
            assert hashlib.sha256(p.read_bytes()).hexdigest() == p.name


def test_a_run_that_only_waited_for_another_hosts_download_reports_nothing_resumed(hub, tmp_path):
    shared = tmp_path / "shared-volume"
    blobs = shared / "hub" / FOLDER / "blobs"
    args = base_args(hub, shared, parallelism=16)
    hub.control("faults", {"throttle_bps": 100_000})  # a shard takes about 4 s: the second host starts meanwhile
    cmd, env = module_cmd(tmp_path, args)
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert wait_for_partial_bytes(blobs, first) > 0, "the first host never got mid-file"
    # The second host starts while the first holds every file's lock with part of it on disk: it waits.
    second = run_module(tmp_path, **args)
    out, err = first.communicate(timeout=120)
    assert json.loads(out).get("complete") is True, f"{out}\n{err[-2000:]}"
    assert second["_rc"] == 0, second.get("msg")
    assert second["bytes_resumed"] == 0, f"{second['bytes_resumed']} bytes reported as resumed by a run that waited"
    assert second["bytes_downloaded"] == 0
    assert second["files_completed_elsewhere"] == second["files_to_fetch"] > 0
    assert snapshot_sha256(shared) == hub.lfs_objects()


def test_hub_outage_mid_download_fails_clearly_and_a_new_run_completes(hub, tmp_path):
    hf_home = tmp_path / "hf"
    blobs = hf_home / "hub" / FOLDER / "blobs"
    hub.control("faults", {"throttle_bps": 300_000})
    cmd, env = module_cmd(tmp_path, base_args(hub, hf_home, parallelism=2, request_timeout=3,
                                              progress_file=str(tmp_path / "progress.json")))
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (blobs.exists() and any(blobs.glob("*.dcsg-part"))):
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
    assert "revision (sglang_model_revision or the profile's revision)='no-such-branch' was not found in " \
           f"{REPO} at {hub.url} (branches: main; tags: v1)" in r["msg"]
    assert all_files(tmp_path / "hf") == []


def test_unknown_branch_at_a_mirror_that_answers_repo_not_found_is_still_an_unknown_revision(hub, tmp_path):
    hub.control("faults", {"mirror_errors": True})  # olah's own answer: 401 RepoNotFound for an unknown branch
    r = run_module(tmp_path, **base_args(hub, tmp_path / "hf", revision="no-such-branch"))
    assert r["_rc"] == 1
    assert "repo_id (sglang_model or the profile's model)=" not in r["msg"], r["msg"]
    assert "revision (sglang_model_revision or the profile's revision)='no-such-branch' was not found in " \
           f"{REPO} at {hub.url} (branches: main; tags: v1)" in r["msg"]
    # An unknown repository: olah lists no refs for it either (404 EntryNotFound), so which input is wrong is unknown,
    # and the message says so instead of guessing.
    r = run_module(tmp_path, **base_args(hub, tmp_path / "hf", repo_id="datacrunch-lab/no-such-model",
                                         revision="no-such-branch"))
    assert r["_rc"] == 1
    assert f"{hub.url} did not find repo_id (sglang_model or the profile's model)='datacrunch-lab/no-such-model' at " \
           "revision (sglang_model_revision or the profile's revision)='no-such-branch' (error code RepoNotFound) " \
           "and gives no refs listing to tell which of the two is wrong" in r["msg"]
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
