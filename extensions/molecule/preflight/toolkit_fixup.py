#!/usr/bin/env python3
"""The preflight's fix-ups on a simulated lab host (test material, not real GPUs): toolkit install and persistence.

NVIDIA's apt repository is unreachable here; the lab serves a stand-in of it (tests/lab/services/nvidia-apt-repo.sh:
same layout, a signing key made by the lab, a package that installs the lab's stand-in toolkit). On host 2, with
the toolkit removed and persistence mode off (``lab.sh fault``):

0. check mode reports what it would change and changes nothing;
1. a repository key that did not sign the repository fails the play with a message naming the variables, and
   installs nothing;
2. the right key installs the package from the repository (keyring, deb822 source, apt), Docker is restarted with
   its GPU driver, persistence mode is turned on, and every check of the preflight passes on both hosts;
3. a second run changes nothing.

    toolkit_fixup.py INVENTORY      (LAB_NAME names the lab; run from molecule's verify step)
"""

from __future__ import annotations

import re
import sys
import tempfile

# The fault matrix beside this file: the same lab helpers and the same way of running the preflight.
import fault_matrix
from fault_matrix import failing, lab_pair, on_host, sh

REPO, LAB = fault_matrix.REPO, fault_matrix.LAB
PACKAGE = "nvidia-container-toolkit"
VERSION = "1.17.8-1"
SOURCE = "/etc/apt/sources.list.d/nvidia-container-toolkit.sources"
KEYRING = "/usr/share/keyrings/nvidia-container-toolkit-keyring.asc"
FIXUPS = {
    "sglang_profile": "lab-tiny",
    "sglang_image": "localhost/sglang-standin:v0.5.18",
    "gpu_host_install_toolkit": True,
    "gpu_host_enable_persistence": True,
    "gpu_host_toolkit_repo_url": "{{ lab_nvidia_apt_url }}/stable/deb",
    "gpu_host_toolkit_gpg_key_url": "{{ lab_nvidia_apt_url }}/gpgkey",
}


def preflight(inventory, report_dir, check=False, **overrides):
    """The preflight with the fix-ups on; (result, report, changed count per host from the recap)."""
    result, report, _seconds = fault_matrix.preflight(
        inventory, report_dir, extra_vars={**FIXUPS, **overrides}, extra_args=["--check"] if check else []
    )
    changed = {
        host: int(count)
        for host, count in re.findall(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)", result.stdout, re.M)
        if host != "localhost"  # the controller-side input checks play; it never changes a lab host
    }
    return result, report, changed


def package_version(host):
    return on_host(host, f"dpkg-query -W -f '${{Status}} ${{Version}}' {PACKAGE} 2>/dev/null").stdout.strip()


