"""Test stand-in (not SGLang): the HTTP surface of SGLang's server, on a ThreadingHTTPServer.

Rank 0 serves /health, /health_generate, /model_info (/get_model_info), /server_info (/get_server_info), /v1/models,
/generate, /v1/completions, /v1/chat/completions (JSON, or SSE with "stream": true), /flush_cache and, with
--enable-metrics, /metrics in Prometheus text. With --api-key every path but /health* and /metrics needs
`Authorization: Bearer <key>` (401 {"error": "Unauthorized"} otherwise), as SGLang's middleware decides.
Generation takes SGLANG_STANDIN_TTFT_MS before the first token and SGLANG_STANDIN_DECODE_MS_PER_TOKEN per token
after it; at most --max-running-requests run at once, the rest queue, and the metrics show both.
Ranks >= 1 run only the dummy health server: /health and /health_generate, 404 elsewhere.
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
import socket
import threading
import time
import uuid
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from sglang.standin import textgen
from sglang.standin.logs import log

TTFT_BUCKETS = [0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 15.0, 20.0, 25.0, 30.0]
DEFAULT_MAX_RUNNING = 256
DEFAULT_MAX_TOTAL_TOKENS = 400_000


class ServerState:
    """What the server knows about itself: readiness, load, counters."""

    def __init__(self, args: argparse.Namespace, version: str, model, ttft_ms: float, decode_ms: float):
        self.args = args
        self.version = version
        self.model = model
        self.ttft = ttft_ms / 1000.0
        self.decode = decode_ms / 1000.0
        self.served_name = args.served_model_name or args.model_path
        self.startup_time = time.time()
        self.ready = threading.Event()
        self.never_ready = False
        self.unhealthy_reason = ""
        # Rank 0 of a multi-node unit: the steps it runs with the other nodes (collective.Rank0Group); None alone.
        # A step that never finishes (a node lost) holds every request and the health check's generation.
        self.group = None
        self.group_error = None
        # SIGTERM received (failure.Shutdown): /health_generate answers 503, as SGLang's does during shutdown.
        self.shutting_down = threading.Event()
        self.lock = threading.Condition()
        self.max_running = args.max_running_requests or DEFAULT_MAX_RUNNING
        self.max_total_tokens = args.max_total_tokens or DEFAULT_MAX_TOTAL_TOKENS
        self.running = 0
        self.queued = 0
        self.tokens_in_use = 0
        # With DP attention each DP rank schedules its own requests in its own KV pool and publishes its own
        # metrics (one series per DP rank); requests go to the ranks in turn (the controller's round robin).
        dp = getattr(args, "dp_size", 1) or 1
        self.dp_ranks = dp if getattr(args, "enable_dp_attention", False) and dp > 1 else 1
        self.rank_running = [0] * self.dp_ranks
        self.rank_queued = [0] * self.dp_ranks
        self.rank_tokens = [0] * self.dp_ranks
        self.priority_scheduling = bool(getattr(args, "enable_priority_scheduling", False))
        self.prompt_tokens_total = 0
        self.generation_tokens_total = 0
        self.requests_total = 0
        self.ttft_observations: list[float] = []
        self.recent_tokens: deque[float] = deque()

    # -- readiness --
    def healthy(self) -> bool:
        return self.ready.is_set() and not self.never_ready and not self.unhealthy_reason

    def mark_unhealthy(self, reason: str) -> None:
        with self.lock:
            if not self.unhealthy_reason:
                self.unhealthy_reason = reason

    # -- load --
    def admit(self, tokens: int) -> int:
        """Wait for a slot; the DP rank that runs the request."""
        with self.lock:
            rank = self.requests_total % self.dp_ranks
            self.requests_total += 1
            self.queued += 1
            self.rank_queued[rank] += 1
            while self.running >= self.max_running:
                self.lock.wait()
            self.queued -= 1
            self.rank_queued[rank] -= 1
            self.running += 1
            self.rank_running[rank] += 1
            self.tokens_in_use += tokens
            self.rank_tokens[rank] += tokens
            self.prompt_tokens_total += tokens
            return rank

    def token_generated(self, rank: int = 0) -> None:
        now = time.monotonic()
        with self.lock:
            self.generation_tokens_total += 1
            self.tokens_in_use += 1
            self.rank_tokens[rank] += 1
            self.recent_tokens.append(now)

    def release(self, tokens: int, rank: int = 0) -> None:
        with self.lock:
            self.running -= 1
            self.rank_running[rank] -= 1
            self.tokens_in_use -= tokens
            self.rank_tokens[rank] -= tokens
            self.lock.notify()

    def gen_throughput(self) -> float:
        horizon = time.monotonic() - 5.0
        with self.lock:
            while self.recent_tokens and self.recent_tokens[0] < horizon:
                self.recent_tokens.popleft()
            return len(self.recent_tokens) / 5.0

    def server_info_args(self) -> dict:
        """Every parsed argument, secrets in plain text, as SGLang's /server_info returns them: 0.5.18 spreads
        dataclasses.asdict(server_args) (server_info in sglang/srt/entrypoints/http_server.py); 0.5.23 spreads
        build_server_info (sglang/srt/utils/common.py: server_args.resolved_dict()) and redacts only the watermark
        secrets (redact_watermark_secrets, sglang/srt/sampling/watermarking/core.py). The API key, the admin API key
        and the SSL key password are all in the answer, and bench_serving writes that answer into its result file."""
        return json.loads(json.dumps(vars(self.args), default=str))


def _scheduler_labels(state: ServerState, rank: int) -> dict:
    """SchedulerMetricsCollector's labels (srt/observability/metrics_collector.py, 0.5.18 and 0.5.23): each
    scheduler that logs stats (attn_tp_rank 0: every DP rank's first TP rank) publishes its own series; priority=""
    marks the totals when priority scheduling is on; dp_rank is there with DP attention."""
    tp_rank = rank * (state.args.tp_size // state.dp_ranks)
    labels = {
        "model_name": state.served_name,
        "engine_type": "unified",
        "tp_rank": str(tp_rank),
        "pp_rank": "0",
        "moe_ep_rank": str(tp_rank if (getattr(state.args, "ep_size", 1) or 1) > 1 else 0),
    }
    if state.priority_scheduling:
        labels["priority"] = ""
    if state.dp_ranks > 1:
        labels["dp_rank"] = str(rank)
    return labels


def _prometheus(state: ServerState) -> str:
    tokenizer = {"model_name": state.served_name}

    def labels(values: dict) -> str:
        return "{" + ",".join(f'{k}="{v}"' for k, v in values.items()) + "}"

    lines: list[str] = []

    def metric(name, kind, doc, value, label_values):
        lines.extend([f"# HELP {name} {doc}", f"# TYPE {name} {kind}", f"{name}{labels(label_values)} {float(value)}"])

    with state.lock:
        per_rank = [
            (_scheduler_labels(state, rank), state.rank_running[rank], state.rank_queued[rank],
             min(1.0, state.rank_tokens[rank] / state.max_total_tokens))
            for rank in range(state.dp_ranks)
        ]
        prompt_total, gen_total, req_total = (
            state.prompt_tokens_total,
            state.generation_tokens_total,
            state.requests_total,
        )
        ttfts = list(state.ttft_observations)
    throughput = state.gen_throughput() / state.dp_ranks

    def per_rank_metric(name, doc, pick, breakdown=False):
        lines.extend([f"# HELP {name} {doc}", f"# TYPE {name} gauge"])
        for values in per_rank:
            lines.append(f"{name}{labels(values[0])} {float(pick(values))}")
            if breakdown and state.priority_scheduling:
                # _log_gauge_queue_count: the same requests again, by priority (the stand-in's all have priority 0)
                lines.append(f"{name}{labels({**values[0], 'priority': '0'})} {float(pick(values))}")

    per_rank_metric("sglang:num_running_reqs", "The number of running requests.", lambda v: v[1], breakdown=True)
    per_rank_metric("sglang:num_queue_reqs", "The number of requests in the waiting queue.", lambda v: v[2],
                    breakdown=True)
    per_rank_metric("sglang:gen_throughput", "The generation throughput (token/s).", lambda v: throughput)
    per_rank_metric("sglang:token_usage", "The token usage.", lambda v: round(v[3], 6))
    metric("sglang:prompt_tokens_total", "counter", "Number of prefill tokens processed.", prompt_total, tokenizer)
    metric("sglang:generation_tokens_total", "counter", "Number of generation tokens processed.", gen_total, tokenizer)
    metric("sglang:num_requests_total", "counter", "Number of requests processed.", req_total, tokenizer)
    name = "sglang:time_to_first_token_seconds"
    lines += [f"# HELP {name} Histogram of time to first token in seconds.", f"# TYPE {name} histogram"]
    for bucket in [*TTFT_BUCKETS, float("inf")]:
        le = "+Inf" if bucket == float("inf") else str(bucket)
        count = sum(1 for t in ttfts if t <= bucket)
        lines.append(f"{name}_bucket{labels({**tokenizer, 'le': le})} {float(count)}")
    lines.append(f"{name}_sum{labels(tokenizer)} {float(sum(ttfts))}")
    lines.append(f"{name}_count{labels(tokenizer)} {float(len(ttfts))}")
    return "\n".join(lines) + "\n"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "uvicorn"
    sys_version = ""
    state: ServerState

    # -- plumbing --
    def log_message(self, format, *args):
        pass

    def _access_log(self, status: int) -> None:
        phrase = self.responses.get(status, ("",))[0]
        print(
            f'INFO:     {self.client_address[0]}:{self.client_address[1]} - "{self.command} {self.path} '
            f'{self.request_version}" {status} {phrase}',
            flush=True,
        )

    def _send(self, status: int, body: bytes = b"", content_type: str = "application/json") -> None:
        self.send_response_only(status)
        self.send_header("date", self.date_time_string())
        self.send_header("server", "uvicorn")
        self.send_header("content-length", str(len(body)))
        if body:
            self.send_header("content-type", content_type)
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)
        self._access_log(status)

    def _json(self, status: int, payload) -> None:
        self._send(status, json.dumps(payload).encode())

    def _body(self) -> dict | None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            data = json.loads(raw or b"{}")
        except ValueError as exc:
            self._json(
                400,
                {
                    "object": "error",
                    "message": f"Invalid JSON body: {exc}",
                    "type": "BadRequestError",
                    "param": None,
                    "code": 400,
                },
            )
            return None
        if not isinstance(data, dict):
            self._json(
                400,
                {
                    "object": "error",
                    "message": "The request body must be a JSON object",
                    "type": "BadRequestError",
                    "param": None,
                    "code": 400,
                },
            )
            return None
        return data

    def _start_stream(self) -> None:
        self.send_response_only(200)
        self.send_header("date", self.date_time_string())
        self.send_header("server", "uvicorn")
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        self._access_log(200)

    def _event(self, payload) -> None:
        data = ("data: " + (payload if isinstance(payload, str) else json.dumps(payload)) + "\n\n").encode()
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _authorized(self) -> bool:
        key = self.state.args.api_key
        path = self.path.split("?", 1)[0]
        if not key or path.startswith("/health") or path.startswith("/metrics"):
            return True
        header = self.headers.get("authorization") or ""
        scheme, _sep, token = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.encode(), key.encode())

    # -- routing --
    def do_GET(self):
        self._route("GET")

    def do_POST(self):
        self._route("POST")

    def do_HEAD(self):
        self._route("HEAD")

    def _route(self, method: str) -> None:
        path = self.path.split("?", 1)[0]
        if not self._authorized():
            self._json(401, {"error": "Unauthorized"})
            return
        routes = {
            "/health": ("GET", self._health),
            "/health_generate": ("GET", self._health),
            "/model_info": ("GET", self._model_info),
            "/get_model_info": ("GET", self._model_info),
            "/server_info": ("GET", self._server_info),
            "/get_server_info": ("GET", self._server_info),
            "/v1/models": ("GET", self._models),
            "/metrics": ("GET", self._metrics),
            "/generate": ("POST", self._generate),
            "/v1/completions": ("POST", self._completions),
            "/v1/chat/completions": ("POST", self._chat),
            "/flush_cache": ("POST", self._flush_cache),
        }
        if path not in routes or (path == "/metrics" and not self.state.args.enable_metrics):
            self._json(404, {"detail": "Not Found"})
            return
        wanted, handler = routes[path]
        if method not in (wanted, "HEAD" if wanted == "GET" else wanted):
            self._json(405, {"detail": "Method Not Allowed"})
            return
        if path.startswith("/get_"):
            log(
                f"Endpoint '{path}' is deprecated and will be removed in a future version. "
                f"Please use '{path.replace('/get_', '/')}' instead."
            )
        handler()

    # -- endpoints --
    def _health(self) -> None:
        """health_generate (sglang/srt/entrypoints/http_server.py, 0.5.18 and 0.5.23): 503 while starting or shutting
        down; /health answers 200 without a generation (unless SGLANG_ENABLE_HEALTH_ENDPOINT_GENERATION); otherwise
        one generated token within SGLANG_HEALTH_CHECK_TIMEOUT (20 s) or 503 after it."""
        state = self.state
        if state.shutting_down.is_set() or not state.healthy():
            self._send(503)
            return
        generate = self.path.split("?", 1)[0] == "/health_generate" or os.environ.get(
            "SGLANG_ENABLE_HEALTH_ENDPOINT_GENERATION", "").lower() in ("1", "true")
        timeout = float(os.environ.get("SGLANG_HEALTH_CHECK_TIMEOUT", "20"))
        if generate and state.group is not None and not state.group.progressed_since(time.monotonic(), timeout):
            # No output from the scheduler since the check began: its steps with the other nodes do not finish.
            started = time.strftime("%H:%M:%S", time.localtime(time.time() - timeout))
            log(f"Health check failed. Server couldn't get a response from detokenizer for last {timeout:g} seconds. "
                f"tic start time: {started}. last_heartbeat time: {started}")
            self._send(503)
            return
        self._send(200)

    def _model_info(self) -> None:
        args, config = self.state.args, self.state.model.config
        self._json(
            200,
            {
                "model_path": args.model_path,
                "served_model_name": self.state.served_name,
                "tokenizer_path": args.tokenizer_path or args.model_path,
                "is_generation": True,
                "preferred_sampling_params": getattr(args, "preferred_sampling_params", None),
                "weight_version": getattr(args, "weight_version", "default"),
                "load_format": getattr(args, "load_format", "auto"),
                "reasoning_parser": getattr(args, "reasoning_parser", None),
                "tool_call_parser": getattr(args, "tool_call_parser", None),
                "has_image_understanding": False,
                "has_audio_understanding": False,
                "model_type": config.get("model_type"),
                "architectures": config.get("architectures"),
            },
        )

    def _server_info(self) -> None:
        self._json(
            200,
            {
                **self.state.server_info_args(),
                "max_total_num_tokens": self.state.max_total_tokens,
                "startup_time": self.state.startup_time,
                "internal_states": [
                    {"last_gen_throughput": self.state.gen_throughput(), "avg_spec_accept_length": None}
                ],
                "version": self.state.version,
            },
        )

    def _models(self) -> None:
        name = self.state.served_name
        self._json(
            200,
            {
                "object": "list",
                "data": [
                    {
                        "id": name,
                        "object": "model",
                        "created": int(self.state.startup_time),
                        "owned_by": "sglang",
                        "root": name,
                        "parent": None,
                        "max_model_len": self.state.model.context_length,
                    }
                ],
            },
        )

    def _metrics(self) -> None:
        self._send(200, _prometheus(self.state).encode(), "text/plain; version=0.0.4; charset=utf-8")

    def _flush_cache(self) -> None:
        self._send(
            200,
            b"Cache flushed.\nPlease check backend logs for more details. "
            b"(When there are running or waiting requests, the operation will not be performed.)\n",
            "text/plain; charset=utf-8",
        )

    def _unavailable(self) -> bool:
        if self.state.healthy() or self.state.never_ready:
            return False
        self._json(
            503,
            {
                "object": "error",
                "message": f"The server is not healthy: {self.state.unhealthy_reason or 'starting'}",
                "type": "ServiceUnavailableError",
                "param": None,
                "code": 503,
            },
        )
        return True

    def _run(self, prompt, prompt_tokens: int, max_tokens: int, ignore_eos: bool, on_token):
        """Generate with the configured timing; on_token(index, token) is called as each token is produced."""
        tokens = textgen.generate(prompt, max_tokens, ignore_eos)
        state = self.state
        rank = state.admit(prompt_tokens)
        started = time.monotonic()
        try:
            for index, token in enumerate(tokens):
                if state.group is not None:  # the forward pass's collectives with the other nodes
                    state.group.step(forward=True)
                time.sleep(state.ttft if index == 0 else state.decode)
                if index == 0:
                    with state.lock:
                        state.ttft_observations.append(time.monotonic() - started)
                state.token_generated(rank)
                on_token(index, token)
        finally:
            state.release(prompt_tokens + len(tokens), rank)
        return tokens, time.monotonic() - started

    def _generate(self) -> None:
        body = self._body()
        if body is None or self._unavailable():
            return
        prompt = body.get("input_ids") if body.get("input_ids") is not None else body.get("text", "")
        if isinstance(prompt, list) and prompt and isinstance(prompt[0], str):
            prompt = prompt[0]
        params = body.get("sampling_params") or {}
        max_tokens = int(params.get("max_new_tokens", 128))
        prompt_tokens = textgen.count_tokens(prompt)
        rid = uuid.uuid4().hex

        def meta(done: int, finished: bool, latency: float):
            finish = None
            if finished:
                finish = {"type": "length", "length": done} if done >= max_tokens else {"type": "stop", "matched": 1}
            return {
                "id": rid,
                "finish_reason": finish,
                "prompt_tokens": prompt_tokens,
                "completion_tokens": done,
                "cached_tokens": 0,
                "e2e_latency": latency,
            }

        if body.get("stream"):
            self._start_stream()
            text: list[str] = []

            def emit(index, token):
                text.append(token)
                self._event({"text": "".join(text), "meta_info": meta(index + 1, False, 0.0)})

            tokens, latency = self._run(prompt, prompt_tokens, max_tokens, bool(params.get("ignore_eos")), emit)
            self._event({"text": "".join(text), "meta_info": meta(len(tokens), True, latency)})
            self._event("[DONE]")
            self._end_stream()
            return
        tokens, latency = self._run(
            prompt, prompt_tokens, max_tokens, bool(params.get("ignore_eos")), lambda i, t: None
        )
        self._json(
            200,
            {
                "text": "".join(tokens),
                "output_ids": list(range(len(tokens))),
                "meta_info": meta(len(tokens), True, latency),
            },
        )

    def _openai(self, chat: bool) -> None:
        body = self._body()
        if body is None or self._unavailable():
            return
        if chat:
            prompt, prompt_tokens = textgen.chat_prompt(body.get("messages"))
        else:
            prompt = body.get("prompt", "")
            if isinstance(prompt, list) and prompt and isinstance(prompt[0], str):
                prompt = prompt[0]
            prompt_tokens = textgen.count_tokens(prompt)
        max_tokens = int(body.get("max_completion_tokens") or body.get("max_tokens") or (None if chat else 16) or 128)
        ignore_eos = bool(body.get("ignore_eos"))
        rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
        created = int(time.time())
        model = body.get("model") or self.state.served_name
        kind = "chat.completion" if chat else "text_completion"

        def usage(done: int) -> dict:
            return {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": done,
                "total_tokens": prompt_tokens + done,
                "prompt_tokens_details": None,
            }

        def finish(done: int) -> str:
            return "length" if done >= max_tokens else "stop"

        if body.get("stream"):
            self._start_stream()
            chunk_kind = kind + ".chunk" if chat else kind

            def chunk(choice: dict) -> dict:
                return {"id": rid, "object": chunk_kind, "created": created, "model": model, "choices": [choice]}

            if chat:
                self._event(
                    chunk(
                        {
                            "index": 0,
                            "delta": {"role": "assistant", "content": ""},
                            "logprobs": None,
                            "finish_reason": None,
                        }
                    )
                )

            def emit(index, token):
                if chat:
                    self._event(
                        chunk({"index": 0, "delta": {"content": token}, "logprobs": None, "finish_reason": None})
                    )
                else:
                    self._event(chunk({"index": 0, "text": token, "logprobs": None, "finish_reason": None}))

            tokens, _latency = self._run(prompt, prompt_tokens, max_tokens, ignore_eos, emit)
            last = {"index": 0, "logprobs": None, "finish_reason": finish(len(tokens))}
            last.update({"delta": {}} if chat else {"text": ""})
            self._event(chunk(last))
            if (body.get("stream_options") or {}).get("include_usage"):
                self._event(
                    {
                        "id": rid,
                        "object": chunk_kind,
                        "created": created,
                        "model": model,
                        "choices": [],
                        "usage": usage(len(tokens)),
                    }
                )
            self._event("[DONE]")
            self._end_stream()
            return
        tokens, _latency = self._run(prompt, prompt_tokens, max_tokens, ignore_eos, lambda i, t: None)
        text = "".join(tokens)
        choice = {"index": 0, "logprobs": None, "finish_reason": finish(len(tokens))}
        if chat:
            choice["message"] = {"role": "assistant", "content": text, "reasoning_content": None, "tool_calls": None}
        else:
            choice["text"] = text
        self._json(
            200,
            {
                "id": rid,
                "object": kind,
                "created": created,
                "model": model,
                "choices": [choice],
                "usage": usage(len(tokens)),
            },
        )

    def _completions(self) -> None:
        self._openai(chat=False)

    def _chat(self) -> None:
        self._openai(chat=True)


class _HealthOnlyHandler(_Handler):
    """The dummy health server of ranks >= 1 (launch_dummy_health_check_server, sglang/srt/utils/common.py, 0.5.18
    and 0.5.23): /ping, /health and /health_generate answer 200 whatever the schedulers do, from the moment the
    node's schedulers were ready; nothing else is served."""

    def _route(self, method: str) -> None:
        path = self.path.split("?", 1)[0]
        if path in ("/ping", "/health", "/health_generate") and method in ("GET", "HEAD"):
            self._send(200)
        else:
            self._json(404, {"detail": "Not Found"})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _Server6(_Server):
    address_family = socket.AF_INET6


def make_server(state: ServerState, host: str, port: int, health_only: bool = False) -> ThreadingHTTPServer:
    handler = type("Handler", (_HealthOnlyHandler if health_only else _Handler,), {"state": state})
    return (_Server6 if ":" in host else _Server)((host, port), handler)
