"""Benchmark runs without Docker: settings, the server's spec, the API key, command lines and the launcher."""

import json
import os
import re
import subprocess
import sys
import time

import pytest

from ansible_collections.datacrunch.sglang.plugins.module_utils.bench import runner as bench_runner
from ansible_collections.datacrunch.sglang.plugins.module_utils.bench.runner import BenchRunError
from ansible_collections.datacrunch.sglang.plugins.module_utils.common.secret_files import server_config_yaml
from ansible_collections.datacrunch.sglang.plugins.module_utils.launch import cli_flags as sglang_cli_flags
from ansible_collections.datacrunch.sglang.plugins.module_utils.launch import spec as launch_spec
from ansible_collections.datacrunch.sglang.plugins.module_utils.launch.options import LaunchRequest
from ansible_collections.datacrunch.sglang.plugins.module_utils.plan import profiles

SERVING_DEFAULTS = {
    "concurrency": [1, 4, 16],
    "input_len": 128,
    "output_len": 256,
    "num_prompts": 0,
    "prompts_per_concurrency": 8,
    "dataset_name": "random-ids",
    "dataset_path": "",
    "request_rate": "inf",
    "backend": "sglang",
    "extra_args": [],
}
ONE_BATCH_DEFAULTS = {
    "batch_size": 1,
    "input_len": 128,
    "output_len": 256,
    "enable_torch_compile": True,
    "torch_compile_max_bs": 1,
    "tp": 0,
    "extra_args": [],
}


def server_spec(profile="deepseek-r1", **request):
    """A launch spec as the server role builds it (the real launch spec code)."""
    shipped = profiles.load_profile_files(profiles.shipped_profiles_dir())
    resolved = profiles.resolve_profile(profile, shipped)
    nodes = [launch_spec.Node(name="h1", gpus=8, gpu_model="H200")]
    return launch_spec.build_launch_spec(LaunchRequest(profile=resolved, host="h1", nodes=nodes, **request))


# --- settings ----------------------------------------------------------------------------------------


def test_serving_settings_defaults_pass():
    settings = bench_runner.serving_settings(SERVING_DEFAULTS)
    assert settings["concurrency"] == [1, 4, 16]
    assert bench_runner.serving_num_prompts(settings, 16) == 128
    assert bench_runner.serving_num_prompts(dict(settings, num_prompts=50), 16) == 50


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"concurrency": []}, r"sglang_benchmark_concurrency=\[\] must be a non-empty list"),
        ({"concurrency": [1, 0]}, r"sglang_benchmark_concurrency=0 must be a positive integer"),
        ({"concurrency": [4, 4]}, r"lists a level twice"),
        ({"input_len": 0}, r"sglang_benchmark_input_len=0 must be a positive integer"),
        ({"dataset_name": "random"}, r"dataset_name='random' needs sglang_benchmark_dataset_path .*downloads ShareGPT"),
        ({"dataset_name": "mmmu"}, r"dataset_name='mmmu' is not supported here; use random-ids"),
        ({"dataset_name": "sharegpt", "dataset_path": "data.json"}, r"dataset_path='data.json' must be an absolute"),
        ({"request_rate": "fast"}, r"request_rate='fast' must be 'inf'"),
        ({"request_rate": "0"}, r"request_rate='0' must be 'inf'"),
        ({"extra_args": ["--output-file=/tmp/x"]}, r"contains --output-file, which the benchmark sets itself"),
        ({"extra_args": ["--api-key", "k"]}, r"must not be passed on a command line"),
        ({"extra_args": ["--max-conc", "64"]}, r"contains --max-conc, which the benchmark sets itself"),
    ],
)
def test_bad_serving_settings_name_the_variable_and_the_fix(change, message):
    with pytest.raises(BenchRunError, match=message):
        bench_runner.serving_settings(dict(SERVING_DEFAULTS, **change), "sglang_benchmark_")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"batch_size": 0}, r"batch_size=0 must be a positive integer"),
        ({"output_len": 1}, r"output_len=1 gives no decode step"),
        ({"torch_compile_max_bs": -1}, r"torch_compile_max_bs=-1"),
        ({"extra_args": ["--tp", "4"]}, r"contains --tp, which the benchmark sets itself"),
    ],
)
def test_bad_one_batch_settings(change, message):
    with pytest.raises(BenchRunError, match=message):
        bench_runner.one_batch_settings(dict(ONE_BATCH_DEFAULTS, **change))