def main(inventory):
    hosts = lab_pair(inventory)
    if hosts is None:
        return 1
    healthy, broken = hosts
    problems = []
    for fault in (["toolkit-missing"], ["persistence-off"]):
        done = sh([str(LAB), "fault", broken, *fault])
        if done.returncode != 0:
            print(f"lab.sh fault {' '.join(fault)} failed: {done.stderr.strip()}")
            return 1
    with tempfile.TemporaryDirectory() as report_dir:
        # 0. Check mode says what it would change and changes nothing.
        result, _report, changed = preflight(inventory, report_dir, check=True)
        if not changed.get(broken):
            problems.append(f"check mode: {broken} reports nothing to change ({changed})\n{result.stdout[-2000:]}")
        left = on_host(broken, f"ls {SOURCE} {KEYRING} 2>/dev/null").stdout.split()
        if "installed" in package_version(broken).split() or left:
            problems.append(f"check mode: {broken} was changed: package {package_version(broken)!r}, files {left}")
        print(f"check mode    rc={result.returncode}: {broken} would change {changed.get(broken)}, changed nothing")

        # 1. A key that did not sign the repository.
        result, _report, _changed = preflight(
            inventory, report_dir, gpu_host_toolkit_gpg_key_url="{{ lab_nvidia_apt_url }}/gpgkey-other"
        )
        text = result.stdout + result.stderr
        if result.returncode == 0:
            problems.append("wrong key: the play passed")
        for words in (
            "gpu_host_install_toolkit=true could not install",
            "gpu_host_toolkit_gpg_key_url=",
            "signatures couldn't be verified because the public key is not available",
        ):
            if words not in text:
                problems.append(f"wrong key: the output does not say {words!r}:\n{text[-2500:]}")
        if "installed" in package_version(broken).split():
            problems.append(f"wrong key: {PACKAGE} was installed anyway")
        print(
            f"wrong key     rc={result.returncode}: "
            + next((line.strip() for line in text.splitlines() if "could not install" in line), "?")[:300]
        )

        # 2. The repository's own key.
        result, report, changed = preflight(inventory, report_dir)
        if result.returncode != 0 or report is None:
            problems.append(f"fix-ups: rc {result.returncode}\n{result.stdout[-3000:]}")
        else:
            for host in hosts:
                if failing(report, host):
                    problems.append(f"fix-ups: {host} still fails {sorted(failing(report, host))}")
        if not changed.get(broken):
            problems.append(f"fix-ups: {broken} reports no change ({changed})")
        if changed.get(healthy):
            problems.append(f"fix-ups: healthy {healthy} changed ({changed})")
        version = package_version(broken)
        if version != f"install ok installed {VERSION}":
            problems.append(f"fix-ups: {PACKAGE} on {broken} is {version!r}, expected {VERSION} installed")
        source = on_host(broken, f"cat {SOURCE}").stdout
        for words in (f"Signed-By: {KEYRING}", "/stable/deb/amd64", "Suites: /"):
            if words not in source:
                problems.append(f"fix-ups: {SOURCE} lacks {words!r}:\n{source}")
        served_key = sh(
            [
                "curl",
                "-fsS",
                sh([str(REPO / "tests/lab/services/nvidia-apt-repo.sh"), "url"]).stdout.strip() + "/gpgkey",
            ]
        ).stdout
        if on_host(broken, f"cat {KEYRING}").stdout != served_key or not served_key:
            problems.append(f"fix-ups: {KEYRING} is not the repository's key")
        policy = on_host(broken, f"apt-cache policy {PACKAGE}").stdout
        if ":18092/stable/deb/amd64" not in policy and "/stable/deb/amd64" not in policy:
            problems.append(f"fix-ups: apt does not list the repository as the package's origin:\n{policy}")
        gpus = on_host(broken, "docker run --rm --gpus all datacrunch-sglang-lab/debian:bookworm nvidia-smi -L")
        if gpus.stdout.count("NVIDIA H200") != 8:
            problems.append(f"fix-ups: a container with --gpus all sees {gpus.stdout!r} {gpus.stderr!r}")
        persistence = on_host(broken, "nvidia-smi --query-gpu=persistence_mode --format=csv,noheader").stdout.split()
        if persistence != ["Enabled"] * 8:
            problems.append(f"fix-ups: persistence mode is {persistence}")
        print(
            f"fix-ups       rc={result.returncode}: {broken} changed={changed.get(broken)}, {PACKAGE} "
            f"{version.split()[-1] if version else '-'}, {gpus.stdout.count('NVIDIA H200')} GPUs in a container, "
            f"persistence {','.join(sorted(set(persistence)))}"
        )

        # 3. Nothing left to do.
        result, report, changed = preflight(inventory, report_dir)
        if result.returncode != 0 or any(changed.get(host) for host in hosts) or len(changed) != 2:
            problems.append(f"second run: rc {result.returncode}, changed {changed}\n{result.stdout[-2000:]}")
        print(f"second run    rc={result.returncode}: changed {changed}")

    healed = sh([str(LAB), "heal", broken])
    if healed.returncode != 0:
        problems.append(f"lab.sh heal failed: {healed.stderr.strip()}")
    if problems:
        print("\nPROBLEMS:\n" + "\n".join(problems))
        return 1
    print(
        "\nthe toolkit fix-up refuses a wrong key, installs from the repository with the right one; second run "
        "changed=0"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
