"""deploy.yml says, in one warning line, when it is about to take a server back to another image or profile than
the one it runs (after redeploy.yml -e sglang_image=...), and says nothing when they are the same. The task file
deploy.yml runs (playbooks/tasks/warn_going_back.yml), in one real ansible-playbook run on the controller, one host
per case, given the GPU preflight's list of the host's containers and the launch spec."""

import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
RUNNING = {"name": "sglang-server", "image": "lmsysorg/sglang:v0.5.23", "state": "running",
           "labels": {"datacrunch.sglang.profile": "deepseek-r1", "datacrunch.sglang.spec-hash": "abc"}}
CASES = {
    "image-back": ([RUNNING], "lmsysorg/sglang:v0.5.18", "deepseek-r1"),
    "profile-back": ([RUNNING], "lmsysorg/sglang:v0.5.23", "deepseek-r1-mtp"),
    "same": ([RUNNING], "lmsysorg/sglang:v0.5.23", "deepseek-r1"),
    "no-server": ([], "lmsysorg/sglang:v0.5.18", "deepseek-r1"),
    "other-container": ([dict(RUNNING, name="sglang-tls-proxy")], "lmsysorg/sglang:v0.5.18", "deepseek-r1"),
}


def test_a_change_away_from_what_runs_is_one_warning_line_and_nothing_else_is(tmp_path):
    hosts = {
        case: {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
               "gpu_host_facts": {"ours": ours}, "sglang_server_container_name": "sglang-server",
               "sglang_launch_spec": {"image": image, "labels": {"datacrunch.sglang.profile": profile}}}
        for case, (ours, image, profile) in CASES.items()
    }
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump({"all": {"hosts": hosts}}))
    (tmp_path / "play.yml").write_text(
        "- hosts: all\n  gather_facts: false\n  tasks:\n"
        "    - ansible.builtin.import_tasks: %s\n" % (ROOT / "playbooks/tasks/warn_going_back.yml"))
    env = {name: value for name, value in os.environ.items() if not name.startswith("ANSIBLE_")}
    env["ANSIBLE_COLLECTIONS_PATH"] = str(ROOT / "collections")
    run = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "play.yml", "-i", "hosts.yml"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    found = sorted(line for line in (run.stdout + run.stderr).splitlines() if "[WARNING]" in line)
    assert found == [
        "[WARNING]: image-back: sglang-server runs lmsysorg/sglang:v0.5.23 (profile deepseek-r1), and this deploy "
        "replaces it with lmsysorg/sglang:v0.5.18 (profile deepseek-r1) from the inventory's variables; to keep what "
        "runs, set sglang_image / sglang_profile there (README, \"Making a change last\")",
        "[WARNING]: profile-back: sglang-server runs lmsysorg/sglang:v0.5.23 (profile deepseek-r1), and this deploy "
        "replaces it with lmsysorg/sglang:v0.5.23 (profile deepseek-r1-mtp) from the inventory's variables; to keep "
        "what runs, set sglang_image / sglang_profile there (README, \"Making a change last\")",
    ]
