"""module_utils/bench/runner.py (BenchRunner) on this machine's real Docker engine: bench_serving and
bench_one_batch of the SGLang stand-in image, run next to a stand-in server as sglang_bench runs them (host
networking, the server's mounts, the API key copied from the server's secrets), and the single-batch run that stops
the server and brings it back.

Servers are named dcsg-unit-<random> and removed at the end; the benchmark containers remove themselves.
Note: BenchRunner removes every leftover benchmark container of the engine before it starts (by its label).
"""

from __future__ import annotations

import pytest

docker = pytest.importorskip("docker")

from support.server_specs import STANDIN_IMAGE, make_host, remove_containers, server_spec  # noqa: E402

from ansible_collections.datacrunch.sglang.plugins.module_utils.bench import runner as bench  # noqa: E402
from ansible_collections.datacrunch.sglang.plugins.module_utils.launch.container import ServerContainer  # noqa: E402

API_KEY = "sk-bench-test-5c2a"


@pytest.fixture(scope="module")
def client():
    engine = docker.from_env(timeout=60)
    try:
        engine.images.get(STANDIN_IMAGE)
    except docker.errors.ImageNotFound:
        pytest.skip("%s is missing: tests/lab/sglang-standin/build.sh makes it" % STANDIN_IMAGE)
    return engine


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    return make_host(tmp_path_factory.mktemp("host"))


def start_server(client, spec, secrets=None):
    sc = ServerContainer(spec, secrets=secrets, client=client)
    sc.ensure_host_files()
    container = sc.create(sc.secrets_digest())
    sc.wait_ready(container, 60, 0, poll=0.2)
    return container


def bench_containers(client, server):
    return client.containers.list(all=True, filters={"label": "datacrunch.sglang.server=%s" % server})


def test_bench_serving_at_each_concurrency_level_with_the_servers_key(client, host):
    spec = server_spec(host, api_key=True)
    try:
        start_server(client, spec, secrets={"api_key": API_KEY})
        events = []
        runner = bench.BenchRunner(spec, client=client, timeout=120, progress=events.append)
        settings = bench.serving_settings({"concurrency": [1, 2], "input_len": 16, "output_len": 8,
                                           "prompts_per_concurrency": 2})
        result = runner.serving(settings)
    finally:
        remove_containers(client, [spec["name"]])
    assert [record["max_concurrency"] for record in result["results"]] == [1, 2]
    for record, prompts in zip(result["results"], (2, 4), strict=True):
        assert record["num_prompts"] == prompts and record["completed"] == prompts and record["failed"] == 0
        assert record["output_throughput"] > 0
    assert result["commands"][0][:3] == ["python3", "-m", "sglang.benchmark.serving"]
    assert "--base-url" in result["commands"][0] and spec["readiness"]["base_url"] in result["commands"][0]
    assert API_KEY not in str(result)
    assert {event["level"] for event in events} == {1, 2} and events[-1]["requests_done"] == 4
    assert bench_containers(client, spec["name"]) == []  # each benchmark container removed after its run


def test_the_single_batch_run_stops_the_server_and_brings_it_back(client, host):
    spec = server_spec(host)
    try:
        container = start_server(client, spec)
        runner = bench.BenchRunner(spec, client=client, timeout=120, stall_timeout=60)
        settings = bench.one_batch_settings({"batch_size": 1, "input_len": 16, "output_len": 4})
        result, state = bench.one_batch_with_server_stopped(runner, settings, ready_timeout=60)
        container.reload()
        assert container.status == "running"
    finally:
        remove_containers(client, [spec["name"]])
    assert state["was_running"] is True and state["stopped"] is True and state["restarted"] is True
    assert state["ready"] is True and state["stop"].endswith("(exit code 0)")
    run = result["result"]
    assert (run["batch_size"], run["input_len"], run["output_len"]) == (1, 16, 4)
    assert run["prefill_throughput"] > 0 and run["median_decode_throughput"] > 0 and run["overall_throughput"] > 0
    assert result["commands"][0][:3] == ["python3", "-m", "sglang.benchmark.one_batch"]


def test_refusals_before_anything_runs(client, host):
    absent = server_spec(host)  # never started
    runner = bench.BenchRunner(absent, client=client, timeout=30)
    settings = bench.serving_settings({"concurrency": [1], "input_len": 16, "output_len": 8})
    with pytest.raises(bench.BenchRunError) as not_serving:
        runner.serving(settings)
    assert str(not_serving.value).startswith("the server %s at %s is not serving (port closed (loading))"
                                             % (absent["name"], absent["readiness"]["base_url"]))
    missing = bench.BenchRunner(dict(absent, image="localhost/dcsg-unit-absent:1"), client=client)
    with pytest.raises(bench.BenchRunError) as no_image:
        missing.one_batch(bench.one_batch_settings({"batch_size": 1, "input_len": 16, "output_len": 4}))
    assert "image localhost/dcsg-unit-absent:1 is not on this host" in str(no_image.value)
    with pytest.raises(bench.BenchRunError) as unit:
        bench.one_batch_with_server_stopped(bench.BenchRunner(dict(absent, nnodes=2), client=client), {})
    assert "one rank of a 2-node unit" in str(unit.value)
    dataset = dict(settings, dataset_name="sharegpt", dataset_path=str(host / "no-such.json"))
    with pytest.raises(bench.BenchRunError) as no_file:
        runner.serving(dataset)
    assert "the dataset file %s is not on this host" % (host / "no-such.json") in str(no_file.value)


def test_check_mode_plans_without_running(client, host):
    spec = server_spec(host)
    runner = bench.BenchRunner(spec, client=client, check_mode=True)
    settings = bench.serving_settings({"concurrency": [4], "input_len": 16, "output_len": 8})
    planned = runner.serving(settings)
    assert planned["results"] == [] and "started_at" not in planned
    assert planned["commands"][0][planned["commands"][0].index("--max-concurrency") + 1] == "4"
    one = bench.one_batch_settings({"batch_size": 2, "input_len": 16, "output_len": 4})
    result, state = bench.one_batch_with_server_stopped(runner, one)
    assert state == {"name": spec["name"], "was_running": False, "stopped": False, "restarted": False}
    assert "result" not in result and "--batch-size" in result["commands"][0]
