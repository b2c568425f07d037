"""Test stand-in (not SGLang): the old entry point `python3 -m sglang.bench_serving`, where the version has it."""

from sglang.standin.entry import require, warn_moved

if __name__ == "__main__":
    require("sglang.bench_serving")
    warn_moved("sglang.bench_serving", "sglang.benchmark.serving")
    from sglang.benchmark.serving import cli_main

    cli_main()
