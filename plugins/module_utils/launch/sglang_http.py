# -*- coding: utf-8 -*-
# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Talking to a running SGLang server: readiness probe and a real smoke request through the OpenAI API."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
from urllib.parse import urlsplit

from ansible.module_utils.urls import open_url

from ansible_collections.datacrunch.sglang.plugins.module_utils.common.prometheus_text import (
    parse_metrics,
    serving_load,
)

# /health_generate runs a one-token generation with SGLang's own 20 s timeout: wait longer than that.
PROBE_TIMEOUT = 30


def port_open(base_url, timeout=2.0):
    parts = urlsplit(base_url)
    try:
        with socket.create_connection((parts.hostname, parts.port or 80), timeout=timeout):
            return True
    except OSError:
        return False


def request(url, api_key=None, payload=None, timeout=PROBE_TIMEOUT):
    """(status, parsed JSON or text) for a GET, or a POST when payload is given; status 0 when unreachable."""
    headers = {"Accept": "application/json"}
    data = None
    if payload is not None:
        data = json.dumps(payload).encode()
        headers["Content-Type"] = "application/json"
    if api_key:
        headers["Authorization"] = "Bearer %s" % api_key
    try:
        response = open_url(url, data=data, headers=headers, method="POST" if data is not None else "GET",
                            timeout=timeout, use_proxy=False, follow_redirects="none")
        body = response.read().decode(errors="replace")
        status = response.status
    except urllib.error.HTTPError as exc:
        body = exc.read().decode(errors="replace")
        status = exc.code
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return 0, str(getattr(exc, "reason", exc))
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body


def probe_ready(readiness):
    """One readiness probe: (ready, detail). HTTP kind: port open and /health_generate 200."""
    if readiness.get("kind") != "http":
        return True, "running"
    if not port_open(readiness["base_url"]):
        return False, "port closed (loading)"
    status, body = request(readiness["url"])
    if status == 200:
        return True, "health_generate 200"
    return False, "health_generate %s" % (status or body)


def smoke(base_url, api_key, prompt="Reply with the single word: ready.", max_tokens=16):
    """One chat completion through the OpenAI API, and a check that the key is really enforced."""
    result = {"ok": False}
    if api_key:
        status, _body = request(base_url + "/v1/models")
        result["unauthenticated_status"] = status
        if status == 200:
            result["error"] = "the endpoint answered /v1/models without the API key: the key is not enforced"
            return result
    status, models = request(base_url + "/v1/models", api_key=api_key)
    if status != 200 or not isinstance(models, dict) or not models.get("data"):
        result["error"] = "GET /v1/models answered %s: %s" % (status, str(models)[:300])
        return result
    model = models["data"][0].get("id")
    payload = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
    }
    started = time.monotonic()
    status, reply = request(base_url + "/v1/chat/completions", api_key=api_key, payload=payload, timeout=300)
    latency = round(time.monotonic() - started, 3)
    if status != 200 or not isinstance(reply, dict) or not reply.get("choices"):
        result["error"] = "POST /v1/chat/completions answered %s: %s" % (status, str(reply)[:300])
        return result
    message = reply["choices"][0].get("message") or {}
    text = message.get("content") or message.get("reasoning_content") or ""
    result.update(
        ok=True,
        model=model,
        latency_s=latency,
        prompt=prompt,
        reply=text[:200],
        usage=reply.get("usage") or {},
    )
    return result


def wait_drained(base_url, api_key, timeout, poll=2.0):
    """Wait until the server runs and queues no request, up to timeout; (drained, seconds waited, last load)."""
    started = time.monotonic()
    load = {}
    while True:
        code, body = request(base_url + "/metrics", api_key=api_key, timeout=10)
        if code != 200 or not isinstance(body, str):
            return False, round(time.monotonic() - started, 1), {"error": "GET /metrics answered %s" % code}
        load = serving_load(parse_metrics(body))
        if not (load.get("running_requests") or 0) and not (load.get("queued_requests") or 0):
            return True, round(time.monotonic() - started, 1), load
        if time.monotonic() - started >= timeout:
            return False, round(time.monotonic() - started, 1), load
        time.sleep(poll)
