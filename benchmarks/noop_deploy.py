#!/usr/bin/env python3
"""No-op deploy cost against `ansible -m ping`, over 1 and 8 lab hosts, measured in the same run.

Brings up a lab of 8 simulated H200 hosts (tests/lab), deploys the lab profile once, then times, for the first host
alone and for all 8: `ansible -m ansible.builtin.ping` and a re-run of deploy.yml that changes nothing. Prints the
figures and the ratio deploy/ping, and exits non-zero when a ratio is above the limit (default 5).

    benchmarks/noop_deploy.py [--hosts 8] [--repeat 3] [--limit 5] [--keep]

The lab is a simulation: the figures measure the collection's own overhead (Ansible tasks, module runs over SSH,
Docker and HTTP checks on the hosts), not GPUs or SGLang.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = REPO / ".venv" / "bin"
LAB = REPO / "tests" / "lab" / "lab.sh"


def run(command, env, check=True):
    started = time.monotonic()
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - started
    if check and result.returncode != 0:
        sys.exit("%s failed (%d):\n%s" % (" ".join(map(str, command)), result.returncode,
                                          (result.stdout + result.stderr)[-4000:]))
    return elapsed, result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--hosts", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--limit", type=float, default=5.0)
    parser.add_argument("--keep", action="store_true", help="leave the lab up afterwards")
    args = parser.parse_args()

    inventory = Path(tempfile.mkdtemp(prefix="noop-deploy-"))
    env = dict(os.environ, LAB_NAME="dcsgbench-noop", LAB_INVENTORY_DIR=str(inventory),
               PATH="%s:%s" % (VENV_BIN, os.environ["PATH"]), ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
               ANSIBLE_FORCE_COLOR="0")
    # Not in the inventory directory: Ansible would read the key file there as an inventory source.
    secrets = Path(tempfile.mkdtemp(prefix="noop-deploy-key-"))
    env["SGLANG_API_KEY_FILE"] = str(secrets / "api-key")
    extra = ["-e", "sglang_server_api_key_file=%s" % env["SGLANG_API_KEY_FILE"]]
    try:
        print("lab: bringing up %d hosts" % args.hosts, flush=True)
        run([str(LAB), "up", str(args.hosts)], env)
        first = "dcsgbench-noop-1"
        seconds, _result = run([str(VENV_BIN / "ansible-playbook"), "deploy.yml", "-i", str(inventory), *extra], env)
        print("first deploy over %d hosts: %.1f s" % (args.hosts, seconds), flush=True)

        figures = {}
        for label, limit in (("1 host", ["--limit", first]), ("%d hosts" % args.hosts, [])):
            pings, deploys = [], []
            for _round in range(args.repeat):
                ping, _result = run([str(VENV_BIN / "ansible"), "-i", str(inventory), "sglang_servers",
                                     "-m", "ansible.builtin.ping", *limit], env)
                deploy, result = run([str(VENV_BIN / "ansible-playbook"), "deploy.yml", "-i", str(inventory),
                                      *extra, *limit], env)
                changed = [int(count) for count in re.findall(r"\bchanged=(\d+)", result.stdout)]
                if not changed or any(changed):
                    sys.exit("the re-run of deploy.yml changed something:\n" + result.stdout[-3000:])
                pings.append(ping)
                deploys.append(deploy)
            ping, deploy = statistics.median(pings), statistics.median(deploys)
            figures[label] = (ping, deploy, deploy / ping)

        print("\n%-10s %12s %18s %8s" % ("hosts", "ping (s)", "no-op deploy (s)", "ratio"))
        for label, (ping, deploy, ratio) in figures.items():
            print("%-10s %12.2f %18.2f %7.1fx" % (label, ping, deploy, ratio))
        print("(medians of %d runs; limit %.1fx)" % (args.repeat, args.limit))
        worst = max(ratio for _ping, _deploy, ratio in figures.values())
        return 0 if worst <= args.limit else 1
    finally:
        if not args.keep:
            run([str(LAB), "down"], env, check=False)
            shutil.rmtree(secrets, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
