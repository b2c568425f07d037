"""Host probes of gpu_info that need no Docker: listeners, cgroups, disk, addresses, InfiniBand, rendezvous."""

import os
import socket
import threading
from pathlib import Path

from ansible_collections.datacrunch.sglang.plugins.module_utils.common import tcp_listeners
from ansible_collections.datacrunch.sglang.plugins.module_utils.gpu import host_probe as probe

STANDIN = Path(__file__).resolve().parents[1] / "fixtures" / "nvidia-smi" / "nvidia-smi-standin"

PROC_NET_TCP = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:7530 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0 100 0 0 10 0
   1: 0100007F:7531 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 4343 1 0 20 4 30 10 -1
"""
PROC_NET_TCP6 = """  sl  local_address                         remote_address                        st tx_queue rx_queue
   0: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 99 1
   1: 0000000000000000FFFF00000100007F:C350 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 98 1
"""  # noqa: E501


def test_parse_proc_net_tcp_keeps_listeners_only():
    assert tcp_listeners.parse_proc_net_tcp(PROC_NET_TCP) == [{"address": "127.0.0.1", "port": 30000, "inode": 4242}]


def test_parse_proc_net_tcp6():
    assert tcp_listeners.parse_proc_net_tcp(PROC_NET_TCP6) == [
        {"address": "::", "port": 22, "inode": 99},
        {"address": "::ffff:127.0.0.1", "port": 50000, "inode": 98},
    ]


def test_listener_of_this_process_is_found_with_its_pid():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    try:
        state = probe.listeners_state([port], None)[str(port)]
    finally:
        server.close()
    assert state["free"] is False
    listener = state["listeners"][0]
    assert listener["address"] == "127.0.0.1"
    assert listener["pid"] == os.getpid()
    assert listener["ours"] is False
    assert listener["container"] is None


def test_free_port_is_free():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    assert probe.listeners_state([port], None)[str(port)] == {"port": port, "free": True, "listeners": []}


def test_cgroup_v1_v2_and_nested_engines():
    inner, outer = "a" * 64, "b" * 64
    assert probe.parse_cgroup(f"0::/system.slice/docker-{inner}.scope\n") == [inner]
    assert probe.parse_cgroup(f"12:pids:/docker/{inner}\n11:memory:/docker/{inner}\n") == [inner]
    assert probe.parse_cgroup(f"0::/docker/{outer}/docker/{inner}\n") == [outer, inner]
    assert probe.parse_cgroup("0::/user.slice/user-0.slice/session-1.scope\n") == []


def test_ours_needs_a_collection_label_other_than_the_probe():
    assert probe._is_ours({"datacrunch.sglang.spec-hash": "abc"})
    assert not probe._is_ours({"datacrunch.sglang.probe": "gpu"})
    assert not probe._is_ours({"com.example": "x"})


def test_disk_state_of_a_path_not_made_yet(tmp_path):
    state = probe.disk_state(str(tmp_path / "not" / "yet"))
    assert state["measured_at"] == str(tmp_path)
    assert state["exists"] is False
    assert state["free"] > 0
    assert state["total"] >= state["free"]


def test_bytes_under_counts_files_not_links(tmp_path):
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    (blobs / "x").write_bytes(b"0" * 1000)
    (tmp_path / "snapshot").mkdir()
    (tmp_path / "snapshot" / "model.safetensors").symlink_to(blobs / "x")
    assert probe.bytes_under(str(tmp_path)) == {"path": str(tmp_path), "bytes": 1000, "files": 1, "exists": True}
    assert probe.bytes_under(str(tmp_path / "nope"))["exists"] is False


def test_private_addresses_skip_virtual_interfaces_and_prefer_default_route():
    interfaces = {
        "lo": ["127.0.0.1"],
        "docker0": ["172.17.0.1"],
        "enp1s0": ["95.216.10.5", "fe80::1"],
        "ens7": ["10.1.0.4"],
        "bond0": ["192.168.5.5"],
    }
    assert probe.private_addresses(interfaces, "bond0") == [
        {"interface": "bond0", "address": "192.168.5.5"},
        {"interface": "ens7", "address": "10.1.0.4"},
    ]


def test_interfaces_of_this_machine_include_loopback():
    interfaces = probe.interfaces_state()
    assert "127.0.0.1" in interfaces.get("lo", [])


def test_ib_state_from_a_sysfs_tree(tmp_path):
    port = tmp_path / "mlx5_0" / "ports" / "1"
    port.mkdir(parents=True)
    (port / "state").write_text("4: ACTIVE\n")
    (port / "phys_state").write_text("5: LinkUp\n")
    (port / "link_layer").write_text("InfiniBand\n")
    (port / "rate").write_text("400 Gb/sec (4X NDR)\n")
    (tmp_path / "mlx5_0" / "device" / "net" / "ibp1s0").mkdir(parents=True)
    assert probe.ib_state(str(tmp_path)) == [
        {
            "name": "mlx5_0",
            "ports": [
                {
                    "port": 1,
                    "state": "ACTIVE",
                    "phys_state": "LinkUp",
                    "link_layer": "InfiniBand",
                    "rate": "400 Gb/sec (4X NDR)",
                    "pkeys": [],
                }
            ],
            "netdevs": ["ibp1s0"],
        }
    ]
    assert probe.ib_state(str(tmp_path / "none")) == []


def _free_port():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def test_rendezvous_on_loopback():
    port = _free_port()
    results = {}
    listener = threading.Thread(target=lambda: results.update(listen=probe.rendezvous_listen(port, 2, 10, "127.0.0.1")))
    listener.start()
    first = probe.rendezvous_connect("127.0.0.1", port, 10)
    second = probe.rendezvous_connect("127.0.0.1", port, 10)
    listener.join(15)
    assert first["reached"] and first["answered"]
    assert second["reached"] and second["answered"]
    assert results["listen"]["peers"] == ["127.0.0.1", "127.0.0.1"]
    assert results["listen"]["listening"] is True


def test_rendezvous_to_a_closed_port_fails_with_the_reason():
    result = probe.rendezvous_connect("127.0.0.1", _free_port(), 1)
    assert result["reached"] is False
    assert "Connection refused" in result["error"]
    assert result["attempts"] >= 1


def test_rendezvous_listen_on_a_taken_port():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    try:
        result = probe.rendezvous_listen(port, 1, 1, "127.0.0.1")
    finally:
        server.close()
    assert result["listening"] is False
    assert result["in_use"] is True
    assert "cannot listen on 127.0.0.1" in result["error"]


def test_gather_without_docker_socket(monkeypatch):
    monkeypatch.setenv("NVIDIA_SMI_FIXTURE", "h200-x8")
    facts = probe.gather(
        nvidia_smi_path=str(STANDIN),
        paths=["/"],
        ports=[1],
        docker_host="unix:///nonexistent/docker.sock",
        container_probe={"image": "x", "timeout": 5},
    )
    assert facts["gpu"]["count"] == 8
    assert facts["docker"]["running"] is False
    assert "no Docker socket" in facts["docker"]["error"]
    assert facts["container_probe"]["skipped"] is True
    assert facts["disk"]["/"]["free"] > 0
    assert facts["shm"]["total"] > 0
    assert facts["ports"]["1"]["free"] is True
    assert "interfaces" in facts["network"]
    assert set(facts["subsets"]) == set(probe.SUBSETS)


def test_gather_subset_only():
    facts = probe.gather(subsets=["network"])
    assert set(facts) == {"subsets", "network", "ib_devices", "seconds"}