def test_env_refuses_secrets_and_stringifies():
    assert bench_runner.check_env({"NCCL_DEBUG": "INFO", "X": 3}) == {"NCCL_DEBUG": "INFO", "X": "3"}
    with pytest.raises(BenchRunError, match=r"sglang_benchmark_env\['OPENAI_API_KEY'\] looks like a secret"):
        bench_runner.check_env({"OPENAI_API_KEY": "k"}, "sglang_benchmark_")
    for secret in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "API_KEY", "MY_SECRET", "AWS_SECRET_ACCESS_KEY"):
        with pytest.raises(BenchRunError, match="secrets never go"):
            bench_runner.check_env({secret: "x"})
    stand_in = ["SGLANG_STANDIN_DECODE_TOKENS_PER_S"]
    assert bench_runner.check_env({"SGLANG_STANDIN_DECODE_TOKENS_PER_S": 30}, extra_names=stand_in) == {
        "SGLANG_STANDIN_DECODE_TOKENS_PER_S": "30"
    }
    with pytest.raises(BenchRunError, match=r"must be a string or a number"):
        bench_runner.check_env({"FLAG": True})


@pytest.mark.parametrize("version", ["0.5.18", "0.5.23"])
@pytest.mark.parametrize(
    "name",
    ["SSH_PRIVATE_KEY", "DB_PASSWD", "GITHUB_TOKEN", "HF_TOKEN", "MY_APIKEY", "SGLANG_ENABLE_SPEC_V2",
     "SGLANG_ENABLE_JIT_DEEPGEM", "SGLANG_STANDIN_FAULT"],
)
def test_benchmark_env_refuses_what_the_server_env_refuses(version, name):
    """One rule: a name the server's environment refuses is refused in the benchmark's too, with the same words."""
    profile = profiles.resolve_profile("deepseek-r1", profiles.load_profile_files(profiles.shipped_profiles_dir()))
    server = LaunchRequest(
        profile=profile, host="gpu-0", nodes=[launch_spec.Node("gpu-0", private_ip="10.0.0.10", gpus=8)],
        image="lmsysorg/sglang:v%s" % version, user_env={name: "1"},
    )
    with pytest.raises(launch_spec.LaunchSpecError) as server_refusal:
        launch_spec.build_launch_spec(server)
    with pytest.raises(BenchRunError) as bench_refusal:
        bench_runner.check_env({name: "1"}, "sglang_benchmark_", version)
    origin = re.compile(r"sglang_(server|benchmark)_env(?![_a-z])")
    assert origin.sub("ENV", str(server_refusal.value)) == origin.sub("ENV", str(bench_refusal.value))


def test_benchmark_env_passes_sglang_tuning_variables():
    env = {"SGLANG_ENABLE_JIT_DEEPGEMM": "0", "NCCL_DEBUG": "INFO", "SGLANG_USE_AITER_FP8_PER_TOKEN": "1"}
    assert bench_runner.check_env(env, "sglang_benchmark_", "0.5.23") == env


# --- the server as deployed --------------------------------------------------------------------------


def test_server_spec_is_read_from_the_server_dir(tmp_path):
    spec = server_spec()
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    assert bench_runner.load_server_spec(str(tmp_path)) == spec
    with pytest.raises(BenchRunError, match=r"sglang_benchmark_server_dir='.*missing': no server spec .*deploy"):
        bench_runner.load_server_spec(str(tmp_path / "missing"), "sglang_benchmark_")
    (tmp_path / "spec.json").write_text(json.dumps({"name": "x"}))
    with pytest.raises(BenchRunError, match=r"lacks 'image'; redeploy"):
        bench_runner.load_server_spec(str(tmp_path))


@pytest.mark.parametrize("key", ["sk-plain", 'with "quotes" and: colon', "ünïcode"])
def test_api_key_from_the_servers_config_file(tmp_path, key):
    path = tmp_path / "server-config.yaml"
    path.write_text(server_config_yaml(key))  # written exactly as the server role writes it
    assert bench_runner.read_api_key(str(path)) == key
    plain = tmp_path / "api-key"
    plain.write_text(key + "\n")
    assert bench_runner.read_api_key(str(plain)) == key


