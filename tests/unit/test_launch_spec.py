"""The launch spec: every shipped profile, 1/2/4-node layouts, flag syntax per SGLang version, and refusals."""

import copy
import json
import shlex
import subprocess

import pytest

from ansible_collections.datacrunch.sglang.plugins.module_utils.launch.options import LaunchRequest
from ansible_collections.datacrunch.sglang.plugins.module_utils.launch.spec import (
    LABEL_COLLECTION_VERSION,
    LABEL_SPEC_HASH,
    LaunchSpecError,
    Node,
    build_launch_spec,
    docker_run_command,
)
from ansible_collections.datacrunch.sglang.plugins.module_utils.plan.profiles import (
    load_profile_files,
    resolve_profile,
    shipped_profiles_dir,
)

SHIPPED = load_profile_files(shipped_profiles_dir())
GPU = {"gpus": 8, "gpu_model": "NVIDIA H200", "interface": "eth1"}


def profile(name, **extra_profiles):
    return resolve_profile(name, SHIPPED, extra_profiles)


def nodes(count, gpus=8, base="10.0.0.", ranks=None):
    return [
        Node(
            name="gpu-%d" % index,
            private_ip="%s%d" % (base, 10 + index),
            gpus=gpus,
            gpu_model="NVIDIA H200",
            interface="eth1",
            rank=None if ranks is None else ranks[index],
        )
        for index in range(count)
    ]


def request(name="deepseek-r1", count=1, host="gpu-0", **overrides):
    prof = overrides.pop("profile_data", None) or profile(name)
    members = overrides.pop("nodes", None) or nodes(count)
    defaults = {"cluster": "unit-a" if len(members) > 1 else ""}
    defaults.update(overrides)
    return LaunchRequest(profile=prof, host=host, nodes=members, **defaults)


def flag_value(argv, flag):
    index = argv.index(flag)
    return argv[index + 1]


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_every_shipped_profile_builds(name):
    prof = profile(name)
    count = prof["nodes"]
    spec = build_launch_spec(request(name, count=count, profile_data=prof))
    argv = spec["command"]
    assert argv[:3] == ["python3", "-m", "sglang.launch_server"]
    assert flag_value(argv, "--model-path") == prof["model"]
    assert flag_value(argv, "--tp-size") == str(prof["tp"])
    assert spec["nnodes"] == count
    assert spec["labels"]["datacrunch.sglang.profile"] == name
    assert spec["spec_hash"] == spec["labels"][LABEL_SPEC_HASH]
    # Every flag appears once.
    options = [word for word in argv if word.startswith("--")]
    assert len(options) == len(set(options))


def test_seed_launch_in_pinned_version_syntax():
    spec = build_launch_spec(request("deepseek-r1"))
    argv = spec["command"]
    assert spec["image"] == "lmsysorg/sglang:v0.5.18"
    assert spec["sglang_version"] == "0.5.18"
    assert "--trust-remote-code" in argv
    assert "--enable-dp-attention" in argv
    assert flag_value(argv, "--dp-size") == "8"
    assert "--attn-dp-size" not in argv
    assert flag_value(argv, "--revision") == "56d4cbbb4d29f4355bab4b9a39ccb717a14ad5ad"
    # Bound to the host's private address, where the firewall lets clients in.
    assert flag_value(argv, "--host") == "10.0.0.10"
    assert spec["readiness"]["base_url"] == "http://10.0.0.10:30000"
    assert flag_value(argv, "--port") == "30000"
    assert "--enable-metrics" in argv
    assert spec["restart_policy"] == "unless-stopped"
    assert spec["gpus"] == "all"
    assert spec["network_mode"] == "host" and spec["ipc_mode"] == "host"
    assert spec["shm_size"] == "32g"
    assert {"name": "memlock", "soft": -1, "hard": -1} in spec["ulimits"]
    assert spec["log_config"]["config"] == {"max-size": "100m", "max-file": "5"}


