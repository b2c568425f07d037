# -*- coding: utf-8 -*-
# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""How the SGLang host firewall comes back after a reboot.

- A host that loads its rules with nftables.service (``systemctl is-enabled nftables.service``: enabled) gets one
  marked ``include`` line at the end of /etc/nftables.conf, after any ``flush ruleset`` it starts with.
- Another host with systemd gets the collection's own oneshot unit, ordered after nftables.service (whose
  ``flush ruleset`` would otherwise remove the table again) and before Docker (so that the server, which Docker
  restarts at boot, is never reachable without its firewall).
- A host without systemd keeps the table until it reboots; the result says so.

Removal undoes exactly what was added. Standard library only.
"""

from __future__ import annotations

import os

from ansible_collections.datacrunch.sglang.plugins.module_utils.common.atomic_file import current_content, replace_file

NFTABLES_CONF = "/etc/nftables.conf"
UNIT_NAME = "datacrunch-sglang-firewall.service"
UNIT_FILE = "/etc/systemd/system/" + UNIT_NAME
MARKER = "# datacrunch.sglang: the SGLang host firewall (role sglang_firewall); removed with the firewall"
METHOD_CONF = "nftables.service (include in /etc/nftables.conf)"
METHOD_UNIT = "systemd unit " + UNIT_NAME
METHOD_NONE = "none"


def conf_with_include(text, rules_file):
    """/etc/nftables.conf with the collection's include line (replacing an older one of ours)."""
    block = '%s\ninclude "%s"\n' % (MARKER, rules_file)
    kept = conf_without_include(text or "")
    if kept and not kept.endswith("\n"):
        kept += "\n"
    return kept + block


def conf_without_include(text):
    """/etc/nftables.conf without the collection's marker and the include line after it."""
    lines = (text or "").splitlines(keepends=True)
    out = []
    skip_next = False
    for line in lines:
        if skip_next:
            skip_next = False
            if line.strip().startswith("include "):
                continue
        if line.rstrip("\n") == MARKER:
            skip_next = True
            continue
        out.append(line)
    return "".join(out)


def unit_text(nft_path, rules_file):
    return (
        "# Managed by datacrunch.sglang (role sglang_firewall).\n"
        "[Unit]\n"
        "Description=SGLang host firewall (nftables table of datacrunch.sglang)\n"
        "DefaultDependencies=no\n"
        "Wants=network-pre.target\n"
        "After=nftables.service\n"
        "Before=network-pre.target docker.service shutdown.target\n"
        "Conflicts=shutdown.target\n"
        "\n"
        "[Service]\n"
        "Type=oneshot\n"
        "RemainAfterExit=yes\n"
        "ExecStart=%s -f %s\n"
        "\n"
        "[Install]\n"
        "WantedBy=sysinit.target\n" % (nft_path, rules_file)
    )


def _write(path, content, mode=0o644):
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o755, exist_ok=True)
    if os.path.exists(path):
        mode = os.stat(path).st_mode & 0o7777
    replace_file(path, content, mode=mode)


class Persistence:
    """Boot-time loading of the rules file; every method returns {changed, method, actions, diffs, warnings}."""

    def __init__(self, runner, root="", check_mode=False):
        self.run = runner
        self.root = root
        self.check_mode = check_mode

    def systemd_running(self):
        return os.path.isdir(self.root + "/run/systemd/system")

    def _enabled(self, unit):
        rc, out, _err = self.run(["systemctl", "is-enabled", unit])
        return rc == 0 and out.strip() in ("enabled", "enabled-runtime", "static", "alias")

    def _result(self, method):
        return {"changed": False, "method": method, "actions": [], "diffs": [], "warnings": []}

    def ensure(self, rules_file, nft_path, note=""):
        """note: said after the warning of a host without systemd (where that is expected, e.g. the lab's hosts)."""
        if not self.systemd_running():
            result = self._result(METHOD_NONE)
            result["warnings"].append(
                "this host does not run systemd: the firewall is loaded now but will not come back after a reboot; "
                "load %s at boot (nft -f %s)%s" % (rules_file, rules_file, " - %s" % note if note else "")
            )
            return result
        if self._enabled("nftables.service"):
            result = self._result(METHOD_CONF)
            self._ensure_conf(rules_file, result)
            self._remove_unit(result)
        else:
            result = self._result(METHOD_UNIT)
            self._remove_conf(result)
            self._ensure_unit(rules_file, nft_path, result)
        return result

    def remove(self):
        result = self._result(METHOD_NONE)
        self._remove_conf(result)
        if self.systemd_running() or os.path.exists(self.root + UNIT_FILE):
            self._remove_unit(result)
        return result

    # -- /etc/nftables.conf --------------------------------------------------------------------------------------

    def _change_conf(self, result, wanted, action):
        path = self.root + NFTABLES_CONF
        current = current_content(path)
        if current is None and wanted is None:
            return
        if (current or "") == (wanted or ""):
            return
        result["changed"] = True
        result["actions"].append(action)
        result["diffs"].append({"before_header": NFTABLES_CONF, "after_header": NFTABLES_CONF,
                                "before": current or "", "after": wanted or ""})
        if not self.check_mode:
            _write(path, wanted)

    def _ensure_conf(self, rules_file, result):
        current = current_content(self.root + NFTABLES_CONF)
        self._change_conf(result, conf_with_include(current, rules_file),
                          "include %s from %s" % (rules_file, NFTABLES_CONF))

    def _remove_conf(self, result):
        current = current_content(self.root + NFTABLES_CONF)
        if current is None or MARKER not in current:
            return
        self._change_conf(result, conf_without_include(current), "remove the include from %s" % NFTABLES_CONF)

    # -- the collection's unit -----------------------------------------------------------------------------------

    def _systemctl(self, *args):
        rc, _out, err = self.run(["systemctl", *args])
        if rc != 0:
            raise OSError("systemctl %s failed (%d): %s" % (" ".join(args), rc, err.strip()))

    def _ensure_unit(self, rules_file, nft_path, result):
        path = self.root + UNIT_FILE
        wanted = unit_text(nft_path, rules_file)
        current = current_content(path)
        if current != wanted:
            result["changed"] = True
            result["actions"].append("write %s" % UNIT_FILE)
            result["diffs"].append({"before_header": UNIT_FILE, "after_header": UNIT_FILE,
                                    "before": current or "", "after": wanted})
            if not self.check_mode:
                _write(path, wanted)
                self._systemctl("daemon-reload")
        if not self._enabled(UNIT_NAME):
            result["changed"] = True
            result["actions"].append("enable %s" % UNIT_NAME)
            if not self.check_mode:
                self._systemctl("enable", UNIT_NAME)

    def _remove_unit(self, result):
        path = self.root + UNIT_FILE
        if not os.path.exists(path):
            return
        result["changed"] = True
        result["actions"].append("remove %s" % UNIT_NAME)
        result["diffs"].append({"before_header": UNIT_FILE, "after_header": "(none)",
                                "before": current_content(path) or "", "after": ""})
        if not self.check_mode:
            if self.systemd_running():
                self._systemctl("disable", UNIT_NAME)
            os.unlink(path)
            if self.systemd_running():
                self._systemctl("daemon-reload")
