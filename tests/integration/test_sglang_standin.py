"""The SGLang test stand-in (tests/lab/sglang-standin) behaves as SGLang does, as far as a deployment tool can tell.

Run as a local process on loopback (GPUs from the lab's nvidia-smi stand-in, weights from a Hugging Face cache on
disk): flags of each version, readiness after the load time, API key, SSE, metrics under load, every fault,
a two-rank rendezvous, and the benchmark tools' output read back by the collection's parsers.
The same stand-in as a container on this machine's Docker engine: tests/integration/test_sglang_standin_image.py.
"""

from __future__ import annotations

import contextlib
import http.client as http_client
import json
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "tests/lab/sglang-standin"))

from standin_testing import (  # noqa: E402
    REPO_ID,
    STANDIN_DIR,
    Proc,
    free_port,
    http,
    make_gpu_bin,
    make_hf_cache,
    port_open,
    prometheus,
    sse_events,
    wait_for,
)

from ansible_collections.datacrunch.sglang.plugins.module_utils.bench import output as bench_output  # noqa: E402
from ansible_collections.datacrunch.sglang.plugins.module_utils.bench import runner as bench_runner  # noqa: E402
from ansible_collections.datacrunch.sglang.plugins.module_utils.common.prometheus_text import (  # noqa: E402
    parse_metrics,
    serving_load,
)
from ansible_collections.datacrunch.sglang.plugins.module_utils.launch import cli_flags as flags  # noqa: E402
from ansible_collections.datacrunch.sglang.plugins.module_utils.launch import crash_log  # noqa: E402
from ansible_collections.datacrunch.sglang.plugins.module_utils.launch.sglang_http import probe_ready  # noqa: E402
from ansible_collections.datacrunch.sglang.plugins.module_utils.launch.startup_progress import (  # noqa: E402
    startup_progress,
)

API_KEY = "sk-standin-test-4f1c9a"
LOAD_SECONDS = 2.0
# A crash ends in kill_process_tree's SIGKILL to itself: a plain process dies of it (as PID 1 it exits 0).
CRASHED = -signal.SIGKILL


@pytest.fixture(scope="module")
def hf_home(tmp_path_factory):
    return make_hf_cache(tmp_path_factory.mktemp("hf"))


@pytest.fixture
def env_for(tmp_path, hf_home):
    """env_for(version, gpus=8, **extra): the environment of a stand-in process on a simulated 8x H200 host."""

    def build(version="0.5.18", gpus=8, lock="gpus.lock", **extra):
        gpu_root = tmp_path / f"gpus-{gpus}"
        env = dict(os.environ)
        env.pop("SGLANG_STANDIN_FAULT", None)
        env.update(make_gpu_bin(gpu_root, gpus) if gpus else {"PATH": "/usr/bin:/bin"})
        env.update(
            {
                "PYTHONPATH": str(STANDIN_DIR),
                "SGLANG_STANDIN_VERSION": version,
                "SGLANG_STANDIN_LOAD_SECONDS": str(LOAD_SECONDS),
                # The later start-up phases take no time here, unless a test asks (test_start_up_phases_...).
                "SGLANG_STANDIN_JIT_SECONDS": "0",
                "SGLANG_STANDIN_GRAPH_SECONDS": "0",
                "SGLANG_STANDIN_WARMUP_SECONDS": "0",
                "SGLANG_STANDIN_GPU_LOCK": str(tmp_path / lock),
                "HF_HOME": str(hf_home),
                "HF_HUB_OFFLINE": "1",
            }
        )
        env.update({k: str(v) for k, v in extra.items()})
        return env

    return build


@pytest.fixture
def procs(tmp_path):
    """start(module, args, env, name): stand-in processes, all stopped at the end of the test."""
    started: list[Proc] = []

    def start(module, args, env, name="server"):
        proc = Proc(module, [str(a) for a in args], env, tmp_path, name)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


def serve(procs, env, port, *extra, name="server"):
    return procs("sglang.launch_server", ["--model", REPO_ID, "--tp", 8, "--port", port, *extra], env, name)


def wait_ready(proc, port, timeout=20):
    def ready():
        assert proc.process.poll() is None, f"server exited {proc.process.returncode}:\n{proc.stderr}"
        return port_open(port) and http("GET", f"http://127.0.0.1:{port}/health_generate")[0] == 200

    wait_for(ready, timeout, what=f"port {port} ready")


# --- flags ---------------------------------------------------------------------------------------------------------


def _only_in(accepting, rejecting):
    """A switch the real parser of one version accepts and that of the other rejects, from the generated data."""
    mine, theirs = flags.SGLANG_CLI_FLAGS[accepting], flags.SGLANG_CLI_FLAGS[rejecting]
    return next(
        o
        for o, s in mine.items()
        if o not in theirs and s["action"] == "store_true" and flags.match_flag(rejecting, o)[0] is None
    )


@pytest.mark.parametrize(("version", "other"), [("0.5.18", "0.5.23"), ("0.5.23", "0.5.18")])
def test_accepts_what_the_real_parser_accepts_and_rejects_the_rest(version, other, env_for, procs):
    accepted, rejected = _only_in(version, other), _only_in(other, version)
    env = env_for(version, SGLANG_STANDIN_FAULT="start-fail")
    ok = procs("sglang.launch_server", ["--model", REPO_ID, accepted], env, "accepted")
    # start-fail stops it right after parsing, as a scheduler crash (killed by itself), not argparse's exit 2
    assert ok.wait(30) == CRASHED, ok.stderr
    assert "SGLANG_STANDIN_FAULT=start-fail" in ok.stderr
    bad = procs("sglang.launch_server", ["--model", REPO_ID, rejected], env, "rejected")
    assert bad.wait(30) == 2
    assert bad.stderr.splitlines()[-1] == f"sglang serve: error: unrecognized arguments: {rejected}"
    assert "\nusage: sglang serve [-h] --model-path MODEL_PATH" in bad.stderr


