# -*- coding: utf-8 -*-
# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host firewall of an SGLang host as one nftables table: inputs, checks and the rendered ruleset.

Pure logic, no host access: what the host knows (its interfaces, its ephemeral port range) comes in as data, so
that every rule is unit-tested without nft. The table is the collection's own (``table inet datacrunch_sglang``)
and only drops new connections to the ports SGLang uses; everything else is left to the host's other rules:

- SSH always stays open, and the host itself (loopback) reaches every port.
- The client ports (the serving port, or the TLS proxy's) accept new connections from the client networks only.
- Local ports (the plain serving port behind a TLS proxy) accept nothing but loopback.
- Unit ports (the rendezvous range, torch.distributed's store, and the ephemeral range where NCCL and Gloo
  listen) accept new connections from the other hosts of the same multi-node unit only.

Rendered text follows ``nft list table``'s own layout, so that a diff against the loaded table reads cleanly.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass, field, replace

DEFAULT_TABLE = "datacrunch_sglang"
# The word in sglang_firewall_client_cidrs that stands for the RFC 1918 networks the host is on.
PRIVATE_KEYWORD = "private"
RFC1918 = tuple(ipaddress.ip_network(net) for net in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))
# Interfaces whose networks are not "the networks the host is on": container bridges, tunnels, overlays.
VIRTUAL_INTERFACES = re.compile(r"^(lo|docker\d*|br-|veth|virbr|cni|flannel|cali|vxlan|tun|tap|kube|dummy|lxc)")
REFUSE_ACTIONS = {"drop": "drop", "reject": "reject with tcp reset"}
_TABLE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,31}$")


class FirewallError(ValueError):
    """An input of the firewall is wrong; the message names the variable, the value and the fix."""


@dataclass
class FirewallRequest:
    """What the firewall must allow. Variable names in errors are the role's (sglang_firewall_*)."""

    client_ports: list = field(default_factory=lambda: [30000])
    client_cidrs: list = field(default_factory=lambda: [PRIVATE_KEYWORD])
    local_ports: list = field(default_factory=list)
    unit_ports: list = field(default_factory=list)
    unit_peers: list = field(default_factory=list)
    protect_ephemeral_ports: bool = True
    ssh_ports: list = field(default_factory=lambda: [22])
    refuse: str = "drop"
    table: str = DEFAULT_TABLE


@dataclass
class HostNetwork:
    """What the firewall needs to know about the host: interface addresses with prefix lengths and the range the
    kernel picks ephemeral ports from (net.ipv4.ip_local_port_range)."""

    # {interface: ["10.0.0.5/24", "fe80::1/64", ...]}
    interfaces: dict = field(default_factory=dict)
    ephemeral_range: tuple = (32768, 60999)


@dataclass
class Ruleset:
    """The rendered table and the effective inputs it was built from (for reports)."""

    text: str
    client_networks: list
    unit_networks: list
    client_ports: list
    local_ports: list
    unit_port_ranges: list
    ssh_ports: list
    warnings: list


# ---------------------------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------------------------


def _port(value, variable):
    text = str(value).strip()
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise FirewallError(
            "%s: %r is not a TCP port; use a number from 1 to 65535, e.g. 30000" % (variable, value)
        )
    return int(text)


def parse_ports(values, variable):
    """A list of single ports (ints or digit strings), sorted and unique."""
    if values is None:
        return []
    if isinstance(values, (str, int)):
        values = [values]
    return sorted({_port(value, variable) for value in values})


def parse_port_ranges(values, variable):
    """A list of ports and ranges ("50000-50063") as merged, sorted (low, high) pairs."""
    if values is None:
        return []
    if isinstance(values, (str, int)):
        values = [values]
    ranges = []
    for value in values:
        text = str(value).strip()
        if "-" in text:
            low_text, _sep, high_text = text.partition("-")
            low, high = _port(low_text, variable), _port(high_text, variable)
            if low > high:
                raise FirewallError(
                    "%s: %r runs backwards; write the range low-high, e.g. %d-%d" % (variable, value, high, low)
                )
        else:
            low = high = _port(text, variable)
        ranges.append((low, high))
    return merge_ranges(ranges)


def merge_ranges(ranges):
    """Overlapping or adjacent port ranges merged (nft refuses overlapping elements in one set)."""
    merged = []
    for low, high in sorted(ranges):
        if merged and low <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return merged


def _network(value, variable):
    text = str(value).strip()
    try:
        network = ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        try:
            loose = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise FirewallError(
                "%s: %r is not an IP address or network (%s); use CIDR notation, e.g. 10.0.0.0/8 or 203.0.113.7/32"
                % (variable, value, exc)
            ) from None
        raise FirewallError(
            "%s: %r has host bits set; use the network %s, or %s/%d for the one address"
            % (variable, value, loose, text.split("/", maxsplit=1)[0], loose.max_prefixlen)
        ) from None
    return network


