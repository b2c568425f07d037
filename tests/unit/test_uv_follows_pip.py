"""tests/uv.sh gives uv the package sources pip is configured with, so the virtualenvs it builds get what pip would
have installed, from the same places (a machine's local wheel mirror included)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.any_python

ROOT = Path(__file__).resolve().parents[2]


def uv_args(tmp_path, config_text, **env):
    config = tmp_path / "pip.conf"
    config.write_text(config_text)
    clean = {key: value for key, value in os.environ.items() if not key.startswith(("PIP_", "SSL_CERT_FILE"))}
    script = 'source tests/uv.sh; uv_follow_pip "$1"; printf "%s\\n" "${UV_PIP_ARGS[@]}"; echo "--"; ' \
             'printf "%s\\n" "${UV_INDEX_ARGS[@]}"; echo "cert=${SSL_CERT_FILE:-}"'
    shown = subprocess.run(["bash", "-c", script, "uv-args", sys.executable], cwd=ROOT, capture_output=True,
                           text=True, check=True, env={**clean, "PIP_CONFIG_FILE": str(config), **env})
    pip_args, rest = shown.stdout.split("--\n")
    index_args, cert = rest.rsplit("cert=", 1)
    return pip_args.split(), index_args.split(), cert.strip()


def pairs(args, option):
    return [args[i + 1] for i, arg in enumerate(args) if arg == option]


def test_pips_indexes_links_constraints_and_certificate_reach_uv(tmp_path):
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("torch<=2.14.1\n")
    pip_args, index_args, cert = uv_args(
        tmp_path,
        "[global]\nindex-url = https://mirror.example/simple\n"
        "extra-index-url = file:///srv/one/simple file:///srv/two/simple\n"
        "constraint = %s\ncert = /etc/ssl/certs/example.pem\n" % constraints,
        PIP_FIND_LINKS="/srv/wheels")
    assert pairs(pip_args, "--index-url") == ["https://mirror.example/simple"]
    assert {"file:///srv/one/simple", "file:///srv/two/simple"} <= set(pairs(pip_args, "--extra-index-url"))
    assert "/srv/wheels" in pairs(pip_args, "--find-links")
    assert str(constraints) in pairs(pip_args, "--constraint")
    # pip considers every index for every package; uv does when told so.
    assert pairs(pip_args, "--index-strategy") == ["unsafe-best-match"]
    assert cert == "/etc/ssl/certs/example.pem"
    # uv venv takes the sources (for the pip it seeds) but no constraints.
    assert "--constraint" not in index_args
    assert pairs(index_args, "--index-url") == ["https://mirror.example/simple"]


def test_without_pip_configuration_uv_keeps_its_defaults(tmp_path):
    pip_args, index_args, cert = uv_args(tmp_path, "", PIP_CONFIG_FILE=os.devnull)
    assert pip_args == index_args == ["--index-strategy", "unsafe-best-match"]
    assert cert == ""
