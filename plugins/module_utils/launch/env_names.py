# -*- coding: utf-8 -*-
# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One rule for every environment the collection passes into a container.

Profiles' ``env``, ``sglang_server_env`` and ``sglang_benchmark_env`` all end up in a container's environment,
which ``docker inspect`` shows to anyone who can talk to the Docker engine. So one rule decides which names may go
there, wherever they come from:

- A name that looks like a credential is refused (``HF_TOKEN``, ``..._TOKEN``, ``API_KEY``, ``SECRET``, ``PASSW``,
  ``PRIVATE_KEY``, ``ACCESS_KEY``, ``CREDENTIAL``), SGLang's own included (``SGLANG_S3_SECRET_ACCESS_KEY``,
  ``SGLANG_PRECISION_HF_TOKEN``): secrets reach containers as root-only files (``sglang_hf_token``,
  ``sglang_api_key``), never as environment. A unit such as ``..._PER_TOKEN`` is not a credential.
- Other ``SGLANG_*`` names pass when the SGLang version of the image reads them: the names its
  ``sglang.srt.environ.Envs`` declares and the ones its code reads directly with ``os.getenv`` (both generated from
  the released packages into sglang_cli_flags.py). A name SGLang marks as removed or deprecated, or one it does not
  know at all (a typo silently does nothing), is refused, with SGLang's own note or the nearest known name.
- Every other name passes.
"""

from __future__ import annotations

import difflib
import re

from ansible_collections.datacrunch.sglang.plugins.module_utils.launch.cli_flags import (
    SGLANG_ENV_NAMES,
    SGLANG_ENV_REMOVED,
)

SGLANG_PREFIX = "SGLANG_"
# `..._TOKEN` at the end (HF_TOKEN, GITHUB_TOKEN), but neither token counts (SGLANG_..._TOKENS) nor units
# (SGLANG_USE_AITER_FP8_PER_TOKEN).
SECRET_ENV_NAME = re.compile(
    r"^TOKEN$|(?<!_PER)_TOKEN$|HF_TOKEN|API_?KEY|SECRET|PASSW|PRIVATE_KEY|ACCESS_KEY|CREDENTIAL", re.IGNORECASE
)
# POSIX shells and Docker accept these; anything else is a typo or an injection attempt.
ENV_NAME_SYNTAX = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class EnvNameError(ValueError):
    """An environment name may not reach a container; the message names the variable, the name and the fix."""


def known_sglang_names(versions):
    """The SGLANG_* names that every one of `versions` reads (their union when several are given)."""
    names = set()
    for version in versions:
        names.update(SGLANG_ENV_NAMES.get(version, ()))
    return names


def _versions(version):
    if version and version in SGLANG_ENV_NAMES:
        return [version]
    return sorted(SGLANG_ENV_NAMES)


def check_env_name(name, origin, version="", extra_names=()):
    """Raise EnvNameError when `name` may not go into the container; origin names where it came from.

    version: the SGLang version of the image; empty (or one without data) checks against every known version.
    extra_names: SGLANG_* names the image reads beyond those of its version (sglang_server_env_names_extra).
    """
    versions = _versions(version)
    where = "%s[%r]" % (origin, name)
    if not isinstance(name, str) or not ENV_NAME_SYNTAX.match(name):
        raise EnvNameError(
            "%s is not an environment variable name (letters, digits and _, not starting with a digit)" % where
        )
    if SECRET_ENV_NAME.search(name):
        raise EnvNameError(
            "%s looks like a secret, and secrets never go into the container environment (docker inspect shows "
            "it): give the Hugging Face token as sglang_hf_token and the API key as sglang_api_key, which reach the "
            "container as root-only files, and remove %s from %s" % (where, name, origin)
        )
    if name.startswith(SGLANG_PREFIX):
        if name in known_sglang_names(versions) or name in (extra_names or ()):
            return
        label = " or ".join("SGLang %s" % v for v in versions)
        for noted in versions:
            note = SGLANG_ENV_REMOVED.get(noted, {}).get(name)
            if note:
                raise EnvNameError("%s: SGLang %s says: %s Remove it from %s" % (where, noted, note, origin))
        nearest = difflib.get_close_matches(name, sorted(known_sglang_names(versions)), n=1, cutoff=0.6)
        raise EnvNameError(
            "%s: %s reads no variable of that name, so it would do nothing%s; fix the name or remove it (an image "
            "built to read it: list it in sglang_server_env_names_extra)"
            % (where, label, " (nearest known: %s)" % nearest[0] if nearest else "")
        )


def check_env(mapping, origin, version="", extra_names=()):
    """Check every name of an environment mapping; return it with string keys and values."""
    if mapping in (None, ""):
        return {}
    if not isinstance(mapping, dict):
        raise EnvNameError("%s=%r must be a mapping of variable name to value" % (origin, mapping))
    for name, value in mapping.items():
        check_env_name(name, origin, version, extra_names)
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise EnvNameError("%s[%r]=%r must be a string or a number" % (origin, name, value))
    return {str(name): str(value) for name, value in mapping.items()}
