#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: sglang_tls_proxy
short_description: Run, replace or remove the TLS proxy container in front of an SGLang server
version_added: 0.1.0
author: datacrunch.sglang maintainers (@datacrunch-sglang)
description:
  - Keeps the nginx container of role M(datacrunch.sglang.sglang_tls) on the host, with the host network, restart policy
    C(unless-stopped), log rotation (C(max-size=10m), C(max-file=3) for the engine's default log driver), and
    O(dir) mounted read-only at the same path, from which nginx reads C(nginx.conf) and the certificate and key
    it names.
  - The container's C(datacrunch.sglang.tls-hash) label holds the hash of the wanted container (image, command,
    mount, network, restart and log settings, O(config_digest)). The proxy is replaced only when that hash differs
    or the proxy does not run.
  - The image is on the host (or pulled, per O(pull)) before the running proxy is removed. A new proxy that stops
    within 2 seconds (nginx refusing its configuration, a port in use) fails the module with its last log lines.
  - Only containers with a C(datacrunch.sglang.*) label are replaced or removed; a container of the same name
    without one is left alone (an error for O(state=present), a warning for O(state=absent)).
  - Options map to the variables of role M(datacrunch.sglang.sglang_tls) (C(sglang_tls_<option>)), which error
    messages name.
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Reports the pull, replacement or removal it would do, and does none of it.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
    details: The proxy's state, image and hash label before and after.
  idempotent:
    description: When run twice in a row outside check mode, with the same arguments, the second invocation
      indicates no change.
    support: full
    details: A running proxy whose hash label matches is left alone.
  platform:
    description: Target OS/families that can be operated against.
    support: full
    platforms: posix
options:
  state:
    description: C(present) keeps the proxy running as wanted; C(absent) removes the collection's proxy of that name.
    type: str
    choices: [present, absent]
    default: present
  container_name:
    description: Name of the proxy container.
    type: str
    default: sglang-tls-proxy
  image:
    description: The proxy's image (an nginx with a pinned tag). Required with O(state=present).
    type: str
  pull:
    description:
      - Image pull policy, applied when the proxy is made. C(missing) pulls an image that is not on the host,
        C(always) pulls before each new proxy (the local copy serves when the pull fails), C(never) fails when the
        image is missing.
    type: str
    choices: [missing, always, never]
    default: missing
  dir:
    description: Host directory of C(nginx.conf), the certificate and the key, mounted read-only at the same path.
    type: path
    default: /etc/datacrunch-sglang-tls
  config_digest:
    description:
      - A digest of the files the proxy reads (its configuration, certificate and key), e.g. their checksums
        joined. Another value replaces the proxy, so that nginx reads the new files. It ends up in a label, so never
        pass anything secret.
    type: str
    default: ""
requirements:
  - docker (Python SDK) on the host, in the collection's virtualenv (role C(datacrunch.sglang.host_venv))
seealso:
  - module: datacrunch.sglang.sglang_container
"""

EXAMPLES = r"""
- name: Run the TLS proxy (replaced when its configuration changed)
  datacrunch.sglang.sglang_tls_proxy:
    image: nginx:1.27.5
    dir: /etc/datacrunch-sglang-tls
    config_digest: "{{ [nginx_conf.checksum, cert.checksum, key.checksum] | join('|') }}"

- name: Remove it
  datacrunch.sglang.sglang_tls_proxy:
    state: absent
"""

RETURN = r"""
container:
  description: Name of the proxy container.
  returned: always
  type: str
  sample: sglang-tls-proxy
container_id:
  description: Id of the proxy container; empty when there is none (or, in check mode, none yet).
  returned: always
  type: str
tls_hash:
  description: The hash the proxy's C(datacrunch.sglang.tls-hash) label holds.
  returned: state=present
  type: str
  sample: 5f0c3e1d2b4a69788796a5b4c3d2e1f0
image:
  description: The proxy's image.
  returned: state=present
  type: str
  sample: nginx:1.27.5
actions:
  description: What the module did (or would do in check mode).
  returned: always
  type: list
  elements: str
  sample: ["pull nginx:1.27.5", "replace sglang-tls-proxy (its spec changed)"]
logs:
  description: The last log lines of a proxy that stopped right after it started.
  returned: failure
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.datacrunch.sglang.plugins.module_utils.common.docker_sdk import (
    DockerException,
    DockerUnavailable,
    connect,
)
from ansible_collections.datacrunch.sglang.plugins.module_utils.common.module_io import exit_with_result
from ansible_collections.datacrunch.sglang.plugins.module_utils.tls.proxy import ProxyError, TlsProxy, proxy_spec


def main():
    module = AnsibleModule(
        argument_spec={
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "container_name": {"type": "str", "default": "sglang-tls-proxy"},
            "image": {"type": "str"},
            "pull": {"type": "str", "choices": ["missing", "always", "never"], "default": "missing"},
            "dir": {"type": "path", "default": "/etc/datacrunch-sglang-tls"},
            "config_digest": {"type": "str", "default": ""},
        },
        required_if=[("state", "present", ["image"])],
        supports_check_mode=True,
    )
    params = module.params
    proxy = None
    try:
        proxy = TlsProxy(connect(), check_mode=module.check_mode)
        if params["state"] == "absent":
            result = proxy.remove(params["container_name"])
        else:
            spec = proxy_spec(params["container_name"], params["image"], params["dir"], params["config_digest"])
            result = proxy.ensure(spec, params["pull"])
    except DockerUnavailable as exc:
        module.fail_json(msg=str(exc), container=params["container_name"])
    except ProxyError as exc:
        module.fail_json(msg=str(exc), container=params["container_name"], actions=proxy.actions,
                         logs=exc.logs.splitlines())  # fmt: skip
    except DockerException as exc:
        module.fail_json(msg="the Docker engine refused: %s" % " ".join(str(exc).split())[:1000],
                         container=params["container_name"], actions=proxy.actions if proxy else [])  # fmt: skip
    exit_with_result(module, result)


if __name__ == "__main__":
    main()
