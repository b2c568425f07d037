"""Test stand-in for the `sglang` package: NOT SGLang.

It makes `python3 -m sglang.launch_server`, `sglang.bench_one_batch` and `sglang.bench_serving` look like the real
SGLang to a deployment tool (flags, checks, logs, HTTP API, benchmark output), without GPUs or a model. It lives in
tests/lab/sglang-standin and is never shipped. Standard library only (Python 3.10+).
"""

from sglang.version import __version__

__all__ = ["__version__"]
