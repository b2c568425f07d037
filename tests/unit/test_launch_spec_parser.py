"""Every rendered command line of every shipped profile, checked by SGLang's own argument parser.

The parser runs in .venv-sglang-parser (tests/sglang_parser/setup.sh builds it): it is the real
sglang.srt.server_args parser of each supported version, with the --config file merged the way SGLang merges it.
"""

import copy
import json
import sys
from pathlib import Path

import pytest

from ansible_collections.datacrunch.sglang.plugins.module_utils.launch.cli_flags import supported_versions
from ansible_collections.datacrunch.sglang.plugins.module_utils.launch.options import LaunchRequest
from ansible_collections.datacrunch.sglang.plugins.module_utils.launch.spec import (
    CONTAINER_SECRETS_DIR,
    SERVER_CONFIG_FILE,
    Node,
    build_launch_spec,
)
from ansible_collections.datacrunch.sglang.plugins.module_utils.plan.profiles import (
    load_profile_files,
    resolve_profile,
    shipped_profiles_dir,
)

PARSER_DIR = Path(__file__).resolve().parents[1] / "sglang_parser"
sys.path.insert(0, str(PARSER_DIR))
from check_argv import check_many  # noqa: E402

# The parser runs in its own virtualenv whatever Python runs this test; the specs it checks are built by the code
# that test_launch_spec.py runs on every Python.
pytestmark = pytest.mark.any_python

SHIPPED = load_profile_files(shipped_profiles_dir())
TEST_KEY = "parser-test-key-0123456789"


def _specs():
    """(label, version, spec) for every shipped profile on every supported version, plus 1/2/4-node layouts."""
    cases = []
    for version in supported_versions():
        image = "lmsysorg/sglang:v%s" % version
        for name in sorted(SHIPPED):
            profile = resolve_profile(name, SHIPPED)
            count = profile["nodes"]
            nodes = [Node("node-%d" % i, private_ip="10.0.0.%d" % (i + 1), gpus=8, gpu_model="NVIDIA H200",
                          interface="eth1") for i in range(count)]
            for node in nodes:
                request = LaunchRequest(profile=profile, host=node.name, nodes=copy.deepcopy(nodes),
                                        cluster="unit" if count > 1 else "", image=image, hf_token=True)
                cases.append(("%s/%s/%s" % (version, name, node.name), version, build_launch_spec(request)))
        for count in (1, 2, 4):
            profile = resolve_profile("unit", SHIPPED, {"unit": {"extends": "deepseek-r1-tp16", "nodes": count,
                                                                 "tp": 8 * count}})
            nodes = [Node("node-%d" % i, private_ip="10.0.0.%d" % (i + 1), gpus=8, interface="eth1")
                     for i in range(count)]
            request = LaunchRequest(profile=profile, host=nodes[-1].name, nodes=nodes,
                                    cluster="unit" if count > 1 else "", image=image)
            cases.append(("%s/%d-nodes" % (version, count), version, build_launch_spec(request)))
        # Weights on a shared filesystem: checkpoint prefetch with multithreaded loading kept explicit.
        profile = resolve_profile("deepseek-r1-tp16", SHIPPED)
        nodes = [Node("node-%d" % i, private_ip="10.0.0.%d" % (i + 1), gpus=8, interface="eth1") for i in range(2)]
        snapshot = {"complete": True, "commit": "c" * 40, "repo": profile["model"], "storage": "shared"}
        request = LaunchRequest(profile=profile, host="node-1", nodes=nodes, cluster="unit", image=image,
                                snapshot=snapshot)
        cases.append(("%s/shared-storage" % version, version, build_launch_spec(request)))
    return cases


CASES = _specs()


@pytest.fixture(scope="module")
def parsed(tmp_path_factory):
    config = tmp_path_factory.mktemp("secrets") / SERVER_CONFIG_FILE
    config.write_text('api-key: "%s"\n' % TEST_KEY)
    container_config = "%s/%s" % (CONTAINER_SECRETS_DIR, SERVER_CONFIG_FILE)
    items = []
    for _label, version, spec in CASES:
        argv = spec["command"][3:]
        argv = [str(config) if word == container_config else word for word in argv]
        items.append({"version": version, "argv": argv})
    return dict(zip([label for label, _version, _spec in CASES], check_many(items), strict=True))


@pytest.mark.parametrize(("label", "version", "spec"), CASES, ids=[label for label, _version, _spec in CASES])
def test_sglang_accepts_the_rendered_command_line(label, version, spec, parsed):
    result = parsed[label]
    assert result["rc"] == 0, "SGLang %s refused %s: %s" % (version, spec["command"], result["stderr"][-2000:])
    args = result["args"]
    assert args["api_key"] == TEST_KEY
    assert args["tp_size"] == int(spec["command"][spec["command"].index("--tp-size") + 1])
    assert args["port"] == 30000
    if spec["nnodes"] > 1:
        assert args["nnodes"] == spec["nnodes"] and args["node_rank"] == spec["rank"]


def test_dp_attention_parses_in_each_versions_syntax(parsed):
    seed_old = parsed["0.5.18/deepseek-r1/node-0"]["args"]
    assert seed_old["enable_dp_attention"] is True and seed_old["dp_size"] == 8
    seed_new = parsed["0.5.23/deepseek-r1/node-0"]["args"]
    assert seed_new["attn_dp_size"] == 8


@pytest.mark.parametrize("version", supported_versions())
def test_shared_storage_prefetches_and_keeps_multithreaded_loading(version, parsed):
    args = parsed["%s/shared-storage" % version]["args"]
    assert args["weight_loader_prefetch_checkpoints"] is True
    # SGLang's loader keeps multithreading on under prefetch only when the key is present in this mapping.
    assert json.loads(args["model_loader_extra_config"]) == {"enable_multithread_load": True}
    local = parsed["%s/deepseek-r1-tp16/node-1" % version]["args"]
    assert local["weight_loader_prefetch_checkpoints"] is False
