# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ranged downloads: one large file over several HTTP connections, resumable range by range (hf_snapshot's logic).

Mirrors and CDNs cap what one connection carries, so a 4 GB shard fetched as one stream takes as long as the cap
says, however fast the host's network. Here a file is cut into pieces of ``split_size`` bytes that several
connections fetch with ``Range`` requests and write in place.

Where the bytes wait until the file is complete, so that huggingface_hub's cache stays safe:

- ``blobs/<etag>.incomplete`` is never used for this: older huggingface_hub versions resume that file by its size and
  take a full-size one as complete, so a preallocated file with holes there could become a blob.
- ``blobs/<etag>.<owner>.dcsg-part`` holds the bytes (written in place, with holes until complete) and
  ``blobs/<etag>.<owner>.dcsg-ranges`` the ranges that are in it (JSON, replaced atomically, written only after the
  bytes it names). ``<owner>`` is ``<hostname>.<pid>``: every process writes only files of its own, so that hosts
  sharing a volume whose file locks do nothing (some network filesystems) never write into each other's partial file.
  A later run adopts the files of an owner that is gone (a process of this host that no longer exists, or whose pid
  a later process holds now: the ranges file names the process that wrote it; or another host's files that it has
  not touched for ``STALE_SECONDS``) by renaming them to its own name: of two runs that try, one wins. The ranges
  file is the claim and moves first.
- the blob appears (one rename) only when every range is there and, with verify=sha256, the sha256 checks out.

A run after a kill asks only for the ranges its ranges file does not list.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import queue
import socket
import ssl
import threading
import time
from typing import Callable, Dict, List, Optional, Tuple
from urllib.parse import urljoin, urlsplit
from urllib.request import getproxies, proxy_bypass

PART_SUFFIX = ".dcsg-part"
RANGES_SUFFIX = ".dcsg-ranges"
# A ranges file's save under way (or cut short): written whole, then renamed over the ranges file.
SAVING_SUFFIX = RANGES_SUFFIX + ".tmp"
# Another host's partial files count as abandoned once they have not been touched for this long (a live download
# rewrites its ranges file every SAVE_SECONDS).
STALE_SECONDS = 30.0
# The ranges file is rewritten after the bytes it lists are on disk (fdatasync). Forcing that write-back every second
# stalls the writers (measured: a third longer on a loaded machine), so it happens every SYNC_SECONDS, and once early
# so that a run killed in its first seconds already leaves something to resume; a kill loses at most that much.
SAVE_SECONDS = 1.0
SYNC_SECONDS = 10.0
BUFFER = 1 << 20
RETRIES = 4


class RangeIgnored(Exception):
    """The server answered a Range request with the whole file (200): it cannot serve pieces."""


class HTTPStatusError(Exception):
    """An answer that asking again will not change (e.g. 403, 404)."""


class RangeSet:
    """Sorted, merged half-open intervals [start, end)."""

    def __init__(self, intervals: Optional[List[Tuple[int, int]]] = None) -> None:
        self.intervals: List[List[int]] = []
        for start, end in intervals or []:
            self.add(start, end)

    def add(self, start: int, end: int) -> None:
        if end <= start:
            return
        merged: List[List[int]] = []
        placed = False
        for s, e in self.intervals:
            if e < start:
                merged.append([s, e])
            elif end < s:
                if not placed:
                    merged.append([start, end])
                    placed = True
                merged.append([s, e])
            else:
                start, end = min(s, start), max(e, end)
        if not placed:
            merged.append([start, end])
        self.intervals = sorted(merged)

    def covered(self) -> int:
        return sum(e - s for s, e in self.intervals)

    def missing(self, size: int) -> List[Tuple[int, int]]:
        gaps, pos = [], 0
        for s, e in self.intervals:
            if s > pos:
                gaps.append((pos, min(s, size)))
            pos = max(pos, e)
        if pos < size:
            gaps.append((pos, size))
        return [(s, e) for s, e in gaps if e > s]

    def copy(self) -> RangeSet:
        return RangeSet(list(self.intervals))


def split_pieces(gaps: List[Tuple[int, int]], split_size: int) -> List[Tuple[int, int]]:
    pieces = []
    for start, end in gaps:
        while start < end:
            pieces.append((start, min(start + split_size, end)))
            start += split_size
    return pieces


