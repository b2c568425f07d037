"""module_utils/common/secret_files.py on real files in tmp_path: root-only directories and files, changed only when
their content or mode is wrong, the per-host salt, the digest that changes with a secret and reveals none, and the
mask over logs."""

import hashlib
import hmac
import json
import os

import yaml

from ansible_collections.datacrunch.sglang.plugins.module_utils.common import secret_files


def mode(path):
    return os.stat(path).st_mode & 0o777


def test_a_private_directory_is_made_0700_and_its_mode_fixed(tmp_path):
    path = tmp_path / "sglang" / "secrets"
    assert secret_files.ensure_private_dir(str(path), check_mode=True) is True
    assert not path.exists()
    assert secret_files.ensure_private_dir(str(path)) is True
    assert mode(path) == 0o700
    assert secret_files.ensure_private_dir(str(path)) is False
    path.chmod(0o755)
    assert secret_files.ensure_private_dir(str(path), check_mode=True) is True
    assert mode(path) == 0o755
    assert secret_files.ensure_private_dir(str(path)) is True
    assert mode(path) == 0o700


def test_a_private_file_is_written_0600_and_rewritten_only_on_change(tmp_path):
    path = tmp_path / "hf_token"
    assert secret_files.write_private_file(str(path), "hf_abc\n", check_mode=True) is True
    assert not path.exists()
    assert secret_files.write_private_file(str(path), "hf_abc\n") is True
    assert path.read_text() == "hf_abc\n" and mode(path) == 0o600
    inode = path.stat().st_ino
    assert secret_files.write_private_file(str(path), b"hf_abc\n") is False
    assert path.stat().st_ino == inode
    path.chmod(0o644)  # same content, readable by others: rewritten
    assert secret_files.write_private_file(str(path), "hf_abc\n") is True and mode(path) == 0o600
    assert secret_files.write_private_file(str(path), "hf_new\n", check_mode=True) is True
    assert path.read_text() == "hf_abc\n"
    assert secret_files.write_private_file(str(path), "hf_new\n") is True and path.read_text() == "hf_new\n"


def test_remove_file_removes_files_and_dangling_links(tmp_path):
    stale = tmp_path / "stale"
    stale.write_text("x")
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "nowhere")
    assert secret_files.remove_file(str(stale), check_mode=True) is True and stale.exists()
    assert secret_files.remove_file(str(stale)) is True and not stale.exists()
    assert secret_files.remove_file(str(link)) is True and not os.path.lexists(link)
    assert secret_files.remove_file(str(stale)) is False


def test_the_server_config_carries_any_key_as_yaml_reads_it():
    for key in ("sk-plain", 'sk-"quoted"', "sk-with: colon # and hash", "sk-ünïcode"):
        text = secret_files.server_config_yaml(key)
        assert text.startswith("api-key: ") and text.endswith("\n")
        assert yaml.safe_load(text) == {"api-key": key}


def test_the_host_salt_is_made_once_and_kept(tmp_path):
    first = secret_files.host_salt(str(tmp_path))
    salt_file = tmp_path / secret_files.SALT_FILE
    assert len(first) == 64 and salt_file.read_bytes() == first and mode(salt_file) == 0o600
    assert secret_files.host_salt(str(tmp_path)) == first
    missing = tmp_path / "not-yet"
    assert len(secret_files.host_salt(str(missing))) == 64 and not missing.exists()
    other = tmp_path / "other"
    other.mkdir()
    assert len(secret_files.host_salt(str(other), check_mode=True)) == 64
    assert os.listdir(other) == []


def test_the_digest_follows_the_secrets_and_the_salt_only():
    salt = b"s" * 64
    digest = secret_files.secrets_digest(salt, {"api_key": "sk-1", "hf_token": ""})
    expected = hmac.new(salt, json.dumps({"api_key": "sk-1"}).encode(), hashlib.sha256).hexdigest()[:32]
    assert digest == expected
    assert "sk-1" not in digest
    assert secret_files.secrets_digest(salt, {"api_key": "sk-2"}) != digest
    assert secret_files.secrets_digest(b"t" * 64, {"api_key": "sk-1"}) != digest
    assert secret_files.secrets_digest(salt, {"api_key": "", "hf_token": None}) == ""


def test_redact_masks_each_secret_of_four_characters_or_more():
    text = "server_args=ServerArgs(api_key='sk-secret-1', hf='hf_tok', admin='abc')"
    masked = secret_files.redact(text, ["sk-secret-1", "hf_tok", "abc", "", None])
    assert masked == "server_args=ServerArgs(api_key='********', hf='********', admin='abc')"
