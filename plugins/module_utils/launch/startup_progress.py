# -*- coding: utf-8 -*-
# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where an SGLang server is in its start-up, read from its log, for a person waiting through a long load.

A cold DeepSeek-R1 start takes 30-60 minutes: distributed init, weight loading (163 shards), DeepGEMM JIT
compilation, CUDA graph capture, then the HTTP server's warm-up request. The lines matched here are the ones
SGLang 0.5.18 and 0.5.23 print (sglang/srt/model_executor/model_runner.py "Load weight begin/end",
srt/model_loader/weight_utils.py's tqdm bars "Multi-thread loading shards" / "Loading safetensors checkpoint shards"
with srt/utils/common.py BAR_FORMAT, srt/layers/deep_gemm_wrapper/compile_utils.py "Try DeepGEMM JIT Compiling"
and its "DeepGEMM warmup" bar, srt/model_executor/model_runner_components/cuda_graph_setup.py "Capture ... CUDA
graph begin/end" and the "Capturing batches" bar, srt/entrypoints/http_server.py "Uvicorn running" and "The
server is fired up and ready to roll!"). tqdm redraws its bar with carriage returns, so a log "line" may hold many
bar states: the last one counts.
"""

from __future__ import annotations

import re

# (phase, pattern) in start-up order; the latest line that matches any of them tells the phase.
_PHASES = (
    ("distributed init", re.compile(r"Init torch distributed begin")),
    ("loading weights", re.compile(r"Load weight begin")),
    ("loading weights", re.compile(
        r"(?P<desc>Multi-thread loading shards|Loading safetensors checkpoint shards|Loading safetensors using "
        r"\w+ loader|Loading pt checkpoint shards)\s*:\s*(?P<pct>\d+)% Completed \| (?P<n>\d+)/(?P<total>\d+)")),
    ("weights loaded", re.compile(r"Load weight end")),
    ("compiling DeepGEMM kernels", re.compile(r"Try DeepGEMM JIT Compiling|DeepGEMM warmup")),
    ("capturing CUDA graphs", re.compile(r"Capture [\w ]*CUDA graph begin|Capturing batches")),
    ("CUDA graphs captured", re.compile(r"Capture [\w ]*CUDA graph end")),
    ("warming up", re.compile(r"Uvicorn running on")),
    ("ready", re.compile(r"The server is fired up and ready to roll!")),
)

_CAPTURE_BS = re.compile(r"Capturing batches \(bs=(\d+)")
_DEEPGEMM_BAR = re.compile(r"DeepGEMM warmup:\s*(\d+)%")


def _segments(text):
    """Every line and every tqdm redraw, oldest first."""
    for line in text.splitlines():
        for part in line.split("\r"):
            part = part.strip()
            if part:
                yield part


def startup_progress(log_text):
    """(phase, detail) of the latest start-up step in the log text; ("starting", "") before any is logged.

    detail is what a person wants to see for that step ("loading safetensors 73/163"), else the log line itself,
    shortened.
    """
    phase, detail = "starting", ""
    for segment in _segments(log_text or ""):
        for name, pattern in _PHASES:
            match = pattern.search(segment)
            if not match:
                continue
            phase = name
            if "total" in match.groupdict():
                detail = "%s %s/%s (%s%%)" % (
                    "loading safetensors", match.group("n"), match.group("total"), match.group("pct"))
            elif name == "capturing CUDA graphs" and _CAPTURE_BS.search(segment):
                detail = "capturing CUDA graphs, batch size %s" % _CAPTURE_BS.search(segment).group(1)
            elif name == "compiling DeepGEMM kernels" and _DEEPGEMM_BAR.search(segment):
                detail = "DeepGEMM warm-up %s%%" % _DEEPGEMM_BAR.search(segment).group(1)
            else:
                detail = _shorten(segment)
            break
    return phase, detail


def _shorten(segment, limit=120):
    # Drop SGLang's "[2026-11-28 12:00:00 TP0] " prefix: the time is on the play's own line.
    segment = re.sub(r"^\[[0-9-]+ [0-9:]+(?: [A-Z0-9 ]+)?\]\s*", "", segment)
    return segment if len(segment) <= limit else segment[: limit - 3] + "..."