def test_dp_attention_deprecated_in_0_5_23_with_the_real_warning(env_for, procs):
    env = env_for("0.5.23", SGLANG_STANDIN_FAULT="start-fail")
    proc = procs("sglang.launch_server", ["--model", REPO_ID, "--tp", "8", "--enable-dp-attention"], env)
    assert proc.wait(30) == CRASHED
    warning = flags.flag_spec("0.5.23", "--enable-dp-attention")["deprecated"]
    assert f"\033[1;33m{warning}\033[0m" in proc.stderr
    old = procs(
        "sglang.launch_server",
        ["--model", REPO_ID, "--enable-dp-attention"],
        env_for("0.5.18", SGLANG_STANDIN_FAULT="start-fail"),
        "old",
    )
    assert old.wait(30) == CRASHED
    assert "deprecated" not in old.stderr


def test_missing_model_is_argparse_error(env_for, procs):
    proc = procs("sglang.launch_server", ["--tp", "8"], env_for())
    assert proc.wait(30) == 2
    assert (
        proc.stderr.splitlines()[-1]
        == "sglang serve: error: the following arguments are required: --model-path/--model"
    )


# --- the server --------------------------------------------------------------------------------------------------


@pytest.fixture
def api_server(tmp_path, env_for, procs):
    """0.5.18 with --config (tp and switches from YAML), an API key, metrics and a served model name."""
    config = tmp_path / "sglang.yaml"
    config.write_text("tp: 8\ntrust-remote-code: true\nenable-metrics: true\nmax-running-requests: 2\n")
    port = free_port()
    env = env_for("0.5.18", SGLANG_STANDIN_DECODE_MS_PER_TOKEN=20)
    started = time.monotonic()
    proc = procs(
        "sglang.launch_server",
        [
            "--model",
            REPO_ID,
            "--config",
            config,
            "--port",
            port,
            "--api-key",
            API_KEY,
            "--served-model-name",
            "deepseek-r1",
        ],
        env,
    )
    # the port stays closed while the weights "load"
    time.sleep(LOAD_SECONDS / 2)
    assert not port_open(port), "the port opened before the load time was over"
    wait_ready(proc, port)
    assert time.monotonic() - started >= LOAD_SECONDS
    return proc, f"http://127.0.0.1:{port}"


AUTH = {"Authorization": f"Bearer {API_KEY}"}


def test_ready_only_after_load_and_logs_it(api_server):
    proc, _url = api_server
    assert "The server is fired up and ready to roll!" in proc.stderr
    assert proc.stderr.index("Load weight end") < proc.stderr.index("The server is fired up")


def test_api_key_guards_everything_but_health_and_metrics(api_server):
    _proc, url = api_server
    status, _headers, body = http("GET", f"{url}/v1/models")
    assert status == 401
    assert json.loads(body) == {"error": "Unauthorized"}
    assert http("GET", f"{url}/v1/models", headers={"Authorization": "Bearer wrong"})[0] == 401
    assert http("POST", f"{url}/generate", {"text": "hi"})[0] == 401
    status, _headers, body = http("GET", f"{url}/v1/models", headers=AUTH)
    assert status == 200
    assert json.loads(body)["data"][0]["id"] == "deepseek-r1"
    for path in ("/health", "/health_generate", "/metrics"):
        assert http("GET", f"{url}{path}")[0] == 200, path


def test_server_info_has_version_and_parsed_args_with_the_api_key_as_sglang(api_server):
    proc, url = api_server
    for path in ("/server_info", "/get_server_info"):
        status, _headers, body = http("GET", f"{url}{path}", headers=AUTH)
        assert status == 200
        info = json.loads(body)
        assert info["version"] == "0.5.18"
        assert info["tp_size"] == 8  # from the YAML config through SGLang's --tp abbreviation
        assert info["trust_remote_code"] is True
        assert info["max_running_requests"] == 2
        # SGLang returns the key in plain text (dataclasses.asdict(server_args)): whoever has the key sees it
        assert info["api_key"] == API_KEY
    status, _headers, body = http("GET", f"{url}/model_info", headers=AUTH)
    assert json.loads(body)["model_path"] == REPO_ID
    assert json.loads(body)["architectures"] == ["DeepseekV3ForCausalLM"]
    assert "Endpoint '/get_server_info' is deprecated" in proc.stderr
    # Like SGLang, the key shows in the log only in the start-up line of all arguments.
    leaking = [line for line in (proc.stderr + proc.stdout).splitlines() if API_KEY in line]
    assert len(leaking) == 1 and "server_args=ServerArgs(" in leaking[0], leaking


