"""Fleet operations on three lab hosts (simulated 8x H200 hosts running the SGLang stand-in), each a single-node unit.

Order matters: the rollouts first, then status and logs, a host restart, and teardown last.
"""

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))
from tests.support.lab_checks import (
    http,
    inner_inspect,
    lab_exec,
    lab_host_address,
    run_playbook,
)

HOSTS = ["dcsg-mol-redeploy-1", "dcsg-mol-redeploy-2", "dcsg-mol-redeploy-3"]
CONTAINER = "sglang-server"
NEW_IMAGE = "localhost/sglang-standin:v0.5.23"


@pytest.fixture(scope="module")
def api_key():
    return Path(os.environ["SCENARIO_API_KEY_FILE"]).read_text().strip()


def server(host):
    return inner_inspect(host, CONTAINER)


def endpoint(host):
    return "http://%s:30000" % lab_host_address(host)


class Prober(threading.Thread):
    """Asks every unit /health_generate every 0.2 s from outside the hosts and records when each was up."""

    def __init__(self, hosts):
        super().__init__(daemon=True)
        self.urls = {host: endpoint(host) + "/health_generate" for host in hosts}
        self.samples = []  # (time, {host: up})
        self.stopping = threading.Event()

    def run(self):
        while not self.stopping.is_set():
            now = time.monotonic()
            state = {}
            for host, url in self.urls.items():
                try:
                    state[host] = http(url, timeout=2)[0] == 200
                except OSError:
                    state[host] = False
            self.samples.append((now, state))
            time.sleep(0.2)

    def stop(self):
        self.stopping.set()
        self.join()

    def down_intervals(self, host):
        """[(start, end)] of the stretches during which host did not answer."""
        intervals, start = [], None
        for moment, state in self.samples:
            if not state[host] and start is None:
                start = moment
            elif state[host] and start is not None:
                intervals.append((start, moment))
                start = None
        if start is not None:
            intervals.append((start, self.samples[-1][0]))
        return intervals


def test_a_good_change_rolls_through_every_unit_one_at_a_time(api_key):
    before = {host: server(host)["Id"] for host in HOSTS}
    prober = Prober(HOSTS)
    prober.start()
    time.sleep(1)
    result = run_playbook("playbooks/redeploy.yml", "--extra-vars", "sglang_image=" + NEW_IMAGE)
    time.sleep(1)
    prober.stop()
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert len(prober.samples) > 20
    downs = {host: prober.down_intervals(host) for host in HOSTS}
    for host in HOSTS:
        assert len(downs[host]) == 1, "%s was down %d times: %s" % (host, len(downs[host]), downs[host])
        container = server(host)
        assert container["Id"] != before[host]
        assert container["Config"]["Image"] == NEW_IMAGE
        assert http(endpoint(host) + "/v1/models", api_key)[0] == 200
    # Never two units down at the same moment, and in rollout order.
    for moment, state in prober.samples:
        assert sum(not up for up in state.values()) <= 1, "two units down at once at %.1f: %s" % (moment, state)
    starts = [downs[host][0][0] for host in HOSTS]
    assert starts == sorted(starts)
    assert "3 unit(s) in 3 batch(es) of up to 1 unit(s)" in result.stdout
    # The rollout ends with one line per unit: what it runs now.
    summary = result.stdout[result.stdout.index("Rollout done: 3 unit(s) in 3 batch(es), every one serving"):]
    for host in HOSTS:
        spec_hash = server(host)["Config"]["Labels"]["datacrunch.sglang.spec-hash"]
        assert "  %s: restarted on the new spec; image %s, profile %s, spec %s" % (
            host, NEW_IMAGE, server(host)["Config"]["Labels"]["datacrunch.sglang.profile"], spec_hash[:12]) in summary


def test_a_bad_change_stops_at_the_first_unit_and_restores_it(api_key):
    before = {host: server(host) for host in HOSTS}
    result = run_playbook("playbooks/redeploy.yml", "--extra-vars",
                          json.dumps({"sglang_server_env": {"SGLANG_STANDIN_FAULT": "start-fail"}}))
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0
    assert "RuntimeError: Initialization failed" in output
    # SGLang exits 0 after a crash (PID 1 cannot kill itself): still reported as a crash, root cause first
    assert "container sglang-server crashed (" in output, output[-3000:]
    assert re.search(r"first error of rank (DP0 )?TP0:", output), output[-3000:]
    assert "Rollback: restored the spec that served before" in output
    first = server(HOSTS[0])
    assert first["Id"] != before[HOSTS[0]]["Id"]
    assert first["Config"]["Image"] == NEW_IMAGE
    assert not [item for item in first["Config"]["Env"] if item.startswith("SGLANG_STANDIN_FAULT")]
    assert first["Config"]["Labels"]["datacrunch.sglang.spec-hash"] == \
        before[HOSTS[0]]["Config"]["Labels"]["datacrunch.sglang.spec-hash"]
    assert http(endpoint(HOSTS[0]) + "/v1/models", api_key)[0] == 200
    for host in HOSTS[1:]:
        assert server(host)["Id"] == before[host]["Id"], "%s was touched after the failed unit" % host


