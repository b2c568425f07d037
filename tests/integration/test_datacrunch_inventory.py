"""`ansible-inventory -i datacrunch` from the repository root, against the DataCrunch (Verda) API stand-in.

The stand-in runs as its own process on loopback, seeded with a fleet in the API's shape (tests/lab/verda-api/
fleet-demo.json): two running 8x H200 instances, an A100 one, one offline, one still provisioning, and a running
16H200 Instant Cluster of two workers behind a jump host.
"""

import json
import re
import socket
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lab" / "verda-api"))
import standin_control
from standin_control import CLIENT_SECRET, ansible

FLEET = str(Path(standin_control.HERE) / "fleet-demo.json")

EXPECTED_GRAPH = {
    "datacrunch": ["sglang-r1-a", "sglang-r1-b", "tp16-fin01-node-1", "tp16-fin01-node-2", "train-a100"],
    "datacrunch_instances": ["sglang-r1-a", "sglang-r1-b", "train-a100"],
    "datacrunch_cluster_workers": ["tp16-fin01-node-1", "tp16-fin01-node-2"],
    "datacrunch_cluster_tp16_fin01": ["tp16-fin01-node-1", "tp16-fin01-node-2"],
    "datacrunch_type_8H200_141S_176V": ["sglang-r1-a", "sglang-r1-b"],
    "datacrunch_type_16H200": ["tp16-fin01-node-1", "tp16-fin01-node-2"],
    "datacrunch_type_8A100_176V": ["train-a100"],
    "datacrunch_location_FIN_01": ["sglang-r1-a", "tp16-fin01-node-1", "tp16-fin01-node-2"],
    "datacrunch_location_FIN_02": ["train-a100"],
    "datacrunch_location_FIN_03": ["sglang-r1-b"],
    "sglang_servers": ["sglang-r1-a", "sglang-r1-b", "tp16-fin01-node-1", "tp16-fin01-node-2"],
    "ungrouped": [],
}


@pytest.fixture(scope="module")
def fleet():
    with standin_control.in_process("--seed", FLEET) as control:
        yield control


def parse_graph(text):
    """{group: [hosts]} from `ansible-inventory --graph` output."""
    groups = {}
    current = None
    for line in text.splitlines():
        match = re.match(r"^\s*\|--@(\S+):$", line)
        if match:
            current = groups.setdefault(match.group(1), [])
            continue
        match = re.match(r"^\s*\|\s+\|--(\S+)$", line)
        if match and current is not None:
            current.append(match.group(1))
    return groups


