#!/usr/bin/env python3
"""Break a simulated lab host the way real DataCrunch H200 hosts break, and heal it. Lab test material only.

Faults live where a real host keeps them: in what the ``nvidia-smi`` stand-in reads (its state file), in the
files, mounts and processes of the host. Nothing here sets a variable that the collection reads.

    lab-fault gpus N                 N GPUs instead of 8
    lab-fault driver VERSION [CUDA]  another driver, e.g. 535.104.05 (CUDA 12.2 derived from the branch)
    lab-fault ecc GPU COUNT          uncorrectable ECC errors on a GPU, with a row remap pending (needs a reset)
    lab-fault mig GPU                MIG mode enabled on a GPU
    lab-fault process [GPU] [MIB]    a process holding GPU memory (a real process, listed by nvidia-smi)
    lab-fault persistence-off        persistence mode disabled (nvidia-smi -pm 1 turns it on again)
    lab-fault nvlink-down GPU        all 18 NVLinks of a GPU inactive
    lab-fault toolkit-missing        NVIDIA container toolkit removed; dockerd restarted without its GPU driver
    lab-fault disk-full PATH         a tiny filesystem mounted at PATH, filled up
    lab-fault port PORT              a foreign process listening on TCP PORT
    lab-fault no-nvidia-smi          nvidia-smi removed
    lab-fault heal                   all of the above undone
    lab-fault status                 what is broken now (JSON)
    lab-fault init SEED              write a healthy state if there is none (the host's first boot)
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import signal
import subprocess
import sys
import time

LAB_LIB = "/usr/lib/datacrunch-sglang-lab"
sys.path.insert(0, LAB_LIB)

import nvidia_smi  # noqa: E402 - lives in the lab's library directory, added just above

TOOLKIT = {
    "/usr/bin/nvidia-container-runtime-hook": f"{LAB_LIB}/toolkit/nvidia-container-runtime-hook",
    "/usr/bin/nvidia-container-runtime": f"{LAB_LIB}/toolkit/nvidia-container-runtime",
    "/usr/bin/nvidia-ctk": f"{LAB_LIB}/toolkit/nvidia-ctk",
}
TOOLKIT_PACKAGE = "nvidia-container-toolkit"
NVIDIA_SMI = ("/usr/bin/nvidia-smi", f"{LAB_LIB}/nvidia_smi.py")
DISK_FULL_SOURCE = "lab-disk-full"
PROCESS_MARK = "lab-fault-process"
PORT_MARK = "lab-fault-port"
# Driver branch -> the CUDA version its nvidia-smi reports.
CUDA_OF_BRANCH = {
    "470": "11.4",
    "525": "12.0",
    "530": "12.1",
    "535": "12.2",
    "545": "12.3",
    "550": "12.4",
    "555": "12.5",
    "560": "12.6",
    "565": "12.7",
    "570": "12.8",
    "575": "12.9",
    "580": "13.0",
}


class FaultError(Exception):
    pass


# ---------------------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------------------


def stored_state():
    try:
        return nvidia_smi.read_stored_state()
    except (OSError, ValueError) as error:
        raise FaultError(f"cannot read {nvidia_smi.STATE_PATH}: {error}") from error


def update_state(**changes):
    state = stored_state()
    state.update(changes)
    nvidia_smi.save_state(state)


def gpu_count():
    return int(nvidia_smi.load_state()["gpu_count"])


def gpu_index(value, name="GPU"):
    count = gpu_count()
    if not re.fullmatch(r"\d+", str(value)) or int(value) >= count:
        raise FaultError(f"{name}={value!r} is not a GPU of this host: use an index from 0 to {count - 1}")
    return int(value)


def integer(value, name, low, high):
    if not re.fullmatch(r"\d+", str(value)) or not low <= int(value) <= high:
        raise FaultError(f"{name}={value!r} must be a whole number from {low} to {high}")
    return int(value)


def need(args, count, usage):
    if len(args) < count:
        raise FaultError(f"missing argument: usage: lab-fault {usage}")


def marked_processes(mark):
    """(pid, argv) of processes started by this tool with `mark` in their command line."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                argv = handle.read().decode(errors="replace").split("\0")
        except OSError:
            continue
        if mark in argv:
            found.append((int(entry), argv))
    return found


def spawn(argv):
    """Start a detached process (its own session, no terminal) and return its pid."""
    process = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
    )
    return process.pid


def mounts_with_source(source):
    found = []
    with open("/proc/self/mounts", encoding="utf-8") as handle:
        for line in handle:
            fields = line.split()
            if fields[0] == source:
                found.append(fields[1].replace("\\040", " "))
    return found


