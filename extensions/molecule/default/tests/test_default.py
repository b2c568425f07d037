"""Single-node deploy on a lab host (a simulated 8x H200 host running the SGLang stand-in): the world after deploy.

The deploy and its second, unchanged run happened in molecule's converge and idempotence steps. These checks look at
the lab host itself: the container and its flags, where its secrets are, what the endpoint answers, what a profile
change does, and that bad inputs fail with a clear message while the running server stays up.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import testinfra

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))
from tests.support.lab_checks import (
    http,
    inner_inspect,
    lab_host_address,
    recap_changed,
    run_playbook,
)

HOST_NAME = "dcsg-mol-default-1"
CONTAINER = "sglang-server"
HOST = testinfra.get_host("docker://" + HOST_NAME)


@pytest.fixture(scope="module")
def api_key():
    key = Path(os.environ["SCENARIO_API_KEY_FILE"]).read_text().strip()
    assert len(key) >= 32
    return key


@pytest.fixture(scope="module")
def endpoint():
    return "http://%s:30000" % lab_host_address(HOST_NAME)


def task_blocks(stdout):
    """[(task name, [non-blank lines under its header])], in the order shown."""
    blocks = []
    for line in stdout.splitlines():
        header = re.match(r"TASK \[(.*)\] \*+$", line)
        if header:
            blocks.append((header.group(1), []))
        elif line.startswith(("PLAY ", "PLAY RECAP")):
            blocks.append((line, ["(play)"]))
        elif blocks and line.strip():
            blocks[-1][1].append(line)
    return [block for block in blocks if block[1] != ["(play)"]]


def server():
    container = inner_inspect(HOST_NAME, CONTAINER)
    assert container is not None, "the server container is gone"
    return container


def test_container_runs_the_profile_with_the_right_flags():
    container = server()
    assert container["State"]["Status"] == "running"
    args = container["Args"]
    assert container["Path"] == "python3" and args[:2] == ["-m", "sglang.launch_server"]
    assert args[args.index("--model-path") + 1] == "datacrunch-lab/tiny-deepseek-r1"
    assert args[args.index("--tp-size") + 1] == "8"
    assert "--enable-dp-attention" in args and args[args.index("--dp-size") + 1] == "8"
    assert "--trust-remote-code" in args and "--enable-metrics" in args
    assert args[args.index("--config") + 1] == "/run/datacrunch-sglang/server-config.yaml"
    # Prefetched: the server runs offline on the pinned commit.
    revision = args[args.index("--revision") + 1]
    assert len(revision) == 40
    env = dict(item.split("=", 1) for item in container["Config"]["Env"])
    assert env["HF_HUB_OFFLINE"] == "1"
    assert env["HF_HOME"] == "/root/.cache/huggingface"
    host_config = container["HostConfig"]
    assert host_config["NetworkMode"] == "host"
    assert host_config["IpcMode"] == "host"
    assert host_config["ShmSize"] == 32 * 1024**3
    assert host_config["RestartPolicy"]["Name"] == "unless-stopped"
    assert host_config["LogConfig"] == {"Type": "json-file", "Config": {"max-file": "5", "max-size": "100m"}}
    (request,) = host_config["DeviceRequests"]
    assert request["Count"] == -1 and request["Capabilities"] == [["gpu"]] and not request["DeviceIDs"]
    limits = {item["Name"]: item for item in host_config["Ulimits"]}
    assert limits["stack"]["Soft"] == 67108864


def test_mounts_weights_caches_and_secrets():
    mounts = {mount["Destination"]: mount for mount in server()["Mounts"]}
    assert mounts["/root/.cache/huggingface"]["Source"] == "/root/.cache/huggingface"
    assert mounts["/root/.cache/huggingface"]["RW"] is True
    cache = mounts["/var/cache/sglang"]["Source"]
    assert cache.startswith("/var/cache/datacrunch-sglang/v0.5.18-nvidia-h200-tp8-dpa8-nn1-")
    assert mounts["/run/datacrunch-sglang"]["Source"] == "/etc/datacrunch-sglang/sglang-server/secrets"
    assert mounts["/run/datacrunch-sglang"]["RW"] is False


def test_labels_mark_the_container_as_ours():
    labels = server()["Config"]["Labels"]
    assert labels["datacrunch.sglang.profile"] == "lab-tiny"
    assert labels["datacrunch.sglang.cluster"] == ""
    assert labels["datacrunch.sglang.rank"] == "0"
    assert labels["datacrunch.sglang.collection-version"] == "0.1.0"
    assert len(labels["datacrunch.sglang.spec-hash"]) == 64
    spec = json.loads(HOST.file("/etc/datacrunch-sglang/sglang-server/spec.json").content_string)
    assert spec["spec_hash"] == labels["datacrunch.sglang.spec-hash"]


def test_the_container_sees_the_hosts_gpus():
    listing = HOST.check_output("docker exec %s nvidia-smi -L" % CONTAINER)
    assert listing.count("NVIDIA H200") == 8


def test_secrets_are_only_in_root_only_files(api_key):
    container = server()
    assert api_key not in json.dumps(container)
    processes = HOST.check_output("ps -eo args")
    assert api_key not in processes
    secrets = HOST.file("/etc/datacrunch-sglang/sglang-server/secrets")
    assert secrets.is_directory and secrets.user == "root" and secrets.mode == 0o700
    config = HOST.file("/etc/datacrunch-sglang/sglang-server/secrets/server-config.yaml")
    assert config.user == "root" and config.mode == 0o600
    assert api_key in config.content_string
    readable = HOST.check_output(
        "find / -xdev \\( -path /proc -o -path /sys \\) -prune -o -type f -perm -o=r -print0 2>/dev/null "
        "| xargs -0 grep -l -F -- %s 2>/dev/null || true" % api_key
    )
    assert readable.strip() == ""


def test_endpoint_requires_the_key_and_serves_a_chat_completion(api_key, endpoint):
    status, _body = http(endpoint + "/v1/models")
    assert status == 401
    status, body = http(endpoint + "/v1/models", api_key)
    assert status == 200 and json.loads(body)["data"][0]["id"] == "datacrunch-lab/tiny-deepseek-r1"
    status, body = http(
        endpoint + "/v1/chat/completions",
        api_key,
        {"model": "datacrunch-lab/tiny-deepseek-r1", "messages": [{"role": "user", "content": "Hello"}],
         "max_tokens": 8},
    )
    assert status == 200
    reply = json.loads(body)
    assert reply["choices"][0]["message"]["content"]
    assert reply["usage"]["completion_tokens"] > 0
    status, _body = http(endpoint + "/health_generate")
    assert status == 200


BAD_INPUTS = [
    ({"sglang_profile": "deepseek-r2"}, "sglang_profile='deepseek-r2' is not a known profile"),
    ({"sglang_image": "lmsysorg/SGLang:v0.5.18"}, "is not a well-formed image reference"),
    ({"sglang_image": "localhost/sglang-standin:latest"}, "does not name an SGLang version"),
    ({"sglang_image": "localhost/sglang-standin:v0.5.9"}, "which this collection has no flag data for"),
    # Every flag of sglang_server_args that SGLang 0.5.18 would refuse, all reported by one run.
    ({"sglang_server_args": {"tp": 4, "enable-teleport": True, "kv-cache-dtype": "fp3", "mem-fraction-static": True}},
     ["4 SGLang flags refused",
      "conflicts with a flag the launch renders itself",
      "SGLang 0.5.18 has no flag --enable-teleport",
      "is not one of SGLang 0.5.18's choices",
      "takes a value in SGLang 0.5.18"]),
    ({"sglang_server_env": {"HF_TOKEN": "hf_x"}}, "secrets never go into the container environment"),
    ({"sglang_hf_home": "cache/hf"}, "sglang_hf_home='cache/hf' must be an absolute path"),
    ({"sglang_profiles_extra": {"lab-tiny": {"extends": "deepseek-r1", "tp": 16}}}, "tp=16 needs 16 GPUs"),
    # A branch the unit has no commit recorded for, and no Hub: refused on the controller with the fix.
    ({"sglang_model_revision": "v1", "sglang_hf_endpoint": "http://127.0.0.1:9"},
     ["cannot reach the Hub at http://127.0.0.1:9 to resolve it to one commit",
      "pin the commit instead: set sglang_model_revision to the 40-character commit id"]),
    # Values a type cannot catch, refused on the controller before any host changes (they used to remove the
    # running server, or crash-loop its replacement), all reported by one run:
    ({"sglang_server_shm_size": "abc", "sglang_server_bind_host": "999.1.1.1", "sglang_tls_enabled": "ture",
      "sglang_api_key": " ", "sglang_port": 70000, "sglang_server_pull": "sometimes"},
     # sglang_port also sets the firewall's client and unit ports: they are refused with it.
     ["8 input(s) refused before anything changed on a host",
      "sglang_server_shm_size='abc' is not a size Docker understands",
      "sglang_server_bind_host='999.1.1.1' is not an IP address",
      "sglang_tls_enabled='ture' is not a boolean; set true or false",
      "sglang_api_key is blank",
      "sglang_port=70000 must be a TCP port number",
      "sglang_firewall_client_ports: 70000 is not a TCP port",
      "sglang_server_pull='sometimes' is refused by role",
      "must be one of: missing, always, never"]),
    # The serving port on the SSH port, which the firewall always keeps open: refused on the controller.
    ({"sglang_port": 22}, "sglang_firewall_ssh_ports lists 22, which is also a serving port"),
    # Valid to the controller, refused by the host's preflight before the running server is stopped:
    ({"sglang_port": 22, "sglang_firewall_enabled": False}, "port 22 is taken by pid"),
    ({"sglang_image": "localhost/not-loaded:v0.5.18"}, "is not on this host and cannot be pulled"),
    # A well-formed address that is not the host's: refused on the host before the running server is replaced.
    ({"sglang_server_bind_host": "10.99.99.99"}, "sglang_server_bind_host=10.99.99.99 is not an address of this host"),
]


@pytest.mark.parametrize(("extra_vars", "message"), BAD_INPUTS, ids=[str(sorted(v)) for v, _message in BAD_INPUTS])
def test_bad_input_fails_clearly_and_the_server_stays_up(extra_vars, message, api_key, endpoint):
    before = server()["Id"]
    result = run_playbook("deploy.yml", "--extra-vars", json.dumps(extra_vars))
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-2000:]
    for expected in message if isinstance(message, list) else [message]:
        assert expected in " ".join(output.split()), output[-3000:]
    assert recap_changed(result.stdout).get(HOST_NAME) == 0, "the failed play changed the host:\n" + output[-3000:]
    if extra_vars.get("sglang_port") == 22 and extra_vars.get("sglang_firewall_enabled") is False:
        assert "set sglang_port to a port nothing on the host listens on" in " ".join(output.split())
        assert "kill" not in output, "the fix suggests killing a process the collection does not own"
    after = server()
    assert after["Id"] == before
    assert after["State"]["Status"] == "running"
    assert http(endpoint + "/v1/models", api_key)[0] == 200


def test_check_mode_on_the_unchanged_server_changes_nothing_and_succeeds():
    before = server()["Id"]
    result = run_playbook("deploy.yml", "--check", "--diff")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert recap_changed(result.stdout).get(HOST_NAME) == 0, output[-3000:]
    assert server()["Id"] == before


def test_the_plan_is_what_deploy_launched(tmp_path):
    """plan.yml contacts no host, yet its spec hash is the running container's, and its docker run pastes into a
    shell as the container's own command."""
    container = server()
    result = run_playbook("playbooks/plan.yml", "-e", "plan_dir=%s" % tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    spec = json.loads((tmp_path / (HOST_NAME + ".json")).read_text())
    assert spec["spec_hash"] == container["Config"]["Labels"]["datacrunch.sglang.spec-hash"], output[-3000:]
    assert "spec hash %s" % spec["spec_hash"] in output
    assert "host facts from the preflight report" in output
    assert "placeholders" not in output
    start = output.index("docker run --detach")
    lines = output[start:].splitlines()
    end = next(at for at, line in enumerate(lines) if not line.endswith(" \\"))
    pasted = "\n".join(lines[:end + 1])
    script = "docker() { shift; printf '%s\\0' \"$@\"; }\n" + pasted + "\n"
    words = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout.split("\0")[:-1]
    image_at = words.index(container["Config"]["Image"])
    assert words[image_at + 1:] == container["Config"]["Cmd"]


def test_the_server_role_alone_keeps_the_server_when_the_weights_are_missing(api_key, endpoint):
    before = server()["Id"]
    result = run_playbook("extensions/molecule/default/server_role_alone.yml", "--extra-vars",
                          json.dumps({"sglang_hf_home": "/srv/no-weights-here"}))
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0, output[-2000:]
    assert "the running server is kept: the new spec loads datacrunch-lab/tiny-deepseek-r1" in output, output[-3000:]
    assert "datacrunch.sglang.model_cache role" in output
    assert server()["Id"] == before
    assert http(endpoint + "/v1/models", api_key)[0] == 200


def test_a_load_longer_than_the_timeout_fails_clearly_and_the_rollback_waits_for_the_old_spec(api_key, endpoint):
    """The new spec loads for 30 s against a 10 s limit: a clear failure naming the start-up step with the last log
    lines, then the spec that served before comes back and is waited for, though it too needs more than a round."""
    before = server()
    result = run_playbook("deploy.yml", "--extra-vars", json.dumps(
        {"sglang_server_ready_timeout": 10, "sglang_server_env": {"SGLANG_STANDIN_LOAD_SECONDS": "30"}}))
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0, output[-2000:]
    assert "is running but not ready" in output and "the limit is sglang_server_ready_timeout=10" in output, (
        output[-3000:])
    assert "start-up step: loading weights" in output
    assert "Load weight begin." in output, "the failure carries no log lines"
    assert "Rollback: restored the spec that served before" in output, output[-3000:]
    after = server()
    assert after["Id"] != before["Id"]
    assert after["Config"]["Labels"]["datacrunch.sglang.spec-hash"] == (
        before["Config"]["Labels"]["datacrunch.sglang.spec-hash"])
    assert http(endpoint + "/v1/models", api_key)[0] == 200


def test_a_profile_change_recreates_the_container_and_serves(api_key, endpoint):
    before = server()["Id"]
    latency = {"lab-tiny-latency": {"extends": "lab-tiny", "dp_attention": 0}}
    result = run_playbook("deploy.yml", "--extra-vars",
                          json.dumps({"sglang_profile": "lab-tiny-latency", "sglang_profiles_extra": latency}))
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    # A real load takes many readiness rounds; the lab's compressed one crosses at least three, each showing
    # the start-up step.
    progress = re.findall(r"not ready yet \(round (\d+), [^)]*\): (loading weights|weights loaded|compiling "
                          r"DeepGEMM kernels|capturing CUDA graphs|CUDA graphs captured|warming up)",
                          " ".join(result.stdout.split()))
    assert len(progress) >= 2 and int(progress[-1][0]) >= 2, result.stdout[-3000:]
    # What a person reads (plugins/callback/steps.py): no skipped task, no include or argument-check line, and each
    # task header stands above a line shown under it (a bare "ok" only under a task that warned); about 117 headers
    # before, far fewer now.
    assert not re.search(r"^(skipping|included): |Validating arguments", result.stdout, re.M), result.stdout[-3000:]
    assert "DEPRECATION WARNING" not in result.stdout + result.stderr, (result.stdout + result.stderr)[-3000:]
    blocks = task_blocks(result.stdout)
    assert all(lines for _name, lines in blocks) and len(blocks) <= 60, "%d task headers:\n%s" % (
        len(blocks), "\n".join(name for name, _lines in blocks))
    changed = server()
    assert changed["Id"] != before
    assert "--enable-dp-attention" not in changed["Args"]
    assert changed["Config"]["Labels"]["datacrunch.sglang.profile"] == "lab-tiny-latency"
    assert http(endpoint + "/v1/models", api_key)[0] == 200
    # Back to the scenario's profile: recreated again, and serving.
    result = run_playbook("deploy.yml")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    restored = server()
    assert restored["Id"] != changed["Id"]
    assert "--enable-dp-attention" in restored["Args"]
    assert http(endpoint + "/v1/models", api_key)[0] == 200