def host_private_networks(host):
    """The RFC 1918 networks of the host's physical-looking interfaces (what ``private`` stands for)."""
    networks = set()
    for name, addresses in sorted((host.interfaces or {}).items()):
        if VIRTUAL_INTERFACES.match(name):
            continue
        for entry in addresses or []:
            try:
                interface = ipaddress.ip_interface(str(entry))
            except ValueError:
                continue
            if interface.version == 4 and any(interface.ip in net for net in RFC1918):
                networks.add(interface.network)
    return sorted(networks, key=lambda net: (net.version, net))


def parse_networks(values, variable, host=None):
    """Networks from CIDRs and single addresses; ``private`` expands to the host's RFC 1918 networks."""
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    networks = []
    for value in values:
        if str(value).strip().lower() == PRIVATE_KEYWORD:
            networks.extend(host_private_networks(host or HostNetwork()))
        else:
            networks.append(_network(value, variable))
    return collapse(networks)


def collapse(networks):
    """Networks merged and sorted, IPv4 first (nft refuses overlapping elements in an interval set)."""
    v4 = list(ipaddress.collapse_addresses(net for net in networks if net.version == 4))
    v6 = list(ipaddress.collapse_addresses(net for net in networks if net.version == 6))
    return v4 + v6


def parse_ephemeral_range(text):
    """net.ipv4.ip_local_port_range ("32768\\t60999") as (low, high)."""
    words = str(text).split()
    if len(words) != 2 or not all(word.isdigit() for word in words):
        raise FirewallError("net.ipv4.ip_local_port_range reads %r; expected two port numbers" % (text,))
    low, high = int(words[0]), int(words[1])
    if not 1 <= low <= high <= 65535:
        raise FirewallError("net.ipv4.ip_local_port_range reads %r; expected low <= high within 1-65535" % (text,))
    return low, high


def check_names(request):
    """The table's name and the refuse action."""
    if not _TABLE_NAME.match(str(request.table or "")):
        raise FirewallError(
            "sglang_firewall_table: %r is not an nftables table name; use letters, digits and _ (at most 32), "
            "starting with a letter, e.g. %s" % (request.table, DEFAULT_TABLE)
        )
    if request.refuse not in REFUSE_ACTIONS:
        raise FirewallError(
            "sglang_firewall_refuse: %r is not one of %s" % (request.refuse, ", ".join(sorted(REFUSE_ACTIONS)))
        )


def check_request(request):
    """Every input checked, before the host is touched; returns the parsed pieces."""
    check_names(request)
    client_ports = parse_ports(request.client_ports, "sglang_firewall_client_ports")
    local_ports = parse_ports(request.local_ports, "sglang_firewall_local_ports")
    ssh_ports = parse_ports(request.ssh_ports, "sglang_firewall_ssh_ports")
    unit_ranges = parse_port_ranges(request.unit_ports, "sglang_firewall_unit_ports")
    both = sorted(set(client_ports) & set(local_ports))
    if both:
        raise FirewallError(
            "sglang_firewall_client_ports and sglang_firewall_local_ports both list %s; a port is either open to "
            "clients or local to the host" % ", ".join(str(port) for port in both)
        )
    closed_ssh = sorted(set(ssh_ports) & (set(client_ports) | set(local_ports)))
    if closed_ssh:
        raise FirewallError(
            "sglang_firewall_ssh_ports lists %s, which is also a serving port; SSH always stays open, so move the "
            "server to another port" % ", ".join(str(port) for port in closed_ssh)
        )
    for value in request.client_cidrs or []:
        if str(value).strip().lower() != PRIVATE_KEYWORD:
            _network(value, "sglang_firewall_client_cidrs")
    for value in request.unit_peers or []:
        _network(value, "sglang_firewall_unit_peers")
    return client_ports, local_ports, ssh_ports, unit_ranges


def input_problems(request, cross=True):
    """Every error in the user's inputs of the request, not only the first (check_request stops there): what the
    controller says before any host changes. With cross, also the checks between the port lists (they need every
    list, defaults included). The unit's peers come from the fleet plan, not from the user, and are checked on the
    host."""
    problems = []

    def attempt(check, *args):
        try:
            check(*args)
        except FirewallError as error:
            problems.append(str(error))

    for name in ("client_ports", "local_ports", "ssh_ports"):
        attempt(parse_ports, getattr(request, name), "sglang_firewall_" + name)
    attempt(parse_port_ranges, request.unit_ports, "sglang_firewall_unit_ports")
    for value in request.client_cidrs or []:
        if str(value).strip().lower() != PRIVATE_KEYWORD:
            attempt(_network, value, "sglang_firewall_client_cidrs")
    attempt(check_names, request)
    if cross and not problems:
        attempt(check_request, replace(request, unit_peers=[]))
    return problems


# ---------------------------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------------------------


def _elements(items):
    return "{ %s }" % ", ".join(items)


def _ports_expr(ports):
    words = [str(port) for port in ports]
    return words[0] if len(words) == 1 else _elements(words)


def _ranges_expr(ranges):
    words = [str(low) if low == high else "%d-%d" % (low, high) for low, high in ranges]
    return words[0] if len(words) == 1 else _elements(words)