def test_bind_address_private_when_known_else_every_interface():
    assert build_launch_spec(request(bind_host="0.0.0.0"))["readiness"]["base_url"] == "http://127.0.0.1:30000"
    public_only = [Node("gpu-0", private_ip=None, gpus=8, gpu_model="NVIDIA H200")]
    spec = build_launch_spec(request(nodes=public_only))
    assert flag_value(spec["command"], "--host") == "0.0.0.0"
    planned = build_launch_spec(request(nodes=[Node("gpu-0")], plan=True))
    assert flag_value(planned["command"], "--host") == "<private address (else 0.0.0.0) of gpu-0>"


def test_newer_version_renders_attn_dp_size():
    spec = build_launch_spec(request("deepseek-r1", image="lmsysorg/sglang:v0.5.23-cu130"))
    argv = spec["command"]
    assert spec["sglang_version"] == "0.5.23"
    assert flag_value(argv, "--attn-dp-size") == "8"
    assert "--enable-dp-attention" not in argv


@pytest.mark.parametrize("image", ["lmsysorg/sglang:v0.5.18", "lmsysorg/sglang:v0.5.23"])
def test_mtp_profile_has_no_dp_attention_and_no_removed_spec_env(image):
    spec = build_launch_spec(request("deepseek-r1-mtp", image=image))
    argv = spec["command"]
    assert "--enable-dp-attention" not in argv
    assert "--attn-dp-size" not in argv
    assert flag_value(argv, "--speculative-algorithm") == "EAGLE"
    assert flag_value(argv, "--speculative-num-draft-tokens") == "4"
    # 0.5.18 warns that SGLANG_ENABLE_SPEC_V2 was removed; 0.5.23 never reads it.
    assert "SGLANG_ENABLE_SPEC_V2" not in spec["env"]


@pytest.mark.parametrize("version", ["0.5.18", "0.5.23"])
def test_dp_attention_renders_metrics_for_all_schedulers(version):
    image = "lmsysorg/sglang:v%s" % version
    with_dpa = build_launch_spec(request("deepseek-r1", image=image))["command"]
    assert "--enable-metrics" in with_dpa
    assert "--enable-metrics-for-all-schedulers" in with_dpa
    without_dpa = build_launch_spec(request("deepseek-r1-mtp", image=image))["command"]
    assert "--enable-metrics" in without_dpa
    assert "--enable-metrics-for-all-schedulers" not in without_dpa
    no_metrics = build_launch_spec(request("deepseek-r1", image=image, enable_metrics=False))["command"]
    assert "--enable-metrics-for-all-schedulers" not in no_metrics
    with pytest.raises(LaunchSpecError, match="metrics follow sglang_server_enable_metrics"):
        build_launch_spec(request(image=image, user_args={"enable-metrics-for-all-schedulers": True}))


@pytest.mark.parametrize("version", ["0.5.18", "0.5.23"])
def test_throughput_profile_renders_the_published_h200_settings(version):
    spec = build_launch_spec(request("deepseek-r1-throughput", image="lmsysorg/sglang:v%s" % version))
    argv = spec["command"]
    expected = {
        "--tp-size": "8",
        "--max-running-requests": "256",
        "--cuda-graph-max-bs-decode": "256",
        "--chunked-prefill-size": "32768",
        "--max-prefill-tokens": "32768",
        "--mem-fraction-static": "0.82",
        "--attention-backend": "flashinfer",
        "--stream-interval": "10",
    }
    assert {flag: flag_value(argv, flag) for flag in expected} == expected
    assert "--disable-radix-cache" in argv
    assert "--enable-dp-attention" not in argv and "--attn-dp-size" not in argv
    assert "--cuda-graph-max-bs" not in argv  # deprecated in 0.5.18, gone (an ambiguous prefix) in 0.5.23


def test_secrets_are_files_not_argv_or_env():
    spec = build_launch_spec(request(hf_token=True))
    argv = spec["command"]
    assert flag_value(argv, "--config") == "/run/datacrunch-sglang/server-config.yaml"
    assert "--api-key" not in argv
    assert spec["env"]["HF_TOKEN_PATH"] == "/run/datacrunch-sglang/hf_token"
    assert "HF_TOKEN" not in spec["env"]
    secrets_mount = [m for m in spec["mounts"] if m["target"] == "/run/datacrunch-sglang"]
    assert secrets_mount == [
        {
            "source": "/etc/datacrunch-sglang/sglang-server/secrets",
            "target": "/run/datacrunch-sglang",
            "read_only": True,
        }
    ]
    assert spec["secret_files"] == {"server-config.yaml": "api_key", "hf_token": "hf_token"}


