"""Secure by default on a TP16 unit of two lab hosts (simulated 8x H200 hosts; the SGLang server is the lab's
stand-in): the canary key and token are really used, and neither shows up anywhere it must not; the firewall lets in
the client network and the unit, and nothing else. Teardown runs last, at -vvv, and is checked the same way.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))
from tests.support.lab_checks import REPO_ROOT, inner_inspect, lab_exec, recap_changed

EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
CLIENT_IMAGE = "datacrunch-sglang-lab/debian:bookworm"
CONTAINER = "sglang-server"
SECRETS_DIR = "/etc/datacrunch-sglang"
SERVING, RENDEZVOUS = 30000, 50000
GATED_REPO = "datacrunch-lab/tiny-deepseek-r1-gated"
REDEPLOY_VARS = '{"sglang_server_env": {"SECURITY_SCENARIO_REDEPLOY": "1"}}'

# From a client: "open", "refused" (reached the host, nothing listens) or "timeout" (dropped on the way).
PROBE = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])).close()
    print("open")
except ConnectionRefusedError:
    print("refused")
except (socket.timeout, TimeoutError):
    print("timeout")
"""

# An HTTP request from a client: prints the status code.
REQUEST = """
import json, sys, urllib.error, urllib.request
url, key, body = sys.argv[1], sys.argv[2], sys.argv[3]
headers = {"Content-Type": "application/json"}
if key:
    headers["Authorization"] = "Bearer " + key
request = urllib.request.Request(url, data=body.encode() if body else None, headers=headers)
try:
    with urllib.request.urlopen(request, timeout=30) as response:
        print(response.status)
except urllib.error.HTTPError as error:
    print(error.code)
"""


def _lab():
    return yaml.safe_load((EPHEMERAL / "inventory" / "hosts.yml").read_text())


LAB = _lab()
LAB_NAME = LAB["all"]["vars"]["lab_name"]
HOSTS = {name: values["ansible_host"] for name, values in
         sorted(LAB["all"]["children"]["sglang_servers"]["hosts"].items())}  # fmt: skip
RANK0, RANK1 = sorted(HOSTS)
GATEWAY = LAB["all"]["vars"]["lab_gateway"]
NETWORK = ipaddress.ip_network(GATEWAY + "/24", strict=False)
INSIDE = str(NETWORK.network_address + 200)  # in the allowed client network (.192/27)
OUTSIDE = str(NETWORK.network_address + 100)


@pytest.fixture(scope="module")
def canaries():
    key = (EPHEMERAL / "canary-api-key").read_text().strip()
    token = os.environ["SECURITY_CANARY_HF_TOKEN"]
    assert key.startswith("sk-SecurityCanaryKey-") and token.startswith("hf_SecurityCanary")
    return {"api key": key, "hf token": token}


@pytest.fixture(scope="module")
def clients():
    names = {}

    def client(address):
        if address not in names:
            name = "%s-client-%s" % (LAB_NAME, address.rsplit(".", 1)[1])
            subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
            subprocess.run(["docker", "run", "-d", "--name", name, "--network", LAB_NAME, "--ip", address,
                            CLIENT_IMAGE, "sleep", "infinity"], check=True, capture_output=True)  # fmt: skip
            names[address] = name
        return names[address]

    yield client
    for name in names.values():
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)


