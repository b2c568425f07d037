"""Test stand-in (not SGLang): the old entry point `python3 -m sglang.bench_one_batch`, where the version has it."""

from sglang.standin.entry import require, warn_moved

if __name__ == "__main__":
    require("sglang.bench_one_batch")
    warn_moved("sglang.bench_one_batch", "sglang.benchmark.one_batch")
    from sglang.benchmark.one_batch import cli_main

    cli_main()
