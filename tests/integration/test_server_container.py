"""module_utils/launch/container.py (ServerContainer) on this machine's real Docker engine, with the SGLang stand-in
image as the server (tests/support/server_specs.py: a spec as build_launch_spec makes one, runnable without GPUs).

What is checked is the world: the container the engine holds (image, command, labels, mounts, limits), the files
next to the secrets, what the server answers on its port, how it stopped. Containers are named dcsg-unit-<random>
and removed at the end of each test; ports are free ones; the servers use host networking as on real hosts.
"""

from __future__ import annotations

import json
import os
import socket
import time

import pytest

docker = pytest.importorskip("docker")

from support.server_specs import (  # noqa: E402
    STANDIN_IMAGE,
    free_port,
    make_host,
    rehash,
    remove_containers,
    server_spec,
)

from ansible_collections.datacrunch.sglang.plugins.module_utils.launch.container import (  # noqa: E402
    PREVIOUS_SPEC_FILE,
    READY_RECORD_FILE,
    READY_SPEC_FILE,
    SPEC_FILE,
    ServerContainer,
    ServerError,
    diff_view,
    ours,
    parse_docker_time,
)
from ansible_collections.datacrunch.sglang.plugins.module_utils.launch.spec import (  # noqa: E402
    LABEL_SECRETS_DIGEST,
    LABEL_SPEC_HASH,
    SERVER_CONFIG_FILE,
)

API_KEY = "sk-container-test-9b3e"
BASE_IMAGE = "datacrunch-sglang-lab/debian:bookworm"


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


@pytest.fixture
def names(client):
    """Names of the containers a test makes: removed at its end, whatever happened."""
    made = []
    yield made
    remove_containers(client, made)


def server(client, spec, names, secrets=None):
    names.append(spec["name"])
    return ServerContainer(spec, secrets=secrets, client=client)


def start_ready(sc, timeout=60):
    """ensure_host_files, create, wait until ready and record it, as the module does on a first deploy."""
    sc.ensure_host_files()
    container = sc.create(sc.secrets_digest())
    result = sc.wait_ready(container, timeout, 0, poll=0.2)
    sc.record_ready(container, result["started_at"])
    return container, result


@pytest.fixture(scope="module")
def serving(client, host):
    """One ready server with an API key, shared by the tests that only look at it."""
    spec = server_spec(host, api_key=True)
    sc = ServerContainer(spec, secrets={"api_key": API_KEY, "hf_token": ""}, client=client)
    try:
        container, result = start_ready(sc)
        yield sc, container, result
    finally:
        remove_containers(client, [spec["name"]])


def read_json(sc, name):
    with open(os.path.join(sc.host_dir, name), encoding="utf-8") as handle:
        return json.load(handle)


