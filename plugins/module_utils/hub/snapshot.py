# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Prefetch one revision of a Hugging Face Hub repository into a host's Hugging Face cache (hf_snapshot's logic).

The snapshot lands where huggingface_hub (and so SGLang) looks for it: ``<hf_home>/hub/models--org--name/`` with
``blobs/<etag>`` (the sha256 for LFS files, the git blob id otherwise), ``snapshots/<commit>/<path>`` symlinks to
the blobs and ``refs/<branch or tag>``.

The Hub's API is spoken to through huggingface_hub: ``HfApi.model_info`` resolves the revision,
``HfApi.list_repo_tree`` lists files with sizes and sha256, ``get_hf_file_metadata`` gives each file's ETag and
location (a CDN after a redirect), ``build_hf_headers`` the headers. The bytes move in ``hub_ranged``: large files as
ranges over several connections, small ones as one stream, always into partial files of this process's own, never
into ``blobs/<etag>.incomplete`` (which older huggingface_hub versions resume by its size); huggingface_hub >= 1.x's
``hf_hub_download`` writes to a per-process temporary file that it deletes on failure, so an interrupted 4 GB shard
would start from zero again. The blob names, lock files and symlinks follow huggingface_hub's cache layout, so either
can read what the other wrote.

Everything that only looks at the filesystem (the cache layout, the quick and sha256 checks, the plan, the disk
check, progress) is plain Python and unit-tested without a server.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from fnmatch import fnmatch
from typing import Any, Callable, Dict, List, Optional
from urllib.parse import urlsplit

from ansible_collections.datacrunch.sglang.plugins.module_utils.hub.ranged import (
    STALE_SECONDS,
    HTTPRanges,
    PartFile,
    RangedDownload,
    RangeIgnored,
    abandoned_parts,
    kept_bytes,
    remove_abandoned_parts,
)

COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
REPO_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
DEFAULT_ENDPOINT = "https://huggingface.co"
READ_CHUNK = 8 * 1024 * 1024
GIB = 1024**3
MIN_SPLIT_SIZE = 64 * 1024

# The role's shared inputs behind the module's options, named in error messages so that users know what to change.
ROLE_INPUTS = {
    "repo_id": "sglang_model or the profile's model",
    "revision": "sglang_model_revision or the profile's revision",
    "hf_home": "sglang_hf_home",
    "token": "sglang_hf_token",
    "endpoint": "sglang_hf_endpoint",
}


