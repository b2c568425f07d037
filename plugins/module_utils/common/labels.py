# -*- coding: utf-8 -*-
# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What marks a container or an image as the collection's own: a label under one prefix.

Standard library only: the preflight reads it under a fresh host's system Python, the modules after host_venv.
"""

from __future__ import annotations

LABEL_PREFIX = "datacrunch.sglang."


def is_ours(labels):
    """Whether labels mark something this collection made."""
    return any(key.startswith(LABEL_PREFIX) for key in labels or {})


def our_labels(labels):
    """The labels under the collection's prefix."""
    return {key: value for key, value in (labels or {}).items() if key.startswith(LABEL_PREFIX)}