def test_the_container_is_the_one_its_spec_describes(client, serving):
    sc, container, _result = serving
    spec = sc.spec
    attrs = client.api.inspect_container(spec["name"])
    assert attrs["Config"]["Image"] == STANDIN_IMAGE
    assert attrs["Config"]["Cmd"] == spec["command"]
    assert {"HF_HOME=%s" % spec["env"]["HF_HOME"], "HF_HUB_OFFLINE=1"} <= set(attrs["Config"]["Env"])
    labels = attrs["Config"]["Labels"]
    assert labels[LABEL_SPEC_HASH] == spec["spec_hash"]
    assert labels[LABEL_SECRETS_DIGEST] == sc.secrets_digest() and len(labels[LABEL_SECRETS_DIGEST]) == 32
    host_config = attrs["HostConfig"]
    assert host_config["NetworkMode"] == "host" and host_config["IpcMode"] == "host"
    assert host_config["ShmSize"] == 64 * 1024 * 1024
    assert host_config["RestartPolicy"]["Name"] == "no"
    assert {(u["Name"], u["Soft"], u["Hard"]) for u in host_config["Ulimits"]} == {
        ("memlock", 65536, 65536), ("nofile", 4096, 8192)}
    assert host_config["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "10m", "max-file": "2"}}
    assert host_config["DeviceRequests"] is None and host_config["CapAdd"] is None
    mounts = {m["Destination"]: (m["Type"], m["Source"], m["RW"]) for m in attrs["Mounts"]}
    assert mounts == {m["target"]: ("bind", m["source"], not m["read_only"]) for m in spec["mounts"]}
    assert mounts["/run/datacrunch-sglang"][1] == os.path.join(sc.host_dir, "secrets")
    assert sc.actions[:2] == ["created %s" % spec["name"], "started %s" % container.short_id]
    assert ours(container) is True
    assert read_json(sc, SPEC_FILE) == spec


def test_the_secret_files_are_root_only_and_carry_the_key(serving):
    sc, _container, _result = serving
    secrets_dir = os.path.join(sc.host_dir, "secrets")
    assert os.stat(secrets_dir).st_mode & 0o777 == 0o700
    config = os.path.join(secrets_dir, SERVER_CONFIG_FILE)
    assert os.stat(config).st_mode & 0o777 == 0o600
    with open(config, encoding="utf-8") as handle:
        assert handle.read() == 'api-key: "%s"\n' % API_KEY
    assert sc.ensure_host_files() is False  # nothing to change the second time


def test_a_ready_server_is_recorded_and_answers_with_its_key(serving):
    sc, container, result = serving
    assert result["ready"] is True and result["detail"] == "health_generate 200" and result["phase"] == "ready"
    assert abs(result["started_at"] - parse_docker_time(container.attrs["State"]["StartedAt"])) < 1
    record = read_json(sc, READY_RECORD_FILE)
    assert record["container_id"] == container.id and record["spec_hash"] == sc.spec["spec_hash"]
    assert 0 < record["seconds_to_ready"] < 60
    assert read_json(sc, READY_SPEC_FILE) == sc.spec
    assert not os.path.exists(os.path.join(sc.host_dir, PREVIOUS_SPEC_FILE))
    # Recorded once per container: a later round does not move it.
    assert sc.record_ready(container, time.time() - 1000) == record["seconds_to_ready"]
    smoke = sc.smoke(API_KEY)
    assert smoke["ok"] is True and smoke["unauthenticated_status"] == 401 and smoke["model"] == "lab/tiny-r1"
    drained = sc.drain(container, API_KEY, timeout=10)
    assert drained["drained"] is True and drained["load"]["running_requests"] == 0
    assert sc.actions[-1].startswith("drained %s in " % container.short_id)
    assert sc.hung_reason(container) == ""
    assert sc.rollback_spec() is None  # what runs is what last served


def test_the_running_server_is_unchanged_for_its_own_spec(client, serving):
    sc, container, _result = serving
    image = client.images.get(STANDIN_IMAGE)
    assert sc.differences(container, image, sc.secrets_digest()) == []
    diff = sc.diff(container)
    assert diff["before"] == diff["after"] == diff_view(sc.spec)


def test_spec_secret_and_image_changes_are_told_apart(client, host, serving):
    sc, container, _result = serving
    changed = rehash(dict(sc.spec, command=[*sc.spec["command"], "--max-running-requests", "8"]))
    other = ServerContainer(changed, secrets={"api_key": "sk-rotated"}, client=client)
    other_image = client.images.get(BASE_IMAGE)
    reasons = other.differences(container, other_image, "a-new-digest")
    assert reasons == [
        "spec changed (%s -> %s)" % (sc.spec["spec_hash"][:12], changed["spec_hash"][:12]),
        "secrets changed",
        "image %s now points to another image id" % STANDIN_IMAGE,
    ]
    diff = other.diff(container)
    assert diff["before"]["command"] == sc.spec["command"]
    assert diff["after"]["command"][-2:] == ["--max-running-requests", "8"]
    assert other.differences(None, other_image, "") == ["absent"]


def test_a_host_that_lost_its_spec_files_reads_the_container_itself(client, host, serving):
    sc, container, _result = serving
    lost = ServerContainer(dict(server_spec(host, rank=1), name=sc.spec["name"]), client=client)
    assert not os.path.exists(lost.host_dir)
    assert lost.container().id == container.id
    assert lost.diff(container)["before"] == {
        "image": STANDIN_IMAGE, "command": sc.spec["command"], "labels": dict(sorted(container.labels.items()))}
    # As a rank >= 1 it has no HTTP server: nothing to drain, never judged hung.
    assert lost.drain(container, API_KEY, 5) == {"drained": True, "seconds": 0, "skipped": "not rank 0"}
    assert lost.drain(None, API_KEY, 5) == {"drained": True, "seconds": 0, "skipped": "not running"}
    assert lost.hung_reason(container) == "" and lost.actions == []


def test_check_mode_touches_no_running_server(client, serving, tmp_path):
    sc, container, _result = serving
    looking = ServerContainer(sc.spec, secrets={"api_key": API_KEY}, check_mode=True, client=client)
    before = os.listdir(sc.host_dir)
    assert looking.stop(container) is True and looking.remove(container) is True
    assert looking.actions == ["stopped %s" % container.short_id, "removed %s" % container.short_id]
    assert looking.record_ready(client.containers.get(sc.spec["name"]), time.time() - 5) == \
        read_json(sc, READY_RECORD_FILE)["seconds_to_ready"]
    fresh = ServerContainer(dict(sc.spec, host_dirs={"cache": str(tmp_path / "cache"),
                                                     "secrets": str(tmp_path / "fresh")}),
                            check_mode=True, client=client)
    assert fresh.record_ready(container, time.time() - 5) >= 5
    assert not os.path.exists(fresh.host_dir)
    assert os.listdir(sc.host_dir) == before
    container.reload()
    assert container.status == "running"


def test_logs_are_redacted_and_long_lines_cut(serving):
    sc, container, _result = serving
    raw = container.logs().decode()
    assert API_KEY in raw  # as SGLang, the stand-in logs every argument, the key among them
    tail = sc.logs_tail(container, lines=400)
    assert API_KEY not in tail and "The server is fired up and ready to roll!" in tail
    assert all(len(line) <= 404 for line in tail.splitlines())
    assert any(line.endswith(" ...") and "server_args=ServerArgs(" in line for line in tail.splitlines())
    assert sc.progress(container) == ("ready", "The server is fired up and ready to roll!")


def test_the_serving_port_is_ours_but_a_foreign_listener_is_refused(client, host, serving):
    sc, container, _result = serving
    sc.check_port_free(container)  # the listener is the container's own process
    with socket.socket() as foreign:
        foreign.bind(("127.0.0.1", 0))
        foreign.listen(1)
        port = foreign.getsockname()[1]
        spec = server_spec(host, port=port)
        with pytest.raises(ServerError) as refused:
            ServerContainer(spec, client=client).check_port_free(None)
        assert "port %d on this host is held by another process (pid %d: " % (port, os.getpid()) in str(refused.value)
        assert "set sglang_port to a port nothing on the host listens on" in str(refused.value)
        # A rank >= 1 serves no HTTP: its port is not checked.
        ServerContainer(server_spec(host, port=port, rank=1), client=client).check_port_free(None)
    ServerContainer(server_spec(host, port=port), client=client).check_port_free(None)


def test_a_new_spec_needs_its_weights_before_the_running_server_goes(client, host, serving):
    _sc, container, _result = serving
    partial = ServerContainer(server_spec(host, model="lab/partial"), client=client)
    with pytest.raises(ServerError) as kept:
        partial.check_model_present(container)
    message = str(kept.value)
    assert message.startswith("the running server is kept: the new spec loads lab/partial at main, but 1 of 2 weight "
                              "shards are missing in ")
    partial.check_model_present(None)  # nothing runs: nothing to keep
    ServerContainer(server_spec(host), client=client).check_model_present(container)


def test_a_bind_address_must_be_one_of_this_hosts(client, host):
    for address in ("", "0.0.0.0", "::", "127.0.0.1"):
        ServerContainer(dict(server_spec(host), bind_host=address), client=client).check_bind_address()
    with pytest.raises(ServerError) as refused:
        ServerContainer(dict(server_spec(host), bind_host="192.0.2.77"), client=client).check_bind_address()
    assert str(refused.value).startswith("sglang_server_bind_host=192.0.2.77 is not an address of this host (")
    assert "the running server is kept" in str(refused.value)


def test_replacing_a_server_stops_it_cleanly_and_a_crash_leaves_the_last_good_spec_to_roll_back_to(
    client, host, names
):
    first = server(client, server_spec(host), names)
    old, _result = start_ready(first)
    broken = dict(first.spec, env=dict(first.spec["env"], SGLANG_STANDIN_FAULT="start-fail:weights"))
    broken = rehash(broken)
    second = ServerContainer(broken, client=client)
    assert second.differences(second.container(), None, "") == [
        "spec changed (%s -> %s)" % (first.spec["spec_hash"][:12], broken["spec_hash"][:12])]
    assert second.remove(old) is True
    # Rank 0 served: SIGTERM, and it drained and exited 0 by itself.
    assert second.actions[0].startswith("stopped %s in " % old.short_id)
    assert second.actions[0].endswith("(exit code 0)")
    assert second.actions[1] == "removed %s" % old.short_id and second.notices == []
    assert second.container() is None
    new = second.create(second.secrets_digest())
    with pytest.raises(ServerError) as crashed:
        second.wait_ready(new, 60, 0, poll=0.2)
    assert str(crashed.value).startswith(
        "container %s crashed (exit code 0: SGLang ends a crash with exit code 0 when it is PID 1 of its container)"
        % broken["name"])
    assert str(crashed.value).endswith("while starting (now exited)")
    assert crashed.value.evidence["exit_code"] == 0
    assert "Scheduler hit an exception" in crashed.value.evidence["logs"]
    # The last spec that served is still the one to go back to; the crashed one is what spec.json holds now.
    assert read_json(second, SPEC_FILE) == broken
    assert second.rollback_spec() == first.spec
    crashed_container = second.container()
    assert second.stop(crashed_container) is False  # exited: nothing to stop
    assert second.remove(crashed_container) is True and second.container() is None
    assert second.actions[-1] == "removed %s" % crashed_container.short_id
    # Its logs went with it.
    assert second.logs_tail(crashed_container) == "" and second.progress(crashed_container) == ("unknown", "")
    assert second.crash_report(crashed_container, {"ExitCode": 1})[0] == "crashed (exit code 1)"
    assert second.remove(None) is False


def test_a_successful_replacement_keeps_the_previous_spec(client, host, names):
    first = server(client, server_spec(host), names)
    old, _result = start_ready(first)
    newer = rehash(dict(first.spec, command=[*first.spec["command"], "--max-running-requests", "8"]))
    second = ServerContainer(newer, client=client)
    second.remove(old)
    start_ready(second)
    assert read_json(second, READY_SPEC_FILE) == newer
    assert read_json(second, PREVIOUS_SPEC_FILE) == first.spec
    assert second.rollback_spec() is None


def test_a_server_that_keeps_crashing_is_reported_not_waited_for(client, host, names):
    spec = server_spec(host, restart_policy="always", env={"SGLANG_STANDIN_FAULT": "start-fail:weights"})
    sc = server(client, spec, names)
    sc.ensure_host_files()
    container = sc.create("")
    started = time.monotonic()
    with pytest.raises(ServerError) as crashing:
        sc.wait_ready(container, 60, 0, poll=2.0)
    assert time.monotonic() - started < 30
    message = str(crashing.value)
    # Seen between two runs (Docker restarting it) or running again with a new start time: both are a crash.
    assert ("and was restarted while starting: a crash loop" in message
            or message.endswith("while starting (now restarting)")), message
    assert message.startswith("container %s crashed (" % spec["name"])
    assert "Scheduler hit an exception" in crashing.value.evidence["logs"]


def test_a_loading_server_is_waited_for_in_rounds_then_killed_when_it_ignores_sigterm(client, host, names):
    spec = server_spec(host, env={"SGLANG_STANDIN_LOAD_SECONDS": "120"})
    sc = server(client, spec, names)
    sc.ensure_host_files()
    container = sc.create("")
    deadline = time.monotonic() + 30
    while "Load weight begin" not in container.logs().decode() and time.monotonic() < deadline:
        time.sleep(0.2)
    round_result = sc.wait_ready(container, 600, round_seconds=1)
    assert round_result["ready"] is False and round_result["detail"] == "port closed (loading)"
    assert round_result["phase"] == "loading weights" and round_result["seconds_since_start"] >= 1
    with pytest.raises(ServerError) as late:
        sc.wait_ready(container, 1, 0, poll=0.2)
    assert "is running but not ready" in str(late.value)
    assert "(port closed (loading); start-up step: loading weights" in str(late.value)
    assert str(late.value).endswith("the limit is sglang_server_ready_timeout=1")
    assert late.value.evidence["phase"] == "loading weights" and "Load weight begin" in late.value.evidence["logs"]
    container.reload()
    assert sc.stop(container) is True
    assert sc.notices == ["%s did not stop on SIGTERM within 5 s (SGLang ignores SIGTERM while it loads and on "
                          "ranks >= 1): killed" % spec["name"]]
    assert sc.actions[-1].startswith("killed %s after " % container.short_id)
    container.reload()
    assert container.attrs["State"]["ExitCode"] == 137
    sc.start_existing(container)
    assert container.status == "running" and sc.actions[-1] == "started %s" % container.short_id


def test_check_mode_changes_nothing(client, host):
    spec = server_spec(host, api_key=True)
    sc = ServerContainer(spec, secrets={"api_key": API_KEY}, check_mode=True, client=client)
    assert sc.ensure_host_files() is True
    assert sc.create(sc.secrets_digest()) is None
    assert sc.actions == ["created %s" % spec["name"]]
    assert sc.container() is None
    assert not os.path.exists(sc.host_dir) and not os.path.exists(spec["host_dirs"]["cache"])


def test_host_files_need_every_secret_and_drop_stale_ones(client, host):
    spec = server_spec(host, api_key=True)
    with pytest.raises(ServerError) as missing:
        ServerContainer(spec, client=client).ensure_host_files()
    assert str(missing.value) == ("the launch spec expects the api_key in %s, but none was given (set sglang_api_key)"
                                  % SERVER_CONFIG_FILE)
    sc = ServerContainer(spec, secrets={"api_key": API_KEY}, client=client)
    assert sc.ensure_host_files() is True
    digest = sc.secrets_digest()  # the host's salt, kept beside the secrets
    stale = os.path.join(sc.secrets_dir, "hf_token")
    with open(stale, "w", encoding="utf-8") as handle:
        handle.write("hf_old\n")
    assert sc.ensure_host_files() is True
    assert sorted(os.listdir(sc.secrets_dir)) == [".digest-salt", SERVER_CONFIG_FILE]
    assert sc.secrets_digest() == digest
    assert ServerContainer(spec, secrets={"api_key": "sk-other"}, client=client).ensure_host_files() is True
    with open(os.path.join(sc.secrets_dir, SERVER_CONFIG_FILE), encoding="utf-8") as handle:
        assert handle.read() == 'api-key: "sk-other"\n'


def test_the_image_policy(client, host):
    sc = ServerContainer(server_spec(host), client=client)
    assert sc.local_image().id == client.images.get(STANDIN_IMAGE).id
    assert sc.ensure_image("missing").id == client.images.get(STANDIN_IMAGE).id and sc.actions == []
    absent = ServerContainer(dict(server_spec(host), image="localhost/dcsg-unit-absent:1"), client=client)
    assert absent.local_image() is None
    with pytest.raises(ServerError) as never:
        absent.ensure_image("never")
    assert str(never.value).startswith("image localhost/dcsg-unit-absent:1 is not on this host and "
                                       "sglang_server_pull=never forbids pulling it")


def test_a_container_without_our_labels_is_not_ours(client, names):
    name = "dcsg-unit-plain-%d" % free_port()
    names.append(name)
    plain = client.containers.create(BASE_IMAGE, ["true"], name=name)
    assert ours(plain) is False


def test_an_engine_that_does_not_answer_is_named(host, monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", "unix://%s" % (tmp_path / "no-engine.sock"))
    with pytest.raises(ServerError) as down:
        ServerContainer(server_spec(host))
    assert str(down.value).startswith("the Docker engine on this host does not answer (")
    assert str(down.value).endswith("start it (systemctl start docker)")


def test_docker_times():
    assert parse_docker_time("2026-12-04T05:42:41.123456789Z") == 1796362961
    assert parse_docker_time("0001-01-01T00:00:00Z") is None
    assert parse_docker_time("") is None
    assert diff_view({}) == {}
