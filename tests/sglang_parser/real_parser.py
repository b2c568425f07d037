"""SGLang's own command-line parser, imported from an unpacked sglang wheel (see setup.sh).

Only this module imports `sglang`. One process holds one SGLang version (both are the package `sglang`), so the
tools around it (generate_flags.py, check_argv.py) start `python real_parser.py dump|check VERSION` under
.venv-sglang-parser, one process per version.

    python real_parser.py dump VERSION      JSON description of every option of that version's parser
    python real_parser.py check VERSION     reads a JSON list of argvs on stdin, writes a JSON list of results
    python real_parser.py model VERSION     reads a JSON list of {model, revision, trust_remote_code} on stdin, runs
                                            SGLang's get_config and get_tokenizer on each (HF_HOME, HF_HUB_OFFLINE
                                            from the environment), writes a JSON list of outcomes
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import io
import json
import logging
import os
import re
import sys
import types
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CACHE = HERE / ".cache"
VENV_PYTHON = ROOT / ".venv-sglang-parser" / "bin" / "python"
# What `sglang serve` and `python -m sglang.launch_server` call their parser (prepare_server_args).
PROG = "sglang serve"


def supported_versions() -> list[str]:
    """The versions with a requirements-<version>.txt: the ones setup.sh prepares."""
    names = (p.name[len("requirements-") : -len(".txt")] for p in HERE.glob("requirements-*.txt"))
    return sorted(names, key=lambda v: tuple(int(x) for x in v.split(".")))


_active: list[Path] = []


def active_source() -> Path:
    """The unpacked sglang of the version activate() put on sys.path."""
    return _active[0]


def activate(version: str) -> None:
    """Put that version's unpacked wheel and its per-version pins first on sys.path."""
    src, site = CACHE / f"sglang-{version}", CACHE / f"site-{version}"
    _active[:] = [src]
    for path in (src, site):
        if not path.is_dir():
            raise SystemExit(f"{path} is missing: run tests/sglang_parser/setup.sh")
    sys.path[:0] = [str(src), str(site)]


def _quiet_import():
    """Import SGLang's parser pieces with their import-time chatter kept off stdout."""
    warnings.simplefilter("ignore")
    with contextlib.redirect_stdout(io.StringIO()):
        from sglang.srt.server_args import ServerArgs

        try:
            from sglang.srt.utils.server_args_config_parser import ConfigArgumentMerger
        except ImportError:
            from sglang.srt.server_args_config_parser import ConfigArgumentMerger
        from sglang.version import __version__
    return ServerArgs, ConfigArgumentMerger, __version__


def build_parser() -> tuple[argparse.ArgumentParser, type]:
    server_args, merger, _version = _quiet_import()
    parser = argparse.ArgumentParser(prog=PROG)
    server_args.add_cli_args(parser)
    return parser, merger


# ---------------------------------------------------------------------------------------------------------------
# dump: the parser described as data

ACTION_NAMES = {
    "_StoreAction": "store",
    "_StoreTrueAction": "store_true",
    "_StoreFalseAction": "store_false",
    "_StoreConstAction": "store_const",
    "_AppendAction": "append",
    "_AppendConstAction": "append_const",
    "_CountAction": "count",
    "_HelpAction": "help",
    "_VersionAction": "version",
    "BooleanOptionalAction": "boolean_optional",
    "LoRAPathAction": "lora_paths",
    "DeprecatedAction": "deprecated",
    "DeprecatedStoreTrueAction": "deprecated_store_true",
    "DeprecatedStoreConstAction": "deprecated_store_const",
    "DeprecatedAliasStoreAction": "deprecated_alias",
}

# argparse type callables, by (module, name), to the names the generated data uses.
TYPE_NAMES = {
    ("builtins", "str"): "str",
    ("builtins", "int"): "int",
    ("builtins", "float"): "float",
    ("json", "loads"): "json",
    ("sglang.srt.utils.common", "json_list_type"): "json_list",
    ("sglang.srt.utils.common", "human_readable_int"): "human_readable_int",
    ("sglang.srt.utils.common", "nullable_str"): "nullable_str",
    ("sglang.srt.model_executor.cuda_graph_config", "parse_cuda_graph_config_arg"): "cuda_graph_config",
    ("sglang.srt.model_executor.cuda_graph_config", "parse_cuda_graph_backend_arg"): "cuda_graph_backend",
    ("sglang.benchmark.serving", "_finite_positive_float"): "finite_positive_float",
    ("sglang.benchmark.serving", "_goodput_slo"): "goodput_slo",
}


