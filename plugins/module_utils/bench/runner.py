# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run SGLang's benchmarks on a host in short-lived containers of the server's own image (docker SDK).

The benchmarked server is described by the spec that ``sglang_container`` keeps next to its secrets
(``<server_dir>/spec.json``): image, environment, mounts, endpoint, model. A benchmark container takes the
same image and caches, runs on the host network, and is removed when it ends.

``bench_serving`` needs the server's API key. It is read on the host from the server's root-only config file
and copied into a root-only file in a private working directory, mounted read-only into the benchmark
container; a small launcher puts it into the environment of the benchmark process only. It never appears on
a command line, in the container's configuration (``docker inspect``), in the module's result or in a report.

``bench_one_batch`` loads the model itself and needs the GPUs: the server container is stopped for the run
and started again afterwards, whatever the run's outcome, and the server is waited for until it serves.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import re
import shutil
import tempfile
import threading
import time
import uuid

from ansible_collections.datacrunch.sglang.plugins.module_utils.bench.output import (
    BenchOutputError,
    one_batch_result,
    serving_result,
)
from ansible_collections.datacrunch.sglang.plugins.module_utils.bench.report import utc_now
from ansible_collections.datacrunch.sglang.plugins.module_utils.common.docker_sdk import (
    APIError,
    DeviceRequest,
    DockerException,
    DockerUnavailable,
    ImageNotFound,
    Mount,
    NotFound,
    Ulimit,
    connect,
)
from ansible_collections.datacrunch.sglang.plugins.module_utils.common.secret_files import redact
from ansible_collections.datacrunch.sglang.plugins.module_utils.launch.cli_flags import (
    SGLANG_BENCH_FLAGS,
    SGLANG_CLI_FLAGS,
)
from ansible_collections.datacrunch.sglang.plugins.module_utils.launch.container import (
    SPEC_FILE,
    ServerContainer,
    ServerError,
)
from ansible_collections.datacrunch.sglang.plugins.module_utils.launch.crash_log import excerpt, root_cause
from ansible_collections.datacrunch.sglang.plugins.module_utils.launch.env_names import EnvNameError
from ansible_collections.datacrunch.sglang.plugins.module_utils.launch.env_names import check_env as check_env_names
from ansible_collections.datacrunch.sglang.plugins.module_utils.launch.sglang_http import probe_ready
from ansible_collections.datacrunch.sglang.plugins.module_utils.launch.spec import (
    CONTAINER_SECRETS_DIR,
    LABEL_PREFIX,
    SERVER_CONFIG_FILE,
)

try:
    from requests.exceptions import ConnectionError as RequestsConnectionError
    from requests.exceptions import ReadTimeout
except ImportError:  # pragma: no cover - requests comes with the docker SDK, without which nothing here runs
    RequestsConnectionError = ReadTimeout = DockerException

LABEL_BENCHMARK = LABEL_PREFIX + "benchmark"
CONTAINER_NAME_PREFIX = "sglang-bench-"
CONTAINER_WORK_DIR = "/run/datacrunch-sglang-bench"
CONTAINER_KEY_FILE = CONTAINER_WORK_DIR + "/api-key"
LOG_TAIL_LINES = 40
# bench_one_batch prints while it loads (progress bars), compiles and measures; 10 minutes without a line means a
# stuck run (a failed TP worker leaves the others waiting in NCCL for ever), not a slow one.
DEFAULT_STALL_TIMEOUT = 600
STALL_POLL_SECONDS = 5
# How often a run that reports progress (bench_serving) is looked at.
PROGRESS_POLL_SECONDS = 2
# bench_serving's tqdm bar, one step per finished request: " 45%|####5     | 36/80 [00:05<00:06,  7.20it/s]".
# tqdm redraws it with carriage returns, and Docker stores a log line only once it ends, so the bar is read from
# the container's attached output stream, not from its logs.
TQDM_COUNT_RE = re.compile(r"\|\s*(\d+)/(\d+)\s*\[")
LIVE_OUTPUT_CHARS = 4096


def requests_done(text):
    """(finished, total) requests from the last progress bar in bench_serving's output; None before the first."""
    counts = TQDM_COUNT_RE.findall(text)
    return (int(counts[-1][0]), int(counts[-1][1])) if counts else None


