"""module_utils/launch/sglang_http.py against a real HTTP server on loopback that answers as SGLang's rank 0 does:
/health_generate, /v1/models and /v1/chat/completions behind the API key, /metrics in Prometheus text.

Each test sets the answers it needs and reads back what the server received (paths, methods, headers, bodies).
"""

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ansible_collections.datacrunch.sglang.plugins.module_utils.launch import sglang_http

API_KEY = "sk-unit-http-5e1d"
MODELS = {"object": "list", "data": [{"id": "lab/tiny-r1", "object": "model"}]}


def metrics(running, queued):
    return (
        "# HELP sglang:num_running_reqs The number of running requests.\n"
        "# TYPE sglang:num_running_reqs gauge\n"
        'sglang:num_running_reqs{tp_rank="0",dp_rank="0"} %d\n'
        'sglang:num_queue_reqs{tp_rank="0",dp_rank="0"} %d\n'
        'sglang:token_usage{tp_rank="0",dp_rank="0"} 0.25\n' % (running, queued)
    )


class Rank0:
    """What the server answers (path -> (status, body or callable)), what it was asked, and whether the key is
    enforced."""

    def __init__(self):
        self.answers = {}
        self.received = []
        self.api_key = API_KEY
        handler = self._handler()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def base_url(self):
        return "http://127.0.0.1:%d" % self.httpd.server_address[1]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def _handler(self):
        rank0 = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                rank0.received.append({"method": self.command, "path": self.path, "headers": dict(self.headers),
                                       "body": json.loads(body) if body else None})
                protected = self.path.startswith("/v1/") and rank0.api_key
                if protected and self.headers.get("Authorization") != "Bearer %s" % rank0.api_key:
                    status, payload = 401, {"error": "Unauthorized"}
                else:
                    status, payload = rank0.answers.get(self.path, (404, {"detail": "Not Found"}))
                if callable(payload):
                    payload = payload()
                if isinstance(payload, str):
                    data, kind = payload.encode(), "text/plain; version=0.0.4"
                else:
                    data, kind = json.dumps(payload).encode(), "application/json"
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = _answer
            do_POST = _answer

        return Handler


@pytest.fixture
def rank0():
    server = Rank0()
    yield server
    server.close()


def closed_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def readiness(base_url):
    return {"kind": "http", "base_url": base_url, "url": base_url + "/health_generate"}


def test_port_open_tells_a_listening_port_from_a_closed_one(rank0):
    assert sglang_http.port_open(rank0.base_url) is True
    assert sglang_http.port_open("http://127.0.0.1:%d" % closed_port(), timeout=0.5) is False


def test_request_sends_the_key_and_parses_json_or_returns_text(rank0):
    rank0.answers["/v1/models"] = (200, MODELS)
    rank0.answers["/metrics"] = (200, metrics(1, 0))
    assert sglang_http.request(rank0.base_url + "/v1/models", api_key=API_KEY) == (200, MODELS)
    status, text = sglang_http.request(rank0.base_url + "/metrics")
    assert status == 200 and text.startswith("# HELP sglang:num_running_reqs")
    first, second = rank0.received
    assert first["method"] == "GET" and first["headers"]["Authorization"] == "Bearer " + API_KEY
    assert first["headers"]["Accept"] == "application/json"
    assert "Authorization" not in second["headers"]


def test_request_posts_a_json_payload(rank0):
    rank0.answers["/generate"] = (200, {"text": "ok"})
    assert sglang_http.request(rank0.base_url + "/generate", payload={"text": "hi"}) == (200, {"text": "ok"})
    (asked,) = rank0.received
    assert asked["method"] == "POST" and asked["body"] == {"text": "hi"}
    assert asked["headers"]["Content-Type"] == "application/json"


def test_request_returns_an_error_status_with_its_body(rank0):
    rank0.answers["/health_generate"] = (503, {"detail": "generation failed"})
    assert sglang_http.request(rank0.base_url + "/health_generate") == (503, {"detail": "generation failed"})
    assert sglang_http.request(rank0.base_url + "/v1/models") == (401, {"error": "Unauthorized"})


def test_request_to_a_closed_port_or_a_bad_url_is_status_0_with_the_reason():
    status, reason = sglang_http.request("http://127.0.0.1:%d/health" % closed_port(), timeout=2)
    assert status == 0 and "refused" in reason.lower()
    status, reason = sglang_http.request("not-a-url", timeout=2)
    assert status == 0 and reason


def test_probe_ready_by_health_generate(rank0):
    rank0.answers["/health_generate"] = (200, {})
    assert sglang_http.probe_ready(readiness(rank0.base_url)) == (True, "health_generate 200")
    rank0.answers["/health_generate"] = (503, {})
    assert sglang_http.probe_ready(readiness(rank0.base_url)) == (False, "health_generate 503")
    assert [asked["path"] for asked in rank0.received] == ["/health_generate"] * 2