def _set(name, address_type, networks):
    lines = ["\tset %s {" % name, "\t\ttype %s" % address_type, "\t\tflags interval"]
    if networks:
        lines.append("\t\telements = %s" % _elements(_element(net) for net in networks))
    lines.append("\t}")
    return lines


def _element(network):
    # nft prints a single address without its /32 or /128.
    if network.prefixlen == network.max_prefixlen:
        return str(network.network_address)
    return str(network)


def render(request, host):
    """The table for this host (a Ruleset); raises FirewallError for a bad input."""
    client_ports, local_ports, ssh_ports, unit_ranges = check_request(request)
    warnings = []
    clients = parse_networks(request.client_cidrs, "sglang_firewall_client_cidrs", host)
    peers = parse_networks(request.unit_peers, "sglang_firewall_unit_peers")
    if request.protect_ephemeral_ports:
        unit_ranges = merge_ranges([*unit_ranges, tuple(host.ephemeral_range)])
    if any(net.prefixlen == 0 for net in clients):
        warnings.append(
            "sglang_firewall_client_cidrs opens port(s) %s to every address (%s): the API key is then the only "
            "protection" % (", ".join(map(str, client_ports)), ", ".join(str(n) for n in clients if n.prefixlen == 0))
        )
    if client_ports and not clients:
        warnings.append(
            "no client network is allowed on port(s) %s (sglang_firewall_client_cidrs=%r matches none of this "
            "host's networks): only the host itself can reach the server; list your clients' networks in "
            "sglang_firewall_client_cidrs" % (", ".join(map(str, client_ports)), list(request.client_cidrs or []))
        )
    refuse = REFUSE_ACTIONS[request.refuse]

    lines = ["table inet %s {" % request.table]
    lines.append('\tcomment "managed by datacrunch.sglang (role sglang_firewall): edits here are replaced"')
    sets = [
        ("client_v4", "ipv4_addr", [net for net in clients if net.version == 4]),
        ("client_v6", "ipv6_addr", [net for net in clients if net.version == 6]),
        ("unit_v4", "ipv4_addr", [net for net in peers if net.version == 4]),
        ("unit_v6", "ipv6_addr", [net for net in peers if net.version == 6]),
    ]
    for index, (name, address_type, networks) in enumerate(sets):
        if index:
            lines.append("")
        lines.extend(_set(name, address_type, networks))
    lines.append("")
    lines.append("\tchain input {")
    lines.append("\t\ttype filter hook input priority filter; policy accept;")
    lines.append('\t\tiifname "lo" accept comment "the host itself"')
    lines.append('\t\tct state established,related accept comment "replies and open connections"')
    if ssh_ports:
        lines.append('\t\ttcp dport %s accept comment "SSH stays open"' % _ports_expr(ssh_ports))
    if client_ports:
        ports = _ports_expr(client_ports)
        lines.append('\t\ttcp dport %s ip saddr @client_v4 accept comment "clients"' % ports)
        lines.append('\t\ttcp dport %s ip6 saddr @client_v6 accept comment "clients"' % ports)
        lines.append('\t\ttcp dport %s %s comment "clients elsewhere"' % (ports, refuse))
    if local_ports:
        lines.append('\t\ttcp dport %s %s comment "local only"' % (_ports_expr(local_ports), refuse))
    if unit_ranges:
        ranges = _ranges_expr(unit_ranges)
        lines.append('\t\ttcp dport %s ip saddr @unit_v4 accept comment "the unit\'s other hosts"' % ranges)
        lines.append('\t\ttcp dport %s ip6 saddr @unit_v6 accept comment "the unit\'s other hosts"' % ranges)
        lines.append('\t\ttcp dport %s %s comment "unit ports elsewhere"' % (ranges, refuse))
    lines.append("\t}")
    lines.append("}")
    return Ruleset(
        text="\n".join(lines) + "\n",
        client_networks=[str(net) for net in clients],
        unit_networks=[str(net) for net in peers],
        client_ports=client_ports,
        local_ports=local_ports,
        unit_port_ranges=["%d-%d" % pair if pair[0] != pair[1] else str(pair[0]) for pair in unit_ranges],
        ssh_ports=ssh_ports,
        warnings=warnings,
    )


def load_script(table, ruleset_text):
    """What ``nft -f`` loads: the table replaced in one transaction (created first so that the delete succeeds
    on a host that never had it). Also the file that makes the table survive a reboot."""
    return (
        "#!/usr/sbin/nft -f\n"
        "# The SGLang host firewall, managed by datacrunch.sglang (role sglang_firewall): edits are replaced.\n"
        "# Loading it replaces table inet %s in one transaction and touches no other table.\n"
        "table inet %s\n"
        "delete table inet %s\n"
        "%s" % (table, table, table, ruleset_text)
    )


def normalize(listing):
    """A listing with its layout flattened (nft wraps long element lists differently across versions)."""
    if not listing:
        return ""
    return " ".join(str(listing).replace(",", ", ").split())


def source_digest(text):
    return hashlib.sha256(str(text).encode()).hexdigest()
