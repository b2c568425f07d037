# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The naming rules of a Hugging Face model id and of a revision, checked on the controller.

A model id follows huggingface_hub's own rule (``huggingface_hub.utils.validate_repo_id``): "repo_name" or
"namespace/repo_name", each part 1 to 96 of the ASCII characters A-Z a-z 0-9 - _ ., not starting or ending with - or
., no "--" or "..", not ending in ".git". A revision is a 40-hex commit id, or a branch or tag name that git accepts
(``git check-ref-format --allow-onelevel``). Each function returns the problem as a sentence that names the variable,
the value and the rule, or "" when the value is fine.

Standard library only: imported by a filter plugin on the controller.
"""

from __future__ import annotations

import re

REPO_ID_RULE = (
    "huggingface_hub's rule for a repo id: 'name' or 'namespace/name', each part 1 to 96 of the characters "
    "A-Z a-z 0-9 - _ ., not starting or ending with - or ., without '--' or '..', not ending in '.git'"
)
REVISION_RULE = (
    "a revision is a 40-character commit id or a branch or tag name by git's rules (git check-ref-format): no space, "
    "control character or any of ~ ^ : ? * [ \\, no '..' or '@{', no '//', not '@', not starting or ending with /, "
    "no part starting with . or ending in .lock, not ending with ."
)

_REPO_PART = re.compile(r"[A-Za-z0-9_.-]{1,96}")
_COMMIT = re.compile(r"[0-9a-f]{40}")
_REF_FORBIDDEN = frozenset(" ~^:?*[\\\x7f")


def repo_id_problem(value, variable="sglang_model"):
    """Why ``value`` is not a Hub model id, or ""."""
    if not isinstance(value, str) or not value:
        return f"{variable}={value!r} is not a Hugging Face model id: {REPO_ID_RULE} (e.g. deepseek-ai/DeepSeek-R1)"
    parts = value.split("/")
    fine = (
        len(parts) <= 2
        and all(_REPO_PART.fullmatch(part) and part[0] not in "-." and part[-1] not in "-." for part in parts)
        and "--" not in value
        and ".." not in value
        and not value.endswith(".git")
    )
    if fine:
        return ""
    return f"{variable}={value!r} is not a Hugging Face model id: {REPO_ID_RULE} (e.g. deepseek-ai/DeepSeek-R1)"


def _ref_name_fine(name):
    if not name or name == "@" or name.startswith("/") or name.endswith(("/", ".")):
        return False
    if ".." in name or "@{" in name or "//" in name:
        return False
    if any(ord(character) < 0x20 or character in _REF_FORBIDDEN for character in name):
        return False
    return all(part and not part.startswith(".") and not part.endswith(".lock") for part in name.split("/"))


def revision_problem(value, variable="sglang_model_revision"):
    """Why ``value`` is not a revision (commit id, branch or tag), or ""."""
    if isinstance(value, str) and (_COMMIT.fullmatch(value) or _ref_name_fine(value)):
        return ""
    return f"{variable}={value!r} is not a revision: {REVISION_RULE} (e.g. main, or a commit id)"
