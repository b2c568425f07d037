# -*- coding: utf-8 -*-
# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every input of every role a deploy runs, checked at once on the controller before any host changes.

A role's own argument-spec check runs only when the role starts, after the roles before it have changed the host
(and a role skipped by a mistyped switch, `sglang_tls_enabled=ture`, is never checked at all). This checks the
values the user set against every role's `meta/argument_specs.yml` (types and choices, booleans strictly), then
the values a type cannot express: ports, Docker sizes, addresses and the API key. Each error names the variable,
the value and the fix.
"""

from __future__ import annotations

import ipaddress
import re

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.parsing.convert_bool import boolean

from ansible_collections.datacrunch.sglang.plugins.module_utils.firewall.ruleset import FirewallRequest, input_problems

# Docker's size grammar as the docker SDK reads it (docker/utils/utils.py parse_bytes): digits with an optional
# fraction, an optional unit b, k, m or g, and an optional trailing b ("32g", "32gb", "512m").
DOCKER_SIZE = re.compile(r"^[0-9]+(\.[0-9]+)?([bkmgBKMG][bB]?)?$")
SIZE_VARIABLES = ("sglang_server_shm_size", "sglang_server_log_max_size")
ADDRESS_VARIABLES = ("sglang_server_bind_host", "sglang_private_ip", "model_cache_fanout_address")
API_KEY_MIN_LENGTH = 16
SECRET_VARIABLES = ("sglang_api_key", "sglang_hf_token")
# The firewall's inputs, read by nft_ruleset as the host module reads them: {variable: FirewallRequest field}.
FIREWALL_FIELDS = {
    "sglang_firewall_client_ports": "client_ports",
    "sglang_firewall_local_ports": "local_ports",
    "sglang_firewall_ssh_ports": "ssh_ports",
    "sglang_firewall_unit_ports": "unit_ports",
    "sglang_firewall_client_cidrs": "client_cidrs",
    "sglang_firewall_refuse": "refuse",
    "sglang_firewall_table": "table",
}

# What argument_specs types take, in the words a user understands.
TYPE_FIX = {
    "bool": "true or false",
    "int": "a whole number",
    "float": "a number",
    "list": "a list",
    "dict": "a mapping",
    "path": "a path",
    "str": "a string",
}


class RoleInputError(Exception):
    pass


def _option_specs(spec_files):
    """{variable: (role, option spec)} from each role's argument_specs (entry point main)."""
    options = {}
    for role, document in spec_files.items():
        entry = ((document or {}).get("argument_specs") or {}).get("main") or {}
        for name, option in (entry.get("options") or {}).items():
            options[name] = (role, option)
    return options


def _validator_spec(option):
    """The part of an argument_specs option that ArgumentSpecValidator checks (no defaults, nothing required)."""
    keep = {key: option[key] for key in ("type", "choices", "elements", "options") if key in option}
    if "options" in keep:
        keep["options"] = {name: _validator_spec(sub) for name, sub in keep["options"].items()}
    return keep


