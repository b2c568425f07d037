# -*- coding: utf-8 -*-
# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read the Prometheus text format that SGLang serves at /metrics, each metric aggregated by what it means.

SGLang's schedulers publish one series per scheduler that logs stats (attn_tp_rank 0): with DP attention that is
one per DP rank (labels tp_rank, dp_rank, moe_ep_rank; srt/observability/metrics_collector.py,
SchedulerMetricsCollector). With priority scheduling, queue gauges carry the total under priority="" and a
breakdown under priority="<n>" (_log_gauge_queue_count). So: counts add up over ranks but not over the priority
breakdown; a usage ratio is per rank (each DP rank has its own KV pool), and adding them reads up to 8.0 on 8 DP
ranks: the fullest rank is what limits admission, so usage is its maximum (the mean is kept too).
"""

from __future__ import annotations

import math
import re

# Ratios per rank: aggregated by their maximum (and mean), never summed.
RATIO_METRICS = ("token_usage", "swa_token_usage", "mamba_usage", "cache_hit_rate", "spec_accept_rate",
                 "spec_accept_length", "utilization")
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_samples(text):
    """[(name, {label: value}, value)] for every sample line (comments, blank lines and NaN skipped)."""
    samples = []
    for line in (text or "").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        labels = {}
        if "{" in line and "}" in line:
            name = line.split("{", 1)[0]
            labels = dict(_LABEL.findall(line[line.index("{") + 1:line.rindex("}")]))
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
        samples.append((name, labels, value))
    return samples


def _is_ratio(name):
    short = name.split(":", 1)[-1].removeprefix("sglang_")
    return short in RATIO_METRICS


def parse_metrics(text):
    """{metric name: value over its series}: counts summed over ranks (a priority breakdown left out where the total
    is published), ratios as the maximum over ranks, with `<name>_mean` beside them."""
    series = {}
    for name, labels, value in parse_samples(text):
        series.setdefault(name, []).append((labels, value))
    metrics = {}
    for name, samples in series.items():
        if any(labels.get("priority") == "" for labels, _value in samples):
            samples = [(labels, value) for labels, value in samples if labels.get("priority", "") == ""]
        values = [value for _labels, value in samples]
        if _is_ratio(name):
            metrics[name] = max(values)
            metrics[name + "_mean"] = sum(values) / len(values)
        else:
            metrics[name] = sum(values)
    return metrics


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
        "token_usage_mean": pick("sglang:token_usage_mean", "sglang_token_usage_mean"),
        "gen_throughput": pick("sglang:gen_throughput", "sglang_gen_throughput"),
    }
