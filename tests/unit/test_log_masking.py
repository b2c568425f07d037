"""SGLang logs its arguments at start-up, the API key included: every place the collection reads a container's log
masks the key before it shows anything (failure evidence of a launch, status and logs playbooks).

The log line is SGLang 0.5.18's own start-up line (sglang/srt/entrypoints/engine.py: logger.info(f"{server_args=}")).
"""

from ansible_collections.datacrunch.sglang.plugins.module_utils.launch import container as server_container
from ansible_collections.datacrunch.sglang.plugins.module_utils.launch import status as server_status

KEY = "sk-live-0123456789abcdef"
LOG = (
    "[2026-12-03 12:00:00] server_args=ServerArgs(model_path='deepseek-ai/DeepSeek-R1', tp_size=8, "
    "api_key='%s', host='10.0.0.5', port=30000)\n"
    "[2026-12-03 12:00:01] Init torch distributed begin.\n" % KEY
)


class FakeContainer:
    id = short_id = "c0ffee"
    status = "exited"
    labels = {"datacrunch.sglang.profile": "deepseek-r1"}
    attrs = {"State": {"Status": "exited", "ExitCode": 1, "StartedAt": "2026-12-03T12:00:00Z"}, "Config": {}}

    def logs(self, tail="all", timestamps=False):
        return LOG.encode()


class FakeClient:
    class containers:
        @staticmethod
        def get(name):
            return FakeContainer()

    @staticmethod
    def ping():
        return True


def test_launch_failure_evidence_masks_the_key():
    spec = {"name": "sglang-server", "host_dirs": {"secrets": "/nonexistent"}}
    launcher = server_container.ServerContainer(spec, secrets={"api_key": KEY},
                                                client=FakeClient())
    tail = launcher.logs_tail(FakeContainer())
    assert KEY not in tail
    assert "api_key='********'" in tail and "Init torch distributed begin." in tail


def test_status_logs_mask_the_key(tmp_path):
    status = server_status.server_status("sglang-server", str(tmp_path), api_key=KEY, logs_tail=10,
                                         client=FakeClient())
    assert KEY not in status["logs"]
    assert "api_key='********'" in status["logs"] and status["log_lines"] == 2
