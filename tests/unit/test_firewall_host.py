"""The firewall on a host, with nft and systemctl replaced by recorders (tests/integration/test_firewall.py runs the
real nft on lab hosts): when it loads, what it writes, check mode, drift, and how the table survives a reboot."""

from __future__ import annotations

import json
import os
import re

import pytest

from ansible_collections.datacrunch.sglang.plugins.module_utils.firewall import persist as nft_persist
from ansible_collections.datacrunch.sglang.plugins.module_utils.firewall.host import STATE_FILE, HostFirewall
from ansible_collections.datacrunch.sglang.plugins.module_utils.firewall.ruleset import FirewallError, FirewallRequest

RULES_FILE = "/etc/nftables.d/datacrunch-sglang.nft"
IP_ADDR = json.dumps(
    [
        {"ifname": "lo", "addr_info": [{"family": "inet", "local": "127.0.0.1", "prefixlen": 8}]},
        {"ifname": "eth0", "addr_info": [{"family": "inet", "local": "10.0.0.5", "prefixlen": 24}]},
        {"ifname": "docker0", "addr_info": [{"family": "inet", "local": "172.17.0.1", "prefixlen": 16}]},
    ]
)


class FakeHost:
    """nft, ip and systemctl as far as the firewall uses them. `listing` rewrites what nft prints for a loaded
    table (another nft version's layout); `services` holds `systemctl is-enabled` answers."""

    def __init__(self, root, listing=None, systemd=False, services=None, refuse=None):
        self.root = root
        self.loaded = None
        self.listing = listing or (lambda text: text)
        self.calls = []
        self.services = dict(services or {})
        self.refuse = refuse
        os.makedirs(root + "/usr/sbin")
        for tool in ("nft", "ip"):
            with open(root + "/usr/sbin/" + tool, "w") as handle:
                handle.write("#!/bin/sh\n")
            os.chmod(root + "/usr/sbin/" + tool, 0o700)
        os.makedirs(root + "/proc/sys/net/ipv4")
        with open(root + "/proc/sys/net/ipv4/ip_local_port_range", "w") as handle:
            handle.write("32768\t60999\n")
        if systemd:
            os.makedirs(root + "/run/systemd/system")

    def __call__(self, argv, stdin=None, timeout=60):
        self.calls.append(list(argv))
        if argv[:2] == ["/usr/sbin/ip", "-j"]:
            return 0, IP_ADDR, ""
        if argv[0] == "systemctl":
            if argv[1] == "is-enabled":
                state = self.services.get(argv[2], "disabled")
                return (0 if state == "enabled" else 1), state + "\n", ""
            if argv[1] == "enable":
                self.services[argv[2]] = "enabled"
            if argv[1] == "disable":
                self.services[argv[2]] = "disabled"
            return 0, "", ""
        assert argv[0] == "/usr/sbin/nft", argv
        if argv[1:3] == ["list", "table"]:
            if self.loaded is None:
                return 1, "", "Error: No such file or directory; did you mean table 'nat' in family ip?"
            return 0, self.listing(self.loaded), ""
        if argv[1] == "-c":
            with open(argv[3]) as handle:
                script = handle.read()
            if self.refuse and self.refuse in script:
                return 1, "", "Error: Could not process rule: %s" % self.refuse
            return 0, "", ""
        if argv[1] == "-f":
            with open(argv[2]) as handle:
                script = handle.read()
            # What the table definition loads: everything after the delete line.
            self.loaded = script.split("delete table inet datacrunch_sglang\n", 1)[1]
            return 0, "", ""
        if argv[1] == "delete":
            self.loaded = None
            return 0, "", ""
        raise AssertionError("unexpected nft call %s" % argv)

    def nft_calls(self, word):
        return [call for call in self.calls if call[0].endswith("nft") and call[1] == word]


def firewall(host, check_mode=False):
    return HostFirewall("datacrunch_sglang", host, rules_file=RULES_FILE, check_mode=check_mode, root=host.root)


def wanted(**overrides):
    values = {"client_ports": [30000], "client_cidrs": ["private"], "unit_ports": ["50000-50063"],
              "unit_peers": ["10.0.0.6"]}
    values.update(overrides)
    return FirewallRequest(**values)


@pytest.fixture(autouse=True)
def no_ssh_connection(monkeypatch):
    """Tests run the same inside and outside an SSH session."""
    monkeypatch.delenv("SSH_CONNECTION", raising=False)


@pytest.fixture
def host(tmp_path):
    return FakeHost(str(tmp_path / "host"))


def read(host, path):
    with open(host.root + path) as handle:
        return handle.read()


