"""Test stand-in (not SGLang): finding the model the way SGLang (through transformers and huggingface_hub) finds it.

--model-path is a local directory (it must hold config.json), or a Hub repo id looked up in the Hugging Face cache
($HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub) at --revision (a commit, or a ref such as the
default main, read from refs/<ref>). Then, as SGLang's start-up does it (0.5.18 and 0.5.23:
sglang/srt/utils/hf_transformers/config.py get_config, whose "hf" parser reads config.json and calls
AutoConfig.from_pretrained, into which SGLang's own config registry is registered first, and
sglang/srt/utils/hf_transformers/tokenizer.py get_tokenizer, AutoTokenizer.from_pretrained):
- config.json must be there and name a model_type;
- with --trust-remote-code and an auto_map AutoConfig entry "module.Class" (DeepSeek-R1's config.json has one),
  transformers imports module.py from the snapshot and takes Class from it: the file must be there and define it;
- the tokenizer needs tokenizer.json (or a slow tokenizer's tokenizer.model);
- every shard named by model.safetensors.index.json must be there.
The stand-in never downloads: with a file missing it fails as the real server does offline (HF_HUB_OFFLINE=1),
with the exception class the real one raises, and says that it does not download when online.
tests/integration/test_sglang_standin_model.py holds it to SGLang's own get_config and get_tokenizer.
"""

from __future__ import annotations

import ast
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path


class ModelNotFound(Exception):
    """A file is not in the cache: the real server raises OSError (offline) or downloads it (online)."""

    error_class = "OSError"


class ModelFilesInvalid(Exception):
    """The files are there but transformers cannot use them; error_class is the exception it raises."""

    def __init__(self, error_class: str, message: str):
        super().__init__(message)
        self.error_class = error_class


@dataclass
class Model:
    path: Path
    commit: str | None
    config: dict = field(default_factory=dict)
    token_present: bool = False

    @property
    def context_length(self) -> int:
        return int(self.config.get("max_position_embeddings") or 163840)


def hub_cache() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
    return Path(home) / "hub"


def _read_token() -> bool:
    """Read the token file huggingface_hub would read; only whether there is one is kept."""
    path = os.environ.get("HF_TOKEN_PATH")
    if os.environ.get("HF_TOKEN"):
        return True
    if not path:
        return False
    try:
        return bool(Path(path).read_text().strip())
    except OSError:
        return False


def _check_complete(snapshot: Path, name: str) -> dict:
    config_file = snapshot / "config.json"
    if not config_file.is_file():
        raise ModelNotFound(f"{name}: config.json is missing in {snapshot}")
    try:
        config = json.loads(config_file.read_text())
    except (OSError, ValueError) as exc:
        raise ModelNotFound(f"{name}: config.json in {snapshot} is not readable JSON ({exc})") from None
    index = snapshot / "model.safetensors.index.json"
    if index.exists():
        try:
            shards = sorted(set(json.loads(index.read_text()).get("weight_map", {}).values()))
        except (OSError, ValueError) as exc:
            raise ModelNotFound(f"{name}: {index} is not readable JSON ({exc})") from None
        missing = [s for s in shards if not (snapshot / s).is_file()]
        if missing:
            raise ModelNotFound(
                f"{name}: {len(missing)} of {len(shards)} weight shards missing in {snapshot}, e.g. {missing[0]}"
            )
    elif not any(snapshot.glob("*.safetensors")) and not any(snapshot.glob("*.bin")):
        raise ModelNotFound(f"{name}: no weights (*.safetensors) in {snapshot}")
    return config


def _check_config_and_tokenizer(snapshot: Path, name: str, config: dict, trust_remote_code: bool) -> None:
    """What AutoConfig and AutoTokenizer need from the snapshot (see the module docstring)."""
    auto_config = (config.get("auto_map") or {}).get("AutoConfig")
    if trust_remote_code and isinstance(auto_config, str) and "." in auto_config:
        module, class_name = auto_config.rsplit(".", 1)
        module = module.split("--", 1)[-1]  # "repo--module.Class" names code in another repo; only the module counts
        source = snapshot / (module.replace(".", "/") + ".py")
        if not source.is_file():
            raise ModelNotFound(
                f"{name}: {source.name} (auto_map AutoConfig, --trust-remote-code) is missing in {snapshot}"
            )
        try:
            tree = ast.parse(source.read_text(encoding="utf-8"), str(source))
        except (OSError, SyntaxError, ValueError) as exc:
            raise ModelFilesInvalid("SyntaxError", f"{source}: {exc}") from None
        defined = {node.name for node in tree.body if isinstance(node, ast.ClassDef)}
        defined |= {alias.asname or alias.name for node in tree.body if isinstance(node, ast.ImportFrom)
                    for alias in node.names}
        if class_name not in defined:
            raise ModelFilesInvalid("AttributeError", f"module '{module}' has no attribute '{class_name}' ({source})")
    elif not config.get("model_type"):
        raise ModelFilesInvalid(
            "ValueError",
            f"Unrecognized model in {name}. Should have a `model_type` key in its config.json",
        )
    if not (snapshot / "tokenizer.json").is_file() and not (snapshot / "tokenizer.model").is_file():
        raise ModelFilesInvalid(
            "ValueError",
            f"Couldn't instantiate the backend tokenizer from one of: (1) a `tokenizers` library serialization file, "
            f"(2) a slow tokenizer instance to convert or (3) an equivalent slow tokenizer class to instantiate and "
            f"convert ({name}: no tokenizer.json in {snapshot})",
        )


def resolve(model_path: str, revision: str | None, trust_remote_code: bool = False) -> Model:
    token = _read_token()
    local = Path(model_path)
    if local.is_dir():
        config = _check_complete(local, model_path)
        _check_config_and_tokenizer(local, model_path, config, trust_remote_code)
        return Model(local, None, config, token)
    if model_path.startswith(("/", "./", "../")) or model_path.count("/") != 1:
        raise ModelNotFound(f"{model_path} is neither a local directory nor a Hub repo id (org/name)")
    repo = hub_cache() / ("models--" + model_path.replace("/", "--"))
    ref = revision or "main"
    if re.fullmatch(r"[0-9a-f]{40}", ref):
        commit = ref
    else:
        ref_file = repo / "refs" / ref
        if not ref_file.is_file():
            raise ModelNotFound(f"{model_path}: revision {ref!r} is not in the cache ({ref_file} missing)")
        commit = ref_file.read_text().strip()
    snapshot = repo / "snapshots" / commit
    if not snapshot.is_dir():
        raise ModelNotFound(f"{model_path}: snapshot {commit} is not in the cache ({snapshot} missing)")
    config = _check_complete(snapshot, model_path)
    _check_config_and_tokenizer(snapshot, model_path, config, trust_remote_code)
    return Model(snapshot, commit, config, token)


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


OFFLINE_ERROR = (
    "We couldn't connect to 'https://huggingface.co' to load the files, and couldn't find them in the cached files. "
    "Check your internet connection or see how to run the library in offline mode at "
    "'https://huggingface.co/docs/transformers/installation#offline-mode'."
)