class _LiveOutput:
    """The last LIVE_OUTPUT_CHARS of a running container's output, read from its attached stream in a thread (the
    progress bars that its logs do not hold yet). Nothing when the engine does not attach."""

    def __init__(self, container):
        self.text = ""
        self._lock = threading.Lock()
        try:
            stream = container.attach(stdout=True, stderr=True, stream=True, logs=True)
        except Exception:  # noqa: BLE001 - progress is a courtesy: the run goes on without it
            return
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream):
        with contextlib.suppress(Exception):
            for chunk in stream:
                with self._lock:
                    self.text = (self.text + chunk.decode(errors="replace"))[-LIVE_OUTPUT_CHARS:]

    def tail(self):
        with self._lock:
            return self.text


# (module of current releases, module of older releases): SGLang 0.5.18 moved the benchmarks into
# sglang.benchmark and keeps the old names as deprecated shims; later releases drop some of them.
SERVING_MODULES = ("sglang.benchmark.serving", "sglang.bench_serving")
ONE_BATCH_MODULES = ("sglang.benchmark.one_batch", "sglang.bench_one_batch")

# Runs inside the benchmark container: exports the API key from the mounted root-only file (if any) into
# its own environment, picks the benchmark module the image has, and becomes `python3 -m <module> ARGS`.
# Looking for the module file does not import SGLang.
LAUNCHER = """\
import importlib.util, os, sys
key_file, current, legacy = sys.argv[1:4]
if os.path.exists(key_file):
    with open(key_file) as handle:
        os.environ["OPENAI_API_KEY"] = handle.read().strip()
spec = importlib.util.find_spec("sglang")
roots = list(spec.submodule_search_locations or []) if spec else []
relative = os.path.join(*current.split(".")[1:]) + ".py"
module = current if any(os.path.exists(os.path.join(root, relative)) for root in roots) else legacy
print("datacrunch.sglang: running python3 -m " + module, flush=True)
os.execvp(sys.executable, [sys.executable, "-m", module, *sys.argv[4:]])
"""

DATASETS_WITHOUT_FILES = ("random-ids",)
DATASETS_WITH_FILES = ("random", "sharegpt", "custom")
# Flags the module sets itself: a user value would break the parsing or leak the key.
OWNED_SERVING_FLAGS = (
    "--backend",
    "--base-url",
    "--host",
    "--port",
    "--output-file",
    "--max-concurrency",
    "--num-prompts",
    "--dataset-name",
    "--dataset-path",
    "--random-input-len",
    "--random-output-len",
    "--random-range-ratio",
    "--request-rate",
    "--tokenizer",
)
OWNED_ONE_BATCH_FLAGS = (
    "--model-path",
    "--model",
    "--tp-size",
    "--tp",
    "--batch-size",
    "--input-len",
    "--output-len",
    "--result-filename",
    "--run-name",
)


class BenchRunError(Exception):
    """A benchmark could not run or produced no result; carries the evidence (log tail, exit code)."""

    def __init__(self, message, **evidence):
        super().__init__(message)
        self.evidence = evidence


# --- inputs ------------------------------------------------------------------------------------------


def _name(prefix, option):
    return f"{prefix}{option}"


def _positive_int(value, prefix, option, example):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BenchRunError(f"{_name(prefix, option)}={value!r} must be a positive integer, e.g. {example}")
    return value


def _check_extra_args(extra_args, owned, prefix, option):
    if not isinstance(extra_args, list) or not all(isinstance(arg, str) for arg in extra_args):
        raise BenchRunError(f"{_name(prefix, option)}={extra_args!r} must be a list of strings")
    for arg in extra_args:
        flag = arg.split("=", 1)[0]
        # argparse also takes a unique prefix of a long option (--max-conc for --max-concurrency).
        if flag.startswith("--") and any(owned_flag.startswith(flag) for owned_flag in owned):
            raise BenchRunError(
                f"{_name(prefix, option)} contains {flag}, which the benchmark sets itself; "
                f"use the dedicated setting instead (flags set here: {', '.join(owned)})"
            )
        if "api-key" in flag or "api_key" in flag:
            raise BenchRunError(
                f"{_name(prefix, option)} contains {flag}: the API key is read from the server's root-only file "
                "on the host and must not be passed on a command line"
            )


def check_env(env, prefix="", version="", extra_names=()):
    """The benchmark containers' extra environment, held to the rule every environment of the collection follows."""
    try:
        return check_env_names(env, _name(prefix, "env"), version, extra_names)
    except EnvNameError as exc:
        raise BenchRunError(str(exc)) from None