def test_check_apply_apply_check(host):
    checked = firewall(host, check_mode=True).ensure(wanted(), persist=False)
    assert checked["changed"] is True
    assert host.loaded is None and not os.path.exists(host.root + RULES_FILE)
    assert host.nft_calls("-c"), "check mode lets nft check the ruleset"
    assert checked["diff"][0]["before"] == "" and "elements = { 10.0.0.0/24 }" in checked["diff"][0]["after"]

    applied = firewall(host).ensure(wanted(), persist=False)
    assert applied["changed"] is True
    assert applied["actions"] == ["write " + RULES_FILE, "load table inet datacrunch_sglang"]
    assert host.loaded == applied["ruleset"]
    assert read(host, RULES_FILE).startswith("#!/usr/sbin/nft -f\n")
    assert oct(os.stat(host.root + RULES_FILE).st_mode & 0o777) == "0o644"

    again = firewall(host).ensure(wanted(), persist=False)
    assert again["changed"] is False and again["actions"] == []
    assert len(host.nft_calls("-f")) == 1
    assert firewall(host, check_mode=True).ensure(wanted(), persist=False)["changed"] is False


def test_a_changed_input_replaces_the_table(host):
    firewall(host).ensure(wanted(), persist=False)
    result = firewall(host).ensure(wanted(unit_peers=["10.0.0.7"]), persist=False)
    assert result["changed"] is True
    assert result["actions"] == ["write " + RULES_FILE, "replace table inet datacrunch_sglang"]
    assert "elements = { 10.0.0.7 }" in host.loaded and "10.0.0.6" not in host.loaded


def test_the_ssh_port_of_the_connection_stays_open_whatever_the_inventory_says(host):
    result = firewall(host).ensure(wanted(ssh_ports=[22], unit_ports=["40000-40100"]), persist=False,
                                   environ={"SSH_CONNECTION": "10.0.0.1 51234 10.0.0.5 40022"})
    assert result["ssh_ports"] == [22, 40022]
    rules = [line.strip() for line in host.loaded.splitlines() if "dport" in line]
    assert rules[0] == 'tcp dport { 22, 40022 } accept comment "SSH stays open"'
    # Without an SSH connection (a local run), the listed ports alone.
    local = firewall(host).ensure(wanted(ssh_ports=[22]), persist=False, environ={})
    assert local["ssh_ports"] == [22]


def test_drift_in_the_kernel_or_the_file_is_repaired(host):
    firewall(host).ensure(wanted(), persist=False)
    host.loaded = host.loaded.replace('\t\ttcp dport 30000 drop comment "clients elsewhere"\n', "")
    result = firewall(host).ensure(wanted(), persist=False)
    assert result["actions"] == ["replace table inet datacrunch_sglang"]
    assert 'tcp dport 30000 drop comment "clients elsewhere"' in host.loaded

    os.unlink(host.root + RULES_FILE)
    result = firewall(host).ensure(wanted(), persist=False)
    assert result["actions"] == ["write " + RULES_FILE]
    # After a reboot without the table (nothing loaded it), it is loaded again.
    host.loaded = None
    assert firewall(host).ensure(wanted(), persist=False)["actions"] == ["load table inet datacrunch_sglang"]


def test_an_nft_that_lists_the_table_its_own_way_is_still_idempotent(tmp_path):
    # Another nft version prints the hook priority as a number and wraps elements: compared with the listing kept
    # after the last load, not with the rendered text.
    host = FakeHost(str(tmp_path / "host"), listing=lambda text: text.replace("priority filter", "priority 0"))
    assert firewall(host).ensure(wanted(), persist=False)["changed"] is True
    state = json.loads(read(host, STATE_FILE))
    assert "priority 0" in state["listing"]
    assert firewall(host).ensure(wanted(), persist=False)["changed"] is False
    # ... and a real change still is one.
    assert firewall(host).ensure(wanted(client_ports=[30001]), persist=False)["changed"] is True


def test_nft_refusing_the_ruleset_changes_nothing(tmp_path):
    host = FakeHost(str(tmp_path / "host"), refuse="30000")
    with pytest.raises(FirewallError, match="nft refuses the rendered ruleset"):
        firewall(host).ensure(wanted(), persist=False)
    assert host.loaded is None and not os.path.exists(host.root + RULES_FILE)


def test_a_bad_input_fails_before_nft_is_asked_anything(host):
    with pytest.raises(FirewallError, match="sglang_firewall_client_cidrs"):
        firewall(host).ensure(wanted(client_cidrs=["10.0.0.300/24"]), persist=False)
    assert not [call for call in host.calls if call[0].endswith("nft")]


def test_missing_tools_say_how_to_get_them(tmp_path):
    host = FakeHost(str(tmp_path / "host"))
    os.unlink(host.root + "/usr/sbin/nft")
    with pytest.raises(FirewallError, match="nft is not installed on this host; install the nftables package"):
        firewall(host).ensure(wanted(), persist=False)
    os.unlink(host.root + "/usr/sbin/ip")
    with pytest.raises(FirewallError, match="ip is not installed on this host; install the iproute2 package"):
        firewall(host).ensure(wanted(), persist=False)