def test_a_load_that_hangs_is_killed_at_once_and_the_kill_is_reported(api_key):
    """SGLang ignores SIGTERM while loading: the rollback's stop kills after a short wait, and says so."""
    before = server(HOSTS[0])
    result = run_playbook("playbooks/redeploy.yml", "--extra-vars",
                          json.dumps({"sglang_server_env": {"SGLANG_STANDIN_FAULT": "hang:weights"},
                                      "sglang_server_ready_timeout": 15}))
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0
    assert "is running but not ready" in output and "start-up step:" in output, output[-3000:]
    assert "did not stop on SIGTERM within 5 s (SGLang ignores SIGTERM while it loads and on ranks >= 1): killed" \
        in output, output[-3000:]
    assert "Rollback: restored the spec that served before" in output
    assert server(HOSTS[0])["Config"]["Labels"]["datacrunch.sglang.spec-hash"] == \
        before["Config"]["Labels"]["datacrunch.sglang.spec-hash"]
    assert http(endpoint(HOSTS[0]) + "/v1/models", api_key)[0] == 200


def test_status_shows_the_fleet():
    result = run_playbook("playbooks/status.yml")
    assert result.returncode == 0, result.stdout[-2000:]
    rows = [line for line in result.stdout.splitlines() if re.search(r"dcsg-mol-redeploy-\d\s+single", line)]
    assert len(rows) == 3
    for row in rows:
        assert " ok " in row and NEW_IMAGE in row and "running" in row and " yes " in row
    # A stopped server shows as down.
    lab_exec(HOSTS[2], "docker", "stop", CONTAINER)
    try:
        result = run_playbook("playbooks/status.yml")
        row = next(line for line in result.stdout.splitlines() if re.search(r"%s\s+single" % HOSTS[2], line))
        assert " down " in row and "exited" in row
    finally:
        lab_exec(HOSTS[2], "docker", "start", CONTAINER)


def test_logs_land_on_the_controller_without_secrets(tmp_path, api_key):
    result = run_playbook("playbooks/logs.yml", "--extra-vars", "sglang_server_logs_dir=%s" % tmp_path,
                          "--extra-vars", "sglang_server_logs_lines=15")
    assert result.returncode == 0, result.stdout[-2000:]
    for host in HOSTS:
        log = tmp_path / ("%s-sglang-server.log" % host)
        assert log.stat().st_mode & 0o777 == 0o600
        # Docker's lines end in \n; progress bars redraw with \r inside one line (splitlines would split them).
        lines = log.read_bytes().rstrip(b"\n").split(b"\n")
        assert len(lines) == 15
        assert api_key not in log.read_text()
    everything = run_playbook("playbooks/logs.yml", "--extra-vars", "sglang_server_logs_dir=%s" % tmp_path,
                              "--extra-vars", "sglang_server_logs_lines=-1", "--limit", HOSTS[0])
    assert everything.returncode == 0
    assert "The server is fired up and ready to roll!" in (tmp_path / ("%s-sglang-server.log" % HOSTS[0])).read_text()


def test_a_restarted_host_brings_its_server_back(api_key):
    subprocess.run(["docker", "restart", HOSTS[1]], check=True, capture_output=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if http(endpoint(HOSTS[1]) + "/v1/models", api_key, timeout=2)[0] == 200:
                break
        except OSError:
            pass
        time.sleep(1)
    else:
        pytest.fail("the server on %s did not come back after the host restarted" % HOSTS[1])
    assert server(HOSTS[1])["State"]["Status"] == "running"


def test_teardown_removes_the_servers_and_keeps_the_weights():
    result = run_playbook("playbooks/teardown.yml")
    assert result.returncode == 0, result.stdout[-2000:]
    for host in HOSTS:
        assert server(host) is None
        assert lab_exec(host, "test", "-d", "/root/.cache/huggingface/hub/models--datacrunch-lab--tiny-deepseek-r1",
                        check=False) == ""
        assert lab_exec(host, "sh", "-c", "test -d /var/cache/datacrunch-sglang && echo kept").strip() == "kept"
        assert lab_exec(host, "sh", "-c", "test -e /etc/datacrunch-sglang/sglang-server || echo gone").strip() == "gone"
        assert ("%s: server sglang-server removed; weights kept in /root/.cache/huggingface "
                "(-e sglang_server_purge=true removes them); JIT caches kept in /var/cache/datacrunch-sglang; "
                "host firewall table removed" % host) in result.stdout
    purge = run_playbook("playbooks/teardown.yml", "--extra-vars", "sglang_server_purge=true", "--limit", HOSTS[0])
    assert purge.returncode == 0
    assert ("%s: server sglang-server was not there; weights removed; JIT caches removed; host firewall table "
            "removed" % HOSTS[0]) in purge.stdout
    assert lab_exec(HOSTS[0], "sh", "-c", "test -e /var/cache/datacrunch-sglang || echo gone").strip() == "gone"
    assert lab_exec(HOSTS[0], "sh", "-c",
                    "test -e /root/.cache/huggingface/hub/models--datacrunch-lab--tiny-deepseek-r1 || echo gone"
                    ).strip() == "gone"
    again = run_playbook("playbooks/teardown.yml")
    assert again.returncode == 0
    assert "changed=0" in again.stdout
