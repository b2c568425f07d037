"""What the modules share around AnsibleModule (common/module_io), and what marks the collection's own (common/labels).
"""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from ansible_collections.datacrunch.sglang.plugins.module_utils.common.labels import LABEL_PREFIX, is_ours, our_labels
from ansible_collections.datacrunch.sglang.plugins.module_utils.common.module_io import (
    exit_with_result,
    pick,
    request_from_params,
)
from ansible_collections.datacrunch.sglang.plugins.module_utils.firewall.ruleset import FirewallRequest
from ansible_collections.datacrunch.sglang.plugins.module_utils.hub.snapshot import SnapshotRequest


@dataclasses.dataclass
class Request:
    name: str
    size: int = 1
    tags: list = dataclasses.field(default_factory=list)


def test_fields_come_from_parameters_of_the_same_name_and_given_values_win():
    request = request_from_params(Request, {"name": "a", "size": 3, "unknown": True}, size=5)
    assert request == Request(name="a", size=5, tags=[])


def test_a_field_without_a_parameter_keeps_its_default():
    assert request_from_params(Request, {"name": "a"}).size == 1


def test_a_required_field_without_a_parameter_is_refused():
    with pytest.raises(TypeError):
        request_from_params(Request, {"size": 2})


def test_every_field_of_the_firewall_request_is_a_module_option():
    from ansible_collections.datacrunch.sglang.plugins.modules import sglang_firewall

    names = {field.name for field in dataclasses.fields(FirewallRequest)}
    documented = set(_documented_options(sglang_firewall.DOCUMENTATION))
    assert names <= documented, sorted(names - documented)


def test_every_field_of_the_snapshot_request_is_a_module_option_or_given():
    from ansible_collections.datacrunch.sglang.plugins.modules import hf_snapshot

    names = {field.name for field in dataclasses.fields(SnapshotRequest)}
    documented = set(_documented_options(hf_snapshot.DOCUMENTATION))
    assert names - documented == {"check_mode"}


def _documented_options(documentation):
    return yaml.safe_load(documentation)["options"]


def test_pick_takes_the_named_parameters_only():
    assert pick({"a": 1, "b": 2, "c": 3}, ("a", "c")) == {"a": 1, "c": 3}
    with pytest.raises(KeyError):
        pick({"a": 1}, ("b",))


class RecordingModule:
    """Records what a module would send back to Ansible (warnings, the exit arguments)."""

    def __init__(self, diff):
        self._diff = diff
        self.warnings = []
        self.exited = None

    def warn(self, message):
        self.warnings.append(message)

    def exit_json(self, **result):
        self.exited = result


@pytest.mark.parametrize("diff", [False, True])
def test_warnings_become_ansible_warnings_and_the_diff_shows_only_under_diff(diff):
    module = RecordingModule(diff)
    exit_with_result(module, {"changed": True, "warnings": ["w1", "w2"], "diff": {"before": "", "after": "x"}})
    assert module.warnings == ["w1", "w2"]
    assert ("diff" in module.exited) is diff
    assert module.exited["changed"] is True and "warnings" not in module.exited


def test_a_result_without_warnings_or_diff_exits_as_it_is():
    module = RecordingModule(False)
    exit_with_result(module, {"changed": False, "actions": []})
    assert module.exited == {"changed": False, "actions": []} and module.warnings == []


def test_our_labels_are_those_under_the_prefix():
    labels = {LABEL_PREFIX + "profile": "p", "org.opencontainers.image.title": "x", "datacrunch.sglangx": "no"}
    assert is_ours(labels)
    assert our_labels(labels) == {LABEL_PREFIX + "profile": "p"}
    assert not is_ours({"datacrunch.sglangx": "no"})
    assert not is_ours(None) and our_labels(None) == {}
