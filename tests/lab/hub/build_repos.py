"""Build the lab's Hub repositories as local git repositories that olah serves in offline mode.

Lab test material, not part of the collection. Each repository is a plain (non-bare) git repository under
``MIRRORS/models/<org>/<name>`` whose large files are Git LFS pointers, with the LFS objects stored where git-lfs
keeps them (``.git/lfs/objects/aa/bb/<sha256>``), which is where olah reads them from. The pointers are written
directly in the Git LFS v1 pointer format, so the git-lfs program is not needed.

The weights are real safetensors files (written by the ``safetensors`` library) with a DeepSeek-V3-like layout scaled
down to a few MB: config.json with the DeepSeek-V3 architecture fields, tokenizer files, generation config,
``model.safetensors.index.json`` and ``model-0000N-of-0000M.safetensors`` shards. Content and commit dates are fixed,
so the commit ids are the same on every machine.

Usage: build_repos.py MIRRORS_DIR
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

ORG = "datacrunch-lab"
REPO = "tiny-deepseek-r1"
GATED_REPO = "tiny-deepseek-r1-gated"
SHARDS = 8
LFS_PATTERNS = ("*.safetensors",)

# DeepSeek-V3 architecture fields, scaled down (the real model: hidden 7168, 61 layers, 256 routed experts).
CONFIG = {
    "architectures": ["DeepseekV3ForCausalLM"],
    "model_type": "deepseek_v3",
    "auto_map": {
        "AutoConfig": "configuration_deepseek.DeepseekV3Config",
        "AutoModel": "modeling_deepseek.DeepseekV3Model",
        "AutoModelForCausalLM": "modeling_deepseek.DeepseekV3ForCausalLM",
    },
    "vocab_size": 2048,
    "hidden_size": 128,
    "intermediate_size": 256,
    "moe_intermediate_size": 64,
    "num_hidden_layers": 4,
    "first_k_dense_replace": 1,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "n_shared_experts": 1,
    "n_routed_experts": 8,
    "num_experts_per_tok": 2,
    "n_group": 2,
    "topk_group": 1,
    "routed_scaling_factor": 2.5,
    "scoring_func": "sigmoid",
    "topk_method": "noaux_tc",
    "norm_topk_prob": True,
    "moe_layer_freq": 1,
    "q_lora_rank": 64,
    "kv_lora_rank": 32,
    "qk_nope_head_dim": 16,
    "qk_rope_head_dim": 8,
    "v_head_dim": 16,
    "num_nextn_predict_layers": 1,
    "max_position_embeddings": 4096,
    "rope_theta": 10000,
    "rope_scaling": {
        "type": "yarn",
        "factor": 4,
        "original_max_position_embeddings": 1024,
        "beta_fast": 32,
        "beta_slow": 1,
        "mscale": 1.0,
        "mscale_all_dim": 1.0,
    },
    "rms_norm_eps": 1e-06,
    "hidden_act": "silu",
    "bos_token_id": 0,
    "eos_token_id": 1,
    "tie_word_embeddings": False,
    "torch_dtype": "float16",
    "transformers_version": "4.46.3",
    "use_cache": True,
}

# The remote-code configuration module: the class config.json's auto_map names, every field kept as given.
CONFIGURATION_MODULE = '''"""Configuration of the lab's tiny DeepSeek-V3-like model (random weights)."""

from transformers.configuration_utils import PretrainedConfig


class DeepseekV3Config(PretrainedConfig):
    model_type = "deepseek_v3"
    keys_to_ignore_at_inference = ["past_key_values"]
