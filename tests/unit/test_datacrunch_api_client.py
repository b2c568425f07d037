"""The DataCrunch (Verda) API client against the API stand-in on loopback: auth, refresh, retries, errors."""

import http.server
import socket
import sys
import threading
import time
from pathlib import Path

import pytest

from ansible_collections.datacrunch.sglang.plugins.module_utils.datacrunch import api as datacrunch_api
from ansible_collections.datacrunch.sglang.plugins.module_utils.datacrunch.api import (
    DataCrunchAPIError,
    DataCrunchClient,
    DataCrunchConfigError,
    resolve_settings,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lab" / "verda-api"))
import standin_control
from standin_control import CLIENT_ID, CLIENT_SECRET

H200_TYPE = "8H200.141S.176V"
IMAGE = "ubuntu-24.04-cuda-12.8-open-docker"
CLUSTER_IMAGE = "ubuntu-24.04-cuda-13.0-cluster"


class FakeClock:
    def __init__(self):
        self.now = 1000.0
        self.slept = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def standin():
    with standin_control.in_thread(pool=["10.9.0.11", "10.9.0.12", "10.9.0.13"]) as control:
        yield control


@pytest.fixture
def clock():
    return FakeClock()


def client_for(control, clock, secret=CLIENT_SECRET, **options):
    settings = resolve_settings(CLIENT_ID, secret, control.base_url)
    return DataCrunchClient(settings, sleep=clock.sleep, clock=clock, **options)


def api_requests(control):
    return [(r["method"], r["path"], r["grant"], r["status"]) for r in control.requests()]


def assert_no_secret(text, client=None):
    assert CLIENT_SECRET not in text
    if client is not None:
        for token in (client._access_token, client._refresh_token):
            assert not token or token not in text


# --- settings ----------------------------------------------------------------------------------------------


def test_settings_prefer_verda_names_then_the_older_datacrunch_names():
    env = {"DATACRUNCH_CLIENT_ID": "old-id", "DATACRUNCH_CLIENT_SECRET": "old-secret", "VERDA_CLIENT_ID": "new-id"}
    settings = resolve_settings(environ=env)
    assert (settings.client_id, settings.client_secret) == ("new-id", "old-secret")
    assert settings.base_url == "https://api.verda.com/v1"
    assert "old-secret" not in repr(settings)


def test_settings_explicit_values_win_over_the_environment():
    env = {"VERDA_CLIENT_ID": "env-id", "VERDA_CLIENT_SECRET": "env-secret", "VERDA_BASE_URL": "https://x.example/v1"}
    settings = resolve_settings("arg-id", "arg-secret", "https://api.example/v1/", environ=env)
    assert (settings.client_id, settings.client_secret, settings.base_url) == (
        "arg-id", "arg-secret", "https://api.example/v1")


def test_missing_credentials_name_the_variables_to_set():
    with pytest.raises(DataCrunchConfigError) as error:
        resolve_settings(environ={"VERDA_CLIENT_ID": "only-the-id"})
    message = str(error.value)
    assert "client_secret not set" in message
    assert "VERDA_CLIENT_SECRET" in message and "DATACRUNCH_CLIENT_SECRET" in message


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://api.verda.com/v1", "unencrypted"),
        ("ftp://api.verda.com/v1", "not an API URL"),
        ("https://user:pw@api.verda.com/v1", "must not carry credentials"),
        ("https://api.verda.com/v1?x=1", "query"),
        ("", "not an API URL"),
    ],
)
def test_bad_base_urls_are_refused_before_any_request(url, expected):
    with pytest.raises(DataCrunchConfigError) as error:
        datacrunch_api.check_base_url(url, variable="VERDA_BASE_URL")
    assert expected in str(error.value)
    assert "VERDA_BASE_URL" in str(error.value)


def test_plain_http_is_accepted_on_loopback_only():
    assert datacrunch_api.check_base_url("http://127.0.0.1:8799/v1/") == "http://127.0.0.1:8799/v1"
    assert datacrunch_api.check_base_url("http://localhost:1/v1") == "http://localhost:1/v1"


def test_retry_after_reads_seconds_and_http_dates():
    assert datacrunch_api.parse_retry_after("7") == 7.0
    assert datacrunch_api.parse_retry_after("Thu, 01 Jan 1970 00:01:40 GMT", now=90.0) == 10.0
    assert datacrunch_api.parse_retry_after("soon") is None
    assert datacrunch_api.parse_retry_after(None) is None


