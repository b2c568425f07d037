# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: datacrunch
short_description: DataCrunch (Verda) instances and Instant Cluster workers as inventory hosts
version_added: 0.1.0
description:
  - Reads the instances and the Instant Clusters (with their worker nodes) of a DataCrunch (now Verda) account from
    the public API, with OAuth2 client credentials.
  - Standalone instances are reached on their public IP. Cluster workers are reached on their private IP through the
    cluster's jump host (an SSH C(ProxyCommand) through C(root@<jump host>)), and get C(sglang_cluster) (the
    cluster's hostname) and C(sglang_private_ip), so the collection's roles run them as one multi-node unit.
  - Hosts whose GPU model is in O(serving_gpu_models) also go into O(serving_group) (C(sglang_servers)), the group
    the deploy and benchmark playbooks target.
  - Every value that comes from the API is marked unsafe, so it is never templated.
  - The config file name must end with C(datacrunch.yml) or C(datacrunch.yaml).
author:
  - datacrunch.sglang maintainers (@datacrunch-sglang)
extends_documentation_fragment:
  - constructed
  - inventory_cache
  - datacrunch.sglang.datacrunch.inventory
options:
  plugin:
    description: Marks this file as a config of this plugin.
    required: true
    type: str
    choices: [datacrunch.sglang.datacrunch]
  statuses:
    description:
      - Keep only instances, clusters and workers with one of these statuses. An empty list keeps all.
      - Statuses are C(ordered), C(provisioning), C(running), C(offline), C(error), C(no_capacity), and others.
    type: list
    elements: str
    default: [running]
  instance_types:
    description:
      - Keep only instances of these types (for example C(8H200.141S.176V)) and clusters of these cluster types
        (for example C(16H200)). Empty keeps all.
    type: list
    elements: str
    default: []
  locations:
    description: Keep only these locations (C(FIN-01), C(FIN-02), C(FIN-03), C(ICE-01), ...). Empty keeps all.
    type: list
    elements: str
    default: []
  hostname_patterns:
    description:
      - Keep only hosts whose hostname matches one of these shell patterns (C(sglang-*)). A cluster worker also
        matches by its cluster's hostname. Empty keeps all.
    type: list
    elements: str
    default: []
  include_instances:
    description: Whether standalone instances become hosts.
    type: bool
    default: true
  include_clusters:
    description: Whether Instant Cluster workers become hosts.
    type: bool
    default: true
  group_prefix:
    description:
      - Prefix of the groups this plugin makes - C(<prefix>) (all hosts), C(<prefix>_instances),
        C(<prefix>_cluster_workers), C(<prefix>_type_<type>), C(<prefix>_location_<location>),
        C(<prefix>_cluster_<cluster hostname>).
    type: str
    default: datacrunch
  serving_group:
    description:
      - Group of the hosts that can serve, those with a GPU model in O(serving_gpu_models). The collection's
        playbooks target C(sglang_servers). Empty makes no such group.
    type: str
    default: sglang_servers
  serving_gpu_models:
    description: GPU models (as in the type name, C(H200) in C(8H200.141S.176V)) of the hosts in O(serving_group).
    type: list
    elements: str
    default: [H200]
  ssh_common_args:
    description:
      - SSH options for every host, and for the hop through a cluster's jump host.
      - The default accepts the host key of a host seen for the first time (freshly rented hosts have keys nobody
        knows in advance) and refuses a changed one. Set your own (for example a C(UserKnownHostsFile)) to pin keys.
    type: str
    default: -o StrictHostKeyChecking=accept-new
    env:
      - name: DATACRUNCH_SSH_COMMON_ARGS
  ssh_private_key_file:
    description:
      - Private key for every host and for the jump host hop. Empty leaves the choice to SSH (agent, ~/.ssh).
    type: path
    env:
      - name: DATACRUNCH_SSH_PRIVATE_KEY_FILE