def test_generate_json_and_sse(api_server):
    _proc, url = api_server
    status, _headers, body = http(
        "POST", f"{url}/generate", {"text": "one two three", "sampling_params": {"max_new_tokens": 5}}, AUTH
    )
    answer = json.loads(body)
    assert status == 200
    assert answer["text"] == "one two three the stand"
    assert answer["meta_info"]["prompt_tokens"] == 3
    assert answer["meta_info"]["completion_tokens"] == 5
    status, headers, raw = http(
        "POST", f"{url}/generate", {"text": "a b", "sampling_params": {"max_new_tokens": 4}, "stream": True}, AUTH
    )
    assert status == 200
    assert headers["content-type"].startswith("text/event-stream")
    events = sse_events(raw)
    assert events[-1] == "[DONE]"
    texts = [e["text"] for e in events[:-1]]
    assert texts[:4] == ["a", "a b", "a b the", "a b the stand"]
    assert events[-2]["meta_info"]["finish_reason"] == {"type": "length", "length": 4}


def test_openai_endpoints_stream_and_count_usage(api_server):
    _proc, url = api_server
    status, _headers, body = http(
        "POST",
        f"{url}/v1/chat/completions",
        {"model": "deepseek-r1", "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 3},
        AUTH,
    )
    answer = json.loads(body)
    assert status == 200
    assert answer["object"] == "chat.completion"
    assert answer["choices"][0]["message"]["content"] == "hello there the"
    assert answer["usage"] == {
        "prompt_tokens": 6,
        "completion_tokens": 3,
        "total_tokens": 9,
        "prompt_tokens_details": None,
    }
    status, _headers, raw = http(
        "POST",
        f"{url}/v1/completions",
        {
            "model": "deepseek-r1",
            "prompt": "x y z",
            "max_tokens": 4,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
        AUTH,
    )
    events = sse_events(raw)
    assert events[-1] == "[DONE]"
    assert "".join(e["choices"][0]["text"] for e in events[:-1] if e["choices"]) == "x y z the"
    assert events[-2]["usage"]["completion_tokens"] == 4
    assert [e["choices"][0]["finish_reason"] for e in events[:-2]][-1] == "length"


def test_metrics_show_running_and_queued_requests(api_server):
    _proc, url = api_server
    results = []

    def ask():
        results.append(
            http(
                "POST",
                f"{url}/generate",
                {"text": "load", "sampling_params": {"max_new_tokens": 60, "ignore_eos": True}},
                AUTH,
            )
        )

    labels = '{model_name="deepseek-r1",engine_type="unified",tp_rank="0",pp_rank="0",moe_ep_rank="0"}'

    def load_seen():
        values = prometheus(http("GET", f"{url}/metrics")[2].decode())
        queued = values[("sglang:num_queue_reqs", labels)]
        running = values[("sglang:num_running_reqs", labels)]
        throughput = values[("sglang:gen_throughput", labels)]
        return values if running == 2.0 and queued == 3.0 and throughput > 0 else None

    threads = [threading.Thread(target=ask) for _index in range(5)]
    for thread in threads:
        thread.start()
    # 60 tokens at 20 ms: the first two run for 1.2 s while the other three wait (--max-running-requests 2)
    values = wait_for(load_seen, 1.0, interval=0.05, what="2 running and 3 queued requests in /metrics")
    assert values[("sglang:gen_throughput", labels)] > 0
    assert 0 < values[("sglang:token_usage", labels)] < 1
    for thread in threads:
        thread.join()
    assert [r[0] for r in results] == [200] * 5
    after = prometheus(http("GET", f"{url}/metrics")[2].decode())
    assert after[("sglang:num_running_reqs", labels)] == 0.0
    assert after[("sglang:generation_tokens_total", '{model_name="deepseek-r1"}')] >= 300


def test_metrics_only_with_enable_metrics(env_for, procs):
    port = free_port()
    proc = serve(procs, env_for(SGLANG_STANDIN_LOAD_SECONDS=0), port)
    wait_ready(proc, port)
    assert http("GET", f"http://127.0.0.1:{port}/metrics")[0] == 404
    assert http("GET", f"http://127.0.0.1:{port}/v1/models")[0] == 200  # no --api-key: open


# --- what the real server fails on, and faults ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        ({"gpus": 0}, [], "Found no NVIDIA driver on your system"),
        (
            {"gpus": 4},
            [],
            "CUDA error: invalid device ordinal (tp_size=8 over nnodes=1 needs 8 GPUs on this node, 4 visible)",
        ),
        ({"gpus": 8}, ["--dp-size", "2"], "tp_size=8 x dp_size=2 over nnodes=1 needs 16 GPUs on this node, 8 visible"),
        ({"gpus": 8, "model": "lab/partial"}, [], "couldn't connect to 'https://huggingface.co'"),
        ({"gpus": 8, "revision": "0" * 40}, [], "is not in the cache"),
    ],
)
def test_fails_where_the_real_server_fails(setup, args, message, env_for, procs):
    env = env_for(gpus=setup["gpus"])
    argv = ["--model", setup.get("model", REPO_ID), "--tp", "8", "--port", free_port(), *args]
    if "revision" in setup:
        argv += ["--revision", setup["revision"]]
    proc = procs("sglang.launch_server", argv, env)
    # Too few GPUs fails in the scheduler processes (a crash: killed by itself); the rest in the main process.
    assert proc.wait(30) == (CRASHED if "GPUs on this node" in message else 1)
    assert "Traceback (most recent call last):" in proc.stderr
    assert message in proc.stderr


