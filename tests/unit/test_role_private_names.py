"""Roles keep their internals private (DESIGN.md, rules of the house): a registered result is named __<role>_*, any
other internal variable (set_fact, task vars) _<role>_*, and no role or playbook reads another role's private names.
What a role publishes on purpose is its argument spec and the output facts listed in PUBLIC_FACTS."""

import re
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.any_python

ROOT = Path(__file__).resolve().parents[2]
ROLES = ROOT / "roles"
ROLE_NAMES = sorted(path.name for path in ROLES.iterdir() if (path / "meta" / "main.yml").is_file())
# Role sglang_tls is kept to these rules by its own owner; here it is only scanned for reads of other roles'
# private names.
NAMED_ROLES = [role for role in ROLE_NAMES if role != "sglang_tls"]

# Output facts a role sets on purpose, with who reads each. Everything else a role sets is private.
PUBLIC_FACTS = {
    "sglang": {
        "sglang_plan": "every role, playbooks/plan.yml, plugins/action/sglang_launch_spec.py",
    },
    "gpu_host": {
        "sglang_gpu": "the launch spec (role sglang_server), role sglang_firewall, playbooks/plan.yml",
        "gpu_host_facts": "the fleet plan (role sglang), playbooks/tasks/converge_host.yml, playbooks/redeploy.yml, "
                          "playbooks/tasks/warn_going_back.yml, role sglang_tls",
    },
    "model_cache": {
        "sglang_model_snapshot": "the launch spec (role sglang_server)",
    },
    "sglang_server": {
        "sglang_launch_spec": "roles sglang_tls and sglang_server (other ranks), the deploy playbooks",
        "sglang_server_docker_run": "playbooks/plan.yml",
        "sglang_server_teardown_summary": "playbooks/teardown.yml",
    },
    "host_venv": {
        "host_venv_ready": "roles sglang_server and sglang_benchmark (skip the role when already run)",
        "ansible_python_interpreter": "Ansible itself: the modules that follow run in the virtualenv",
    },
    "sglang_firewall": {
        "sglang_firewall_unit_members": "documented in the role's README for the user's plays",
    },
}

SET_FACT = ("ansible.builtin.set_fact", "set_fact")
INCLUDE_ROLE = ("ansible.builtin.include_role", "include_role", "ansible.builtin.import_role", "import_role")
# A private name of some role: one or two underscores, then a role name and an underscore.
PRIVATE = re.compile(r"(?<![A-Za-z0-9_])_{1,2}[a-z][a-z0-9_]*")


def load(path):
    return yaml.safe_load(path.read_text()) or {}


