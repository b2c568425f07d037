"""The deploy's closing lines (roles/sglang_server/tasks/summary.yml), as a person reads them: plain lines whatever
the result format, the endpoint, and the smoke request shown as a question and the server's reply."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PLAYBOOK = """
- hosts: gpu-1
  gather_facts: false
  vars:
    sglang_server_rank0_host: gpu-1
    sglang_plan: {cluster: ""}
    sglang_profile: lab-tiny
    sglang_api_key: ""
    sglang_server_api_key_file: /root/.config/datacrunch-sglang/api-keys/lab-25e61b01
    sglang_server_public_endpoint: http://10.211.4.11:30000
    sglang_launch_spec: {model: datacrunch-lab/tiny-deepseek-r1, revision: 3708d8ea286d0c3779da69819147dd2b2c171273,
                         image: "localhost/sglang-standin:v0.5.18", nnodes: 1}
    __sglang_server_round:
      seconds_to_ready: 12.6
      smoke: {prompt: "Reply with the single word: ready.", reply: "  <think>\\nOK.\\n</think>\\n\\nready",
              latency_s: 0.25, usage: {completion_tokens: 9}}
  tasks:
    - ansible.builtin.import_tasks: %s
"""


def test_the_summary_prints_the_endpoint_and_the_smoke_reply_as_a_reply(tmp_path):
    (tmp_path / "hosts.yml").write_text("all:\n  hosts:\n    gpu-1:\n      ansible_connection: local\n")
    playbook = tmp_path / "summary.yml"
    playbook.write_text(PLAYBOOK % (ROOT / "roles/sglang_server/tasks/summary.yml"))
    run = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(tmp_path / "hosts.yml"), str(playbook)],
        cwd=tmp_path, capture_output=True, text=True, check=False,
        env={"ANSIBLE_COLLECTIONS_PATH": str(ROOT / "collections"), "PATH": "/usr/bin:/bin", "ANSIBLE_NOCOLOR": "1",
             "HOME": str(tmp_path)},
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    block = run.stdout[run.stdout.index("SGLang serves on"):].splitlines()[:6]
    assert block == [
        "SGLang serves on gpu-1 (single node), ready 12.6 s after its start",
        "  endpoint:   http://10.211.4.11:30000/v1 (OpenAI API)",
        "  model:      datacrunch-lab/tiny-deepseek-r1 at 3708d8ea286d, profile lab-tiny",
        "  image:      localhost/sglang-standin:v0.5.18",
        "  API key:    kept on the controller in /root/.config/datacrunch-sglang/api-keys/lab-25e61b01",
        '  smoke test: asked "Reply with the single word: ready."; the server replied in 0.25 s (9 tokens): '
        '"<think> OK. </think> ready"',
    ]