# --- auth and refresh --------------------------------------------------------------------------------------


def test_lists_instances_after_one_client_credentials_grant(standin, clock):
    tags = [{"id": "t", "key": "k", "value": "v"}]
    standin.seed(instances=[{"id": "a1", "hostname": "gpu-a", "status": "running", "ip": "10.0.0.5",
                             "os_name": "Ubuntu 24.04", "volume_ids": ["v1"], "tags": tags}])
    client = client_for(standin, clock)
    first = client.list_instances()
    second = client.list_instances()
    assert first == second
    # Fields the official SDK drops arrive intact.
    assert first[0]["os_name"] == "Ubuntu 24.04"
    assert first[0]["volume_ids"] == ["v1"]
    assert first[0]["tags"] == [{"id": "t", "key": "k", "value": "v"}]
    assert api_requests(standin) == [
        ("POST", "/v1/oauth2/token", "client_credentials", 200),
        ("GET", "/v1/instances", None, 200),
        ("GET", "/v1/instances", None, 200),
    ]


def test_an_expired_token_is_refreshed_with_the_refresh_token(standin, clock):
    client = client_for(standin, clock)
    client.list_instances()
    clock.now += 3600  # the stand-in's tokens live 3600 s; the client refreshes ahead of expiry
    client.list_instances()
    assert [r[2] for r in api_requests(standin)] == ["client_credentials", None, "refresh_token", None]


def test_a_refused_refresh_token_falls_back_to_the_client_credentials(standin, clock):
    client = client_for(standin, clock)
    client.list_instances()
    standin.fault("expire_tokens", refresh=True)
    clock.now += 3600
    client.list_clusters()
    assert api_requests(standin)[1:] == [
        ("GET", "/v1/instances", None, 200),
        ("POST", "/v1/oauth2/token", "refresh_token", 401),
        ("POST", "/v1/oauth2/token", "client_credentials", 200),
        ("GET", "/v1/clusters", None, 200),
    ]


def test_a_token_revoked_early_is_replaced_once_and_the_request_repeated(standin, clock):
    client = client_for(standin, clock)
    client.list_instances()
    standin.fault("expire_tokens")
    assert client.list_instances() == []
    assert api_requests(standin)[2:] == [
        ("GET", "/v1/instances", None, 401),
        ("POST", "/v1/oauth2/token", "refresh_token", 200),
        ("GET", "/v1/instances", None, 200),
    ]


def test_bad_credentials_say_so_and_never_print_the_secret(standin, clock):
    wrong = "wrong-secret-0123456789"
    client = client_for(standin, clock, secret=wrong)
    with pytest.raises(DataCrunchAPIError) as error:
        client.list_instances()
    message = str(error.value)
    assert "refused the client credentials" in message
    assert "VERDA_CLIENT_ID" in message and "VERDA_CLIENT_SECRET" in message
    assert "'stan...'" in message  # a hint of which client id, not the whole of it
    assert wrong not in message and CLIENT_ID not in message
    assert error.value.status == 401
    # Refused credentials are not retried: one token request only.
    assert api_requests(standin) == [("POST", "/v1/oauth2/token", "client_credentials", 401)]


# --- retries and errors ------------------------------------------------------------------------------------


def test_rate_limits_are_waited_out_as_retry_after_asks(standin, clock):
    client = client_for(standin, clock)
    standin.fault("rate_limit", count=2, path="/v1/instances", retry_after=3)
    assert client.list_instances() == []
    assert clock.slept == [3.0, 3.0]
    assert [r[3] for r in api_requests(standin)] == [200, 429, 429, 200]


def test_a_rate_limit_that_lasts_ends_in_a_clear_error(standin, clock):
    client = client_for(standin, clock, max_retries=2)
    standin.fault("rate_limit", count=10, path="/v1/clusters", retry_after=120)
    with pytest.raises(DataCrunchAPIError) as error:
        client.list_clusters()
    message = str(error.value)
    assert "HTTP 429" in message and "3 attempts" in message and "Retry-After: 120s" in message
    assert "cache: true" in message
    assert clock.slept == [60.0, 60.0]  # Retry-After is honoured up to max_retry_wait


def test_server_errors_on_reads_are_retried(standin, clock):
    client = client_for(standin, clock)
    standin.fault("server_error", count=2, method="GET", path="/v1/clusters")
    assert client.list_clusters() == []
    assert clock.slept == [1.0, 2.0]