def _plain(value):
    """A JSON-able copy of a default or const; None where the parser holds an object that has no plain form."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        items = [_plain(v) for v in value]
        return None if any(i is None and v is not None for i, v in zip(items, value, strict=True)) else items
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _plain(v) for k, v in value.items()}
    return None


class _ParserError(Exception):
    pass


class _RaisingParser(argparse.ArgumentParser):
    def error(self, message):
        raise _ParserError(message)


def _deprecation(action: argparse.Action, option_string: str) -> tuple[str | None, str | None]:
    """(warning, error) that the real action gives for this spelling, taken by calling it."""
    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record):
            messages.append(record.getMessage())

    logger = logging.getLogger(type(action).__module__)
    handler = Collect()
    logger.addHandler(handler)
    try:
        value = None if action.nargs == 0 else (action.choices[0] if action.choices else "x")
        action(_RaisingParser(prog=PROG), argparse.Namespace(), value, option_string)
    except _ParserError as exc:
        return None, str(exc)
    finally:
        logger.removeHandler(handler)
    text = "".join(messages)
    for escape in ("\033[1;33m", "\033[0m"):
        text = text.replace(escape, "")
    return text or None, None


def describe_actions(parser: argparse.ArgumentParser, skip: set[str] = frozenset()) -> dict[str, dict]:
    """Every option string of the parser (those in `skip` left out), in the parser's order."""
    flags: dict[str, dict] = {}
    for action in parser._actions:
        if skip.issuperset(action.option_strings):
            continue
        kind = type(action).__name__
        if kind not in ACTION_NAMES:
            raise SystemExit(
                f"unknown argparse action class {kind} for {action.option_strings}: map it in ACTION_NAMES"
            )
        if not action.option_strings:
            raise SystemExit(f"positional argument {action.dest}: the generated data has no place for it")
        type_name = None
        if action.type is not None:
            key = (getattr(action.type, "__module__", ""), getattr(action.type, "__name__", repr(action.type)))
            if key not in TYPE_NAMES:
                raise SystemExit(f"unknown argparse type {key} for {action.option_strings}: map it in TYPE_NAMES")
            type_name = TYPE_NAMES[key]
        choices = action.choices
        if choices is not None:
            # A set has no stable order; argparse lists choices in iteration order in its messages.
            choices = sorted(choices, key=str) if isinstance(choices, (set, frozenset)) else list(choices)
        for option in action.option_strings:
            spec = {
                "dest": action.dest,
                "action": ACTION_NAMES[kind],
                "nargs": action.nargs,
                "type": type_name,
                "choices": choices,
                "deprecated": None,
                "primary": action.option_strings[0],
                "default": _plain(action.default),
            }
            if kind.startswith("Deprecated"):
                warning, error = _deprecation(action, option)
                spec["deprecated"] = warning or error
                if error:
                    spec["error"] = error
            if kind == "DeprecatedStoreConstAction":
                spec["const"] = _plain(action.const_value)
            elif action.const is not None:
                spec["const"] = _plain(action.const)
            if action.metavar is not None:
                spec["metavar"] = action.metavar
            if action.required:
                spec["required"] = True
            if action.help == argparse.SUPPRESS:
                spec["hidden"] = True
            flags[option] = spec
    return flags


def describe(parser: argparse.ArgumentParser, merger_cls) -> dict:
    flags = describe_actions(parser)
    merger = merger_cls(parser)
    return {
        "flags": flags,
        "config_store_true": sorted(set(merger.store_true_actions)),
        "config_unsupported": {k: type(a).__name__ for k, a in sorted(merger.unsupported_actions.items())},
        "allow_abbrev": parser.allow_abbrev,
    }


# ---------------------------------------------------------------------------------------------------------------
# bench: the parsers of sglang.benchmark.one_batch and sglang.benchmark.serving
#
# Importing those modules pulls in model runners and dataset libraries that this venv does not have. Their parsers
# are plain argparse code, so each module's top-level statements are run one by one and the ones that need a
# missing library are left out; then SGLang's own code builds the parser, and parse_args is where it is taken.


def _load_leniently(name: str) -> types.ModuleType:
    path = active_source() / (name.replace(".", "/") + ".py")
    module = types.ModuleType(name)
    module.__file__ = str(path)
    sys.modules[name] = module
    for node in ast.parse(path.read_text(), str(path)).body:
        code = compile(ast.Module(body=[node], type_ignores=[]), str(path), "exec")
        try:
            exec(code, module.__dict__)  # noqa: S102 - SGLang's own module source, statement by statement
        except Exception:  # noqa: BLE001, S112 - a statement that needs a library this venv lacks
            continue
    return module


