"""Test stand-in for `python3 -m sglang.launch_server` (not SGLang).

Parses the command line with the flags of the SGLang version played (exit 2 and argparse's message on a bad one),
checks what the real server would fail on (GPUs visible versus tp x pp x dp over nnodes, the model complete in the
Hugging Face cache), joins the multi-node rendezvous, goes through SGLang's start-up phases with their log lines
(sglang/standin/startup.py: weights, DeepGEMM JIT, CUDA graphs with the port closed, then the warm-up with /health
answering 503), then serves SGLang's HTTP API (see sglang/standin/http_server.py). Faults: SGLANG_STANDIN_FAULT.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import warnings

from sglang.standin import collective, failure, hardware, http_server, model, rendezvous, startup
from sglang.standin.entry import require
from sglang.standin.flags import parse_server_args
from sglang.standin.logs import fatal, log
from sglang.standin.settings import SettingError, fault, number, standin_version

# torch's default process-group timeout, used when --dist-timeout is not given
DEFAULT_DIST_TIMEOUT = 1800


def _gpus_needed_per_node(args) -> tuple[int, str]:
    """GPUs this node must have, and how that number came about."""
    total = args.tp_size * getattr(args, "pp_size", 1)
    how = f"tp_size={args.tp_size}"
    if getattr(args, "pp_size", 1) > 1:
        how += f" x pp_size={args.pp_size}"
    dp = getattr(args, "dp_size", 1) or 1
    if dp > 1 and not getattr(args, "enable_dp_attention", False):
        total *= dp
        how += f" x dp_size={dp}"
    if total % args.nnodes:
        fatal(
            "AssertionError",
            f"{how} = {total} GPUs cannot be split evenly over nnodes={args.nnodes}",
            "sglang/srt/server_args.py",
        )
    return total // args.nnodes, f"{how} over nnodes={args.nnodes}"


def _settings():
    try:
        return {
            "durations": {
                "weights": number("SGLANG_STANDIN_LOAD_SECONDS", 4.0),
                "jit": number("SGLANG_STANDIN_JIT_SECONDS", 2.0),
                "graphs": number("SGLANG_STANDIN_GRAPH_SECONDS", 2.0),
                "warmup": number("SGLANG_STANDIN_WARMUP_SECONDS", 1.0),
            },
            "ttft_ms": number("SGLANG_STANDIN_TTFT_MS", 20.0),
            "decode_ms": number("SGLANG_STANDIN_DECODE_MS_PER_TOKEN", 5.0),
            "fault": fault(),
        }
    except SettingError as exc:
        fatal("ValueError", f"SGLang stand-in setting: {exc}", "sglang/launch_server.py")


def _server_args_line(args) -> str:
    # As SGLang 0.5.18 logs it at start (srt/entrypoints/engine.py: f"{server_args=}"): every argument, the API key
    # included. Whoever reads the container log (root, the docker group) sees the key; tools that show the log must
    # mask it.
    return "ServerArgs(" + ", ".join(f"{k}={v!r}" for k, v in vars(args).items()) + ")"


def main(argv: list[str]) -> None:
    warnings.warn(
        "'python -m sglang.launch_server' is still supported, but "
        "'sglang serve' is the recommended entrypoint.\n"
        "  Example: sglang serve --model-path <model> [options]",
        UserWarning,
        stacklevel=1,
    )
    args = parse_server_args(argv)
    # No SIGTERM handler until rank 0 serves (sglang/standin/failure.py): as PID 1 SIGTERM is ignored while loading.
    settings = _settings()
    fault_name, fault_arg = settings["fault"]
    version = standin_version()
    log(f"server_args={_server_args_line(args)}")
    phase_fault = fault_arg if fault_name in ("start-fail", "hang") else ""
    if fault_name == "start-fail" and not phase_fault:
        failure.scheduler_crash(
            args,
            "RuntimeError",
            "Initialization failed. (SGLANG_STANDIN_FAULT=start-fail)",
            "sglang/srt/managers/scheduler.py",
            serving=False,
        )

    try:
        gpus = hardware.visible_gpu_count()
    except hardware.NoGpu as exc:
        fatal("RuntimeError", str(exc), "torch/cuda/__init__.py")
    needed, how = _gpus_needed_per_node(args)

    try:
        found = model.resolve(args.model_path, args.revision, bool(getattr(args, "trust_remote_code", False)))
    except model.ModelFilesInvalid as exc:
        fatal(exc.error_class, str(exc), "transformers/models/auto/configuration_auto.py")
    except model.ModelNotFound as exc:
        if model.offline():
            fatal("OSError", f"{model.OFFLINE_ERROR} ({exc})", "transformers/utils/hub.py")
        fatal(
            "OSError",
            f"{exc}. The SGLang stand-in does not download weights: put them in the cache first.",
            "transformers/utils/hub.py",
        )
    log(f"Model {args.model_path} at {found.path}" + (f" (commit {found.commit})" if found.commit else ""))
    if found.token_present:
        log(
            "Hugging Face token read from HF_TOKEN_PATH (not shown)"
            if os.environ.get("HF_TOKEN_PATH")
            else "Hugging Face token from HF_TOKEN (not shown)"
        )

    if needed > gpus:
        # Each scheduler process sets its device (ModelRunner.__init__, sglang/srt/model_executor/model_runner.py:
        # set_device(gpu_id)); the first one past the visible GPUs raises, and the launch ends as a crash does.
        failure.scheduler_crash(
            args,
            "torch.AcceleratorError",
            f"CUDA error: invalid device ordinal ({how} needs {needed} GPUs on this node, {gpus} visible)",
            "sglang/srt/model_executor/model_runner.py",
            serving=False,
            failing=gpus,
        )

    lock = hardware.GpuLock()
    if not lock.acquire():
        fatal(
            "torch.OutOfMemoryError",
            "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 139.81 GiB of which "
            "1.12 GiB is free. Another process holds the GPUs.",
            "sglang/srt/model_executor/model_runner.py",
        )

    rank = args.node_rank
    lost = threading.Event()
    state = http_server.ServerState(args, version, found, settings["ttft_ms"], settings["decode_ms"])
    log("Init torch distributed begin.")
    if fault_name == "hang" and not phase_fault:
        while True:
            time.sleep(3600)
    startup.hold_or_fail("init", fault_name, phase_fault, args)
    if args.nnodes > 1:
        if not args.dist_init_addr:
            fatal("ValueError", "--dist-init-addr is required when nnodes > 1", "sglang/srt/server_args.py")
        identity = {
            "rank": rank,
            "nnodes": args.nnodes,
            "tp": args.tp_size,
            "model": args.model_path,
            "version": version,
        }
        timeout = float(args.dist_timeout or DEFAULT_DIST_TIMEOUT)
        watchdog = getattr(args, "watchdog_timeout", None)
        # NCCL and Gloo listen on the interface NCCL_SOCKET_IFNAME / GLOO_SOCKET_IFNAME name; the collection sets
        # SGLANG_HOST_IP to that interface's address. Without it: every interface.
        data_host = os.environ.get("SGLANG_HOST_IP", "")

        def on_group_error(error):
            state.group_error = error
            lost.set()

        try:
            if rank == 0:
                store = rendezvous.Rank0(args.dist_init_addr, identity, log, data_host)
                store.wait_all(timeout)
                links = store.connect_data(time.monotonic() + timeout)
                # No heartbeat: a lost node shows only as a step that never finishes (sglang/standin/collective.py).
                state.group = collective.Rank0Group(links, timeout, watchdog, on_group_error)
                state.group.start()
            else:
                link = rendezvous.join(args.dist_init_addr, identity, timeout, log, data_host)
                state.store_link = link
                collective.serve_rank_n(link["from"], link["to"], link["peer"], timeout, watchdog, on_group_error)
        except rendezvous.DataLinkError as exc:
            # The ranks met at the store but cannot reach each other's NCCL/Gloo ports: the scheduler processes
            # fail in their process-group set-up, a crash (exit 0 as PID 1). How long real NCCL (its socket connect
            # retries) and Gloo (its CPU group's 2-hour timeout) wait on dropped packets is not established here;
            # the stand-in gives up at --dist-timeout.
            failure.scheduler_crash(
                args,
                "torch.distributed.DistBackendError",
                "NCCL error: remote process exited or there was a network error, NCCL version 2.28.3\n"
                "ncclRemoteError: A call failed possibly due to a network error or a remote process exiting "
                f"prematurely.\nLast error:\nsocketStartConnect: {exc}",
                "torch/distributed/distributed_c10d.py",
                serving=False,
            )
        except rendezvous.RendezvousError as exc:
            log(f"Multi-node rendezvous failed: {exc}")
            fatal("torch.distributed.DistStoreError", str(exc), "torch/distributed/rendezvous.py")
        except OSError as exc:
            fatal(
                "torch.distributed.DistNetworkError", f"{args.dist_init_addr}: {exc}", "torch/distributed/rendezvous.py"
            )
    log("Init torch distributed ends.")
    startup.load_model(args, found, settings["durations"], fault_name, phase_fault)

    server = http_server.make_server(state, args.host, args.port, health_only=rank > 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    log(f"Uvicorn running on http://{args.host}:{args.port} (Press CTRL+C to quit)")
    if rank == 0:
        # TokenizerManager.auto_create_handle_loop: the SIGTERM handler and its drain, from the HTTP server's start
        failure.Shutdown(state).install()
        startup.warm_up(settings["durations"], fault_name, phase_fault, args)
    else:
        failure.rank_n_sigterm(version, rank)
    if fault_name == "never-ready":
        state.never_ready = True
    state.ready.set()
    if rank == 0:
        log("The server is fired up and ready to roll!")
    else:
        log(f"Node rank {rank} joined; serving the health check only (rank 0 serves the API).")

    deadline = time.monotonic() + fault_arg if fault_name == "crash-after" else None
    while True:
        if lost.wait(0.2):
            failure.group_failure(args, state.group_error, serving=state.ready.is_set())
        if deadline is not None and time.monotonic() >= deadline:
            failure.scheduler_crash(
                args,
                "RuntimeError",
                "CUDA error: an illegal memory access was encountered "
                f"(SGLANG_STANDIN_FAULT=crash-after:{fault_arg:g})",
                "sglang/srt/managers/scheduler.py",
                serving=True,
            )


if __name__ == "__main__":
    require("sglang.launch_server")
    main(sys.argv[1:])
