"""hub_ranged without a server: the range map, the partial files of one's own, adoption of an abandoned one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ansible_collections.datacrunch.sglang.plugins.module_utils.hub import ranged as hub_ranged
from ansible_collections.datacrunch.sglang.plugins.module_utils.hub.ranged import PartFile, RangeSet, split_pieces

ETAG = "e" * 64


def test_range_set_merges_and_lists_the_gaps():
    r = RangeSet([(10, 20), (30, 40)])
    r.add(20, 25)
    r.add(0, 5)
    r.add(38, 50)
    assert r.intervals == [[0, 5], [10, 25], [30, 50]]
    assert r.covered() == 5 + 15 + 20
    assert r.missing(60) == [(5, 10), (25, 30), (50, 60)]
    assert RangeSet().missing(7) == [(0, 7)]
    assert RangeSet([(0, 7)]).missing(7) == []


def test_pieces_cover_the_gaps_exactly():
    assert split_pieces([(0, 10), (15, 18)], 4) == [(0, 4), (4, 8), (8, 10), (15, 18)]


def dead_owner(tmp_path) -> str:
    """The owner id of a process of this host that has exited."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    return f"{hub_ranged.socket.gethostname()}.{proc.stdout.strip()}"


def leave_part(blobs, owner: str, size: int, ranges: list) -> PartFile:
    part = PartFile(str(blobs), ETAG, size, owner=owner)
    part.fd = os.open(part.path, os.O_RDWR | os.O_CREAT, 0o644)
    os.ftruncate(part.fd, size)
    for s, e in ranges:
        os.pwrite(part.fd, b"x" * (e - s), s)
        part.mark(s, e)
    part.save()
    part.close()
    return part


def test_an_abandoned_partial_file_is_adopted_with_its_ranges_and_others_removed(tmp_path):
    best = leave_part(tmp_path, dead_owner(tmp_path), 100, [(0, 30), (50, 60)])
    worse = leave_part(tmp_path, f"{hub_ranged.socket.gethostname()}.999999999", 100, [(0, 10)])
    part = PartFile(str(tmp_path), ETAG, 100)
    assert part.open() == 40
    assert part.ranges.missing(100) == [(30, 50), (60, 100)]
    assert not os.path.exists(best.path) and not os.path.exists(worse.path) and not os.path.exists(worse.ranges_path)
    assert os.path.getsize(part.path) == 100
    assert json.loads(Path(part.ranges_path).read_text())["ranges"] == [[0, 30], [50, 60]]
    part.discard()
    assert os.listdir(tmp_path) == []


def test_a_live_owners_partial_file_is_left_alone(tmp_path):
    # Another process of this host that lives: the parent of the test runner.
    leave_part(tmp_path, f"{hub_ranged.socket.gethostname()}.{os.getppid()}", 100, [(0, 30)])
    part = PartFile(str(tmp_path), ETAG, 100)
    assert part.open() == 0
    assert hub_ranged.kept_bytes(str(tmp_path), ETAG, 100) == 0, "a live download's bytes are not this run's"
    assert len(os.listdir(tmp_path)) == 4


def test_another_hosts_partial_file_counts_as_abandoned_only_when_stale(tmp_path):
    other = leave_part(tmp_path, "other-host.1234", 100, [(0, 30)])
    assert not hub_ranged.owner_gone("other-host.1234", other.ranges_path)
    old = os.stat(other.ranges_path).st_mtime - hub_ranged.STALE_SECONDS - 1
    os.utime(other.ranges_path, (old, old))
    assert hub_ranged.owner_gone("other-host.1234", other.ranges_path)
    assert hub_ranged.kept_bytes(str(tmp_path), ETAG, 100) == 30


def test_a_contiguous_incomplete_prefix_is_taken_over_and_never_left_with_holes(tmp_path):
    legacy = tmp_path / f"{ETAG}.incomplete"
    legacy.write_bytes(b"y" * 25)
    part = PartFile(str(tmp_path), ETAG, 100)
    assert part.open(legacy_prefix=str(legacy)) == 25
    assert not legacy.exists()
    assert part.ranges.missing(100) == [(25, 100)]
    part.discard()


def test_the_blob_appears_only_when_finished(tmp_path):
    part = PartFile(str(tmp_path), ETAG, 10)
    part.open()
    os.pwrite(part.fd, b"0123456789", 0)
    part.mark(0, 10)
    assert part.complete()
    part.finish(str(tmp_path / ETAG))
    assert os.listdir(tmp_path) == [ETAG]
    assert (tmp_path / ETAG).read_bytes() == b"0123456789"
