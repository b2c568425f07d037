"""datacrunch.sglang.bench_follow's progress line: what a person reads while bench_serving runs."""

from ansible_collections.datacrunch.sglang.plugins.action.bench_follow import progress_line


def test_a_running_level_says_the_requests_finished_out_of_all():
    progress = {"state": "running", "level": 4, "levels": [1, 4, 8], "level_index": 2, "requests_done": 7,
                "requests_total": 16, "elapsed_s": 3.4}  # fmt: skip
    assert progress_line("gpu-1", progress) == (
        "bench_serving [gpu-1]: concurrency 4 (2 of 3 levels): 7/16 requests finished, 3 s")
    assert progress_line("gpu-1", dict(progress, state="done", requests_done=16)).endswith(
        "16/16 requests finished, 3 s: done")


def test_nothing_is_said_before_the_first_level_starts():
    assert progress_line("gpu-1", {"state": "starting"}) is None
    assert progress_line("gpu-1", None) is None


def test_failed_requests_are_counted_among_the_finished_and_named():
    progress = {"state": "done", "level": 64, "levels": [1, 4, 16, 64], "level_index": 4, "requests_done": 512,
                "requests_total": 512, "requests_failed": 47, "elapsed_s": 31}  # fmt: skip
    assert progress_line("gpu-1", progress) == (
        "bench_serving [gpu-1]: concurrency 64 (4 of 4 levels): 512/512 requests finished, 31 s (47 failed): done")
