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
from datetime import datetime
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))
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
POLL_INTERVAL = 1
# Bytes/s per connection from the Hub stand-in to this host: the download takes several progress rounds.
THROTTLE_BPS = 120000


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
    """Run deploy.yml; each output line with the time (epoch seconds) at which it appeared."""
    # One line per result (json), so that a long message is never wrapped across the lines timed here; the default
    # output, whose task headers (shown as each task starts) time the steps.
    environment = dict(os.environ, ANSIBLE_CONFIG=str(REPO_ROOT / "ansible.cfg"), ANSIBLE_FORCE_COLOR="0",
                       ANSIBLE_CALLBACK_RESULT_FORMAT="json", ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default",
                       PYTHONUNBUFFERED="1")
    command = [str(ANSIBLE_PLAYBOOK), str(REPO_ROOT / "deploy.yml"), *scenario_inventory_args(), *args]
    lines = []
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO_ROOT,
                          env=environment) as process:
        for line in process.stdout:
            lines.append((time.time(), line.rstrip("\n")))
    return process.returncode, lines


def registry_answers(address):
    """Times (epoch seconds) at which the lab registry answered this host: a completed response, or a refused login
    (docker-registry logs that one as "error authorizing context", with no "response completed" line)."""
    times = []
    for line in Path(registry("log")).read_text().splitlines():
        answered = 'msg="response completed' in line or 'msg="error authorizing context' in line
        if answered and f'remoteaddr="{address}:' in line:
            stamp = re.search(r'time="([^"]+)"', line).group(1)
            times.append(datetime.fromisoformat(stamp[:26].rstrip("Z") + "+00:00").timestamp())
    return times


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
    lab_exec(HOST_NAME, "rm", "-rf", hf_home)
    hub_faults({"throttle_bps": THROTTLE_BPS, "throttle_clients": [lab_host_address(HOST_NAME)]})
    try:
        code, lines = timed_playbook("--extra-vars", json.dumps(
            {"sglang_image": image, "sglang_hf_home": hf_home, "model_cache_poll_interval": POLL_INTERVAL}))
    finally:
        hub_faults({})
    try:
        check_the_run(code, lines, image, hf_home, messages, before)
    finally:
        lab_exec(HOST_NAME, "rm", "-rf", hf_home)


def check_the_run(code, lines, image, hf_home, messages, before):
    output = "\n".join(line for _at, line in lines)
    assert code != 0, output[-3000:]
    fetch_at, _line = first(lines, "Fetch the model into the HF cache")
    report_at, report = first(lines, "FAILED: image %s is not on this host and cannot be pulled" % image)
    assert fetch_at is not None and report_at is not None, output[-4000:]
    for message in messages:
        assert message in report, report
    assert "the download goes on" in report
    # Reported in the first progress round after the registry refused: at most one round began in between.
    refused_at = max(at for at in registry_answers(lab_host_address(HOST_NAME)) if at < report_at)
    assert fetch_at - 60 < refused_at, "the registry's last answer to the host predates this run"
    rounds_between = [line for at, line in lines
                      if refused_at < at < report_at and "Wait up to model_cache_poll" in line]
    assert len(rounds_between) <= 1, output[-4000:]
    # The download went on after the report, to the end: its last file was written after the report.
    summary_at, _line = first(lines, "tiny-deepseek-r1: done, 100.0 %", after=report_at)
    assert summary_at is not None, output[-4000:]
    blob_times = [float(value) for value in lab_exec(HOST_NAME, "sh", "-c", "stat -c %%.9Y %s/hub/models--"
                                                     "datacrunch-lab--tiny-deepseek-r1/blobs/*" % hf_home).split()]
    assert len(blob_times) >= 8 and max(blob_times) > report_at, (
        "the last weight file was written %.1f s after the report" % (max(blob_times) - report_at))
    # Then the host stops before the launch, and the server it runs stays.
    stop_at, _stop = first(lines, "%s: image %s is not on this host" % (HOST_NAME, image), after=summary_at)
    assert stop_at is not None, output[-4000:]
    after = inner_inspect(HOST_NAME, "sglang-server")
    assert after["Id"] == before and after["State"]["Status"] == "running"
    api_key = Path(os.environ["SCENARIO_API_KEY_FILE"]).read_text().strip()
    assert http("http://%s:30000/v1/models" % lab_host_address(HOST_NAME), api_key)[0] == 200