def test_no_api_key_means_no_config_flag():
    spec = build_launch_spec(request(api_key=False))
    assert "--config" not in spec["command"]
    assert not [m for m in spec["mounts"] if m["target"] == "/run/datacrunch-sglang"]


def test_prefetched_snapshot_runs_offline_on_its_commit():
    snapshot = {"repo": "deepseek-ai/DeepSeek-R1", "commit": "a" * 40, "complete": True}
    spec = build_launch_spec(request(snapshot=snapshot, hf_endpoint="http://mirror:8090"))
    assert spec["env"]["HF_HUB_OFFLINE"] == "1"
    assert "HF_ENDPOINT" not in spec["env"]
    assert flag_value(spec["command"], "--revision") == "a" * 40
    assert spec["offline"] is True


def test_incomplete_snapshot_downloads_through_the_endpoint():
    snapshot = {"repo": "deepseek-ai/DeepSeek-R1", "commit": "a" * 40, "complete": False}
    spec = build_launch_spec(request(snapshot=snapshot, hf_endpoint="http://mirror:8090"))
    assert "HF_HUB_OFFLINE" not in spec["env"]
    assert spec["env"]["HF_ENDPOINT"] == "http://mirror:8090"


def test_snapshot_of_another_model_is_refused():
    snapshot = {"repo": "other/model", "commit": "a" * 40, "complete": True}
    with pytest.raises(LaunchSpecError, match="sglang_model_snapshot is for other/model"):
        build_launch_spec(request(snapshot=snapshot))


def test_caches_are_keyed_by_image_gpu_and_layout():
    base = build_launch_spec(request())
    cache_mount = next(m for m in base["mounts"] if m["target"] == "/var/cache/sglang")
    assert cache_mount["source"].startswith("/var/cache/datacrunch-sglang/v0.5.18-nvidia-h200-tp8-dpa8-nn1-")
    for key in ("SGLANG_DG_CACHE_DIR", "TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR", "CUDA_CACHE_PATH",
                "FLASHINFER_WORKSPACE_BASE", "SGLANG_CACHE_DIR", "SGLANG_JIT_CACHE_DIR"):
        assert base["env"][key].startswith("/var/cache/sglang/")
    other_image = build_launch_spec(request(image="lmsysorg/sglang:v0.5.23"))
    other_layout = build_launch_spec(request("deepseek-r1-mtp"))
    h100 = Node("gpu-0", private_ip="10.0.0.10", gpus=8, gpu_model="NVIDIA H100")
    other_gpu = build_launch_spec(request(nodes=[h100]))
    sources = {spec["host_dirs"]["cache"] for spec in (base, other_image, other_layout, other_gpu)}
    assert len(sources) == 4


def test_spec_hash_is_stable_and_ignores_the_collection_version():
    first = build_launch_spec(request(collection_version="0.1.0"))
    again = build_launch_spec(request(collection_version="0.2.0"))
    assert first["spec_hash"] == again["spec_hash"]
    assert again["labels"][LABEL_COLLECTION_VERSION] == "0.2.0"
    changed = build_launch_spec(request(user_args={"mem-fraction-static": 0.85}))
    assert changed["spec_hash"] != first["spec_hash"]