class _Captured(Exception):
    pass


def _capture_cli_parser(module: types.ModuleType) -> argparse.ArgumentParser:
    def capture(self, *args, **kwargs):
        raise _Captured(self)

    original = argparse.ArgumentParser.parse_args
    argparse.ArgumentParser.parse_args = capture
    try:
        module.cli_main()
    except _Captured as captured:
        return captured.args[0]
    finally:
        argparse.ArgumentParser.parse_args = original
    raise SystemExit(f"{module.__name__}.cli_main() never parsed its arguments")


# `python3 -m` entry points a deployment runs; which of them a version ships is part of its interface.
ENTRY_MODULES = [
    "sglang.launch_server",
    "sglang.bench_one_batch",
    "sglang.bench_serving",
    "sglang.bench_one_batch_server",
    "sglang.benchmark.one_batch",
    "sglang.benchmark.one_batch_server",
    "sglang.benchmark.serving",
    "sglang.compile_deep_gemm",
]


def describe_bench(server_parser: argparse.ArgumentParser) -> dict:
    one_batch = _load_leniently("sglang.benchmark.one_batch")
    bench_parser = argparse.ArgumentParser()
    one_batch.BenchArgs.add_cli_args(bench_parser)
    serving = _capture_cli_parser(_load_leniently("sglang.benchmark.serving"))
    server_options = set(server_parser._option_string_actions)
    return {
        # bench_one_batch takes every server option plus these (its BenchArgs)
        "one_batch": describe_actions(bench_parser, skip={"-h", "--help"} | server_options),
        "serving": describe_actions(serving),
        "serving_description": serving.description,
    }


# ---------------------------------------------------------------------------------------------------------------
# env: the SGLANG_* environment variables a version reads
#
# sglang.srt.environ.Envs declares most of them (EnvField descriptors); some code still reads a name directly with
# os.getenv / os.environ (SGLANG_HOST_IP in sglang/srt/utils/network.py, for one), so the package source is scanned
# for those too. Names that SGLang itself calls deprecated or removed (its _DEPRECATED_ENVS registry, and notices such
# as "SGLANG_ENABLE_SPEC_V2 has been removed" in 0.5.18's sglang/srt/arg_groups/speculative_hook.py) are kept apart
# with SGLang's own words, so that the collection refuses them with that note.

_DIRECT_READ = re.compile(
    r"""os\.(?:getenv|environ\.get|environ\.setdefault|environ\[)\(?\s*["'](SGLANG_[A-Z0-9_]+)["']"""
)
_REMOVAL_NOTICE = re.compile(
    r"""["'](?:Environment variable )?(SGLANG_[A-Z0-9_]+) ((?:was unused and )?has been removed|is deprecated)"""
)


def describe_env() -> dict:
    with contextlib.redirect_stdout(io.StringIO()):
        from sglang.srt import environ
    declared = {name for name, value in vars(environ.Envs).items() if isinstance(value, environ.EnvField)}
    read = set()
    removed: dict[str, str] = {}
    for path in sorted(active_source().rglob("*.py")):
        text = path.read_text(errors="replace")
        read.update(_DIRECT_READ.findall(text))
        for name, verb in _REMOVAL_NOTICE.findall(text):
            if name not in declared:
                removed.setdefault(name, f"{name} {verb} (notice in {path.relative_to(active_source())}).")
    for name, entry in sorted(getattr(environ, "_DEPRECATED_ENVS", {}).items()):
        message = f"{name} is deprecated."
        if entry.replacement:
            message += f" Use {entry.replacement} instead."
        if entry.note:
            message += f" {entry.note}"
        removed[name] = message
    names = sorted(name for name in declared | read if name.startswith("SGLANG_") and name not in removed)
    return {"names": names, "removed": dict(sorted(removed.items()))}


# ---------------------------------------------------------------------------------------------------------------
# check: argvs parsed the way prepare_server_args parses them


def _jsonable(namespace: argparse.Namespace) -> dict:
    return json.loads(json.dumps(vars(namespace), default=str))