def test_server_errors_on_orders_are_not_repeated(standin, clock):
    client = client_for(standin, clock)
    standin.fault("server_error", count=1, method="POST", path="/v1/instances")
    payload = {"instance_type": H200_TYPE, "image": IMAGE, "hostname": "x1", "description": "", "ssh_key_ids": []}
    with pytest.raises(DataCrunchAPIError) as error:
        client.create_instance(payload)
    assert error.value.status == 500 and error.value.code == "server_error"
    assert "run again later" in str(error.value)
    assert [r[:2] for r in api_requests(standin)].count(("POST", "/v1/instances")) == 1
    assert standin.state()["instances"] == []


def test_dropped_connections_on_reads_are_retried(standin, clock):
    client = client_for(standin, clock)
    standin.fault("drop", count=1, method="GET", path="/v1/instances")
    assert client.list_instances() == []


def test_an_unreachable_api_names_the_url_and_the_fix(clock):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = resolve_settings(CLIENT_ID, CLIENT_SECRET, f"http://127.0.0.1:{port}/v1")
    client = DataCrunchClient(settings, sleep=clock.sleep, clock=clock, max_server_retries=1)
    with pytest.raises(DataCrunchAPIError) as error:
        client.list_instances()
    message = str(error.value)
    assert f"http://127.0.0.1:{port}/v1 is unreachable" in message
    assert "VERDA_BASE_URL" in message
    assert error.value.code == "unreachable"
    assert_no_secret(message)


def test_insufficient_funds_is_reported_with_its_fix(standin, clock):
    client = client_for(standin, clock)
    standin.fault("insufficient_funds")
    payload = {"instance_type": H200_TYPE, "image": IMAGE, "hostname": "x1", "description": "", "ssh_key_ids": []}
    with pytest.raises(DataCrunchAPIError) as error:
        client.create_instance(payload)
    assert error.value.code == "insufficient_funds"
    assert "add funds" in str(error.value)
    assert_no_secret(str(error.value), client)


def test_invalid_requests_repeat_the_apis_reason(standin, clock):
    client = client_for(standin, clock)
    payload = {"instance_type": "9X999.1V", "image": IMAGE, "hostname": "x1", "description": "", "ssh_key_ids": []}
    with pytest.raises(DataCrunchAPIError) as error:
        client.create_instance(payload)
    assert "HTTP 400 invalid_request: instance_type '9X999.1V' is invalid" in str(error.value)


def test_a_secret_echoed_by_the_server_is_redacted(standin, clock):
    client = client_for(standin, clock)
    payload = {"instance_type": H200_TYPE, "image": IMAGE, "hostname": "bad_" + CLIENT_SECRET, "description": "",
               "ssh_key_ids": []}
    with pytest.raises(DataCrunchAPIError) as error:
        client.create_instance(payload)
    assert datacrunch_api.REDACTED in str(error.value)
    assert_no_secret(str(error.value), client)


def test_ids_that_are_not_plain_identifiers_never_reach_the_url(standin, clock):
    client = client_for(standin, clock)
    with pytest.raises(DataCrunchConfigError):
        client.get_instance("../clusters")
    assert api_requests(standin) == []


# --- the endpoints -----------------------------------------------------------------------------------------


def _eventually(read, wanted, within=15.0):
    """read() until it returns wanted (the stand-in moves on real time; a loaded machine may be slow), else its last
    answer."""
    deadline = time.monotonic() + within
    while True:
        got = read()
        if got == wanted or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


def test_order_provision_and_delete_an_instance(clock):
    # Provisioning takes 3 s here: the read right after the order sees it ordered even on a loaded machine.
    with standin_control.in_thread(pool=["10.9.0.11"], provision_seconds=3.0) as standin:
        client = client_for(standin, clock)
        assert client.instance_available(H200_TYPE, "FIN-01") is True
        payload = {"instance_type": H200_TYPE, "image": IMAGE, "hostname": "gpu-1", "description": "d",
                   "location_code": "FIN-01", "ssh_key_ids": [client.list_ssh_keys()[0]["id"]]}
        instance_id = client.create_instance(payload)
        ordered = client.get_instance(instance_id)
        assert (ordered["status"], ordered["ip"]) == ("ordered", None)

        def status_and_ip():
            instance = client.get_instance(instance_id)
            return instance["status"], instance["ip"]

        assert _eventually(status_and_ip, ("running", "10.9.0.11")) == ("running", "10.9.0.11")
        client.instance_action([instance_id], "delete")
        assert _eventually(lambda: client.get_instance(instance_id), None) is None
        assert standin.state()["pool"][-1] == "10.9.0.11"  # the address went back to the pool


