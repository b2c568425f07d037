"""Each role is a documented interface: defaults, argument specs and README agree."""

from pathlib import Path

import pytest
import yaml

ROLES = Path(__file__).resolve().parents[2] / "roles"
ROLE_NAMES = sorted(path.name for path in ROLES.iterdir() if (path / "meta" / "main.yml").is_file())


def load(path):
    return yaml.safe_load(path.read_text()) or {}


def test_the_designed_roles_exist():
    assert {"gpu_host", "model_cache", "sglang_server", "sglang_benchmark", "sglang", "host_venv"} <= set(ROLE_NAMES)


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_defaults_match_the_argument_spec(role):
    defaults_file = ROLES / role / "defaults" / "main.yml"
    defaults = load(defaults_file) if defaults_file.is_file() else {}
    spec = load(ROLES / role / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    assert sorted(defaults) == sorted(name for name in spec if name in defaults or "default" in spec[name]), (
        "defaults/main.yml and meta/argument_specs.yml of role %s list different variables" % role
    )
    for name, value in defaults.items():
        assert name in spec, "%s: %s has a default but no argument spec" % (role, name)
        assert spec[name].get("default") == value, "%s: %s defaults to %r but its spec says %r" % (
            role, name, value, spec[name].get("default"))
        assert spec[name].get("description"), "%s: %s is not described" % (role, name)


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_role_variables_are_prefixed(role):
    defaults_file = ROLES / role / "defaults" / "main.yml"
    if not defaults_file.is_file():
        return
    prefix = role + "_" if role != "sglang" else "sglang_"
    for name in load(defaults_file):
        assert name.startswith(prefix), "%s: variable %s lacks the prefix %s" % (role, name, prefix)


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_readme_lists_every_variable(role):
    readme = ROLES / role / "README.md"
    assert readme.is_file(), "role %s has no README.md" % role
    text = readme.read_text()
    spec = load(ROLES / role / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    missing = [name for name in spec if name not in text]
    assert not missing, "README of role %s does not mention %s" % (role, ", ".join(missing))