def plain(value):
    """Values as the inventory holds them. `--list` marks data that must never be templated as
    {"__ansible_unsafe": value}; this takes the mark off."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def assert_secrets_absent(output, control):
    assert CLIENT_SECRET not in output
    for token in control.tokens():
        assert token not in output


def custom_config(tmp_path, text):
    """An inventory directory holding one datacrunch.yml, for options the shipped config does not set."""
    directory = tmp_path / "inventory"
    directory.mkdir()
    (directory / "datacrunch.yml").write_text("plugin: datacrunch.sglang.datacrunch\n" + text)
    return str(directory)


def test_graph_from_the_repository_root(fleet):
    run = ansible("ansible-inventory", "-i", "datacrunch", "--graph", control=fleet)
    assert run.returncode == 0, run.output
    assert parse_graph(run.stdout) == EXPECTED_GRAPH
    assert "WARNING" not in run.stderr, run.stderr


def test_list_gives_instances_their_public_ip_and_cluster_workers_a_jump(fleet):
    run = ansible("ansible-inventory", "-i", "datacrunch", "--list", control=fleet)
    assert run.returncode == 0, run.output
    assert "jupyter-token-4b1d9e" not in run.stdout
    marked = json.loads(run.stdout)["_meta"]["hostvars"]
    # What came from the API is marked as never to be templated; what the group_vars say is not.
    assert marked["sglang-r1-b"]["datacrunch_description"] == {
        "__ansible_unsafe": "{{ lookup('ansible.builtin.pipe', 'touch /tmp/datacrunch-inventory-was-templated') }}"}
    assert marked["sglang-r1-a"]["ansible_host"] == {"__ansible_unsafe": "192.0.2.11"}
    assert marked["sglang-r1-a"]["sglang_profile"] == "deepseek-r1"
    hostvars = plain(marked)

    instance = hostvars["sglang-r1-a"]
    assert instance["ansible_host"] == "192.0.2.11"
    assert instance["ansible_user"] == "root"
    assert instance["datacrunch_instance_type"] == "8H200.141S.176V"
    assert (instance["datacrunch_gpu_model"], instance["datacrunch_gpu_count"]) == ("H200", 8)
    assert instance["datacrunch_price_per_hour"] == 28.72
    assert instance["datacrunch_os_name"] == "Ubuntu 24.04 + CUDA 12.8 Open + Docker"
    assert instance["datacrunch_tags"] == {"team": "inference"}
    assert instance["sglang_profile"] == "deepseek-r1"  # inventories/datacrunch/group_vars/all.yml
    assert "sglang_cluster" not in instance

    for name, private_ip in (("tp16-fin01-node-1", "10.1.0.11"), ("tp16-fin01-node-2", "10.1.0.12")):
        worker = hostvars[name]
        assert worker["ansible_host"] == private_ip
        assert worker["sglang_private_ip"] == private_ip
        assert worker["sglang_cluster"] == "tp16-fin01"
        assert worker["datacrunch_jump_host"] == "198.51.100.20"
        assert "ProxyCommand=ssh -W %h:%p -q" in worker["ansible_ssh_common_args"]
        assert worker["ansible_ssh_common_args"].endswith("root@198.51.100.20'")
        assert worker["sglang_profile"] == "deepseek-r1-tp16"  # group_vars/datacrunch_cluster_workers.yml


def test_api_data_is_never_templated(fleet, tmp_path):
    marker = Path("/tmp/datacrunch-inventory-was-templated")  # what the seeded description would create
    marker.unlink(missing_ok=True)
    out = tmp_path / "description.txt"
    run = ansible("ansible-playbook", "-i", "datacrunch", "tests/lab/verda-api/playbooks/write-description.yml",
                  "-e", "target=sglang-r1-b", "-e", f"out={out}", control=fleet)
    assert run.returncode == 0, run.output
    assert out.read_text() == "{{ lookup('ansible.builtin.pipe', 'touch /tmp/datacrunch-inventory-was-templated') }}"
    assert not marker.exists()


def test_filters_keyed_groups_and_compose(fleet, tmp_path):
    inventory = custom_config(tmp_path, """
statuses: [running, offline]
locations: [FIN-01]
hostname_patterns: ["sglang-*"]
keyed_groups:
  - key: datacrunch_status
    prefix: status
groups:
  cheap: datacrunch_price_per_hour < 30
compose:
  ansible_port: 2200 + 22
""")
    run = ansible("ansible-inventory", "-i", inventory, "--list", control=fleet)
    assert run.returncode == 0, run.output
    listed = plain(json.loads(run.stdout))
    assert sorted(listed["_meta"]["hostvars"]) == ["sglang-r1-a", "sglang-r1-old"]
    assert listed["status_running"]["hosts"] == ["sglang-r1-a"]
    assert listed["status_offline"]["hosts"] == ["sglang-r1-old"]
    assert sorted(listed["cheap"]["hosts"]) == ["sglang-r1-a", "sglang-r1-old"]
    assert listed["_meta"]["hostvars"]["sglang-r1-a"]["ansible_port"] == 2222


def test_the_cache_spares_the_api_until_flushed(fleet, tmp_path):
    inventory = custom_config(tmp_path, f"""
