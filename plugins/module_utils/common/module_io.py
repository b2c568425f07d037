# -*- coding: utf-8 -*-
# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the modules share around AnsibleModule: their validated parameters into a request, their result out."""

from __future__ import annotations

import dataclasses


def pick(params, names):
    """The named parameters as keyword arguments (the module's option names are the callee's)."""
    return {name: params[name] for name in names}


def request_from_params(cls, params, **given):
    """The dataclass cls with each field taken from the parameter of the same name, or from given.

    A field that neither has keeps its default; a parameter that no field names is left out.
    """
    values = {}
    for field in dataclasses.fields(cls):
        if field.name in given:
            values[field.name] = given[field.name]
        elif field.name in params:
            values[field.name] = params[field.name]
    return cls(**values)


def exit_with_result(module, result):
    """exit_json with the result's warnings shown as Ansible warnings and its diff kept only under --diff."""
    for warning in result.pop("warnings", None) or []:
        module.warn(warning)
    if "diff" in result and not module._diff:
        result.pop("diff")
    module.exit_json(**result)