def serving_settings(params, prefix=""):
    """Validate the bench_serving settings; return them normalised."""
    concurrency = params.get("concurrency")
    if not isinstance(concurrency, list) or not concurrency:
        raise BenchRunError(f"{_name(prefix, 'concurrency')}={concurrency!r} must be a non-empty list, e.g. [1, 4, 16]")
    for level in concurrency:
        _positive_int(level, prefix, "concurrency", "[1, 4, 16]")
    if len(set(concurrency)) != len(concurrency):
        raise BenchRunError(f"{_name(prefix, 'concurrency')}={concurrency!r} lists a level twice")
    input_len = _positive_int(params.get("input_len"), prefix, "input_len", 128)
    output_len = _positive_int(params.get("output_len"), prefix, "output_len", 256)
    num_prompts = params.get("num_prompts") or 0
    if num_prompts:
        _positive_int(num_prompts, prefix, "num_prompts", 64)
    per_level = _positive_int(params.get("prompts_per_concurrency") or 8, prefix, "prompts_per_concurrency", 8)
    dataset_name = params.get("dataset_name") or "random-ids"
    dataset_path = params.get("dataset_path") or ""
    if dataset_name not in DATASETS_WITHOUT_FILES + DATASETS_WITH_FILES:
        raise BenchRunError(
            f"{_name(prefix, 'dataset_name')}={dataset_name!r} is not supported here; use random-ids (no download), "
            f"or one of {', '.join(DATASETS_WITH_FILES)} with {_name(prefix, 'dataset_path')}"
        )
    if dataset_name in DATASETS_WITH_FILES and not dataset_path:
        raise BenchRunError(
            f"{_name(prefix, 'dataset_name')}={dataset_name!r} needs {_name(prefix, 'dataset_path')} (a file on the "
            "host); without one SGLang downloads ShareGPT from the Hub. Use random-ids to need no file"
        )
    if dataset_path and not os.path.isabs(dataset_path):
        raise BenchRunError(f"{_name(prefix, 'dataset_path')}={dataset_path!r} must be an absolute path on the host")
    request_rate = params.get("request_rate", "inf")
    if str(request_rate) != "inf":
        try:
            rate = float(request_rate)
        except (TypeError, ValueError):
            rate = -1
        if not rate > 0:
            raise BenchRunError(
                f"{_name(prefix, 'request_rate')}={request_rate!r} must be 'inf' (all at once, bounded by the "
                "concurrency) or requests per second above 0"
            )
    extra_args = params.get("extra_args") or []
    _check_extra_args(extra_args, OWNED_SERVING_FLAGS, prefix, "extra_args")
    return {
        "concurrency": list(concurrency),
        "input_len": input_len,
        "output_len": output_len,
        "num_prompts": num_prompts,
        "prompts_per_concurrency": per_level,
        "dataset_name": dataset_name,
        "dataset_path": dataset_path,
        "request_rate": str(request_rate),
        "backend": params.get("backend") or "sglang",
        "extra_args": list(extra_args),
    }


def one_batch_settings(params, prefix=""):
    """Validate the bench_one_batch settings; return them normalised."""
    settings = {
        "batch_size": _positive_int(params.get("batch_size"), prefix, "batch_size", 1),
        "input_len": _positive_int(params.get("input_len"), prefix, "input_len", 128),
        "output_len": _positive_int(params.get("output_len"), prefix, "output_len", 256),
        "enable_torch_compile": bool(params.get("enable_torch_compile")),
        "torch_compile_max_bs": params.get("torch_compile_max_bs") or 0,
        "tp": params.get("tp") or 0,
        "extra_args": list(params.get("extra_args") or []),
    }
    if settings["output_len"] < 2:
        raise BenchRunError(
            f"{_name(prefix, 'output_len')}=1 gives no decode step to measure; use at least 2 (the seed uses 256)"
        )
    if settings["torch_compile_max_bs"]:
        _positive_int(settings["torch_compile_max_bs"], prefix, "torch_compile_max_bs", 1)
    if settings["tp"]:
        _positive_int(settings["tp"], prefix, "tp", 8)
    _check_extra_args(settings["extra_args"], OWNED_ONE_BATCH_FLAGS, prefix, "extra_args")
    return settings