def test_user_flags_override_profile_flags_and_can_remove_them():
    spec = build_launch_spec(request(user_args={"reasoning-parser": None, "kv-cache-dtype": "fp8_e4m3",
                                                "trust-remote-code": False}))
    argv = spec["command"]
    assert "--reasoning-parser" not in argv
    assert "--trust-remote-code" not in argv
    assert flag_value(argv, "--kv-cache-dtype") == "fp8_e4m3"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"tp": 16}, r"sglang_server_args\['tp'\] conflicts .* profile's tp"),
        ({"--port": 8000}, r"conflicts .* sglang_port"),
        ({"model": "x/y"}, r"conflicts .* sglang_model"),
        ({"api-key": "k"}, r"conflicts .* sglang_api_key"),
        ({"dist-init-addr": "1.2.3.4:5"}, r"conflicts .* rendezvous"),
        ({"no-such-flag": 1}, r"SGLang 0.5.18 has no flag --no-such-flag"),
        ({"trust-remote-code": "yes"}, r"is a switch"),
        ({"mem-fraction-static": True}, r"takes a value"),
        ({"kv-cache-dtype": "fp3"}, r"is not one of"),
        ({"max-running-requests": "many"}, r"takes an integer"),
        ({"cuda-graph-max-bs": 8}, r"deprecated in SGLang 0.5.18"),
        ({"enable": True}, r"ambiguous option"),
    ],
)
def test_bad_user_flags_are_refused_with_the_variable_named(args, message):
    with pytest.raises(LaunchSpecError, match=message):
        build_launch_spec(request(user_args=args))


def test_every_bad_user_flag_is_refused_in_one_message():
    args = {"tp": 4, "enable-teleport": True, "kv-cache-dtype": "fp3", "mem-fraction-static": True,
            "context-length": 4096}
    with pytest.raises(LaunchSpecError) as refused:
        build_launch_spec(request(user_args=args))
    message = str(refused.value)
    assert message.startswith("4 SGLang flags refused:\n- ")
    lines = message.splitlines()[1:]
    assert len(lines) == 4
    assert "sglang_server_args['tp'] conflicts with a flag the launch renders itself" in lines[0]
    assert "SGLang 0.5.18 has no flag --enable-teleport" in lines[1]
    assert "--kv-cache-dtype='fp3' is not one of SGLang 0.5.18's choices" in lines[2]
    assert "--mem-fraction-static takes a value in SGLang 0.5.18" in lines[3]
    assert "context-length" not in message


def test_deprecated_flag_refused_unless_allowed():
    newer = "lmsysorg/sglang:v0.5.23"
    with pytest.raises(LaunchSpecError, match=r"deprecated in SGLang 0\.5\.23"):
        build_launch_spec(request("deepseek-r1-mtp", image=newer, user_args={"disable-cuda-graph": True}))
    spec = build_launch_spec(request("deepseek-r1-mtp", image=newer, user_args={"disable-cuda-graph": True},
                                     allow_deprecated_flags=True))
    assert "--disable-cuda-graph" in spec["command"]


def test_profile_flag_unknown_to_the_version_names_the_profile():
    prof = profile("bad", bad={"extends": "deepseek-r1", "sglang_args": {"enable-teleport": True}})
    with pytest.raises(LaunchSpecError, match=r"profile bad sglang_args\['enable-teleport'\]"):
        build_launch_spec(request(profile_data=prof))


@pytest.mark.parametrize(
    ("image", "version", "message"),
    [
        ("lmsysorg/SGLang:v0.5.18", "", "not a well-formed image reference"),
        ("lmsysorg/sglang:latest", "", "does not name an SGLang version"),
        ("lmsysorg/sglang:v0.3.0", "", "SGLang 0.3.0, which this collection has no flag data for"),
        ("lmsysorg/sglang@sha256:" + "0" * 64, "", "does not name an SGLang version"),
    ],
)
def test_bad_images_are_refused(image, version, message):
    with pytest.raises(LaunchSpecError, match=message):
        build_launch_spec(request(image=image, image_version=version))


def test_digest_pinned_image_with_explicit_version():
    image = "lmsysorg/sglang:v0.5.18@sha256:" + "1" * 64
    spec = build_launch_spec(request(image=image))
    assert spec["image"] == image
    digest_only = "registry.example:5000/ml/sglang@sha256:" + "2" * 64
    spec = build_launch_spec(request(image=digest_only, image_version="0.5.23"))
    assert spec["sglang_version"] == "0.5.23"


@pytest.mark.parametrize("name", ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "OPENAI_API_KEY", "AWS_SECRET_ACCESS_KEY",
                                  "DB_PASSWORD", "GCP_CREDENTIALS"])
