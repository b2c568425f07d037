"""The fleet table: rows per host, units judged whole."""

from ansible_collections.datacrunch.sglang.plugins.module_utils.plan.fleet_status import (
    fleet_rows,
    fleet_table,
    unit_health,
)

SOLO = {"state": "running", "ready": True, "rank": "0", "cluster": "", "model": "m", "profile": "p", "image": "i",
        "uptime_s": 3725, "running_requests": 2.0, "queued_requests": 0.0, "gpu_memory_used_mib": 1024}
RANK0 = dict(SOLO, cluster="tp16", rank="0")
RANK1 = dict(SOLO, cluster="tp16", rank="1", ready=True, running_requests=None, queued_requests=None)


def test_units_are_judged_whole():
    assert unit_health([RANK0, RANK1]) == "ok"
    assert unit_health([RANK0, dict(RANK1, state="exited")]) == "degraded"
    assert unit_health([dict(RANK0, ready=False), RANK1]) == "degraded"
    assert unit_health([dict(RANK0, state="exited"), dict(RANK1, state="absent")]) == "down"


def test_rows_show_what_people_ask():
    rows = fleet_rows({"a": SOLO, "b0": RANK0, "b1": dict(RANK1, state="exited", uptime_s=0)})
    by_host = {row["host"]: row for row in rows}
    assert by_host["a"]["unit"] == "single" and by_host["a"]["health"] == "ok"
    assert by_host["a"]["uptime"] == "1h02m" and by_host["a"]["running"] == "2"
    assert by_host["b0"]["health"] == by_host["b1"]["health"] == "degraded"
    assert by_host["b1"]["unit"] == "tp16/rank1" and by_host["b1"]["uptime"] == "-"
    assert by_host["b1"]["running"] == "-"


def test_table_is_aligned():
    lines = fleet_table({"a": SOLO, "absent-host": {"state": "absent", "ready": False}})
    assert lines[0].startswith("HOST")
    assert len({line.index("UNIT") if i == 0 else None for i, line in enumerate(lines[:1])}) == 1
    assert "absent-host" in lines[2] and "down" in lines[2]