def known_flags(program, version):
    """Options of bench_serving or bench_one_batch (which also takes every server option) in an SGLang version,
    from SGLang's own parsers; None for a version without flag data."""
    table = SGLANG_BENCH_FLAGS.get(program, {}).get(version)
    if table is None:
        return None
    known = set(table)
    if program == "one_batch":
        known |= set(SGLANG_CLI_FLAGS.get(version) or {})
    return known


def check_flags_for_version(args, program, version, prefix="", option="extra_args"):
    """Refuse a flag the version's benchmark program does not take, before anything runs.

    Abbreviations that argparse resolves to one option are accepted, as SGLang's parsers accept them. Versions
    without flag data are left to SGLang's own parser.
    """
    known = known_flags(program, version)
    if known is None:
        return
    command = {"serving": "bench_serving", "one_batch": "bench_one_batch"}[program]
    for arg in args:
        if not arg.startswith("--"):
            continue
        name = arg.split("=", 1)[0]
        if name in known or len([flag for flag in known if flag.startswith(name)]) == 1:
            continue
        close = difflib.get_close_matches(name, sorted(known), n=3)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise BenchRunError(f"{_name(prefix, option)}: {name} is not an option of {command} in SGLang {version}{hint}")


# --- the server as deployed --------------------------------------------------------------------------


def load_server_spec(server_dir, prefix=""):
    """The launch spec of the server on this host, as sglang_container recorded it."""
    path = os.path.join(server_dir, SPEC_FILE)
    try:
        with open(path, encoding="utf-8") as handle:
            spec = json.load(handle)
    except FileNotFoundError:
        raise BenchRunError(
            f"{_name(prefix, 'server_dir')}={server_dir!r}: no server spec at {path}; deploy the server first "
            "(playbooks/deploy.yml), or point this setting at the directory of the server's spec and secrets"
        ) from None
    except (OSError, ValueError) as exc:
        raise BenchRunError(f"the server spec {path} cannot be read: {exc}") from None
    for field in ("name", "image", "command", "readiness", "mounts"):
        if field not in spec:
            raise BenchRunError(f"the server spec {path} lacks {field!r}; redeploy the server to rewrite it")
    return spec


def read_api_key(path):
    """The API key from SGLang's config file (``api-key: "..."``) or from a file holding only the key."""
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    for line in text.splitlines():
        match = re.match(r"^\s*api[-_]key\s*:\s*(?P<value>.*?)\s*$", line)
        if match:
            value = match["value"]
            if value.startswith('"'):
                return json.loads(value)
            return value.strip("'")
    return text.strip()


def server_config_path(spec):
    """The host file the server reads its API key from: the config file in its mounted secrets directory."""
    for mount in spec["mounts"]:
        if mount["target"] == CONTAINER_SECRETS_DIR:
            return os.path.join(mount["source"], SERVER_CONFIG_FILE)
    return os.path.join(spec["host_dirs"]["secrets"], "secrets", SERVER_CONFIG_FILE)


def server_flag(command, *names):
    """The value of a flag in the server's command line (the next word), True for a bare flag, else None."""
    for index, word in enumerate(command):
        flag, _separator, inline = word.partition("=")
        if flag in names:
            if inline:
                return inline
            following = command[index + 1] if index + 1 < len(command) else ""
            return following if following and not following.startswith("--") else True
    return None


def tokenizer_source(spec):
    """Where the benchmark loads the tokenizer: the snapshot directory of the served revision when it is in
    the host's cache (works offline, whatever the refs say), else the model id."""
    model = spec.get("model") or server_flag(spec["command"], "--model-path", "--model") or ""
    revision = spec.get("revision") or ""
    hf_home = (spec.get("env") or {}).get("HF_HOME") or ""
    if model and hf_home and re.fullmatch(r"[0-9a-f]{40}", revision) and "/" in model and not model.startswith("/"):
        snapshot = os.path.join(hf_home, "hub", "models--" + model.replace("/", "--"), "snapshots", revision)
        if os.path.isdir(snapshot):
            return snapshot
    return model


def serving_num_prompts(settings, level):
    return settings["num_prompts"] or settings["prompts_per_concurrency"] * level


