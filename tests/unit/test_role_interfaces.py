"""Each role is a documented interface: defaults, argument specs and README agree."""

import re
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.any_python

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


def variable_rows(role):
    """(names, default cell) of each row of the README's variable tables (header `| variable | default | ... |`)."""
    rows = []
    in_table = False
    for line in (ROLES / role / "README.md").read_text().splitlines():
        if not line.startswith("|"):
            in_table = False
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if cells[:2] == ["variable", "default"]:
            in_table = True
        elif in_table and not set(cells[0]) <= set("-: "):
            rows.append((re.findall(r"`([A-Za-z0-9_]+)`", cells[0]), cells[1]))
    return rows


def split_defaults(cell):
    """The cell's comma-separated parts, commas inside backticks or brackets left alone."""
    parts, depth, quoted, current = [], 0, False, ""
    for char in cell:
        if char == "`":
            quoted = not quoted
        elif not quoted and char in "[{(":
            depth += 1
        elif not quoted and char in "]})":
            depth -= 1
        if char == "," and not quoted and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    return [*parts, current.strip()]


def is_template(value):
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def is_shown_literally(value):
    """Scalars, and lists and dicts of scalars: what the tables show as a YAML literal in backticks."""
    scalar = (str, int, float, bool)
    if isinstance(value, list):
        return all(isinstance(item, scalar) and not is_template(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(item, scalar) and not is_template(item) for item in value.values())
    return isinstance(value, scalar) and not is_template(value)


def rendered(value):
    """A default the way the tables show it: `true`, `""`, `32g`, `[]`, `{memlock: -1, stack: 67108864}`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value == "":
        return '""'
    if isinstance(value, (list, dict)):
        return yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10**6).strip()
    return str(value)


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_readme_table_lists_each_variable_once(role):
    spec = load(ROLES / role / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    listed = [name for names, _default in variable_rows(role) for name in names]
    twice = sorted({name for name in listed if listed.count(name) > 1})
    assert not twice, "README of role %s lists %s more than once in its variable table" % (role, ", ".join(twice))
    missing = sorted(set(spec) - set(listed))
    assert not missing, "README of role %s has no table row for %s" % (role, ", ".join(missing))
    unknown = sorted(set(listed) - set(spec))
    assert not unknown, "README of role %s lists %s, which its argument spec lacks" % (role, ", ".join(unknown))


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_readme_table_shows_the_spec_defaults(role):
    """A row shows each default as its literal in backticks (words may follow); words alone only for a template."""
    spec = load(ROLES / role / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    wrong = []
    for names, cell in variable_rows(role):
        parts = split_defaults(cell) if len(names) > 1 else [cell]
        if len(parts) not in (1, len(names)):
            wrong.append("%s: %d defaults for %d variables in %r" % (", ".join(names), len(parts), len(names), cell))
            continue
        for index, name in enumerate(names):
            part = parts[index if len(parts) > 1 else 0]
            default = spec.get(name, {}).get("default")
            if default is None or not is_shown_literally(default):
                # No default, a Jinja template (a computed default, which the table may say in words) or a nested
                # value: nothing literal to compare.
                continue
            if not part.startswith("`%s`" % rendered(default)):
                wrong.append("%s: the table says %r, the spec's default is `%s`" % (name, part, rendered(default)))
    assert not wrong, "README of role %s:\n  %s" % (role, "\n  ".join(wrong))
