"""Test stand-in (not SGLang): the start-up phases of a real SGLang server, on a compressed time scale.

A cold DeepSeek-R1 start on 8x H200 takes 30-60 minutes. The phases and the lines each prints are SGLang's
(0.5.18 and 0.5.23):

  weights   sglang/srt/model_executor/model_runner.py     "Load weight begin. avail mem=... GB", then the loader's
            sglang/srt/model_loader/weight_utils.py        tqdm bar "Multi-thread loading shards: 45% Completed |
                                                            73/163 [...]" (multithreaded loading is the default;
                                                            bar format: srt/utils/common.py BAR_FORMAT), then
                                                            "Load weight end. elapsed=..., type=..., avail mem=...".
  jit       sglang/srt/layers/deep_gemm_wrapper/compile_utils.py
                                                           "Try DeepGEMM JIT Compiling for <...> N=..., K=...,
                                                            num_groups=... with all Ms." and a "DeepGEMM warmup" bar
  graphs    sglang/srt/model_executor/model_runner_components/cuda_graph_setup.py
                                                           "Capture decode CUDA graph begin. ...", the
                                                            decode_cuda_graph_runner's "Capturing batches (bs=...
                                                            avail_mem=... GB)" bar, "Capture decode CUDA graph end."
                                                            (skipped with --disable-cuda-graph)
  warmup    sglang/srt/entrypoints/http_server.py          the HTTP server is up ("Uvicorn running on ..."), its
                                                            server_status is Starting, so /health and
                                                            /health_generate answer 503 until the warm-up request
                                                            has run; then "The server is fired up and ready to roll!"

Until the warm-up phase the port is closed: real SGLang starts its HTTP server only after the schedulers report
the model loaded and the graphs captured. Durations (seconds, compressed: the lab's readiness rounds are seconds
long too): SGLANG_STANDIN_LOAD_SECONDS (weights, default 4), SGLANG_STANDIN_JIT_SECONDS (2),
SGLANG_STANDIN_GRAPH_SECONDS (2), SGLANG_STANDIN_WARMUP_SECONDS (1). Faults: SGLANG_STANDIN_FAULT=hang:PHASE never
leaves that phase, start-fail:PHASE fails in it with a traceback (see settings.py).
"""

from __future__ import annotations

import sys
import time

from sglang.standin import failure
from sglang.standin.logs import log

PHASES = ("init", "weights", "jit", "graphs", "warmup")
# Rough figures of one H200 (141 GB, 139.8 GiB usable) with DeepSeek-R1 FP8 over TP8, for the log lines only.
AVAIL_MEM_START = 139.25
AVAIL_MEM_AFTER_WEIGHTS = 56.71
AVAIL_MEM_AFTER_GRAPHS = 19.87
GRAPH_BATCH_SIZES = (1, 2, 4, 8, 16, 24, 32, 40, 48, 56, 64, 72, 80, 88, 96, 104, 112, 120, 128, 136, 144, 152, 160)


def _stamp() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


def _minutes(seconds: float) -> str:
    return "%02d:%02d" % divmod(int(max(seconds, 0)), 60)


def _bar(desc: str, done: int, total: int, started: float, eta: float, fmt: str = "sglang") -> str:
    elapsed = time.monotonic() - started
    rate = done / elapsed if elapsed > 0 else 0.0
    minutes = _minutes
    percent = int(100 * done / total) if total else 100
    if fmt == "sglang":  # srt/utils/common.py BAR_FORMAT
        return (f"{desc}: {percent:3d}% Completed | {done}/{total} [{minutes(elapsed)}<{minutes(eta)}, "
                f"{rate:5.2f}it/s]")
    return f"{desc}: {percent:3d}%|{'#' * (percent // 10):<10}| {done}/{total} [{minutes(elapsed)}<{minutes(eta)}]"


def _progress(desc: str, total: int, seconds: float, fmt: str = "sglang") -> None:
    """A tqdm bar on stderr, redrawn with carriage returns as tqdm does when stderr is not a terminal."""
    total = max(total, 1)
    started = time.monotonic()
    sys.stderr.write("\r" + _bar(desc, 0, total, started, seconds, fmt))
    sys.stderr.flush()
    for done in range(1, total + 1):
        time.sleep(seconds / total)
        remaining = seconds - (time.monotonic() - started)
        sys.stderr.write("\r" + _bar(desc, done, total, started, remaining, fmt))
        sys.stderr.flush()
    sys.stderr.write("\n")
    sys.stderr.flush()