def serving_command(settings, spec, level, output_file):
    """argv of one bench_serving run (no secret in it)."""
    args = [
        "--backend",
        settings["backend"],
        "--base-url",
        spec["readiness"]["base_url"],
        "--dataset-name",
        settings["dataset_name"],
        "--num-prompts",
        str(serving_num_prompts(settings, level)),
        "--random-input-len",
        str(settings["input_len"]),
        "--random-output-len",
        str(settings["output_len"]),
        "--random-range-ratio",
        "1",
        "--max-concurrency",
        str(level),
        "--request-rate",
        settings["request_rate"],
        "--output-file",
        output_file,
    ]
    if settings["dataset_path"]:
        args += ["--dataset-path", settings["dataset_path"]]
    tokenizer = tokenizer_source(spec)
    if tokenizer:
        args += ["--tokenizer", tokenizer]
    return ["python3", "-c", LAUNCHER, CONTAINER_KEY_FILE, *SERVING_MODULES, *args, *settings["extra_args"]]


def one_batch_command(settings, spec, result_file):
    """argv of the bench_one_batch run: the seed's flags with the served model and its tensor parallel size."""
    command = spec["command"]
    model = spec.get("model") or server_flag(command, "--model-path", "--model")
    tp = settings["tp"] or server_flag(command, "--tp-size", "--tp", "--tensor-parallel-size")
    if not model or not tp or tp is True:
        raise BenchRunError(
            "the server's command line names no model or tensor parallel size; redeploy the server, or set the "
            "tensor parallel size of the benchmark"
        )
    args = ["--model-path", str(model)]
    revision = spec.get("revision") or server_flag(command, "--revision")
    if revision and revision is not True:
        args += ["--revision", str(revision)]
    args += ["--tp-size", str(tp)]
    if server_flag(command, "--trust-remote-code"):
        args.append("--trust-remote-code")
    args += [
        "--batch-size",
        str(settings["batch_size"]),
        "--input-len",
        str(settings["input_len"]),
        "--output-len",
        str(settings["output_len"]),
    ]
    if settings["enable_torch_compile"]:
        args.append("--enable-torch-compile")
        if settings["torch_compile_max_bs"]:
            args += ["--torch-compile-max-bs", str(settings["torch_compile_max_bs"])]
    args += ["--run-name", "datacrunch-sglang", "--result-filename", result_file]
    return ["python3", "-c", LAUNCHER, CONTAINER_KEY_FILE, *ONE_BATCH_MODULES, *args, *settings["extra_args"]]


def shown_command(command):
    """The benchmark's command line for people: the launcher code replaced by what it does."""
    if len(command) > 5 and command[:2] == ["python3", "-c"]:
        return ["python3", "-m", command[4], *command[6:]]
    return list(command)


# --- containers --------------------------------------------------------------------------------------