def test_clusters_and_their_availability(clock):
    # A discontinued cluster is gone one action step later: 3 s here, so that the read right after the discontinue
    # sees it discontinued even on a loaded machine (with the fixture's 0.2 s it read None beside other stages).
    with standin_control.in_thread(pool=["10.9.0.11", "10.9.0.12", "10.9.0.13"], action_seconds=3.0) as standin:
        client = client_for(standin, clock)
        assert client.cluster_available("16H200", "FIN-01") is True
        cluster_id = client.create_cluster({
            "hostname": "tp16", "cluster_type": "16H200", "image": CLUSTER_IMAGE, "description": "",
            "ssh_key_ids": [], "location_code": "FIN-01", "contract": "PAY_AS_YOU_GO",
            "shared_volume": {"name": "tp16-sfs", "size": 1000},
        })
        assert client.cluster_available("32H200", "FIN-01") is False  # 5 addresses needed, 0 left
        assert _eventually(lambda: client.get_cluster(cluster_id)["status"], "running") == "running"
        cluster = client.get_cluster(cluster_id)
        assert cluster["status"] == "running" and cluster["ip"] == "10.9.0.11"
        assert [w["private_ip"] for w in cluster["worker_nodes"]] == ["10.9.0.12", "10.9.0.13"]
        client.discontinue_clusters([cluster_id])
        assert client.get_cluster(cluster_id)["status"] == "discontinued"
        assert _eventually(lambda: client.get_cluster(cluster_id), None) is None


def test_a_base_url_that_is_not_the_api_is_named(clock):
    """A web server that answers 200 with HTML (a wrong VERDA_BASE_URL) is told apart from the API."""

    class Page(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            body = b"<html>not an API</html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        settings = resolve_settings(CLIENT_ID, CLIENT_SECRET, f"http://127.0.0.1:{server.server_address[1]}/v1")
        with pytest.raises(DataCrunchAPIError) as error:
            DataCrunchClient(settings, sleep=clock.sleep, clock=clock).list_instances()
        assert "answered without an access_token" in str(error.value)
        assert "VERDA_BASE_URL" in str(error.value)
    finally:
        server.shutdown()
        server.server_close()


def test_an_error_answer_is_reported_by_its_code_and_message_only(clock):
    """Whatever else an error answer carries (here an instance with its Jupyter token) stays out of the message."""

    class Api(http.server.BaseHTTPRequestHandler):
        def answer(self, status, body):
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.answer(200, b'{"access_token": "a-token-9d2e", "expires_in": 3600}')

        def do_GET(self):
            body = b'{"instance": {"jupyter_token": "jupyter-canary-77ab"}}'
            if self.path.startswith("/v1/clusters"):
                body = b'{"code": "forbidden_action", "message": "Not allowed", "jupyter_token": "jupyter-canary-77ab"}'
            self.answer(409, body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        settings = resolve_settings(CLIENT_ID, CLIENT_SECRET, f"http://127.0.0.1:{server.server_address[1]}/v1")
        client = DataCrunchClient(settings, sleep=clock.sleep, clock=clock)
        with pytest.raises(DataCrunchAPIError) as error:
            client.list_instances()
        assert "HTTP 409: an answer that is not an API error object (application/json, 54 bytes)" in str(error.value)
        with pytest.raises(DataCrunchAPIError) as error:
            client.list_clusters()
        assert "HTTP 409 forbidden_action: Not allowed. Fix:" in str(error.value)
        assert "jupyter-canary-77ab" not in str(error.value)
    finally:
        server.shutdown()
        server.server_close()


def test_images_a_type_accepts(standin, clock):
    client = client_for(standin, clock)
    assert IMAGE in client.list_images(H200_TYPE)
    assert client.list_images("16H200", cluster=True) == [CLUSTER_IMAGE, "ubuntu-22.04-cuda-12.9-cluster"]
    assert ("GET", "/v1/images/cluster") in [(r["method"], r["path"]) for r in standin.requests()]
    assert {"instance_type": "16H200"} in [r["query"] for r in standin.requests()]


@pytest.mark.parametrize("shape", ["bool", "string"])
def test_availability_in_each_shape(standin, clock, shape):
    standin.shapes(availability=shape)
    client = client_for(standin, clock)
    assert client.instance_available(H200_TYPE, "FIN-01") is True
    standin.set_pool([])
    assert client.instance_available(H200_TYPE, "FIN-01") is False