def test_the_key_is_read_where_the_server_reads_it():
    spec = server_spec(secrets_dir="/etc/custom")
    assert bench_runner.server_config_path(spec) == "/etc/custom/sglang-server/secrets/server-config.yaml"


def test_server_flags():
    command = ["python3", "-m", "sglang.launch_server", "--tp-size", "8", "--trust-remote-code", "--port=30000"]
    assert bench_runner.server_flag(command, "--tp", "--tp-size") == "8"
    assert bench_runner.server_flag(command, "--trust-remote-code") is True
    assert bench_runner.server_flag(command, "--port") == "30000"
    assert bench_runner.server_flag(command, "--revision") is None


def test_tokenizer_is_the_cached_snapshot_when_present(tmp_path):
    commit = "56d4cbbb4d29f4355bab4b9a39ccb717a14ad5ad"
    spec = server_spec(hf_home=str(tmp_path), snapshot={"complete": True, "commit": commit})
    assert bench_runner.tokenizer_source(spec) == "deepseek-ai/DeepSeek-R1"
    snapshot = tmp_path / "hub" / "models--deepseek-ai--DeepSeek-R1" / "snapshots" / commit
    snapshot.mkdir(parents=True)
    assert bench_runner.tokenizer_source(spec) == str(snapshot)


# --- command lines -----------------------------------------------------------------------------------


def test_serving_command_for_the_deployed_server():
    spec = server_spec()
    settings = bench_runner.serving_settings(SERVING_DEFAULTS)
    command = bench_runner.serving_command(settings, spec, 4, "/run/datacrunch-sglang-bench/serving-c4.jsonl")
    shown = bench_runner.shown_command(command)
    assert shown[:3] == ["python3", "-m", "sglang.benchmark.serving"]
    words = " ".join(shown)
    for expected in (
        "--base-url http://127.0.0.1:30000",
        "--dataset-name random-ids",
        "--num-prompts 32",
        "--random-input-len 128",
        "--random-output-len 256",
        "--random-range-ratio 1",
        "--max-concurrency 4",
        "--request-rate inf",
        "--tokenizer deepseek-ai/DeepSeek-R1",
    ):
        assert expected in words
    assert "api" not in words.lower()


def test_one_batch_command_is_the_seeds_with_the_served_model_and_tp():
    spec = server_spec()
    settings = bench_runner.one_batch_settings(ONE_BATCH_DEFAULTS)
    shown = bench_runner.shown_command(bench_runner.one_batch_command(settings, spec, "/r/one-batch.jsonl"))
    assert shown[:3] == ["python3", "-m", "sglang.benchmark.one_batch"]
    assert shown[3:] == [
        "--model-path",
        "deepseek-ai/DeepSeek-R1",
        "--revision",
        "56d4cbbb4d29f4355bab4b9a39ccb717a14ad5ad",
        "--tp-size",
        "8",
        "--trust-remote-code",
        "--batch-size",
        "1",
        "--input-len",
        "128",
        "--output-len",
        "256",
        "--enable-torch-compile",
        "--torch-compile-max-bs",
        "1",
        "--run-name",
        "datacrunch-sglang",
        "--result-filename",
        "/r/one-batch.jsonl",
    ]
    # The server's DP attention, port and API key config are serving settings, not the single-batch run's.
    assert "--config" not in shown and "--enable-dp-attention" not in shown and "--port" not in shown
    overridden = bench_runner.one_batch_settings(dict(ONE_BATCH_DEFAULTS, tp=4, enable_torch_compile=False))
    shown = bench_runner.shown_command(bench_runner.one_batch_command(overridden, spec, "/r/x.jsonl"))
    assert shown[shown.index("--tp-size") + 1] == "4"
    assert "--enable-torch-compile" not in shown and "--torch-compile-max-bs" not in shown