def test_dp_attention_keeps_dp_inside_tp_and_publishes_a_series_per_dp_rank(env_for, procs):
    """As SGLang's schedulers do: one token_usage per DP rank, each of its own KV pool; the collection reads the
    fullest rank, where adding the series reads more than 1."""
    port = free_port()
    proc = serve(procs, env_for(SGLANG_STANDIN_LOAD_SECONDS=0, SGLANG_STANDIN_DECODE_MS_PER_TOKEN=50), port,
                 "--enable-dp-attention", "--dp", "8", "--enable-metrics", "--max-total-tokens", "64",
                 "--enable-priority-scheduling")
    wait_ready(proc, port)
    body = {"text": "one two three four five six seven eight",
            "sampling_params": {"max_new_tokens": 100, "ignore_eos": True}}
    requests = [threading.Thread(target=http, args=("POST", f"http://127.0.0.1:{port}/generate", body))
                for _index in range(8)]
    for request in requests:
        request.start()
    # Read the metrics a second in, once all eight run (each decodes for 5 s; on a loaded machine the last may start
    # late).
    time.sleep(1)
    deadline = time.monotonic() + 3
    while True:
        text = http("GET", f"http://127.0.0.1:{port}/metrics")[2].decode()
        if serving_load(parse_metrics(text))["running_requests"] >= 8 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    for request in requests:
        request.join()
    usage = [line for line in text.splitlines() if line.startswith("sglang:token_usage{")]
    assert len(usage) == 8 and all(f'dp_rank="{rank}"' in line for rank, line in enumerate(usage)), usage
    assert sum(float(line.rsplit(" ", 1)[1]) for line in usage) > 1, text
    load = serving_load(parse_metrics(text))
    assert 0 < load["token_usage"] <= 1
    assert load["running_requests"] == 8  # the priority="0" breakdown is not added to the totals


def test_token_file_is_read_and_never_printed(tmp_path, env_for, procs):
    token = tmp_path / "token"
    token.write_text("hf_secrettoken123\n")
    port = free_port()
    proc = serve(procs, env_for(SGLANG_STANDIN_LOAD_SECONDS=0, HF_TOKEN_PATH=token), port)
    wait_ready(proc, port)
    status, _headers, body = http("GET", f"http://127.0.0.1:{port}/server_info")
    assert status == 200
    assert "Hugging Face token read from HF_TOKEN_PATH (not shown)" in proc.stderr
    assert "hf_secrettoken123" not in body.decode() + proc.stderr + proc.stdout


def test_fault_start_fail(env_for, procs):
    port = free_port()
    proc = serve(procs, env_for(SGLANG_STANDIN_FAULT="start-fail"), port)
    assert proc.wait(30) == CRASHED
    assert "Scheduler hit an exception: Traceback (most recent call last):" in proc.stderr
    assert "Received sigquit from a child process. It usually means the child failed." in proc.stderr
    assert not port_open(port)


def test_fault_never_ready(env_for, procs):
    port = free_port()
    proc = serve(procs, env_for(SGLANG_STANDIN_FAULT="never-ready", SGLANG_STANDIN_LOAD_SECONDS=0.5), port)
    wait_for(lambda: port_open(port), 20, what="port open")
    for _index in range(3):
        assert http("GET", f"http://127.0.0.1:{port}/health_generate")[0] == 503
        time.sleep(0.5)
    assert proc.process.poll() is None


def test_fault_crash_after(env_for, procs):
    port = free_port()
    proc = serve(procs, env_for(SGLANG_STANDIN_FAULT="crash-after:1", SGLANG_STANDIN_LOAD_SECONDS=0.5), port)
    wait_ready(proc, port)
    ready_at = time.monotonic()
    assert proc.wait(20) == CRASHED
    assert 0.5 <= time.monotonic() - ready_at <= 5
    assert "crash-after:1" in proc.stderr
    # the failing rank's traceback first, then every other rank's NCCL error, then the main process's SIGQUIT
    lines = proc.stderr.splitlines()
    root = next(i for i, line in enumerate(lines) if "TP0] Scheduler hit an exception" in line)
    assert "crash-after:1" in "\n".join(lines[root:root + 6])
    assert sum("] Scheduler hit an exception" in line for line in lines[root:]) == 8
    assert "SIGQUIT received. signum=<Signals.SIGQUIT: 3>" in proc.stderr
    # the collection's excerpt of a crash holds the root cause the last 40 lines do not
    assert "crash-after:1" not in "\n".join(lines[-40:])
    assert "crash-after:1" in crash_log.excerpt(proc.stderr, tail=40)


def test_sigterm_kills_while_loading_and_drains_once_serving(env_for, procs):
    """No handler while loading (the default action ends a plain process); once serving, SIGTERM waits for the
    running request, up to 5 s after the signal, and ends as kill_process_tree does."""
    loading = serve(procs, env_for(SGLANG_STANDIN_LOAD_SECONDS=30), free_port(), name="loading")
    wait_for(lambda: "Load weight begin" in loading.stderr, 20, what="loading")
    loading.process.send_signal(signal.SIGTERM)
    assert loading.wait(5) == -signal.SIGTERM
    port = free_port()
    proc = serve(procs, env_for(SGLANG_STANDIN_DECODE_MS_PER_TOKEN=20), port)
    wait_ready(proc, port)
    answers = []
    request = threading.Thread(target=lambda: answers.append(http(
        "POST", f"http://127.0.0.1:{port}/generate",
        {"text": "hi", "sampling_params": {"max_new_tokens": 300, "ignore_eos": True}})[0]))
    request.start()
    time.sleep(0.5)
    signalled = time.monotonic()
    proc.process.send_signal(signal.SIGTERM)
    assert proc.wait(30) == CRASHED
    request.join()
    assert answers == [200]
    assert 5 <= time.monotonic() - signalled <= 12
    assert "Draining requests and shutting down..." in proc.stderr
    assert "Gracefully exiting... Remaining number of requests 1." in proc.stderr