def _strict_bool_error(name, value):
    """Ansible reads 'ture' as a string; argument specs would too, but say it plainly."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no", "on", "off", "1", "0"):
        return None
    if isinstance(value, int) and value in (0, 1):
        return None
    return "%s=%r is not a boolean; set true or false" % (name, value)


def _port_error(name, value):
    values = value if isinstance(value, list) else [value]
    for item in values:
        try:
            number = int(item)
        except (TypeError, ValueError):
            return "%s=%r must be a TCP port number (1-65535)" % (name, value)
        if not 1 <= number <= 65535 or str(item).strip() != str(number):
            return "%s=%r must be a TCP port number (1-65535)" % (name, value)
    return None


def docker_size_error(name, value):
    if DOCKER_SIZE.match(str(value).strip()):
        return None
    return ("%s=%r is not a size Docker understands; write a number with an optional unit b, k, m or g, e.g. "
            "32g or 512m" % (name, value))


def address_error(name, value):
    text = str(value).strip()
    if not text:
        return None
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return "%s=%r is not an IP address; give an address of the host (for example 10.0.0.5), or leave it empty" % (
            name, value)
    return None


def api_key_error(value):
    """Why a user-chosen sglang_api_key cannot work, or None. The key reaches SGLang's --api-key (through its
    --config file): a key that starts with '-' is read as another flag by SGLang's parser, and one with whitespace
    or a blank one does not survive the Authorization header."""
    if value is None or value == "":
        return None  # empty: the collection generates one
    if not isinstance(value, str):
        return "sglang_api_key must be a string; quote it"
    if not value.strip():
        return ("sglang_api_key is blank; leave it empty to have a key generated, or set a key of at least %d "
                "characters without whitespace" % API_KEY_MIN_LENGTH)
    if re.search(r"\s", value):
        return "sglang_api_key holds whitespace (not shown); use a key without spaces, tabs or newlines"
    if value.startswith("-"):
        return ("sglang_api_key starts with '-' (not shown): SGLang's parser reads it as another flag and the server "
                "never starts; choose a key that starts with a letter or digit")
    if len(value) < API_KEY_MIN_LENGTH:
        return ("sglang_api_key has %d characters (not shown), fewer than %d: it can be guessed; use a longer key, or "
                "leave it empty to have one generated" % (len(value), API_KEY_MIN_LENGTH))
    return None


def firewall_errors(values):
    """The firewall's inputs among values, checked by the code the host module runs (nft_ruleset). The checks
    between its port lists run only when every list is there (inside the role, its defaults included): before the
    roles run, a list the user left to its default is not known yet."""
    errors = []
    if not boolean(values.get("sglang_firewall_enabled", True), strict=False):
        return errors  # the role removes the firewall: its lists are not used
    span = values.get("sglang_firewall_dist_port_span")
    if span is not None:
        try:
            too_small = int(span) < 1
        except (TypeError, ValueError):
            too_small = True
        if too_small:
            errors.append("sglang_firewall_dist_port_span=%r must be a whole number of at least 1 (64 covers "
                          "SGLang's ports above the rendezvous port)" % (span,))
    given = {field: values[name] for name, field in FIREWALL_FIELDS.items() if name in values}
    if given:
        lists = ("sglang_firewall_client_ports", "sglang_firewall_local_ports", "sglang_firewall_ssh_ports")
        cross = all(name in values for name in lists)
        errors += input_problems(FirewallRequest(**given), cross=cross)
    return errors


def check_role_inputs(spec_files, values):
    """Errors (a list of sentences) for the user-set values of the roles' variables.

    spec_files: {role name: parsed meta/argument_specs.yml}; values: {variable: value} of the variables the user
    set (templated). Variables no role declares are left alone.
    """
    options = _option_specs(spec_files)
    errors = []
    typed = {}  # the values their role's spec accepts, for the firewall's own checks
    for name in sorted(values):
        if name not in options:
            continue
        role, option = options[name]
        value = values[name]
        if value is None:
            continue
        kind = option.get("type", "str")
        if kind == "bool":
            message = _strict_bool_error(name, value)
            if message:
                errors.append(message)
                continue
        secret = option.get("no_log") or name in SECRET_VARIABLES
        validation = ArgumentSpecValidator({name: _validator_spec(option)}).validate({name: value})
        if validation.error_messages:
            detail = "; ".join(validation.error_messages)
            if secret:
                errors.append("%s (not shown) is refused by role %s: it must be %s" % (
                    name, role, TYPE_FIX.get(kind, kind)))
                continue
            fix = TYPE_FIX.get(kind, kind)
            if option.get("choices"):
                fix = "one of %s" % ", ".join(str(choice) for choice in option["choices"])
            errors.append("%s=%r is refused by role %s: %s; set %s" % (name, value, role, detail, fix))
            continue
        typed[name] = value
        if name in FIREWALL_FIELDS:
            continue  # firewall_errors, below
        message = None
        if (kind == "int" and name.endswith("_port")) or (kind == "list" and option.get("elements") == "int"
                                                          and name.endswith("_ports")):
            message = _port_error(name, value)
        elif name in SIZE_VARIABLES:
            message = docker_size_error(name, value)
        elif name in ADDRESS_VARIABLES:
            message = address_error(name, value)
        elif name == "sglang_api_key":
            message = api_key_error(value)
        if message:
            errors.append(message)
    return errors + firewall_errors(typed)