@pytest.mark.parametrize("version", sglang_cli_flags.supported_versions())
def test_every_flag_the_benchmarks_render_is_one_sglang_takes(version):
    """Checked against the options of SGLang's own parsers for bench_serving and bench_one_batch."""
    spec = server_spec()
    serving = bench_runner.shown_command(
        bench_runner.serving_command(bench_runner.serving_settings(SERVING_DEFAULTS), spec, 4, "/r/s.jsonl")
    )
    one_batch = bench_runner.shown_command(
        bench_runner.one_batch_command(bench_runner.one_batch_settings(ONE_BATCH_DEFAULTS), spec, "/r/o.jsonl")
    )
    for program, command in (("serving", serving), ("one_batch", one_batch)):
        flags = [word for word in command[3:] if word.startswith("--")]
        assert flags, program
        assert not set(flags) - bench_runner.known_flags(program, version), program
        bench_runner.check_flags_for_version(command[3:], program, version)


def test_unknown_extra_flags_are_refused_with_a_suggestion():
    with pytest.raises(
        BenchRunError,
        match=r"sglang_benchmark_extra_args: --max-concurency is not an option of "
        r"bench_serving in SGLang 0.5.18; did you mean --max-concurrency",
    ):
        bench_runner.check_flags_for_version(["--max-concurency", "4"], "serving", "0.5.18", "sglang_benchmark_")
    with pytest.raises(BenchRunError, match=r"--goodput is not an option of bench_serving in SGLang 0.5.18"):
        bench_runner.check_flags_for_version(["--goodput", "ttft:500"], "serving", "0.5.18")
    bench_runner.check_flags_for_version(["--goodput", "ttft:500"], "serving", "0.5.23")
    bench_runner.check_flags_for_version(["--disable-cuda-graph", "--log-decode-step=10"], "one_batch", "0.5.18")
    bench_runner.check_flags_for_version(["--anything"], "serving", "0.4.1")  # no data: SGLang's parser judges


# --- the launcher, run for real against a small sglang package -----------------------------------------


def fake_sglang(root, with_current):
    """A package tree with SGLang's module layout whose benchmark modules report what they were given."""
    report = (
        "import json, os, sys\n"
        "print(json.dumps({'module': __spec__.name, 'argv': sys.argv[1:], "
        "'key': os.environ.get('OPENAI_API_KEY')}))\n"
    )
    package = root / "sglang"
    (package / "benchmark").mkdir(parents=True)
    (package / "__init__.py").write_text("print('sglang imported', flush=True)\n")
    (package / "bench_serving.py").write_text(report)
    if with_current:
        (package / "benchmark" / "__init__.py").write_text("")
        (package / "benchmark" / "serving.py").write_text(report)
    return root


@pytest.mark.parametrize(
    ("with_current", "module"), [(True, "sglang.benchmark.serving"), (False, "sglang.bench_serving")]
)
def test_launcher_picks_the_module_and_passes_the_key_only_through_the_environment(tmp_path, with_current, module):
    fake_sglang(tmp_path / "site", with_current)
    key_file = tmp_path / "api-key"
    key_file.write_text("sk-launcher-test\n")
    command = [sys.executable, "-c", bench_runner.LAUNCHER, str(key_file), *bench_runner.SERVING_MODULES, "--x", "1"]
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "site"))
    env.pop("OPENAI_API_KEY", None)
    completed = subprocess.run(command, capture_output=True, text=True, env=env, check=True, timeout=60)
    lines = completed.stdout.strip().splitlines()
    # The launcher chooses without importing SGLang: the package is imported once, by the benchmark itself.
    assert lines[:2] == [f"datacrunch.sglang: running python3 -m {module}", "sglang imported"]
    seen = json.loads(lines[2])
    assert seen == {"module": module, "argv": ["--x", "1"], "key": "sk-launcher-test"}
    assert "sk-launcher-test" not in " ".join(command[4:])


def test_launcher_without_key_file_sets_no_key(tmp_path):
    fake_sglang(tmp_path / "site", True)
    command = [sys.executable, "-c", bench_runner.LAUNCHER, str(tmp_path / "none"), *bench_runner.SERVING_MODULES]
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "site"))
    env.pop("OPENAI_API_KEY", None)
    completed = subprocess.run(command, capture_output=True, text=True, env=env, check=True, timeout=60)
    assert json.loads(completed.stdout.strip().splitlines()[2])["key"] is None


def test_redaction_and_shown_command():
    assert bench_runner.redact("key=sk-abcdef here", ["sk-abcdef", "", "abc"]) == "key=******** here"
    assert bench_runner.shown_command(["docker", "ps"]) == ["docker", "ps"]


