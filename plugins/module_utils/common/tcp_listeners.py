# -*- coding: utf-8 -*-
# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which processes listen on a TCP port of this host (Linux /proc; no external tools, standard library only).

The one port-owner probe of the collection: the preflight (gpu_host_probe.listeners_state) and the server's launch
(server_container, before it starts a container on a port) both ask it.
"""

from __future__ import annotations

import os
import socket

_LISTEN = "0A"


def _decode_address(hex_address):
    address, port = hex_address.split(":")
    raw = bytes.fromhex(address)
    if len(raw) == 4:
        ip = socket.inet_ntop(socket.AF_INET, raw[::-1])
    else:
        # /proc/net/tcp6 prints four 32-bit words, each in host (little-endian) order.
        words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
        ip = socket.inet_ntop(socket.AF_INET6, words)
    return ip, int(port, 16)


def parse_proc_net_tcp(text):
    """LISTEN sockets from /proc/net/tcp or tcp6: [{address, port, inode}]."""
    found = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or fields[3] != _LISTEN:
            continue
        address, port = _decode_address(fields[1])
        found.append({"address": address, "port": port, "inode": int(fields[9])})
    return found


def listening_sockets(proc_root="/proc"):
    """Every LISTEN socket of this host's network namespace, IPv4 and IPv6: [{address, port, inode}]."""
    found = []
    for table in ("net/tcp", "net/tcp6"):
        try:
            with open(os.path.join(proc_root, table), encoding="ascii") as handle:
                found.extend(parse_proc_net_tcp(handle.read()))
        except OSError:
            continue
    return found


def socket_owners(inodes, proc_root="/proc"):
    """inode -> pid for the given socket inodes, by reading /proc/*/fd (root sees every process)."""
    wanted = {"socket:[%s]" % inode: inode for inode in inodes}
    owners = {}
    if not wanted:
        return owners
    for pid in os.listdir(proc_root):
        if not pid.isdigit():
            continue
        fd_dir = os.path.join(proc_root, pid, "fd")
        try:
            entries = os.listdir(fd_dir)
        except OSError:
            continue
        for entry in entries:
            try:
                target = os.readlink(os.path.join(fd_dir, entry))
            except OSError:
                continue
            if target in wanted:
                owners.setdefault(wanted[target], int(pid))
        if len(owners) == len(wanted):
            break
    return owners


def _command_line(pid, proc_root):
    try:
        with open(os.path.join(proc_root, str(pid), "cmdline"), "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def listeners(port, proc_root="/proc"):
    """[{pid, command}] of processes with a listening socket on port (pid None when the owner is not visible)."""
    inodes = {entry["inode"] for entry in listening_sockets(proc_root) if entry["port"] == port}
    if not inodes:
        return []
    pids = sorted(set(socket_owners(inodes, proc_root).values()))
    return [{"pid": pid, "command": _command_line(pid, proc_root)} for pid in pids] or [{"pid": None, "command": ""}]


def process_ancestors(pid, proc_root="/proc"):
    """PIDs from pid up to 1, to tell whether a listener belongs to a container's process tree."""
    chain = []
    current = str(pid)
    while current and current not in ("0",) and len(chain) < 64:
        chain.append(int(current))
        try:
            with open(os.path.join(proc_root, current, "stat"), encoding="ascii", errors="replace") as handle:
                stat = handle.read()
        except OSError:
            break
        current = stat.rsplit(")", 1)[1].split()[1]
    return chain
