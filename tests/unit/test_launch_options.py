"""The launch options are declared once (module_utils/launch/options.py); every other declaration is held to them.

Held here: the module's DOCUMENTATION (a literal YAML string that ansible-doc reads), the "Build the launch spec"
task of role sglang_server, the role's defaults and argument specs (and those of the shared role sglang for the
sglang_* variables), and the LaunchRequest that build_launch_spec() reads.
"""

import dataclasses
import re
from pathlib import Path

import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.datacrunch.sglang.plugins.module_utils.launch import options
from ansible_collections.datacrunch.sglang.plugins.modules import sglang_launch_spec as module

pytestmark = pytest.mark.any_python

ROOT = Path(__file__).resolve().parents[2]
ROLES = ROOT / "roles"
OPTIONS = options.OPTIONS
FED = [option for option in OPTIONS if option.role_var]


def load(path):
    return yaml.safe_load(path.read_text()) or {}


def role_spec(role):
    return load(ROLES / role / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]


def build_task():
    tasks = load(ROLES / "sglang_server" / "tasks" / "validate.yml")
    (task,) = [task for task in tasks if task.get("name") == "Build the launch spec"]
    return task["datacrunch.sglang.sglang_launch_spec"]


DOC = yaml.safe_load(module.DOCUMENTATION)["options"]


def test_names_are_unique():
    names = [option.name for option in OPTIONS]
    assert len(names) == len(set(names))
    fields = [option.request_field for option in OPTIONS if option.request_field]
    assert len(fields) == len(set(fields))


def test_documentation_has_the_options_of_the_schema():
    assert list(DOC) == [option.name for option in OPTIONS], "DOCUMENTATION and options.OPTIONS list other options"


@pytest.mark.parametrize("option", OPTIONS, ids=lambda option: option.name)
def test_documentation_declares_the_option_as_the_schema(option):
    doc = DOC[option.name]
    assert doc.get("type") == option.type, "%s: documented type %r" % (option.name, doc.get("type"))
    assert doc.get("elements") == option.elements, "%s: documented elements %r" % (option.name, doc.get("elements"))
    assert doc.get("default") == option.default, "%s: documented default %r, schema %r" % (
        option.name, doc.get("default"), option.default)
    assert bool(doc.get("required")) == option.required, "%s: documented required %r" % (
        option.name, doc.get("required"))
    assert doc.get("description"), "%s is not described" % option.name


def test_argument_spec_comes_from_the_schema():
    argument_spec = options.argument_spec()
    assert list(argument_spec) == [option.name for option in OPTIONS]
    assert argument_spec["profile"] == {"type": "dict", "required": True}
    assert argument_spec["env_names_extra"] == {"type": "list", "elements": "str", "default": []}
    assert argument_spec["snapshot"] == {"type": "dict"}
    # Each call hands out its own defaults: a validated value changed in place leaves the next run alone.
    argument_spec["ulimits"]["default"]["memlock"] = 0
    assert options.argument_spec()["ulimits"]["default"] == {"memlock": -1, "stack": 67108864}


def test_request_has_a_field_for_each_option_it_takes():
    fields = {item.name: item for item in dataclasses.fields(options.LaunchRequest)}
    wanted = {option.request_field for option in OPTIONS if option.request_field} | {"host", "nodes", "cluster"}
    assert set(fields) == wanted
    assert fields["user_args"].default_factory() == {}
    assert fields["user_env"].default_factory() == {}
    assert {"cluster", "node_rank", "private_ip", "fleet_plan"}.isdisjoint(
        {option.request_field for option in OPTIONS if option.request_field})


def test_request_defaults_are_the_schema_defaults():
    request = options.LaunchRequest(profile={}, host="h1", nodes=[])
    for option in OPTIONS:
        if option.request_field and not option.required:
            assert getattr(request, option.request_field) == option.default, option.name
    assert request.cluster == ""
    # Mutable defaults are not shared between requests.
    request.ulimits["memlock"] = 0
    assert options.LaunchRequest(profile={}, host="h1", nodes=[]).ulimits["memlock"] == -1


