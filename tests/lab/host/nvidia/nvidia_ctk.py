#!/usr/bin/env python3
"""Stand-in for NVIDIA's ``nvidia-ctk`` in the lab's simulated H200 hosts. Not NVIDIA's tool.

``nvidia-ctk --version`` and ``nvidia-ctk runtime configure --runtime=docker [--config=PATH] [--set-as-default]
[--dry-run]``, which registers runtime ``nvidia`` in Docker's ``daemon.json`` as the real command does.
"""

from __future__ import annotations

import json
import os
import sys

VERSION = "1.17.8"
DOCKER_CONFIG = "/etc/docker/daemon.json"


def info(message):
    sys.stderr.write(f"INFO[0000] {message}\n")


def fail(message):
    sys.stderr.write(f"ERRO[0000] {message}\n")
    return 1


def configure(args):
    runtime, config_path, set_default, dry_run = None, DOCKER_CONFIG, False, False
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("--runtime="):
            runtime = arg.split("=", 1)[1]
        elif arg == "--runtime" and i + 1 < len(args):
            i += 1
            runtime = args[i]
        elif arg.startswith("--config="):
            config_path = arg.split("=", 1)[1]
        elif arg == "--config" and i + 1 < len(args):
            i += 1
            config_path = args[i]
        elif arg == "--set-as-default":
            set_default = True
        elif arg == "--dry-run":
            dry_run = True
        else:
            return fail(f"flag provided but not defined: {arg}")
        i += 1
    if runtime != "docker":
        return fail(f"unrecognized runtime '{runtime}': this stand-in configures docker only")
    try:
        with open(config_path, encoding="utf-8") as handle:
            config = json.load(handle)
    except FileNotFoundError:
        config = {}
    except (OSError, ValueError) as error:
        return fail(f"unable to load config for runtime docker: {error}")
    config.setdefault("runtimes", {})["nvidia"] = {"args": [], "path": "nvidia-container-runtime"}
    if set_default:
        config["default-runtime"] = "nvidia"
    text = json.dumps(config, indent=4) + "\n"
    if dry_run:
        sys.stdout.write(text)
        return 0
    os.makedirs(os.path.dirname(config_path), exist_ok=True)
    with open(config_path, "w", encoding="utf-8") as handle:
        handle.write(text)
    info(f"Wrote updated config to {config_path}")
    info("It is recommended that docker daemon be restarted.")
    return 0


def main(argv):
    args = argv[1:]
    if args in (["--version"], ["-v"]):
        sys.stdout.write(f"NVIDIA Container Toolkit CLI version {VERSION}\ncommit: lab-stand-in\n")
        return 0
    if args[:2] == ["runtime", "configure"]:
        return configure(args[2:])
    sys.stderr.write("NAME:\n   NVIDIA Container Toolkit CLI (lab stand-in)\n\nUSAGE:\n")
    sys.stderr.write("   nvidia-ctk --version\n   nvidia-ctk runtime configure --runtime=docker\n")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
