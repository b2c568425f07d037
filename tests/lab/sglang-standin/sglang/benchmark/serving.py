"""Test stand-in for `python3 -m sglang.benchmark.serving` / `sglang.bench_serving` (not SGLang).

Takes the real tool's flags (from the generated flag data), really sends the requests to --base-url or
http://--host:--port (backends sglang / sglang-native -> /generate, sglang-oai / vllm / lmdeploy -> /v1/completions,
sglang-oai-chat / vllm-chat / lmdeploy-chat -> /v1/chat/completions) with `Authorization: Bearer $OPENAI_API_KEY`,
honours --num-prompts, --max-concurrency, --request-rate, --warmup-requests, and prints the real
"Serving Benchmark Result" block and appends the real JSONL record to --output-file.
Figures are computed from what was measured, as the real tool computes them. When SGLANG_STANDIN_TTFT_MS is set in
this process's environment, each request's TTFT is reported as that value; when SGLANG_STANDIN_DECODE_TOKENS_PER_S
is set, its inter-token latencies are 1000 / that (ms); latencies follow from those. Throughputs stay measured.
Differences: a token is a whitespace-separated word (no Hugging Face tokenizer, though the tokenizer's files must
be present as the real tool needs them); `random` and `sharegpt` need --dataset-path (the real tool would download
ShareGPT); other datasets are refused.
"""

from __future__ import annotations

import json
import math
import os
import random
import statistics
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime

from sglang.standin import model as model_lookup
from sglang.standin.entry import require
from sglang.standin.flags import bench_serving_parser
from sglang.standin.logs import fatal
from sglang.standin.settings import SettingError, number

API_PATHS = {
    "sglang": "/generate",
    "sglang-native": "/generate",
    "sglang-oai": "/v1/completions",
    "sglang-oai-chat": "/v1/chat/completions",
    "vllm": "/v1/completions",
    "vllm-chat": "/v1/chat/completions",
    "lmdeploy": "/v1/completions",
    "lmdeploy-chat": "/v1/chat/completions",
}
DEFAULT_PORTS = {"sglang": 30000, "sglang-native": 30000, "sglang-oai": 30000, "lmdeploy": 23333, "vllm": 8000}
WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "a",
    "lazy",
    "dog",
    "while",
    "seven",
    "wizards",
    "quietly",
    "judge",
    "boxing",
    "matches",
]


@dataclass
class Row:
    prompt: str
    prompt_len: int
    output_len: int


@dataclass
class Output:
    success: bool = False
    generated_text: str = ""
    output_len: int = 0
    ttft: float = 0.0
    latency: float = 0.0
    itl: list = field(default_factory=list)
    start_time: float = 0.0
    error: str = ""
    prompt_len: int = 0


def auth_headers(args) -> dict:
    headers = {"Content-Type": "application/json"}
    key = os.environ.get("OPENAI_API_KEY")
    if key:
        headers["Authorization"] = f"Bearer {key}"
    for item in getattr(args, "header", None) or []:
        name, _sep, value = item.partition("=")
        headers[name] = value
    return headers


def _get_json(url: str, headers: dict, timeout: float = 5.0):
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.status, json.loads(response.read() or b"null")


def _percentile(values: list[float], q: float) -> float:
    """numpy.percentile's default (linear interpolation)."""
    values = sorted(values) or [0.0]
    position = (len(values) - 1) * q / 100.0
    low, high = math.floor(position), math.ceil(position)
    return values[low] + (values[high] - values[low]) * (position - low)


def _stats(values: list[float]) -> dict:
    values = values or [0.0]
    return {
        "mean": statistics.fmean(values),
        "median": statistics.median(values),
        "std": statistics.pstdev(values),
        "p90": _percentile(values, 90),
        "p95": _percentile(values, 95),
        "p99": _percentile(values, 99),
        "max": max(values),
    }


def _lens(full_len: int, range_ratio: float, num: int, rng: random.Random) -> list[int]:
    low = max(int(full_len * range_ratio), 1)
    return [rng.randint(low, full_len) for _index in range(num)]


