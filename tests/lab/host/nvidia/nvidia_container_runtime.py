#!/usr/bin/env python3
"""Stand-in for NVIDIA's ``nvidia-container-runtime`` in the lab's simulated H200 hosts. Not NVIDIA's tool.

Like the real one it wraps ``runc``: on ``create`` it adds the GPU hook as a prestart hook to the bundle's
``config.json`` when the container's environment sets ``NVIDIA_VISIBLE_DEVICES``, then runs ``runc`` with the
same arguments. ``nvidia-ctk runtime configure --runtime=docker`` registers it with Docker as runtime ``nvidia``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys

HOOK = "/usr/bin/nvidia-container-runtime-hook"


def bundle_of(args):
    for i, arg in enumerate(args):
        if arg in ("--bundle", "-b") and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--bundle="):
            return arg.split("=", 1)[1]
    return os.getcwd()


def add_hook(bundle):
    path = os.path.join(bundle, "config.json")
    with open(path, encoding="utf-8") as handle:
        config = json.load(handle)
    env = config.get("process", {}).get("env", [])
    if not any(item.startswith("NVIDIA_VISIBLE_DEVICES=") for item in env):
        return
    prestart = config.setdefault("hooks", {}).setdefault("prestart", [])
    if any(os.path.basename(hook.get("path", "")) == os.path.basename(HOOK) for hook in prestart):
        return
    prestart.append({"path": HOOK, "args": [os.path.basename(HOOK), "prestart"]})
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(config, handle)


def main(argv):
    args = argv[1:]
    if "create" in args:
        add_hook(bundle_of(args))
    runc = shutil.which("runc")
    if runc is None:
        sys.stderr.write("nvidia-container-runtime: runc not found on PATH\n")
        return 1
    os.execv(runc, [runc, *args])  # noqa: S606 - becomes runc, as the real runtime does
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