def spec_names(role):
    spec = load(ROLES / role / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    return set(spec or {})


def walk(tasks):
    """Every task of a task list, blocks opened."""
    for task in tasks or []:
        if not isinstance(task, dict):
            continue
        yield task
        for part in ("block", "rescue", "always"):
            yield from walk(task.get(part))


def role_tasks(role):
    """(file name, task) of every task and handler of the role."""
    for folder in ("tasks", "handlers"):
        for path in sorted((ROLES / role / folder).glob("*.yml")):
            for task in walk(load(path) if path.stat().st_size else []):
                yield "%s/%s" % (folder, path.name), task


def register_problems(role, tasks):
    prefix = "__%s_" % role
    return ["%s: register %s lacks the prefix %s" % (where, task["register"], prefix)
            for where, task in tasks if "register" in task and not str(task["register"]).startswith(prefix)]


def set_fact_problems(role, tasks, public):
    prefix = "_%s_" % role
    problems = []
    for where, task in tasks:
        for module in SET_FACT:
            for name in task.get(module) or {}:
                if name != "cacheable" and name not in public and not name.startswith(prefix):
                    problems.append("%s: set_fact %s is neither public nor prefixed %s" % (where, name, prefix))
    return problems


def task_vars_problems(role, tasks):
    """Task vars are the role's own, hence private; those of include_role/import_role are the inputs of the role
    included, and ansible_* are Ansible's connection variables."""
    prefix = "_%s_" % role
    problems = []
    for where, task in tasks:
        if any(module in task for module in INCLUDE_ROLE):
            continue
        for name in task.get("vars") or {}:
            if not name.startswith(prefix) and not name.startswith("ansible_"):
                problems.append("%s: task variable %s lacks the prefix %s" % (where, name, prefix))
    return problems


def owner(name):
    """The role whose private name this is (the longest role name that fits: _sglang_server_x is sglang_server's),
    or None."""
    bare = name[2:] if name.startswith("__") else name[1:]
    roles = [role for role in ROLE_NAMES if bare.startswith(role + "_")]
    return max(roles, key=len) if roles else None


def foreign_private_names(reader, text):
    """Private names of roles other than reader (None for a playbook: any role's) that the text mentions."""
    return sorted({name for name in PRIVATE.findall(text) if owner(name) not in (None, reader)})


def text_files(folder):
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix in (".yml", ".yaml", ".j2", ".md", ".py", ".cfg", ".txt", ".json", ""):
            yield path


@pytest.mark.parametrize("role", NAMED_ROLES)
def test_registered_results_are_private(role):
    assert register_problems(role, list(role_tasks(role))) == []


@pytest.mark.parametrize("role", NAMED_ROLES)
def test_facts_are_public_or_private(role):
    public = spec_names(role) | set(PUBLIC_FACTS.get(role, {}))
    assert set_fact_problems(role, list(role_tasks(role)), public) == []


@pytest.mark.parametrize("role", NAMED_ROLES)
def test_task_variables_are_private(role):
    assert task_vars_problems(role, list(role_tasks(role))) == []


def test_public_facts_are_set_by_their_role():
    for role, facts in PUBLIC_FACTS.items():
        set_here = {name for _path, task in role_tasks(role) for module in SET_FACT for name in task.get(module) or {}}
        assert set(facts) <= set_here, "%s no longer sets %s" % (role, ", ".join(sorted(set(facts) - set_here)))


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_roles_do_not_read_other_roles_private_names(role):
    found = {str(path.relative_to(ROOT)): foreign_private_names(role, path.read_text(errors="replace"))
             for path in text_files(ROLES / role)}
    assert {path: names for path, names in found.items() if names} == {}


def test_playbooks_do_not_read_private_names():
    found = {str(path.relative_to(ROOT)): foreign_private_names(None, path.read_text())
             for path in sorted((ROOT / "playbooks").rglob("*.yml"))}
    assert {path: names for path, names in found.items() if names} == {}


# The checks themselves, on small examples that break each rule.
BAD_TASKS = yaml.safe_load("""
- name: A result without the private prefix
  ansible.builtin.command: "true"
  register: demo_result
- name: Blocks are looked into
  block:
    - name: A fact without the private prefix
      ansible.builtin.set_fact:
        demo_internal: 1
        _demo_fine: 2
        demo_public: 3
  rescue:
    - name: A task variable without the private prefix
      ansible.builtin.debug:
        msg: "{{ demo_text }}"
      vars:
        demo_text: x
        _demo_fine: y
        ansible_python_interpreter: /usr/bin/python3
- name: The inputs of an included role are not ours
  ansible.builtin.include_role:
    name: other
  vars:
    other_input: 1
""")


def test_the_checks_find_each_broken_rule(monkeypatch):
    tasks = [("tasks/main.yml", task) for task in walk(BAD_TASKS)]
    assert register_problems("demo", tasks) == ["tasks/main.yml: register demo_result lacks the prefix __demo_"]
    assert set_fact_problems("demo", tasks, {"demo_public"}) == [
        "tasks/main.yml: set_fact demo_internal is neither public nor prefixed _demo_"]
    assert task_vars_problems("demo", tasks) == ["tasks/main.yml: task variable demo_text lacks the prefix _demo_"]
    monkeypatch.setattr(sys.modules[__name__], "ROLE_NAMES", ["sglang", "sglang_server", "gpu_host"])
    text = "{{ __gpu_host_facts.ours }} {{ _sglang_server_x }} {{ __sglang_server_y }} {{ _sglang_z }} {{ __name__ }}"
    assert foreign_private_names("sglang_server", text) == ["__gpu_host_facts", "_sglang_z"]
    assert foreign_private_names("sglang", text) == ["__gpu_host_facts", "__sglang_server_y", "_sglang_server_x"]
    assert foreign_private_names(None, "{{ gpu_host_facts }} {% set _ = 1 %}") == []