def test_probe_ready_while_loading_and_for_ranks_above_0(rank0):
    assert sglang_http.probe_ready(readiness("http://127.0.0.1:%d" % closed_port())) == (
        False, "port closed (loading)")
    assert sglang_http.probe_ready({"kind": "running", "base_url": rank0.base_url}) == (True, "running")
    assert rank0.received == []


def chat_reply(content=None, reasoning=None):
    message = {"role": "assistant", "content": content}
    if reasoning is not None:
        message["reasoning_content"] = reasoning
    return {"choices": [{"index": 0, "message": message}], "usage": {"prompt_tokens": 12, "completion_tokens": 2}}


def test_smoke_checks_the_key_is_enforced_then_chats_with_the_first_model(rank0):
    rank0.answers["/v1/models"] = (200, MODELS)
    rank0.answers["/v1/chat/completions"] = (200, chat_reply("ready"))
    result = sglang_http.smoke(rank0.base_url, API_KEY, max_tokens=4)
    assert result["ok"] is True
    assert result["unauthenticated_status"] == 401
    assert result["model"] == "lab/tiny-r1" and result["reply"] == "ready"
    assert result["usage"] == {"prompt_tokens": 12, "completion_tokens": 2}
    assert result["latency_s"] >= 0
    chat = rank0.received[-1]
    assert chat["path"] == "/v1/chat/completions" and chat["method"] == "POST"
    assert chat["body"]["model"] == "lab/tiny-r1" and chat["body"]["max_tokens"] == 4
    assert chat["body"]["messages"] == [{"role": "user", "content": result["prompt"]}]
    assert chat["headers"]["Authorization"] == "Bearer " + API_KEY


def test_smoke_reads_a_reasoning_models_reply(rank0):
    rank0.answers["/v1/models"] = (200, MODELS)
    rank0.answers["/v1/chat/completions"] = (200, chat_reply(None, "thinking about it"))
    result = sglang_http.smoke(rank0.base_url, API_KEY)
    assert result["ok"] is True and result["reply"] == "thinking about it"


def test_smoke_fails_when_the_key_is_not_enforced(rank0):
    rank0.api_key = ""
    rank0.answers["/v1/models"] = (200, MODELS)
    result = sglang_http.smoke(rank0.base_url, API_KEY)
    assert result == {"ok": False, "unauthenticated_status": 200,
                      "error": "the endpoint answered /v1/models without the API key: the key is not enforced"}
    assert [asked["path"] for asked in rank0.received] == ["/v1/models"]


def test_smoke_without_a_key_reports_a_model_list_it_cannot_use(rank0):
    rank0.api_key = ""
    rank0.answers["/v1/models"] = (200, {"object": "list", "data": []})
    result = sglang_http.smoke(rank0.base_url, "")
    assert result["ok"] is False and "unauthenticated_status" not in result
    assert result["error"].startswith("GET /v1/models answered 200: ")


def test_smoke_reports_a_failed_completion(rank0):
    rank0.answers["/v1/models"] = (200, MODELS)
    rank0.answers["/v1/chat/completions"] = (500, {"detail": "CUDA out of memory"})
    result = sglang_http.smoke(rank0.base_url, API_KEY)
    assert result["ok"] is False
    assert result["error"] == "POST /v1/chat/completions answered 500: {'detail': 'CUDA out of memory'}"


def test_wait_drained_returns_at_once_when_nothing_runs(rank0):
    rank0.answers["/metrics"] = (200, metrics(0, 0))
    drained, seconds, load = sglang_http.wait_drained(rank0.base_url, API_KEY, timeout=10)
    assert drained is True and seconds < 2
    assert load["running_requests"] == 0 and load["queued_requests"] == 0 and load["token_usage"] == 0.25
    assert rank0.received[0]["headers"]["Authorization"] == "Bearer " + API_KEY


def test_wait_drained_polls_until_the_requests_finish(rank0):
    polls = []

    def answer():
        polls.append(time.monotonic())
        return metrics(2, 1) if len(polls) < 3 else metrics(0, 0)

    rank0.answers["/metrics"] = (200, answer)
    drained, _seconds, load = sglang_http.wait_drained(rank0.base_url, "", timeout=10, poll=0.05)
    assert drained is True and len(polls) == 3
    assert load["running_requests"] == 0


def test_wait_drained_gives_up_after_its_timeout_with_the_last_load(rank0):
    rank0.answers["/metrics"] = (200, metrics(3, 2))
    started = time.monotonic()
    drained, seconds, load = sglang_http.wait_drained(rank0.base_url, "", timeout=0.3, poll=0.05)
    assert drained is False and 0.3 <= seconds < 5 and time.monotonic() - started >= 0.3
    assert load["running_requests"] == 3 and load["queued_requests"] == 2


def test_wait_drained_stops_when_metrics_do_not_answer(rank0):
    drained, _seconds, load = sglang_http.wait_drained(rank0.base_url, "", timeout=10)
    assert drained is False and load == {"error": "GET /metrics answered 404"}
    rank0.answers["/metrics"] = (200, {"not": "text"})
    assert sglang_http.wait_drained(rank0.base_url, "", timeout=10)[2] == {"error": "GET /metrics answered 200"}
