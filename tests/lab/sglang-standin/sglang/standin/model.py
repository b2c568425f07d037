"""Test stand-in (not SGLang): finding the model the way SGLang (through huggingface_hub) finds it.

--model-path is a local directory (it must hold config.json), or a Hub repo id looked up in the Hugging Face cache
($HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub) at --revision (a commit, or a ref such as the
default main). The snapshot must be complete: config.json, and every shard named by model.safetensors.index.json.
The stand-in never downloads: with weights missing it fails as the real server does offline
(HF_HUB_OFFLINE=1), and says that it does not download when online.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path


class ModelNotFound(Exception):
    pass


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


def resolve(model_path: str, revision: str | None) -> Model:
    token = _read_token()
    local = Path(model_path)
    if local.is_dir():
        return Model(local, None, _check_complete(local, model_path), token)
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
    return Model(snapshot, commit, _check_complete(snapshot, model_path), token)


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


OFFLINE_ERROR = (
    "We couldn't connect to 'https://huggingface.co' to load the files, and couldn't find them in the cached files. "
    "Check your internet connection or see how to run the library in offline mode at "
    "'https://huggingface.co/docs/transformers/installation#offline-mode'."
)