def probe(container, host, port, timeout=2):
    return subprocess.run(["docker", "exec", container, "python3", "-c", PROBE, HOSTS[host], str(port), str(timeout)],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip


def request(container, url, key="", body=""):
    return subprocess.run(["docker", "exec", container, "python3", "-c", REQUEST, url, key, body],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip


def leaks(text, canaries):
    return [name for name, value in canaries.items() if value in text]


def playbook(name, *extra):
    """ansible-playbook as a user runs it, at -vvv; the CompletedProcess."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO_ROOT / "ansible.cfg"), ANSIBLE_FORCE_COLOR="0")
    sources = (EPHEMERAL / "inventory" / "hosts.yml", EPHEMERAL / "security.yml")
    inventories = ["--inventory=%s" % path for path in sources]
    command = [str(REPO_ROOT / ".venv/bin/ansible-playbook"), name, *inventories, *extra, "-vvv"]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=900, check=False)


# ---------------------------------------------------------------------------------------------------------------
# The canaries are really used
# ---------------------------------------------------------------------------------------------------------------


def test_the_endpoint_answers_401_without_the_canary_key_and_200_with_it(clients, canaries):
    client = clients(INSIDE)
    base = "http://%s:%d" % (HOSTS[RANK0], SERVING)
    chat = json.dumps({"model": "any", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})
    assert request(client, base + "/v1/models") == "401"
    assert request(client, base + "/v1/models", key="sk-wrong-key") == "401"
    assert request(client, base + "/v1/models", key=canaries["api key"]) == "200"
    assert request(client, base + "/v1/chat/completions", body=chat) == "401"
    assert request(client, base + "/v1/chat/completions", key=canaries["api key"], body=chat) == "200"


def test_the_gated_weights_came_with_the_canary_token(canaries):
    port = os.environ["SECURITY_HUB_PORT"]
    shard = "http://127.0.0.1:%s/%s/resolve/main/model-00001-of-00008.safetensors" % (port, GATED_REPO)
    without = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", shard],
                             capture_output=True, text=True, check=False).stdout  # fmt: skip
    assert without == "401", "the gate refuses the gated repo without a token"
    stats = json.loads(subprocess.run(["curl", "-s", "http://127.0.0.1:%s/_lab/stats" % port],
                                      capture_output=True, text=True, check=True).stdout)["stats"]  # fmt: skip
    downloaded = {client for path, entry in stats.items() if GATED_REPO in path and "safetensors" in path
                  for client, nbytes in entry["clients"].items() if nbytes > 0}  # fmt: skip
    assert set(HOSTS.values()) <= downloaded, stats


def test_secrets_reach_the_hosts_as_root_only_files_and_the_container_as_files(canaries):
    for host in HOSTS:
        secrets = "%s/%s/secrets" % (SECRETS_DIR, CONTAINER)
        listing = lab_exec(host, "sh", "-c", "stat -c '%%a %%U %%n' %s %s/*" % (secrets, secrets)).splitlines()
        assert len(listing) >= 3, listing
        for line in listing:
            mode, owner, _path = line.split(" ", 2)
            assert owner == "root" and int(mode, 8) & 0o077 == 0, "%s: not root-only" % line
        config = lab_exec(host, "cat", "%s/%s/secrets/server-config.yaml" % (SECRETS_DIR, CONTAINER))
        assert canaries["api key"] in config
        token = lab_exec(host, "cat", "%s/%s/secrets/hf_token" % (SECRETS_DIR, CONTAINER))
        assert token.strip() == canaries["hf token"]
        container = inner_inspect(host, CONTAINER)
        mounts = {mount["Destination"]: mount for mount in container["Mounts"]}
        assert mounts["/run/datacrunch-sglang"]["RW"] is False
        env = dict(item.split("=", 1) for item in container["Config"]["Env"])
        assert env["HF_TOKEN_PATH"] == "/run/datacrunch-sglang/hf_token"  # noqa: S105 - a path
        assert not {"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"} & set(env)


# ---------------------------------------------------------------------------------------------------------------
# The firewall, from outside the hosts
# ---------------------------------------------------------------------------------------------------------------


def test_the_serving_port_refuses_clients_outside_the_allowed_network(clients):
    assert probe(clients(INSIDE), RANK0, SERVING) == "open"
    assert probe(clients(OUTSIDE), RANK0, SERVING) == "timeout"
    # The controller, at the lab gateway, is outside the allowed network too; SSH stays open for it.
    assert probe_from_controller(RANK0, SERVING) == "timeout"
    assert probe_from_controller(RANK0, 22) == "open"


def probe_from_controller(host, port):
    return subprocess.run([sys.executable, "-c", PROBE, HOSTS[host], str(port), "2"], capture_output=True, text=True,
                          check=True).stdout.strip()  # fmt: skip


def test_the_rendezvous_port_answers_the_other_member_of_the_unit_only(clients):
    peer = lab_exec(RANK1, "python3", "-c", PROBE, HOSTS[RANK0], str(RENDEZVOUS), "2").strip()
    assert peer in ("open", "refused"), "rank 1 reaches rank 0's rendezvous port"
    assert probe(clients(INSIDE), RANK0, RENDEZVOUS) == "timeout"
    assert probe(clients(OUTSIDE), RANK0, RENDEZVOUS) == "timeout"
    assert probe_from_controller(RANK0, RENDEZVOUS) == "timeout"


def test_the_firewall_is_as_the_first_deploy_left_it():
    for host in HOSTS:
        kept = (EPHEMERAL / "firewall" / ("%s.nft" % host)).read_text()
        assert lab_exec(host, "nft", "-s", "list", "table", "inet", "datacrunch_sglang") == kept
        assert "elements = { %s }" % HOSTS[RANK1 if host == RANK0 else RANK0] in kept


# ---------------------------------------------------------------------------------------------------------------
# Nowhere else
# ---------------------------------------------------------------------------------------------------------------


def test_no_canary_in_what_ansible_printed(canaries):
    log = (EPHEMERAL / "ansible.log").read_text(errors="replace")
    assert "<dcsg-" in log or "ESTABLISH SSH CONNECTION" in log, "the log holds -vvv output"
    assert leaks(log, canaries) == []
    runs = sorted((EPHEMERAL / "runs").glob("*.log"))
    assert [path.stem for path in runs] == ["benchmark", "failed-redeploy", "logs", "plan", "redeploy", "status"]
    for path in runs:
        text = path.read_text(errors="replace")
        assert text.startswith("rc=0\n") == (path.stem != "failed-redeploy"), path.name
        assert leaks(text, canaries) == [], path.name
    failed = " ".join((EPHEMERAL / "runs" / "failed-redeploy.log").read_text().split())
    assert "RuntimeError: Initialization failed" in failed, "the error carries the server's last log lines"
    assert "Rollback: restored the spec that served before" in failed
    assert "--- before" in (EPHEMERAL / "runs" / "redeploy.log").read_text(), "runs show their --diff"


def test_the_redeploy_really_restarted_the_unit():
    text = (EPHEMERAL / "runs" / "redeploy.log").read_text()
    assert recap_changed(text)[RANK0] > 0
    for host in HOSTS:
        env = inner_inspect(host, CONTAINER)["Config"]["Env"]
        assert "SECURITY_SCENARIO_REDEPLOY=1" in env


def test_no_canary_in_plans_reports_and_logs_on_the_controller(canaries):
    files = [path for directory in ("plan", "reports") for path in (EPHEMERAL / directory).rglob("*") if path.is_file()]
    names = {path.relative_to(EPHEMERAL).parts[0] + "/" + path.suffix for path in files}
    assert {"plan/.json", "reports/.json", "reports/.md", "reports/.log"} <= names, names
    for path in files:
        assert leaks(path.read_bytes().decode(errors="replace"), canaries) == [], path


def test_no_canary_in_docker_inspect(canaries):
    for host in HOSTS:
        ids = lab_exec(host, "docker", "ps", "-aq").split()
        assert ids, "containers on %s" % host
        inspected = json.loads(lab_exec(host, "docker", "inspect", *ids))
        for container in inspected:
            shown = json.dumps({"Env": container["Config"]["Env"], "Cmd": container["Config"]["Cmd"],
                                "Entrypoint": container["Config"]["Entrypoint"], "Args": container["Args"],
                                "Path": container["Path"], "Labels": container["Config"]["Labels"]})  # fmt: skip
            assert leaks(shown, canaries) == [], container["Name"]
        assert leaks(json.dumps(inspected), canaries) == []


def test_no_canary_in_any_command_line_on_the_hosts(canaries):
    for host in HOSTS:
        out = lab_exec(host, "sh", "-c", "for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' <$f; echo; done 2>/dev/null")
        assert "sglang.launch_server" in out, "the server's processes are visible"
        assert leaks(out, canaries) == []


def test_no_canary_in_files_a_non_root_user_can_read(canaries):
    patterns = " ".join("-e %s" % value for value in canaries.values())
    for host in HOSTS:
        # grep as nobody: only what a non-root user can reach and read, the containers' file systems included.
        found = lab_exec(host, "su", "nobody", "-s", "/bin/sh", "-c",
                         "grep -rlsF %s / --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev; true" % patterns,
                         timeout=600)  # fmt: skip
        assert found.split() == [], found
        # ... and inside the server container, as a non-root user there.
        found = lab_exec(host, "docker", "exec", "-u", "65534", CONTAINER, "sh", "-c",
                         "grep -rlsF %s / --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev; true" % patterns,
                         timeout=600)  # fmt: skip
        assert found.split() == [], found


# ---------------------------------------------------------------------------------------------------------------
# TLS in front of the endpoint (role sglang_tls), after the checks of the plain endpoint
# ---------------------------------------------------------------------------------------------------------------

TLS_PORT = 8443
TLS_VARS = json.dumps({
    "sglang_tls_enabled": True,
    "sglang_tls_image": "datacrunch-sglang-lab/tls-proxy:bookworm",
    "sglang_tls_pull": "never",
    "sglang_server_env": {"SECURITY_SCENARIO_REDEPLOY": "1"},
})

# HTTPS from a client that trusts only the host's self-signed certificate: prints the status code.
TLS_REQUEST = """
import ssl, sys, urllib.error, urllib.request
context = ssl.create_default_context(cafile=sys.argv[3])
headers = {"Authorization": "Bearer " + sys.argv[2]} if sys.argv[2] else {}
try:
    with urllib.request.urlopen(urllib.request.Request(sys.argv[1], headers=headers), context=context, timeout=30) as r:
        print(r.status)
except urllib.error.HTTPError as error:
    print(error.code)
"""


def test_tls_serves_the_endpoint_and_closes_the_plain_port(clients, canaries, tmp_path):
    result = playbook("deploy.yml", "--extra-vars", TLS_VARS)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert leaks(output, canaries) == []
    certificate = lab_exec(RANK0, "sh", "-c", "cat /etc/datacrunch-sglang-tls/self-signed-*.crt")
    (tmp_path / "rank0.crt").write_text(certificate)
    client = clients(INSIDE)
    subprocess.run(["docker", "cp", str(tmp_path / "rank0.crt"), client + ":/root/rank0.crt"], check=True)
    url = "https://%s:%d/v1/models" % (HOSTS[RANK0], TLS_PORT)

    def status(key):
        return subprocess.run(["docker", "exec", client, "python3", "-c", TLS_REQUEST, url, key, "/root/rank0.crt"],
                              capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip

    assert status("") == "401"
    assert status(canaries["api key"]) == "200"
    assert probe(client, RANK0, SERVING) == "timeout", "the plain port is the host's own now"
    assert probe(clients(OUTSIDE), RANK0, TLS_PORT) == "timeout"
    keys = lab_exec(RANK0, "sh", "-c", "stat -c '%a %U %n' /etc/datacrunch-sglang-tls /etc/datacrunch-sglang-tls/*.key")
    assert all(line.split()[0] in ("700", "600") and line.split()[1] == "root" for line in keys.splitlines()), keys
    proxy = inner_inspect(RANK0, "sglang-tls-proxy")
    assert leaks(json.dumps(proxy), canaries) == []
    assert inner_inspect(RANK1, "sglang-tls-proxy") is None, "only rank 0 serves HTTP"


# ---------------------------------------------------------------------------------------------------------------
# Teardown, last
# ---------------------------------------------------------------------------------------------------------------


def test_teardown_at_vvv_leaks_nothing_and_leaves_no_secret(canaries):
    result = playbook("playbooks/teardown.yml", "--extra-vars", REDEPLOY_VARS)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert leaks(output, canaries) == []
    marker = uuid.uuid4().hex
    for host in HOSTS:
        assert inner_inspect(host, CONTAINER) is None
        left = lab_exec(host, "sh", "-c", "grep -rlsF -e %s -e %s -e %s %s; true" % (
            canaries["api key"], canaries["hf token"], marker, SECRETS_DIR))
        assert left.split() == [], "secret files left after teardown: %s" % left
    assert re.search(r"ok=\d+\s+changed=[1-9]", result.stdout)
