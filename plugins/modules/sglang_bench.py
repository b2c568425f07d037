#!/usr/bin/python
# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: sglang_bench
short_description: Benchmark a deployed SGLang server and report the figures
version_added: 0.1.0
author: datacrunch.sglang maintainers (@datacrunch-sglang)
description:
  - O(mode=serving) runs SGLang's C(bench_serving) against the server on this host, once per O(concurrency) level,
    with fixed input and output lengths and a dataset that needs no download (C(random-ids) by default).
  - O(mode=one_batch) runs SGLang's C(bench_one_batch) (by default batch 1, input 128, output 256 with
    torch.compile, the manual procedure's benchmark) with the served model and tensor parallel size. It loads the model
    itself and needs the GPUs, so the server container is stopped for the run and started again afterwards,
    whatever the outcome, and the module waits until the server serves again.
  - Both run in short-lived containers of the server's own image on the host network, with the server's caches
    and Hugging Face home mounted; the containers are removed when they end. The server is described by the spec
    that M(datacrunch.sglang.sglang_container) keeps in O(server_dir).
  - The API key is read on the host from the server's root-only config file and reaches the benchmark process
    through a root-only file in a private directory; it never appears on a command line, in the container's
    configuration, in the result or in a report.
  - Both outputs (the JSONL files and the printed summaries, of old and new SGLang releases) are parsed into
    records with SGLang's own field names.
  - O(mode=report) runs on the controller (delegate it to localhost) and writes the JSON, Markdown and PNG report
    of one host's run into O(report_dir), with verdicts against the profile's expected figures and the comparison
    with the previous run of the same host and profile found there. Without matplotlib the plots are skipped with
    a warning.
  - Needs the docker Python SDK on the host (role M(datacrunch.sglang.host_venv) provides it) and matplotlib on
    the controller for the plots.
attributes:
  check_mode:
    description: Can run in check mode and return the changed status prediction without modifying the target.
    support: full
    details:
      - Benchmarks are validated and the commands they would run returned; nothing runs, the server is not stopped.
      - Reports are computed and the files they would write listed; nothing is written.
      - O(mode=report) without results checks only O(expected) and O(tolerance_pct).
  diff_mode:
    description: Returns details on what has changed (or would change) in diff mode.
    support: none
  idempotent:
    description: When run twice in a row outside check mode with the same arguments, the second changes nothing.
    support: none
    details:
      - A benchmark measures and leaves the host as it was (C(changed=false)), except O(mode=one_batch), which
        stops and starts the server (C(changed=true)). Each report is a new set of files (C(changed=true)).
