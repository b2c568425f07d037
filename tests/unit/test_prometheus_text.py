"""SGLang's /metrics read by meaning: one series per DP rank with DP attention, priority breakdowns beside totals."""

from ansible_collections.datacrunch.sglang.plugins.module_utils.common.prometheus_text import (
    parse_metrics,
    serving_load,
)
from ansible_collections.datacrunch.sglang.plugins.module_utils.plan.fleet_status import fleet_rows


def _rank_labels(rank, priority=None):
    # As SchedulerMetricsCollector labels each DP rank's scheduler (srt/observability/metrics_collector.py).
    labels = (f'model_name="deepseek-ai/DeepSeek-R1",engine_type="unified",tp_rank="{rank}",pp_rank="0",'
              f'moe_ep_rank="{rank}"')
    if priority is not None:
        labels += f',priority="{priority}"'
    return labels + f',dp_rank="{rank}"'


def _dp8_metrics(priority_scheduling=False):
    usage = [0.91, 0.40, 0.35, 0.30, 0.30, 0.30, 0.32, 0.30]
    lines = ["# HELP sglang:token_usage The token usage.", "# TYPE sglang:token_usage gauge"]
    total = "" if priority_scheduling else None
    lines += [f"sglang:token_usage{{{_rank_labels(r, total)}}} {usage[r]}" for r in range(8)]
    lines += [f"sglang:num_running_reqs{{{_rank_labels(r, total)}}} 3.0" for r in range(8)]
    lines += [f"sglang:num_queue_reqs{{{_rank_labels(r, total)}}} 1.0" for r in range(8)]
    if priority_scheduling:  # the breakdown of the same requests by priority
        lines += [f"sglang:num_running_reqs{{{_rank_labels(r, p)}}} {n}" for r in range(8) for p, n in ((0, 2.0),
                                                                                                        (1, 1.0))]
        lines += [f"sglang:num_queue_reqs{{{_rank_labels(r, 1)}}} 1.0" for r in range(8)]
    return "\n".join(lines) + "\n"


def test_usage_is_the_fullest_dp_rank_not_the_sum_of_eight():
    load = serving_load(parse_metrics(_dp8_metrics()))
    assert load["token_usage"] == 0.91
    assert abs(load["token_usage_mean"] - 0.3975) < 1e-9
    assert load["running_requests"] == 24.0 and load["queued_requests"] == 8.0


def test_priority_breakdown_is_not_counted_twice():
    load = serving_load(parse_metrics(_dp8_metrics(priority_scheduling=True)))
    assert load["running_requests"] == 24.0 and load["queued_requests"] == 8.0
    assert load["token_usage"] == 0.91


def test_status_shows_usage_per_fullest_rank_with_the_mean():
    load = serving_load(parse_metrics(_dp8_metrics()))
    (row,) = fleet_rows({"h": {"state": "running", "ready": True, "rank": "0", **load}})
    assert row["kv_usage"] == "0.91 (mean 0.40)"
    assert row["running"] == "24"
