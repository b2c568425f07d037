"""The TLS proxy's wanted container (module_utils/tls/proxy) and the hash its label holds: what role sglang_tls ran
with `docker run` before, and a new hash for any change. The container itself is tested on the engine in
tests/integration/test_tls_proxy_container.py."""

import re

import pytest

from ansible_collections.datacrunch.sglang.plugins.module_utils.tls.proxy import LABEL_HASH, proxy_spec, spec_hash

BASE = {"container_name": "sglang-tls-proxy", "image": "nginx:1.27.5", "config_dir": "/etc/datacrunch-sglang-tls",
        "config_digest": "conf|cert|key"}


def test_the_proxy_is_the_container_the_role_ran_before():
    spec = proxy_spec(**BASE)
    assert spec == {
        "name": "sglang-tls-proxy",
        "image": "nginx:1.27.5",
        "command": ["nginx", "-c", "/etc/datacrunch-sglang-tls/nginx.conf", "-g", "daemon off;"],
        "mounts": [{"source": "/etc/datacrunch-sglang-tls", "target": "/etc/datacrunch-sglang-tls", "read_only": True}],
        "network_mode": "host",
        "restart_policy": "unless-stopped",
        "log_options": {"max-size": "10m", "max-file": "3"},
        "config_digest": "conf|cert|key",
    }
    assert LABEL_HASH.startswith("datacrunch.sglang.")


def test_a_trailing_slash_does_not_double_in_the_command():
    assert proxy_spec(**{**BASE, "config_dir": "/srv/tls/"})["command"][2] == "/srv/tls/nginx.conf"


def test_the_hash_is_stable_and_short():
    assert spec_hash(proxy_spec(**BASE)) == spec_hash(proxy_spec(**BASE))
    assert re.fullmatch(r"[0-9a-f]{32}", spec_hash(proxy_spec(**BASE)))


@pytest.mark.parametrize(
    "change",
    [{"image": "nginx:1.27.6"}, {"config_dir": "/srv/tls"}, {"config_digest": "conf|cert|other-key"},
     {"container_name": "other-proxy"}],
)
def test_any_change_makes_another_hash(change):
    assert spec_hash(proxy_spec(**dict(BASE, **change))) != spec_hash(proxy_spec(**BASE))
