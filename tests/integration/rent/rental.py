"""What the playbooks/rent.yml tests in this folder share besides their fixtures (conftest.py): a rent.yml run against
the API stand-in, and what it left on the lab hosts and in the stand-in's account."""

import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "lab" / "verda-api"))
import standin_control
from standin_control import CLIENT_SECRET, REPO_ROOT, ansible

LAB_SH = REPO_ROOT / "tests" / "lab" / "lab.sh"
PROBE = "tests/lab/verda-api/playbooks/probe.yml"
FAIL = "tests/lab/verda-api/playbooks/fail.yml"


def api_stand_in(*args):
    """The API stand-in as its own process (standin_control.in_process) with these arguments; a context manager."""
    return standin_control.in_process(*args)


def rent(standin, lab, inventory, tmp_path, *extra, steps=(PROBE,), profile="lab-tiny", step_args=()):
    variables = {"datacrunch_profile": profile, "datacrunch_ssh_keys": ["standin-default"],
                 "datacrunch_wait_timeout": 120, "datacrunch_log_dir": str(tmp_path / "logs"),
                 "datacrunch_step_args": ["-e", f"sglang_benchmark_report_dir={tmp_path / 'reports'}", *step_args]}
    if steps:
        variables["datacrunch_steps"] = list(steps)
    env = {"DATACRUNCH_SSH_PRIVATE_KEY_FILE": lab["key"], "DATACRUNCH_SSH_COMMON_ARGS": lab["ssh_args"]}
    run = ansible("ansible-playbook", "playbooks/rent.yml", "-i", str(inventory), "-e", json.dumps(variables),
                  *extra, control=standin, env=env, timeout=900)
    assert CLIENT_SECRET not in run.output
    return run


def record(lab, address):
    """What the probe step left on the lab host at this address, and clears it for the next test."""
    name = lab["by_address"][address]
    command = "cat /root/rent-probe.json && rm /root/rent-probe.json"
    shown = subprocess.run(["docker", "exec", name, "sh", "-c", command], capture_output=True, text=True, check=False)
    return json.loads(shown.stdout) if shown.returncode == 0 else None


def account(standin):
    state = standin.state()
    return {"instances": [(i["hostname"], i["status"]) for i in state["instances"]],
            "clusters": [(c["hostname"], c["status"]) for c in state["clusters"]]}


def wait_released(standin, lab):
    """After release the stand-in takes a moment to hand the addresses back to its pool."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if account(standin) == {"instances": [], "clusters": []} and len(standin.state()["pool"]) == len(lab["hosts"]):
            return True
        time.sleep(0.2)
    return False


def served(lab, address):
    """(profile, cluster, rank) of the SGLang server container on the lab host at this address, or None."""
    labels = "|".join('{{.Label "datacrunch.sglang.%s"}}' % name for name in ("profile", "cluster", "rank"))
    shown = subprocess.run(
        ["docker", "exec", lab["by_address"][address], "docker", "ps", "--filter", "name=^sglang-server$",
         "--format", labels], capture_output=True, text=True, check=False)
    line = shown.stdout.strip()
    return tuple(line.split("|")) if line else None
