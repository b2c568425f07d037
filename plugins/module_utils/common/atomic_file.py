# -*- coding: utf-8 -*-
# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One way to write a file so that a reader sees the old content or the new, never part of either.

The content goes into a temporary file in the same directory, which has the final mode before its first byte (a
secret is never readable by others, not even for a moment) and then takes the file's place in one rename. A failure
leaves the old file as it was and no temporary file behind.

The Hugging Face cache's own files (refs, links, the download's progress) are written by module_utils/hub/snapshot.py
the way huggingface_hub writes them, under the process's umask, and do not use this.
"""

from __future__ import annotations

import contextlib
import os
import tempfile


def current_content(path, binary=False):
    """What path holds now (str as UTF-8, or bytes), or None when there is no such file: what a replace compares."""
    try:
        with open(path, "rb" if binary else "r", **({} if binary else {"encoding": "utf-8"})) as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def replace_file(path, content, mode=0o644):
    """Write content (str, as UTF-8, or bytes) to path atomically, with the given permission bits."""
    data = content.encode("utf-8") if isinstance(content, str) else content
    directory = os.path.dirname(path) or "."
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".tmp-" + os.path.basename(path) + "-")
    try:
        os.fchmod(handle, mode)
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