def test_fault_hang(env_for, procs):
    port = free_port()
    proc = serve(procs, env_for(SGLANG_STANDIN_FAULT="hang", SGLANG_STANDIN_LOAD_SECONDS=0.5), port)
    time.sleep(LOAD_SECONDS + 1)
    assert proc.process.poll() is None
    assert not port_open(port)


def test_start_up_phases_as_sglang_logs_them_with_health_503_during_warm_up(env_for, procs):
    """Weights, DeepGEMM JIT and CUDA graphs with the port closed, then the warm-up with the port open and /health
    503, then ready; the collection's progress reader names each phase from the log as it goes."""
    port = free_port()
    durations = {"SGLANG_STANDIN_LOAD_SECONDS": 1.5, "SGLANG_STANDIN_JIT_SECONDS": 1,
                 "SGLANG_STANDIN_GRAPH_SECONDS": 2, "SGLANG_STANDIN_WARMUP_SECONDS": 3}
    proc = serve(procs, env_for(**durations), port)
    seen = []
    health_during_warm_up = set()

    def logged_next(phase, grace=0.75):
        """Whether the log leaves PHASE within GRACE seconds. The stand-in, like SGLang, opens its port and turns ready
        a moment before it logs so: a probe that contradicts the phase just read is that moment only when the log
        follows at once. The grace stays well below the graph (2 s) and warm-up (3 s) phases, so a port open or a
        200 through most of a phase still fails."""
        until = time.monotonic() + grace
        while time.monotonic() < until:
            if startup_progress(proc.stderr)[0] != phase:
                return True
            time.sleep(0.02)
        return False

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.process.poll() is None, proc.stderr
        phase, detail = startup_progress(proc.stderr)
        if not seen or seen[-1][0] != phase:
            seen.append((phase, detail))
        if phase in ("loading weights", "weights loaded", "compiling DeepGEMM kernels", "capturing CUDA graphs"):
            assert not (port_open(port) and not logged_next(phase)), "the port opened during %s" % phase
        if phase == "warming up":
            status = http("GET", f"http://127.0.0.1:{port}/health")[0]
            if not (status == 200 and logged_next(phase)):
                health_during_warm_up.add(status)
        if phase == "ready":
            break
        time.sleep(0.1)
    phases = [phase for phase, _detail in seen]
    assert phases[-1] == "ready", seen
    for expected in ("loading weights", "compiling DeepGEMM kernels", "capturing CUDA graphs", "warming up"):
        assert expected in phases, seen
    assert phases.index("loading weights") < phases.index("capturing CUDA graphs") < phases.index("warming up")
    assert any(re.fullmatch(r"loading safetensors \d+/\d+ \(\d+%\)", detail) for _phase, detail in seen), seen
    assert health_during_warm_up == {503}
    assert http("GET", f"http://127.0.0.1:{port}/health")[0] == 200
    assert "Multi-thread loading shards: 100% Completed" in proc.stderr
    assert "Capture decode CUDA graph end." in proc.stderr


@pytest.mark.parametrize("phase", ["weights", "graphs"])
def test_fault_in_a_phase(phase, env_for, procs):
    port = free_port()
    hung = serve(procs, env_for(SGLANG_STANDIN_FAULT=f"hang:{phase}", SGLANG_STANDIN_LOAD_SECONDS=0.3), port)
    wait_for(lambda: f"hanging in the {phase} phase" in hung.stderr, 20, what="the hang")
    time.sleep(1)
    assert hung.process.poll() is None
    assert not port_open(port)
    failed = serve(procs, env_for(SGLANG_STANDIN_FAULT=f"start-fail:{phase}", SGLANG_STANDIN_LOAD_SECONDS=0.3,
                                  lock="failed.lock"),
                   free_port(), name="failed")
    assert failed.wait(30) == CRASHED
    assert f"Initialization failed in the {phase} phase" in failed.stderr


def test_bad_fault_setting_is_named(env_for, procs):
    proc = serve(procs, env_for(SGLANG_STANDIN_FAULT="explode"), free_port())
    assert proc.wait(30) == 1
    assert "SGLANG_STANDIN_FAULT='explode' is not one of" in proc.stderr


# --- multi-node -------------------------------------------------------------------------------------------------------


def two_ranks(env_for, procs, rank1_tp=16, rank1_model=REPO_ID, dist_timeout=20):
    store = free_port()
    ports = free_port(), free_port()
    common = ["--nnodes", 2, "--dist-init-addr", f"127.0.0.1:{store}", "--dist-timeout", dist_timeout]
    # SGLang's own setting (its default is 20 s), short here
    env = {"SGLANG_STANDIN_LOAD_SECONDS": 0.5, "SGLANG_HEALTH_CHECK_TIMEOUT": 2}
    rank0 = procs(
        "sglang.launch_server",
        ["--model", REPO_ID, "--tp", 16, "--port", ports[0], "--node-rank", 0, *common],
        env_for(lock="host0.lock", **env),
        "rank0",
    )
    rank1 = procs(
        "sglang.launch_server",
        ["--model", rank1_model, "--tp", rank1_tp, "--port", ports[1], "--node-rank", 1, *common],
        env_for(lock="host1.lock", **env),
        "rank1",
    )
    return rank0, rank1, ports


