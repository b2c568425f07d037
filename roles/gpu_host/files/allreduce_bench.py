#!/usr/bin/env python3
"""All-reduce bus bandwidth across every GPU of this host, through PyTorch and NCCL (one process per GPU).

Prints one JSON object on stdout: the GPU count, PyTorch and NCCL versions, and per message size the time of one
all-reduce, the algorithm bandwidth (bytes / time) and the bus bandwidth (algorithm bandwidth x 2(n-1)/n, the
figure nccl-tests reports, comparable across GPU counts). The last size is the headline.

Runs inside the SGLang image (which has PyTorch and NCCL) or with the host's own PyTorch. NCCL settings come from
the environment (e.g. NCCL_NVLS_ENABLE) and are passed through untouched.
"""

import argparse
import json
import os
import socket
import sys
import time


def _free_port():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def _worker(rank, world, port, sizes, iterations, warmup, queue):
    import torch
    import torch.distributed as dist

    torch.cuda.set_device(rank)
    dist.init_process_group(
        "nccl", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world, device_id=torch.device("cuda", rank)
    )
    results = []
    for size in sizes:
        tensor = torch.ones(size // 2, dtype=torch.bfloat16, device="cuda")
        for _step in range(warmup):
            dist.all_reduce(tensor)
        torch.cuda.synchronize()
        dist.barrier()
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        for _step in range(iterations):
            dist.all_reduce(tensor)
        end.record()
        torch.cuda.synchronize()
        seconds = start.elapsed_time(end) / 1000.0 / iterations
        # The slowest rank decides the collective's time.
        timing = torch.tensor([seconds], device="cuda", dtype=torch.float64)
        dist.all_reduce(timing, op=dist.ReduceOp.MAX)
        seconds = float(timing.item())
        algbw = size / seconds / 1e9
        results.append(
            {
                "size_bytes": size,
                "seconds": seconds,
                "algbw_gbps": round(algbw, 2),
                "busbw_gbps": round(algbw * 2 * (world - 1) / world, 2),
            }
        )
        del tensor
    if rank == 0:
        queue.put(results)
    dist.destroy_process_group()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-mib", default="1024", help="comma-separated message sizes in MiB (default 1024)")
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--gpus", type=int, default=0, help="GPUs to use (default: all)")
    args = parser.parse_args()
    started = time.monotonic()
    try:
        import torch
        import torch.multiprocessing as mp
    except ImportError as exc:
        print(json.dumps({"error": f"PyTorch is not importable here: {exc}"}))
        return 2
    count = torch.cuda.device_count()
    world = args.gpus or count
    report = {
        "gpus": world,
        "visible_gpus": count,
        "torch": torch.__version__,
        "nccl": ".".join(str(part) for part in torch.cuda.nccl.version()) if count else "",
        "dtype": "bfloat16",
        "iterations": args.iterations,
        "nvls_enable": os.environ.get("NCCL_NVLS_ENABLE", ""),
    }
    if world < 2 or world > count:
        report["error"] = f"an all-reduce needs 2 or more GPUs; {count} visible, {world} asked"
        print(json.dumps(report))
        return 2
    sizes = [int(float(value) * 1024 * 1024) for value in args.sizes_mib.split(",")]
    context = mp.get_context("spawn")
    queue = context.Queue()
    port = _free_port()
    processes = [
        context.Process(target=_worker, args=(rank, world, port, sizes, args.iterations, args.warmup, queue))
        for rank in range(world)
    ]
    for process in processes:
        process.start()
    results = None
    try:
        results = queue.get(timeout=600)
    except Exception as exc:  # noqa: BLE001 - any failure of a worker ends here
        report["error"] = f"no result from the workers: {exc!r}"
    for process in processes:
        process.join(60)
    failed = [process.exitcode for process in processes if process.exitcode not in (0, None)]
    if failed and "error" not in report:
        report["error"] = f"workers exited with {failed}"
    if results:
        report["results"] = results
        report["size_bytes"] = results[-1]["size_bytes"]
        report["busbw_gbps"] = results[-1]["busbw_gbps"]
        report["algbw_gbps"] = results[-1]["algbw_gbps"]
    report["seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps(report))
    return 0 if "error" not in report else 1


if __name__ == "__main__":
    sys.exit(main())
