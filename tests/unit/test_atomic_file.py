"""module_utils/common/atomic_file.py: the one way the collection replaces a file (secrets, specs, firewall rules,
reports, the commit record): the new content with its mode from the first byte, or the old file untouched."""

import os
import stat

import pytest

from ansible_collections.datacrunch.sglang.plugins.module_utils.common import atomic_file
from ansible_collections.datacrunch.sglang.plugins.module_utils.common.atomic_file import replace_file


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_new_file_has_the_content_and_the_mode(tmp_path):
    path = tmp_path / "secret"
    replace_file(str(path), "key\n", mode=0o600)
    assert path.read_bytes() == b"key\n" and mode(path) == 0o600
    replace_file(str(path), b"\x00bytes", mode=0o644)
    assert path.read_bytes() == b"\x00bytes" and mode(path) == 0o644
    assert sorted(os.listdir(tmp_path)) == ["secret"]


def test_the_temporary_file_is_private_before_its_first_byte(tmp_path, monkeypatch):
    seen = []
    real_fdopen = os.fdopen

    def watching_fdopen(handle, *args, **kwargs):
        seen.append(stat.S_IMODE(os.fstat(handle).st_mode))
        return real_fdopen(handle, *args, **kwargs)

    monkeypatch.setattr(atomic_file.os, "fdopen", watching_fdopen)
    replace_file(str(tmp_path / "secret"), "key", mode=0o600)
    assert seen == [0o600]


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / "spec.json"
    path.write_text("old")

    def failing_replace(source, target):
        raise OSError("disk full")

    monkeypatch.setattr(atomic_file.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        replace_file(str(path), "new")
    assert path.read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["spec.json"]


def test_a_link_in_its_place_is_replaced_not_followed(tmp_path):
    target = tmp_path / "elsewhere"
    target.write_text("keep")
    link = tmp_path / "file"
    link.symlink_to(target)
    replace_file(str(link), "new")
    assert not link.is_symlink() and link.read_text() == "new" and target.read_text() == "keep"