def test_removal_takes_away_only_what_it_added(host):
    firewall(host).ensure(wanted(), persist=False)
    checked = firewall(host, check_mode=True).remove()
    assert checked["changed"] is True and host.loaded is not None
    removed = firewall(host).remove()
    assert removed["actions"] == ["delete table inet datacrunch_sglang", "remove " + RULES_FILE]
    assert host.loaded is None and not os.path.exists(host.root + RULES_FILE)
    assert firewall(host).remove()["changed"] is False


# -- surviving a reboot -------------------------------------------------------------------------------------------

# Debian's /etc/nftables.conf (nft indents with tabs).
DEBIAN_CONF = (
    "#!/usr/sbin/nft -f\n\nflush ruleset\n\n"
    "table inet filter {\n\tchain input {\n\t\ttype filter hook input priority filter;\n\t}\n}\n"
)


def test_a_host_without_systemd_is_told_that_the_table_will_not_survive(host):
    result = firewall(host).ensure(wanted())
    assert result["persistence"] == "none"
    assert any("will not come back after a reboot" in warning for warning in result["warnings"])


def test_where_no_systemd_is_expected_the_warning_says_so(host):
    (warning,) = firewall(host).ensure(wanted(), persist_note="expected in the lab")["warnings"]
    assert warning.startswith("this host does not run systemd") and warning.endswith(" - expected in the lab")


def test_nftables_service_hosts_include_the_table_after_their_flush_ruleset(tmp_path):
    host = FakeHost(str(tmp_path / "host"), systemd=True, services={"nftables.service": "enabled"})
    os.makedirs(host.root + "/etc")
    with open(host.root + "/etc/nftables.conf", "w") as handle:
        handle.write(DEBIAN_CONF)
    os.chmod(host.root + "/etc/nftables.conf", 0o640)

    result = firewall(host).ensure(wanted())
    assert result["persistence"] == nft_persist.METHOD_CONF
    conf = read(host, "/etc/nftables.conf")
    assert conf.startswith(DEBIAN_CONF)
    assert conf.endswith('include "%s"\n' % RULES_FILE)
    assert conf.index("flush ruleset") < conf.index("include")
    assert oct(os.stat(host.root + "/etc/nftables.conf").st_mode & 0o777) == "0o640", "the file keeps its mode"
    assert any(diff["before_header"] == "/etc/nftables.conf" for diff in result["diff"])
    assert firewall(host).ensure(wanted())["changed"] is False

    firewall(host).remove()
    assert read(host, "/etc/nftables.conf") == DEBIAN_CONF


def test_other_systemd_hosts_get_a_unit_ordered_after_nftables_and_before_docker(tmp_path):
    host = FakeHost(str(tmp_path / "host"), systemd=True)
    checked = firewall(host, check_mode=True).ensure(wanted())
    assert checked["changed"] is True and not os.path.exists(host.root + nft_persist.UNIT_FILE)
    assert "enable " + nft_persist.UNIT_NAME in checked["actions"]

    result = firewall(host).ensure(wanted())
    assert result["persistence"] == nft_persist.METHOD_UNIT
    unit = read(host, nft_persist.UNIT_FILE)
    assert "ExecStart=/usr/sbin/nft -f %s\n" % RULES_FILE in unit
    assert re.search(r"^After=nftables\.service$", unit, re.M)
    assert re.search(r"^Before=.*docker\.service", unit, re.M)
    assert ["systemctl", "daemon-reload"] in host.calls and ["systemctl", "enable", nft_persist.UNIT_NAME] in host.calls
    assert host.services[nft_persist.UNIT_NAME] == "enabled"
    assert firewall(host).ensure(wanted())["changed"] is False

    # The host starts using nftables.service: the include replaces the unit.
    host.services["nftables.service"] = "enabled"
    moved = firewall(host).ensure(wanted())
    assert moved["changed"] is True and not os.path.exists(host.root + nft_persist.UNIT_FILE)
    assert "include" in read(host, "/etc/nftables.conf")

    firewall(host).remove()
    assert not os.path.exists(host.root + nft_persist.UNIT_FILE)
    assert "datacrunch" not in read(host, "/etc/nftables.conf")


def test_an_older_include_of_ours_is_replaced_not_repeated():
    text = nft_persist.conf_with_include(DEBIAN_CONF, "/etc/old.nft")
    text = nft_persist.conf_with_include(text, RULES_FILE)
    assert text.count(nft_persist.MARKER) == 1
    assert "/etc/old.nft" not in text and text.startswith(DEBIAN_CONF)
    # A foreign include right after a line that merely looks like ours is kept.
    foreign = DEBIAN_CONF + 'include "/etc/site.nft"\n'
    assert nft_persist.conf_without_include(foreign) == foreign
