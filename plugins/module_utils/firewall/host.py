# -*- coding: utf-8 -*-
# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The SGLang host firewall on a host: read what is loaded, replace the collection's table atomically, keep it.

The table is replaced with one ``nft -f`` transaction (create, delete, define), so there is never a moment without
rules and no other table is touched. Whether anything changed is decided by comparing what the kernel lists for the
table with what would be loaded; the listing taken right after the last load is kept as well, so that an nft
version that prints a construct differently does not make every run look like a change. Standard library only.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile

from ansible_collections.datacrunch.sglang.plugins.module_utils.common.atomic_file import current_content, replace_file
from ansible_collections.datacrunch.sglang.plugins.module_utils.firewall.persist import Persistence
from ansible_collections.datacrunch.sglang.plugins.module_utils.firewall.ruleset import (
    FirewallError,
    HostNetwork,
    load_script,
    normalize,
    parse_ephemeral_range,
    render,
    source_digest,
)

DEFAULT_RULES_FILE = "/etc/nftables.d/datacrunch-sglang.nft"
STATE_FILE = "/var/lib/datacrunch-sglang/firewall-state.json"
EPHEMERAL_RANGE_FILE = "/proc/sys/net/ipv4/ip_local_port_range"
NFT_CANDIDATES = ("/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft")
IP_CANDIDATES = ("/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip")


def ssh_connection_port(environ):
    """The server port of the SSH connection the module runs under (SSH_CONNECTION), or None."""
    words = str(environ.get("SSH_CONNECTION", "")).split()
    if len(words) == 4 and words[3].isdigit() and 1 <= int(words[3]) <= 65535:
        return int(words[3])
    return None


def write_file(path, content, mode=0o644):
    """Write content atomically with the given mode; True when the file changed."""
    if current_content(path) == content and (os.stat(path).st_mode & 0o777) == mode:
        return False
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=0o755, exist_ok=True)
    replace_file(path, content, mode=mode)
    return True