def _words_source(args) -> list[str]:
    if args.dataset_name == "random-ids":
        return WORDS
    path = args.dataset_path
    if not path or not os.path.isfile(path):
        fatal(
            "huggingface_hub.errors.LocalEntryNotFoundError",
            f"--dataset-name {args.dataset_name} needs the ShareGPT file, which the real tool downloads from the Hub: "
            "give --dataset-path, or use --dataset-name random-ids (the SGLang stand-in never downloads)",
            "sglang/benchmark/datasets/common.py",
        )
    try:
        with open(path) as handle:
            data = json.load(handle)
    except (OSError, ValueError) as exc:
        fatal("json.JSONDecodeError", f"{path}: {exc}", "sglang/benchmark/datasets/common.py")
    words = []
    for item in data:
        for turn in (item.get("conversations") or item.get("conversation") or [])[:2]:
            words.extend(str(turn.get("value", "")).split())
    return words or WORDS


def sample_requests(args, rng: random.Random) -> list[Row]:
    if args.dataset_name not in ("random", "random-ids", "sharegpt"):
        fatal(
            "ValueError",
            f"the SGLang stand-in has no {args.dataset_name!r} dataset: use random-ids",
            "sglang/benchmark/datasets/__init__.py",
        )
    source = _words_source(args)
    if args.dataset_name == "sharegpt":
        input_lens = [min(len(source), 64)] * args.num_prompts
        output_lens = [args.sharegpt_output_len or 128] * args.num_prompts
    else:
        input_lens = _lens(args.random_input_len, args.random_range_ratio, args.num_prompts, rng)
        output_lens = _lens(args.random_output_len, args.random_range_ratio, args.num_prompts, rng)
    rows = []
    for i in range(args.num_prompts):
        offset = rng.randrange(len(source))
        words = [source[(offset + j) % len(source)] for j in range(input_lens[i])]
        rows.append(Row(" ".join(words), input_lens[i], output_lens[i]))
    print(f"#Input tokens: {sum(input_lens)}")
    print(f"#Output tokens: {sum(output_lens)}")
    return rows