def test_two_ranks_rendezvous_then_rank0_serves(env_for, procs):
    rank0, rank1, (port0, port1) = two_ranks(env_for, procs)
    wait_ready(rank0, port0)
    wait_ready(rank1, port1)
    assert http("GET", f"http://127.0.0.1:{port0}/v1/models")[0] == 200
    # rank 1 runs only the dummy health server
    assert http("GET", f"http://127.0.0.1:{port1}/health")[0] == 200
    assert http("GET", f"http://127.0.0.1:{port1}/v1/models")[0] == 404
    assert "Node rank 1 joined" in rank0.stderr


def test_rank0_waits_for_all_ranks_before_serving(env_for, procs):
    store, port = free_port(), free_port()
    rank0 = procs(
        "sglang.launch_server",
        [
            "--model",
            REPO_ID,
            "--tp",
            16,
            "--port",
            port,
            "--nnodes",
            2,
            "--node-rank",
            0,
            "--dist-init-addr",
            f"127.0.0.1:{store}",
            "--dist-timeout",
            3,
        ],
        env_for(SGLANG_STANDIN_LOAD_SECONDS=0),
    )
    assert rank0.wait(30) == 1
    assert not port_open(port)
    assert "Timed out after 3 seconds waiting for clients. 1/2 clients joined." in rank0.stderr


def test_mismatched_tp_stops_both_ranks(env_for, procs):
    rank0, rank1, _ports = two_ranks(env_for, procs, rank1_tp=8)
    assert rank0.wait(30) == 1
    assert rank1.wait(30) == 1
    assert "tp mismatch: rank 1 has tp=8, rank 0 has tp=16" in rank0.stderr
    assert "rank 0 refused this node: tp mismatch" in rank1.stderr


def test_mismatched_model_stops_both_ranks(hf_home, env_for, procs):
    # the same weights by another name (a local snapshot directory) is still another model to rank 0
    snapshot = next((hf_home / "hub").glob("models--lab--tiny-r1/snapshots/*"))
    rank0, rank1, _ports = two_ranks(env_for, procs, rank1_model=snapshot)
    assert rank0.wait(30) == 1
    assert rank1.wait(30) == 1
    assert f"model mismatch: rank 1 has model='{snapshot}', rank 0 has model='{REPO_ID}'" in rank0.stderr


def _generating(port0):
    """A long generation on rank 0 in the background, once its first tokens came: a batch is in flight."""
    body = {"text": "a", "sampling_params": {"max_new_tokens": 4000, "ignore_eos": True}, "stream": True}

    def run():
        with contextlib.suppress(OSError, http_client.HTTPException):  # rank 0 goes away under it
            http("POST", f"http://127.0.0.1:{port0}/generate", body, timeout=120)

    threading.Thread(target=run, daemon=True).start()
    time.sleep(0.5)


def _freeze(proc):
    """A lost node: its process stops answering but closes nothing (a host gone, a cut network)."""
    os.killpg(proc.process.pid, signal.SIGSTOP)