cache: true
cache_plugin: ansible.builtin.jsonfile
cache_connection: {tmp_path / 'cache'}
cache_timeout: 600
""")
    fleet.clear_requests()
    first = ansible("ansible-inventory", "-i", inventory, "--graph", control=fleet)
    after_first = len(fleet.requests())
    second = ansible("ansible-inventory", "-i", inventory, "--graph", control=fleet)
    after_second = len(fleet.requests())
    flushed = ansible("ansible-inventory", "-i", inventory, "--graph", "--flush-cache", control=fleet)
    assert first.returncode == second.returncode == flushed.returncode == 0
    assert parse_graph(first.stdout) == parse_graph(second.stdout) == parse_graph(flushed.stdout) == EXPECTED_GRAPH
    assert after_first == 3  # token, instances, clusters
    assert after_second == after_first  # answered from the cache
    assert len(fleet.requests()) == after_first + 3
    cached = "".join(path.read_text() for path in (tmp_path / "cache").iterdir())
    assert CLIENT_SECRET not in cached
    assert "jupyter-token-4b1d9e" not in cached  # the instance's Jupyter token, a secret the API sends
    assert "tp16-fin01-node-1" in cached


def test_tokens_are_refreshed_as_they_expire():
    # Tokens that live 1 s are always within the client's refresh margin: each request after the first refreshes.
    with standin_control.in_process("--seed", FLEET, "--token-ttl", "1") as control:
        run = ansible("ansible-inventory", "-i", "datacrunch", "--graph", "-vvvv", control=control)
        assert run.returncode == 0, run.output
        assert parse_graph(run.stdout) == EXPECTED_GRAPH
        grants = [r["grant"] for r in control.requests() if r["path"] == "/v1/oauth2/token"]
        assert grants == ["client_credentials", "refresh_token"]
        assert_secrets_absent(run.output, control)


def test_rate_limits_are_waited_out(fleet):
    fleet.fault("rate_limit", count=2, path="/v1/clusters", retry_after=1)
    run = ansible("ansible-inventory", "-i", "datacrunch", "--graph", "-vvvv", control=fleet)
    assert run.returncode == 0, run.output
    assert parse_graph(run.stdout) == EXPECTED_GRAPH
    assert "GET /clusters: 429; retrying in 1.0s" in run.output


def failed_inventory(control, *extra, env=None):
    run = ansible("ansible-inventory", "-i", "datacrunch", "--graph", "-vvvv", *extra, control=control,
                  env={"ANSIBLE_INVENTORY_UNPARSED_FAILED": "1", **(env or {})})
    assert run.returncode != 0, run.output
    return run.output


def test_bad_credentials(fleet):
    output = failed_inventory(fleet, env={"VERDA_CLIENT_SECRET": "not-the-secret-5f1e"})
    assert "DataCrunch API refused the client credentials" in output
    assert "VERDA_CLIENT_ID / VERDA_CLIENT_SECRET" in output
    assert "not-the-secret-5f1e" not in output
    assert_secrets_absent(output, fleet)


def test_wrong_credentials_fail_the_playbook_once_and_cache_nothing(fleet, tmp_path):
    """ansible.cfg's any_unparsed_is_failed: the run fails instead of going on with "no hosts matched"."""
    inventory = custom_config(tmp_path, f"""
cache: true
cache_plugin: ansible.builtin.jsonfile
cache_connection: {tmp_path / 'cache'}
cache_timeout: 600
""")
    fleet.clear_requests()
    run = ansible("ansible-playbook", "-i", inventory, "deploy.yml", control=fleet,
                  env={"VERDA_CLIENT_SECRET": "not-the-secret-0c4d"})
    assert run.returncode != 0, run.output
    assert "no hosts matched" not in run.output
    assert f"Completely failed to parse inventory source {inventory}/datacrunch.yml" in run.output
    reported = [line for line in run.output.splitlines()
                if line.startswith("[WARNING]: Failed to parse inventory") and "DataCrunch API refused" in line]
    assert len(reported) == 1, run.output
    assert [r["path"] for r in fleet.requests()] == ["/v1/oauth2/token"]
    assert not (tmp_path / "cache").exists() or list((tmp_path / "cache").iterdir()) == []
    assert "not-the-secret-0c4d" not in run.output


def test_missing_credentials():
    run = ansible("ansible-inventory", "-i", "datacrunch", "--graph",
                  env={"ANSIBLE_INVENTORY_UNPARSED_FAILED": "1"})
    assert run.returncode != 0
    assert "no DataCrunch (Verda) API credentials" in run.output
    assert "Export VERDA_CLIENT_ID and VERDA_CLIENT_SECRET" in run.output


def test_a_lasting_server_error(fleet):
    fleet.fault("server_error", count=20, path="/v1/instances")
    try:
        output = failed_inventory(fleet)
    finally:
        fleet.clear_faults()
    assert "DataCrunch API GET /instances failed: HTTP 500 server_error" in output
    assert "run again later" in output
    assert_secrets_absent(output, fleet)


def test_an_unreachable_api():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    run = ansible("ansible-inventory", "-i", "datacrunch", "--graph",
                  env={"ANSIBLE_INVENTORY_UNPARSED_FAILED": "1", "VERDA_BASE_URL": f"http://127.0.0.1:{port}/v1",
                       "VERDA_CLIENT_ID": "x", "VERDA_CLIENT_SECRET": "unreachable-secret-77"}, timeout=120)
    assert run.returncode != 0
    assert f"DataCrunch API at http://127.0.0.1:{port}/v1 is unreachable" in run.output
    assert "unreachable-secret-77" not in run.output


