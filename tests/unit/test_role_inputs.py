"""Every role's inputs, checked on the controller against the roles' own argument specs before any host changes."""

from pathlib import Path

import pytest
import yaml

from ansible_collections.datacrunch.sglang.plugins.action.sglang_inputs import (
    DEPLOY_ROLES,
    known_names,
    role_specs,
    unit_errors,
    unknown_extra_vars,
)
from ansible_collections.datacrunch.sglang.plugins.module_utils.plan.role_inputs import api_key_error, check_role_inputs

ROLES = Path(__file__).resolve().parents[2] / "roles"
SPECS = role_specs(DEPLOY_ROLES)


def errors(**values):
    return check_role_inputs(SPECS, values)


def test_the_deploy_roles_all_have_specs():
    for role in DEPLOY_ROLES:
        assert SPECS[role] == yaml.safe_load((ROLES / role / "meta/argument_specs.yml").read_text())


def test_the_defaults_of_every_role_pass():
    for role in DEPLOY_ROLES:
        defaults = yaml.safe_load((ROLES / role / "defaults/main.yml").read_text()) or {}
        plain = {name: value for name, value in defaults.items() if "{{" not in str(value)}
        assert errors(**plain) == [], role


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"sglang_tls_enabled": "ture"}, "sglang_tls_enabled='ture' is not a boolean; set true or false"),
        ({"sglang_firewall_enabled": "nope"}, "sglang_firewall_enabled='nope' is not a boolean"),
        ({"sglang_server_smoke": 2}, "sglang_server_smoke=2 is not a boolean"),
        ({"sglang_server_pull": "sometimes"}, "sglang_server_pull='sometimes' is refused by role sglang_server"),
        ({"sglang_server_ready_timeout": "soon"}, "sglang_server_ready_timeout='soon' is refused by role "
                                                  "sglang_server"),
        ({"sglang_port": 70000}, "sglang_port=70000 must be a TCP port number (1-65535)"),
        ({"sglang_server_dist_port": 0}, "sglang_server_dist_port=0 must be a TCP port number"),
        ({"sglang_tls_port": "443x"}, "sglang_tls_port='443x' is refused by role sglang_tls"),
        ({"sglang_server_shm_size": "abc"}, "sglang_server_shm_size='abc' is not a size Docker understands"),
        ({"sglang_server_bind_host": "999.1.1.1"}, "sglang_server_bind_host='999.1.1.1' is not an IP address"),
        ({"sglang_private_ip": "10.0.0"}, "sglang_private_ip='10.0.0' is not an IP address"),
        ({"model_cache_mode": "torrent"}, "model_cache_mode='torrent' is refused by role model_cache"),
        ({"sglang_firewall_client_ports": [70000]}, "sglang_firewall_client_ports: 70000 is not a TCP port; use a "
                                                    "number from 1 to 65535"),
        ({"sglang_firewall_client_cidrs": ["10.0.0.300/8"]}, "sglang_firewall_client_cidrs: '10.0.0.300/8' is not an "
                                                             "IP address or network"),
        ({"sglang_firewall_client_cidrs": ["10.0.0.5/8"]}, "has host bits set; use the network 10.0.0.0/8"),
        ({"sglang_firewall_unit_ports": ["50063-50000"]}, "sglang_firewall_unit_ports: '50063-50000' runs backwards"),
        ({"sglang_firewall_dist_port_span": 0}, "sglang_firewall_dist_port_span=0 must be a whole number of at least"),
        ({"sglang_firewall_table": "1bad"}, "sglang_firewall_table: '1bad' is not an nftables table name"),
    ],
)
def test_bad_values_name_the_variable_the_value_and_the_fix(values, message):
    found = errors(**values)
    assert len(found) == 1, found
    assert message in found[0]


@pytest.mark.parametrize("value", [True, False, "true", "false", "yes", "no", 0, 1])
def test_booleans_ansible_reads_pass(value):
    assert errors(sglang_tls_enabled=value) == []


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (" ", "sglang_api_key is blank"),
        ("   \t", "sglang_api_key is blank"),
        ("abc def ghi jkl mno", "holds whitespace"),
        ("-abcdefghijklmnopqrst", "starts with '-'"),
        ("short-key", "has 9 characters (not shown), fewer than 16"),
    ],
)
def test_api_keys_that_cannot_work_are_refused_without_showing_them(key, message):
    found = errors(sglang_api_key=key)
    assert len(found) == 1 and message in found[0]
    if key.strip():
        assert key not in found[0]
    assert api_key_error(key) == found[0]


def test_good_and_generated_api_keys_pass():
    assert errors(sglang_api_key="") == []
    assert errors(sglang_api_key="k3y-0f-32-characters-long-abcdef") == []


