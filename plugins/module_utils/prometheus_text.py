# -*- coding: utf-8 -*-
# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read the Prometheus text format that SGLang serves at /metrics."""

from __future__ import annotations

import math


def parse_metrics(text):
    """{metric name: total over its label sets} for every sample line (comments and blank lines skipped)."""
    totals = {}
    for line in (text or "").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "}" in line:
            name = line.split("{", 1)[0]
            value_part = line.rsplit("}", 1)[1].split()
        else:
            name, _space, rest = line.partition(" ")
            value_part = rest.split()
        if not value_part:
            continue
        try:
            value = float(value_part[0])
        except ValueError:
            continue
        if math.isnan(value):
            continue
        totals[name] = totals.get(name, 0.0) + value
    return totals


def serving_load(metrics):
    """Running and queued requests, from SGLang's metric names (either separator of older and newer versions)."""

    def pick(*names):
        for name in names:
            if name in metrics:
                return metrics[name]
        return None

    return {
        "running_requests": pick("sglang:num_running_reqs", "sglang_num_running_reqs"),
        "queued_requests": pick("sglang:num_queue_reqs", "sglang_num_queue_reqs"),
        "token_usage": pick("sglang:token_usage", "sglang_token_usage"),
        "gen_throughput": pick("sglang:gen_throughput", "sglang_gen_throughput"),
    }
