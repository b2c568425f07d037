"""Test stand-in (not SGLang): the GPUs a process would get, and who holds them.

GPUs are those `nvidia-smi -L` lists (the lab's GPU hook puts an nvidia-smi into containers started with --gpus),
narrowed by CUDA_VISIBLE_DEVICES as CUDA narrows them. No nvidia-smi means no GPU.
A running server holds an exclusive flock on SGLANG_STANDIN_GPU_LOCK (default /dev/shm/..., shared by containers
started with --ipc=host) for its lifetime; bench_one_batch treats a held lock, or a server answering on its
--port on this machine, as GPUs already in use.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import socket
import subprocess

from sglang.standin.settings import gpu_lock_path


class NoGpu(Exception):
    pass


def visible_gpu_count() -> int:
    """The number of GPUs torch would see; raises NoGpu with the error CUDA gives when there are none."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        raise NoGpu(
            "Found no NVIDIA driver on your system. Please check that you have an NVIDIA GPU and installed a driver "
            "from http://www.nvidia.com/Download/index.aspx"
        )
    out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30, check=False)
    if out.returncode != 0:
        raise NoGpu(
            "CUDA driver initialization failed, you might not have a CUDA gpu. "
            f"(nvidia-smi: {out.stdout.strip() or out.stderr.strip()})"
        )
    count = len(re.findall(r"^GPU \d+:", out.stdout, flags=re.MULTILINE))
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        wanted = [v for v in visible.split(",") if v.strip()]
        count = min(count, len(wanted))
    if count == 0:
        raise NoGpu("No CUDA GPUs are available")
    return count


class GpuLock:
    """The server's claim on this machine's GPUs: an exclusive flock held while the process lives."""

    def __init__(self, path: str | None = None):
        self.path = path or gpu_lock_path()
        self.handle = None

    def acquire(self) -> bool:
        try:
            self.handle = open(self.path, "a+")  # noqa: SIM115 - held for the life of the process
        except OSError:
            return True  # no shared place to mark GPU use: nothing to record
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        return True

    def held_by_other(self) -> bool:
        try:
            with open(self.path, "a+") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(handle, fcntl.LOCK_UN)
        except OSError:
            return os.path.exists(self.path)
        return False


def port_answers(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False