options:
  mode:
    description: What to do.
    type: str
    choices: [serving, one_batch, report]
    required: true
  server_dir:
    description:
      - Host directory where M(datacrunch.sglang.sglang_container) keeps the server's spec (C(spec.json)) and its
        root-only secrets, that is C(<sglang_server_secrets_dir>/<container name>).
    type: path
    default: /etc/datacrunch-sglang/sglang-server
  image:
    description:
      - O(mode=serving) and O(mode=one_batch), image of the benchmark containers; empty means the server's image.
      - O(mode=report), the image that was benchmarked; empty means the one the results name.
    type: str
    default: ""
  api_key_file:
    description:
      - Host file holding the server's API key (SGLang's config file with C(api-key), or only the key). Empty
        means the server's own config file in O(server_dir), when the server requires a key.
    type: path
    default: ""
  env:
    description:
      - Extra environment of the benchmark containers (NCCL settings, for example), held to the rule of the server's
        environment; names that look like credentials, and C(SGLANG_*) names the image's SGLang version does not
        read, are refused.
    type: dict
    default: {}
  env_names_extra:
    description: C(SGLANG_*) names the image reads beyond those of its SGLang version (a patched or newer build).
    type: list
    elements: str
    default: []
  timeout:
    description: Seconds one benchmark container may run before it is killed.
    type: int
    default: 3600
  stall_timeout:
    description:
      - O(mode=one_batch), seconds C(bench_one_batch) may print nothing before it counts as stuck, is killed, and
        the server is started again. SGLang's C(bench_one_batch) with TP > 1 joins its workers; when one fails the
        others wait in NCCL for ever, so without this limit the server stays stopped until O(timeout).
    type: int
    default: 600
  progress_file:
    description:
      - O(mode=serving), a file on the host that the module keeps rewriting with its progress while it runs (JSON with
        C(state) C(running), C(done) or C(failed), C(level), C(level_index) of C(levels), C(requests_done) of
        C(requests_total) at that level from C(bench_serving)'s progress bar, C(elapsed_s)), for a caller that runs
        the module in the background (C(async)) and shows how far it is.
    type: path
  concurrency:
    description: O(mode=serving), the C(--max-concurrency) levels, run in this order.
    type: list
    elements: int
    default: [1, 4, 16, 64]
  num_prompts:
    description: O(mode=serving), requests per level; 0 means O(prompts_per_concurrency) times the level.
    type: int
    default: 0
  prompts_per_concurrency:
    description: O(mode=serving), requests per level and concurrent slot when O(num_prompts=0).
    type: int
    default: 8
  input_len:
    description: Input tokens per request (serving) or per sequence (single batch).
    type: int
    default: 128
  output_len:
    description: Output tokens per request (serving) or per sequence (single batch).
    type: int
    default: 256
  dataset_name:
    description:
      - O(mode=serving), C(random-ids) needs no file. C(random), C(sharegpt) and C(custom) need O(dataset_path);
        without it SGLang would download ShareGPT, which this module refuses.
    type: str
    default: random-ids
  dataset_path:
    description: O(mode=serving), dataset file on the host (mounted read-only at the same path).
    type: path
    default: ""
  request_rate:
    description: O(mode=serving), requests per second, or C(inf) to send them as fast as the concurrency allows.
    type: str
    default: inf
  backend:
    description: O(mode=serving), C(--backend) of bench_serving.
    type: str
    choices: [sglang, sglang-oai, sglang-oai-chat]
    default: sglang
  extra_args:
    description: Further flags for the benchmark program (not those the module sets itself, never a secret).
    type: list
    elements: str
    default: []
  batch_size:
    description: O(mode=one_batch), C(--batch-size).
    type: int
    default: 1
  enable_torch_compile:
    description: O(mode=one_batch), C(--enable-torch-compile) (the manual procedure's setting).
    type: bool
    default: true
  torch_compile_max_bs:
    description: O(mode=one_batch), C(--torch-compile-max-bs) with torch.compile; 0 leaves SGLang's default.
    type: int
    default: 1
  tp:
    description: O(mode=one_batch), tensor parallel size; 0 means the server's.
    type: int
    default: 0
  stop_server:
    description: O(mode=one_batch), stop the running server for the run (and start it again afterwards).
    type: bool
    default: true
  ready_timeout:
    description: O(mode=one_batch), seconds the restarted server may take until it serves again.
    type: int
    default: 1800
  variable_prefix:
    description: Prefix of the setting names in error messages (the role passes C(sglang_benchmark_)).
    type: str
    default: ""
  report_dir:
    description: O(mode=report), controller directory of the reports (created when missing).
    type: path
  host:
    description: O(mode=report), the benchmarked host (part of the file names).
    type: str
  profile:
    description: O(mode=report), the profile the server runs (part of the file names).
    type: str
  model:
    description: O(mode=report), the served model, for the report's header.
    type: str
    default: ""
  expected:
    description:
      - O(mode=report), the profile's C(expected) figures. Key C(bench_one_batch) maps SGLang field names to
        figures (the manual procedure's run gives C(median_decode_throughput) 47.67); key C(bench_serving) maps
        a concurrency level to such a mapping.
      - A bare number is a floor for throughputs and a ceiling for latencies; a mapping with C(min) or C(max) says
        it explicitly.
    type: dict
    default: {}
  tolerance_pct:
    description: O(mode=report), how far (percent) a figure may fall short of the expected one and still pass.
    type: float
    default: 0
  on_miss:
    description:
      - O(mode=report), what a figure below its threshold does once the report is written. C(fail) fails the
        task (the report files stay), C(warn) returns a warning per figure.
    type: str
    choices: [fail, warn]
    default: fail
  note:
    description: O(mode=report), a line for the report's header (e.g. that the lab's server is a stand-in).
    type: str
    default: ""
  simulated:
    description:
      - O(mode=report), the server is the lab's stand-in. The JSON report, the Markdown title and the plots' titles say
        "simulated (lab stand-in)", so that a forwarded figure cannot pass for a measurement of real hardware.
    type: bool
    default: false
  bench_serving:
    description: O(mode=report), the C(bench_serving) result of O(mode=serving).
    type: dict
  bench_one_batch:
    description: O(mode=report), the C(bench_one_batch) result of O(mode=one_batch).
    type: dict
notes:
  - SGLang's C(/server_info), which C(bench_serving) embeds in its result file, lists every server argument,
    the API key included; the parser keeps only its C(version).
seealso:
  - module: datacrunch.sglang.sglang_container
"""

EXAMPLES = r"""
- name: Serving benchmark at concurrency 1, 8 and 32
  datacrunch.sglang.sglang_bench:
    mode: serving
    concurrency: [1, 8, 32]
  register: serving

- name: The manual procedure's single-batch benchmark (stops and restarts the server)
  datacrunch.sglang.sglang_bench:
    mode: one_batch
  register: one_batch

- name: Write the report on the controller
  datacrunch.sglang.sglang_bench:
    mode: report
    report_dir: "{{ playbook_dir }}/reports/bench"
    host: "{{ inventory_hostname }}"
    profile: deepseek-r1
    expected: {bench_one_batch: {median_decode_throughput: 47.67}}
    tolerance_pct: 5
    bench_serving: "{{ serving.bench_serving }}"
    bench_one_batch: "{{ one_batch.bench_one_batch }}"
  delegate_to: localhost
"""

RETURN = r"""
bench_serving:
  description: What bench_serving measured, one record per concurrency level (SGLang's JSONL field names).
  returned: mode=serving
  type: dict
  contains:
    settings: {description: The workload., type: dict}
    image: {description: Image the benchmark ran in., type: str}
    commands: {description: The benchmark command lines (no secret in them)., type: list, elements: list}
    results:
      description:
        - One record per level, e.g. max_concurrency, completed, failed, output_throughput, median_ttft_ms,
          median_tpot_ms.
      type: list
      elements: dict
    started_at: {description: UTC start., type: str}
    finished_at: {description: UTC end., type: str}
  sample:
    results:
      - {max_concurrency: 4, completed: 32, failed: 0, output_throughput: 161.1, median_tpot_ms: 23.8}
bench_one_batch:
  description: What bench_one_batch measured.
  returned: mode=one_batch
  type: dict
  contains:
    result:
      description:
        - The measured run (batch_size, input_len, output_len, median_decode_throughput, median_decode_latency, ...).
      type: dict
    runs: {description: Every measured run of the invocation., type: list, elements: dict}
    warmup: {description: The warmup run as printed., type: dict}
    server:
      description: >-
        What happened to the server - was_running, stopped, restarted, seconds_to_ready; stop (how it stopped:
        on SIGTERM, or killed) and stop_warnings (when a kill was needed, also shown as warnings).
      type: dict
    commands: {description: The benchmark command line., type: list, elements: list}
  sample:
    result: {batch_size: 1, input_len: 128, output_len: 256, median_decode_throughput: 47.67}
report:
  description: The report written on the controller.
  returned: mode=report
  type: dict
  contains:
    files:
      description: Paths of the JSON, Markdown and PNG files.
      type: list
      elements: str
    verdicts:
      description: One row per expected figure (measured, threshold, verdict pass, miss or absent).
      type: list
      elements: dict
    misses: {description: Messages for the figures below their threshold., type: list, elements: str}
    previous:
      description: The previous run compared with - file, started_at, image - or null.
      type: dict
    comparison: {description: Figure by figure change against the previous run., type: list, elements: dict}
server:
  description: The benchmarked server as deployed (name, image, sglang_version, model, profile, rank, nnodes, endpoint).
  returned: mode=serving or mode=one_batch
  type: dict
logs:
  description: Last lines of the benchmark's output (secrets masked).
  returned: on failure
  type: str
"""

import json
import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.datacrunch.sglang.plugins.module_utils.bench import report as bench_report
from ansible_collections.datacrunch.sglang.plugins.module_utils.bench.runner import (
    BenchRunError,
    BenchRunner,
    check_env,
    check_flags_for_version,
    load_server_spec,
    one_batch_settings,
    one_batch_with_server_stopped,
    serving_settings,
)
from ansible_collections.datacrunch.sglang.plugins.module_utils.common.atomic_file import replace_file
from ansible_collections.datacrunch.sglang.plugins.module_utils.common.image_ref import ImageRefError, image_version
from ansible_collections.datacrunch.sglang.plugins.module_utils.common.module_io import pick

ARGUMENT_SPEC = {
    "mode": {"type": "str", "choices": ["serving", "one_batch", "report"], "required": True},
    "server_dir": {"type": "path", "default": "/etc/datacrunch-sglang/sglang-server"},
    "image": {"type": "str", "default": ""},
    "api_key_file": {"type": "path", "default": ""},
    "env": {"type": "dict", "default": {}},
    "env_names_extra": {"type": "list", "elements": "str", "default": []},
    "timeout": {"type": "int", "default": 3600},
    "stall_timeout": {"type": "int", "default": 600},
    "progress_file": {"type": "path"},
    "concurrency": {"type": "list", "elements": "int", "default": [1, 4, 16, 64]},
    "num_prompts": {"type": "int", "default": 0},
    "prompts_per_concurrency": {"type": "int", "default": 8},
    "input_len": {"type": "int", "default": 128},
    "output_len": {"type": "int", "default": 256},
    "dataset_name": {"type": "str", "default": "random-ids"},
    "dataset_path": {"type": "path", "default": ""},
    "request_rate": {"type": "str", "default": "inf"},
    "backend": {"type": "str", "choices": ["sglang", "sglang-oai", "sglang-oai-chat"], "default": "sglang"},
    "extra_args": {"type": "list", "elements": "str", "default": []},
    "batch_size": {"type": "int", "default": 1},
    "enable_torch_compile": {"type": "bool", "default": True},
    "torch_compile_max_bs": {"type": "int", "default": 1},
    "tp": {"type": "int", "default": 0},
    "stop_server": {"type": "bool", "default": True},
    "ready_timeout": {"type": "int", "default": 1800},
    "variable_prefix": {"type": "str", "default": ""},
    "report_dir": {"type": "path"},
    "host": {"type": "str"},
    "profile": {"type": "str"},
    "model": {"type": "str", "default": ""},
    "expected": {"type": "dict", "default": {}},
    "tolerance_pct": {"type": "float", "default": 0},
    "on_miss": {"type": "str", "choices": ["fail", "warn"], "default": "fail"},
    "note": {"type": "str", "default": ""},
    "simulated": {"type": "bool", "default": False},
    "bench_serving": {"type": "dict"},
    "bench_one_batch": {"type": "dict"},
}


def run_benchmark(module):
    params = module.params
    prefix = params["variable_prefix"]
    if params["timeout"] < 1:
        raise BenchRunError(f"{prefix}timeout={params['timeout']} must be at least 1 second")
    settings = serving_settings(params, prefix) if params["mode"] == "serving" else one_batch_settings(params, prefix)
    spec = load_server_spec(params["server_dir"], prefix)
    version = image_version(params["image"]) if params["image"] else spec.get("sglang_version")
    env = check_env(params["env"], prefix, version, params["env_names_extra"])
    check_flags_for_version(settings["extra_args"], params["mode"], version, prefix)
    if params["stall_timeout"] < 1:
        raise BenchRunError(f"{prefix}stall_timeout={params['stall_timeout']} must be at least 1 second")
    progress = ProgressFile(params["progress_file"]) if params["progress_file"] and not module.check_mode else None
    runner = BenchRunner(spec, env=env, image=params["image"], timeout=params["timeout"], check_mode=module.check_mode,
                         stall_timeout=params["stall_timeout"], progress=progress)
    server = server_summary(spec)
    if params["mode"] == "serving":
        if (spec.get("readiness") or {}).get("kind") != "http":
            raise BenchRunError(
                f"{spec['name']} on this host is a worker rank of a multi-node unit; it serves no HTTP API. "
                "Run the serving benchmark on rank 0 only"
            )
        try:
            result = runner.serving(settings, params["api_key_file"])
        except BaseException:
            if progress:
                progress.end("failed")
            raise
        if progress:
            progress.end("done")
        return {"changed": False, "server": server, "bench_serving": result}
    result, state = one_batch_with_server_stopped(
        runner, settings, ready_timeout=params["ready_timeout"], stop_server=params["stop_server"]
    )
    result["server"] = state
    return {"changed": bool(state["stopped"]), "server": server, "bench_one_batch": result,
            "warnings": list(state.get("stop_warnings", []))}


class ProgressFile:
    """The serving benchmark's progress as one JSON document, replaced whole at each update (a reader never sees
    half of one)."""

    def __init__(self, path):
        self.path = path
        self.last = {}
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        self.write({"state": "starting"})

    def __call__(self, event):
        self.write(event)

    def end(self, state):
        self.write(dict(self.last, state=state))

    def write(self, event):
        self.last = dict(event)
        replace_file(self.path, json.dumps(event))


def server_summary(spec):
    """What the report and the role need to know about the benchmarked server (no secrets in a spec)."""
    labels = spec.get("labels") or {}
    return {
        "name": spec["name"],
        "image": spec["image"],
        "sglang_version": spec.get("sglang_version") or "",
        "model": spec.get("model") or "",
        "profile": labels.get("datacrunch.sglang.profile", ""),
        "rank": spec.get("rank", 0),
        "nnodes": spec.get("nnodes", 1),
        "endpoint": spec.get("endpoint") or (spec.get("readiness") or {}).get("base_url", ""),
        "serves_http": (spec.get("readiness") or {}).get("kind") == "http",
    }


def write_report(module):
    params = module.params
    serving = params["bench_serving"] or None
    one_batch = params["bench_one_batch"] or None
    if module.check_mode and not serving and not one_batch:
        # The role's validation step: the expected figures and the tolerance are checked before any benchmark runs.
        verdicts = bench_report.evaluate({}, params["expected"], params["tolerance_pct"])
        return {"changed": False, "report": {"files": [], "verdicts": verdicts, "misses": [], "absent": []}}
    for option in ("report_dir", "host", "profile"):
        if not params[option]:
            raise bench_report.BenchReportError(f"mode=report needs {option}")
    if not os.path.isabs(params["report_dir"]):
        raise bench_report.BenchReportError(
            f"report_dir={params['report_dir']!r} must be an absolute path on the controller"
        )
    image = params["image"] or (serving or {}).get("image") or (one_batch or {}).get("image") or ""
    document, previous = bench_report.build_document(
        params["host"],
        params["profile"],
        image,
        serving=serving,
        one_batch=one_batch,
        **pick(params, ("expected", "tolerance_pct", "report_dir", "model", "note", "simulated")),
    )
    written = bench_report.write_report(params["report_dir"], document, previous, check_mode=module.check_mode)
    for warning in written["warnings"]:
        module.warn(warning)
    missed = [
        f"{bench_report.describe_figure(row)}: measured {row['measured']:.4g}, "
        f"{'at least' if row['kind'] == 'min' else 'at most'} {row['threshold']:.4g} expected "
        f"({row['expected']:.4g} with {document['tolerance_pct']:g}% tolerance)"
        for row in bench_report.misses(document["verdicts"])
    ]
    report = {
        "files": written["files"],
        "verdicts": document["verdicts"],
        "misses": missed,
        "absent": [bench_report.describe_figure(row) for row in document["verdicts"] if row["verdict"] == "absent"],
        "previous": document["previous"],
        "comparison": document["comparison"],
        "basename": written["basename"],
    }
    result = {"changed": True, "report": report}
    if missed and params["on_miss"] == "fail" and not module.check_mode:
        result["failed"] = True
        result["msg"] = (
            f"{params['host']}: {len(missed)} figure(s) below the profile's threshold: {'; '.join(missed)}. "
            f"Report: {written['basename']}.md. Investigate the host, or set {params['variable_prefix']}on_miss=warn "
            "(or adjust the profile's expected figures) to accept it"
        )
    for message in missed if params["on_miss"] == "warn" else []:
        module.warn(f"{params['host']}: below the profile's threshold: {message}")
    return result


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    try:
        result = write_report(module) if module.params["mode"] == "report" else run_benchmark(module)
    except BenchRunError as exc:
        evidence = dict(exc.evidence)
        module.fail_json(msg=str(exc), **evidence)
    except (bench_report.BenchReportError, ImageRefError) as exc:
        module.fail_json(msg=str(exc))
    for warning in result.pop("warnings", []):
        module.warn(warning)
    if result.pop("failed", False):
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
