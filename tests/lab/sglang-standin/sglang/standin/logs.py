"""Test stand-in (not SGLang): log lines in SGLang's format, and fatal errors shaped like its tracebacks."""

from __future__ import annotations

import sys
import time


def log(message: str, stream=None) -> None:
    """One line as SGLang's logging prints it: `[2026-11-28 12:00:00] message`."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    print(f"[{stamp}] {message}", file=stream or sys.stderr, flush=True)


def warn_deprecated(message: str) -> None:
    """SGLang's print_deprecated_warning: the message in bold yellow, before logging is configured."""
    print(f"\033[1;33m{message}\033[0m", file=sys.stderr, flush=True)


def fatal(exception: str, message: str, where: str = "sglang/srt/managers/scheduler.py", code: int = 1):
    """Exit the way an uncaught exception in SGLang ends a launch: a traceback on stderr, exit status 1."""
    print("Traceback (most recent call last):", file=sys.stderr)
    print(f'  File "/sgl-workspace/sglang/python/{where}", line 1, in <module>', file=sys.stderr)
    print(f"{exception}: {message}", file=sys.stderr, flush=True)
    raise SystemExit(code)