def test_a_secret_of_the_wrong_type_is_not_shown():
    found = errors(sglang_api_key=["canary-secret-value-0123456789"])
    assert found == ["sglang_api_key must be a string; quote it"]


def test_variables_no_role_declares_are_left_alone():
    assert errors(my_own_variable="anything") == []


GROUPS = {"all": ["a-1", "a-2", "solo"]}
HOSTVARS = {"a-1": {"sglang_cluster": "a"}, "a-2": {"sglang_cluster": "a"}, "solo": {}}


def test_a_play_that_leaves_out_part_of_a_unit_is_refused():
    found = unit_errors(GROUPS, HOSTVARS, ["a-1"], forks=64)
    assert found == [
        "sglang_cluster='a' is deployed as one unit of 2 hosts, but this play leaves out a-2 (check --limit and the "
        "play's hosts): a unit starts, is tested and restarts as a whole; include every host of the unit"
    ]
    assert unit_errors(GROUPS, HOSTVARS, ["a-1", "a-2"], forks=64) == []
    assert unit_errors(GROUPS, HOSTVARS, ["solo"], forks=64) == []


def test_a_unit_larger_than_forks_is_refused_with_the_setting():
    found = unit_errors(GROUPS, HOSTVARS, ["a-1", "a-2", "solo"], forks=1)
    assert len(found) == 1
    assert "sglang_cluster='a' has 2 hosts, but Ansible runs each task on at most 1 hosts at once (forks=1)" in found[0]
    assert "ansible.cfg [defaults] forks, ANSIBLE_FORKS, or -f" in found[0]


def test_a_misspelled_extra_var_is_named_with_the_nearest_known_name(tmp_path):
    from_file = tmp_path / "vars.yml"
    from_file.write_text("model_cache_mod: hub\n")
    warnings = unknown_extra_vars(
        ["sglang_imgae=lmsysorg/sglang:v0.5.23 other_tool_setting=1", '{"sglang_server_purge": true}',
         "@%s" % from_file, "sglang_hosts=gpu"], known_names())
    assert warnings == [
        "-e model_cache_mod: no role or playbook of datacrunch.sglang reads this variable, so it changes nothing; "
        "did you mean model_cache_mode?",
        "-e sglang_imgae: no role or playbook of datacrunch.sglang reads this variable, so it changes nothing; "
        "did you mean sglang_image?",
    ]


def test_every_documented_role_option_is_a_known_name():
    for role in (path.name for path in ROLES.iterdir() if (path / "meta/argument_specs.yml").exists()):
        for entry in (role_specs([role])[role].get("argument_specs") or {}).values():
            for name in entry.get("options") or {}:
                if name.startswith(("sglang_", "gpu_host_", "host_venv_", "model_cache_")):
                    assert name in known_names(), (role, name)


def test_the_firewall_inputs_are_all_reported_at_once_by_the_hosts_own_checks():
    found = errors(sglang_firewall_client_ports=[70000], sglang_firewall_client_cidrs=["private", "10.0.0.300/8"],
                   sglang_firewall_unit_ports=["50000-50063", "x"])
    assert [error.split(":")[0] for error in found] == [
        "sglang_firewall_client_ports", "sglang_firewall_unit_ports", "sglang_firewall_client_cidrs"]


def test_the_firewall_port_lists_are_compared_only_when_every_list_is_known():
    # Before the roles run, an unset list has the role's default, which is not known here: no comparison.
    assert errors(sglang_firewall_local_ports=[30000]) == []
    # Inside the role every list is there (defaults included): a port both open and local is refused.
    both = errors(sglang_firewall_client_ports=[30000], sglang_firewall_local_ports=[30000],
                  sglang_firewall_ssh_ports=[22])
    assert both == ["sglang_firewall_client_ports and sglang_firewall_local_ports both list 30000; a port is either "
                    "open to clients or local to the host"]
    ssh = errors(sglang_firewall_client_ports=[22], sglang_firewall_local_ports=[], sglang_firewall_ssh_ports=[22])
    assert "SSH always stays open" in ssh[0]


def test_a_value_refused_by_its_type_is_not_reported_twice():
    found = errors(sglang_firewall_client_ports=["http"])
    assert len(found) == 1 and found[0].startswith("sglang_firewall_client_ports=['http'] is refused by role"), found


def test_the_firewall_lists_are_not_checked_when_the_firewall_is_off():
    assert errors(sglang_firewall_enabled=False, sglang_firewall_client_ports=[22], sglang_firewall_local_ports=[],
                  sglang_firewall_ssh_ports=[22]) == []
