"""A copy of datacrunch.sglang other than the playbook's checkout is named before it runs."""

from pathlib import Path

from ansible_collections.datacrunch.sglang.plugins.filter.collection_origin_problem import (
    collection_origin_problem,
    origin_problem,
)

ROOT = Path(__file__).resolve().parents[2]


def test_the_checkout_running_its_own_playbooks_is_fine():
    assert collection_origin_problem(str(ROOT / "playbooks")) == ""
    assert collection_origin_problem(str(ROOT)) == ""


def test_a_stale_copy_is_named_with_both_paths(tmp_path):
    stale = tmp_path / ".ansible/collections/ansible_collections/datacrunch/sglang"
    stale.mkdir(parents=True)
    problem = origin_problem(str(ROOT / "playbooks"), str(stale))
    assert problem.startswith("The playbook is in the checkout %s, but the datacrunch.sglang that runs is %s:"
                              % (ROOT.resolve(), stale.resolve()))
    assert "ANSIBLE_COLLECTIONS_PATH" in problem


def test_a_playbook_outside_any_checkout_is_left_alone(tmp_path):
    assert origin_problem(str(tmp_path), str(ROOT)) == ""