class HostFirewall:
    """The collection's nftables table on this host. ``runner(argv, stdin=None)`` runs a command and returns
    (rc, stdout, stderr): the module passes AnsibleModule.run_command, the tests a recorder."""

    def __init__(self, table, runner, rules_file=DEFAULT_RULES_FILE, state_file=STATE_FILE, check_mode=False,
                 root="", persistence=None):
        self.table = table
        self.rules_file = root + rules_file
        self.rules_file_on_host = rules_file
        self.state_file = root + state_file
        self.check_mode = check_mode
        self.run = runner
        self.root = root
        self.persistence = persistence or Persistence(runner=runner, root=root, check_mode=check_mode)
        self.actions = []

    # -- reading -------------------------------------------------------------------------------------------------

    def _tool(self, name, candidates):
        for candidate in candidates:
            if os.access(self.root + candidate, os.X_OK):
                return candidate
        return shutil.which(name) if not self.root else None

    def nft(self):
        found = self._tool("nft", NFT_CANDIDATES)
        if not found:
            raise FirewallError(
                "nft is not installed on this host; install the nftables package (apt-get install nftables), or let "
                "the role do it (sglang_firewall_install_nftables=true)"
            )
        return found

    def host_network(self):
        """Interfaces with their addresses and prefix lengths (``ip -j addr``), and the ephemeral port range."""
        ip = self._tool("ip", IP_CANDIDATES)
        if not ip:
            raise FirewallError(
                "ip is not installed on this host; install the iproute2 package (apt-get install iproute2)"
            )
        rc, out, err = self.run([ip, "-j", "addr", "show"])
        if rc != 0:
            raise FirewallError(
                "cannot list this host's addresses with `ip -j addr show` (%s); install iproute2" % (err.strip() or rc)
            )
        interfaces = {}
        try:
            for link in json.loads(out or "[]"):
                interfaces[link["ifname"]] = [
                    "%s/%s" % (info["local"], info["prefixlen"])
                    for info in link.get("addr_info", [])
                    if "local" in info and "prefixlen" in info
                ]
        except (ValueError, KeyError, TypeError) as exc:
            raise FirewallError("`ip -j addr show` printed something unexpected (%s)" % exc) from None
        text = current_content(self.root + EPHEMERAL_RANGE_FILE)
        ephemeral = parse_ephemeral_range(text) if text else (32768, 60999)
        return HostNetwork(interfaces=interfaces, ephemeral_range=ephemeral)

    def loaded(self):
        """``nft list table`` of the collection's table, or None when it is not loaded."""
        rc, out, err = self.run([self.nft(), "list", "table", "inet", self.table])
        if rc == 0:
            return out
        if "No such file or directory" in err or "does not exist" in err:
            return None
        raise FirewallError("nft list table inet %s failed (%d): %s" % (self.table, rc, err.strip()))

    def _state(self):
        text = current_content(self.state_file)
        try:
            return json.loads(text) if text else {}
        except ValueError:
            return {}

    def in_sync(self, live, script, text):
        """Whether the loaded table is the one the script loads."""
        if live is None:
            return False
        if normalize(live) == normalize(text):
            return True
        state = self._state()
        return state.get("source_sha256") == source_digest(script) and normalize(live) == normalize(
            state.get("listing", "")
        )

    # -- changing ------------------------------------------------------------------------------------------------

    def validate(self, script):
        """Let nft check the script against the kernel (``nft -c``) without loading it."""
        fd, temp = tempfile.mkstemp(prefix="datacrunch-sglang-nft-", suffix=".nft")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(script)
            rc, _out, err = self.run([self.nft(), "-c", "-f", temp])
        finally:
            os.unlink(temp)
        if rc != 0:
            raise FirewallError("nft refuses the rendered ruleset: %s" % err.strip())

    def ensure(self, request, persist=True, environ=None, persist_note=""):
        """Make the table match the request; a dict for the module's result. persist_note: see Persistence.ensure."""
        host = self.host_network()
        # The port this very SSH connection came in on stays open too, whatever the inventory says.
        connection_port = ssh_connection_port(os.environ if environ is None else environ)
        if connection_port:
            request = dataclasses.replace(request, ssh_ports=[*(request.ssh_ports or []), connection_port])
        ruleset = render(request, host)
        script = load_script(self.table, ruleset.text)
        live = self.loaded()
        synced = self.in_sync(live, script, ruleset.text)
        file_ok = current_content(self.rules_file) == script
        changed = False
        if not synced or not file_ok:
            self.validate(script)
        if not file_ok:
            self.actions.append("write %s" % self.rules_file_on_host)
            changed = True
            if not self.check_mode:
                write_file(self.rules_file, script)
        if not synced:
            self.actions.append("load table inet %s" % self.table if live is None else
                                "replace table inet %s" % self.table)
            changed = True
            if not self.check_mode:
                self._load()
        persistence = self.persistence.ensure(self.rules_file_on_host, self.nft(), note=persist_note) if persist else \
            self.persistence.remove()
        changed |= persistence["changed"]
        self.actions.extend(persistence["actions"])
        diffs = [{"before_header": "table inet %s (loaded)" % self.table,
                  "after_header": "table inet %s (wanted)" % self.table,
                  "before": live or "", "after": ruleset.text if not synced else (live or "")}]
        diffs.extend(persistence["diffs"])
        return {
            "changed": changed,
            "actions": list(self.actions),
            "ruleset": ruleset.text,
            "rules_file": self.rules_file_on_host,
            "client_networks": ruleset.client_networks,
            "unit_networks": ruleset.unit_networks,
            "client_ports": ruleset.client_ports,
            "local_ports": ruleset.local_ports,
            "unit_ports": ruleset.unit_port_ranges,
            "ssh_ports": ruleset.ssh_ports,
            "persistence": persistence["method"],
            "warnings": ruleset.warnings + persistence["warnings"],
            "diff": diffs,
        }

    def _load(self):
        rc, _out, err = self.run([self.nft(), "-f", self.rules_file])
        if rc != 0:
            raise FirewallError("nft -f %s failed (%d): %s" % (self.rules_file_on_host, rc, err.strip()))
        listing = self.loaded() or ""
        state = {"source_sha256": source_digest(current_content(self.rules_file) or ""), "listing": listing}
        write_file(self.state_file, json.dumps(state, indent=1, sort_keys=True) + "\n")

    def remove(self):
        """Take the table, its file and its persistence away (opt-out); other tables stay as they are."""
        live = self.loaded() if self._nft_present() else None
        changed = False
        # The boot-time loader goes first, so that a boot never looks for a file that is gone.
        persistence = self.persistence.remove()
        changed |= persistence["changed"]
        self.actions.extend(persistence["actions"])
        if live is not None:
            self.actions.append("delete table inet %s" % self.table)
            changed = True
            if not self.check_mode:
                rc, _out, err = self.run([self.nft(), "delete", "table", "inet", self.table])
                if rc != 0:
                    raise FirewallError("nft delete table inet %s failed (%d): %s" % (self.table, rc, err.strip()))
        for path, shown in ((self.rules_file, self.rules_file_on_host), (self.state_file, None)):
            if os.path.lexists(path):
                if shown:
                    self.actions.append("remove %s" % shown)
                changed = True
                if not self.check_mode:
                    os.unlink(path)
        diffs = [{"before_header": "table inet %s (loaded)" % self.table, "after_header": "(none)",
                  "before": live or "", "after": ""}]
        diffs.extend(persistence["diffs"])
        return {"changed": changed, "actions": list(self.actions), "ruleset": "", "persistence": "none",
                "warnings": persistence["warnings"], "diff": diffs}

    def _nft_present(self):
        try:
            self.nft()
        except FirewallError:
            return False
        return True
