"""module_utils/common/tcp_listeners.py on /proc trees written in tmp_path, for what this machine's own /proc does
not show on demand: a listener whose owner is not visible (another user's process, another PID namespace), a process
gone between two reads, a kernel without IPv6, and the parent chain of a container's process.

The lines are in the kernel's format (fs/proc: net/tcp, net/tcp6, <pid>/stat, <pid>/cmdline, <pid>/fd links).
The probe against this machine's real /proc: tests/unit/test_tcp_listeners.py.
"""

import os

from ansible_collections.datacrunch.sglang.plugins.module_utils.common import tcp_listeners

TCP_HEADER = ("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n")
# 127.0.0.1:30000 LISTEN, 0.0.0.0:22 LISTEN, 10.0.0.5:30000 -> 10.0.0.9:51234 ESTABLISHED
TCP = TCP_HEADER + (
    "   0: 0100007F:7530 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1111 1 0 100 0 0 10 0\n"
    "   1: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2222 1 0 100 0 0 10 0\n"
    "   2: 0500000A:7530 0900000A:C822 01 00000000:00000000 02:00000A2B 00000000     0        0 3333 2 0 20 4 3 1 -1\n"
    "   3: short line\n"
)
# [::1]:30000 LISTEN and [fd00::5]:8080 LISTEN (four little-endian words each)
TCP6 = TCP_HEADER + (
    "   0: 00000000000000000000000001000000:7530 00000000000000000000000000000000:0000 0A 00000000:00000000 "
    "00:00000000 00000000     0        0 4444 1 0 100 0 0 10 0\n"
    "   1: 000000FD000000000000000005000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 "
    "00:00000000 00000000     0        0 5555 1 0 100 0 0 10 0\n"
)


def proc_tree(root, processes, tcp=TCP, tcp6=TCP6):
    """processes: {pid: (ppid, command words, socket inodes)}."""
    (root / "net").mkdir(parents=True)
    (root / "net" / "tcp").write_text(tcp)
    if tcp6 is not None:
        (root / "net" / "tcp6").write_text(tcp6)
    (root / "self").mkdir()  # not a pid: skipped
    for pid, (ppid, words, inodes) in processes.items():
        directory = root / str(pid)
        (directory / "fd").mkdir(parents=True)
        (directory / "stat").write_text("%d (%s) S %d %d 0 0 -1 4194560 0\n" % (pid, words[0], ppid, pid))
        (directory / "cmdline").write_bytes(b"\0".join(word.encode() for word in words) + b"\0")
        for fd, inode in enumerate(inodes, start=3):
            os.symlink("socket:[%d]" % inode, directory / "fd" / str(fd))
        os.symlink("/dev/null", directory / "fd" / "0")
    return str(root)


def test_listen_sockets_of_both_families_are_read(tmp_path):
    root = proc_tree(tmp_path, {})
    assert tcp_listeners.listening_sockets(root) == [
        {"address": "127.0.0.1", "port": 30000, "inode": 1111},
        {"address": "0.0.0.0", "port": 22, "inode": 2222},
        {"address": "::1", "port": 30000, "inode": 4444},
        {"address": "fd00::5", "port": 8080, "inode": 5555},
    ]


def test_a_kernel_without_ipv6_has_only_tcp(tmp_path):
    root = proc_tree(tmp_path, {}, tcp6=None)
    assert [entry["port"] for entry in tcp_listeners.listening_sockets(root)] == [30000, 22]
    assert tcp_listeners.listening_sockets(str(tmp_path / "no-proc")) == []


def test_every_process_holding_the_port_is_named_with_its_command_line(tmp_path):
    root = proc_tree(tmp_path, {
        1: (0, ["/sbin/init"], []),
        700: (1, ["python3", "-m", "sglang.launch_server", "--port", "30000"], [1111]),
        701: (700, ["python3", "-m", "sglang.launch_server"], [4444]),  # the same port over IPv6
        900: (1, ["sshd", "-D"], [2222]),
    })
    assert tcp_listeners.listeners(30000, root) == [
        {"pid": 700, "command": "python3 -m sglang.launch_server --port 30000"},
        {"pid": 701, "command": "python3 -m sglang.launch_server"},
    ]
    assert tcp_listeners.listeners(22, root) == [{"pid": 900, "command": "sshd -D"}]
    assert tcp_listeners.listeners(443, root) == []


def test_a_listener_whose_owner_is_not_visible_is_still_a_listener(tmp_path):
    root = proc_tree(tmp_path, {1: (0, ["/sbin/init"], [])})
    assert tcp_listeners.listeners(8080, root) == [{"pid": None, "command": ""}]
    assert tcp_listeners.socket_owners([], root) == {}


def test_a_process_that_ends_between_two_reads_is_passed_over(tmp_path):
    root = proc_tree(tmp_path, {900: (1, ["sshd"], [2222]), 901: (1, ["gone"], [])})
    for entry in (tmp_path / "901" / "fd").iterdir():
        entry.unlink()
    (tmp_path / "901" / "fd").rmdir()  # its fd folder went with it
    (tmp_path / "900" / "cmdline").unlink()
    (tmp_path / "900" / "fd" / "2").write_text("")  # not a link: readlink fails as for an fd closed meanwhile
    assert tcp_listeners.listeners(22, root) == [{"pid": 900, "command": ""}]


def test_the_parent_chain_up_to_pid_1_and_a_broken_one(tmp_path):
    root = proc_tree(tmp_path, {
        1: (0, ["/sbin/init"], []),
        50: (1, ["containerd-shim-runc-v2"], []),
        51: (50, ["python3 (sglang)"], []),  # a command name with a space and a parenthesis
    })
    assert tcp_listeners.process_ancestors(51, root) == [51, 50, 1]
    assert tcp_listeners.process_ancestors(77, root) == [77]  # no such process: the chain stops at once