def test_ranks_connect_both_ways_on_ports_from_the_ephemeral_range(env_for, procs):
    rank0, rank1, (port0, _port1) = two_ranks(env_for, procs)
    wait_ready(rank0, port0)
    low, high = (int(word) for word in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    seen = {}
    for name, proc in (("rank0", rank0), ("rank1", rank1)):
        match = re.search(r"connected to node rank \d at 127\.0\.0\.1:(\d+) .* this node listens on (\d+)", proc.stderr)
        assert match, proc.stderr[-2000:]
        seen[name] = int(match.group(1)), int(match.group(2))
        assert all(low <= port <= high for port in seen[name]), (seen, low, high)
    # each connects to the port the other listens on: rank 0 -> rank 1 (NCCL's ring) and rank 1 -> rank 0 (Gloo)
    assert seen["rank0"][0] == seen["rank1"][1] and seen["rank1"][0] == seen["rank0"][1]


def test_a_lost_rank_1_hangs_rank_0_until_the_nccl_timeout(env_for, procs):
    """No heartbeat in SGLang: rank 0's /health stays 200, only a generation (/health_generate) fails, after its
    health check timeout; the collection's probe (rank 0's generation, bounded) calls it not ready; with a batch in
    flight the NCCL watchdog (--dist-timeout, shorter here than --watchdog-timeout) crashes rank 0."""
    rank0, rank1, (port0, _port1) = two_ranks(env_for, procs, dist_timeout=5)
    wait_ready(rank0, port0)
    _generating(port0)
    _freeze(rank1)
    lost = time.monotonic()
    assert http("GET", f"http://127.0.0.1:{port0}/health")[0] == 200
    asked = time.monotonic()
    assert http("GET", f"http://127.0.0.1:{port0}/health_generate")[0] == 503
    assert time.monotonic() - asked >= 2
    base = f"http://127.0.0.1:{port0}"
    assert probe_ready({"kind": "http", "base_url": base, "url": base + "/health_generate"})[0] is False
    assert rank0.wait(30) == CRASHED
    assert time.monotonic() - lost >= 4.5
    assert "Watchdog caught collective operation timeout" in crash_log.root_cause(rank0.stderr)


def test_an_idle_unit_that_loses_rank_1_hangs_past_the_dist_timeout(env_for, procs):
    """Idle, rank 0 waits in the Gloo broadcast of its scheduler loop, whose timeout is two hours, not
    --dist-timeout: the unit stays hung, /health 200, generation 503."""
    rank0, rank1, (port0, _port1) = two_ranks(env_for, procs, dist_timeout=2)
    wait_ready(rank0, port0)
    _freeze(rank1)
    time.sleep(3)
    assert http("GET", f"http://127.0.0.1:{port0}/health_generate")[0] == 503
    assert rank0.process.poll() is None
    assert http("GET", f"http://127.0.0.1:{port0}/health")[0] == 200


def test_a_rank_1_that_ends_closes_its_connections_and_rank_0_crashes_at_once(env_for, procs):
    rank0, rank1, (port0, _port1) = two_ranks(env_for, procs, dist_timeout=60)
    wait_ready(rank0, port0)
    rank1.stop()
    ended = time.monotonic()
    assert rank0.wait(30) == CRASHED
    assert time.monotonic() - ended < 10
    assert "Connection closed by peer" in crash_log.root_cause(rank0.stderr)


def test_a_lost_rank_0_leaves_rank_1_answering_200_until_the_nccl_timeout(env_for, procs):
    rank0, rank1, (port0, port1) = two_ranks(env_for, procs, dist_timeout=5)
    wait_ready(rank0, port0)
    wait_for(lambda: port_open(port1), 20, what="rank 1's health server")
    _generating(port0)
    _freeze(rank0)
    for _index in range(3):
        assert http("GET", f"http://127.0.0.1:{port1}/health")[0] == 200
        assert http("GET", f"http://127.0.0.1:{port1}/health_generate")[0] == 200
        time.sleep(1)
    assert rank1.wait(30) == CRASHED
    assert "Watchdog caught collective operation timeout" in rank1.stderr


# --- benchmark tools ---------------------------------------------------------------------------------------------

ONE_BATCH_LINE = re.compile(
    r"^(Prefill\. latency: [ \d.]{7} s, throughput: [ \d.]{9} token/s"
    r"|Decode \d+\. Batch size: \d+, latency: [ \d.]{7} s, throughput: [ \d.]{9} token/s"
    r"|Decode\.  median latency: [ \d.]{7} s, median throughput: [ \d.]{9} token/s"
    r"|Total\. latency: [ \d.]{6} s, throughput: [ \d.]{9} token/s"
    r"|Warmup \.\.\.|Benchmark \.\.\.|max_total_num_tokens=\d+)$"
)


def test_bench_one_batch_prints_the_real_lines_and_jsonl(tmp_path, env_for, procs):
    result_file = tmp_path / "result.jsonl"
    # the seed's command; --port away from 30000, where a server on this machine would mean busy GPUs
    args = f"--model {REPO_ID} --tp 8 --batch-size 1 --input 128 --output 256 --port {free_port()}".split()
    args += ["--result-filename", result_file]
    proc = procs("sglang.bench_one_batch", args, env_for(SGLANG_STANDIN_LOAD_SECONDS=0), "one_batch")
    assert proc.wait(60) == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert all(ONE_BATCH_LINE.match(line) for line in lines), [line for line in lines if not ONE_BATCH_LINE.match(line)]
    assert "Decode.  median latency: 0.02098 s, median throughput:     47.67 token/s" in lines  # the seed's figure
    parsed = bench_output.one_batch_result(proc.stdout, result_file.read_text())
    printed = bench_output.one_batch_result(proc.stdout)
    assert printed["runs"][0]["median_decode_throughput"] == pytest.approx(47.67, abs=0.01)
    assert printed["warmup"]["output_len"] in (None, 32)
    record = json.loads(result_file.read_text())
    assert set(record) == {
        "run_name",
        "batch_size",
        "input_len",
        "output_len",
        "prefill_latency",
        "prefill_throughput",
        "median_decode_latency",
        "median_decode_throughput",
        "total_latency",
        "overall_throughput",
    }
    assert record["median_decode_throughput"] == pytest.approx(47.67, rel=1e-3)
    assert parsed["runs"][0]["median_decode_throughput"] == pytest.approx(47.67, rel=1e-3)


def test_bench_one_batch_figures_follow_settings_and_batch(tmp_path, env_for, procs):
    result_file = tmp_path / "result.jsonl"
    env = env_for(
        SGLANG_STANDIN_LOAD_SECONDS=0, SGLANG_STANDIN_DECODE_TOKENS_PER_S=100, SGLANG_STANDIN_PREFILL_TOKENS_PER_S=1000
    )
    args = f"--model {REPO_ID} --tp 8 --batch-size 1 8 --input-len 256 --output-len 32 --port {free_port()}".split()
    args += ["--result-filename", result_file]
    proc = procs("sglang.benchmark.one_batch", args, env, "one_batch")
    assert proc.wait(60) == 0, proc.stderr
    records = [json.loads(line) for line in result_file.read_text().splitlines()]
    assert [r["batch_size"] for r in records] == [1, 8]
    assert records[0]["prefill_throughput"] == pytest.approx(1000)
    assert records[0]["median_decode_throughput"] == pytest.approx(100, rel=0.01)
    assert records[1]["median_decode_throughput"] > 7 * records[0]["median_decode_throughput"]


def test_bench_one_batch_fails_while_a_server_holds_the_gpus(env_for, procs):
    port = free_port()
    server = serve(procs, env_for(SGLANG_STANDIN_LOAD_SECONDS=0), port)
    wait_ready(server, port)
    proc = procs(
        "sglang.bench_one_batch", ["--model", REPO_ID, "--tp", 8, "--port", free_port()], env_for(), "one_batch"
    )
    assert proc.wait(60) == 1
    assert "torch.OutOfMemoryError: CUDA out of memory" in proc.stderr


def test_bench_one_batch_with_tp_waits_for_ever_when_a_worker_fails(env_for, procs):
    """SGLang's bench_one_batch joins its TP workers: the failed ones print a traceback, the rest wait for them."""
    proc = procs("sglang.bench_one_batch", ["--model", REPO_ID, "--tp", 8], env_for(gpus=4), "one_batch")
    wait_for(lambda: proc.stderr.count("invalid device ordinal") == 4, 20, what="the failed workers")
    time.sleep(1)
    assert proc.process.poll() is None
    assert "Process Process-5:" in proc.stderr and "Process Process-4:" not in proc.stderr


def test_bench_one_batch_is_gone_in_0_5_23(env_for, procs):
    proc = procs("sglang.bench_one_batch", ["--model", REPO_ID], env_for("0.5.23"), "one_batch")
    assert proc.wait(30) == 1
    assert proc.stderr.strip().endswith("No module named sglang.bench_one_batch")


def test_bench_serving_against_the_server(tmp_path, api_server, env_for, procs):
    _proc, url = api_server
    output = tmp_path / "serving.jsonl"
    args = [
        "--backend",
        "sglang-oai-chat",
        "--base-url",
        url,
        "--dataset-name",
        "random-ids",
        "--random-input-len",
        64,
        "--random-output-len",
        16,
        "--random-range-ratio",
        1,
        "--num-prompts",
        6,
        "--max-concurrency",
        2,
        "--output-file",
        output,
        "--ready-check-timeout-sec",
        10,
    ]
    proc = procs("sglang.bench_serving", args, env_for(OPENAI_API_KEY=API_KEY), "serving")
    assert proc.wait(120) == 0, proc.stdout + proc.stderr
    record = json.loads(output.read_text())
    assert record["completed"] == 6
    assert record["total_input_tokens"] == 6 * 64
    assert record["total_output_tokens"] == 6 * 16
    assert record["max_concurrency"] == 2
    assert record["server_info"]["version"] == "0.5.18"
    assert record["server_info"]["api_key"] == API_KEY  # as SGLang's bench_serving writes it
    # 16 tokens at 20 ms: about 0.35 s a request; at most 2 at a time, 6 requests take 3 rounds
    assert record["mean_tpot_ms"] == pytest.approx(20, rel=0.5)
    assert record["duration"] > 2.5 * record["mean_e2e_latency_ms"] / 1000
    (printed,) = bench_output.parse_serving_printed(proc.stdout)
    assert printed["completed"] == 6
    assert printed["mean_tpot_ms"] == pytest.approx(record["mean_tpot_ms"], abs=0.01)
    assert "============ Serving Benchmark Result ============" in proc.stdout
    assert "Max request concurrency:                 2         " in proc.stdout
    assert "FutureWarning: `sglang.bench_serving` is deprecated" in proc.stderr
    # bench_serving's tqdm bar, one step per finished request, redrawn with carriage returns: what sglang_bench's
    # progress reads (text mode reads each carriage return as a line end).
    bars = [part for part in re.split(r"[\r\n]", proc.stderr) if "/6 [" in part]
    assert [bench_runner.requests_done(line)[0] for line in bars] == list(range(7)), bars
    assert bars[-1].startswith("100%|##########| 6/6 [")


def test_bench_serving_reports_set_figures(tmp_path, api_server, env_for, procs):
    _proc, url = api_server
    output = tmp_path / "serving.jsonl"
    args = [
        "--backend",
        "sglang",
        "--base-url",
        url,
        "--dataset-name",
        "random-ids",
        "--random-input-len",
        16,
        "--random-output-len",
        8,
        "--random-range-ratio",
        1,
        "--num-prompts",
        2,
        "--output-file",
        output,
    ]
    env = env_for(OPENAI_API_KEY=API_KEY, SGLANG_STANDIN_TTFT_MS=123, SGLANG_STANDIN_DECODE_TOKENS_PER_S=50)
    proc = procs("sglang.benchmark.serving", args, env, "serving")
    assert proc.wait(120) == 0, proc.stdout + proc.stderr
    record = json.loads(output.read_text())
    assert record["mean_ttft_ms"] == pytest.approx(123)
    assert record["mean_itl_ms"] == pytest.approx(20)
    assert record["mean_e2e_latency_ms"] == pytest.approx(123 + 7 * 20)


def test_bench_serving_without_the_key_is_refused(api_server, env_for, procs):
    _proc, url = api_server
    env = env_for()
    env.pop("OPENAI_API_KEY", None)
    args = [
        "--backend",
        "sglang",
        "--base-url",
        url,
        "--dataset-name",
        "random-ids",
        "--num-prompts",
        1,
        "--ready-check-timeout-sec",
        2,
    ]
    proc = procs("sglang.bench_serving", args, env, "serving")
    assert proc.wait(60) == 1
    assert f"Server at {url}/v1/models is not ready. Exiting." in proc.stdout


def test_bench_serving_rejects_unknown_flags(env_for, procs):
    proc = procs("sglang.benchmark.serving", ["--no-such-flag"], env_for(), "serving")
    assert proc.wait(30) == 2
    assert proc.stderr.splitlines()[-1].endswith("error: unrecognized arguments: --no-such-flag")
