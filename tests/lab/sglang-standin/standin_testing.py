"""Shared test code for the SGLang test stand-in (tests/lab/sglang-standin, not SGLang): run it as a local process.

GPUs come from the lab's nvidia-smi stand-in (tests/lab/host/nvidia/nvidia_smi.py, replaying a real H200 host);
weights from a Hugging Face cache laid out as huggingface_hub lays it out.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
STANDIN_DIR = REPO_ROOT / "tests/lab/sglang-standin"
LAB_NVIDIA = REPO_ROOT / "tests/lab/host/nvidia"
COMMIT = "5dde110d1a9ee857b90a6710b7138f9130ce6fa0"
REPO_ID = "lab/tiny-r1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def make_hf_cache(root: Path) -> Path:
    """An HF cache (root/hub) with REPO_ID complete at COMMIT (refs/main) and lab/partial missing a shard."""
    for repo, complete in ((REPO_ID, True), ("lab/partial", False)):
        base = root / "hub" / ("models--" + repo.replace("/", "--"))
        blobs, snapshot = base / "blobs", base / "snapshots" / COMMIT
        blobs.mkdir(parents=True, exist_ok=True)
        snapshot.mkdir(parents=True, exist_ok=True)
        (base / "refs").mkdir(exist_ok=True)
        (base / "refs" / "main").write_text(COMMIT)
        files = {
            "config.json": json.dumps(
                {
                    "model_type": "deepseek_v3",
                    "architectures": ["DeepseekV3ForCausalLM"],
                    "max_position_embeddings": 8192,
                }
            ),
            "model.safetensors.index.json": json.dumps(
                {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
            ),
            "model-00001-of-00002.safetensors": "weights-1",
            "model-00002-of-00002.safetensors": "weights-2",
            # SGLang loads the tokenizer at start-up (AutoTokenizer): a fast tokenizer's file is needed.
            "tokenizer.json": json.dumps({"version": "1.0", "model": {"type": "WordLevel", "vocab": {"a": 0}}}),
            "tokenizer_config.json": json.dumps({"model_max_length": 8192}),
        }
        if not complete:
            files.pop("model-00002-of-00002.safetensors")
        for name, content in files.items():
            blob = blobs / f"blob-{name}"
            blob.write_text(content)
            link = snapshot / name
            if not link.exists():
                link.symlink_to(os.path.relpath(blob, snapshot))
    return root


def make_gpu_bin(root: Path, gpus: int) -> dict:
    """A bin folder whose nvidia-smi is the lab's stand-in with `gpus` GPUs; returns the environment for it."""
    bin_dir = root / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    smi = bin_dir / "nvidia-smi"
    smi.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{LAB_NVIDIA / "nvidia_smi.py"}" "$@"\n')
    smi.chmod(0o755)
    state = root / "gpu-state.json"
    state.write_text(json.dumps({"gpu_count": gpus}))
    return {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "LAB_GPU_STATE": str(state),
        "LAB_GPU_FIXTURES": str(LAB_NVIDIA / "fixtures"),
    }


class Proc:
    """A stand-in process (python3 -m MODULE ARGS) with its output in files; stopped by its own pid."""

    def __init__(self, module: str, args: list[str], env: dict, workdir: Path, name: str = "proc"):
        self.stdout_path = workdir / f"{name}.stdout"
        self.stderr_path = workdir / f"{name}.stderr"
        self.process = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            env=env,
            cwd=workdir,
            stdout=self.stdout_path.open("w"),
            stderr=self.stderr_path.open("w"),
            start_new_session=True,
        )

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text()

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


def wait_for(predicate, timeout: float, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def http(method: str, url: str, body=None, headers: dict | None = None, timeout: float = 30):
    """(status, headers, body bytes) of one request; HTTP errors are answers, not exceptions."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def sse_events(raw: bytes) -> list:
    """The `data:` payloads of an SSE body, JSON-decoded except the final [DONE]."""
    events = []
    for line in raw.decode().splitlines():
        if line.startswith("data: "):
            payload = line[len("data: ") :]
            events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events


def prometheus(text: str) -> dict:
    """{(name, labels-string): value} of Prometheus text."""
    values = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        metric, _sep, value = line.rpartition(" ")
        name, _sep, labels = metric.partition("{")
        values[(name, "{" + labels if labels else "")] = float(value)
    return values