def test_request_is_built_from_validated_arguments():
    given = {"profile": {"name": "p"}, "args": {"mem-fraction-static": 0.8}, "env": {"A": "1"}, "port": 31000,
             "nccl_ib_pkey": " 0x8001 \n", "cluster": "ignored", "node_rank": 1, "fleet_plan": {"members": []}}
    validation = ArgumentSpecValidator(options.argument_spec()).validate(given)
    assert not validation.error_messages
    request = options.launch_request(validation.validated_parameters, host="h1", nodes=["n"], cluster="unit")
    assert (request.host, request.nodes, request.cluster) == ("h1", ["n"], "unit")
    assert request.user_args == {"mem-fraction-static": 0.8}
    assert request.user_env == {"A": "1"}
    assert request.port == 31000
    assert request.nccl_ib_pkey == "0x8001"
    assert request.shm_size == "32g"
    assert request.snapshot is None


def test_build_launch_spec_reads_every_request_field():
    source = (ROOT / "plugins" / "module_utils" / "launch" / "spec.py").read_text()
    unread = [option.name for option in OPTIONS
              if option.request_field and not re.search(r"request\.%s\b" % option.request_field, source)]
    assert not unread, "options that build_launch_spec() never reads: %s" % ", ".join(unread)


def test_the_role_task_passes_only_options_of_the_schema():
    task = build_task()
    unknown = sorted(set(task) - set(options.BY_NAME))
    assert not unknown, "the Build the launch spec task passes options the schema lacks: %s" % ", ".join(unknown)
    required = [option.name for option in OPTIONS if option.required and option.name not in task]
    assert not required, "the Build the launch spec task leaves out %s" % ", ".join(required)


@pytest.mark.parametrize("option", FED, ids=lambda option: option.name)
def test_the_role_task_passes_the_role_variable(option):
    expression = option.role_var + (" | %s" % option.role_filter if option.role_filter else "")
    assert build_task().get(option.name) == "{{ %s }}" % expression, (
        "the Build the launch spec task must pass %s: \"{{ %s }}\"" % (option.name, expression))


def test_options_the_role_computes_are_not_plain_role_variables():
    """A declared role variable passed as is belongs in the schema's role_var."""
    declared = set(role_spec("sglang_server")) | set(role_spec("sglang"))
    task = build_task()
    for option in OPTIONS:
        if option.role_var or option.name not in task:
            continue
        plain = re.fullmatch(r"\{\{\s*(\w+)\s*\}\}", str(task[option.name]))
        assert not (plain and plain.group(1) in declared), (
            "%s is fed by %s: name it as the option's role_var" % (option.name, plain.group(1)))


@pytest.mark.parametrize("option", FED, ids=lambda option: option.name)
def test_the_role_variable_is_declared_as_the_schema(option):
    if option.role_var.startswith("sglang_server_"):
        role = "sglang_server"
        defaults = load(ROLES / role / "defaults" / "main.yml")
        declared = role_spec(role)
        assert option.role_var in declared, "%s: roles/%s does not declare %s" % (option.name, role, option.role_var)
        assert defaults.get(option.role_var) == option.default, "%s: %s defaults to %r, the option to %r" % (
            option.name, option.role_var, defaults.get(option.role_var), option.default)
        assert declared[option.role_var].get("default") == option.default, (
            "%s: the argument spec of %s defaults to %r" % (option.name, option.role_var,
                                                            declared[option.role_var].get("default")))
    else:
        # A shared input: declared (with its own, possibly computed, default) by role sglang, or set in its vars.
        declared = role_spec("sglang")
        shared_vars = load(ROLES / "sglang" / "vars" / "main.yml")
        assert option.role_var in declared or option.role_var in shared_vars, (
            "%s: role sglang neither declares nor sets %s" % (option.name, option.role_var))
        if option.role_var not in declared:
            return
    entry = declared[option.role_var]
    assert entry.get("type") == (option.role_type or option.type), "%s: %s has type %r, the option %r" % (
        option.name, option.role_var, entry.get("type"), option.role_type or option.type)
    assert entry.get("elements") == option.elements, "%s: %s has elements %r" % (
        option.name, option.role_var, entry.get("elements"))
