#!/usr/bin/env python3
"""The preflight against each fault the lab can set, on simulated lab hosts (test material, not real GPUs).

For every fault: break host 2 with ``tests/lab/lab.sh fault``, run ``playbooks/preflight.yml`` as a user would,
and check the JSON report: host 2 fails the fault's own check with its own message (and only the checks that
fault implies), host 1 passes, the play fails. Around every run a snapshot of each host (containers, images,
Docker and apt configuration, packages, listeners, GPU state, files written anywhere) must not change: the
preflight only reads. Then ``lab.sh heal``.

    fault_matrix.py INVENTORY      (LAB_NAME names the lab; run from molecule's verify step)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY") or Path(__file__).resolve().parents[3])
LAB = REPO / "tests" / "lab" / "lab.sh"
PLAYBOOK = REPO / "playbooks" / "preflight.yml"
EXTRA_VARS = {"sglang_profile": "lab-tiny", "sglang_image": "localhost/sglang-standin:v0.5.18"}
PORT = 30000

# fault arguments, the check that must fail, words its summary must hold, other checks the fault may also fail.
CASES = [
    (["gpus", "7"], "gpus", "7 x NVIDIA H200: profile lab-tiny needs 8 x H200", {"container gpus"}),
    (["driver", "550.54.15"], "driver", "driver 550.54.15 is older than 580.65.06", set()),
    (["ecc", "3", "2"], "ecc", "GPU3: 2 uncorrected ECC errors since boot", set()),
    (["toolkit-missing"], "nvidia toolkit", "the NVIDIA container toolkit is not installed", {"container gpus"}),
    (
        ["disk-full", "/root/.cache/huggingface"],
        "disk /root/.cache/huggingface",
        "free on /root/.cache/huggingface",
        set(),
    ),
    (["port", str(PORT)], "serving port", f"port {PORT} is taken by pid", set()),
    (["mig", "0"], "mig", "MIG mode is on for GPU 0", set()),
    (["persistence-off"], "persistence", "persistence mode is off on GPU 0-7", set()),
    (["nvlink-down", "5"], "nvlink", "GPU pairs not joined by NVLink", set()),
    (["process"], "gpu processes", "(not a datacrunch.sglang container)", set()),
    (["no-nvidia-smi"], "nvidia-smi", "nvidia-smi not found", {"container gpus"}),
]

SNAPSHOT = r"""
set -u
echo "## containers"; docker ps -a --no-trunc --format '{{.ID}} {{.Names}} {{.Image}} {{.State}}' | sort
echo "## images"; docker images -q --no-trunc | sort
echo "## daemon.json"; cat /etc/docker/daemon.json 2>/dev/null
echo "## apt"; ls -l --time-style=+%s /etc/apt/sources.list.d /usr/share/keyrings 2>&1
echo "## packages"; dpkg-query -W 2>/dev/null | sha256sum
echo "## nvidia"; ls -l --time-style=+%s /usr/bin/nvidia-* 2>&1
echo "## gpu"; nvidia-smi -q -x 2>&1 | grep -v '<timestamp>' | sha256sum
echo "## listeners"; cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | awk '$4 == "0A" {print $2}' | sort -u
echo "## written since the mark"
find / -xdev \( -path /proc -o -path /sys -o -path /run -o -path /tmp -o -path /var/tmp -o -path /var/log \
    -o -path /var/lib/docker -o -path /root/.ansible -o -path /dev \) -prune \
    -o -newer /run/dcsg-preflight-mark -print 2>/dev/null | sort
"""


def sh(argv, **kwargs):
    return subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)


def hosts_of(inventory):
    names = []
    for line in Path(inventory).read_text().splitlines():
        stripped = line.strip()
        if stripped.endswith(":") and stripped[:-1].startswith(os.environ["LAB_NAME"] + "-"):
            names.append(stripped[:-1])
    return sorted(set(names))


def lab_pair(inventory):
    """The scenario's two lab hosts, (healthy, broken); None, after saying so, when the inventory has other than 2."""
    hosts = hosts_of(inventory)
    if len(hosts) != 2:
        print(f"expected 2 lab hosts in {inventory}, found {hosts}")
        return None
    return hosts[0], hosts[1]