class BenchRunner:
    """Runs benchmark containers next to the server described by its spec."""

    def __init__(self, spec, env=None, image="", timeout=3600, client=None, check_mode=False,
                 stall_timeout=DEFAULT_STALL_TIMEOUT, progress=None):
        """progress: called with a dict (state, level, levels, level_index, requests_done, requests_total,
        elapsed_s) while bench_serving runs and once when it ends (state done or failed)."""
        self.spec = spec
        self.progress = progress
        self.image = image or spec["image"]
        self.env = env or {}
        self.timeout = timeout
        self.stall_timeout = stall_timeout
        self.check_mode = check_mode
        self.secrets = []
        self.client = client
        if client is None:
            try:
                self.client = connect(timeout=120)
            except DockerUnavailable as exc:
                raise BenchRunError(str(exc)) from None

    def container_env(self):
        """The server's environment (caches, offline mode, NCCL) without secret paths, plus the user's."""
        env = {key: value for key, value in (self.spec.get("env") or {}).items() if key != "HF_TOKEN_PATH"}
        env["HF_HUB_OFFLINE"] = "1"  # a benchmark downloads nothing: the tokenizer and weights are in the cache
        env.update(self.env)
        return env

    def remove_leftovers(self):
        """Remove benchmark containers an interrupted earlier run left behind."""
        removed = []
        for container in self.client.containers.list(all=True, filters={"label": LABEL_BENCHMARK}):
            try:
                container.remove(force=True)
                removed.append(container.name)
            except (APIError, NotFound):
                pass
        return removed

    def ensure_image(self):
        try:
            self.client.images.get(self.image)
        except ImageNotFound:
            raise BenchRunError(
                f"image {self.image} is not on this host; the benchmark uses the server's image, so deploy the "
                "server first or load the image (docker load)"
            ) from None

    def run(self, kind, command, work_dir, gpus=False, files=(), stall_timeout=None, on_output=None):
        """Run one benchmark container to its end; (exit code, log text). The container is always removed.

        ``files`` are host files the benchmark reads (a dataset), mounted read-only at the same path.
        ``stall_timeout``: seconds without new output after which the run counts as stuck (None: no such limit).
        ``on_output``: called with the container's latest output (progress bars included) at each poll.
        """
        mounts = [Mount(target=CONTAINER_WORK_DIR, source=work_dir, type="bind", read_only=False)]
        mounts += [Mount(target=path, source=path, type="bind", read_only=True) for path in files]
        for mount in self.spec["mounts"]:
            if mount["target"] == CONTAINER_SECRETS_DIR:
                continue  # the server's secrets stay with the server
            read_only = mount["read_only"] or not gpus  # bench_serving only reads the tokenizer
            mounts.append(Mount(target=mount["target"], source=mount["source"], type="bind", read_only=read_only))
        options = {
            "name": f"{CONTAINER_NAME_PREFIX}{kind}-{uuid.uuid4().hex[:8]}",
            "labels": {LABEL_BENCHMARK: kind, "datacrunch.sglang.server": self.spec["name"]},
            "environment": self.container_env(),
            "network_mode": "host",
            "mounts": mounts,
            "detach": True,
        }
        if gpus:
            options.update(
                # The GPUs the server itself asks for (all of them in every launch spec).
                device_requests=[DeviceRequest(count=-1, capabilities=[["gpu"]])] if self.spec.get("gpus") else None,
                ipc_mode=self.spec.get("ipc_mode") or "host",
                shm_size=self.spec.get("shm_size") or "32g",
                ulimits=[Ulimit(name=u["name"], soft=u["soft"], hard=u["hard"]) for u in self.spec.get("ulimits", [])],
            )
        container = self.client.containers.run(self.image, command, **options)
        live = _LiveOutput(container) if on_output else None
        try:
            exit_code = self._wait(
                kind, container, stall_timeout if stall_timeout is not None else self.timeout,
                poll=PROGRESS_POLL_SECONDS if live else STALL_POLL_SECONDS,
                on_poll=(lambda: on_output(live.tail())) if live else None,
            )
            logs = container.logs(stdout=True, stderr=True).decode(errors="replace")
        finally:
            with contextlib.suppress(APIError, NotFound):
                container.remove(force=True)
        return exit_code, redact(logs, self.secrets)

    def _wait(self, kind, container, stall_timeout, poll=STALL_POLL_SECONDS, on_poll=None):
        """Wait for the benchmark container to exit; its exit code. Kills it and raises when it runs past the
        timeout, or prints nothing new for stall_timeout seconds (SGLang's bench_one_batch with TP > 1 joins its
        workers: when one fails, the others wait in NCCL for ever and the run neither ends nor prints)."""
        started = last_output = time.monotonic()
        seen = -1
        while True:
            try:
                status = container.wait(timeout=poll)
                return status.get("StatusCode")
            except (ReadTimeout, RequestsConnectionError):
                pass
            if on_poll:
                on_poll()
            now = time.monotonic()
            logs = container.logs(stdout=True, stderr=True).decode(errors="replace")
            if len(logs) != seen:
                seen, last_output = len(logs), now
            if now - started >= self.timeout:
                container.kill()
                raise BenchRunError(
                    f"the {kind} benchmark did not finish within {self.timeout} s; raise the benchmark timeout or "
                    "lower the number of prompts",
                    logs=self.tail(logs),
                )
            if now - last_output >= stall_timeout:
                container.kill()
                cause = root_cause(logs)
                raise BenchRunError(
                    f"the {kind} benchmark printed nothing for {int(now - last_output)} s and was stopped"
                    + (f"; a worker failed: {redact(cause, self.secrets)}" if cause else "")
                    + " (SGLang's bench_one_batch waits for ever when one of its TP workers fails; raise the stall "
                    "timeout if a run is just slow to print)",
                    logs=redact(excerpt(logs, tail=LOG_TAIL_LINES), self.secrets),
                )

    def tail(self, text, lines=LOG_TAIL_LINES):
        return redact("\n".join(text.splitlines()[-lines:]), self.secrets)

    # --- the two benchmarks ------------------------------------------------------------------------

    def serving(self, settings, api_key_file=""):
        """bench_serving at each concurrency level in turn; the parsed results."""
        planned = [
            shown_command(serving_command(settings, self.spec, level, f"{CONTAINER_WORK_DIR}/serving-c{level}.jsonl"))
            for level in settings["concurrency"]
        ]
        result = {"settings": _public_settings(settings), "image": self.image, "commands": planned, "results": []}
        self.ensure_image()
        if settings["dataset_path"] and not os.path.isfile(settings["dataset_path"]):
            raise BenchRunError(
                f"the dataset file {settings['dataset_path']} is not on this host; copy it there first, or use "
                "dataset_name random-ids, which needs no file"
            )
        if self.check_mode:
            return result
        ready, detail = probe_ready(self.spec["readiness"])
        if not ready:
            raise BenchRunError(
                f"the server {self.spec['name']} at {self.spec['readiness']['base_url']} is not serving ({detail}); "
                "deploy it (playbooks/deploy.yml) or wait until it is ready, then benchmark"
            )
        self.remove_leftovers()
        result["started_at"] = utc_now()
        with _private_dir() as work_dir:
            if self.spec.get("secret_files") or api_key_file:
                key = self._copy_key(api_key_file, work_dir)
                self.secrets.append(key)
            levels = settings["concurrency"]
            for index, level in enumerate(levels):
                output_file = f"serving-c{level}.jsonl"
                command = serving_command(settings, self.spec, level, f"{CONTAINER_WORK_DIR}/{output_file}")
                started = time.monotonic()
                dataset = [settings["dataset_path"]] if settings["dataset_path"] else []
                position = {"level": level, "levels": list(levels), "level_index": index + 1,
                            "requests_total": serving_num_prompts(settings, level)}  # fmt: skip
                self._progress("running", position, started, None)
                exit_code, logs = self.run(
                    f"serving-c{level}", command, work_dir, files=dataset,
                    on_output=lambda text, position=position, started=started: self._progress(
                        "running", position, started, requests_done(text)),
                )
                jsonl = _read_optional(os.path.join(work_dir, output_file))
                requested = {
                    "max_concurrency": level,
                    "num_prompts": serving_num_prompts(settings, level),
                    "random_input_len": settings["input_len"],
                    "random_output_len": settings["output_len"],
                }
                try:
                    record = serving_result(logs, jsonl, requested)
                except BenchOutputError as exc:
                    raise BenchRunError(
                        f"bench_serving at concurrency {level} failed (exit code {exit_code}): {exc}",
                        exit_code=exit_code,
                        logs=self.tail(logs),
                    ) from None
                if exit_code != 0:
                    raise BenchRunError(
                        f"bench_serving at concurrency {level} exited with code {exit_code}",
                        exit_code=exit_code,
                        logs=self.tail(logs),
                    )
                record["num_prompts"] = serving_num_prompts(settings, level)
                record["failed"] = max(0, record["num_prompts"] - (record.get("completed") or 0))
                record["wall_s"] = round(time.monotonic() - started, 1)
                result["results"].append(record)
                # Every request has ended, done or failed (the bar counts both; "completed" the done ones only).
                self._progress("running", dict(position, requests_failed=record["failed"]), started,
                               (record["num_prompts"], record["num_prompts"]))
        result["finished_at"] = utc_now()
        return result

    def _progress(self, state, position, started, done):
        if self.progress is None:
            return
        event = dict(position, state=state, elapsed_s=round(time.monotonic() - started, 1))
        event["requests_done"] = done[0] if done else 0
        if done:
            event["requests_total"] = done[1]
        with contextlib.suppress(Exception):
            self.progress(event)

    def one_batch(self, settings):
        """bench_one_batch once, with the GPUs to itself; the parsed runs."""
        command = one_batch_command(settings, self.spec, f"{CONTAINER_WORK_DIR}/one-batch.jsonl")
        result = {"settings": _public_settings(settings), "image": self.image, "commands": [shown_command(command)]}
        self.ensure_image()
        if self.check_mode:
            return result
        self.remove_leftovers()
        result["started_at"] = utc_now()
        with _private_dir() as work_dir:
            exit_code, logs = self.run("one-batch", command, work_dir, gpus=True, stall_timeout=self.stall_timeout)
            jsonl = _read_optional(os.path.join(work_dir, "one-batch.jsonl"))
        requested = {key: settings[key] for key in ("batch_size", "input_len", "output_len")}
        try:
            parsed = one_batch_result(logs, jsonl, requested)
        except BenchOutputError as exc:
            # With TP > 1 a failed worker still ends in exit code 0 when every worker ended: name the failure.
            cause = root_cause(logs)
            worker = f"; a worker failed: {redact(cause, self.secrets)}" if cause else ""
            raise BenchRunError(
                f"bench_one_batch failed (exit code {exit_code}): {exc}{worker}",
                exit_code=exit_code,
                logs=redact(excerpt(logs, tail=LOG_TAIL_LINES), self.secrets),
            ) from None
        if exit_code != 0:
            raise BenchRunError(
                f"bench_one_batch exited with code {exit_code}", exit_code=exit_code, logs=self.tail(logs)
            )
        wanted = [
            run
            for run in parsed["runs"]
            if (run.get("batch_size"), run.get("input_len"), run.get("output_len"))
            == (settings["batch_size"], settings["input_len"], settings["output_len"])
        ]
        result.update(
            result=(wanted or parsed["runs"])[-1],
            runs=parsed["runs"],
            warmup=parsed["warmup"],
            skipped=parsed["skipped"],
            finished_at=utc_now(),
        )
        return result

    def _copy_key(self, api_key_file, work_dir):
        path = api_key_file or server_config_path(self.spec)
        try:
            key = read_api_key(path)
        except OSError as exc:
            raise BenchRunError(
                f"the server's API key cannot be read from {path} ({exc.strerror}); the server role writes it "
                "there on deploy: redeploy, or point the API key file setting at the file that holds it"
            ) from None
        if not key:
            raise BenchRunError(f"the server's API key file {path} holds no key; redeploy the server")
        target = os.path.join(work_dir, os.path.basename(CONTAINER_KEY_FILE))
        descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(key)
        return key


