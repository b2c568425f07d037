"""Checks SGLang launch arguments with SGLang's own parser (the one `sglang serve` / launch_server uses).

    check_argv.py VERSION -- ARGV...
        Parses ARGV as `python3 -m sglang.launch_server ARGV...` of that version would, including a
        `--config FILE.yaml` merged by SGLang's YAML merger. Exit 0 (the parsed arguments as JSON on stdout),
        2 (argparse refused them: its message on stderr), or 1 (the YAML merger refused the config file).
    check_argv.py --json  < [{"version": "0.5.18", "argv": [...]}, ...]
        Many argvs at once (one parser process per version): a JSON list of
        {"rc", "message", "stderr", "args"?, "argv"?} on stdout, in input order; `message` is argparse's last line.

Runs with any Python >= 3.10; the parsing happens in .venv-sglang-parser (tests/sglang_parser/setup.sh).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from real_parser import VENV_PYTHON, supported_versions  # noqa: E402


def check_many(items: list[dict]) -> list[dict]:
    """Results for [{"version", "argv"}, ...], in order; one real_parser process per version."""
    if not VENV_PYTHON.exists():
        raise SystemExit(f"{VENV_PYTHON} is missing: run tests/sglang_parser/setup.sh")
    results: list[dict | None] = [None] * len(items)
    by_version: dict[str, list[int]] = {}
    for index, item in enumerate(items):
        if item["version"] not in supported_versions():
            raise SystemExit(f"SGLang {item['version']!r} is not supported here: {', '.join(supported_versions())}")
        by_version.setdefault(item["version"], []).append(index)
    for version, indexes in by_version.items():
        out = subprocess.run(
            [str(VENV_PYTHON), str(HERE / "real_parser.py"), "check", version],
            input=json.dumps([items[i]["argv"] for i in indexes]),
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode != 0:
            raise SystemExit(f"real_parser.py check {version} failed ({out.returncode}):\n{out.stderr}")
        for index, result in zip(indexes, json.loads(out.stdout), strict=True):
            results[index] = result
    return results  # type: ignore[return-value]


def main(argv: list[str]) -> int:
    if argv[:1] == ["--json"]:
        json.dump(check_many(json.load(sys.stdin)), sys.stdout)
        print()
        return 0
    if len(argv) < 2 or argv[1] != "--":
        print(__doc__, file=sys.stderr)
        return 64
    (result,) = check_many([{"version": argv[0], "argv": argv[2:]}])
    sys.stderr.write(result["stderr"])
    if result["rc"] == 1:
        print(result["message"], file=sys.stderr)
    if result["rc"] == 0:
        json.dump(result["args"], sys.stdout, indent=1, sort_keys=True)
        print()
    return result["rc"]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
