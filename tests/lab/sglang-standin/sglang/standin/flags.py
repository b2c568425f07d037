"""Test stand-in (not SGLang): SGLang's command-line parsers rebuilt from the flag data generated from them.

The data is plugins/module_utils/launch/cli_flags.py, produced by tests/sglang_parser/generate_flags.py from SGLang's
own argparse definitions; the image carries a copy next to this file. Rebuilding argparse from it gives the same
accepted flags, abbreviations, choices, types, deprecation warnings and error messages as the real parser of the
version played. The --config YAML merge follows SGLang's ConfigArgumentMerger with the version's boolean sets.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import re
from decimal import Decimal
from pathlib import Path

from sglang.standin.logs import warn_deprecated
from sglang.standin.settings import standin_version

HERE = Path(__file__).resolve().parent
# What prepare_server_args names its parser.
SERVER_PROG = "sglang serve"


def _load_data():
    candidates = [os.environ.get("SGLANG_STANDIN_FLAGS_FILE", ""), str(HERE / "sglang_cli_flags.py")]
    # In the checkout: tests/lab/sglang-standin/sglang/standin -> plugins/module_utils
    candidates.append(str(HERE.parents[4] / "plugins" / "module_utils" / "launch" / "cli_flags.py"))
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            spec = importlib.util.spec_from_file_location("sglang_standin_cli_flags", candidate)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
    raise SystemExit(f"sglang stand-in: no sglang_cli_flags.py found (looked at {candidates})")


DATA = _load_data()


def version_data(version: str | None = None) -> dict:
    version = version or standin_version()
    if version not in DATA.SGLANG_CLI_FLAGS:
        raise SystemExit(
            f"sglang stand-in: SGLANG_STANDIN_VERSION={version!r} is not one of {', '.join(DATA.supported_versions())}"
        )
    return DATA.SGLANG_CLI_FLAGS[version]


# --- argparse types, named as SGLang names them (argparse puts the name in "invalid <name> value") ---------------


def loads(value):
    return json.loads(value)


def json_list_type(value):
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        raise argparse.ArgumentTypeError(f"Invalid JSON list: {value}. Please provide a valid JSON list.") from None


def nullable_str(val):
    if not val or val == "None":
        return None
    return val


def human_readable_int(value):
    value = value.strip()
    si = {"k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
    iec = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)", value)
    if match:
        number, suffix = match.groups()
        if suffix in iec:
            if "." in number:
                raise argparse.ArgumentTypeError(f"Decimals are not allowed with IEC suffixes like '{suffix}'.")
            return int(number) * iec[suffix]
        return int(Decimal(number) * si[suffix])
    return int(value)


def parse_cuda_graph_config_arg(raw):
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"--cuda-graph-config must be JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise argparse.ArgumentTypeError(f"--cuda-graph-config must be a JSON object, got {type(parsed).__name__}")
    return parsed


def parse_cuda_graph_backend_arg(raw):
    if raw == "tc_piecewise":
        raise argparse.ArgumentTypeError("tc_piecewise was removed; select breakable, full, or disabled")
    return raw


def _finite_positive_float(value):
    try:
        parsed = float(value)
    except (TypeError, ValueError) as exc:
        raise argparse.ArgumentTypeError(f"expected a finite float > 0, got {value!r}") from exc
    if not math.isfinite(parsed) or parsed <= 0:
        raise argparse.ArgumentTypeError(f"expected a finite float > 0, got {value!r}")
    return parsed


def _goodput_slo(pair):
    name, _sep, value = pair.partition(":")
    if name not in ("ttft", "tpot", "e2e"):
        raise argparse.ArgumentTypeError(f"expected KEY:VALUE with KEY in ttft, tpot, e2e, got {pair!r}")
    return name, _finite_positive_float(value)


TYPES = {
    None: None,
    "str": str,
    "int": int,
    "float": float,
    "json": loads,
    "json_list": json_list_type,
    "human_readable_int": human_readable_int,
    "nullable_str": nullable_str,
    "cuda_graph_config": parse_cuda_graph_config_arg,
    "cuda_graph_backend": parse_cuda_graph_backend_arg,
    "finite_positive_float": _finite_positive_float,
    "goodput_slo": _goodput_slo,
}


# --- actions SGLang defines -------------------------------------------------------------------------------------


class LoRAPathAction(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        paths = []
        for value in values or []:
            value = value.strip()
            paths.append(json.loads(value) if value.startswith("{") and value.endswith("}") else value)
        setattr(namespace, self.dest, paths)


class _Deprecated(argparse.Action):
    """The deprecated spellings: the warning the real action prints (from the data), then its effect."""

    def __init__(self, option_strings, dest, messages=None, error=None, effect="none", const_value=None, **kwargs):
        self.messages = messages or {}
        self.error = error
        self.effect = effect
        self.const_value = const_value
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        if self.error:
            parser.error(self.error)
        message = self.messages.get(option_string)
        if message:
            warn_deprecated(message)
        if self.effect == "true":
            setattr(namespace, self.dest, True)
        elif self.effect == "const":
            setattr(namespace, self.dest, self.const_value)
        elif self.effect == "value":
            setattr(namespace, self.dest, values)


PLAIN_ACTIONS = {
    "store": "store",
    "store_true": "store_true",
    "store_false": "store_false",
    "store_const": "store_const",
    "append": "append",
    "count": "count",
}


def add_options(parser: argparse.ArgumentParser, table: dict) -> None:
    """Add every option of one generated table to the parser, grouped back into argparse actions."""
    groups: dict[str, list[str]] = {}
    for option, spec in table.items():
        groups.setdefault(spec["primary"], []).append(option)
    for options in groups.values():
        spec = table[options[0]]
        action = spec["action"]
        if action == "help":
            continue
        kwargs = {"dest": spec["dest"], "default": spec.get("default")}
        if spec.get("required"):
            kwargs["required"] = True
        if spec.get("hidden"):
            kwargs["help"] = argparse.SUPPRESS
        if spec.get("metavar") is not None:
            kwargs["metavar"] = spec["metavar"]
        valued = spec["nargs"] != 0
        if valued:
            if spec["nargs"] is not None:
                kwargs["nargs"] = spec["nargs"]
            if spec["type"] is not None:
                kwargs["type"] = TYPES[spec["type"]]
            if spec["choices"] is not None:
                kwargs["choices"] = spec["choices"]
        if action in ("store_true", "store_false", "count"):
            kwargs.pop("nargs", None)
            parser.add_argument(*options, action=action, **kwargs)
        elif action in PLAIN_ACTIONS:
            if action == "store_const":
                kwargs["const"] = spec.get("const")
            parser.add_argument(*options, action=action, **kwargs)
        elif action == "boolean_optional":
            positive = [o for o in options if o == spec["primary"] or not o.startswith("--no-")]
            parser.add_argument(*positive, action=argparse.BooleanOptionalAction, **kwargs)
        elif action == "lora_paths":
            parser.add_argument(*options, action=LoRAPathAction, **kwargs)
        elif action.startswith("deprecated"):
            effect = {
                "deprecated": "none",
                "deprecated_store_true": "true",
                "deprecated_store_const": "const",
                "deprecated_alias": "value",
            }[action]
            if not valued:
                kwargs["nargs"] = 0
            parser.add_argument(
                *options,
                action=_Deprecated,
                messages={o: table[o]["deprecated"] for o in options},
                error=spec.get("error"),
                effect=effect,
                const_value=spec.get("const"),
                **kwargs,
            )
        else:
            raise SystemExit(f"sglang stand-in: flag data has an action it does not know: {action} ({options})")


def server_parser(prog: str = SERVER_PROG, version: str | None = None) -> argparse.ArgumentParser:
    version = version or standin_version()
    parser = argparse.ArgumentParser(prog=prog, allow_abbrev=DATA.SGLANG_CLI_ALLOW_ABBREV.get(version, True))
    add_options(parser, version_data(version))
    return parser


def bench_one_batch_parser(version: str | None = None) -> argparse.ArgumentParser:
    version = version or standin_version()
    parser = argparse.ArgumentParser()
    add_options(parser, version_data(version))
    add_options(parser, DATA.SGLANG_BENCH_FLAGS["one_batch"][version])
    return parser


def bench_serving_parser(version: str | None = None) -> argparse.ArgumentParser:
    version = version or standin_version()
    parser = argparse.ArgumentParser(description=DATA.SGLANG_BENCH_SERVING_DESCRIPTION[version])
    add_options(parser, DATA.SGLANG_BENCH_FLAGS["serving"][version])
    return parser


# --- --config FILE.yaml -------------------------------------------------------------------------------------------


def _yaml_scalar(text: str):
    text = text.strip()
    if text == "" or text in ("~", "null", "Null", "NULL"):
        return None
    if text in ("true", "True", "TRUE", "yes", "Yes", "on", "On"):
        return True
    if text in ("false", "False", "FALSE", "no", "No", "off", "Off"):
        return False
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    if text.startswith("[") and text.endswith("]"):
        inner = text[1:-1].strip()
        return [_yaml_scalar(part) for part in inner.split(",")] if inner else []
    if text.startswith("{"):
        return json.loads(text)
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _flat_yaml(text: str) -> dict:
    """Flat `key: value` YAML (scalars, [a, b] and `- item` lists), for hosts without PyYAML."""
    data: dict = {}
    last_key = None
    for raw_line in text.splitlines():
        line = raw_line.split(" #", 1)[0].rstrip()
        if not line.strip() or line.lstrip().startswith("#") or line.strip() == "---":
            continue
        if line.lstrip().startswith("- ") and last_key is not None:
            if not isinstance(data[last_key], list):
                data[last_key] = []
            data[last_key].append(_yaml_scalar(line.lstrip()[2:]))
            continue
        key, sep, value = line.partition(":")
        if not sep or line[0].isspace():
            raise ValueError(f"stand-in YAML reader: cannot read line {raw_line!r} (flat key: value files only)")
        last_key = key.strip()
        data[last_key] = _yaml_scalar(value)
    return data


def _read_yaml(path: str) -> dict:
    suffix = Path(path).suffix.lower()
    if suffix not in (".yaml", ".yml"):
        raise ValueError(f"Config file must be YAML format, got: {suffix}")
    if not Path(path).exists():
        raise ValueError(f"Config file not found: {path}")
    text = Path(path).read_text()
    try:
        import yaml  # python3-yaml in the image, as the real merger uses PyYAML

        data = yaml.safe_load(text)
    except ImportError:
        data = _flat_yaml(text)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError("Config file must contain a dictionary at root level")
    return data


def merge_config(argv: list[str], version: str | None = None) -> list[str]:
    """SGLang's ConfigArgumentMerger: YAML options first, then the command line, which wins."""
    version = version or standin_version()
    indices = [i for i, arg in enumerate(argv) if arg == "--config"]
    if not indices:
        return argv
    if len(indices) > 1:
        raise ValueError("Multiple config files specified! Only one allowed.")
    index = indices[0]
    if index == len(argv) - 1:
        raise ValueError("No config file specified after --config flag!")
    store_true = DATA.SGLANG_CONFIG_STORE_TRUE[version]
    unsupported = DATA.SGLANG_CONFIG_UNSUPPORTED[version]
    merged: list[str] = []
    for key, value in _read_yaml(argv[index + 1]).items():
        key_norm = key.replace("-", "_")
        if key_norm in unsupported:
            raise ValueError(f"Unsupported config option '{key_norm}' with action '{unsupported[key_norm]}'")
        if isinstance(value, bool):
            if key_norm in store_true:
                if value:
                    merged.append(f"--{key}")
            else:
                merged.extend([f"--{key}", str(value).lower()])
        elif isinstance(value, list):
            if value:
                merged.append(f"--{key}")
                merged.extend(str(item) for item in value)
        elif isinstance(value, dict):
            merged.extend([f"--{key}", json.dumps(value)])
        else:
            merged.extend([f"--{key}", str(value)])
    return merged + argv[:index] + argv[index + 2 :]


def parse_server_args(argv: list[str], prog: str = SERVER_PROG) -> argparse.Namespace:
    """prepare_server_args: merge --config, then parse; argparse exits 2 on a bad flag."""
    if "--config" in argv:
        argv = merge_config(list(argv))
    return server_parser(prog).parse_args(argv)