def partial_file_name(name: str) -> Optional[Tuple[str, str, str]]:
    """(etag, owner, suffix) of a partial file's name, ``<etag>.<owner><suffix>`` as PartFile writes them (the bytes,
    the ranges file, a ranges file's save); None for any other name."""
    for suffix in (SAVING_SUFFIX, RANGES_SUFFIX, PART_SUFFIX):
        if name.endswith(suffix):
            etag, _dot, owner = name[: -len(suffix)].partition(".")
            return (etag, owner, suffix) if owner else None
    return None


def owner_id() -> str:
    return f"{socket.gethostname()}.{os.getpid()}"


def process_start(pid: int) -> Optional[str]:
    """What tells the process now holding ``pid`` from a later one given the same pid: the boot's id and the process's
    start in clock ticks since boot (Linux /proc; no wall clock involved). None where /proc does not say."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as fh:
            boot = fh.read().strip()
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
        # Field 22, starttime; counted after the command name, which may hold spaces and ends at the last ')'.
        return f"{boot}:{int(stat[stat.rindex(b')') + 2:].split()[19])}"
    except (OSError, ValueError, IndexError):
        return None


def recorded_writer(ranges_path: str) -> Optional[Tuple[int, str]]:
    """(pid, process_start) of the process that last wrote this ranges file, when it says (older files do not)."""
    try:
        with open(ranges_path, encoding="utf-8") as fh:
            writer = json.load(fh).get("writer") or {}
        return int(writer["pid"]), str(writer["start"])
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None


def owner_gone(owner: str, ranges_path: str, now: Optional[float] = None) -> bool:
    host, _dot, pid = owner.rpartition(".")
    if host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        # A live process holds the pid. Pids come round again (every 32768 processes by default), so it may be a
        # later process than the owner: the ranges file names the process that wrote it. A file of another pid under
        # this owner's name was just adopted and not rewritten yet: the owner is the live adopter.
        writer = recorded_writer(ranges_path)
        if writer is None or writer[0] != int(pid):
            return False
        start = process_start(int(pid))
        return start is not None and start != writer[1]
    try:
        age = (now or time.time()) - os.stat(ranges_path).st_mtime
    except OSError:
        return True
    return age > STALE_SECONDS


class PartFile:
    """This process's partial copy of one blob and the map of the ranges in it."""

    def __init__(self, blobs_dir: str, etag: str, size: int, owner: Optional[str] = None) -> None:
        self.blobs_dir = blobs_dir
        self.etag = etag
        self.size = size
        self.owner = owner or owner_id()
        self.path = os.path.join(blobs_dir, f"{etag}.{self.owner}{PART_SUFFIX}")
        self.ranges_path = os.path.join(blobs_dir, f"{etag}.{self.owner}{RANGES_SUFFIX}")
        self.ranges = RangeSet()
        self.lock = threading.Lock()
        self.fd: Optional[int] = None
        self.adopted_bytes = 0
        self.writer_start: Optional[str] = None
        self.saved_at = 0.0
        self.saved_bytes = 0

    # -- finding what an earlier run left -----------------------------------------------------------------------------
    def others(self) -> List[Tuple[str, str, str]]:
        """(owner, ranges path, part path) of other owners' partial files of this blob."""
        owners = set()
        prefix = self.etag + "."
        with contextlib.suppress(FileNotFoundError):
            for name in os.listdir(self.blobs_dir):
                parsed = partial_file_name(name)
                if parsed and parsed[0] == self.etag and parsed[2] != SAVING_SUFFIX:
                    owners.add(parsed[1])
        owners.discard(self.owner)
        # A part file whose ranges file is missing (killed between the two renames of an adoption) is judged by
        # its own age: the ranges path is then that of a file that does not exist, which counts as gone.
        return [
            (owner, os.path.join(self.blobs_dir, f"{prefix}{owner}{RANGES_SUFFIX}"),
             os.path.join(self.blobs_dir, f"{prefix}{owner}{PART_SUFFIX}"))
            for owner in sorted(owners)
        ]

    def _load(self, path: str) -> Optional[RangeSet]:
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, ValueError):
            return None
        if data.get("etag") != self.etag or data.get("size") != self.size:
            return None
        try:
            return RangeSet([(int(s), int(e)) for s, e in data.get("ranges", []) if 0 <= int(s) < int(e) <= self.size])
        except (TypeError, ValueError):
            return None

    def open(self, legacy_prefix: Optional[str] = None) -> int:
        """Adopt the best abandoned partial copy, or a contiguous ``<etag>.incomplete`` prefix, or start empty.

        Returns the bytes kept. Abandoned partial files of this blob that are not adopted are removed.
        """
        candidates = []
        for owner, ranges_path, part_path in self.others():
            if owner_gone(owner, ranges_path):
                ranges = self._load(ranges_path)
                candidates.append((ranges.covered() if ranges else -1, ranges_path, part_path))
        candidates.sort(reverse=True)
        for _covered, ranges_path, _part_path in candidates:
            with contextlib.suppress(OSError):
                os.unlink(f"{ranges_path}.tmp")  # a save that a kill cut short
        for covered, ranges_path, part_path in candidates:
            if covered > 0 and self.fd is None:
                try:
                    os.rename(ranges_path, self.ranges_path)  # the claim: of two runs, one wins
                except OSError:
                    continue
                try:
                    os.rename(part_path, self.path)
                except OSError:
                    os.unlink(self.ranges_path)
                    continue
                self.ranges = self._load(self.ranges_path) or RangeSet()
                self.fd = os.open(self.path, os.O_RDWR)
                continue
            for stale in (ranges_path, part_path):
                with contextlib.suppress(OSError):
                    os.unlink(stale)
        if self.fd is None and legacy_prefix and os.path.isfile(legacy_prefix):
            kept = os.path.getsize(legacy_prefix)
            if 0 < kept <= self.size:
                with contextlib.suppress(OSError):
                    os.rename(legacy_prefix, self.path)
                    self.ranges = RangeSet([(0, kept)])
                    self.fd = os.open(self.path, os.O_RDWR)
        if self.fd is None:
            self.ranges = RangeSet()
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        if os.fstat(self.fd).st_size != self.size:
            os.ftruncate(self.fd, self.size)  # sparse: the map, not the size, says what is there
        self.adopted_bytes = self.ranges.covered()
        self.save()
        return self.adopted_bytes

    # -- while downloading ----------------------------------------------------------------------------------------
    def mark(self, start: int, end: int) -> None:
        with self.lock:
            self.ranges.add(start, end)

    def due(self, now: float) -> bool:
        """Whether the map should be saved now (see SYNC_SECONDS)."""
        with self.lock:
            grown = self.ranges.covered() > self.saved_bytes
        return grown and (self.saved_bytes == self.adopted_bytes or now - self.saved_at >= SYNC_SECONDS)

    def save(self) -> None:
        """Write the map of what is on disk; the bytes first (fdatasync), so that the map never runs ahead of them,
        also when the host crashes."""
        with self.lock:
            snapshot = self.ranges.copy()
        self.saved_at = time.monotonic()
        self.saved_bytes = snapshot.covered()
        if self.fd is not None:
            os.fdatasync(self.fd)
        tmp = f"{self.ranges_path}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump({"etag": self.etag, "size": self.size, "ranges": snapshot.intervals, **self._writer()}, fh)
        os.replace(tmp, self.ranges_path)

    def _writer(self) -> Dict[str, Dict[str, object]]:
        """This process, as owner_gone tells it from a later one with the same pid (nothing where /proc is not)."""
        if self.writer_start is None:
            self.writer_start = process_start(os.getpid()) or ""
        return {"writer": {"pid": os.getpid(), "start": self.writer_start}} if self.writer_start else {}

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def discard(self) -> None:
        self.close()
        for path in (self.ranges_path, self.path):
            with contextlib.suppress(OSError):
                os.unlink(path)

    def complete(self) -> bool:
        return not self.ranges.missing(self.size)

    def finish(self, blob: str) -> None:
        """Every range is there: the part file becomes the blob (one rename), the map goes.

        The bytes are written back first: the file had its full size from the start, so a blob whose pages a crash
        lost would pass the size check with zeros in it.
        """
        if self.fd is None:
            self.fd = os.open(self.path, os.O_RDONLY)
        os.fdatasync(self.fd)
        self.close()
        os.chmod(self.path, 0o644)
        os.replace(self.path, blob)
        with contextlib.suppress(OSError):
            os.unlink(self.ranges_path)


