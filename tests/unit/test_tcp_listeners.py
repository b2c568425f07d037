"""module_utils/common/tcp_listeners.py, the one port-owner probe (the preflight and the launch both ask it), against
this machine's real /proc: a socket this test opens is found with its process; a closed port has no listener."""

import os
import socket

import pytest

from ansible_collections.datacrunch.sglang.plugins.module_utils.common import tcp_listeners


def listening(family=socket.AF_INET, address="127.0.0.1"):
    server = socket.socket(family, socket.SOCK_STREAM)
    server.bind((address, 0))
    server.listen(1)
    return server


def test_a_listening_socket_is_found_with_its_process_and_command_line():
    with listening() as server:
        port = server.getsockname()[1]
        held = tcp_listeners.listeners(port)
        assert [holder["pid"] for holder in held] == [os.getpid()]
        assert "python" in held[0]["command"] or "pytest" in held[0]["command"]
        sockets = [entry for entry in tcp_listeners.listening_sockets() if entry["port"] == port]
        assert [entry["address"] for entry in sockets] == ["127.0.0.1"]
    assert tcp_listeners.listeners(port) == []


def test_an_ipv6_listener_is_read_from_tcp6():
    try:
        server = listening(socket.AF_INET6, "::1")
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    with server:
        port = server.getsockname()[1]
        sockets = [entry for entry in tcp_listeners.listening_sockets() if entry["port"] == port]
        assert [entry["address"] for entry in sockets] == ["::1"]
        assert set(tcp_listeners.socket_owners([entry["inode"] for entry in sockets]).values()) == {os.getpid()}


def test_a_connected_socket_is_not_a_listener():
    with listening() as server:
        port = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as client:
            client_port = client.getsockname()[1]
            assert tcp_listeners.listeners(client_port) == []


def test_the_process_chain_ends_at_pid_1():
    chain = tcp_listeners.process_ancestors(os.getpid())
    assert chain[0] == os.getpid() and chain[-1] == 1