class HubError(Exception):
    """A failure explained for the user: what happened, with which value, and what to do."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


def option(name: str) -> str:
    role_input = ROLE_INPUTS.get(name)
    return f"{name} ({role_input})" if role_input else name


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


# --------------------------------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class SnapshotRequest:
    repo_id: str
    hf_home: str
    revision: str = "main"
    allow_patterns: List[str] = field(default_factory=list)
    ignore_patterns: List[str] = field(default_factory=list)
    token: Optional[str] = None
    endpoint: str = ""
    parallelism: int = 8
    connections_per_file: int = 8
    split_size: int = 64 * 1024 * 1024
    request_timeout: float = 30.0
    verify: str = "quick"
    disk_reserve_gb: float = 10.0
    progress_file: Optional[str] = None
    check_mode: bool = False

    @property
    def endpoint_url(self) -> str:
        return (self.endpoint or DEFAULT_ENDPOINT).rstrip("/")

    @property
    def cache_dir(self) -> str:
        return os.path.join(self.hf_home, "hub")


def validate_request(req: SnapshotRequest) -> None:
    """Every bad input fails here, before anything is contacted or written."""
    if not REPO_ID_RE.match(req.repo_id or ""):
        raise HubError(
            f"{option('repo_id')}={req.repo_id!r} is not a Hub model id: use 'organisation/name', "
            "e.g. 'deepseek-ai/DeepSeek-R1'"
        )
    if not req.revision or req.revision != req.revision.strip() or ".." in req.revision:
        raise HubError(
            f"{option('revision')}={req.revision!r} is not a revision: use a branch (main), a tag or a "
            "40-character commit id"
        )
    if not os.path.isabs(req.hf_home or ""):
        raise HubError(
            f"{option('hf_home')}={req.hf_home!r} is not an absolute path: use e.g. /root/.cache/huggingface"
        )
    if req.endpoint:
        parts = urlsplit(req.endpoint)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise HubError(
                f"{option('endpoint')}={req.endpoint!r} is not an http(s) URL: use e.g. http://10.0.0.5:8090 "
                "(a mirror) or leave it empty for huggingface.co"
            )
    if req.verify not in ("quick", "sha256"):
        raise HubError(f"verify={req.verify!r}: use 'quick' (presence and sizes) or 'sha256' (every byte)")
    if req.parallelism < 1 or req.parallelism > 64:
        raise HubError(f"parallelism={req.parallelism}: use 1 to 64 parallel downloads")
    if req.connections_per_file < 1 or req.connections_per_file > 64:
        raise HubError(f"connections_per_file={req.connections_per_file}: use 1 (one stream per file) to 64")
    if req.split_size < MIN_SPLIT_SIZE:
        raise HubError(
            f"split_size={req.split_size}: use at least {MIN_SPLIT_SIZE} bytes (e.g. 67108864 for 64 MiB pieces)"
        )
    if req.request_timeout <= 0:
        raise HubError(f"request_timeout={req.request_timeout}: use a positive number of seconds")
    if req.disk_reserve_gb < 0:
        raise HubError(f"disk_reserve_gb={req.disk_reserve_gb}: use 0 or more GiB to keep free")
    if req.token is not None and req.token != req.token.strip():
        raise HubError(f"{option('token')} has leading or trailing white space: remove it (the value is not shown)")


# --------------------------------------------------------------------------------------------------------------------
# What the Hub says the snapshot holds
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int
    blob_id: str
    sha256: Optional[str] = None

    @property
    def etag(self) -> str:
        """The blob name huggingface_hub gives the file in the cache (the Hub's ETag)."""
        return self.sha256 or self.blob_id


def select_files(files: List[RemoteFile], allow: List[str], ignore: List[str]) -> List[RemoteFile]:
    """Filter by glob patterns the way huggingface_hub does (a pattern ending in / means everything below)."""

    def expand(patterns: List[str]) -> List[str]:
        return [p + "*" if p.endswith("/") else p for p in patterns]

    allow, ignore = expand(allow), expand(ignore)
    return [
        f
        for f in files
        if (not allow or any(fnmatch(f.path, p) for p in allow)) and not any(fnmatch(f.path, p) for p in ignore)
    ]


# --------------------------------------------------------------------------------------------------------------------
# The cache on disk
# --------------------------------------------------------------------------------------------------------------------


class CacheLayout:
    def __init__(self, cache_dir: str, repo_id: str) -> None:
        self.cache_dir = cache_dir
        self.repo_id = repo_id
        self.folder_name = "models--" + repo_id.replace("/", "--")
        self.repo_dir = os.path.join(cache_dir, self.folder_name)

    @property
    def blobs_dir(self) -> str:
        return os.path.join(self.repo_dir, "blobs")

    def blob(self, etag: str) -> str:
        return os.path.join(self.blobs_dir, etag)

    def partial(self, etag: str) -> str:
        return self.blob(etag) + ".incomplete"

    def snapshot_dir(self, commit: str) -> str:
        return os.path.join(self.repo_dir, "snapshots", commit)

    def pointer(self, commit: str, path: str) -> str:
        return os.path.join(self.snapshot_dir(commit), *path.split("/"))

    def ref(self, revision: str) -> str:
        return os.path.join(self.repo_dir, "refs", *revision.split("/"))

    def lock(self, etag: str) -> str:
        # Same lock file as huggingface_hub's, so that a concurrent hf_hub_download of the same blob waits.
        return os.path.join(self.cache_dir, ".locks", self.folder_name, f"{etag}.lock")


def git_blob_id(path: str, size: int) -> str:
    h = hashlib.sha1(f"blob {size}\0".encode(), usedforsecurity=False)
    with open(path, "rb") as fh:
        while chunk := fh.read(READ_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(READ_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def content_digest(path: str, f: RemoteFile) -> str:
    """sha256 for LFS files, the git blob id for the others: what the Hub lists for the file."""
    return sha256_file(path) if f.sha256 else git_blob_id(path, f.size)


def content_matches(path: str, f: RemoteFile) -> bool:
    """Every byte checked: sha256 for LFS files, the git blob id for the others."""
    return content_digest(path, f) == (f.sha256 or f.blob_id)


@dataclass
class FileState:
    file: RemoteFile
    status: str  # ok | missing | truncated | wrong_size | corrupt | relink
    partial_bytes: int = 0
    detail: str = ""

    @property
    def needs_fetch(self) -> bool:
        return self.status not in ("ok", "relink")

    @property
    def bytes_to_fetch(self) -> int:
        return self.file.size - self.partial_bytes if self.needs_fetch else 0


def inspect_file(layout: CacheLayout, commit: str, f: RemoteFile, verify: str) -> FileState:
    """State of one file of the snapshot in the cache: presence and size, plus content with verify=sha256."""
    pointer = layout.pointer(commit, f.path)
    blob = layout.blob(f.etag)
    partial = layout.partial(f.etag)
    partial_bytes = 0
    if os.path.isfile(partial):
        partial_bytes = os.path.getsize(partial)
        if partial_bytes > f.size:
            partial_bytes = 0  # not a prefix of this file: it will be started again
    partial_bytes = max(partial_bytes, kept_bytes(os.path.dirname(blob), f.etag, f.size))

    if os.path.islink(pointer) or os.path.exists(pointer):
        target = os.path.realpath(pointer)
        if not os.path.isfile(target):
            return FileState(f, "missing", partial_bytes, "snapshot link points at a missing blob")
        if os.path.islink(pointer) and os.path.normpath(target) != os.path.normpath(os.path.realpath(blob)):
            # Linked to another blob: right only if that blob is the expected one, which it is not by its name.
            return _state_of_blob(f, blob, partial_bytes, verify, stale_link=True)
        return _state_of_blob(f, target, partial_bytes, verify)
    return _state_of_blob(f, blob, partial_bytes, verify, stale_link=True)


def _state_of_blob(f: RemoteFile, path: str, partial_bytes: int, verify: str, stale_link: bool = False) -> FileState:
    if not os.path.isfile(path):
        return FileState(f, "missing", partial_bytes)
    size = os.path.getsize(path)
    if size != f.size:
        status = "truncated" if size < f.size else "wrong_size"
        return FileState(f, status, partial_bytes, f"{size} bytes on disk, {f.size} expected")
    if verify == "sha256" and not content_matches(path, f):
        kind = "sha256" if f.sha256 else "git blob id"
        return FileState(f, "corrupt", partial_bytes, f"{kind} differs from the Hub's at the same size")
    return FileState(f, "relink" if stale_link else "ok", partial_bytes)


def inspect_cache(
    layout: CacheLayout, commit: str, files: List[RemoteFile], verify: str, workers: int
) -> List[FileState]:
    if verify == "sha256" and workers > 1 and len(files) > 1:
        # hashlib releases the GIL on large buffers: hashing spreads over the cores.
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(lambda f: inspect_file(layout, commit, f, verify), files))
    return [inspect_file(layout, commit, f, verify) for f in files]


def free_bytes(path: str) -> int:
    probe = path
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    return shutil.disk_usage(probe).free


def check_disk(req: SnapshotRequest, bytes_needed: int, free: Optional[int] = None) -> Dict[str, int]:
    """Refuse before writing a byte when what is still missing does not fit with the reserve left free."""
    free = free_bytes(req.cache_dir) if free is None else free
    reserve = int(req.disk_reserve_gb * GIB)
    figures = {"bytes_needed": bytes_needed, "bytes_free": free, "bytes_reserve": reserve}
    if bytes_needed and free - bytes_needed < reserve:
        short = bytes_needed + reserve - free
        raise HubError(
            f"not enough disk space for {req.repo_id} under {option('hf_home')}={req.hf_home}: "
            f"{human_bytes(bytes_needed)} ({bytes_needed} bytes) still to download, {human_bytes(free)} "
            f"({free} bytes) free, {human_bytes(reserve)} must stay free (disk_reserve_gb={req.disk_reserve_gb:.10g}). "
            f"Free {human_bytes(short)}, point the HF home at a larger volume, or narrow allow_patterns",
            **figures,
        )
    return figures


def link_pointer(layout: CacheLayout, commit: str, f: RemoteFile) -> None:
    pointer = layout.pointer(commit, f.path)
    os.makedirs(os.path.dirname(pointer), exist_ok=True)
    target = os.path.relpath(layout.blob(f.etag), os.path.dirname(pointer))
    if os.path.islink(pointer) and os.readlink(pointer) == target:
        return
    # A new link under a name of this process's own, renamed over the old one: another host sharing the volume never
    # sees the entry missing in between.
    tmp = f"{pointer}.{socket.gethostname()}.{os.getpid()}.{threading.get_ident()}.tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    os.symlink(target, tmp)
    os.replace(tmp, pointer)


def discard(layout: CacheLayout, commit: str, state: FileState) -> None:
    """Remove a bad copy so that it is fetched again: the snapshot entry and the blob that was found bad.

    The bad content is either the expected blob or, when the snapshot entry is a plain file, that file itself; a
    blob of another name that a stale link points at may belong to another commit and stays.
    """
    for path in (layout.pointer(commit, state.file.path), layout.blob(state.file.etag)):
        if os.path.islink(path) or os.path.isfile(path):
            os.unlink(path)


def write_ref(layout: CacheLayout, revision: str, commit: str, check_mode: bool) -> bool:
    """refs/<branch or tag> holds the commit, as huggingface_hub writes it. True when it changed."""
    if COMMIT_RE.match(revision):
        return False
    ref = layout.ref(revision)
    try:
        with open(ref, encoding="utf-8") as fh:
            if fh.read().strip() == commit:
                return False
    except OSError:
        pass
    if not check_mode:
        os.makedirs(os.path.dirname(ref), exist_ok=True)
        tmp = f"{ref}.tmp{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(commit)
        os.replace(tmp, ref)
    return True


# --------------------------------------------------------------------------------------------------------------------
# Progress: counted as bytes are written, published as a small JSON file that the role prints while it waits
# --------------------------------------------------------------------------------------------------------------------


class Progress:
    def __init__(self, path: Optional[str], base: Dict[str, Any], interval: float = 1.0) -> None:
        self.path = path
        self.base = dict(base)
        self.interval = interval
        self.lock = threading.Lock()
        self.bytes_fetched = 0
        self.files_done = 0
        self.started = time.monotonic()
        self.samples: List[tuple] = [(self.started, 0)]
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def add(self, nbytes: int) -> None:
        with self.lock:
            self.bytes_fetched += nbytes

    def file_done(self) -> None:
        with self.lock:
            self.files_done += 1

    def expect(self, delta: int) -> None:
        """The bytes still to fetch changed from what the check predicted: a kept partial copy thrown away (a server
        that ignores Range), or a file another process completed meanwhile."""
        with self.lock:
            self.base["bytes_to_fetch"] = max(self.base.get("bytes_to_fetch", 0) + delta, 0)

    def snapshot(self, state: str, **extra: Any) -> Dict[str, Any]:
        now = time.monotonic()
        with self.lock:
            fetched, done = self.bytes_fetched, self.files_done
            self.samples.append((now, fetched))
            # The rate over the last 10 s: an ETA that follows the network, not the whole history.
            while len(self.samples) > 2 and now - self.samples[0][0] > 10:
                self.samples.pop(0)
            t0, b0 = self.samples[0]
        elapsed = now - self.started
        rate = (fetched - b0) / (now - t0) if now > t0 else 0.0
        with self.lock:
            to_fetch = self.base.get("bytes_to_fetch", 0)
        left = max(to_fetch - fetched, 0)
        data = dict(self.base)
        data.update(
            state=state,
            bytes_fetched=fetched,
            files_fetched=done,
            elapsed_s=round(elapsed, 1),
            rate_bytes_per_s=round(rate),
            eta_s=round(left / rate) if rate > 0 else None,
            percent=round(100.0 * fetched / to_fetch, 1) if to_fetch else (100.0 if state == "done" else None),
            updated=time.time(),
            pid=os.getpid(),
        )
        data.update(extra)
        return data

    def write(self, state: str, **extra: Any) -> None:
        if not self.path:
            return
        data = self.snapshot(state, **extra)
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        tmp = f"{self.path}.tmp{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(data, fh)
        os.replace(tmp, self.path)

    def start(self) -> None:
        if not self.path:
            return
        self.write("downloading")

        def loop() -> None:
            while not self._stop.wait(self.interval):
                self.write("downloading")

        self._thread = threading.Thread(target=loop, name="hf-snapshot-progress", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()


# --------------------------------------------------------------------------------------------------------------------
# huggingface_hub: imported late, after the environment it reads at import time is set
# --------------------------------------------------------------------------------------------------------------------


def load_hf(req: SnapshotRequest):
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    # Downloads here are plain HTTP (resumable); Xet is never asked for, also where a mirror cannot serve it.
    os.environ["HF_HUB_DISABLE_XET"] = "1"
    seconds = str(max(1, round(req.request_timeout)))  # huggingface_hub reads these as integers
    os.environ["HF_HUB_DOWNLOAD_TIMEOUT"] = seconds
    os.environ["HF_HUB_ETAG_TIMEOUT"] = seconds
    if req.endpoint:
        os.environ["HF_ENDPOINT"] = req.endpoint_url
    # A token stored on the host (<hf_home>/token, root-only) is found where SGLang finds it too.
    os.environ["HF_HOME"] = req.hf_home
    import huggingface_hub
    from huggingface_hub import constants

    constants.HF_HUB_DOWNLOAD_TIMEOUT = req.request_timeout
    return huggingface_hub


def explain(exc: BaseException, req: SnapshotRequest, what: str) -> HubError:
    """Turn huggingface_hub's exceptions into one message naming the input and the fix."""
    if isinstance(exc, HubError):
        return exc
    from huggingface_hub import errors

    endpoint = req.endpoint_url
    where = f"{req.repo_id} at {endpoint}"
    token_given = "a token was given" if req.token else "no token was given"
    if isinstance(exc, errors.GatedRepoError):
        if req.token:
            problem = ("a token was given, but its account has not accepted the model's conditions (or its request "
                       "is still pending)")
            fix = (f"accept the conditions on {endpoint}/{req.repo_id} with the account of {option('token')}, or "
                   "use a token of an account that has")
        else:
            problem = "no token was given"
            fix = f"set {option('token')} to a token of an account that accepted the model's conditions on " \
                  f"{endpoint}/{req.repo_id}"
        return HubError(
            f"{where} is gated and {problem} ({what}): {fix}",
            http_status=exc.response.status_code if exc.response is not None else None,
        )
    if isinstance(exc, errors.RevisionNotFoundError):
        return HubError(
            f"{option('revision')}={req.revision!r} does not exist in {where}: use a branch (main), a tag or a "
            "40-character commit id of that repo"
        )
    if isinstance(exc, errors.RepositoryNotFoundError):
        return HubError(
            f"{option('repo_id')}={req.repo_id!r} was not found at {endpoint} ({token_given}): check the spelling "
            f"(organisation/name); if the repo is private, set {option('token')} to a token with read access"
        )
    if isinstance(exc, errors.RemoteEntryNotFoundError):
        return HubError(f"{where}: a listed file is gone at the server ({what}); run again to list the files anew")
    if isinstance(exc, errors.HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else None
        server_message = exc.response.headers.get("X-Error-Message", "") if exc.response is not None else ""
        if status == 401:
            return HubError(
                f"{endpoint} rejected the token ({server_message or 'HTTP 401'}) while {what}: "
                f"{option('token')} is invalid or expired; create a new read token",
                http_status=status,
            )
        if status == 403:
            return HubError(
                f"{endpoint} refused access to {req.repo_id} ({server_message or 'HTTP 403'}) while {what}: "
                f"use a token ({option('token')}) whose account may read this repo",
                http_status=status,
            )
        return HubError(f"{endpoint} answered HTTP {status} while {what} for {req.repo_id}: {exc}", http_status=status)
    name = type(exc).__name__
    if "Connect" in name or "Timeout" in name or isinstance(exc, (ConnectionError, TimeoutError)):
        return HubError(
            f"cannot reach the Hub at {endpoint} ({option('endpoint')}) while {what}: {name}: {exc}. "
            "Check the address, the host's network, firewall or proxy"
        )
    return HubError(f"{what} failed for {where}: {name}: {exc}")


def resolve_revision(hf, req: SnapshotRequest) -> Dict[str, Any]:
    api = hf.HfApi(endpoint=req.endpoint_url, token=req.token or None)
    try:
        info = api.model_info(req.repo_id, revision=req.revision, timeout=req.request_timeout)
    except Exception as exc:
        from huggingface_hub import errors

        if isinstance(exc, (errors.RevisionNotFoundError, errors.RepositoryNotFoundError)) and not isinstance(
            exc, errors.GatedRepoError
        ):
            raise revision_not_found(api, req, exc) from exc
        raise explain(exc, req, f"resolving revision {req.revision!r}") from exc
    if not info.sha or not COMMIT_RE.match(info.sha):
        raise HubError(f"{req.endpoint_url} gave no commit id for {req.repo_id}@{req.revision}: is it a Hub endpoint?")
    return {"commit": info.sha, "gated": bool(getattr(info, "gated", False))}


def revision_not_found(api, req: SnapshotRequest, exc: BaseException) -> HubError:
    """The revision or the repository is unknown: tell which, with the branches and tags that exist.

    The Hub says which in ``X-Error-Code`` (RevisionNotFound or RepoNotFound); a mirror may not (olah answers an unknown
    branch of a repository it has as ``RepoNotFound``), so the refs listing decides where the server has one.
    """
    from huggingface_hub import errors

    code = exc.response.headers.get("X-Error-Code") if getattr(exc, "response", None) is not None else None
    endpoint = req.endpoint_url
    refs = None
    try:
        refs = api.list_repo_refs(req.repo_id)
    except errors.RepositoryNotFoundError as refs_exc:
        # The refs listing, too, says the repository is unknown: it is.
        return explain(refs_exc, req, f"resolving revision {req.revision!r}")
    except Exception:  # noqa: BLE001 - no listing: decided below from the error code alone
        refs = None
    if refs is not None:
        branches = sorted(b.name for b in refs.branches)
        tags = sorted(t.name for t in refs.tags)
        listed = f"branches: {', '.join(branches) or 'none'}; tags: {', '.join(tags) or 'none'}"
        return HubError(
            f"{option('revision')}={req.revision!r} was not found in {req.repo_id} at {endpoint} ({listed}): use "
            "one of those or a 40-character commit id of that repo",
            error_code=code,
        )
    if isinstance(exc, errors.RevisionNotFoundError):
        return HubError(
            f"{option('revision')}={req.revision!r} does not exist in {req.repo_id} at {endpoint} (the server lists "
            "no branches and tags): use a branch (main), a tag or a 40-character commit id of that repo",
            error_code=code,
        )
    return HubError(
        f"{endpoint} did not find {option('repo_id')}={req.repo_id!r} at {option('revision')}={req.revision!r} "
        f"(error code {code or 'none'}) and gives no refs listing to tell which of the two is wrong (a mirror?): "
        "check the repo's spelling (organisation/name) and that the branch, tag or commit exists; for a private "
        f"repo, set {option('token')} to a token with read access",
        error_code=code,
    )


def list_remote_files(hf, req: SnapshotRequest, commit: str) -> List[RemoteFile]:
    api = hf.HfApi(endpoint=req.endpoint_url, token=req.token or None)
    try:
        entries = list(api.list_repo_tree(req.repo_id, revision=commit, recursive=True, expand=False))
    except Exception as exc:
        raise explain(exc, req, "listing the files") from exc
    files = []
    for e in entries:
        if not isinstance(e, hf.hf_api.RepoFile):
            continue
        sha = e.lfs.sha256 if e.lfs else None
        files.append(RemoteFile(path=e.path, size=int(e.size), blob_id=e.blob_id, sha256=sha))
    return sorted(files, key=lambda f: f.path)


@dataclass
class FetchOutcome:
    """What fetching one file did: bytes moved now, bytes kept from an earlier run, bytes of an earlier run thrown
    away (the server ignored Range), whether ranges were used, or whether another process completed it meanwhile."""

    bytes: int = 0
    resumed: int = 0
    discarded: int = 0
    ranged: bool = False
    range_ignored: bool = False
    waited: bool = False


class Downloader:
    """Fetch files into the cache: large ones as ranges over several connections, the others as one stream (both in
    hub_ranged); partial files are resumed."""

    def __init__(
        self,
        hf,
        req: SnapshotRequest,
        layout: CacheLayout,
        commit: str,
        progress: Progress,
        predicted: Optional[Dict[str, int]] = None,
    ) -> None:
        self.hf = hf
        self.req = req
        self.layout = layout
        self.commit = commit
        self.progress = progress
        # Bytes of each blob (by etag) that the check found kept by an earlier run: the progress counted on them.
        self.predicted = predicted or {}
        from huggingface_hub.utils import WeakFileLock, build_hf_headers

        self.lock_cls = WeakFileLock
        self.build_headers = build_hf_headers
        # Set on the first failure: files not started yet are left for the next run, so that an outage fails the
        # run after one round of retries instead of one round per remaining file.
        self.abort = threading.Event()

    def url(self, f: RemoteFile) -> str:
        return self.hf.hf_hub_url(self.req.repo_id, f.path, revision=self.commit, endpoint=self.req.endpoint_url)

    def metadata(self, f: RemoteFile):
        try:
            return self.hf.get_hf_file_metadata(
                self.url(f),
                token=self.req.token or None,
                timeout=self.req.request_timeout,
                endpoint=self.req.endpoint_url,
                retry_on_errors=True,
            )
        except Exception as exc:
            raise explain(exc, self.req, f"asking for {f.path}") from exc

    def fetch(self, f: RemoteFile) -> Optional[FetchOutcome]:
        """Download one file (or what is missing of it) into blobs/ and link it. None when not started (abort)."""
        if self.abort.is_set():
            return None
        blob = self.layout.blob(f.etag)
        lock_path = self.layout.lock(f.etag)
        os.makedirs(os.path.dirname(lock_path), exist_ok=True)
        os.makedirs(os.path.dirname(blob), exist_ok=True)
        with self.lock_cls(lock_path):
            if os.path.isfile(blob) and os.path.getsize(blob) == f.size:
                # Completed meanwhile by another process (whose lock this one waited for): nothing kept, nothing
                # fetched here.
                link_pointer(self.layout, self.commit, f)
                self.progress.expect(-(f.size - self.predicted.get(f.etag, 0)))
                return FetchOutcome(waited=True)
            self._drop_foreign_partials(f)
            meta = self.metadata(f)
            etag = (meta.etag or "").strip('"')
            if etag != f.etag:
                raise HubError(
                    f"{self.req.endpoint_url} lists {f.path} of {self.req.repo_id}@{self.commit} as {f.etag} but "
                    f"serves {etag or 'no ETag'}: the server is inconsistent (a mirror out of date?)"
                )
            headers = self.build_headers(token=self.req.token or None)
            location = meta.location or self.url(f)
            if urlsplit(location).netloc != urlsplit(self.url(f)).netloc:
                headers.pop("authorization", None)  # signed CDN URL: the token stays with the Hub
            outcome = FetchOutcome()
            try:
                return self._fetch_parts(f, location, headers, outcome)
            except RangeIgnored:
                # The kept bytes cannot be used with this server: the whole file again, as one stream, and say so.
                outcome.range_ignored = True
            return self._fetch_parts(f, location, headers, outcome)

    def _fetch_parts(self, f: RemoteFile, location: str, headers: Dict[str, str], outcome: FetchOutcome):
        """Fetch what is missing of f into a partial file of this process's own, then make it the blob."""
        blob = self.layout.blob(f.etag)
        part = PartFile(os.path.dirname(blob), f.etag, f.size)
        kept = part.open(legacy_prefix=self.layout.partial(f.etag))
        self.progress.expect((0 if outcome.range_ignored else self.predicted.get(f.etag, 0)) - kept)
        ranged = (
            not outcome.range_ignored and self.req.connections_per_file > 1 and f.size >= 2 * self.req.split_size
        )
        fetched = [0]

        def count(n: int) -> None:
            fetched[0] += n
            self.progress.add(n)

        try:
            RangedDownload(
                part,
                HTTPRanges(location, headers, self.req.request_timeout),
                self.req.connections_per_file if ranged else 1,
                self.req.split_size if ranged else max(f.size, 1),
                count,
                self.abort,
            ).run()
        except RangeIgnored:
            self.progress.add(-fetched[0])
            self.progress.expect(kept)
            outcome.discarded += kept
            part.discard()
            raise
        except Exception as exc:
            part.close()
            raise explain(exc, self.req, f"downloading {f.path}") from exc
        if not part.complete():
            part.close()
            missing = f.size - part.ranges.covered()
            raise HubError(f"{f.path}: {missing} bytes still missing after the download; run again to resume")
        part.close()
        if self.req.verify == "sha256":
            # Hashed once, here, from the page cache: pieces arrive out of order, so not on the way in.
            got = content_digest(part.path, f)
            if got != (f.sha256 or f.blob_id):
                part.discard()
                raise self._mismatch(f, got)
        part.finish(blob)
        link_pointer(self.layout, self.commit, f)
        self.progress.file_done()
        outcome.bytes += fetched[0]
        outcome.resumed = kept
        outcome.ranged = outcome.ranged or ranged
        return outcome

    def _mismatch(self, f: RemoteFile, got: Optional[str]) -> HubError:
        return HubError(
            f"{f.path} of {self.req.repo_id}@{self.commit} arrived with a different "
            f"{'sha256' if f.sha256 else 'git blob id'} ({got}) than the Hub lists "
            f"({f.sha256 or f.blob_id}): discarded; run again"
        )

    def _drop_foreign_partials(self, f: RemoteFile) -> None:
        # huggingface_hub's own per-process temporary files of this blob are never reused by anyone: reclaim those
        # left behind. One still being written (its writer's lock may do nothing on a network filesystem) is recent.
        blobs = os.path.dirname(self.layout.blob(f.etag))
        now = time.time()
        for name in os.listdir(blobs):
            if name.startswith(f.etag + ".") and name.endswith(".incomplete") and name != f"{f.etag}.incomplete":
                with contextlib.suppress(OSError):
                    path = os.path.join(blobs, name)
                    if now - os.stat(path).st_mtime > STALE_SECONDS:
                        os.unlink(path)


# --------------------------------------------------------------------------------------------------------------------
# The whole operation
# --------------------------------------------------------------------------------------------------------------------


def ensure_snapshot(
    req: SnapshotRequest,
    hf=None,
    clock: Callable[[], float] = time.monotonic,
    files_out: Optional[List[RemoteFile]] = None,
) -> Dict[str, Any]:
    """Make the snapshot complete in the cache (or say what that would take, in check mode).

    files_out, when given, receives the files of the snapshot as the Hub lists them (for serving them to peers).
    The progress file (not in check mode) says ``checking``, then ``downloading``, then ``done`` or ``failed`` with
    the message, so that a caller polling it learns about an early failure at once.
    """
    started = clock()
    validate_request(req)
    progress = Progress(None if req.check_mode else req.progress_file, {"repo": req.repo_id, "revision": req.revision})
    progress.write("checking")
    try:
        result = _ensure_snapshot(req, hf or load_hf(req), progress, clock, files_out)
    except BaseException as exc:
        progress.stop()
        message = exc.message if isinstance(exc, HubError) else f"{type(exc).__name__}: {exc}"
        progress.write("failed", message=message)
        raise
    progress.stop()
    result["seconds"] = round(clock() - started, 3)
    if not req.check_mode:
        progress.write("done", complete=True)
    return result


def _ensure_snapshot(req, hf, progress: Progress, clock, files_out) -> Dict[str, Any]:
    layout = CacheLayout(req.cache_dir, req.repo_id)
    resolved = resolve_revision(hf, req)
    commit = resolved["commit"]
    listed = list_remote_files(hf, req, commit)
    files = select_files(listed, req.allow_patterns, req.ignore_patterns)
    if not files:
        raise HubError(
            f"no file of {req.repo_id}@{req.revision} ({len(listed)} listed) matches allow_patterns="
            f"{req.allow_patterns} and ignore_patterns={req.ignore_patterns}: widen the patterns"
        )
    if files_out is not None:
        files_out.extend(files)
    progress.base.update(commit=commit, files_total=len(files), bytes_total=sum(f.size for f in files))
    progress.write("checking")
    states = inspect_cache(layout, commit, files, req.verify, req.parallelism)
    to_fetch = sorted((s for s in states if s.needs_fetch), key=lambda s: -s.bytes_to_fetch)
    to_relink = [s for s in states if s.status == "relink"]
    bad = [s for s in states if s.status in ("truncated", "wrong_size", "corrupt")]
    bytes_to_fetch = sum(s.bytes_to_fetch for s in to_fetch)
    # What killed downloads left of blobs that are complete now: no fetch opens those blobs again to adopt it.
    leftovers = abandoned_parts(layout.blobs_dir, [s.file.etag for s in states if s.status in ("ok", "relink")])
    result: Dict[str, Any] = {
        "repo": req.repo_id,
        "revision": req.revision,
        "commit": commit,
        "path": layout.snapshot_dir(commit),
        "endpoint": req.endpoint_url,
        "gated": resolved["gated"],
        "files": len(files),
        "bytes": sum(f.size for f in files),
        "verify": req.verify,
        "files_to_fetch": len(to_fetch),
        "bytes_to_fetch": bytes_to_fetch,
        "bytes_resumed": sum(s.partial_bytes for s in to_fetch),
        "repaired": [{"path": s.file.path, "status": s.status, "detail": s.detail} for s in bad],
        "files_downloaded": 0,
        "bytes_downloaded": 0,
        "bytes_discarded": 0,
        "files_ranged": 0,
        "files_range_ignored": 0,
        "files_completed_elsewhere": 0,
        "partial_files_removed": len(leftovers),
    }

    if to_fetch:
        # Ask for one file before writing anything: a missing or rejected token, or a gated repo, fails here.
        probe = min(to_fetch, key=lambda s: s.file.size).file
        Downloader(hf, req, layout, commit, Progress(None, {})).metadata(probe)
        result.update(check_disk(req, bytes_to_fetch))

    ref_changes = write_ref(layout, req.revision, commit, check_mode=True)
    result["changed"] = bool(to_fetch or to_relink or ref_changes or leftovers)
    result["diff"] = {
        "before": {"complete": not (to_fetch or to_relink), "missing_or_bad": sorted(s.file.path for s in to_fetch)},
        "after": {"complete": True, "missing_or_bad": []},
    }
    if req.check_mode:
        result["complete"] = not (to_fetch or to_relink or ref_changes)
        return result

    progress.base.update(files_to_fetch=len(to_fetch), bytes_to_fetch=bytes_to_fetch)
    download_started = clock()
    progress.start()
    for s in bad:
        discard(layout, commit, s)
    for s in to_relink:
        link_pointer(layout, commit, s.file)
    if to_fetch:
        predicted = {s.file.etag: s.partial_bytes for s in to_fetch}
        downloader = Downloader(hf, req, layout, commit, progress, predicted)
        errors = []
        fetched = skipped = 0
        outcomes: List[FetchOutcome] = []
        with ThreadPoolExecutor(max_workers=min(req.parallelism, len(to_fetch))) as pool:
            futures = [pool.submit(downloader.fetch, s.file) for s in to_fetch]
            for fut in as_completed(futures):
                try:
                    outcome = fut.result()
                except Exception as exc:  # noqa: BLE001 - gathered, the first one is reported
                    downloader.abort.set()
                    errors.append(explain(exc, req, "downloading"))
                    continue
                if outcome is None:
                    skipped += 1
                else:
                    outcomes.append(outcome)
                    fetched += outcome.bytes
        # What this run really kept, threw away and waited for, not what the check predicted.
        result["bytes_resumed"] = sum(o.resumed for o in outcomes)
        result["bytes_discarded"] = sum(o.discarded for o in outcomes)
        result["files_range_ignored"] = sum(o.range_ignored for o in outcomes)
        result["files_ranged"] = sum(o.ranged for o in outcomes)
        result["files_completed_elsewhere"] = sum(o.waited for o in outcomes)
        if errors:
            raise HubError(
                f"{len(errors)} of {len(to_fetch)} files of {req.repo_id}@{commit} failed"
                f"{f' ({skipped} not started after that)' if skipped else ''}; files completed so far are kept and "
                f"a new run fetches only what is missing. First error: {errors[0].message}",
                failed_files=len(errors),
                bytes_downloaded=fetched,
            )
        result["files_downloaded"] = len(to_fetch) - result["files_completed_elsewhere"]
        result["bytes_downloaded"] = fetched
    write_ref(layout, req.revision, commit, check_mode=False)
    final = inspect_cache(layout, commit, files, "quick", 1)
    incomplete = [s.file.path for s in final if s.status != "ok"]
    if incomplete:
        raise HubError(f"{req.repo_id}@{commit} is still incomplete after the download: {incomplete[:5]}")
    # Every blob is complete: what owners now gone left of them goes, also of blobs completed during this run.
    result["partial_files_removed"] = remove_abandoned_parts(layout.blobs_dir, [f.etag for f in files])
    result["changed"] = result["changed"] or result["partial_files_removed"] > 0
    seconds = clock() - download_started
    result["complete"] = True
    result["download_seconds"] = round(seconds, 3)
    result["rate_bytes_per_s"] = round(result["bytes_downloaded"] / seconds) if seconds > 0 else 0
    return result
