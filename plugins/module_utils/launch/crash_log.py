# -*- coding: utf-8 -*-
# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What an SGLang log says about a crash: the first error of every rank, then the last lines.

SGLang runs one scheduler process per GPU; each logs with its rank in the prefix (`[2026-12-03 12:00:00 DP0 TP3
EP3] ...`, scheduler.py run_scheduler_process). When one rank raises, it logs `Scheduler hit an exception:
<traceback>` and signals the main process, which kills the process tree; meanwhile the other ranks log NCCL errors
of their own, and the main process logs its SIGQUIT. On 8 GPUs those follow-up errors fill more than the last 40
lines, so the root cause is found by reading every rank's first error, not the tail. A crash exits with code 0 when
SGLang is PID 1 of its container (its kill_process_tree cannot SIGKILL PID 1 and ends in sys.exit(0)), so the exit
code says nothing about whether it crashed.
"""

from __future__ import annotations

import re

# `[2026-12-03 12:00:00] msg`, `[2026-12-03 12:00:00.123 DP0 TP3 EP3] msg`
_PREFIXED = re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?((?: [A-Z_]+\d+)*)\] ?(.*)$")
_EXCEPTION = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?[A-Z]\w*(?:Error|Exception|Exit)\b:?")
_ERROR_START = re.compile(
    r"Traceback \(most recent call last\)|hit an exception|Initialization failed|Received sigquit|SIGQUIT received"
    r"|Exception in thread|^(?:[A-Za-z_][\w.]*\.)?[A-Z]\w*(?:Error|Exception)\b: "
)
# Lines SGLang prints only when it ends abnormally.
CRASH_MARKERS = ("Scheduler hit an exception", "Received sigquit from a child process", "SIGQUIT received",
                 "Initialization failed", "Traceback (most recent call last)")
LINES_PER_RANK = 12
MAX_LINE = 400


def _records(text):
    """(rank, [lines]) per log record: a prefixed line and the unprefixed lines after it (a traceback)."""
    records = []
    for line in text.replace("\r", "\n").splitlines():
        match = _PREFIXED.match(line)
        if match:
            records.append((match.group(1).strip() or "main", [match.group(2)]))
        elif records and line.strip() and not line.startswith("Traceback (most recent call last)"):
            records[-1][1].append(line)
        elif line.strip():
            records.append(("main", [line]))
    return records


def _clip(line):
    return line if len(line) <= MAX_LINE else line[:MAX_LINE] + " ..."


def first_errors(text, per_rank=LINES_PER_RANK):
    """{rank: [lines]}: each rank's first error record (up to per_rank lines), in the order they appeared."""
    found = {}
    for rank, lines in _records(text):
        if rank not in found and _ERROR_START.search(lines[0]):
            found[rank] = lines
    return {rank: [_clip(line) for line in lines[:per_rank]] for rank, lines in found.items()}


def root_cause(text):
    """The exception line of the first rank's first traceback (`RuntimeError: ...`), else its first error line."""
    for _rank, lines in first_errors(text, per_rank=200).items():
        exceptions = [line.strip() for line in lines[1:] if _EXCEPTION.match(line.strip())]
        if exceptions:
            return _clip(exceptions[-1])
        if "hit an exception" in lines[0] or _EXCEPTION.match(lines[0].strip()):
            return _clip(lines[0].strip())
    return ""


def crashed(text):
    return any(marker in text for marker in CRASH_MARKERS)


def _summary(record):
    """A record's first line and its exception line: what a follow-up error of another rank needs to show."""
    exceptions = [line for line in record[1:] if _EXCEPTION.match(line.strip())]
    return [record[0], *exceptions[-1:]]


def excerpt(text, tail=40, per_rank=LINES_PER_RANK):
    """The first error of every rank (the earliest in full, the others' first and exception lines), then the last
    `tail` lines."""
    lines = text.replace("\r", "\n").splitlines()
    last = [_clip(line) for line in lines if line.strip()][-tail:]
    errors = first_errors(text, per_rank)
    if not errors:
        return "\n".join(last)
    head = []
    for index, (rank, record) in enumerate(errors.items()):
        head.append("-- first error of %s:" % ("the main process" if rank == "main" else "rank " + rank))
        head.extend(record if index == 0 else _summary(record))
    return "\n".join([*head, "-- last %d lines:" % len(last), *last])


def describe_exit(exit_code, oom_killed, text):
    """How a server that stopped on its own ended, whatever its exit code: `crashed (...): <root cause>`."""
    if exit_code is None:
        # Docker keeps only the exit code of the current run: once restarted, the crash's code is gone.
        how = "crashed (restarted by its restart policy; Docker keeps no exit code of the run that crashed)"
    elif oom_killed:
        how = "killed by the kernel for lack of memory (exit code %s)" % exit_code
    elif exit_code == 0:
        how = "crashed (exit code 0: SGLang ends a crash with exit code 0 when it is PID 1 of its container)"
    elif exit_code == 137:
        how = "crashed (exit code 137: killed by SIGKILL)"
    else:
        how = "crashed (exit code %s)" % exit_code
    cause = root_cause(text)
    return how + (": " + cause if cause else "")