def test_secret_env_names_are_refused(name):
    with pytest.raises(LaunchSpecError, match="secrets never go into the container environment"):
        build_launch_spec(request(user_env={name: "x"}))
    assert build_launch_spec(request(user_env={"NCCL_DEBUG": "INFO"}))["env"]["NCCL_DEBUG"] == "INFO"


@pytest.mark.parametrize("version", ["0.5.18", "0.5.23"])
def test_sglang_jit_cache_lives_in_the_persistent_cache_mount(version):
    # SGLang's JIT kernels build under SGLANG_JIT_CACHE_DIR, else ~/.cache/sglang/jit in the container's own
    # filesystem, lost with the container; SGLANG_CACHE_DIR does not move it.
    spec = build_launch_spec(request(image="lmsysorg/sglang:v%s" % version))
    jit = spec["env"]["SGLANG_JIT_CACHE_DIR"]
    mounted = [m for m in spec["mounts"] if jit == m["target"] or jit.startswith(m["target"].rstrip("/") + "/")]
    assert mounted and mounted[0]["source"] == spec["host_dirs"]["cache"] and not mounted[0]["read_only"]
    assert not jit.startswith(spec["env"]["SGLANG_CACHE_DIR"] + "/")  # a directory of its own


@pytest.mark.parametrize("version", ["0.5.18", "0.5.23"])
@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SGLANG_ENABLE_SPEC_V2": "1"}, r"SGLANG_ENABLE_SPEC_V2.*(has been removed|reads no variable of that name)"),
        ({"SGLANG_ENABLE_JIT_DEEPGEM": "0"}, r"nearest known: SGLANG_ENABLE_JIT_DEEPGEMM"),
        ({"GITHUB_TOKEN": "x"}, "secrets never go into the container environment"),
        ({"SGLANG_S3_SECRET_ACCESS_KEY": "x"}, "secrets never go into the container environment"),
        ({"BAD NAME": "x"}, "is not an environment variable name"),
    ],
)
def test_one_env_rule_for_the_server_env_and_the_profile_env(version, env, message):
    image = "lmsysorg/sglang:v%s" % version
    with pytest.raises(LaunchSpecError, match=r"sglang_server_env\[.*" + message):
        build_launch_spec(request(image=image, user_env=env))
    custom = profile("custom", custom={"extends": "deepseek-r1", "env": env})
    with pytest.raises(LaunchSpecError, match=r"profile custom env\[.*" + message):
        build_launch_spec(request(image=image, profile_data=custom))


@pytest.mark.parametrize("version", ["0.5.18", "0.5.23"])
def test_sglang_tuning_variables_pass_the_env_rule(version):
    # SGLang's own knobs, including those whose names hold TOKEN as a unit or a count.
    env = {"SGLANG_ENABLE_JIT_DEEPGEMM": "0", "SGLANG_USE_AITER_FP8_PER_TOKEN": "0", "SGLANG_HOST_IP": "10.0.0.1",
           "NCCL_DEBUG": "INFO", "MAX_NEW_TOKENS": "8"}
    spec = build_launch_spec(request(image="lmsysorg/sglang:v%s" % version, user_env=env))
    assert {key: spec["env"][key] for key in env} == env
    # A name the image reads beyond its version's: listed in sglang_server_env_names_extra.
    extra = {"SGLANG_PATCHED_KNOB": "1"}
    with pytest.raises(LaunchSpecError, match="sglang_server_env_names_extra"):
        build_launch_spec(request(image="lmsysorg/sglang:v%s" % version, user_env=extra))
    spec = build_launch_spec(request(image="lmsysorg/sglang:v%s" % version, user_env=extra,
                                     env_names_extra=["SGLANG_PATCHED_KNOB"]))
    assert spec["env"]["SGLANG_PATCHED_KNOB"] == "1"
    with pytest.raises(LaunchSpecError, match="secrets never go"):
        build_launch_spec(request(image="lmsysorg/sglang:v%s" % version, user_env={"SGLANG_X_API_KEY": "k"},
                                  env_names_extra=["SGLANG_X_API_KEY"]))