def _public_settings(settings):
    return {key: value for key, value in settings.items() if value not in ("", None, [])}


def _read_optional(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return ""


class _private_dir:
    """A root-only working directory for one benchmark, removed with everything in it."""

    def __enter__(self):
        self.path = tempfile.mkdtemp(prefix="datacrunch-sglang-bench-")
        return self.path

    def __exit__(self, *_exc):
        shutil.rmtree(self.path, ignore_errors=True)
        return False


def one_batch_with_server_stopped(runner, settings, ready_timeout=1800, stop_server=True):
    """Stop the server, run bench_one_batch, start the server again and wait until it serves.

    The server is started again whatever the benchmark's outcome. Returns (result, server) where server says
    what happened to it: was_running, stopped, restarted, seconds_to_ready.
    """
    spec = runner.spec
    if (spec.get("nnodes") or 1) > 1:
        raise BenchRunError(
            f"the server {spec['name']} is one rank of a {spec['nnodes']}-node unit; the single-batch benchmark "
            "runs on single-node servers only: turn it off for this host group"
        )
    try:
        server = ServerContainer(spec, check_mode=runner.check_mode, client=runner.client)
    except ServerError as exc:
        raise BenchRunError(str(exc)) from None
    container = server.container()
    was_running = container is not None and container.status in ("running", "restarting")
    state = {"name": spec["name"], "was_running": was_running, "stopped": False, "restarted": False}
    if was_running and not stop_server:
        raise BenchRunError(
            f"the server container {spec['name']} is running and holds the GPUs that bench_one_batch needs; "
            "allow the benchmark to stop it (it is started again afterwards) or stop it yourself"
        )
    if runner.check_mode:
        state["stopped"] = state["restarted"] = was_running
        return runner.one_batch(settings), state

    state["stopped"] = server.stop(container) if was_running else False
    if state["stopped"]:
        # How it went: stopped on SIGTERM, or killed (SGLang ignores SIGTERM while it loads).
        state["stop"] = server.actions[-1]
        if server.notices:
            state["stop_warnings"] = list(server.notices)
    failure = None
    result = None
    try:
        result = runner.one_batch(settings)
    except BenchRunError as exc:
        failure = exc
    if state["stopped"]:
        started = time.monotonic()
        try:
            server.start_existing(container)
            outcome = server.wait_ready(container, ready_timeout, 0)
        except ServerError as exc:
            message = f"the server {spec['name']} did not come back after the single-batch benchmark: {exc}"
            if failure is not None:
                message += f" (the benchmark itself failed first: {failure})"
            raise BenchRunError(message, **getattr(exc, "evidence", {})) from None
        state.update(
            restarted=True,
            ready=outcome["ready"],
            readiness=outcome["detail"],
            seconds_to_ready=round(time.monotonic() - started, 1),
        )
    if failure is not None:
        raise failure
    return result, state
