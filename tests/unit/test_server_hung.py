"""A rank 0 that served and now fails its generation probe is hung: it restarts, whatever /health says.

Against a real HTTP server on loopback that answers as SGLang's rank 0 does while its unit hangs: /health 200,
/health_generate 503.
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest

from ansible_collections.datacrunch.sglang.plugins.module_utils.launch import container as server_container
from ansible_collections.datacrunch.sglang.plugins.module_utils.launch.container import (
    READY_RECORD_FILE,
    ServerContainer,
)


@pytest.fixture
def rank0():
    answers = {"/health": 200, "/health_generate": 503}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(answers.get(self.path, 404))
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield answers, "http://127.0.0.1:%d" % server.server_address[1]
    server.shutdown()


class FakeEngine:
    def ping(self):
        return True


def make(tmp_path, base_url, kind="http"):
    if not server_container.HAS_DOCKER:
        pytest.skip("docker SDK not importable")
    spec = {"name": "sglang-server", "host_dirs": {"secrets": str(tmp_path)},
            "readiness": {"kind": kind, "base_url": base_url, "url": base_url + "/health_generate"}}
    return ServerContainer(spec, client=FakeEngine())


def served(tmp_path, container_id):
    (tmp_path / READY_RECORD_FILE).write_text(json.dumps({"container_id": container_id, "seconds_to_ready": 9}))


RUNNING = SimpleNamespace(id="abc", status="running")


def test_a_rank_0_that_served_and_fails_its_generation_is_hung_although_health_is_200(tmp_path, rank0):
    answers, url = rank0
    served(tmp_path, "abc")
    reason = make(tmp_path, url).hung_reason(RUNNING)
    assert "generation probe fails now (health_generate 503)" in reason
    assert "ranks restart together" in reason
    answers["/health_generate"] = 200
    assert make(tmp_path, url).hung_reason(RUNNING) == ""


def test_a_server_that_never_served_is_left_to_the_readiness_wait(tmp_path, rank0):
    _answers, url = rank0
    assert make(tmp_path, url).hung_reason(RUNNING) == ""
    served(tmp_path, "an-older-container")
    assert make(tmp_path, url).hung_reason(RUNNING) == ""


def test_ranks_above_0_are_never_judged_by_their_own_health(tmp_path, rank0):
    _answers, url = rank0
    served(tmp_path, "abc")
    assert make(tmp_path, url, kind="running").hung_reason(RUNNING) == ""
