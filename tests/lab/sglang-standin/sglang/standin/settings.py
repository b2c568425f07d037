"""Test stand-in (not SGLang): the SGLANG_STANDIN_* settings that shape what the stand-in does.

SGLANG_STANDIN_VERSION              SGLang version played (its flags, its module layout); baked into each image
SGLANG_STANDIN_LOAD_SECONDS         start-up phases (standin/startup.py), compressed: weight loading (default 4),
SGLANG_STANDIN_JIT_SECONDS          DeepGEMM JIT compilation (2), CUDA graph capture (2), all with the port
SGLANG_STANDIN_GRAPH_SECONDS        closed, then the warm-up request with the port open and /health answering
SGLANG_STANDIN_WARMUP_SECONDS       503 (1)
SGLANG_STANDIN_FAULT                start-fail[:PHASE] | never-ready | crash-after:N | hang[:PHASE]; PHASE is one
                                    of init, weights, jit, graphs, warmup (start-fail alone: right after parsing;
                                    hang alone: at distributed init)
SGLANG_STANDIN_TTFT_MS              server: time before the first generated token (default 20);
                                    bench_serving: reported TTFT instead of the measured one, when set
SGLANG_STANDIN_DECODE_MS_PER_TOKEN  server: time per generated token after the first (default 5)
SGLANG_STANDIN_DECODE_TOKENS_PER_S  bench_one_batch: decode speed of one sequence (default 47.67, the published
                                    H200 TP8 figure); bench_serving: reported TPOT/ITL = 1000 / this, when set
SGLANG_STANDIN_PREFILL_TOKENS_PER_S bench_one_batch: prefill speed (default 651.90)
SGLANG_STANDIN_GPU_LOCK             file the server holds (flock) while it runs and bench_one_batch tests
                                    (default /dev/shm/sglang-standin-gpus.lock)
SGLANG_STANDIN_FLAGS_FILE           sglang_cli_flags.py to read (default: the copy in the image, else the checkout's)
"""

from __future__ import annotations

import os

DEFAULT_VERSION = "0.5.18"


class SettingError(Exception):
    pass


def standin_version() -> str:
    return os.environ.get("SGLANG_STANDIN_VERSION", DEFAULT_VERSION)


def number(name: str, default: float | None) -> float | None:
    raw = os.environ.get(name, "")
    if raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingError(f"{name}={raw!r} is not a number") from None
    if value < 0:
        raise SettingError(f"{name}={raw!r} must not be negative")
    return value


PHASES = ("init", "weights", "jit", "graphs", "warmup")


def fault() -> tuple[str, float | str]:
    """(name, argument) of SGLANG_STANDIN_FAULT; ("", 0) when none. The argument of start-fail and hang is the
    phase ("" for the plain forms), of crash-after the seconds."""
    raw = os.environ.get("SGLANG_STANDIN_FAULT", "").strip()
    if not raw:
        return "", 0.0
    name, _sep, arg = raw.partition(":")
    if name == "never-ready" and not arg:
        return name, 0.0
    if name in ("start-fail", "hang") and (not arg or arg in PHASES):
        return name, arg
    if name == "crash-after":
        try:
            return name, float(arg)
        except ValueError:
            pass
    raise SettingError(
        f"SGLANG_STANDIN_FAULT={raw!r} is not one of start-fail[:PHASE], never-ready, crash-after:SECONDS, "
        f"hang[:PHASE] (PHASE: {', '.join(PHASES)})"
    )


def gpu_lock_path() -> str:
    return os.environ.get("SGLANG_STANDIN_GPU_LOCK", "/dev/shm/sglang-standin-gpus.lock")