@pytest.mark.parametrize("version", ["0.5.18", "0.5.23"])
def test_sglang_variables_the_spec_sets_are_read_by_that_version(version):
    from ansible_collections.datacrunch.sglang.plugins.module_utils.launch.cli_flags import SGLANG_ENV_NAMES

    spec = build_launch_spec(request("deepseek-r1-tp16", count=2, image="lmsysorg/sglang:v%s" % version))
    rendered = sorted(name for name in spec["env"] if name.startswith("SGLANG_"))
    assert "SGLANG_HOST_IP" in rendered and "SGLANG_JIT_CACHE_DIR" in rendered
    assert [name for name in rendered if name not in SGLANG_ENV_NAMES[version]] == []


def test_endpoint_with_credentials_is_refused():
    with pytest.raises(LaunchSpecError, match="sglang_hf_endpoint carries credentials"):
        build_launch_spec(request(hf_endpoint="https://user:hf_secret@mirror.example"))


def test_gpu_count_below_the_profile_is_refused():
    with pytest.raises(LaunchSpecError, match=r"needs 8 GPUs per node .* but gpu-0 has 4 GPUs"):
        build_launch_spec(request(nodes=nodes(1, gpus=4)))


# --- multi-node ------------------------------------------------------------------------------------------------


def unit_profile(count):
    return profile("unit", unit={"extends": "deepseek-r1-tp16", "nodes": count, "tp": 8 * count})


@pytest.mark.parametrize("count", [1, 2, 4])
def test_layouts_of_one_two_and_four_nodes(count):
    prof = unit_profile(count)
    members = nodes(count)
    specs = [build_launch_spec(request(profile_data=prof, nodes=members, host=node.name,
                                       cluster="unit-a" if count > 1 else "")) for node in members]
    assert [spec["rank"] for spec in specs] == list(range(count))
    for spec in specs:
        argv = spec["command"]
        assert flag_value(argv, "--tp-size") == str(8 * count)
        if count == 1:
            assert "--nnodes" not in argv
            assert spec["restart_policy"] == "unless-stopped"
            continue
        assert flag_value(argv, "--nnodes") == str(count)
        assert flag_value(argv, "--node-rank") == str(spec["rank"])
        assert flag_value(argv, "--dist-init-addr") == "10.0.0.10:50000"
        assert spec["restart_policy"] == "no"
        assert spec["env"]["NCCL_SOCKET_IFNAME"] == "eth1"
        assert spec["env"]["GLOO_SOCKET_IFNAME"] == "eth1"
        assert spec["env"]["SGLANG_HOST_IP"] == "10.0.0.%d" % (10 + spec["rank"])
        assert spec["readiness"]["kind"] == ("http" if spec["rank"] == 0 else "running")
        assert spec["labels"]["datacrunch.sglang.rank"] == str(spec["rank"])
        assert spec["labels"]["datacrunch.sglang.cluster"] == "unit-a"
    if count > 1:
        # Same command on every rank but for the rank and the rank's own bind address.
        stripped = [[w for w in s["command"] if w not in (str(s["rank"]), s["bind_host"])] for s in specs]
        assert all(words == stripped[0] for words in stripped)


def test_ranks_follow_hostnames_unless_set():
    members = [Node("b-host", private_ip="10.0.0.2", gpus=8, interface="eth1"),
               Node("a-host", private_ip="10.0.0.1", gpus=8, interface="eth1")]
    prof = profile("deepseek-r1-tp16")
    spec_a = build_launch_spec(request(profile_data=prof, nodes=copy.deepcopy(members), host="a-host"))
    assert spec_a["rank"] == 0
    assert flag_value(spec_a["command"], "--dist-init-addr") == "10.0.0.1:50000"
    members[0].rank = 0
    spec_a = build_launch_spec(request(profile_data=prof, nodes=copy.deepcopy(members), host="a-host"))
    assert spec_a["rank"] == 1
    assert flag_value(spec_a["command"], "--dist-init-addr") == "10.0.0.2:50000"