def check(parser_factory, merger_cls, argv: list[str]) -> dict:
    """Parse argv like prepare_server_args: the --config YAML merged first, then argparse.

    rc 0 (parsed: args), 2 (argparse's usage error: message is its last line), 1 (the YAML merger raised,
    which the real server reports as a traceback).
    """
    parser = parser_factory()
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            if "--config" in argv:
                argv = merger_cls(parser).merge_config_with_args(list(argv))
            namespace = parser.parse_args(argv)
    except SystemExit as exc:
        lines = [line for line in stderr.getvalue().splitlines() if line.strip()]
        return {"rc": int(exc.code or 0), "message": lines[-1] if lines else "", "stderr": stderr.getvalue()}
    except (ValueError, OSError) as exc:
        return {"rc": 1, "message": f"{type(exc).__name__}: {exc}", "stderr": stderr.getvalue()}
    return {"rc": 0, "message": "", "stderr": stderr.getvalue(), "args": _jsonable(namespace), "argv": argv}


# ---------------------------------------------------------------------------------------------------------------
# model: how the server finds a model's config and tokenizer (what the SGLang stand-in must agree with)


def _server_error(exc: BaseException) -> str:
    """The error as the server would raise it.

    0.5.23's get_config, on an OSError or ValueError from the config parser, imports sglang.srt.configs.model_config
    to look for a LoRA pointer checkpoint (load_pointer_adapter) and re-raises the original error when there is
    none. That import needs compressed_tensors, which the image has and this venv does not: a ModuleNotFoundError
    raised while handling the original error stands for the original error here.
    """
    context = exc.__context__
    if isinstance(exc, ModuleNotFoundError) and isinstance(context, (OSError, ValueError)):
        exc = context
    return f"{type(exc).__name__}: {exc}"


def load_model_files(cases: list[dict]) -> list[dict]:
    """Run SGLang's own get_config and get_tokenizer for each {model, revision, trust_remote_code}.

    The caller sets HF_HOME / HF_HUB_OFFLINE for the process (huggingface_hub reads them at import). SGLang calls
    both at start-up with --model-path, --revision and --trust-remote-code (0.5.18 and 0.5.23:
    sglang/srt/utils/hf_transformers/config.py get_config, .../tokenizer.py get_tokenizer, called from ModelConfig
    and TokenizerManager). Each result: {"config": {"model_type", "max_position_embeddings"} | None,
    "config_error": "ExceptionClass: message" | None, "tokenizer": class name | None, "tokenizer_error": ...}.
    """
    with contextlib.redirect_stdout(io.StringIO()):
        from sglang.srt.utils.hf_transformers.config import get_config
        from sglang.srt.utils.hf_transformers.tokenizer import get_tokenizer
    results = []
    for case in cases:
        result: dict = {"config": None, "config_error": None, "tokenizer": None, "tokenizer_error": None}
        kwargs = {"trust_remote_code": bool(case.get("trust_remote_code")), "revision": case.get("revision")}
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            try:
                config = get_config(case["model"], **kwargs)
                result["config"] = {
                    "model_type": config.model_type,
                    "max_position_embeddings": getattr(config, "max_position_embeddings", None),
                }
            except Exception as exc:  # noqa: BLE001 - the outcome is the datum
                result["config_error"] = _server_error(exc)
            try:
                result["tokenizer"] = type(get_tokenizer(case["model"], **kwargs)).__name__
            except Exception as exc:  # noqa: BLE001 - the outcome is the datum
                result["tokenizer_error"] = _server_error(exc)
        results.append(result)
    return results


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("dump", "check", "model"):
        print(__doc__, file=sys.stderr)
        return 2
    command, version = argv
    activate(version)
    os.environ.setdefault("SGLANG_DISABLE_REQUEST_LOGGING", "1")
    if command == "model":
        # The parser is not needed: only the model-loading helpers are imported.
        from sglang.version import __version__

        if __version__ != version:
            raise SystemExit(f"unpacked sglang is {__version__}, expected {version}: run setup.sh --force")
        json.dump(load_model_files(json.load(sys.stdin)), sys.stdout)
        return 0
    server_args, merger_cls, real_version = _quiet_import()
    if real_version != version:
        raise SystemExit(f"unpacked sglang is {real_version}, expected {version}: run setup.sh --force")

    def parser_factory():
        parser = argparse.ArgumentParser(prog=PROG)
        server_args.add_cli_args(parser)
        return parser

    if command == "dump":
        parser = parser_factory()
        data = describe(parser, merger_cls)
        data["bench"] = describe_bench(parser)
        data["entry_modules"] = [
            name for name in ENTRY_MODULES if (active_source() / (name.replace(".", "/") + ".py")).is_file()
        ]
        data["env"] = describe_env()
        data["version"] = real_version
        json.dump(data, sys.stdout)
    else:
        argvs = json.load(sys.stdin)
        json.dump([check(parser_factory, merger_cls, list(a)) for a in argvs], sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