class HTTPRanges:
    """GET a byte range, following redirects; one keep-alive connection per thread and host."""

    def __init__(self, url: str, headers: Dict[str, str], timeout: float) -> None:
        self.url = url
        self.headers = dict(headers)
        self.timeout = timeout
        self.local = threading.local()

    def _connection(self, url: str) -> http.client.HTTPConnection:
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc)
        conns = getattr(self.local, "conns", None)
        if conns is None:
            conns = self.local.conns = {}
        conn = conns.get(key)
        if conn is None:
            # The proxy settings of the environment (HTTPS_PROXY, HTTP_PROXY, NO_PROXY), as huggingface_hub uses them.
            proxy = None if proxy_bypass(parts.hostname or "") else getproxies().get(parts.scheme)
            via = urlsplit(proxy).netloc if proxy else None
            if parts.scheme == "https":
                conn = http.client.HTTPSConnection(via or parts.netloc, timeout=self.timeout,
                                                   context=ssl.create_default_context())
                if via:
                    conn.set_tunnel(parts.hostname, parts.port or 443)
            else:
                conn = http.client.HTTPConnection(via or parts.netloc, timeout=self.timeout)
                conn.via_proxy = bool(via)
            conns[key] = conn
        return conn

    def drop(self) -> None:
        for conn in (getattr(self.local, "conns", None) or {}).values():
            conn.close()
        self.local.conns = {}

    def open(self, start: int, end: int, whole: bool = False) -> http.client.HTTPResponse:
        """The response for bytes [start, end) (with whole, the whole file, asked without Range), body not read."""
        url = self.url
        headers = dict(self.headers) if whole else dict(self.headers, Range=f"bytes={start}-{end - 1}")
        for _hop in range(6):
            parts = urlsplit(url)
            conn = self._connection(url)
            target = parts.path + (f"?{parts.query}" if parts.query else "")
            if getattr(conn, "via_proxy", False):
                target = url  # a plain-HTTP proxy is asked for the absolute URL
            conn.request("GET", target, headers=headers)
            resp = conn.getresponse()
            if resp.status in (301, 302, 303, 307, 308) and resp.getheader("Location"):
                resp.read()
                new = urljoin(url, resp.getheader("Location"))
                if urlsplit(new).netloc != parts.netloc:
                    headers.pop("authorization", None)  # the token stays with the Hub
                    headers.pop("Authorization", None)
                url = new
                continue
            return resp
        raise OSError(f"too many redirects for {self.url}")