@pytest.mark.parametrize(
    ("members", "message"),
    [
        (nodes(3), r"needs 2 node\(s\) .* sglang_cluster='unit-a' has 3 host"),
        (nodes(2, ranks=[1, 1]), r"sglang_node_rank=1 is set on both"),
        (nodes(2, ranks=[0, 2]), r"sglang_node_rank=2 on gpu-1 is out of range"),
        (nodes(2, base="185.22.7."), r"public address"),
        ([Node("gpu-0", private_ip="10.0.0.1", gpus=8, interface="e"),
          Node("gpu-1", private_ip="10.0.0.2", gpus=4, interface="e")], r"different GPU counts"),
    ],
)
def test_inconsistent_layouts_are_refused(members, message):
    with pytest.raises(LaunchSpecError, match=message):
        build_launch_spec(request("deepseek-r1-tp16", nodes=members))


def test_public_rendezvous_allowed_explicitly():
    spec = build_launch_spec(request("deepseek-r1-tp16", nodes=nodes(2, base="185.22.7."),
                                     allow_public_rendezvous=True))
    assert flag_value(spec["command"], "--dist-init-addr") == "185.22.7.10:50000"


def test_multi_node_profile_without_cluster_is_refused():
    with pytest.raises(LaunchSpecError, match="has no sglang_cluster"):
        build_launch_spec(request("deepseek-r1-tp16", nodes=nodes(1), cluster=""))


def test_infiniband_devices_set_nccl_and_pass_the_devices():
    members = nodes(2)
    for node in members:
        node.ib_devices = [{"name": "mlx5_0", "link_layer": "Ethernet"}, {"name": "mlx5_1", "link_layer": "Ethernet"}]
    spec = build_launch_spec(request("deepseek-r1-tp16", nodes=members))
    assert spec["env"]["NCCL_IB_HCA"] == "=mlx5_0,mlx5_1"
    assert spec["env"]["NCCL_IB_GID_INDEX"] == "3"
    assert "NCCL_IB_PKEY" not in spec["env"]
    assert spec["devices"] == ["/dev/infiniband"]
    assert spec["cap_add"] == ["IPC_LOCK"]
    overridden = build_launch_spec(request("deepseek-r1-tp16", nodes=members, nccl_ib_hca="mlx5_0",
                                           nccl_ib_gid_index="1"))
    assert overridden["env"]["NCCL_IB_HCA"] == "mlx5_0"
    assert overridden["env"]["NCCL_IB_GID_INDEX"] == "1"


def test_plan_mode_shows_placeholders_for_what_only_hosts_know():
    members = [Node("gpu-0"), Node("gpu-1")]
    spec = build_launch_spec(request("deepseek-r1-tp16", nodes=members, plan=True))
    assert flag_value(spec["command"], "--dist-init-addr") == "<sglang_private_ip of gpu-0>:50000"
    assert spec["env"]["NCCL_SOCKET_IFNAME"] == "<interface of gpu-0>"
    with pytest.raises(LaunchSpecError, match=r"private address of gpu-0 .* is unknown"):
        build_launch_spec(request("deepseek-r1-tp16", nodes=[Node("gpu-0"), Node("gpu-1")]))


def shell_words(command):
    """The words a real shell makes of a pasted command: bash parses it with `docker` swapped for a printer."""
    assert command.startswith("docker ")
    script = "words() { printf '%s\\0' \"$@\"; }\nwords " + command[len("docker "):] + "\n"
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    return ["docker", *result.stdout.split("\0")[:-1]]


@pytest.mark.parametrize("plan", [False, True])
def test_docker_run_command_pastes_into_a_shell_as_the_spec(plan):
    members = nodes(2)
    if plan:
        members[1] = Node("gpu-1")
    spec = build_launch_spec(request("deepseek-r1-tp16", nodes=members, host="gpu-1", hf_token=True, plan=plan))
    command = docker_run_command(spec)
    lines = command.splitlines()
    assert len(lines) > 20
    assert all(line.endswith(" \\") for line in lines[:-1]), "every line but the last continues"
    words = shell_words(command)
    assert words == shlex.split(command.replace("\\\n", ""))
    assert words[:2] == ["docker", "run"]
    image_at = words.index(spec["image"])
    assert words[image_at + 1:] == spec["command"]
    assert "--gpus" in words and words[words.index("--gpus") + 1] == "all"
    assert "/etc/datacrunch-sglang/sglang-server/secrets:/run/datacrunch-sglang:ro" in words
    env = dict(words[at + 1].split("=", 1) for at, word in enumerate(words[:image_at]) if word == "--env")
    assert env == spec["env"]
    if plan:
        assert env["NCCL_SOCKET_IFNAME"] == "<interface of gpu-1>"
    json.dumps(spec)  # the spec is plain data