def _payload(args, backend: str, model: str, row: Row, output_len: int, extra: dict) -> dict:
    stream = not args.disable_stream
    if API_PATHS[backend] == "/generate":
        return {
            "text": row.prompt,
            "sampling_params": {
                "temperature": args.temperature,
                "max_new_tokens": output_len,
                "ignore_eos": not args.disable_ignore_eos,
                **extra,
            },
            "stream": stream,
        }
    body = {
        "model": model,
        "temperature": args.temperature,
        "max_tokens": output_len,
        "stream": stream,
        "ignore_eos": not args.disable_ignore_eos,
        **extra,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    if API_PATHS[backend].endswith("chat/completions"):
        body["messages"] = [{"role": "user", "content": row.prompt}]
    else:
        body["prompt"] = row.prompt
    return body


def send(args, backend: str, api_url: str, model: str, row: Row, output_len: int, extra: dict) -> Output:
    out = Output(prompt_len=row.prompt_len)
    data = json.dumps(_payload(args, backend, model, row, output_len, extra)).encode()
    request = urllib.request.Request(api_url, data=data, headers=auth_headers(args), method="POST")
    out.start_time = time.perf_counter()
    last = out.start_time
    chunks: list[str] = []
    generate = API_PATHS[backend] == "/generate"
    try:
        with urllib.request.urlopen(request, timeout=6 * 3600) as response:
            if args.disable_stream:
                body = json.loads(response.read())
                now = time.perf_counter()
                out.ttft = now - out.start_time
                if generate:
                    out.generated_text = body.get("text", "")
                    out.output_len = body.get("meta_info", {}).get("completion_tokens", output_len)
                else:
                    choice = body["choices"][0]
                    out.generated_text = choice.get("text") or (choice.get("message") or {}).get("content") or ""
                    out.output_len = (body.get("usage") or {}).get("completion_tokens", output_len)
            else:
                for raw in response:
                    line = raw.decode().strip()
                    if not line.startswith("data:"):
                        continue
                    payload = line[5:].strip()
                    if payload == "[DONE]":
                        break
                    event = json.loads(payload)
                    if generate:
                        text = event.get("text", "")
                        delta = text[len("".join(chunks)) :]
                        usage_tokens = (event.get("meta_info") or {}).get("completion_tokens")
                    else:
                        if event.get("usage"):
                            out.output_len = event["usage"].get("completion_tokens", out.output_len)
                        if not event.get("choices"):
                            continue
                        choice = event["choices"][0]
                        delta = choice.get("text") or (choice.get("delta") or {}).get("content") or ""
                        usage_tokens = None
                    if usage_tokens:
                        out.output_len = usage_tokens
                    if not delta:
                        continue
                    now = time.perf_counter()
                    if not chunks:
                        out.ttft = now - out.start_time
                    else:
                        out.itl.append(now - last)
                    last = now
                    chunks.append(delta)
                out.generated_text = "".join(chunks)
                out.output_len = out.output_len or len(chunks)
        out.latency = time.perf_counter() - out.start_time
        out.success = True
    except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
        detail = exc.read().decode(errors="replace") if isinstance(exc, urllib.error.HTTPError) else ""
        out.error = f"{exc} {detail}".strip()
    return out


def _apply_figures(outputs: list[Output]) -> None:
    """SGLANG_STANDIN_TTFT_MS / SGLANG_STANDIN_DECODE_TOKENS_PER_S replace the measured per-request timings."""
    try:
        ttft_ms = number("SGLANG_STANDIN_TTFT_MS", None)
        decode_tps = number("SGLANG_STANDIN_DECODE_TOKENS_PER_S", None)
    except SettingError as exc:
        fatal("ValueError", f"SGLang stand-in setting: {exc}", "sglang/benchmark/serving.py")
    for out in outputs:
        if not out.success:
            continue
        if ttft_ms is not None:
            out.ttft = ttft_ms / 1000.0
        if decode_tps:
            out.itl = [1.0 / decode_tps] * max(0, out.output_len - 1)
        if ttft_ms is not None or decode_tps:
            out.latency = out.ttft + sum(out.itl)


def calculate_metrics(outputs: list[Output], duration: float) -> dict:
    ok = [o for o in outputs if o.success]
    output_lens = [o.output_len if o.success else 0 for o in outputs]
    retokenized = [len(o.generated_text.split()) if o.success else 0 for o in outputs]
    total_input = sum(o.prompt_len for o in ok)
    ttfts = [o.ttft for o in ok]
    tpots = [(o.latency - o.ttft) / (o.output_len - 1) for o in ok if o.output_len > 1]
    itls = [v for o in ok for v in o.itl]
    e2e = [o.latency for o in ok]
    max_tokens_per_s, max_concurrent = 0.0, 0
    if ok:
        start = min(o.start_time for o in ok)
        seconds = math.ceil(max(o.start_time + o.latency for o in ok) - start) + 1
        tokens, concurrent = [0] * seconds, [0] * seconds
        for o in ok:
            t = o.start_time + o.ttft
            times = [t]
            for gap in o.itl:
                t += gap
                times.append(t)
            for moment in times:
                bucket = int(moment - start)
                if 0 <= bucket < seconds:
                    tokens[bucket] += 1
            for second in range(int(o.start_time - start), min(int(o.start_time + o.latency - start) + 1, seconds)):
                concurrent[second] += 1
        max_tokens_per_s, max_concurrent = float(max(tokens)), max(concurrent)
    ttft_s, tpot_s, itl_s, e2e_s = _stats(ttfts), _stats(tpots), _stats(itls), _stats(e2e)
    metrics = {
        "completed": len(ok),
        "total_input": total_input,
        "total_input_text": total_input,
        "total_input_vision": 0,
        "total_output": sum(output_lens),
        "total_output_retokenized": sum(retokenized),
        "request_throughput": len(ok) / duration,
        "input_throughput": total_input / duration,
        "output_throughput": sum(output_lens) / duration,
        "total_throughput": (total_input + sum(output_lens)) / duration,
        "concurrency": sum(e2e) / duration,
        "max_output_tokens_per_s": max_tokens_per_s,
        "max_concurrent_requests": max_concurrent,
    }
    for name, s in (("ttft", ttft_s), ("tpot", tpot_s), ("itl", itl_s), ("e2e_latency", e2e_s)):
        for stat in ("mean", "median", "std", "p90", "p95", "p99"):
            metrics[f"{stat}_{name}_ms"] = s[stat] * 1000
    metrics["max_itl_ms"] = itl_s["max"] * 1000
    return metrics, output_lens


def _line(label, value, fmt="") -> None:
    print(("{:<40} {:<10" + fmt + "}").format(label, value))


def print_results(args, backend, request_rate, max_concurrency, duration, m, accept_length) -> None:
    print("\n{s:{c}^{n}}".format(s=" Serving Benchmark Result ", n=50, c="="))
    _line("Backend:", backend)
    _line("Traffic request rate:", "trace" if args.use_trace_timestamps else request_rate)
    _line("Max request concurrency:", max_concurrency if max_concurrency else "not set")
    _line("Successful requests:", m["completed"])
    _line("Benchmark duration (s):", duration, ".2f")
    _line("Total input tokens:", m["total_input"])
    _line("Total input text tokens:", m["total_input_text"])
    _line("Total generated tokens:", m["total_output"])
    _line("Total generated tokens (retokenized):", m["total_output_retokenized"])
    _line("Request throughput (req/s):", m["request_throughput"], ".2f")
    _line("Input token throughput (tok/s):", m["input_throughput"], ".2f")
    _line("Output token throughput (tok/s):", m["output_throughput"], ".2f")
    _line("Peak output token throughput (tok/s):", m["max_output_tokens_per_s"], ".2f")
    _line("Peak concurrent requests:", m["max_concurrent_requests"])
    _line("Total token throughput (tok/s):", m["total_throughput"], ".2f")
    _line("Concurrency:", m["concurrency"], ".2f")
    if accept_length:
        _line("Accept length:", accept_length, ".2f")
    print("{s:{c}^{n}}".format(s="End-to-End Latency", n=50, c="-"))
    for stat, label in (("mean", "Mean"), ("median", "Median"), ("p90", "P90"), ("p95", "P95"), ("p99", "P99")):
        _line(f"{label} E2E Latency (ms):", m[f"{stat}_e2e_latency_ms"], ".2f")
    print("{s:{c}^{n}}".format(s="Time to First Token", n=50, c="-"))
    for stat, label in (("mean", "Mean"), ("median", "Median"), ("p90", "P90"), ("p95", "P95"), ("p99", "P99")):
        _line(f"{label} TTFT (ms):", m[f"{stat}_ttft_ms"], ".2f")
    print("{s:{c}^{n}}".format(s="Time per Output Token (excl. 1st token)", n=50, c="-"))
    for stat, label in (("mean", "Mean"), ("median", "Median"), ("p90", "P90"), ("p95", "P95"), ("p99", "P99")):
        _line(f"{label} TPOT (ms):", m[f"{stat}_tpot_ms"], ".2f")
    print("{s:{c}^{n}}".format(s="Inter-Token Latency", n=50, c="-"))
    for stat, label in (("mean", "Mean"), ("median", "Median"), ("p90", "P90"), ("p95", "P95"), ("p99", "P99")):
        _line(f"{label} ITL (ms):", m[f"{stat}_itl_ms"], ".2f")
    _line("Max ITL (ms):", m["max_itl_ms"], ".2f")
    print("=" * 50)


def run_requests(args, backend, api_url, model, rows, extra) -> tuple[list[Output], float]:
    results: list[Output | None] = [None] * len(rows)
    slots = threading.Semaphore(args.max_concurrency) if args.max_concurrency else None
    rng = random.Random(args.seed)
    threads = []

    progress = _Bar(len(rows), disabled=bool(getattr(args, "disable_tqdm", False)))

    def one(index: int) -> None:
        if slots:
            slots.acquire()
        try:
            results[index] = send(args, backend, api_url, model, rows[index], rows[index].output_len, extra)
        finally:
            if slots:
                slots.release()
            progress.update()

    start = time.perf_counter()
    for index in range(len(rows)):
        thread = threading.Thread(target=one, args=(index,), daemon=True)
        thread.start()
        threads.append(thread)
        if args.request_rate != float("inf"):
            time.sleep(rng.expovariate(args.request_rate))
    for thread in threads:
        thread.join()
    progress.close()
    return results, time.perf_counter() - start  # type: ignore[return-value]


class _Bar:
    """bench_serving's progress bar (``tqdm(total=len(input_requests))``, one step per finished request) on stderr,
    redrawn with carriage returns as tqdm does when stderr is not a terminal: `` 45%|####5     | 36/80 [00:05<00:06,
    7.20it/s]``."""

    def __init__(self, total: int, disabled: bool = False) -> None:
        self.total, self.done, self.disabled = total, 0, disabled
        self.started = time.monotonic()
        self.lock = threading.Lock()
        self._draw()

    def _draw(self) -> None:
        if self.disabled:
            return
        elapsed = time.monotonic() - self.started
        rate = self.done / elapsed if elapsed > 0 and self.done else 0.0
        remaining = (self.total - self.done) / rate if rate else None
        percent = 100 * self.done / self.total if self.total else 100.0
        filled = int(percent // 10)
        drawn = ("#" * filled + ("" if filled == 10 else " 123456789"[int(percent % 10)])).ljust(10)[:10]
        clock = "%02d:%02d" % divmod(int(elapsed), 60)
        eta = "%02d:%02d" % divmod(int(remaining), 60) if remaining is not None else "?"
        speed = f"{rate:5.2f}it/s" if rate else "?it/s"
        sys.stderr.write(f"\r{percent:3.0f}%|{drawn}| {self.done}/{self.total} [{clock}<{eta}, {speed}]")
        sys.stderr.flush()

    def update(self) -> None:
        with self.lock:
            self.done += 1
            self._draw()

    def close(self) -> None:
        if not self.disabled:
            sys.stderr.write("\n")
            sys.stderr.flush()


def run_benchmark(args) -> dict:
    print(f"benchmark_args={args}")
    random.seed(args.seed)
    rng = random.Random(args.seed)
    extra = json.loads(args.extra_request_body) if args.extra_request_body else {}
    backend = args.backend
    if backend not in API_PATHS:
        print(f"The SGLang stand-in's bench_serving supports the backends {', '.join(API_PATHS)}, not {backend}")
        sys.exit(1)
    if args.port is None:
        args.port = DEFAULT_PORTS.get(backend, 30000)
    host = f"[{args.host}]" if ":" in args.host else args.host
    base_url = (args.base_url or f"http://{host}:{args.port}").rstrip("/")
    model_url = f"{base_url}/v1/models"
    api_url = f"{base_url}{API_PATHS[backend]}"
    headers = auth_headers(args)

    if args.ready_check_timeout_sec > 0:
        deadline = time.monotonic() + args.ready_check_timeout_sec
        while True:
            try:
                if _get_json(model_url, headers)[0] == 200:
                    break
            except (urllib.error.URLError, OSError, ValueError):
                pass
            if time.monotonic() >= deadline:
                print(f"Server at {model_url} is not ready. Exiting.")
                sys.exit(1)
            time.sleep(1)

    if args.model is None:
        try:
            args.model = (_get_json(model_url, headers)[1].get("data") or [{}])[0].get("id")
        except (urllib.error.URLError, OSError, ValueError) as exc:
            print(f"Failed to fetch model from {model_url}. Error: {exc}")
            print("Please specify the correct host and port using `--host` and `--port`.")
            sys.exit(1)
    if args.model is None:
        print("No model specified or found. Please provide a model using `--model`.")
        sys.exit(1)
    print(f"{args}\n")

    model_id = args.served_model_name or args.model
    tokenizer_id = args.tokenizer
    if tokenizer_id is None:
        try:
            info = _get_json(base_url + "/model_info", headers)[1]
            tokenizer_id = info.get("tokenizer_path") or info.get("model_path")
        except (urllib.error.URLError, OSError, ValueError):
            tokenizer_id = None
        tokenizer_id = tokenizer_id or args.model
    try:
        model_lookup.resolve(tokenizer_id, None)
    except model_lookup.ModelNotFound as exc:
        fatal(
            "OSError", f"Can't load tokenizer for '{tokenizer_id}'. ({exc})", "transformers/tokenization_utils_base.py"
        )

    rows = sample_requests(args, rng)
    warmups = args.warmup_requests
    print(f"Starting warmup with {warmups} sequences...")
    warm = [
        send(args, backend, api_url, model_id, rows[0], min(rows[0].output_len, 32), extra) for _index in range(warmups)
    ]
    if warmups > 0 and not any(o.success for o in warm):
        raise ValueError(
            f"Warmup failed - Please make sure benchmark arguments are correctly specified. Error: {warm[0].error}"
        )
    print(f"Warmup completed with {warmups} sequences. Starting main benchmark run...")
    if args.flush_cache:
        urllib.request.urlopen(
            urllib.request.Request(base_url + "/flush_cache", data=b"", headers=headers),
            timeout=args.flush_cache_timeout,
        )
    time.sleep(1.0)

    outputs, duration = run_requests(args, backend, api_url, model_id, rows, extra)
    _apply_figures(outputs)
    accept_length = None
    server_info = None
    if "sglang" in backend:
        try:
            status, server_info = _get_json(base_url + "/server_info", headers)
            states = (server_info or {}).get("internal_states") or [{}]
            accept_length = states[0].get("avg_spec_accept_length") if status == 200 else None
        except (urllib.error.URLError, OSError, ValueError):
            server_info = None
    metrics, output_lens = calculate_metrics(outputs, duration)
    print_results(args, backend, args.request_rate, args.max_concurrency, duration, metrics, accept_length)

    result = {
        "tag": getattr(args, "tag", None),
        "backend": args.backend,
        "dataset_name": args.dataset_name,
        "request_rate": "trace" if args.use_trace_timestamps else args.request_rate,
        "max_concurrency": args.max_concurrency,
        "sharegpt_output_len": args.sharegpt_output_len,
        "random_input_len": args.random_input_len,
        "random_output_len": args.random_output_len,
        "random_range_ratio": args.random_range_ratio,
        "server_info": server_info,
        "duration": duration,
        "completed": metrics["completed"],
        "total_input_tokens": metrics["total_input"],
        "total_input_text_tokens": metrics["total_input_text"],
        "total_input_vision_tokens": metrics["total_input_vision"],
        "total_output_tokens": metrics["total_output"],
        "total_output_tokens_retokenized": metrics["total_output_retokenized"],
        "request_throughput": metrics["request_throughput"],
        "input_throughput": metrics["input_throughput"],
        "output_throughput": metrics["output_throughput"],
        "total_throughput": metrics["total_throughput"],
    }
    for name in ("e2e_latency", "ttft", "tpot", "itl"):
        for stat in ("mean", "median", "std", "p90", "p95", "p99"):
            result[f"{stat}_{name}_ms"] = metrics[f"{stat}_{name}_ms"]
    result.update(
        {
            "concurrency": metrics["concurrency"],
            "accept_length": accept_length,
            "max_output_tokens_per_s": metrics["max_output_tokens_per_s"],
            "max_concurrent_requests": metrics["max_concurrent_requests"],
        }
    )
    if args.output_file:
        output_file = args.output_file
    else:
        now = datetime.now().strftime("%m%d")
        if args.dataset_name.startswith("random"):
            output_file = (
                f"{args.backend}_{now}_{args.num_prompts}_{args.random_input_len}_{args.random_output_len}.jsonl"
            )
        else:
            output_file = f"{args.backend}_{now}_{args.num_prompts}_{args.dataset_name}.jsonl"
    details = {
        "input_lens": [o.prompt_len for o in outputs],
        "output_lens": output_lens,
        "ttfts": [o.ttft for o in outputs],
        "itls": [o.itl for o in outputs],
        "generated_texts": [o.generated_text for o in outputs],
        "errors": [o.error for o in outputs],
    }
    with open(output_file, "a") as handle:
        handle.write(json.dumps(result | details if args.output_details else result) + "\n")
    return result | details


def cli_main(argv: list[str] | None = None) -> None:
    args = bench_serving_parser().parse_args(argv)
    run_benchmark(args)


if __name__ == "__main__":
    require("sglang.benchmark.serving")
    cli_main()