notes:
  - Host variables - C(ansible_host), C(ansible_user) (root), C(datacrunch_id), C(datacrunch_hostname),
    C(datacrunch_status), C(datacrunch_instance_type), C(datacrunch_gpu_model), C(datacrunch_gpu_count),
    C(datacrunch_location), C(datacrunch_image), C(datacrunch_os_name), C(datacrunch_price_per_hour),
    C(datacrunch_tags), C(datacrunch_volume_ids) and more; on cluster workers also C(datacrunch_cluster_id),
    C(datacrunch_cluster_hostname), C(datacrunch_jump_host), C(sglang_cluster), C(sglang_private_ip), and the
    worker's storage as Verda documents it - C(datacrunch_local_disk) (C(/mnt/local_disk), its NVMe) and
    C(datacrunch_shared_mount) (the cluster's shared volume mount point, else C(/home)), which the defaults of
    C(sglang_hf_home) and C(sglang_cache_dir) read.
  - Requests are retried on rate limits (as Retry-After asks) and on server errors; turn O(cache) on to spare the
    API on repeated runs. A failed request never writes the cache.
  - A failed request fails the inventory source. For it to fail the run, set C(any_unparsed_is_failed = True) in the
    C([inventory]) section of C(ansible.cfg) (this collection's C(ansible.cfg) does); otherwise Ansible warns and runs
    on no hosts. Enable this plugin by name or through C(ansible.builtin.auto), not both, or a failure shows twice.
  - Inventory names are the hostnames made usable - characters outside C([A-Za-z0-9._-]) become hyphens, accents are
    dropped, twins get the first characters of their id appended; C(datacrunch_hostname) keeps the original.
"""

EXAMPLES = r"""
# inventories/datacrunch/datacrunch.yml - credentials and base URL from the environment
# (VERDA_CLIENT_ID, VERDA_CLIENT_SECRET, VERDA_BASE_URL); then: ansible-inventory -i datacrunch --graph
plugin: datacrunch.sglang.datacrunch
---
# Only H200 hosts in FIN-01 whose hostname starts with sglang-, grouped by a tag, cached for ten minutes
plugin: datacrunch.sglang.datacrunch
locations: [FIN-01]
instance_types: [8H200.141S.176V, 16H200]
hostname_patterns: ["sglang-*"]
keyed_groups:
  - key: datacrunch_tags.team | default('none')
    prefix: team
compose:
  sglang_profile: "'deepseek-r1-tp16' if datacrunch_kind == 'cluster_worker' else 'deepseek-r1'"
cache: true
cache_plugin: ansible.builtin.jsonfile
cache_connection: ~/.cache/datacrunch-inventory
cache_timeout: 600
"""

import hashlib

from ansible.errors import AnsibleParserError
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable

from ansible_collections.datacrunch.sglang.plugins.module_utils.datacrunch import api as datacrunch_api
from ansible_collections.datacrunch.sglang.plugins.module_utils.datacrunch import inventory as datacrunch_inventory

try:
    from ansible.utils.unsafe_proxy import wrap_var as make_unsafe
except ImportError:  # pragma: no cover - later ansible-core: data from plugins is untrusted unless marked otherwise
    def make_unsafe(value):
        return value


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):
    NAME = "datacrunch.sglang.datacrunch"

    def verify_file(self, path):
        return super().verify_file(path) and path.endswith(("datacrunch.yml", "datacrunch.yaml"))

    def _settings(self):
        try:
            settings = datacrunch_api.resolve_settings(
                client_id=self.get_option("client_id"),
                client_secret=self.get_option("client_secret"),
                base_url=self.get_option("base_url"),
            )
        except datacrunch_api.DataCrunchError as error:
            raise AnsibleParserError(str(error)) from None
        # A vault-encrypted secret arrives as an object that decrypts on str().
        settings.client_secret = str(settings.client_secret)
        settings.client_id = str(settings.client_id)
        return settings

    def _fetch(self, settings):
        client = datacrunch_api.DataCrunchClient(settings, timeout=self.get_option("timeout"), log=self.display.vvvv)
        try:
            instances = client.list_instances() if self.get_option("include_instances") else []
            clusters = client.list_clusters() if self.get_option("include_clusters") else []
        except datacrunch_api.DataCrunchError as error:
            raise AnsibleParserError(str(error)) from None
        # What is cached holds no secret: the cache may be a world-readable file.
        return {"instances": [datacrunch_api.without_secrets(item) for item in instances],
                "clusters": [datacrunch_api.without_secrets(item) for item in clusters]}

    def _inventory_options(self):
        return datacrunch_inventory.InventoryOptions(
            statuses=self.get_option("statuses"),
            instance_types=self.get_option("instance_types"),
            locations=self.get_option("locations"),
            hostname_patterns=self.get_option("hostname_patterns"),
            include_instances=self.get_option("include_instances"),
            include_clusters=self.get_option("include_clusters"),
            group_prefix=self.get_option("group_prefix"),
            serving_group=self.get_option("serving_group"),
            serving_gpu_models=self.get_option("serving_gpu_models"),
            ssh_common_args=self.get_option("ssh_common_args"),
            ssh_private_key_file=self.get_option("ssh_private_key_file"),
        )

    def _populate(self, data):
        options = self._inventory_options()
        hosts, skipped = datacrunch_inventory.build_hosts(data.get("instances"), data.get("clusters"), options)
        for name, reason in skipped:
            self.display.warning(f"DataCrunch inventory: left out {name!r}: {reason}")
        strict = self.get_option("strict")
        for host in hosts:
            name = make_unsafe(host.name)
            for group in host.groups:
                self.inventory.add_group(group)
            self.inventory.add_host(name, group=host.groups[0])
            for group in host.groups[1:]:
                self.inventory.add_child(group, name)
            for key, value in host.variables.items():
                if value is not None:
                    self.inventory.set_variable(name, key, make_unsafe(value))
            hostvars = self.inventory.get_host(name).get_vars()
            self._set_composite_vars(self.get_option("compose"), hostvars, name, strict=strict)
            hostvars = self.inventory.get_host(name).get_vars()
            self._add_host_to_composed_groups(self.get_option("groups"), hostvars, name, strict=strict)
            self._add_host_to_keyed_groups(self.get_option("keyed_groups"), hostvars, name, strict=strict)

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)
        settings = self._settings()
        # One cache entry per config file, API and account: switching VERDA_BASE_URL never reads another's hosts.
        account = hashlib.sha256(f"{settings.base_url}\n{settings.client_id}".encode()).hexdigest()[:12]
        cache_key = f"{self.get_cache_key(path)}_{account}"
        use_cache = self.get_option("cache")
        data = None
        if use_cache and cache:
            try:
                data = self._cache[cache_key]
            except KeyError:
                data = None
        if data is None:
            data = self._fetch(settings)
            if use_cache:
                self._cache[cache_key] = data
        self._populate(data)
