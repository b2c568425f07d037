# -*- coding: utf-8 -*-
# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Root-only secret files on a host, and a digest that tells when they changed without revealing them.

Secrets reach the SGLang container only as files in a root-only directory mounted read-only: never on the command
line or in the environment, where `docker inspect` and `ps` show them. The container carries an HMAC of the secrets
under a per-host random salt as a label, so a changed key restarts the server and the label reveals nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets

from ansible_collections.datacrunch.sglang.plugins.module_utils.common.atomic_file import current_content, replace_file

SALT_FILE = ".digest-salt"


def ensure_private_dir(path, check_mode=False):
    """Create path (and parents) with mode 0700 for the leaf; return True when something changed."""
    changed = False
    if not os.path.isdir(path):
        changed = True
        if not check_mode:
            os.makedirs(path, mode=0o700, exist_ok=True)
    if os.path.isdir(path) and (os.stat(path).st_mode & 0o777) != 0o700:
        changed = True
        if not check_mode:
            os.chmod(path, 0o700)
    return changed


def write_private_file(path, content, check_mode=False):
    """Write content to path with mode 0600 atomically; return True when the file changed."""
    data = content.encode() if isinstance(content, str) else content
    current = current_content(path, binary=True)
    mode_ok = current is not None and (os.stat(path).st_mode & 0o777) == 0o600
    if current == data and mode_ok:
        return False
    if check_mode:
        return True
    replace_file(path, data, mode=0o600)
    return True


def remove_file(path, check_mode=False):
    if not os.path.lexists(path):
        return False
    if not check_mode:
        os.unlink(path)
    return True


def server_config_yaml(api_key):
    """SGLang's --config file carrying the API key (a JSON string is a valid YAML scalar for any key)."""
    return "api-key: %s\n" % json.dumps(api_key)


def host_salt(directory, check_mode=False):
    path = os.path.join(directory, SALT_FILE)
    existing = current_content(path, binary=True)
    if existing:
        return existing
    salt = secrets.token_hex(32).encode()
    if not check_mode and os.path.isdir(directory):
        write_private_file(path, salt)
    return salt


def secrets_digest(salt, values):
    """HMAC-SHA256 over the secret values (name -> value) under the host's salt; '' when there are none."""
    present = {name: value for name, value in sorted(values.items()) if value}
    if not present:
        return ""
    message = json.dumps(present, sort_keys=True).encode()
    return hmac.new(salt, message, hashlib.sha256).hexdigest()[:32]


def redact(text, secret_values):
    """Replace every secret value in text with a fixed mask."""
    for value in secret_values:
        if value and len(value) >= 4:
            text = text.replace(value, "********")
    return text
