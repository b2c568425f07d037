"""The firewall's ruleset: inputs, the networks 'private' stands for, and the rendered nftables table."""

from __future__ import annotations

import re

import pytest

from ansible_collections.datacrunch.sglang.plugins.module_utils.firewall.ruleset import (
    FirewallError,
    FirewallRequest,
    HostNetwork,
    host_private_networks,
    load_script,
    merge_ranges,
    normalize,
    parse_ephemeral_range,
    parse_port_ranges,
    render,
)

# A TP16 rank: public address on the uplink, private fabric, Docker's bridge, a veth.
HOST = HostNetwork(
    interfaces={
        "lo": ["127.0.0.1/8", "::1/128"],
        "enp1s0": ["203.0.113.10/24", "2001:db8::10/64"],
        "enp2s0": ["10.1.0.5/16", "fe80::1/64"],
        "docker0": ["172.17.0.1/16"],
        "veth12ab": ["169.254.3.3/16"],
        "ibp3s0": ["192.168.100.5/24"],
    },
    ephemeral_range=(32768, 60999),
)


def tabs(text):
    """nft indents with tabs; written here with four spaces per level."""
    return re.sub(r"(?m)^((?:    )+)", lambda match: "\t" * (len(match.group(1)) // 4), text)


EXPECTED_TP16_RANK = tabs("""\
table inet datacrunch_sglang {
    comment "managed by datacrunch.sglang (role sglang_firewall): edits here are replaced"
    set client_v4 {
        type ipv4_addr
        flags interval
        elements = { 10.1.0.0/16, 192.168.100.0/24 }
    }

    set client_v6 {
        type ipv6_addr
        flags interval
    }

    set unit_v4 {
        type ipv4_addr
        flags interval
        elements = { 10.1.0.6 }
    }

    set unit_v6 {
        type ipv6_addr
        flags interval
    }

    chain input {
        type filter hook input priority filter; policy accept;
        iifname "lo" accept comment "the host itself"
        ct state established,related accept comment "replies and open connections"
        tcp dport 22 accept comment "SSH stays open"
        tcp dport 30000 ip saddr @client_v4 accept comment "clients"
        tcp dport 30000 ip6 saddr @client_v6 accept comment "clients"
        tcp dport 30000 drop comment "clients elsewhere"
        tcp dport { 30100-31000, 32768-60999 } ip saddr @unit_v4 accept comment "the unit's other hosts"
        tcp dport { 30100-31000, 32768-60999 } ip6 saddr @unit_v6 accept comment "the unit's other hosts"
        tcp dport { 30100-31000, 32768-60999 } drop comment "unit ports elsewhere"
    }
}
""")


def request(**overrides):
    values = {
        "client_ports": [30000],
        "client_cidrs": ["private"],
        "unit_ports": ["50000-50063", "30100-31000"],
        "unit_peers": ["10.1.0.6"],
    }
    values.update(overrides)
    return FirewallRequest(**values)


def test_a_tp16_rank_gets_the_table_nft_would_list():
    ruleset = render(request(), HOST)
    assert ruleset.text == EXPECTED_TP16_RANK
    assert ruleset.client_networks == ["10.1.0.0/16", "192.168.100.0/24"]
    assert ruleset.unit_networks == ["10.1.0.6/32"]
    # The rendezvous range lies inside the ephemeral range and is merged into it.
    assert ruleset.unit_port_ranges == ["30100-31000", "32768-60999"]
    assert ruleset.warnings == []


def test_private_is_the_rfc1918_networks_of_physical_interfaces_only():
    networks = [str(net) for net in host_private_networks(HOST)]
    # Not Docker's bridge (172.17/16 is RFC 1918 but not a network the host is on for clients), not the public
    # uplink, not link-local, not IPv6.
    assert networks == ["10.1.0.0/16", "192.168.100.0/24"]


def test_a_host_with_public_addresses_only_serves_itself_and_says_how_to_open_it():
    public_only = HostNetwork(interfaces={"lo": ["127.0.0.1/8"], "eth0": ["198.51.100.7/24"]})
    ruleset = render(request(unit_peers=[]), public_only)
    assert "elements" not in ruleset.text.split("set client_v6")[0]
    assert 'tcp dport 30000 drop comment "clients elsewhere"' in ruleset.text
    assert len(ruleset.warnings) == 1
    assert "only the host itself can reach the server" in ruleset.warnings[0]
    assert "sglang_firewall_client_cidrs" in ruleset.warnings[0]


def test_explicit_networks_are_merged_sorted_and_single_addresses_lose_their_prefix():
    ruleset = render(
        request(client_cidrs=["192.168.0.0/16", "203.0.113.7", "192.168.4.0/24", "2001:db8::/32", "private"]),
        HOST,
    )
    assert "elements = { 10.1.0.0/16, 192.168.0.0/16, 203.0.113.7 }" in ruleset.text
    assert "elements = { 2001:db8::/32 }" in ruleset.text
    assert ruleset.client_networks == ["10.1.0.0/16", "192.168.0.0/16", "203.0.113.7/32", "2001:db8::/32"]


def test_the_whole_internet_is_allowed_only_with_a_warning():
    ruleset = render(request(client_cidrs=["0.0.0.0/0"]), HOST)
    assert "elements = { 0.0.0.0/0 }" in ruleset.text
    assert any("every address" in warning for warning in ruleset.warnings)


def test_tls_keeps_the_plain_port_local_and_opens_the_proxy_port():
    ruleset = render(request(client_ports=[8443], local_ports=[30000], refuse="reject"), HOST)
    assert 'tcp dport 8443 ip saddr @client_v4 accept comment "clients"' in ruleset.text
    assert 'tcp dport 30000 reject with tcp reset comment "local only"' in ruleset.text
    assert "tcp dport 30000 ip saddr" not in ruleset.text


def test_without_ephemeral_protection_only_the_listed_unit_ports_are_kept():
    ruleset = render(request(protect_ephemeral_ports=False), HOST)
    assert ruleset.unit_port_ranges == ["30100-31000", "50000-50063"]
    assert "tcp dport { 30100-31000, 50000-50063 } drop" in ruleset.text


def test_ssh_stays_open_before_any_drop():
    text = render(request(ssh_ports=[22, 2222]), HOST).text
    rules = [line.strip() for line in text.splitlines() if line.startswith("\t\t") and "dport" in line]
    assert rules[0] == 'tcp dport { 22, 2222 } accept comment "SSH stays open"'
    assert all("drop" not in rule for rule in rules[:1])


@pytest.mark.parametrize(
    "overrides, words",
    [
        ({"client_cidrs": ["10.0.0.300/8"]}, ["sglang_firewall_client_cidrs", "'10.0.0.300/8'", "CIDR notation"]),
        ({"client_cidrs": ["10.0.0.5/8"]}, ["sglang_firewall_client_cidrs", "host bits", "10.0.0.0/8", "10.0.0.5/32"]),
        ({"unit_peers": ["rank0.example"]}, ["sglang_firewall_unit_peers", "'rank0.example'"]),
        ({"client_ports": [70000]}, ["sglang_firewall_client_ports", "70000", "1 to 65535"]),
        ({"client_ports": ["http"]}, ["sglang_firewall_client_ports", "'http'"]),
        ({"unit_ports": ["50063-50000"]}, ["sglang_firewall_unit_ports", "backwards", "50000-50063"]),
        ({"local_ports": [30000]}, ["sglang_firewall_local_ports", "30000", "either open to clients or local"]),
        ({"ssh_ports": [30000]}, ["sglang_firewall_ssh_ports", "30000", "SSH always stays open"]),
        ({"table": "sglang-firewall"}, ["sglang_firewall_table", "'sglang-firewall'", "datacrunch_sglang"]),
        ({"refuse": "ignore"}, ["sglang_firewall_refuse", "'ignore'", "drop, reject"]),
    ],
)
def test_bad_inputs_name_the_variable_the_value_and_the_fix(overrides, words):
    with pytest.raises(FirewallError) as error:
        render(request(**overrides), HOST)
    for word in words:
        assert word in str(error.value)


def test_port_ranges_merge_when_they_touch_or_overlap():
    assert merge_ranges([(5, 9), (1, 3), (4, 4), (20, 30), (25, 26)]) == [(1, 9), (20, 30)]
    assert parse_port_ranges(["50000-50063", 50010, "22"], "v") == [(22, 22), (50000, 50063)]


def test_ephemeral_range_is_read_as_the_kernel_prints_it():
    assert parse_ephemeral_range("32768\t60999\n") == (32768, 60999)
    for text in ("", "32768", "60999 32768", "a b"):
        with pytest.raises(FirewallError):
            parse_ephemeral_range(text)


def test_the_script_replaces_only_its_own_table_in_one_transaction():
    script = load_script("datacrunch_sglang", EXPECTED_TP16_RANK)
    commands = [line for line in script.splitlines() if line and not line.startswith("#")]
    assert commands[:3] == [
        "table inet datacrunch_sglang",
        "delete table inet datacrunch_sglang",
        "table inet datacrunch_sglang {",
    ]
    assert "flush ruleset" not in script
    assert [line for line in commands if line.startswith("table ") or line.startswith("delete ")] == commands[:3]


def test_listings_compare_equal_whatever_the_line_wrapping():
    wrapped = EXPECTED_TP16_RANK.replace("10.1.0.0/16, 192.168.100.0/24", "10.1.0.0/16,\n\t\t\t     192.168.100.0/24")
    assert normalize(wrapped) == normalize(EXPECTED_TP16_RANK)
    assert normalize(EXPECTED_TP16_RANK.replace("30000 drop", "30001 drop")) != normalize(EXPECTED_TP16_RANK)