# --- a stuck bench_one_batch -------------------------------------------------------------------------


STUCK_LOG = "\n".join([
    "Process Process-5:",
    "Traceback (most recent call last):",
    '  File "/sgl-workspace/sglang/python/sglang/benchmark/one_batch.py", line 980, in latency_test',
    "torch.AcceleratorError: CUDA error: invalid device ordinal",
]) + "\n"


class _StuckContainer:
    """A bench_one_batch container whose TP workers wait for a failed one: it runs and prints nothing more."""

    def __init__(self, text):
        self.text = text
        self.killed = False

    def wait(self, timeout):
        time.sleep(timeout)
        raise bench_runner.ReadTimeout("still running")

    def logs(self, **_kwargs):
        return self.text.encode()

    def kill(self):
        self.killed = True


def test_a_run_that_prints_nothing_for_the_stall_timeout_is_stopped_with_the_failed_worker_named():
    runner = bench_runner.BenchRunner(server_spec(), client=object(), timeout=3600, stall_timeout=1)
    container = _StuckContainer(STUCK_LOG)
    started = time.monotonic()
    with pytest.raises(BenchRunError) as failure:
        runner._wait("one-batch", container, runner.stall_timeout, poll=0.1)
    assert container.killed
    assert time.monotonic() - started < 5  # not the benchmark timeout
    assert "printed nothing for 1 s and was stopped" in str(failure.value)
    assert "a worker failed: torch.AcceleratorError: CUDA error: invalid device ordinal" in str(failure.value)


# --- progress while bench_serving runs -------------------------------------------------------------------------

TQDM_BARS = "\r  0%|          | 0/80 [00:00<?, ?it/s]\r 45%|████▌     | 36/80 [00:05<00:06,  7.20it/s]"


def test_requests_done_reads_the_last_tqdm_bar():
    assert bench_runner.requests_done(TQDM_BARS) == (36, 80)
    assert bench_runner.requests_done("#Input tokens: 5120\nStarting warmup with 1 sequences...") is None


class _ProgressContainer:
    """A bench_serving container whose bar is in its attached stream only (Docker's logs wait for a line end)."""

    def __init__(self, chunks, polls):
        self.chunks, self.polls = chunks, polls

    def attach(self, **kwargs):
        assert kwargs["stream"] and kwargs["logs"]
        return iter(self.chunks)

    def wait(self, timeout):
        self.polls -= 1
        if self.polls > 0:
            time.sleep(timeout)
            raise bench_runner.ReadTimeout("still running")
        return {"StatusCode": 0}

    def logs(self, **_kwargs):
        return b"#Input tokens: 5120\n"

    def remove(self, **_kwargs):
        pass


def test_a_run_passes_the_attached_output_with_its_bar_to_each_poll(tmp_path):
    container = _ProgressContainer([b"#Input tokens: 5120\n", TQDM_BARS.encode()], polls=3)

    class Client:
        class containers:  # the SDK's attribute name
            @staticmethod
            def run(_image, _command, **_options):
                return container

    runner = bench_runner.BenchRunner(server_spec(), client=Client(), timeout=3600)
    seen = []
    runner.stall_timeout = 3600
    original = runner._wait
    runner._wait = lambda kind, box, stall, poll=None, on_poll=None: original(kind, box, stall, 0.05, on_poll)
    exit_code, _logs = runner.run("serving-c8", ["true"], str(tmp_path), on_output=seen.append)
    assert exit_code == 0
    assert seen and bench_runner.requests_done(seen[-1]) == (36, 80)


def test_progress_events_say_the_level_and_the_requests_finished():
    events = []
    runner = bench_runner.BenchRunner(server_spec(), client=object(), progress=events.append)
    position = {"level": 8, "levels": [1, 4, 8], "level_index": 3, "requests_total": 80}
    runner._progress("running", position, time.monotonic(), None)
    runner._progress("running", position, time.monotonic(), (36, 80))
    assert [(e["level"], e["level_index"], e["requests_done"], e["requests_total"], e["state"]) for e in events] == [
        (8, 3, 0, 80, "running"), (8, 3, 36, 80, "running")]