class RangedDownload:
    """Fetch the missing ranges of one part file over up to ``connections`` connections."""

    def __init__(
        self,
        part: PartFile,
        http: HTTPRanges,
        connections: int,
        split_size: int,
        on_bytes: Callable[[int], None],
        abort: Optional[threading.Event] = None,
    ) -> None:
        self.part = part
        self.http = http
        self.connections = connections
        self.split_size = split_size
        self.on_bytes = on_bytes
        self.abort = abort or threading.Event()
        self.errors: List[BaseException] = []

    def run(self) -> int:
        """Returns the bytes fetched now; raises the first error (RangeIgnored when the server sends whole files)."""
        pieces = split_pieces(self.part.ranges.missing(self.part.size), self.split_size)
        if not pieces:
            return 0
        work: queue.Queue[Tuple[int, int]] = queue.Queue()
        for piece in pieces:
            work.put(piece)
        fetched = [0]
        count_lock = threading.Lock()
        stop = threading.Event()

        def saver() -> None:
            while not stop.wait(SAVE_SECONDS):
                if self.part.due(time.monotonic()):
                    with contextlib.suppress(OSError):
                        self.part.save()

        def worker() -> None:
            buf = bytearray(BUFFER)
            view = memoryview(buf)
            try:
                while not self.abort.is_set() and not self.errors:
                    try:
                        start, end = work.get_nowait()
                    except queue.Empty:
                        return
                    got = self._piece(start, end, view)
                    with count_lock:
                        fetched[0] += got
            except BaseException as exc:  # noqa: BLE001 - the first one is raised by run()
                self.errors.append(exc)
            finally:
                self.http.drop()

        threads = [threading.Thread(target=worker, name=f"hf-range-{i}", daemon=True)
                   for i in range(min(self.connections, len(pieces)))]
        save_thread = threading.Thread(target=saver, name="hf-range-map", daemon=True)
        save_thread.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stop.set()
        save_thread.join()
        if not self.part.complete():
            self.part.save()  # what a next run resumes from
        if self.errors:
            raise self.errors[0]
        return fetched[0]

    def _piece(self, start: int, end: int, view: memoryview) -> int:
        """Fetch [start, end) into the part file, retrying from where a broken connection stopped."""
        pos, got, attempt = start, 0, 0
        while pos < end:
            try:
                whole = pos == 0 and end == self.part.size
                resp = self.http.open(pos, end, whole)
                if resp.status == 200 and not whole:
                    resp.close()
                    raise RangeIgnored(f"the server sent the whole file for Range bytes={pos}-{end - 1}")
                if resp.status == 200:
                    pass  # the whole file was asked for: the same bytes
                elif resp.status != 206:
                    body = resp.read(2048)
                    message = f"HTTP {resp.status} for Range bytes={pos}-{end - 1}: {body[:200]!r}"
                    if 400 <= resp.status < 500 and resp.status not in (408, 429):
                        raise HTTPStatusError(message)
                    raise OSError(message)
                content_range = resp.getheader("Content-Range", "")
                if resp.status == 206 and not content_range.startswith(f"bytes {pos}-"):
                    resp.close()
                    raise OSError(f"the server answered Range bytes={pos}-{end - 1} with Content-Range "
                                  f"{content_range!r}")
                while pos < end:
                    if self.abort.is_set():
                        resp.close()
                        return got
                    want = min(len(view), end - pos)
                    n = resp.readinto(view[:want])
                    if not n:
                        raise OSError(f"connection closed at byte {pos} of range {start}-{end - 1}")
                    os.pwrite(self.part.fd, view[:n], pos)
                    self.part.mark(pos, pos + n)
                    self.on_bytes(n)
                    pos += n
                    got += n
                if resp.length:
                    resp.close()
            except (RangeIgnored, HTTPStatusError):
                raise
            except (OSError, http.client.HTTPException) as exc:
                self.http.drop()
                attempt += 1
                if attempt > RETRIES or self.abort.is_set():
                    raise OSError(f"range {pos}-{end - 1}: {exc}") from exc
                time.sleep(min(2 ** attempt * 0.25, 2))  # 5.5 s in all: an outage fails soon, a blip is ridden out
        return got