def test_plain_http_to_a_remote_api_is_refused():
    run = ansible("ansible-inventory", "-i", "datacrunch", "--graph",
                  env={"ANSIBLE_INVENTORY_UNPARSED_FAILED": "1", "VERDA_BASE_URL": "http://api.verda.com/v1",
                       "VERDA_CLIENT_ID": "x", "VERDA_CLIENT_SECRET": "y"})
    assert run.returncode != 0
    assert "base_url (VERDA_BASE_URL)='http://api.verda.com/v1' would send the client secret unencrypted" in run.output


def test_the_older_datacrunch_variable_names_work(fleet):
    env = {"VERDA_CLIENT_ID": "", "VERDA_CLIENT_SECRET": "", "DATACRUNCH_CLIENT_ID": standin_control.CLIENT_ID,
           "DATACRUNCH_CLIENT_SECRET": CLIENT_SECRET}
    run = ansible("ansible-inventory", "-i", "datacrunch", "--graph", control=fleet, env=env)
    assert run.returncode == 0, run.output
    assert parse_graph(run.stdout) == EXPECTED_GRAPH


def test_the_plugin_documentation_renders():
    run = ansible("ansible-doc", "-t", "inventory", "datacrunch.sglang.datacrunch")
    assert run.returncode == 0, run.output
    assert "VERDA_CLIENT_SECRET" in run.stdout and "serving_group" in run.stdout


def test_the_static_example_has_the_shape_the_plugin_gives():
    run = ansible("ansible-inventory", "-i", "inventories/static.example", "--list")
    assert run.returncode == 0, run.output
    listed = json.loads(run.stdout)
    hostvars = plain(listed["_meta"]["hostvars"])
    servers = ansible("ansible-inventory", "-i", "inventories/static.example", "--graph", "sglang_servers")
    assert sorted(re.findall(r"--([\w-]+)$", servers.stdout, re.MULTILINE)) == [
        "r1-fin01", "r1-tp16-node-1", "r1-tp16-node-2"]
    single = hostvars["r1-fin01"]
    assert (single["ansible_user"], single["sglang_profile"]) == ("root", "deepseek-r1")
    assert "sglang_cluster" not in single
    for name in ("r1-tp16-node-1", "r1-tp16-node-2"):
        worker = hostvars[name]
        assert worker["sglang_cluster"] == "r1-tp16"
        assert worker["sglang_profile"] == "deepseek-r1-tp16"
        assert worker["sglang_private_ip"] == worker["ansible_host"]
        assert worker["ansible_ssh_common_args"] == "-o ProxyJump=root@198.51.100.20"


def test_cluster_workers_publish_their_storage_and_group_vars_still_win(fleet, tmp_path):
    run = ansible("ansible-inventory", "-i", "datacrunch", "--list", control=fleet)
    assert run.returncode == 0, run.output
    hostvars = plain(json.loads(run.stdout)["_meta"]["hostvars"])
    worker = hostvars["tp16-fin01-node-1"]
    assert worker["datacrunch_local_disk"] == "/mnt/local_disk"
    assert worker["datacrunch_shared_mount"] == "/mnt/tp16-fin01-sfs"  # the cluster's shared volume
    # Facts only: a host variable sglang_hf_home would beat the user's group_vars.
    assert "sglang_hf_home" not in worker and "sglang_cache_dir" not in worker
    assert "datacrunch_local_disk" not in hostvars["sglang-r1-a"]

    def resolved(inventory, *extra):
        out = tmp_path / "storage.json"
        done = ansible("ansible-playbook", "-i", inventory, "tests/lab/verda-api/playbooks/write-storage.yml",
                       "-e", f"out={out}", *extra, control=fleet)
        assert done.returncode == 0, done.output
        return json.loads(out.read_text())

    paths = resolved("datacrunch")
    assert paths["tp16-fin01-node-1"] == {"hf_home": "/mnt/local_disk/huggingface",
                                          "cache_dir": "/mnt/local_disk/datacrunch-sglang/cache"}
    assert paths["sglang-r1-a"] == {"hf_home": "/root/.cache/huggingface",
                                    "cache_dir": "/var/cache/datacrunch-sglang"}
    # sglang_model_storage=shared (the shared mount's path) is deployed in extensions/molecule/multinode.

    inventory = custom_config(tmp_path, "")
    group_vars = Path(inventory) / "group_vars"
    group_vars.mkdir()
    (group_vars / "all.yml").write_text("sglang_hf_home: /data/hf\nsglang_cache_dir: /data/jit\n")
    overridden = resolved(inventory)
    assert overridden["tp16-fin01-node-1"] == {"hf_home": "/data/hf", "cache_dir": "/data/jit"}
