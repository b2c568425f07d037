"""The fleet plan: units, ranks and addresses from the inventory, and one commit per unit, resolved once."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ansible_collections.datacrunch.sglang.plugins.module_utils.plan.fleet_plan import (
    PlanError,
    hub_commit,
    member_address,
    unit_commit,
    unit_topology,
)

OLD = "d4b2603dbe40f660f91af0dc0f7e9316efeb55c7"
NEW = "3708d8ea286d0c3779da69819147dd2b2c171273"
TOKEN = "hf_secretsecretsecret"


def inventory(**hosts):
    return sorted(hosts), hosts


# -- units and ranks -------------------------------------------------------------------------------------------------


def test_an_explicit_rank_zero_on_the_second_host_makes_the_first_host_rank_one():
    names, hostvars = inventory(a={"sglang_cluster": "c"}, b={"sglang_cluster": "c", "sglang_node_rank": 0})
    for host in names:
        plan = unit_topology(host, names, hostvars)
        assert plan["ranks"] == {"a": 1, "b": 0}
        assert plan["members"] == ["b", "a"]
        assert plan["rank0_host"] == "b"


@pytest.mark.parametrize("ranks", [{"a": 0, "b": 1}, {"a": 1, "b": 0}])
def test_explicit_ranks_in_both_orders(ranks):
    names, hostvars = inventory(**{h: {"sglang_cluster": "c", "sglang_node_rank": r} for h, r in ranks.items()})
    assert unit_topology("a", names, hostvars)["ranks"] == ranks
    assert unit_topology("b", names, hostvars)["ranks"] == ranks


def test_implicit_ranks_follow_the_inventory_names_and_every_member_agrees():
    names, hostvars = inventory(
        n2={"sglang_cluster": "c", "sglang_private_ip": "10.0.0.2"},
        n1={"sglang_cluster": "c", "sglang_private_ip": "10.0.0.1"},
        solo={},
    )
    plans = {host: unit_topology(host, names, hostvars) for host in ("n1", "n2")}
    assert plans["n1"] == plans["n2"]
    assert plans["n1"]["members"] == ["n1", "n2"]
    assert plans["n1"]["rank0_address"] == "10.0.0.1"
    assert plans["n1"]["multi_node"] is True
    solo = unit_topology("solo", names, hostvars)
    assert solo["members"] == ["solo"] and solo["name"] == "solo" and not solo["multi_node"]


def test_the_unit_comes_from_the_inventory_not_from_a_subset_of_hosts():
    # The plan takes every inventory host: a play that runs on one host at a time (serial: 1) or a --limit sees the
    # same unit as a play on all of them.
    names, hostvars = inventory(a={"sglang_cluster": "c"}, b={"sglang_cluster": "c"}, x={"sglang_cluster": "d"})
    assert unit_topology("b", names, hostvars)["members"] == ["a", "b"]
    assert unit_topology("b", names, hostvars)["ranks"] == {"a": 0, "b": 1}


@pytest.mark.parametrize(
    ("hostvars", "message"),
    [
        ({"a": {"sglang_cluster": "c", "sglang_node_rank": 2}, "b": {"sglang_cluster": "c"}}, "out of range"),
        (
            {"a": {"sglang_cluster": "c", "sglang_node_rank": 1}, "b": {"sglang_cluster": "c", "sglang_node_rank": 1}},
            "set on both a and b",
        ),
        ({"a": {"sglang_cluster": "c", "sglang_node_rank": "first"}, "b": {"sglang_cluster": "c"}}, "not an integer"),
    ],
)
def test_bad_ranks_are_refused_with_the_variable(hostvars, message):
    with pytest.raises(PlanError, match=message) as caught:
        unit_topology("a", sorted(hostvars), hostvars)
    assert "sglang_node_rank=" in str(caught.value)


def test_the_private_address_comes_from_the_inventory_then_from_the_preflight():
    assert member_address({"sglang_private_ip": "10.1.1.1", "sglang_gpu": {"private_ip": "10.2.2.2"}}) == (
        "10.1.1.1",
        "sglang_private_ip",
    )
    assert member_address({"sglang_gpu": {"private_ip": "10.2.2.2"}})[0] == "10.2.2.2"
    gathered = {"network": {"private_addresses": [{"address": "8.8.8.8"}, {"address": "10.3.3.3", "interface": "e"}]}}
    assert member_address({"gpu_host_facts": gathered}) == ("10.3.3.3", "discovered by the preflight")
    assert member_address({}) == (None, None)


# -- commits ---------------------------------------------------------------------------------------------------------


class Hub:
    """A Hub API on loopback answering GET /api/models/{repo}/revision/{rev} as huggingface.co does."""

    def __init__(self):
        self.branches = {"main": OLD}
        self.missing_repo = False
        self.calls = 0
        self.headers = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                hub.calls += 1
                hub.headers.append(dict(self.headers))
                rev = self.path.rsplit("/", 1)[1]
                sha = hub.branches.get(rev)
                if sha is None:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "RepoNotFound" if hub.missing_repo else "RevisionNotFound")
                    self.end_headers()
                    return
                body = json.dumps({"id": "org/model", "sha": sha}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def resolve(self, repo, rev):
        return hub_commit(self.url, repo, rev, token=TOKEN)


@pytest.fixture
def hub():
    server = Hub()
    yield server
    server.server.shutdown()


def test_a_branch_resolves_through_the_hub_api_with_the_token(hub):
    assert hub.resolve("org/model", "main") == OLD
    assert hub.headers[0]["Authorization"] == "Bearer " + TOKEN


def test_an_unknown_branch_and_an_unreachable_hub_say_what_to_do_and_never_show_the_token(hub):
    with pytest.raises(PlanError, match="no branch or tag 'nope'") as caught:
        hub.resolve("org/model", "nope")
    assert TOKEN not in str(caught.value)
    hub.server.shutdown()
    hub.server.server_close()
    with pytest.raises(PlanError, match="cannot reach the Hub") as caught:
        hub_commit(hub.url, "org/model", "main", token=TOKEN)
    assert "pin the commit instead: set sglang_model_revision" in str(caught.value)
    assert TOKEN not in str(caught.value)


def test_an_unknown_model_is_named_quoted(hub):
    hub.branches = {}
    hub.missing_repo = True
    with pytest.raises(PlanError, match=r"sglang_model='org/nope': the Hub at .* answers 404"):
        hub.resolve("org/nope", "main")


def test_a_pinned_commit_needs_no_hub(tmp_path):
    def unreachable(repo, rev):
        raise AssertionError("the Hub was asked")

    assert unit_commit("u", "org/model", NEW, str(tmp_path / "c.json"), unreachable) == (NEW, "pinned")
    assert not (tmp_path / "c.json").exists()


def test_the_unit_stays_on_its_commit_when_the_branch_moves_until_a_refresh(hub, tmp_path):
    record = str(tmp_path / "commits.json")
    assert unit_commit("u", "org/model", "main", record, hub.resolve, this_run="run1") == (OLD, "hub")
    hub.branches["main"] = NEW
    # A later run (a second deploy): the recorded commit, no Hub call.
    assert unit_commit("u", "org/model", "main", record, hub.resolve, this_run="run2") == (OLD, "recorded")
    assert hub.calls == 1
    # A refresh moves the unit once per run: every later node of the same run gets the same commit.
    assert unit_commit("u", "org/model", "main", record, hub.resolve, refresh=True, this_run="run3") == (NEW, "hub")
    assert unit_commit("u", "org/model", "main", record, hub.resolve, refresh=True, this_run="run3")[0] == NEW
    assert hub.calls == 2
    assert json.loads((tmp_path / "commits.json").read_text())["u"]["commit"] == NEW
    assert (tmp_path / "commits.json").stat().st_mode & 0o077 == 0
    # Another revision asked for the unit resolves anew.
    hub.branches["v1"] = OLD
    assert unit_commit("u", "org/model", "v1", record, hub.resolve, this_run="run4") == (OLD, "hub")


def test_check_mode_records_nothing(hub, tmp_path):
    record = tmp_path / "commits.json"
    assert unit_commit("u", "org/model", "main", str(record), hub.resolve, write=False)[0] == OLD
    assert not record.exists()


def test_the_nodes_of_a_unit_planned_at_once_get_one_commit_from_one_hub_call(hub, tmp_path):
    # Ansible plans the nodes of a unit in parallel workers; the branch moves while they plan.
    record = str(tmp_path / "commits.json")
    barrier = threading.Barrier(6)
    commits = []

    def moving_hub(repo, rev):
        sha = hub.resolve(repo, rev)
        hub.branches["main"] = NEW if sha == OLD else OLD
        return sha

    def plan_node():
        barrier.wait()
        commits.append(unit_commit("u", "org/model", "main", record, moving_hub, this_run="one")[0])

    nodes = [threading.Thread(target=plan_node) for _node in range(6)]
    for node in nodes:
        node.start()
    for node in nodes:
        node.join(30)
    assert len(commits) == 6
    assert set(commits) == {OLD}
    assert hub.calls == 1
