"""module_utils/gpu/host_probe.py: the NVIDIA container toolkit as a host shows it (the lab's nvidia-ctk stand-in
and a dpkg-query that knows the package, first on PATH), and gather()'s rendezvous test between two "nodes" on
loopback, run for real: one gather listens, a peer connects."""

import socket
import stat
import sys
import threading
from pathlib import Path

from ansible_collections.datacrunch.sglang.plugins.module_utils.gpu import host_probe as probe

LAB_NVIDIA = Path(__file__).resolve().parents[1] / "lab" / "host" / "nvidia"


def executable(path, text):
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def test_toolkit_state_reads_the_cli_version_and_the_installed_package(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    ctk = LAB_NVIDIA / "nvidia_ctk.py"
    executable(bin_dir / "nvidia-ctk", '#!/bin/sh\nexec "%s" "%s" "$@"\n' % (sys.executable, ctk))
    # dpkg-query -W -f '${Status}\t${Version}' nvidia-container-toolkit, as on a host with the package installed
    executable(bin_dir / "dpkg-query", '#!/bin/sh\nprintf "install ok installed\\t1.17.8-1"\n')
    monkeypatch.setenv("PATH", "%s:%s" % (bin_dir, "/usr/bin:/bin"))
    state = probe.toolkit_state()
    assert state["binaries"]["nvidia-ctk"] == str(bin_dir / "nvidia-ctk")
    assert state["version"] == "1.17.8"
    assert state["package_version"] == "1.17.8-1"


def test_toolkit_state_without_a_package(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    executable(bin_dir / "dpkg-query", "#!/bin/sh\necho 'dpkg-query: no packages found matching x' >&2\nexit 1\n")
    monkeypatch.setenv("PATH", str(bin_dir))
    assert probe.toolkit_state()["package_version"] == ""


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_gather_listens_for_its_peers_while_it_gathers():
    port = free_port()
    reached = {}
    peer = threading.Thread(target=lambda: reached.update(probe.rendezvous_connect("127.0.0.1", port, 10)))
    peer.start()
    facts = probe.gather(subsets=(), rendezvous={"listen_port": port, "peers": 1, "timeout": 10})
    peer.join(15)
    assert facts["rendezvous"]["listening"] is True and facts["rendezvous"]["peers"] == ["127.0.0.1"]
    assert reached["reached"] is True and reached["answered"] is True


def test_gather_connects_to_rank_0_and_reports_a_closed_port():
    port = free_port()
    facts = probe.gather(subsets=(), rendezvous={"connect_host": "127.0.0.1", "connect_port": port, "timeout": 1})
    result = facts["rendezvous"]
    assert result["mode"] == "connect" and result["reached"] is False and result["attempts"] >= 1
    assert result["error"].startswith("127.0.0.1:%d: " % port)
