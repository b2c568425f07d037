"""Test stand-in for `python3 -m sglang.benchmark.one_batch` / `sglang.bench_one_batch` (not SGLang).

Takes the real tool's flags (every server option plus its BenchArgs, from the generated flag data), needs the GPUs
to itself like the real one (it loads the model): with none visible, too few for --tp, or a server of this
machine holding them (its GPU lock, or a server answering on --port here) it fails as the real one does.
It prints SGLang's output lines (Warmup ..., Prefill., Decode N., Decode.  median, Total., Benchmark ...) and
appends the real JSONL records to --result-filename. The figures come from SGLANG_STANDIN_PREFILL_TOKENS_PER_S
(default 651.90) and SGLANG_STANDIN_DECODE_TOKENS_PER_S (per sequence, default 47.67: the published H200 TP8
batch-1 figure), with a small deterministic step-to-step variation; nothing is actually computed.
"""

from __future__ import annotations

import itertools
import json
import statistics
import sys
import time

from sglang.standin import hardware, model
from sglang.standin.entry import require
from sglang.standin.flags import bench_one_batch_parser
from sglang.standin.logs import fatal
from sglang.standin.settings import SettingError, number

# Decode slows a little as the batch grows (more KV to read per step).
BATCH_SLOWDOWN = 0.015


def _figures():
    try:
        return {
            "prefill_tps": number("SGLANG_STANDIN_PREFILL_TOKENS_PER_S", 651.90) or 651.90,
            "decode_tps": number("SGLANG_STANDIN_DECODE_TOKENS_PER_S", 47.67) or 47.67,
            "load": number("SGLANG_STANDIN_LOAD_SECONDS", 3.0),
        }
    except SettingError as exc:
        fatal("ValueError", f"SGLang stand-in setting: {exc}", "sglang/benchmark/one_batch.py")


def _jitter(step: int) -> float:
    """A repeatable +-1% wobble, so medians and means differ as they do on hardware."""
    return 1.0 + ((step * 7919) % 21 - 10) / 1000.0


def run_once(run_name, batch_size, input_len, output_len, log_decode_step, figures) -> dict:
    result = {"run_name": run_name, "batch_size": batch_size, "input_len": input_len, "output_len": output_len}
    prefill_latency = input_len * batch_size / figures["prefill_tps"]
    total = prefill_latency
    throughput = input_len * batch_size / prefill_latency
    print(f"Prefill. latency: {prefill_latency:6.5f} s, throughput: {throughput:9.2f} token/s")
    result["prefill_latency"] = prefill_latency
    result["prefill_throughput"] = throughput
    step_latency = (1.0 / figures["decode_tps"]) * (1.0 + BATCH_SLOWDOWN * (batch_size - 1))
    decode_latencies = []
    for i in range(output_len - 1):
        latency = step_latency * _jitter(i)
        total += latency
        decode_latencies.append(latency)
        if i < 5 or (log_decode_step > 0 and i % log_decode_step == 0):
            print(
                f"Decode {i}. Batch size: {batch_size}, latency: {latency:6.5f} s, "
                f"throughput: {batch_size / latency:9.2f} token/s"
            )
    if output_len > 1:
        median = statistics.median(decode_latencies)
        print(f"Decode.  median latency: {median:6.5f} s, median throughput: {batch_size / median:9.2f} token/s")
        result["median_decode_latency"] = median
        result["median_decode_throughput"] = batch_size / median
    throughput = (input_len + output_len) * batch_size / total
    print(f"Total. latency: {total:6.3f} s, throughput: {throughput:9.2f} token/s")
    result["total_latency"] = total
    result["overall_throughput"] = throughput
    return result


def _workers_fail_and_the_rest_wait(args, gpus: int) -> None:
    """With TP > 1, main() (sglang/benchmark/one_batch.py, 0.5.18 and 0.5.23) starts one multiprocessing.Process per
    TP rank and joins them in order; nothing watches for a failed one. Workers past the visible GPUs raise in
    set_device (multiprocessing prints `Process Process-N:` and the traceback); the others block in the process
    group's rendezvous, waiting for ranks that will never come, so the join never returns: no output, no exit."""
    for rank in range(gpus, args.tp_size):
        print(f"Process Process-{rank + 1}:", file=sys.stderr)
        print("Traceback (most recent call last):", file=sys.stderr)
        print('  File "/usr/lib/python3.12/multiprocessing/process.py", line 314, in _bootstrap', file=sys.stderr)
        print('  File "/sgl-workspace/sglang/python/sglang/benchmark/one_batch.py", line 980, in latency_test',
              file=sys.stderr)
        print("torch.AcceleratorError: CUDA error: invalid device ordinal", file=sys.stderr, flush=True)
    while True:
        time.sleep(3600)


def cli_main(argv: list[str] | None = None) -> None:
    args = bench_one_batch_parser().parse_args(argv)
    figures = _figures()
    try:
        gpus = hardware.visible_gpu_count()
    except hardware.NoGpu as exc:
        fatal("RuntimeError", str(exc), "torch/cuda/__init__.py")
    if args.tp_size > 1 and args.tp_size > gpus * args.nnodes:
        _workers_fail_and_the_rest_wait(args, gpus)
    if args.tp_size > gpus * args.nnodes:
        fatal(
            "torch.AcceleratorError",
            f"CUDA error: invalid device ordinal (tp_size={args.tp_size}, {gpus} GPUs visible)",
            "sglang/srt/model_executor/model_runner.py",
        )
    if hardware.GpuLock().held_by_other() or hardware.port_answers(args.port):
        fatal(
            "torch.OutOfMemoryError",
            "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 139.81 GiB of which "
            "1.12 GiB is free. Process has 138.69 GiB memory in use "
            "(another SGLang server holds the GPUs: stop it first).",
            "sglang/srt/model_executor/model_runner.py",
        )
    try:
        model.resolve(args.model_path, args.revision)
    except model.ModelNotFound as exc:
        fatal(
            "OSError",
            f"{model.OFFLINE_ERROR} ({exc})"
            if model.offline()
            else f"{exc}. The SGLang stand-in does not download weights.",
            "transformers/utils/hub.py",
        )
    if not args.model_path:
        raise ValueError(
            "Provide --model-path for running the tests or provide --result-filename for plotting the results"
        )
    time.sleep(figures["load"])
    print(f"max_total_num_tokens={400_000}")
    print("Warmup ...")
    run_once(args.run_name, args.batch_size[0], args.input_len[0], min(32, args.output_len[0]), 0, figures)
    print("Benchmark ...")
    results = [
        run_once(args.run_name, bs, il, ol, args.log_decode_step, figures)
        for bs, il, ol in itertools.product(args.batch_size, args.input_len, args.output_len)
    ]
    if args.result_filename:
        with open(args.result_filename, "a") as out:
            for result in results:
                out.write(json.dumps(result) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    require("sglang.benchmark.one_batch")
    cli_main()