def hold_or_fail(phase: str, fault_name: str, fault_phase: str, args) -> None:
    if fault_phase != phase:
        return
    if fault_name == "hang":
        log(f"[stand-in] hanging in the {phase} phase (SGLANG_STANDIN_FAULT=hang:{phase})")
        while True:
            time.sleep(3600)
    if fault_name == "start-fail":
        where = {
            "init": "sglang/srt/distributed/parallel_state.py",
            "weights": "sglang/srt/model_loader/weight_utils.py",
            "jit": "sglang/srt/layers/deep_gemm_wrapper/compile_utils.py",
            "graphs": "sglang/srt/model_executor/runner/decode_cuda_graph_runner.py",
            "warmup": "sglang/srt/entrypoints/http_server.py",
        }[phase]
        message = f"Initialization failed in the {phase} phase (SGLANG_STANDIN_FAULT=start-fail:{phase})"
        if phase == "warmup":
            failure.warmup_failure(message)
        # the scheduler processes load the model: a failure there ends as any scheduler crash does (exit 0 as PID 1)
        failure.scheduler_crash(args, "RuntimeError", message, where, serving=False)


def load_model(args, found, durations: dict, fault_name: str, fault_phase: str) -> None:
    """The weights, JIT and CUDA graph phases; the port stays closed throughout."""
    shards = sorted(found.path.glob("*.safetensors")) or sorted(found.path.glob("*.bin"))
    hold_or_fail("weights", fault_name, fault_phase, args)
    log(f"Load weight begin. avail mem={AVAIL_MEM_START:.2f} GB")
    _progress("Multi-thread loading shards", len(shards), durations["weights"])
    architecture = (found.config.get("architectures") or ["?"])[0]
    log(f"Load weight end. elapsed={durations['weights']:.2f} s, type={architecture}, dtype=torch.bfloat16, "
        f"avail mem={AVAIL_MEM_AFTER_WEIGHTS:.2f} GB, mem usage={AVAIL_MEM_START - AVAIL_MEM_AFTER_WEIGHTS:.2f} GB.")

    hold_or_fail("jit", fault_name, fault_phase, args)
    if durations["jit"] > 0:
        log("Try DeepGEMM JIT Compiling for <GEMM_NT_F8F8BF16> N=24576, K=1536, num_groups=1 with all Ms. It only "
            "takes a little time (typically 1 sec) if you have run `python3 -m sglang.compile_deep_gemm`. ")
        _progress("DeepGEMM warmup", 8, durations["jit"], fmt="tqdm")

    hold_or_fail("graphs", fault_name, fault_phase, args)
    if not getattr(args, "disable_cuda_graph", False):
        sizes = [bs for bs in GRAPH_BATCH_SIZES if bs <= (getattr(args, "cuda_graph_max_bs", None) or 160)]
        log(f"Capture decode CUDA graph begin. backend=full, num_tokens_per_req=1, bs={sizes}, "
            f"avail mem={AVAIL_MEM_AFTER_WEIGHTS:.2f} GB")
        started = time.monotonic()
        for index, bs in enumerate(reversed(sizes)):
            sys.stderr.write("\r" + _bar(f"Capturing batches (bs={bs} avail_mem={AVAIL_MEM_AFTER_GRAPHS:.2f} GB)",
                                         index, len(sizes), started, durations["graphs"], fmt="tqdm"))
            sys.stderr.flush()
            time.sleep(durations["graphs"] / len(sizes))
        sys.stderr.write("\n")
        log(f"Capture decode CUDA graph end. elapsed={durations['graphs']:.2f} s, "
            f"mem usage={AVAIL_MEM_AFTER_WEIGHTS - AVAIL_MEM_AFTER_GRAPHS:.2f} GB, "
            f"avail mem={AVAIL_MEM_AFTER_GRAPHS:.2f} GB.")


def warm_up(durations: dict, fault_name: str, fault_phase: str, args) -> None:
    """The HTTP server is up but Starting (health answers 503) while the warm-up request runs."""
    hold_or_fail("warmup", fault_name, fault_phase, args)
    time.sleep(durations["warmup"])
    # The warm-up request's batch, as the scheduler logs it (srt/managers/scheduler_components/metrics_reporter.py)
    log("Prefill batch, #new-seq: 1, #new-token: 6, #cached-token: 0, token usage: 0.00, #running-req: 0, "
        "#queue-req: 0, #pending-token: 0, ")
