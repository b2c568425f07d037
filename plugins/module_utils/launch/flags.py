# -*- coding: utf-8 -*-
# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Render and check SGLang command-line flags for one SGLang version.

The data (which options a version accepts, which take values, their choices and types) is generated from SGLang's
own argument parser into sglang_cli_flags.py; this module turns a mapping of flag -> value into argv and refuses what
that version would refuse.
"""

from __future__ import annotations

import json

from ansible_collections.datacrunch.sglang.plugins.module_utils.launch.cli_flags import (
    SGLANG_CLI_FLAGS,
    canonical_flag,
    flag_spec,
    match_flag,
    supported_versions,
)

__all__ = ["FlagError", "FlagTable", "supported_versions"]


class FlagError(ValueError):
    pass


class FlagTable:
    """The options one SGLang version accepts (aliases and unique prefixes resolved as its argparse does)."""

    def __init__(self, version):
        if version not in SGLANG_CLI_FLAGS:
            raise FlagError(
                "SGLang %s has no flag data in this collection (known: %s)" % (version, ", ".join(supported_versions()))
            )
        self.version = version

    @staticmethod
    def normalize(flag):
        flag = str(flag).strip()
        return flag if flag.startswith("-") else "--" + flag

    def knows(self, flag):
        return match_flag(self.version, self.normalize(flag))[0] is not None

    def why_unknown(self, flag):
        return match_flag(self.version, self.normalize(flag))[1]

    def spec(self, flag):
        spec = flag_spec(self.version, self.normalize(flag))
        if spec is None:
            raise FlagError("SGLang %s does not accept %s (%s)" % (self.version, self.normalize(flag),
                                                                   self.why_unknown(flag)))
        return spec

    def canonical(self, flag):
        """The primary option string for a flag, an alias or a unique prefix (--tp -> --tp-size)."""
        self.spec(flag)
        return canonical_flag(self.version, self.normalize(flag))

    def dest(self, flag):
        return self.spec(flag)["dest"]

    def takes_value(self, flag):
        return self.spec(flag).get("nargs") != 0

    def deprecation(self, flag):
        spec = self.spec(flag)
        if spec.get("deprecated"):
            return spec["deprecated"]
        if str(spec.get("action", "")).startswith("deprecated"):
            return spec.get("error") or "deprecated"
        return None

    def render(self, flag, value, origin):
        """argv tokens for flag=value; origin names where the value came from, for error messages."""
        option = self.canonical(flag)
        spec = self.spec(flag)
        action = spec.get("action")
        if value is None or value is False:
            if action == "store_false" and value is False:
                return [option]
            return []
        if not self.takes_value(flag):
            if value is not True:
                raise FlagError(
                    "%s: %s is a switch in SGLang %s; set it to true or false, not %r"
                    % (origin, option, self.version, value)
                )
            return [option]
        if value is True:
            raise FlagError(
                "%s: %s takes a value in SGLang %s; true is not one (give the value itself)"
                % (origin, option, self.version)
            )
        values = value if isinstance(value, (list, tuple)) else [value]
        rendered = [self._render_value(option, spec, item, origin) for item in values]
        nargs = spec.get("nargs")
        if action == "append":
            tokens = []
            for item in rendered:
                tokens += [option, item]
            return tokens
        if len(rendered) != 1 and nargs in (None, "?"):
            raise FlagError("%s: %s takes one value in SGLang %s, got %r" % (origin, option, self.version, value))
        if isinstance(nargs, int) and len(rendered) != nargs:
            raise FlagError(
                "%s: %s takes %d values in SGLang %s, got %r" % (origin, option, nargs, self.version, value)
            )
        return [option, *rendered]

    def _render_value(self, option, spec, value, origin):
        if isinstance(value, dict):
            text = json.dumps(value, sort_keys=True, separators=(",", ":"))
        elif isinstance(value, bool):
            text = "true" if value else "false"
        else:
            text = str(value)
        value_type = spec.get("type")
        if value_type == "int":
            try:
                int(text)
            except ValueError:
                raise FlagError(
                    "%s: %s takes an integer in SGLang %s, got %r" % (origin, option, self.version, value)
                ) from None
        elif value_type == "float":
            try:
                float(text)
            except ValueError:
                raise FlagError(
                    "%s: %s takes a number in SGLang %s, got %r" % (origin, option, self.version, value)
                ) from None
        choices = spec.get("choices")
        if choices and text not in [str(choice) for choice in choices]:
            raise FlagError(
                "%s: %s=%r is not one of SGLang %s's choices: %s"
                % (origin, option, value, self.version, ", ".join(str(choice) for choice in choices))
            )
        return text
