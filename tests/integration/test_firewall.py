"""The host firewall on lab hosts, for real: role datacrunch.sglang.sglang_firewall run by ansible-playbook over SSH
against two simulated H200 hosts that form one multi-node unit, and checked from outside the hosts.

Clients are containers on the lab network with chosen addresses (one inside the allowed client network, one
outside); listeners inside host 1 stand for SGLang's ports (the server itself is not needed to test a firewall).
The lab gets its own name (FIREWALL_LAB_NAME, default a fresh one) and is removed at the end.
"""

from __future__ import annotations

import ipaddress
import os
import re
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
LAB = REPO_ROOT / "tests/lab/lab.sh"
ANSIBLE_PLAYBOOK = REPO_ROOT / ".venv/bin/ansible-playbook"
CLIENT_IMAGE = "datacrunch-sglang-lab/debian:bookworm"
TABLE = "datacrunch_sglang"
RULES_FILE = "/etc/nftables.d/datacrunch-sglang.nft"

pytestmark = pytest.mark.skipif(
    subprocess.run(["docker", "info"], capture_output=True, check=False).returncode != 0, reason="needs a Docker engine"
)

PLAYBOOK = """\
- name: The host firewall alone
  hosts: sglang_servers
  gather_facts: false
  roles:
    - role: datacrunch.sglang.sglang_firewall
"""

# Listens on the given TCP ports on every interface and accepts whatever connects (SGLang's ports, stood in for).
LISTENER = """
import socket, sys, threading
def serve(port):
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("0.0.0.0", port))
    server.listen(16)
    while True:
        connection, _ = server.accept()
        connection.sendall(b"hello\\n")
        connection.close()
for port in sys.argv[1:]:
    threading.Thread(target=serve, args=(int(port),), daemon=True).start()
threading.Event().wait()
"""

# From a client: "open" (connected and greeted), "refused" (TCP reset) or "timeout" (dropped).
PROBE = """
import socket, sys
try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])) as connection:
        connection.recv(16)
    print("open")
except ConnectionRefusedError:
    print("refused")
except (socket.timeout, TimeoutError):
    print("timeout")
"""

SERVING, RENDEZVOUS, ZMQ, STORE, EPHEMERAL, OTHER = 30000, 50000, 50005, 30500, 40000, 9999
FOREIGN = """table inet dcsg_foreign {
\tchain input {
\t\ttype filter hook input priority 10; policy accept;
\t\ttcp dport 9999 counter accept comment "someone else's rule"
\t}
}
"""


def docker(*args, check=True, timeout=120):
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check:
        assert result.returncode == 0, "docker %s: %s" % (" ".join(args), result.stderr)
    return result


class FirewallLab:
    def __init__(self, name, inventory_dir, playbook):
        self.name = name
        self.inventory_dir = inventory_dir
        self.playbook = playbook
        self.env = dict(os.environ, LAB_NAME=name, LAB_INVENTORY_DIR=str(inventory_dir))
        self.clients = {}

    def script(self, *args, check=True):
        result = subprocess.run([str(LAB), *args], capture_output=True, text=True, env=self.env, timeout=900,
                                check=False)
        if check:
            assert result.returncode == 0, "lab.sh %s:\n%s\n%s" % (" ".join(args), result.stdout, result.stderr)
        return result

    @property
    def hosts(self):
        inventory = yaml.safe_load((self.inventory_dir / "hosts.yml").read_text())
        hosts = inventory["all"]["children"]["sglang_servers"]["hosts"]
        return {name: values["ansible_host"] for name, values in sorted(hosts.items())}

    @property
    def subnet(self):
        out = docker("network", "inspect", "-f", "{{range .IPAM.Config}}{{.Subnet}}{{end}}", self.name).stdout
        return ipaddress.ip_network(out.strip())

    def address(self, offset):
        return str(self.subnet.network_address + offset)

    def play(self, *args):
        """ansible-playbook of the firewall role as a user runs it, from the repository root."""
        env = dict(os.environ, ANSIBLE_CONFIG=str(REPO_ROOT / "ansible.cfg"), ANSIBLE_FORCE_COLOR="0")
        return subprocess.run(
            [str(ANSIBLE_PLAYBOOK), "-i", str(self.inventory_dir), str(self.playbook), *args],
            capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=600, check=False,
        )  # fmt: skip

    def host(self, index):
        return "%s-%d" % (self.name, index)

    def sh(self, host, command, check=True):
        result = docker("exec", host, "sh", "-c", command, check=False)
        if check:
            assert result.returncode == 0, "%s: %s: %s" % (host, command, result.stderr)
        return result.stdout

    def listing(self, host, table=TABLE):
        # -s: without counters, which count the probes.
        result = docker("exec", host, "nft", "-s", "list", "table", "inet", table, check=False)
        return result.stdout if result.returncode == 0 else None

    def client(self, offset):
        """A container on the lab network at subnet + offset (kept for the module's tests)."""
        if offset not in self.clients:
            name = "%s-client-%d" % (self.name, offset)
            docker("rm", "-f", name, check=False)
            docker("run", "-d", "--name", name, "--network", self.name, "--ip", self.address(offset),
                   "--label", "datacrunch-sglang-lab.lab=%s" % self.name, CLIENT_IMAGE, "sleep", "infinity")
            self.clients[offset] = name
        return self.clients[offset]

    def probe_from_client(self, offset, host, port, timeout=1.5):
        return docker("exec", self.client(offset), "python3", "-c", PROBE, self.hosts[host], str(port),
                      str(timeout)).stdout.strip()

    def probe_from_host(self, source, host, port, timeout=1.5):
        return docker("exec", source, "python3", "-c", PROBE, self.hosts[host], str(port), str(timeout)).stdout.strip()


