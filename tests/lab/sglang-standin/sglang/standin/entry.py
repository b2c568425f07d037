"""Test stand-in (not SGLang): the `python3 -m` entry points each SGLang version ships.

A version that does not ship a module (0.5.23 has no sglang.bench_one_batch) answers as Python does for a module
that is not there: `No module named ...` on stderr, exit status 1.
"""

from __future__ import annotations

import sys
import warnings

from sglang.standin.flags import DATA
from sglang.standin.settings import standin_version


def require(module: str) -> None:
    version = standin_version()
    if module not in DATA.SGLANG_ENTRY_MODULES.get(version, []):
        print(f"{sys.executable}: No module named {module}", file=sys.stderr)
        raise SystemExit(1)


def warn_moved(old: str, new: str) -> None:
    """The FutureWarning SGLang's old import paths print."""
    warnings.warn(
        f"`{old}` is deprecated and will be removed in a future release; use `{new}` instead (e.g. `python -m {new}`).",
        FutureWarning,
        stacklevel=2,
    )