'''

# DeepSeek's special tokens use FULLWIDTH VERTICAL LINE and LOWER ONE EIGHTH BLOCK characters.
BOS = "<\uff5cbegin\u2581of\u2581sentence\uff5c>"
EOS = "<\uff5cend\u2581of\u2581sentence\uff5c>"

TOKENIZER_CONFIG = {
    "add_bos_token": True, "add_eos_token": False, "bos_token": BOS,
    "eos_token": EOS, "model_max_length": 4096, "tokenizer_class": "LlamaTokenizerFast",
    "legacy": True, "clean_up_tokenization_spaces": False,
}

GIT_ENV = {
    "GIT_AUTHOR_NAME": "datacrunch-sglang lab",
    "GIT_AUTHOR_EMAIL": "lab@datacrunch-sglang.invalid",
    "GIT_COMMITTER_NAME": "datacrunch-sglang lab",
    "GIT_COMMITTER_EMAIL": "lab@datacrunch-sglang.invalid",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


def _tensors(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Tensor names and shapes of a DeepSeek-V3 checkpoint, with the scaled-down sizes of CONFIG."""
    c = CONFIG
    h, heads = c["hidden_size"], c["num_attention_heads"]
    qk_head = c["qk_nope_head_dim"] + c["qk_rope_head_dim"]

    def w(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape, dtype=np.float32).astype(np.float16)

    out = {"model.embed_tokens.weight": w(c["vocab_size"], h)}
    for layer in range(c["num_hidden_layers"] + c["num_nextn_predict_layers"]):
        p = f"model.layers.{layer}"
        out[f"{p}.input_layernorm.weight"] = w(h)
        out[f"{p}.post_attention_layernorm.weight"] = w(h)
        out[f"{p}.self_attn.q_a_proj.weight"] = w(c["q_lora_rank"], h)
        out[f"{p}.self_attn.q_a_layernorm.weight"] = w(c["q_lora_rank"])
        out[f"{p}.self_attn.q_b_proj.weight"] = w(heads * qk_head, c["q_lora_rank"])
        out[f"{p}.self_attn.kv_a_proj_with_mqa.weight"] = w(c["kv_lora_rank"] + c["qk_rope_head_dim"], h)
        out[f"{p}.self_attn.kv_a_layernorm.weight"] = w(c["kv_lora_rank"])
        out[f"{p}.self_attn.kv_b_proj.weight"] = w(
            heads * (c["qk_nope_head_dim"] + c["v_head_dim"]), c["kv_lora_rank"]
        )
        out[f"{p}.self_attn.o_proj.weight"] = w(h, heads * c["v_head_dim"])
        if layer < c["first_k_dense_replace"]:
            inter = c["intermediate_size"]
            out[f"{p}.mlp.gate_proj.weight"] = w(inter, h)
            out[f"{p}.mlp.up_proj.weight"] = w(inter, h)
            out[f"{p}.mlp.down_proj.weight"] = w(h, inter)
            continue
        inter = c["moe_intermediate_size"]
        out[f"{p}.mlp.gate.weight"] = w(c["n_routed_experts"], h)
        out[f"{p}.mlp.gate.e_score_correction_bias"] = w(c["n_routed_experts"])
        for e in range(c["n_routed_experts"]):
            out[f"{p}.mlp.experts.{e}.gate_proj.weight"] = w(inter, h)
            out[f"{p}.mlp.experts.{e}.up_proj.weight"] = w(inter, h)
            out[f"{p}.mlp.experts.{e}.down_proj.weight"] = w(h, inter)
        shared = inter * c["n_shared_experts"]
        out[f"{p}.mlp.shared_experts.gate_proj.weight"] = w(shared, h)
        out[f"{p}.mlp.shared_experts.up_proj.weight"] = w(shared, h)
        out[f"{p}.mlp.shared_experts.down_proj.weight"] = w(h, shared)
    out["model.norm.weight"] = w(h)
    out["lm_head.weight"] = w(c["vocab_size"], h)
    return out


def _tokenizer() -> dict:
    """A valid `tokenizers` JSON: byte-level BPE over a small vocabulary, DeepSeek's special tokens."""
    specials = [BOS, EOS, "<\uff5cUser\uff5c>", "<\uff5cAssistant\uff5c>", "<think>", "</think>"]
    vocab = {tok: i for i, tok in enumerate(specials)}
    for b in range(256):
        vocab.setdefault(f"<0x{b:02X}>", len(vocab))
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {"id": i, "content": tok, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True}
            for i, tok in enumerate(specials)
        ],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": True, "vocab": vocab,
                  "merges": []},
    }


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _write_lfs(repo: Path, rel: str, data_path: Path) -> None:
    """Move data_path into the LFS object store and leave a Git LFS v1 pointer at rel."""
    digest = hashlib.sha256(data_path.read_bytes()).hexdigest()
    size = data_path.stat().st_size
    obj = repo / ".git" / "lfs" / "objects" / digest[:2] / digest[2:4] / digest
    obj.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(data_path), obj)
    pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{digest}\nsize {size}\n"
    (repo / rel).write_text(pointer, encoding="ascii")


def _git(repo: Path, *args: str, date: str | None = None) -> str:
    env = dict(os.environ, **GIT_ENV)
    if date:
        env["GIT_AUTHOR_DATE"] = env["GIT_COMMITTER_DATE"] = date
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, env=env, capture_output=True, text=True
    ).stdout.strip()


def build_model_repo(mirrors: Path, name: str, readme_extra: str = "") -> Path:
    from safetensors.numpy import save_file  # only for the shards (the other files need no more than the stdlib)

    repo = mirrors / "models" / ORG / name
    if repo.exists():
        shutil.rmtree(repo)
    repo.mkdir(parents=True)
    _git(repo, "init", "--quiet", "--initial-branch=main")

    rng = np.random.default_rng(20250120)
    tensors = _tensors(rng)
    names = sorted(tensors)
    # Split the tensors over the shards the way DeepSeek's checkpoint does: consecutive names per shard.
    per_shard = -(-len(names) // SHARDS)
    weight_map: dict[str, str] = {}
    total = 0
    staging = repo / ".git" / "lab-staging"
    staging.mkdir()
    for i in range(SHARDS):
        shard = f"model-{i + 1:05d}-of-{SHARDS:05d}.safetensors"
        part = {n: tensors[n] for n in names[i * per_shard:(i + 1) * per_shard]}
        weight_map.update(dict.fromkeys(part, shard))
        total += sum(t.nbytes for t in part.values())
        save_file(part, str(staging / shard), metadata={"format": "pt"})
        _write_lfs(repo, shard, staging / shard)
    staging.rmdir()

    (repo / ".gitattributes").write_text(
        "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in LFS_PATTERNS), encoding="ascii"
    )
    _write_json(repo / "config.json", CONFIG)
    generation = {"bos_token_id": 0, "eos_token_id": 1, "do_sample": True, "temperature": 0.6, "top_p": 0.95}
    _write_json(repo / "generation_config.json", generation)
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    _write_json(repo / "model.safetensors.index.json", index)
    _write_json(repo / "tokenizer.json", _tokenizer())
    _write_json(repo / "tokenizer_config.json", TOKENIZER_CONFIG)
    # config.json's auto_map sends AutoConfig here whenever the server runs with --trust-remote-code (the shipped
    # profiles do): transformers imports this module and takes DeepseekV3Config from it, so it must define that
    # class, as DeepSeek-R1's own configuration_deepseek.py does.
    (repo / "configuration_deepseek.py").write_text(CONFIGURATION_MODULE, encoding="utf-8")
    readme = (
        "---\nlicense: mit\nlibrary_name: transformers\n---\n"
        f"# {ORG}/{name}\n\nA tiny model with DeepSeek-R1's repository layout, for the datacrunch.sglang lab "
        f"(a simulation: these weights are random).\n{readme_extra}"
    )
    (repo / "README.md").write_text(readme, encoding="utf-8")
    _git(repo, "add", "-A")
    _git(repo, "commit", "--quiet", "-m", "Tiny DeepSeek-like checkpoint", date="2025-01-20T12:00:00+00:00")
    _git(repo, "tag", "v1")

    # A second commit on main, so that a branch, a tag and a commit id resolve to different snapshots.
    (repo / "README.md").write_text(readme + "\nRevision 2: README only.\n", encoding="utf-8")
    _git(repo, "commit", "--quiet", "-am", "Update README", date="2025-01-21T12:00:00+00:00")
    return repo


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    mirrors = Path(argv[1])
    for name, extra in ((REPO, ""), (GATED_REPO, "\nGated: a token with access is needed.\n")):
        repo = build_model_repo(mirrors, name, extra)
        print(f"{ORG}/{name}: main={_git(repo, 'rev-parse', 'main')} v1={_git(repo, 'rev-parse', 'v1')}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
