"""Test stand-in (not SGLang): sglang.benchmark, the benchmark tools (one_batch, serving)."""
