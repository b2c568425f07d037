# -*- coding: utf-8 -*-
# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet table of playbooks/status.yml: one row per host, each unit judged as a whole."""

from __future__ import annotations

COLUMNS = ("host", "unit", "health", "model", "profile", "image", "state", "ready", "uptime", "running", "queued",
           "kv_usage", "gpu_mem_mib")


def _uptime(seconds):
    seconds = int(seconds or 0)
    if not seconds:
        return "-"
    if seconds < 60:
        return "%ds" % seconds
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    return ("%dd%02dh" % (days, hours)) if days else ("%dh%02dm" % (hours, minutes)) if hours else "%dm" % minutes


def _number(value):
    if value is None:
        return "-"
    return str(int(value)) if float(value).is_integer() else "%.1f" % value


def _usage(highest, mean):
    """KV cache usage of the fullest DP rank, with the mean over ranks when they differ: `0.91 (mean 0.40)`."""
    if highest is None:
        return "-"
    if mean is None or abs(highest - mean) < 0.005:
        return "%.2f" % highest
    return "%.2f (mean %.2f)" % (highest, mean)


def unit_health(members):
    """ok: every rank runs and rank 0 is ready; degraded: something runs but not all of it; down: nothing runs."""
    running = [status for status in members if status.get("state") == "running"]
    if not running:
        return "down"
    rank0 = [status for status in members if str(status.get("rank", "0")) in ("0", "")]
    if len(running) == len(members) and rank0 and all(status.get("ready") for status in rank0):
        return "ok"
    return "degraded"


def fleet_rows(statuses):
    """statuses: {host: sglang_server_info result}; rows in unit order with each unit's health."""
    units = {}
    for host, status in statuses.items():
        cluster = status.get("cluster") or ""
        units.setdefault(cluster or host, []).append((host, status))
    rows = []
    for key in sorted(units):
        members = units[key]
        health = unit_health([status for _host, status in members])
        for host, status in sorted(members, key=lambda item: str(item[1].get("rank", ""))):
            cluster = status.get("cluster") or ""
            rows.append({
                "host": host,
                "unit": ("%s/rank%s" % (cluster, status.get("rank"))) if cluster else "single",
                "health": health,
                "model": status.get("model") or "-",
                "profile": status.get("profile") or "-",
                "image": status.get("image") or "-",
                "state": status.get("state") or "unknown",
                "ready": "yes" if status.get("ready") else "no",
                "uptime": _uptime(status.get("uptime_s")),
                "running": _number(status.get("running_requests")),
                "queued": _number(status.get("queued_requests")),
                "kv_usage": _usage(status.get("token_usage"), status.get("token_usage_mean")),
                "gpu_mem_mib": _number(status.get("gpu_memory_used_mib")),
            })
    return rows


def fleet_table(statuses):
    """The rows as aligned text lines, header first."""
    rows = fleet_rows(statuses)
    widths = {column: max([len(column)] + [len(row[column]) for row in rows]) for column in COLUMNS}
    lines = ["  ".join(column.upper().ljust(widths[column]) for column in COLUMNS).rstrip()]
    for row in rows:
        lines.append("  ".join(row[column].ljust(widths[column]) for column in COLUMNS).rstrip())
    return lines