def on_host(host, command):
    """A shell command in a lab host's container."""
    return sh(["docker", "exec", host, "sh", "-c", command])


def snapshot(host):
    on_host(host, "touch /run/dcsg-preflight-mark; sleep 1")
    return on_host(host, SNAPSHOT).stdout


def unchanged(host, before):
    after = on_host(host, SNAPSHOT).stdout
    return after == before, after


def preflight(inventory, report_dir, extra_vars=None, extra_args=()):
    """Run playbooks/preflight.yml as a user would; (result, JSON report or None, seconds)."""
    playbook = Path(sys.executable).parent / "ansible-playbook"
    argv = [
        str(playbook),
        "-i",
        inventory,
        str(PLAYBOOK),
        "-e",
        json.dumps({**(EXTRA_VARS if extra_vars is None else extra_vars), "gpu_host_report_dir": report_dir}),
        *extra_args,
    ]
    started = time.monotonic()
    # Plain output (molecule asks for colours), so that the recap can be read.
    result = sh(argv, cwd=REPO, env={**os.environ, "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1"})
    seconds = time.monotonic() - started
    report_path = Path(report_dir) / "preflight.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else None
    return result, report, seconds


def failing(report, host):
    checks = report["hosts"][host]["checks"]
    return {check["name"]: check for check in checks if check["status"] == "fail"}


def main(inventory):
    hosts = lab_pair(inventory)
    if hosts is None:
        return 1
    healthy, broken = hosts
    problems = []
    lines = []
    with tempfile.TemporaryDirectory() as report_dir:
        for fault, check, words, also in [([], None, None, set()), *CASES]:
            label = " ".join(fault) or "healthy"
            if fault:
                done = sh([str(LAB), "fault", broken, *fault])
                if done.returncode != 0:
                    problems.append(f"{label}: lab.sh fault failed: {done.stderr.strip()}")
                    continue
            before = {host: snapshot(host) for host in hosts}
            result, report, seconds = preflight(inventory, report_dir)
            for host in hosts:
                same, after = unchanged(host, before[host])
                if not same:
                    problems.append(
                        f"{label}: the preflight changed {host}:\n--- before\n{before[host]}\n--- after\n{after}"
                    )
            if report is None:
                problems.append(f"{label}: no report; play output:\n{result.stdout[-3000:]}")
            else:
                if failing(report, healthy):
                    problems.append(f"{label}: healthy {healthy} fails {sorted(failing(report, healthy))}")
                failed = failing(report, broken)
                if check is None:
                    if failed or result.returncode != 0:
                        problems.append(f"healthy lab: {broken} fails {sorted(failed)}, rc {result.returncode}")
                    lines.append(f"healthy      rc={result.returncode} {seconds:4.1f}s both hosts pass")
                else:
                    if check not in failed:
                        problems.append(f"{label}: {broken} does not fail '{check}' (fails {sorted(failed)})")
                    elif words not in failed[check]["summary"] or not failed[check]["fix"]:
                        problems.append(
                            f"{label}: '{check}' says {failed[check]['summary']!r} "
                            f"fix {failed[check]['fix']!r}; expected {words!r} and a fix"
                        )
                    extra = set(failed) - {check} - also
                    if extra:
                        problems.append(f"{label}: {broken} also fails {sorted(extra)}")
                    if result.returncode == 0:
                        problems.append(f"{label}: the play passed")
                    shown = failed.get(check, {})
                    lines.append(
                        f"{label:12} rc={result.returncode} {seconds:4.1f}s FAIL {check}: "
                        f"{shown.get('summary', '?')} | fix: {shown.get('fix', '?')}"
                    )
            if fault:
                healed = sh([str(LAB), "heal", broken])
                if healed.returncode != 0:
                    problems.append(f"{label}: lab.sh heal failed: {healed.stderr.strip()}")
    print("\n".join(lines))
    if problems:
        print("\nPROBLEMS:\n" + "\n".join(problems))
        return 1
    print(f"\n{len(CASES)} faults, each failing its own check; healthy host passes; hosts unchanged by every run")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