def kept_bytes(blobs_dir: str, etag: str, size: int) -> int:
    """Bytes of this blob that a next run would adopt: the most that one abandoned partial file holds (a live
    download's files are not counted: they are not this run's to keep)."""
    probe = PartFile(blobs_dir, etag, size, owner="-")
    best = 0
    for owner, ranges_path, _part in probe.others():
        ranges = probe._load(ranges_path) if owner_gone(owner, ranges_path) else None
        if ranges is not None:
            best = max(best, ranges.covered())
    return best


def abandoned_parts(blobs_dir: str, etags: List[str]) -> List[str]:
    """Paths of the partial files (bytes, map, a map's cut-short save) that owners now gone left of these blobs.

    For blobs that are complete: no later run opens them again, so nothing else would adopt or remove what a killed
    download left of them (on a shared volume, two hosts may have fetched the same blob at once). A live download's
    files are left alone; its own finish replaces the blob with the same bytes.
    """
    wanted = set(etags)
    by_owner: Dict[Tuple[str, str], List[str]] = {}
    try:
        names = os.listdir(blobs_dir)
    except FileNotFoundError:
        return []
    for name in names:
        parsed = partial_file_name(name)
        if parsed and parsed[0] in wanted:
            by_owner.setdefault(parsed[:2], []).append(os.path.join(blobs_dir, name))
    found = []
    for (etag, owner), paths in sorted(by_owner.items()):
        if owner_gone(owner, os.path.join(blobs_dir, f"{etag}.{owner}{RANGES_SUFFIX}")):
            found.extend(sorted(paths))
    return found


def remove_abandoned_parts(blobs_dir: str, etags: List[str]) -> int:
    """Remove what abandoned_parts finds; the number of files removed."""
    removed = 0
    for path in abandoned_parts(blobs_dir, etags):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
            removed += 1
    return removed
