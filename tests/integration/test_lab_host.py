"""The lab's simulated H200 hosts, for real: a lab of two hosts on this machine's Docker engine, reached over SSH.

The lab gets its own LAB_NAME, inventory directory and shared volume, so that it never touches a lab in use, and it
is removed at the end. Everything is checked from where the collection stands: SSH into a host as root with the lab
key, the host's own Docker engine, the lab network, the inventory that `lab.sh up` writes.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import socket
import subprocess
import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
LAB = REPO_ROOT / "tests/lab/lab.sh"
STATE = REPO_ROOT / "tests/lab/.state"
BASE_IMAGE = "datacrunch-sglang-lab/debian:bookworm"
STANDIN_IMAGES = ("localhost/sglang-standin:v0.5.18", "localhost/sglang-standin:v0.5.23")
SHARED_DIR = "/mnt/shared"

pytestmark = pytest.mark.skipif(
    subprocess.run(["docker", "info"], capture_output=True, check=False).returncode != 0, reason="needs a Docker engine"
)


def docker(*args, check=True):
    result = subprocess.run(["docker", *args], capture_output=True, text=True, check=False)
    if check:
        assert result.returncode == 0, f"docker {' '.join(args)}: {result.stderr}"
    return result


def image_id(image, host=None):
    prefix = ["exec", host, "docker"] if host else []
    result = docker(*prefix, "image", "inspect", "-f", "{{.Id}}", image, check=False)
    return result.stdout.strip() if result.returncode == 0 else None


class Lab:
    def __init__(self, name, inventory_dir):
        self.name = name
        self.inventory_dir = inventory_dir
        self.env = dict(os.environ, LAB_NAME=name, LAB_INVENTORY_DIR=str(inventory_dir), LAB_SHARED_DIR=SHARED_DIR)
        self.key = STATE / "ssh/id_ed25519"

    def script(self, *args, check=True, timeout=600):
        result = subprocess.run(
            [str(LAB), *args], capture_output=True, text=True, env=self.env, timeout=timeout, check=False
        )
        if check:
            assert result.returncode == 0, f"lab.sh {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
        return result

    @property
    def inventory(self):
        return yaml.safe_load((self.inventory_dir / "hosts.yml").read_text())

    @property
    def hosts(self):
        hosts = self.inventory["all"]["children"]["sglang_servers"]["hosts"]
        return {name: values["ansible_host"] for name, values in hosts.items()}

    def address(self, host):
        return self.hosts[host]

    def ssh(self, host, command, check=True, key=None, timeout=120):
        argv = [
            "ssh", "-i", str(key or self.key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
            "-o", "ConnectTimeout=5", f"root@{self.address(host)}", command,
        ]  # fmt: skip
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        if check:
            assert result.returncode == 0, f"{host}: {command}:\n{result.stdout}\n{result.stderr}"
        return result

    def smi(self, host, *args):
        return self.ssh(host, "nvidia-smi " + " ".join(args)).stdout

    def fault(self, host, *args, check=True):
        return self.script("fault", host, *args, check=check)

    def heal(self, host):
        self.script("heal", host)

    def container_image(self):
        """The image that containers on a host run in the tests: the SGLang stand-in when there is one."""
        for image in STANDIN_IMAGES:
            if image_id(image):
                return image
        return BASE_IMAGE


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    name = f"dcsgdev-lab-t{uuid.uuid4().hex[:6]}"
    lab = Lab(name, tmp_path_factory.mktemp("inventory"))
    started = time.monotonic()
    try:
        lab.script("up", "2")
        lab.up_seconds = time.monotonic() - started
        yield lab
    finally:
        lab.script("down", check=False)


@pytest.fixture
def healthy(lab):
    """A host in its healthy state before and after a test."""
    host = f"{lab.name}-2"
    lab.heal(host)
    yield host
    lab.heal(host)


# ---------------------------------------------------------------------------------------------------------------
# The hosts as the collection finds them
# ---------------------------------------------------------------------------------------------------------------


def test_inventory_lists_the_hosts_on_a_private_network(lab):
    inventory = lab.inventory
    hosts = lab.hosts
    assert sorted(hosts) == [f"{lab.name}-1", f"{lab.name}-2"]
    subnet = docker("network", "inspect", "-f", "{{range .IPAM.Config}}{{.Subnet}}{{end}}", lab.name).stdout.strip()
    network = ipaddress.ip_network(subnet)
    assert network.is_private and network.prefixlen == 24
    assert all(ipaddress.ip_address(address) in network for address in hosts.values())
    group = inventory["all"]["children"]["sglang_servers"]["vars"]
    assert group["ansible_user"] == "root"
    assert Path(group["ansible_ssh_private_key_file"]) == lab.key
    assert "StrictHostKeyChecking=no" in group["ansible_ssh_common_args"]
    lab_vars = inventory["all"]["vars"]
    gateway = lab_vars["lab_gateway"]
    assert ipaddress.ip_address(gateway) in network
    assert lab_vars["lab_name"] == lab.name
    assert lab_vars["lab_pip_index"] == f"http://{gateway}:18091/"
    assert lab_vars["lab_hub_endpoint"].startswith(f"http://{gateway}:")
    assert (lab.inventory_dir / "group_vars").resolve() == REPO_ROOT / "inventories/lab/group_vars"


def test_ssh_as_root_with_the_lab_key_only(lab, tmp_path):
    for host in lab.hosts:
        assert lab.ssh(host, "id -un; hostname").stdout.split() == ["root", host]
    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    refused = lab.ssh(f"{lab.name}-1", "true", check=False, key=stranger)
    assert refused.returncode == 255 and "Permission denied" in refused.stderr


def test_ansible_reaches_the_hosts(lab):
    result = subprocess.run(
        [str(REPO_ROOT / ".venv/bin/ansible"), "-i", str(lab.inventory_dir), "-m", "ansible.builtin.ping",
         "sglang_servers"],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == 2


def test_hosts_reach_each_other_on_the_private_network(lab):
    second = lab.address(f"{lab.name}-2")
    banner = lab.ssh(f"{lab.name}-1", f"timeout 5 bash -c 'exec 3<>/dev/tcp/{second}/22; head -c 7 <&3'").stdout
    assert banner == "SSH-2.0"


def test_shared_volume_is_one_filesystem_for_all_hosts(lab):
    token = uuid.uuid4().hex
    lab.ssh(f"{lab.name}-1", f"echo {token} > {SHARED_DIR}/written-by-host-1")
    assert lab.ssh(f"{lab.name}-2", f"cat {SHARED_DIR}/written-by-host-1").stdout.strip() == token


def test_up_again_leaves_running_hosts_alone(lab):
    before = {host: docker("inspect", "-f", "{{.Id}} {{.State.StartedAt}}", host).stdout for host in lab.hosts}
    started = time.monotonic()
    lab.script("up", "2")
    assert time.monotonic() - started < 30
    after = {host: docker("inspect", "-f", "{{.Id}} {{.State.StartedAt}}", host).stdout for host in lab.hosts}
    assert after == before


# ---------------------------------------------------------------------------------------------------------------
# GPUs
# ---------------------------------------------------------------------------------------------------------------


def test_nvidia_smi_reports_eight_h200_with_distinct_uuids(lab):
    uuids = {}
    for host in lab.hosts:
        rows = [line.split(", ") for line in lab.smi(host, "--query-gpu=index,name,uuid", "--format=csv,noheader")
                .splitlines()]  # fmt: skip
        assert [row[0] for row in rows] == [str(i) for i in range(8)]
        assert {row[1] for row in rows} == {"NVIDIA H200"}
        uuids[host] = {row[2] for row in rows}
        assert len(uuids[host]) == 8
    first, second = list(uuids.values())
    assert not first & second, "two hosts share GPU UUIDs"


def test_xml_report_parses_with_eight_gpus(lab):
    text = lab.smi(f"{lab.name}-1", "-q", "-x")
    assert '<!DOCTYPE nvidia_smi_log SYSTEM "nvsmi_device_v13.dtd">' in text
    root = ET.fromstring(text.split("\n", 2)[2])  # noqa: S314 - the stand-in's own output
    gpus = root.findall("gpu")
    assert root.findtext("attached_gpus") == "8" and len(gpus) == 8
    assert len({gpu.findtext("serial") for gpu in gpus}) == 8
    assert len({gpu.get("id") for gpu in gpus}) == 8
    assert [gpu.findtext("minor_number") for gpu in gpus] == [str(i) for i in range(8)]


def test_topology_is_an_nvlink_mesh(lab):
    lines = lab.smi(f"{lab.name}-1", "topo", "-m").splitlines()
    rows = [line.split("\t") for line in lines[1:9]]
    for index, row in enumerate(rows):
        assert row[0] == f"GPU{index}"
        assert row[1:9] == ["NV18" if peer != index else " X " for peer in range(8)]
    assert lab.smi(f"{lab.name}-1", "nvlink", "-s").count("26.562 GB/s") == 8 * 18


def test_containers_see_the_gpus_they_are_given(lab):
    host = f"{lab.name}-1"
    image = lab.container_image()
    host_uuids = lab.smi(host, "--query-gpu=uuid", "--format=csv,noheader").split()
    all_gpus = lab.ssh(host, f"docker run --rm --gpus all --entrypoint nvidia-smi {image} -L").stdout
    assert all_gpus.count("NVIDIA H200") == 8
    two = lab.ssh(host, f"docker run --rm --gpus '\"device=0,1\"' --entrypoint nvidia-smi {image} -L").stdout
    assert [line.split("UUID: ")[1].rstrip(")") for line in two.splitlines()] == host_uuids[:2]
    without = lab.ssh(host, f"docker run --rm --entrypoint nvidia-smi {image} -L", check=False)
    assert without.returncode != 0 and "executable file not found" in without.stderr


def test_nvidia_ctk_registers_the_nvidia_runtime(lab, healthy):
    image = lab.container_image()
    try:
        lab.ssh(healthy, "nvidia-ctk runtime configure --runtime=docker && service docker restart")
        config = json.loads(lab.ssh(healthy, "cat /etc/docker/daemon.json").stdout)
        assert config["runtimes"]["nvidia"]["path"] == "nvidia-container-runtime"
        assert "nvidia" in json.loads(lab.ssh(healthy, "docker info --format '{{json .Runtimes}}'").stdout)
        one = lab.ssh(healthy, f"docker run --rm --runtime=nvidia -e NVIDIA_VISIBLE_DEVICES=1 {image} nvidia-smi -L")
        assert one.stdout.count("NVIDIA H200") == 1
    finally:
        lab.ssh(healthy, "rm -f /etc/docker/daemon.json && service docker restart")


def test_images_in_the_hosts_are_the_lab_images(lab):
    for host in lab.hosts:
        for image in (BASE_IMAGE, *STANDIN_IMAGES):
            outer = image_id(image)
            if outer:
                assert image_id(image, host) == outer, f"{image} in {host}"


# ---------------------------------------------------------------------------------------------------------------
# Faults: each changes what it should, heal restores a healthy host
# ---------------------------------------------------------------------------------------------------------------


def query(lab, host, fields, gpu=None):
    select = f"-i {gpu} " if gpu is not None else ""
    return lab.smi(host, f"{select}--query-gpu={fields}", "--format=csv,noheader,nounits").splitlines()


def test_fault_fewer_gpus(lab, healthy):
    lab.fault(healthy, "gpus", "4")
    assert lab.smi(healthy, "-L").count("NVIDIA H200") == 4
    lab.heal(healthy)
    assert lab.smi(healthy, "-L").count("NVIDIA H200") == 8


def test_fault_old_driver(lab, healthy):
    lab.fault(healthy, "driver", "535.104.05")
    root = ET.fromstring(lab.smi(healthy, "-q", "-x").split("\n", 2)[2])  # noqa: S314 - the stand-in's output
    assert (root.findtext("driver_version"), root.findtext("cuda_version")) == ("535.104.05", "12.2")
    lab.heal(healthy)
    assert query(lab, healthy, "driver_version", 0) == ["580.159.04"]


def test_fault_ecc_errors(lab, healthy):
    lab.fault(healthy, "ecc", "3", "7")
    rows = query(lab, healthy, "index,ecc.errors.uncorrected.volatile.total,remapped_rows.pending")
    assert rows[3] == "3, 7, Yes"
    assert all(row.endswith(", 0, No") for i, row in enumerate(rows) if i != 3)
    lab.heal(healthy)
    assert query(lab, healthy, "ecc.errors.uncorrected.volatile.total", 3) == ["0"]


def test_fault_mig(lab, healthy):
    lab.fault(healthy, "mig", "2")
    assert query(lab, healthy, "mig.mode.current") == ["Disabled"] * 2 + ["Enabled"] + ["Disabled"] * 5
    lab.heal(healthy)
    assert query(lab, healthy, "mig.mode.current") == ["Disabled"] * 8


def test_fault_process_holds_gpu_memory(lab, healthy):
    lab.fault(healthy, "process")
    apps = lab.smi(healthy, "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits").splitlines()
    assert len(apps) == 1
    pid, memory = apps[0].split(", ")
    assert memory == "40960"
    assert lab.ssh(healthy, f"kill -0 {pid}", check=False).returncode == 0, "the process does not exist"
    assert query(lab, healthy, "memory.used", 0) == ["40960"]
    lab.heal(healthy)
    assert lab.ssh(healthy, f"kill -0 {pid}", check=False).returncode != 0
    assert lab.smi(healthy, "--query-compute-apps=pid", "--format=csv,noheader") == ""


def test_fault_persistence_off_fixed_by_nvidia_smi(lab, healthy):
    lab.fault(healthy, "persistence-off")
    assert query(lab, healthy, "persistence_mode") == ["Disabled"] * 8
    assert "All done." in lab.smi(healthy, "-pm", "1")
    assert query(lab, healthy, "persistence_mode") == ["Enabled"] * 8


def test_fault_nvlink_down(lab, healthy):
    lab.fault(healthy, "nvlink-down", "5")
    status = lab.smi(healthy, "nvlink", "-s")
    assert status.count("<inactive>") == 18
    gpu5 = status.split("GPU 5:")[1].split("GPU 6:")[0]
    assert gpu5.count("<inactive>") == 18
    row5 = lab.smi(healthy, "topo", "-m").splitlines()[6].split("\t")
    assert row5[0] == "GPU5" and "NV18" not in row5
    lab.heal(healthy)
    assert "<inactive>" not in lab.smi(healthy, "nvlink", "-s")


def test_fault_toolkit_missing(lab, healthy):
    image = lab.container_image()
    lab.fault(healthy, "toolkit-missing")
    failed = lab.ssh(healthy, f"docker run --rm --gpus all --entrypoint true {image}", check=False)
    assert failed.returncode != 0
    assert 'could not select device driver "" with capabilities: [[gpu]]' in failed.stderr
    assert lab.ssh(healthy, "command -v nvidia-ctk", check=False).returncode != 0
    lab.heal(healthy)
    assert "version" in lab.ssh(healthy, "nvidia-ctk --version").stdout
    ok = lab.ssh(healthy, f"docker run --rm --gpus all --entrypoint nvidia-smi {image} -L")
    assert ok.stdout.count("NVIDIA H200") == 8


def test_fault_disk_full(lab, healthy):
    path = "/root/.cache/huggingface"
    lab.ssh(healthy, f"mkdir -p {path}/hub && echo kept > {path}/hub/marker")
    lab.fault(healthy, "disk-full", path)
    assert lab.ssh(healthy, f"df --output=avail -B1 {path} | tail -1").stdout.strip() == "0"
    write = lab.ssh(healthy, f"echo x > {path}/new-file", check=False)
    assert write.returncode != 0 and "No space left on device" in write.stderr
    lab.heal(healthy)
    lab.ssh(healthy, f"echo x > {path}/new-file && rm {path}/new-file")
    assert lab.ssh(healthy, f"cat {path}/hub/marker").stdout.strip() == "kept"


def test_fault_port_taken_by_a_foreign_process(lab, healthy):
    address = lab.address(healthy)
    lab.fault(healthy, "port", "30000")
    with socket.create_connection((address, 30000), timeout=5):
        pass
    again = lab.fault(healthy, "port", "30000", check=False)
    assert again.returncode != 0 and "PORT=30000 is already in use" in again.stderr
    lab.heal(healthy)
    with pytest.raises(OSError):
        socket.create_connection((address, 30000), timeout=5).close()


def test_fault_no_nvidia_smi(lab, healthy):
    lab.fault(healthy, "no-nvidia-smi")
    assert lab.ssh(healthy, "command -v nvidia-smi", check=False).returncode != 0
    lab.heal(healthy)
    assert lab.ssh(healthy, "command -v nvidia-smi").stdout.strip() == "/usr/bin/nvidia-smi"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("ecc", "9", "1"), "GPU='9' is not a GPU of this host: use an index from 0 to 7"),
        (("gpus", "many"), "N='many' must be a whole number from 0 to 16"),
        (("driver", "latest"), "VERSION='latest' is not a driver version such as 535.104.05"),
        (("disk-full", "relative/path"), "PATH='relative/path' must be an absolute path"),
        (("meltdown",), "unknown fault 'meltdown'"),
    ],
)
def test_bad_fault_arguments_are_refused_with_the_fix(lab, healthy, args, message):
    before = lab.smi(healthy, "-q", "-x").split("</timestamp>")[1]
    result = lab.fault(healthy, *args, check=False)
    assert result.returncode != 0
    assert message in result.stderr
    assert lab.smi(healthy, "-q", "-x").split("</timestamp>")[1] == before


def test_fault_names_an_unknown_host(lab):
    result = lab.script("fault", "no-such-host", "gpus", "1", check=False)
    assert result.returncode != 0 and "'no-such-host' is not a lab host" in result.stderr


# ---------------------------------------------------------------------------------------------------------------
# Restart and lab services
# ---------------------------------------------------------------------------------------------------------------


def test_host_survives_docker_restart(lab):
    host = f"{lab.name}-2"
    image = lab.container_image()
    keys_before = lab.ssh(host, "cat /etc/ssh/ssh_host_ed25519_key.pub").stdout
    uuids_before = lab.smi(host, "-L")
    lab.ssh(host, f"docker run -d --name dcsgdev-lab-keep --restart always --entrypoint sleep {image} infinity")
    docker("restart", host)
    deadline = time.monotonic() + 90
    while lab.ssh(host, "docker info >/dev/null", check=False).returncode != 0:
        assert time.monotonic() < deadline, "the host did not come back with SSH and its engine"
        time.sleep(1)
    assert lab.ssh(host, "cat /etc/ssh/ssh_host_ed25519_key.pub").stdout == keys_before
    assert lab.smi(host, "-L") == uuids_before
    assert image_id(image, host) == image_id(image)
    assert lab.ssh(host, "docker inspect -f '{{.State.Running}}' dcsgdev-lab-keep").stdout.strip() == "true"
    assert lab.ssh(host, f"docker run --rm --gpus all --entrypoint nvidia-smi {image} -L").stdout.count("H200") == 8
    lab.ssh(host, "docker rm -f dcsgdev-lab-keep")


def test_wheel_index_serves_the_host_virtualenv(lab):
    host = f"{lab.name}-1"
    lab_vars = lab.inventory["all"]["vars"]
    index, gateway = lab_vars["lab_pip_index"], lab_vars["lab_gateway"]
    requirements = (REPO_ROOT / "roles/host_venv/files/requirements.txt").read_text()
    lab.ssh(host, "rm -rf /tmp/lab-venv && python3 -m venv /tmp/lab-venv")
    lab.ssh(host, f"cat > /tmp/lab-requirements.txt <<'EOF'\n{requirements}EOF")
    install = lab.ssh(
        host,
        f"/tmp/lab-venv/bin/pip install --disable-pip-version-check --no-index --find-links {index} "
        f"--trusted-host {gateway} "
        "-r /tmp/lab-requirements.txt",
        timeout=300,
    )
    assert "Successfully installed" in install.stdout
    versions = lab.ssh(
        host,
        "/tmp/lab-venv/bin/python -c 'import json, docker, huggingface_hub, requests; "
        "print(json.dumps([docker.__version__, huggingface_hub.__version__]))'",
    ).stdout
    assert json.loads(versions) == ["7.2.0", "2.4.0"]
    lab.ssh(host, "rm -rf /tmp/lab-venv /tmp/lab-requirements.txt")


def test_nvidia_apt_repo_stand_in_is_signed_and_serves_the_toolkit(lab):
    """A host's apt reads the stand-in of NVIDIA's repository with its key, and refuses it with another key."""
    host = f"{lab.name}-1"
    base = lab.inventory["all"]["vars"]["lab_nvidia_apt_url"]
    scratch = "/tmp/lab-apt"
    options = (
        f"-o Dir::Etc::SourceList={scratch}/nvidia.sources -o Dir::Etc::SourceParts=/nonexistent "
        f"-o Dir::State::Lists={scratch}/lists -o Dir::Cache={scratch}/cache"
    )

    def update(key):
        lab.ssh(
            host,
            f"rm -rf {scratch} && mkdir -p {scratch}/lists/partial {scratch}/cache/archives/partial && "
            f"curl -fsS -o {scratch}/key.asc {base}/{key} && "
            f"printf 'Types: deb\\nURIs: {base}/stable/deb/amd64\\nSuites: /\\nSigned-By: {scratch}/key.asc\\n' "
            f"> {scratch}/nvidia.sources",
        )
        return lab.ssh(host, f"apt-get update -q {options} 2>&1", check=False).stdout

    refused = update("gpgkey-other")
    assert "NO_PUBKEY" in refused
    assert "nvidia-container-toolkit" not in lab.ssh(host, f"apt-cache {options} pkgnames", check=False).stdout

    accepted = update("gpgkey")
    assert "NO_PUBKEY" not in accepted and "W:" not in accepted, accepted
    shown = lab.ssh(host, f"apt-cache {options} show nvidia-container-toolkit").stdout
    assert "Version: 1.17.8-1" in shown
    files = lab.ssh(
        host,
        f"cd {scratch} && apt-get download -q {options} nvidia-container-toolkit >/dev/null && "
        "dpkg-deb -c nvidia-container-toolkit_1.17.8-1_amd64.deb",
    ).stdout
    for program in ("nvidia-ctk", "nvidia-container-runtime-hook", "nvidia-container-runtime"):
        assert f"./usr/bin/{program}" in files
    lab.ssh(host, f"rm -rf {scratch}")


def test_hub_stand_in_answers_a_host(lab):
    if not (REPO_ROOT / "tests/lab/hub/hub.sh").exists():
        pytest.skip("no Hub stand-in in this checkout")
    endpoint = lab.inventory["all"]["vars"]["lab_hub_endpoint"]
    answer = lab.ssh(
        f"{lab.name}-1",
        f"curl -fsS --max-time 10 {endpoint}/api/models/datacrunch-lab/tiny-deepseek-r1/revision/main",
    ).stdout
    assert json.loads(answer)["id"] == "datacrunch-lab/tiny-deepseek-r1"


def listeners(port):
    """The local addresses of this machine's TCP listeners on PORT (ss)."""
    rows = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    return {row.split()[3].rpartition(":")[0].strip("[]") for row in rows.splitlines() if row.strip()}


