"""The TLS proxy's nginx configuration (role sglang_tls), rendered from its template with plain Jinja."""

from __future__ import annotations

import re
from pathlib import Path

import jinja2
import pytest
import yaml

pytestmark = pytest.mark.any_python

ROLE = Path(__file__).resolve().parents[2] / "roles" / "sglang_tls"


def render(**overrides):
    values = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    values.update(
        sglang_tls_enabled=True,
        _sglang_tls_upstream_address="127.0.0.1:30000",
        _sglang_tls_cert_name="self-signed-0123456789ab.crt",
        _sglang_tls_key_name="self-signed-0123456789ab.key",
    )
    values.update(overrides)
    # An nginx configuration, not HTML: nothing to escape.
    environment = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)  # noqa: S701
    environment.filters["int"] = int
    return environment.from_string((ROLE / "templates" / "nginx.conf.j2").read_text()).render(**values)


@pytest.fixture
def conf():
    return render()


def directives(text):
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def test_tls_on_the_proxy_port_for_ipv4_and_ipv6(conf):
    lines = directives(conf)
    assert "listen 8443 ssl;" in lines and "listen [::]:8443 ssl;" in lines
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in lines
    assert "ssl_certificate /etc/datacrunch-sglang-tls/self-signed-0123456789ab.crt;" in lines
    assert "ssl_certificate_key /etc/datacrunch-sglang-tls/self-signed-0123456789ab.key;" in lines
    # No plain-HTTP listener anywhere.
    assert [line for line in lines if line.startswith("listen") and "ssl" not in line] == []


def test_forwards_to_the_server_and_streams_unbuffered(conf):
    lines = directives(conf)
    assert "server 127.0.0.1:30000;" in lines
    assert "proxy_pass http://sglang;" in lines
    assert "proxy_buffering off;" in lines and "proxy_request_buffering off;" in lines
    assert "proxy_read_timeout 3600s;" in lines
    assert "client_max_body_size 64m;" in lines


def test_the_access_log_holds_no_request_headers(conf):
    # nginx's default "combined" format has no Authorization header; a custom log_format could add one.
    assert "log_format" not in conf
    assert not re.search(r"\$http_authorization", conf, re.IGNORECASE)
    assert "server_tokens off;" in directives(conf)


def test_settings_reach_the_configuration():
    conf = render(sglang_tls_port=443, sglang_tls_read_timeout=600, sglang_tls_client_max_body_size="1g",
                  _sglang_tls_upstream_address="10.0.0.5:30000")
    lines = directives(conf)
    assert "listen 443 ssl;" in lines and "server 10.0.0.5:30000;" in lines
    assert "proxy_read_timeout 600s;" in lines and "client_max_body_size 1g;" in lines