@pytest.mark.parametrize("host", ["gpu-0", "gpu-1"])
def test_a_public_rendezvous_address_on_any_rank_is_refused(host):
    members = nodes(2)
    members[1] = Node("gpu-1", private_ip="185.22.7.11", gpus=8, gpu_model="NVIDIA H200", interface="eth1")
    with pytest.raises(LaunchSpecError, match=r"sglang_private_ip=185\.22\.7\.11 on gpu-1 \(rank 1 of "
                                              r"sglang_cluster='unit-a'\) is a public address"):
        build_launch_spec(request("deepseek-r1-tp16", nodes=members, host=host))
    spec = build_launch_spec(request("deepseek-r1-tp16", nodes=members, host=host, allow_public_rendezvous=True))
    assert flag_value(spec["command"], "--dist-init-addr") == "10.0.0.10:50000"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"shm_size": "abc"}, r"sglang_server_shm_size='abc' is not a size Docker understands"),
        ({"log_max_size": "100 MB!"}, r"sglang_server_log_max_size='100 MB!' is not a size Docker understands"),
        ({"bind_host": "999.1.1.1"}, r"sglang_server_bind_host='999.1.1.1' is not an IP address"),
    ],
)
def test_values_docker_or_sglang_would_refuse_after_the_old_server_is_gone(overrides, message):
    with pytest.raises(LaunchSpecError, match=message):
        build_launch_spec(request(**overrides))


@pytest.mark.parametrize("size", ["32g", "32gb", "32G", "512m", "1073741824", "1.5g"])
def test_docker_sizes_pass(size):
    assert build_launch_spec(request(shm_size=size))["shm_size"] == size


def test_weights_on_shared_storage_are_prefetched_with_multithreaded_loading_kept():
    shared = {"complete": True, "commit": "c" * 40, "repo": "deepseek-ai/DeepSeek-R1", "storage": "shared"}
    for image in ("lmsysorg/sglang:v0.5.18", "lmsysorg/sglang:v0.5.23"):
        argv = build_launch_spec(request("deepseek-r1-tp16", count=2, image=image, snapshot=shared))["command"]
        assert "--weight-loader-prefetch-checkpoints" in argv
        assert json.loads(flag_value(argv, "--model-loader-extra-config")) == {"enable_multithread_load": True}
        local = build_launch_spec(request("deepseek-r1-tp16", count=2, image=image,
                                          snapshot=dict(shared, storage="local")))["command"]
        assert "--weight-loader-prefetch-checkpoints" not in local
        assert "--model-loader-extra-config" not in local
    # The user's loader settings are kept; the key is added only where the user left it out.
    argv = build_launch_spec(request("deepseek-r1-tp16", count=2, snapshot=shared,
                                     user_args={"model-loader-extra-config": '{"num_threads": 16}'}))["command"]
    assert json.loads(flag_value(argv, "--model-loader-extra-config")) == {
        "enable_multithread_load": True, "num_threads": 16}
    argv = build_launch_spec(request("deepseek-r1-tp16", count=2, snapshot=shared,
                                     user_args={"model-loader-extra-config": {"enable_multithread_load": False}}))
    assert json.loads(flag_value(argv["command"], "--model-loader-extra-config")) == {"enable_multithread_load": False}
    with pytest.raises(LaunchSpecError, match="is not JSON"):
        build_launch_spec(request("deepseek-r1-tp16", count=2, snapshot=shared,
                                  user_args={"model-loader-extra-config": "{num_threads: 16"}))
