"""A wrong tag, or a registry login the lab registry refuses, is reported in the first progress round of the weight
download while the download goes on; the host then stops before the launch, with the weights in place and the
running server untouched. Real ansible-playbook runs against the lab host; the registry is a real one (TLS, htpasswd).
"""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from tests.support.lab_checks import (
    ANSIBLE_PLAYBOOK,
    REPO_ROOT,
    http,
    inner_inspect,
    lab_exec,
    lab_host_address,
    scenario_inventory_args,
)

HOST_NAME = "dcsg-mol-default-1"
REGISTRY = REPO_ROOT / "tests" / "lab" / "services" / "registry.sh"
POLL_INTERVAL = 2
# Bytes/s per connection from the Hub stand-in to this host: the download takes several progress rounds.
THROTTLE_BPS = 20000


def registry(*args):
    return subprocess.run([str(REGISTRY), *args], capture_output=True, text=True, check=True).stdout.strip()


def hub_endpoint():
    inventory = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "inventory" / "hosts.yml"
    for line in inventory.read_text().splitlines():
        if line.strip().startswith("lab_hub_endpoint:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError("no lab_hub_endpoint in " + str(inventory))


def hub_faults(body):
    assert http(hub_endpoint() + "/_lab/faults", payload=body)[0] == 200
    state = json.loads(http(hub_endpoint() + "/_lab/stats")[1])
    if body.get("throttle_clients") and state.get("throttle_clients") != body["throttle_clients"]:
        hub_faults({})
        pytest.fail("the Hub stand-in cannot throttle one client: restart it (tests/lab/hub/hub.sh stop)")


def timed_playbook(*args):
    """Run deploy.yml; each output line with the seconds since the start at which it appeared."""
    environment = dict(os.environ, ANSIBLE_CONFIG=str(REPO_ROOT / "ansible.cfg"), ANSIBLE_FORCE_COLOR="0",
                       PYTHONUNBUFFERED="1")
    command = [str(ANSIBLE_PLAYBOOK), str(REPO_ROOT / "deploy.yml"), *scenario_inventory_args(), *args]
    started = time.monotonic()
    lines = []
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO_ROOT,
                          env=environment) as process:
        for line in process.stdout:
            lines.append((time.monotonic() - started, line.rstrip("\n")))
    return process.returncode, lines


def first(lines, needle, after=0.0):
    return next(((at, line) for at, line in lines if at >= after and needle in line), (None, None))


@pytest.fixture
def wrong_login():
    """Root's Docker login on the host holds a wrong password for the lab registry (what the host has)."""
    saved = lab_exec(HOST_NAME, "cat", "/root/.docker/config.json")
    wrong = json.dumps({"auths": {registry("name"): {"auth": registry("auth", "not-the-password")}}})
    lab_exec(HOST_NAME, "sh", "-c", "umask 077 && printf '%s' '" + wrong + "' > /root/.docker/config.json")
    yield
    lab_exec(HOST_NAME, "sh", "-c", "umask 077 && printf '%s' '" + saved.strip() + "' > /root/.docker/config.json")


CASES = {
    "wrong tag": ("v0.5.18-cu999", None, ["manifest unknown", "has no such image or tag: check sglang_image"]),
    "wrong login": ("v0.5.23", "wrong_login", ["refused the host's credentials", "docker login"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_pull_failure_shows_in_the_first_round_while_the_download_goes_on(case, request):
    tag, fixture, messages = CASES[case]
    if fixture:
        request.getfixturevalue(fixture)
    image = registry("name") + "/sglang-standin:" + tag
    hf_home = "/root/hf-pull-" + tag
    before = inner_inspect(HOST_NAME, "sglang-server")["Id"]
    hub_faults({"throttle_bps": THROTTLE_BPS, "throttle_clients": [lab_host_address(HOST_NAME)]})
    try:
        code, lines = timed_playbook("--extra-vars", json.dumps(
            {"sglang_image": image, "sglang_hf_home": hf_home, "model_cache_poll_interval": POLL_INTERVAL}))
    finally:
        hub_faults({})
    output = "\n".join(line for _at, line in lines)
    assert code != 0, output[-3000:]
    fetch_at, _line = first(lines, "Fetch the model into the HF cache")
    report_at, report = first(lines, "FAILED: image %s is not on this host and cannot be pulled" % image)
    assert fetch_at is not None and report_at is not None, output[-4000:]
    for message in messages:
        assert message in report, report
    assert "the download goes on" in report
    # Reported in the download's first progress round.
    rounds_before = [line for at, line in lines
                     if fetch_at < at < report_at and "Wait up to model_cache_poll" in line]
    assert len(rounds_before) == 1, output[-4000:]
    assert report_at - fetch_at < POLL_INTERVAL + 15, "reported %.1f s after the download began" % (
        report_at - fetch_at)
    # The download went on after the report, to the end.
    progress_after = [line for at, line in lines if at > report_at and "tiny-deepseek-r1: running" in line]
    assert progress_after, output[-4000:]
    summary_at = next((at for at, line in lines
                       if at > report_at and re.search(r"tiny-deepseek-r1@\w+: complete", line)), None)
    assert summary_at is not None, output[-4000:]
    blobs = lab_exec(HOST_NAME, "sh", "-c", "ls %s/hub/models--datacrunch-lab--tiny-deepseek-r1/blobs | wc -l"
                     % hf_home)
    assert int(blobs) >= 8
    # Then the host stops before the launch, and the server it runs stays.
    stop_at, _stop = first(lines, "%s: image %s is not on this host" % (HOST_NAME, image), after=summary_at)
    assert stop_at is not None, output[-4000:]
    after = inner_inspect(HOST_NAME, "sglang-server")
    assert after["Id"] == before and after["State"]["Status"] == "running"
    api_key = Path(os.environ["SCENARIO_API_KEY_FILE"]).read_text().strip()
    assert http("http://%s:30000/v1/models" % lab_host_address(HOST_NAME), api_key)[0] == 200
    lab_exec(HOST_NAME, "rm", "-rf", hf_home)
