"""The screen output of the checkout's playbooks (plugins/callback/steps.py, set in ansible.cfg): at the default
verbosity no skipped task, no "included:" line, no bare "ok: [host]" line and no role argument check; every change,
message, warning and failure, each under its task's header; a text printed by a task (print_text) under its header.
With -v the output is ansible.builtin.default's. Real ansible-playbook runs on the controller (local connection)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

ROLE_SPEC = """argument_specs:
  main:
    short_description: A role with an argument spec
    options:
      probe_word: {type: str, required: true, description: A word}
"""

ROLE_TASKS = """- name: Say the word
  ansible.builtin.debug:
    msg: "the word is {{ probe_word }}"
"""

INCLUDED = """- name: Set a fact in the included file
  ansible.builtin.set_fact:
    probe_included: true
"""

PLAYBOOK = """- name: Probe the screen output
  hosts: gpu-1
  gather_facts: false
  tasks:
    - name: Set a fact
      ansible.builtin.set_fact:
        probe_fact: 1
    - name: Skip this one
      ansible.builtin.debug:
        msg: never shown
      when: false
    - name: Include a file
      ansible.builtin.include_tasks: included.yml
    - name: Run the role
      ansible.builtin.include_role:
        name: probe
      vars:
        probe_word: hello
    - name: Change something
      ansible.builtin.command: "true"
      changed_when: true
    - name: Print a table
      datacrunch.sglang.print_text:
        text: "col1  col2\\n1     2"
    - name: Loop without anything to read
      ansible.builtin.set_fact:
        probe_item: "{{ item }}"
      loop: [1, 2]
    - name: Loop with a change
      ansible.builtin.command: "true"
      changed_when: item == 2
      loop: [1, 2]
    - name: Warn about something
      datacrunch.sglang.print_text:
        text: something to know
        warning: true
    - name: Warn about nothing
      datacrunch.sglang.print_text:
        text: ""
        warning: true
    - name: Fail on purpose
      ansible.builtin.fail:
        msg: the failure is shown
"""


@pytest.fixture(scope="module")
def play(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("steps")
    (tmp / "roles/probe/meta").mkdir(parents=True)
    (tmp / "roles/probe/tasks").mkdir(parents=True)
    (tmp / "roles/probe/meta/argument_specs.yml").write_text(ROLE_SPEC)
    (tmp / "roles/probe/tasks/main.yml").write_text(ROLE_TASKS)
    (tmp / "included.yml").write_text(INCLUDED)
    (tmp / "play.yml").write_text(PLAYBOOK)
    (tmp / "hosts.yml").write_text(
        "all:\n  hosts:\n    gpu-1:\n      ansible_connection: local\n"
        "      ansible_python_interpreter: " + sys.executable + "\n"
    )

    def run(*args, **env):
        return subprocess.run(
            [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "hosts.yml", "play.yml", *args],
            cwd=tmp, capture_output=True, text=True, check=False,
            env={"ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_COLLECTIONS_PATH": str(ROOT / "collections"),
                 "ANSIBLE_ROLES_PATH": str(tmp / "roles"), "PATH": "/usr/bin:/bin", "ANSIBLE_NOCOLOR": "1",
                 "HOME": str(tmp), **env},
        )  # fmt: skip

    return run


def blocks(stdout):
    """{task name: [lines under its header]}, in the order shown."""
    shown, name = {}, None
    for line in stdout.splitlines():
        header = re.match(r"TASK \[(.*)\] \*+$|(PLAY RECAP) \*+$", line)
        if header:
            name = header.group(1) or header.group(2)
            shown[name] = []
        elif name is not None and line.strip():
            shown[name].append(line)
    return shown


def test_the_default_verbosity_shows_only_what_a_person_reads(play):
    run = play()
    assert run.returncode == 2, run.stdout + run.stderr
    shown = blocks(run.stdout)
    for left_out in (
        "Set a fact",
        "Skip this one",
        "Include a file",
        "Set a fact in the included file",
        "Loop without anything to read",
    ):
        assert left_out not in shown, run.stdout
    assert not [name for name in shown if "Validating arguments" in name], run.stdout
    assert "skipping:" not in run.stdout and "included:" not in run.stdout
    # A bare "ok" line stays only under a task that warned (its warning goes to stderr).
    assert [name for name, lines in shown.items() if "ok: [gpu-1]" in lines] == ["Warn about something"], run.stdout
    said = [line.rstrip() for line in shown["probe : Say the word"]]
    assert said == ["ok: [gpu-1] =>", "    msg: the word is hello"]
    assert shown["Change something"] == ["changed: [gpu-1]"]
    assert shown["Print a table"] == ["col1  col2", "1     2"]
    assert shown["Loop with a change"] == ["changed: [gpu-1] => (item=2)"]
    assert "[WARNING]: something to know" in run.stderr
    assert any(line.startswith("fatal: [gpu-1]: FAILED!") for line in shown["Fail on purpose"])
    assert "the failure is shown" in "\n".join(shown["Fail on purpose"])
    assert "PLAY RECAP" in shown and "gpu-1 " in shown["PLAY RECAP"][0]
    # Every header stands above a line shown under it.
    assert all(shown.values()), run.stdout


def test_verbose_shows_what_the_default_output_shows(play):
    steps, default = play("-v"), play("-v", ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default")
    assert "skipping: [gpu-1]" in steps.stdout and "included:" in steps.stdout

    # The same lines, but for the command's times (delta, start, end).
    def timeless(text):
        return re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+|\d+:\d\d:\d\d\.\d+", "T", text)

    assert timeless(steps.stdout) == timeless(default.stdout)
