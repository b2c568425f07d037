"""Rollout planning: units stay whole, batches follow the requested size."""

import pytest

from ansible_collections.datacrunch.sglang.plugins.module_utils.plan.rollout import (
    RolloutError,
    batch_size,
    plan_rollout,
    serving_units,
)

CLUSTERS = {"a": ("", 0), "b-rank1": ("tp16", 1), "c": ("", 0), "b-rank0": ("tp16", 0), "d": ("", 0)}
HOSTS = ["a", "b-rank1", "c", "b-rank0", "d"]


def lookup(host):
    return CLUSTERS[host]


def test_units_keep_cluster_members_together_in_rank_order():
    assert serving_units(HOSTS, lookup) == [["a"], ["b-rank0", "b-rank1"], ["c"], ["d"]]


def test_one_unit_at_a_time_by_default():
    plan = plan_rollout(HOSTS, lookup)
    assert plan["order"] == ["a", "b-rank0", "b-rank1", "c", "d"]
    assert plan["serial"] == [1, 2, 1, 1]
    assert plan["description"][0] == "4 unit(s) in 4 batch(es) of up to 1 unit(s):"
    assert plan["description"][2] == "  batch 2: b-rank0 + b-rank1"


@pytest.mark.parametrize(("batch", "serial"), [(2, [3, 2]), ("50%", [3, 2]), ("25%", [1, 2, 1, 1]), ("100%", [5])])
def test_batches_by_count_or_percentage(batch, serial):
    assert plan_rollout(HOSTS, lookup, batch)["serial"] == serial


@pytest.mark.parametrize("batch", [0, -1, "0%", "150%", "half", None])
def test_bad_batch_sizes_are_refused(batch):
    with pytest.raises(RolloutError, match="sglang_rollout_batch="):
        batch_size(batch, 4)


def test_empty_play_is_refused():
    with pytest.raises(RolloutError, match="no host"):
        plan_rollout([], lookup)
