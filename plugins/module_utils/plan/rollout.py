# -*- coding: utf-8 -*-
# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Rollout planning: group the fleet into serving units and units into batches."""

from __future__ import annotations

import math


class RolloutError(ValueError):
    pass


def serving_units(hosts, host_cluster):
    """[[host, ...], ...]: single-node hosts alone, cluster members together, in the order hosts first appear.

    host_cluster maps a host to its cluster name ('' for a single-node host) and rank (for ordering within a unit).
    """
    units = {}
    for host in hosts:
        cluster, rank = host_cluster(host)
        key = ("cluster", cluster) if cluster else ("host", host)
        units.setdefault(key, []).append((rank, host))
    return [[host for _rank, host in sorted(members)] for members in units.values()]


def batch_size(batch, unit_count):
    """Units per batch from a count (2) or a percentage of the units ('25%')."""
    text = str(batch).strip()
    try:
        if text.endswith("%"):
            percent = float(text[:-1])
            if not 0 < percent <= 100:
                raise ValueError
            return max(1, math.ceil(unit_count * percent / 100.0))
        size = int(text)
        if size < 1:
            raise ValueError
        return size
    except ValueError:
        raise RolloutError(
            "sglang_rollout_batch=%r must be a number of units (1, 2, ...) or a percentage of them ('25%%')" % (batch,)
        ) from None


def plan_rollout(hosts, host_cluster, batch=1):
    """{units, batches, order, serial, description} for a play over `hosts` with `serial: serial`."""
    units = serving_units(hosts, host_cluster)
    if not units:
        raise RolloutError("no host to roll out to: the play has no hosts")
    size = batch_size(batch, len(units))
    batches = [units[index:index + size] for index in range(0, len(units), size)]
    order = [host for unit in units for host in unit]
    serial = [sum(len(unit) for unit in group) for group in batches]
    lines = ["%d unit(s) in %d batch(es) of up to %d unit(s):" % (len(units), len(batches), size)]
    for number, group in enumerate(batches, 1):
        lines.append("  batch %d: %s" % (number, "; ".join(" + ".join(unit) for unit in group)))
    return {"units": units, "batches": batches, "order": order, "serial": serial, "description": lines}
