"""The quick, offline look at a host's Hugging Face cache that guards a running server from a replacement whose
weights are not there."""

import json

import pytest

from ansible_collections.datacrunch.sglang.plugins.module_utils.hub.local_snapshot import snapshot_problem

REPO = "org/model"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def cache(tmp_path, shards=("model-1.safetensors", "model-2.safetensors"), present=None, config=True, ref="main"):
    repo = tmp_path / "hub" / "models--org--model"
    snapshot = repo / "snapshots" / COMMIT
    blobs = repo / "blobs"
    snapshot.mkdir(parents=True)
    blobs.mkdir()
    if ref:
        (repo / "refs").mkdir()
        (repo / "refs" / ref).write_text(COMMIT)
    if config:
        (snapshot / "config.json").write_text("{}")
    (snapshot / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"w%d" % i: name for i, name in enumerate(shards)}}))
    for name in present if present is not None else shards:
        (blobs / name).write_bytes(b"x")
        (snapshot / name).symlink_to("../../blobs/" + name)
    return str(tmp_path)


def test_a_complete_snapshot_by_commit_and_by_branch(tmp_path):
    home = cache(tmp_path)
    assert snapshot_problem(home, REPO, COMMIT) is None
    assert snapshot_problem(home, REPO, "main") is None
    assert snapshot_problem(home, REPO, "") is None


@pytest.mark.parametrize(
    ("layout", "revision", "words"),
    [
        ({}, "v2", "revision 'v2' of org/model is not in the cache"),
        ({"config": False}, COMMIT, "config.json is missing"),
        ({"present": ["model-1.safetensors"]}, COMMIT, "1 of 2 weight shards are missing"),
        ({}, "f" * 40, "is not in the cache"),
    ],
)
def test_what_is_missing_is_named(tmp_path, layout, revision, words):
    assert words in snapshot_problem(cache(tmp_path, **layout), REPO, revision)


def test_a_dangling_link_is_a_missing_shard(tmp_path):
    home = cache(tmp_path)
    (tmp_path / "hub/models--org--model/blobs/model-2.safetensors").unlink()
    assert "1 of 2 weight shards are missing" in snapshot_problem(home, REPO, COMMIT)


def test_an_empty_cache(tmp_path):
    assert "is not in the cache" in snapshot_problem(str(tmp_path), REPO, "main")
