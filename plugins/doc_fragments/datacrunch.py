# -*- coding: utf-8 -*-
# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """The DataCrunch (Verda) API options, said once: DOCUMENTATION for the modules (datacrunch_instance,
    datacrunch_cluster, datacrunch_image; their argument spec is datacrunch_provision.API_OPTIONS), INVENTORY for the
    inventory plugin, which reads the same environment variables through Ansible's config."""

    DOCUMENTATION = r"""
options:
  api_url:
    description:
      - API base URL; defaults to E(VERDA_BASE_URL) (or E(DATACRUNCH_BASE_URL)), else C(https://api.verda.com/v1).
      - Plain C(http://) is accepted on loopback only, so the client secret never travels unencrypted.
    type: str
    aliases: [base_url]
  client_id:
    description: OAuth2 client id of an API key; defaults to E(VERDA_CLIENT_ID) (or E(DATACRUNCH_CLIENT_ID)).
    type: str
  client_secret:
    description:
      - OAuth2 client secret of that API key; defaults to E(VERDA_CLIENT_SECRET) (or E(DATACRUNCH_CLIENT_SECRET)).
      - Never printed, also not at C(-vvvv).
    type: str
  timeout:
    description: Seconds to wait for each answer of the API.
    type: int
    default: 30
"""

    INVENTORY = r"""
options:
  base_url:
    description:
      - The API's base URL. Plain C(http://) is accepted on loopback only, so the client secret never travels
        unencrypted.
    type: str
    default: https://api.verda.com/v1
    env:
      - name: VERDA_BASE_URL
      - name: DATACRUNCH_BASE_URL
  client_id:
    description:
      - OAuth2 client id of an API key (DataCrunch/Verda console, Keys).
      - Prefer the environment; the older C(DATACRUNCH_CLIENT_ID) is read too.
    type: str
    env:
      - name: VERDA_CLIENT_ID
      - name: DATACRUNCH_CLIENT_ID
  client_secret:
    description:
      - OAuth2 client secret of that API key. Never printed, also not at C(-vvvv).
      - Prefer the environment, or a vault-encrypted value in the config file.
    type: str
    env:
      - name: VERDA_CLIENT_SECRET
      - name: DATACRUNCH_CLIENT_SECRET
  timeout:
    description: Seconds to wait for each answer of the API.
    type: float
    default: 30
"""