def restart_dockerd():
    subprocess.run(["/usr/local/sbin/lab-dockerd", "restart"], check=True)


def install(target, source):
    with open(source, "rb") as handle:
        data = handle.read()
    temporary = f"{target}.lab-tmp"
    with open(temporary, "wb") as handle:
        handle.write(data)
    os.chmod(temporary, 0o755)  # noqa: S103 - a program, as the package installs it
    os.replace(temporary, target)


def same_content(target, source):
    try:
        with open(target, "rb") as left, open(source, "rb") as right:
            return left.read() == right.read()
    except OSError:
        return False


def listening(port):
    """True when something listens on TCP `port` (IPv4 or IPv6), from /proc/net/tcp*."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="utf-8") as handle:
                next(handle)
                for line in handle:
                    fields = line.split()
                    if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        return True
        except OSError:
            continue
    return False


# ---------------------------------------------------------------------------------------------------------------
# Faults
# ---------------------------------------------------------------------------------------------------------------


def fault_gpus(args):
    need(args, 1, "gpus N")
    update_state(gpu_count=integer(args[0], "N", 0, 16))


def fault_driver(args):
    need(args, 1, "driver VERSION [CUDA]")
    version = args[0]
    if not re.fullmatch(r"\d{3}\.\d{1,3}(\.\d{1,3})?", version):
        raise FaultError(f"VERSION={version!r} is not a driver version such as 535.104.05")
    cuda = args[1] if len(args) > 1 else CUDA_OF_BRANCH.get(version.split(".")[0])
    if cuda is None:
        known = ", ".join(sorted(CUDA_OF_BRANCH))
        raise FaultError(f"no CUDA version known for driver branch {version.split('.')[0]} (known: {known}): pass CUDA")
    if not re.fullmatch(r"\d+\.\d+", cuda):
        raise FaultError(f"CUDA={cuda!r} is not a CUDA version such as 12.2")
    update_state(driver_version=version, cuda_version=cuda)


def fault_ecc(args):
    need(args, 2, "ecc GPU COUNT")
    index = gpu_index(args[0])
    count = integer(args[1], "COUNT", 0, 1_000_000)
    state = stored_state()
    errors = dict(state.get("ecc_uncorrected", {}))
    pending = {int(i) for i in state.get("retired_pages_pending", [])}
    errors[str(index)] = count
    if count:
        pending.add(index)
    else:
        errors.pop(str(index))
        pending.discard(index)
    update_state(ecc_uncorrected=errors, retired_pages_pending=sorted(pending))


def fault_mig(args):
    need(args, 1, "mig GPU")
    index = gpu_index(args[0])
    enabled = {int(i) for i in stored_state().get("mig_enabled", [])} | {index}
    update_state(mig_enabled=sorted(enabled))


def fault_process(args):
    index = gpu_index(args[0]) if args else 0
    memory = integer(args[1], "MIB", 1, 143000) if len(args) > 1 else 40960
    pid = spawn([sys.executable, "-c", "import time\nwhile True: time.sleep(3600)", PROCESS_MARK])
    processes = list(stored_state().get("processes", []))
    processes.append({"gpu": index, "pid": pid, "name": sys.executable, "used_memory_mib": memory})
    update_state(processes=processes)
    print(f"pid {pid} holds {memory} MiB on GPU {index}")


def fault_persistence_off(_args):
    update_state(persistence_mode=False)


def fault_nvlink_down(args):
    need(args, 1, "nvlink-down GPU")
    index = gpu_index(args[0])
    down = {int(i) for i in stored_state().get("nvlink_down", [])} | {index}
    update_state(nvlink_down=sorted(down))


def fault_toolkit_missing(_args):
    removed = False
    # Installed from the stand-in of NVIDIA's repository (the gpu_host fix-up): remove the package as well.
    listed = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Status}", TOOLKIT_PACKAGE], capture_output=True, text=True, check=False
    )
    if listed.returncode == 0 and "installed" in listed.stdout.split():
        subprocess.run(["dpkg", "--purge", TOOLKIT_PACKAGE], capture_output=True, check=True)
        removed = True
    for target in TOOLKIT:
        if os.path.exists(target):
            os.remove(target)
            removed = True
    if removed:
        restart_dockerd()


def fault_disk_full(args):
    need(args, 1, "disk-full PATH")
    path = args[0]
    if not os.path.isabs(path):
        raise FaultError(f"PATH={path!r} must be an absolute path, e.g. /root/.cache/huggingface")
    if os.path.exists(path) and not os.path.isdir(path):
        raise FaultError(f"PATH={path!r} exists and is not a directory")
    if os.path.realpath(path) in mounts_with_source(DISK_FULL_SOURCE):
        return
    os.makedirs(path, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k,nr_inodes=16,mode=0755", DISK_FULL_SOURCE, path],
        check=True,
    )
    fill(path)


def fill(path):
    """Use up every block and every inode of the filesystem at `path`."""
    try:
        with open(os.path.join(path, ".lab-disk-full"), "wb") as handle:
            while True:
                handle.write(b"\0" * 4096)
                handle.flush()
    except OSError as error:
        if error.errno != errno.ENOSPC:
            raise
    number = 0
    while True:
        try:
            with open(os.path.join(path, f".lab-disk-full-{number}"), "wb"):
                pass
        except OSError as error:
            if error.errno != errno.ENOSPC:
                raise
            break
        number += 1


def fault_port(args):
    need(args, 1, "port PORT")
    port = integer(args[0], "PORT", 1, 65535)
    if listening(port):
        raise FaultError(f"PORT={port} is already in use on this host")
    code = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_INET6)\n"
        "s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)\n"
        "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        "s.bind(('::', int(sys.argv[2])))\n"
        "s.listen(16)\n"
        "while True:\n"
        "    c, _ = s.accept()\n"
        "    c.close()\n"
    )
    pid = spawn([sys.executable, "-c", code, PORT_MARK, str(port)])
    for _attempt in range(50):
        if listening(port):
            print(f"pid {pid} listens on port {port}")
            return
        time.sleep(0.1)
    raise FaultError(f"the foreign listener on PORT={port} did not start")


def fault_no_nvidia_smi(_args):
    if os.path.exists(NVIDIA_SMI[0]):
        os.remove(NVIDIA_SMI[0])


def heal(_args):
    for mark in (PROCESS_MARK, PORT_MARK):
        for pid, _argv in marked_processes(mark):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    for path in reversed(mounts_with_source(DISK_FULL_SOURCE)):
        subprocess.run(["umount", path], check=True)
    toolkit_restored = False
    for target, source in TOOLKIT.items():
        if not same_content(target, source):
            install(target, source)
            toolkit_restored = True
    if not same_content(*NVIDIA_SMI):
        install(*NVIDIA_SMI)
    seed = stored_state().get("identity_seed", "")
    nvidia_smi.save_state({"identity_seed": seed})
    if toolkit_restored:
        restart_dockerd()


def status(_args):
    report = {
        "gpu_state": stored_state(),
        "disk_full": mounts_with_source(DISK_FULL_SOURCE),
        "ports": sorted(int(argv[argv.index(PORT_MARK) + 1]) for _pid, argv in marked_processes(PORT_MARK)),
        "processes": sorted(pid for pid, _argv in marked_processes(PROCESS_MARK)),
        "toolkit_missing": sorted(target for target in TOOLKIT if not os.path.exists(target)),
        "nvidia_smi_missing": not os.path.exists(NVIDIA_SMI[0]),
    }
    print(json.dumps(report, indent=2, sort_keys=True))


def init(args):
    need(args, 1, "init SEED")
    if not os.path.exists(nvidia_smi.STATE_PATH):
        nvidia_smi.save_state({"identity_seed": args[0]})


FAULTS = {
    "gpus": fault_gpus,
    "driver": fault_driver,
    "ecc": fault_ecc,
    "mig": fault_mig,
    "process": fault_process,
    "persistence-off": fault_persistence_off,
    "nvlink-down": fault_nvlink_down,
    "toolkit-missing": fault_toolkit_missing,
    "disk-full": fault_disk_full,
    "port": fault_port,
    "no-nvidia-smi": fault_no_nvidia_smi,
    "heal": heal,
    "status": status,
    "init": init,
}


def main(argv):
    if len(argv) < 2 or argv[1] not in FAULTS:
        name = argv[1] if len(argv) > 1 else ""
        sys.stderr.write(f"lab-fault: unknown fault {name!r}: use one of {', '.join(FAULTS)}\n")
        return 2
    try:
        FAULTS[argv[1]](argv[2:])
    except FaultError as error:
        sys.stderr.write(f"lab-fault: {argv[1]}: {error}\n")
        return 2
    except (OSError, subprocess.CalledProcessError) as error:
        sys.stderr.write(f"lab-fault: {argv[1]} failed: {error}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