def test_lab_services_listen_where_the_first_command_says_and_nowhere_else(lab):
    """The Hub stand-in, the wheel index and the NVIDIA apt stand-in listen on 127.0.0.1 and the lab networks'
    gateways, as the first command's closing block (tests/lab/next-steps.sh) says: not on every interface, so that
    nothing on another network of this machine (here: Docker's default bridge) reaches them."""
    lab_vars = lab.inventory["all"]["vars"]
    gateway = lab_vars["lab_gateway"]
    ports = [int(lab_vars[name].rstrip("/").rpartition(":")[2])
             for name in ("lab_hub_endpoint", "lab_pip_index", "lab_nvidia_apt_url")]  # fmt: skip
    block = subprocess.run(
        ["bash", "-c", f"source tests/lab/next-steps.sh; print_next_steps {lab.address(lab.name + '-1')} "
         f"http://x:30000 /key {lab.inventory_dir} {gateway}"],
        cwd=REPO_ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    said = block[block.index("The lab services") :].split(" only,")[0]
    assert [int(port) for port in re.findall(r":(\d+)", said)] == ports
    said_addresses = set(re.findall(r"listen on (\S+)\s+and (\S+) \(the lab network's gateway\)", said)[0])
    assert said_addresses == {"127.0.0.1", gateway}
    networks = docker("network", "ls", "-q", "--filter", "label=datacrunch-sglang-lab.lab").stdout.split()
    lab_gateways = set(docker("network", "inspect", "-f", "{{range .IPAM.Config}}{{.Gateway}}{{end}}", *networks)
                       .stdout.split())  # fmt: skip
    bridge = docker("network", "inspect", "-f", "{{range .IPAM.Config}}{{.Gateway}}{{end}}", "bridge").stdout.strip()
    for port in ports:
        addresses = listeners(port)
        assert said_addresses <= addresses, (port, addresses)
        assert addresses <= {"127.0.0.1"} | lab_gateways, (port, addresses)
        if bridge:
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection((bridge, port), timeout=3).close()


def test_down_removes_everything(tmp_path):
    name = f"dcsgdev-lab-d{uuid.uuid4().hex[:6]}"
    lab = Lab(name, tmp_path)
    lab.script("up", "1")
    assert (tmp_path / "hosts.yml").exists()
    lab_vars = lab.inventory["all"]["vars"]
    ports = [int(lab_vars[name].rstrip("/").rpartition(":")[2])
             for name in ("lab_hub_endpoint", "lab_pip_index", "lab_nvidia_apt_url")]  # fmt: skip
    assert all(lab_vars["lab_gateway"] in listeners(port) for port in ports)
    docker("exec", f"{name}-1", "docker", "run", "--rm", BASE_IMAGE, "true")
    cgroups = list(Path("/sys/fs/cgroup").glob(f"*/datacrunch-sglang-lab/{name}-1"))
    assert cgroups, "the host's engine made no cgroup for its container"
    lab.script("down")
    assert not [path for path in cgroups if path.exists()]
    assert docker("ps", "-aq", "--filter", f"label=datacrunch-sglang-lab.lab={name}").stdout == ""
    assert docker("volume", "ls", "-q", "--filter", f"name={name}").stdout == ""
    assert docker("network", "inspect", name, check=False).returncode != 0
    assert not (tmp_path / "hosts.yml").exists()
    assert not (tmp_path / "group_vars").exists()
    # The lab services stop listening on the removed network's gateway (they stop altogether with the last lab).
    assert not [port for port in ports if lab_vars["lab_gateway"] in listeners(port)]
