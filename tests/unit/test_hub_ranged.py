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


def rewrite_writer(part: PartFile, writer) -> None:
    data = json.loads(Path(part.ranges_path).read_text())
    data.pop("writer", None)
    if writer is not None:
        data["writer"] = writer
    Path(part.ranges_path).write_text(json.dumps(data))


def test_the_ranges_file_names_the_process_that_wrote_it(tmp_path):
    part = PartFile(str(tmp_path), ETAG, 100)
    part.open()
    part.close()
    start = hub_ranged.process_start(os.getpid())
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert start is not None and start.startswith(boot + ":") and start == hub_ranged.process_start(os.getpid())
    assert start != hub_ranged.process_start(1), "pid 1, started long before this process, has another start"
    assert json.loads(Path(part.ranges_path).read_text())["writer"] == {"pid": os.getpid(), "start": start}
    assert hub_ranged.recorded_writer(part.ranges_path) == (os.getpid(), start)


def test_a_dead_owners_pid_held_by_a_later_process_counts_as_gone(tmp_path):
    # The owner was killed and its pid came round to another process (pids wrap every 32768 by default): the files
    # are abandoned, and a run adopts them instead of leaving them in blobs/ for good.
    later = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        owner = f"{hub_ranged.socket.gethostname()}.{later.pid}"
        left = leave_part(tmp_path, owner, 100, [(0, 30)])
        boot = hub_ranged.process_start(later.pid).partition(":")[0]
        rewrite_writer(left, {"pid": later.pid, "start": f"{boot}:1"})
        assert hub_ranged.owner_gone(owner, left.ranges_path)
        assert hub_ranged.kept_bytes(str(tmp_path), ETAG, 100) == 30
        part = PartFile(str(tmp_path), ETAG, 100)
        assert part.open() == 30
        part.close()
        assert sorted(os.listdir(tmp_path)) == sorted([Path(part.path).name, Path(part.ranges_path).name])
    finally:
        later.kill()
        later.wait()


def test_a_live_owner_is_told_by_its_pid_and_start(tmp_path):
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        owner = f"{hub_ranged.socket.gethostname()}.{live.pid}"
        left = leave_part(tmp_path, owner, 100, [(0, 30)])
        # Written by the live owner itself.
        rewrite_writer(left, {"pid": live.pid, "start": hub_ranged.process_start(live.pid)})
        assert not hub_ranged.owner_gone(owner, left.ranges_path)
        # Just adopted by the live owner and not rewritten yet: the file still names the process it came from.
        rewrite_writer(left, {"pid": 1, "start": "some-boot:1"})
        assert not hub_ranged.owner_gone(owner, left.ranges_path)
        # Written before files named their writer.
        rewrite_writer(left, None)
        assert not hub_ranged.owner_gone(owner, left.ranges_path)
        assert hub_ranged.kept_bytes(str(tmp_path), ETAG, 100) == 0
    finally:
        live.kill()
        live.wait()
    assert hub_ranged.owner_gone(owner, left.ranges_path)


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


def test_what_gone_owners_left_of_a_complete_blob_is_found_and_removed_and_nothing_else(tmp_path):
    # Blob ETAG is complete; a killed download (a pid no process holds now) left its copy and map beside it, and
    # a cut-short save of its map; a live process of this host (the runner's parent) is still writing its own copy;
    # another blob's leftovers are not asked about.
    (tmp_path / ETAG).write_bytes(b"x" * 100)
    dead = leave_part(tmp_path, dead_owner(tmp_path), 100, [(0, 30)])
    Path(f"{dead.ranges_path}.tmp").write_text("{")
    live = leave_part(tmp_path, f"{hub_ranged.socket.gethostname()}.{os.getppid()}", 100, [(0, 10)])
    other = PartFile(str(tmp_path), "f" * 64, 100, owner=dead.owner)
    other.fd = os.open(other.path, os.O_RDWR | os.O_CREAT, 0o644)
    other.save()
    other.close()
    found = hub_ranged.abandoned_parts(str(tmp_path), [ETAG])
    assert found == sorted([dead.path, dead.ranges_path, f"{dead.ranges_path}.tmp"])
    assert hub_ranged.remove_abandoned_parts(str(tmp_path), [ETAG]) == 3
    assert sorted(os.listdir(tmp_path)) == sorted(
        [ETAG, *(os.path.basename(p) for p in (live.path, live.ranges_path, other.path, other.ranges_path))]
    )
    assert hub_ranged.remove_abandoned_parts(str(tmp_path), [ETAG]) == 0
    assert hub_ranged.abandoned_parts(str(tmp_path / "absent"), [ETAG]) == []