def recap(result):
    counts = {}
    for line in result.stdout.splitlines():
        match = re.match(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", line)
        if match:
            counts[match.group(1)] = {"changed": int(match.group(2)), "failed": int(match.group(4))}
    return counts


def changed(result):
    return {host: counts["changed"] for host, counts in recap(result).items()}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    name = os.environ.get("FIREWALL_LAB_NAME") or "dcsg-fw-%s" % uuid.uuid4().hex[:6]
    inventory_dir = tmp_path_factory.mktemp("inventory")
    playbook = inventory_dir.parent / ("%s-firewall.yml" % name)
    playbook.write_text(PLAYBOOK)
    lab = FirewallLab(name, inventory_dir, playbook)
    try:
        lab.script("up", "2")
        hosts = lab.hosts
        # One unit of two hosts; clients are the /27 from .192 (the controller, at .1, is outside it).
        unit = {
            "sglang_servers": {
                "vars": {"sglang_cluster": "fw-unit", "sglang_firewall_client_cidrs": [lab.address(192) + "/27"]},
                "hosts": {host: {"sglang_private_ip": address} for host, address in hosts.items()},
            }
        }
        (inventory_dir / "unit.yml").write_text(yaml.safe_dump(unit))
        first = lab.host(1)
        ports = [str(port) for port in (SERVING, RENDEZVOUS, ZMQ, STORE, EPHEMERAL, OTHER)]
        docker("exec", "-d", first, "python3", "-c", LISTENER, *ports)
        lab.sh(first, "printf '%s' | nft -f -" % FOREIGN.replace("'", "'\\''"))
        yield lab
    finally:
        for name in lab.clients.values():
            docker("rm", "-f", name, check=False)
        lab.script("down", check=False)


@pytest.fixture(scope="module")
def applied(lab):
    """Check mode, then the first real run; what the hosts had before, for the comparisons."""
    first = lab.host(1)
    before = {"foreign": lab.listing(first, "dcsg_foreign"), "docker": lab.sh(first, "nft -s list table ip filter")}
    checked = lab.play("--check", "--diff")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    before["check"] = checked
    before["check_listing"] = lab.listing(first)
    result = lab.play()
    assert result.returncode == 0, result.stdout + result.stderr
    before["apply"] = result
    return before


def test_check_mode_shows_the_table_and_loads_nothing(lab, applied):
    checked = applied["check"]
    assert changed(checked) == dict.fromkeys(lab.hosts, 1)
    assert applied["check_listing"] is None
    assert "+table inet datacrunch_sglang {" in checked.stdout
    assert "+\t\ttcp dport 30000 drop" in checked.stdout


def test_the_table_holds_the_clients_and_the_other_host(lab, applied):
    assert changed(applied["apply"]) == dict.fromkeys(lab.hosts, 1)
    listing = lab.listing(lab.host(1))
    assert "elements = { %s/27 }" % lab.address(192) in listing
    assert "elements = { %s }" % lab.hosts[lab.host(2)] in listing, "host 2 is host 1's unit"
    assert "elements = { %s }" % lab.hosts[lab.host(1)] in lab.listing(lab.host(2))
    assert lab.sh(lab.host(1), "cat " + RULES_FILE).startswith("#!/usr/sbin/nft -f")


def test_the_serving_port_accepts_a_client_inside_the_allowed_network_only(lab, applied):
    first = lab.host(1)
    assert lab.probe_from_client(200, first, SERVING) == "open"
    assert lab.probe_from_client(100, first, SERVING) == "timeout"


def test_the_rendezvous_and_nccl_ports_answer_the_other_host_of_the_unit_only(lab, applied):
    first, second = lab.host(1), lab.host(2)
    for port in (RENDEZVOUS, ZMQ, STORE, EPHEMERAL):
        assert lab.probe_from_host(second, first, port) == "open", port
        assert lab.probe_from_client(200, first, port) == "timeout", port
        assert lab.probe_from_client(100, first, port) == "timeout", port
        # The host itself reaches every port.
        assert lab.probe_from_host(first, first, port) == "open", port


def test_ssh_and_ports_that_are_not_sglangs_stay_as_they_were(lab, applied):
    first = lab.host(1)
    assert lab.probe_from_client(100, first, 22) == "open"
    assert lab.probe_from_client(100, first, OTHER) == "open"


def test_other_tables_survive_untouched(lab, applied):
    first = lab.host(1)
    assert lab.listing(first, "dcsg_foreign") == applied["foreign"]
    assert "someone else's rule" in applied["foreign"]
    assert lab.sh(first, "nft -s list table ip filter") == applied["docker"]


def test_a_second_run_and_a_second_check_change_nothing(lab, applied):
    listings = {host: lab.listing(host) for host in lab.hosts}
    for args in ((), ("--check", "--diff")):
        result = lab.play(*args)
        assert result.returncode == 0, result.stdout + result.stderr
        assert changed(result) == dict.fromkeys(lab.hosts, 0)
    assert {host: lab.listing(host) for host in lab.hosts} == listings


def test_a_rule_removed_by_hand_comes_back(lab, applied):
    first = lab.host(1)
    wanted = lab.listing(first)
    handle = re.search(r'tcp dport 30000 drop comment "clients elsewhere" # handle (\d+)',
                       lab.sh(first, "nft -a list table inet " + TABLE)).group(1)
    lab.sh(first, "nft delete rule inet %s input handle %s" % (TABLE, handle))
    assert lab.probe_from_client(100, first, SERVING) == "open", "the hole is real"
    result = lab.play()
    assert recap(result)[first]["changed"] == 1 and recap(result)[lab.host(2)]["changed"] == 0
    assert lab.listing(first) == wanted
    assert lab.probe_from_client(100, first, SERVING) == "timeout"


@pytest.mark.parametrize(
    "extra, words",
    [
        ({"sglang_firewall_client_cidrs": ["10.0.0.300/8"]}, ["sglang_firewall_client_cidrs", "10.0.0.300/8",
                                                              "CIDR notation"]),
        ({"sglang_firewall_client_ports": [70000]}, ["sglang_firewall_client_ports", "70000", "1 to 65535"]),
        ({"sglang_private_ip": ""}, ["sglang_cluster=fw-unit", "private address of", "gpu_host preflight"]),
        ({"sglang_firewall_client_cidrs": ["10.0.0.5/8"]}, ["host bits", "10.0.0.0/8"]),
    ],
)
def test_a_bad_input_fails_with_its_name_and_changes_nothing(lab, applied, tmp_path, extra, words):
    listings = {host: lab.listing(host) for host in lab.hosts}
    extra_file = tmp_path / "extra.yml"
    extra_file.write_text(yaml.safe_dump(extra))
    result = lab.play("-e", "@%s" % extra_file)
    assert result.returncode != 0
    assert all(counts["changed"] == 0 and counts["failed"] == 1 for counts in recap(result).values())
    for word in words:
        assert word in result.stdout, result.stdout
    assert {host: lab.listing(host) for host in lab.hosts} == listings


def test_reject_answers_refused_clients_at_once(lab, applied):
    first = lab.host(1)
    result = lab.play("-e", "sglang_firewall_refuse=reject")
    assert result.returncode == 0, result.stdout + result.stderr
    assert lab.probe_from_client(100, first, SERVING) == "refused"
    assert lab.probe_from_client(200, first, SERVING) == "open"
    assert lab.play().returncode == 0


def test_opting_out_removes_the_table_and_leaves_the_rest(lab, applied):
    first = lab.host(1)
    result = lab.play("-e", "sglang_firewall_enabled=false")
    assert result.returncode == 0, result.stdout + result.stderr
    assert all(lab.listing(host) is None for host in lab.hosts)
    assert lab.sh(first, "test -e %s || echo gone" % RULES_FILE).strip() == "gone"
    assert lab.listing(first, "dcsg_foreign") == applied["foreign"]
    assert lab.probe_from_client(100, first, SERVING) == "open"
    again = lab.play("-e", "sglang_firewall_enabled=false")
    assert changed(again) == dict.fromkeys(lab.hosts, 0)
