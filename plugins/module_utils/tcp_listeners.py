# -*- coding: utf-8 -*-
# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which processes listen on a TCP port of this host (Linux /proc; no external tools)."""

from __future__ import annotations

import os

_LISTEN = "0A"


def _listening_inodes(port, proc_root="/proc"):
    inodes = set()
    for table in ("net/tcp", "net/tcp6"):
        path = os.path.join(proc_root, table)
        try:
            with open(path, encoding="ascii") as handle:
                lines = handle.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != _LISTEN:
                continue
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port:
                inodes.add(fields[9])
    return inodes


def _command_line(pid, proc_root):
    try:
        with open(os.path.join(proc_root, pid, "cmdline"), "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def listeners(port, proc_root="/proc"):
    """[{pid, command}] of processes with a listening socket on port (pid None when the owner is not visible)."""
    inodes = _listening_inodes(port, proc_root)
    if not inodes:
        return []
    wanted = {"socket:[%s]" % inode for inode in inodes}
    found = []
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
                found.append({"pid": int(pid), "command": _command_line(pid, proc_root)})
                break
    return found or [{"pid": None, "command": ""}]


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
