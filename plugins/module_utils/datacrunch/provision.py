# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Renting and releasing DataCrunch (Verda) instances and Instant Clusters, idempotent by hostname.

The modules datacrunch_instance and datacrunch_cluster are thin wrappers around ensure_instance and ensure_cluster.
Every check that can fail does so before the first request that changes anything; check mode sends reads only.
"""

from __future__ import annotations

import re
import socket
import time

from ansible.module_utils.basic import env_fallback

from ansible_collections.datacrunch.sglang.plugins.module_utils.datacrunch.api import (
    BASE_URL_ENV,
    CLIENT_ID_ENV,
    CLIENT_SECRET_ENV,
    DataCrunchActionError,
    DataCrunchAPIError,
    DataCrunchClient,
    DataCrunchError,
    is_gone,
    is_gone_message,
    resolve_settings,
    without_secrets,
)

HOSTNAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,62}$")
# Objects on their way out: for idempotence by hostname they no longer exist.
LEAVING = frozenset({"deleting", "discontinued", "deleted"})
# Statuses after which an object is released (no longer billed): the end of a wait for state absent.
GONE = frozenset({"discontinued", "deleted"})
# Statuses an order never recovers from.
FAILED = frozenset({"error", "no_capacity", "discontinued", "notfound"})
LOCATIONS_HINT = "FIN-01, FIN-02, FIN-03, ICE-01"


class ProvisionError(DataCrunchError):
    """A request that cannot be met, with what to change."""


# Module arguments every DataCrunch module takes: where the API is and as whom to talk to it.
API_ARGUMENT_SPEC = {
    "api_url": {"type": "str", "aliases": ["base_url"], "fallback": (env_fallback, list(BASE_URL_ENV))},
    "client_id": {"type": "str", "fallback": (env_fallback, list(CLIENT_ID_ENV))},
    "client_secret": {"type": "str", "no_log": True, "fallback": (env_fallback, list(CLIENT_SECRET_ENV))},
    "timeout": {"type": "int", "default": 30},
}


def client_from_params(params, log=None):
    settings = resolve_settings(
        client_id=params.get("client_id"),
        client_secret=params.get("client_secret"),
        base_url=params.get("api_url"),
        base_url_variable="api_url (VERDA_BASE_URL)",
    )
    return DataCrunchClient(settings, timeout=params.get("timeout") or 30, log=log)


def run_module(module, answer):
    """A DataCrunch module's run: the client from the module's options, then answer(client, params, check_mode); an
    API error fails the module with the API's message and code."""
    try:
        client = client_from_params(module.params, log=module.debug)
        result = answer(client, module.params, check_mode=module.check_mode)
    except DataCrunchError as error:
        module.fail_json(msg=str(error), code=error.code)
    module.exit_json(**result)


def public(record):
    """An API object as the modules return it: without secrets."""
    return without_secrets(record)


def check_hostname(hostname, variable="hostname"):
    if not isinstance(hostname, str) or not HOSTNAME_PATTERN.match(hostname):
        raise ProvisionError(
            f"{variable}={hostname!r} is not a valid hostname: use 1 to 63 letters, digits and hyphens, "
            "starting with a letter or digit (for example sglang-r1-fin01)"
        )


def _require(params, names, what):
    missing = [name for name in names if not params.get(name)]
    if missing:
        raise ProvisionError(
            f"{what} does not exist yet and creating it needs {', '.join(missing)}: set "
            + ", ".join(f"{name}" for name in missing)
            + (f" (locations: {LOCATIONS_HINT})" if "location" in missing else "")
        )


def resolve_ssh_keys(client, wanted):
    """SSH key ids from ids or names of keys in the account; unknown ones fail with the names that exist."""
    if not wanted:
        return []
    keys = client.list_ssh_keys()
    by_id = {key.get("id"): key for key in keys}
    by_name = {}
    for key in keys:
        by_name.setdefault(key.get("name"), []).append(key.get("id"))
    ids = []
    for entry in wanted:
        if entry in by_id:
            ids.append(entry)
        elif len(by_name.get(entry, [])) == 1:
            ids.append(by_name[entry][0])
        elif entry in by_name:
            raise ProvisionError(f"ssh_keys entry {entry!r} names {len(by_name[entry])} keys: give the key id instead")
        else:
            known = ", ".join(sorted(str(name) for name in by_name)) or "none"
            raise ProvisionError(
                f"ssh_keys entry {entry!r} is neither the id nor the name of an SSH key in the account "
                f"(keys: {known}): add the key in the DataCrunch (Verda) console or fix the name"
            )
    return ids


def _one_by_hostname(objects, hostname, kind):
    matches = [item for item in objects if item.get("hostname") == hostname and item.get("status") not in LEAVING]
    if len(matches) > 1:
        ids = ", ".join(str(item.get("id")) for item in matches)
        raise ProvisionError(
            f"hostname={hostname!r} names {len(matches)} {kind}s ({ids}); renting by hostname needs it to name one: "
            f"delete the extra ones in the console or choose another hostname"
        )
    return matches[0] if matches else None


def wait_for_ssh(address, port=22, timeout=600.0, clock=time.monotonic, sleep=time.sleep):
    """Waits until an SSH server answers on address:port with its protocol banner ("SSH-2.0-...")."""
    deadline = clock() + timeout
    last = "no answer"
    while True:
        try:
            with socket.create_connection((address, port), timeout=5) as connection:
                connection.settimeout(5)
                banner = connection.recv(256)
            if banner.startswith(b"SSH-"):
                return banner.split(b"\r\n", 1)[0].decode("ascii", errors="replace")
            last = f"answered {banner[:40]!r}, not an SSH banner"
        except OSError as error:
            last = str(error)
        if clock() >= deadline:
            raise ProvisionError(
                f"no SSH server answered on {address}:{port} within {timeout:g}s ({last}): the host may still be "
                "booting (raise wait_timeout) or a firewall blocks port 22"
            )
        sleep(2)


def _checked_waiter(params, default_timeout, clock, sleep):
    """Checks what every request needs (hostname, wait_timeout) and starts the one deadline of the whole call."""
    check_hostname(params["hostname"])
    if params.get("wait_timeout") is not None and params["wait_timeout"] <= 0:
        raise ProvisionError(f"wait_timeout={params['wait_timeout']!r} must be more than 0 seconds")
    return _Waiter(params.get("wait_timeout") or default_timeout, clock=clock, sleep=sleep)


def _check_drift(kind, current, params, fields):
    """An existing object must be what was asked for in what cannot change in place."""
    for field in fields:
        wanted = params.get(field)
        if wanted and current.get(field) != wanted:
            raise ProvisionError(
                f"{kind} {params['hostname']!r} exists as {field} {current.get(field)!r}, but {field}={wanted!r} "
                f"was asked for: {field} cannot change in place. Delete the {kind} first (state: absent) or "
                "choose another hostname"
            )


def _ssh_banner(params, waiter, address):
    """Waits, within what is left of the deadline, until SSH answers on address."""
    remaining = max(1.0, waiter.deadline - waiter.clock())
    return wait_for_ssh(address, params.get("ssh_port") or 22, remaining, clock=waiter.clock, sleep=waiter.sleep)


class _Waiter:
    """Polls an object until a condition holds, with a growing interval and one deadline."""

    def __init__(self, timeout, clock=time.monotonic, sleep=time.sleep):
        self.deadline = clock() + timeout
        self.timeout = timeout
        self.clock = clock
        self.sleep = sleep

    def until(self, fetch, done, describe):
        interval = 0.5
        while True:
            current = fetch()
            if done(current):
                return current
            if self.clock() >= self.deadline:
                raise ProvisionError(
                    f"{describe(current)} after {self.timeout:g}s: raise wait_timeout, or look at it in the console"
                )
            self.sleep(min(interval, max(0.0, self.deadline - self.clock())))
            interval = min(interval * 2, 10.0)


def _diff(before, after, fields):
    def view(record, status=None):
        if record is None:
            return {}
        shown = {field: record.get(field) for field in fields}
        if status:
            shown["status"] = status
        return shown

    return {"before": view(before), "after": view(after[0], after[1]) if after else {}}


# ---- instances ---------------------------------------------------------------------------------------------------

INSTANCE_FIELDS = ("hostname", "status", "instance_type", "location", "image")


def _instance_payload(params, ssh_key_ids):
    payload = {
        "instance_type": params["instance_type"],
        "image": params["image"],
        "hostname": params["hostname"],
        "description": params.get("description") or params["hostname"],
        "ssh_key_ids": ssh_key_ids,
        "location_code": params["location"],
        "startup_script_id": params.get("startup_script_id"),
        "volumes": [
            {"name": volume["name"], "size": volume["size"], "type": volume.get("type") or "NVMe"}
            for volume in params.get("volumes") or []
        ],
        "existing_volumes": list(params.get("existing_volumes") or []),
        "is_spot": bool(params.get("is_spot")),
    }
    if params.get("os_volume"):
        payload["os_volume"] = {"name": params["os_volume"]["name"], "size": params["os_volume"]["size"]}
    for key in ("contract", "pricing"):
        if params.get(key):
            payload[key] = params[key]
    return payload


def ensure_instance(client, params, check_mode=False, clock=time.monotonic, sleep=time.sleep):
    """Brings the instance named params['hostname'] to params['state']; returns the module result."""
    hostname = params["hostname"]
    state = params.get("state") or "running"
    waiter = _checked_waiter(params, 1800, clock, sleep)
    current = _one_by_hostname(client.list_instances(), hostname, "instance")
    wait = params.get("wait", True)
    actions = []

    def fetch(instance_id):
        return lambda: client.get_instance(instance_id)

    if state == "absent":
        if current is None:
            return {"changed": False, "instance": None, "actions": [], "diff": _diff(None, None, INSTANCE_FIELDS)}
        diff = _diff(current, None, INSTANCE_FIELDS)
        if not check_mode:
            volume_ids = None
            if params.get("delete_volumes"):
                volume_ids = [v for v in [current.get("os_volume_id"), *(current.get("volume_ids") or [])] if v]
            try:
                client.instance_action([current["id"]], "delete", volume_ids=volume_ids)
            except DataCrunchAPIError as error:
                # Deleted meanwhile (by another run, or in the console): what was asked for holds.
                if not _already_gone(error):
                    raise
            if wait:
                waiter.until(fetch(current["id"]), lambda item: item is None or item.get("status") in GONE,
                             lambda item: f"instance {hostname!r} still {item.get('status')!r}")
        return {"changed": True, "instance": public(current), "actions": ["delete"], "diff": diff}

    if current is None:
        _require(params, ("instance_type", "image", "location"), f"instance {hostname!r}")
        ssh_key_ids = resolve_ssh_keys(client, params.get("ssh_keys"))
        if not client.instance_available(params["instance_type"], params["location"], params.get("is_spot")):
            raise ProvisionError(
                f"no capacity for instance_type={params['instance_type']!r} in location={params['location']!r} now: "
                f"try another location ({LOCATIONS_HINT}) or later; nothing was ordered",
                code="no_capacity",
            )
        target = "offline" if state == "stopped" else "running"
        diff = _diff(None, ({"hostname": hostname, "instance_type": params["instance_type"],
                             "location": params["location"], "image": params["image"]}, target), INSTANCE_FIELDS)
        if check_mode:
            return {"changed": True, "instance": None, "actions": ["create"], "diff": diff}
        instance_id = client.create_instance(_instance_payload(params, ssh_key_ids))
        actions.append("create")
        current = client.get_instance(instance_id) or {"id": instance_id, "status": "ordered", "hostname": hostname}
        if not wait and state != "stopped":
            return {"changed": True, "instance": public(current), "actions": actions, "diff": diff}
        current = _wait_running(client, waiter, current, hostname)
        before = None
    else:
        _check_drift("instance", current, params, ("instance_type", "location"))
        before = dict(current)

    status = current.get("status")
    if status in FAILED:
        raise ProvisionError(
            f"instance {hostname!r} ({current.get('id')}) is in status {status!r}: delete it (state: absent) "
            "and rent again, or look at it in the console"
        )
    if state in ("running", "present") and status in ("ordered", "provisioning", "new", "validating", "pending"):
        if wait:
            current = _wait_running(client, waiter, current, hostname)
    elif state == "running" and status == "offline":
        if check_mode:
            return _changed_instance(before, current, "running", ["start"])
        client.instance_action([current["id"]], "start")
        actions.append("start")
        if wait:
            current = _wait_running(client, waiter, current, hostname)
    elif state == "stopped" and status != "offline":
        if status != "running":
            current = _wait_running(client, waiter, current, hostname)
        if check_mode:
            return _changed_instance(before, current, "offline", ["shutdown"])
        client.instance_action([current["id"]], "shutdown")
        actions.append("shutdown")
        if wait:
            current = waiter.until(fetch(current["id"]), lambda item: item and item.get("status") == "offline",
                                   lambda item: f"instance {hostname!r} still {item and item.get('status')!r}")

    if wait and current.get("status") == "running" and not current.get("ip") and not check_mode:
        # Running before its address is assigned: wait for the address, within the same deadline.
        current = _wait_running(client, waiter, current, hostname)
    ssh = None
    if wait and params.get("wait_for_ssh", True) and current.get("status") == "running" and not check_mode:
        ssh = _ssh_banner(params, waiter, current["ip"])
    result = {
        "changed": bool(actions),
        "instance": public(current),
        "actions": actions,
        "diff": _diff(before, (current, current.get("status")), INSTANCE_FIELDS),
    }
    if ssh:
        result["ssh_banner"] = ssh
    return result


def _changed_instance(before, current, status, actions):
    return {"changed": True, "instance": public(current), "actions": actions,
            "diff": _diff(before, (current, status), INSTANCE_FIELDS)}


def _already_gone(error):
    if isinstance(error, DataCrunchActionError):
        return bool(error.failures) and all(status == 404 or is_gone_message(message)
                                            for _id, message, status in error.failures)
    return is_gone(error)


def _still(hostname, item):
    if item and item.get("status") == "running" and not item.get("ip"):
        return f"instance {hostname!r} is running but the API gives it no IP address yet"
    return f"instance {hostname!r} is still {item and item.get('status')!r}"


def _release(call, done):
    """Releases a failed order; says whether that worked, for the error message."""
    try:
        call()
    except DataCrunchAPIError as error:
        return f"could not be {done} ({error.message}); release it in the console, it may be billed"
    return f"was {done}"


def _wait_running(client, waiter, current, hostname):
    instance_id = current["id"]

    def settled(item):
        return item is None or item.get("status") in FAILED or (item.get("status") == "running" and item.get("ip"))

    item = waiter.until(lambda: client.get_instance(instance_id), settled, lambda item: _still(hostname, item))
    if item is None:
        raise ProvisionError(f"instance {hostname!r} ({instance_id}) disappeared while starting: rent it again")
    if item.get("status") in FAILED:
        reason = item.get("status")
        # An order that cannot be met still holds its hostname: release it before reporting.
        released = _release(lambda: client.instance_action([instance_id], "delete"), "deleted")
        hint = ("no capacity for it now: try another location or later" if reason == "no_capacity"
                else "look at it in the console")
        raise ProvisionError(f"instance {hostname!r} ({instance_id}) ended in status {reason!r} and {released}: "
                             f"{hint}", code=reason)
    return item


# ---- Instant Clusters -------------------------------------------------------------------------------------------

CLUSTER_FIELDS = ("hostname", "status", "cluster_type", "location", "image")
DEFAULT_SHARED_VOLUME_GB = 30000


def _cluster_payload(params, ssh_key_ids):
    payload = {
        "hostname": params["hostname"],
        "cluster_type": params["cluster_type"],
        "image": params["image"],
        "description": params.get("description") or params["hostname"],
        "ssh_key_ids": ssh_key_ids,
        "contract": params.get("contract") or "PAY_AS_YOU_GO",
        "location_code": params["location"],
        "startup_script_id": params.get("startup_script_id"),
        "shared_volume": {
            "name": params.get("shared_volume_name") or params["hostname"] + "-shared-volume",
            "size": params.get("shared_volume_size") or DEFAULT_SHARED_VOLUME_GB,
        },
    }
    if params.get("existing_volumes"):
        payload["existing_volumes"] = [{"id": volume_id} for volume_id in params["existing_volumes"]]
    return payload


def cluster_ready(cluster):
    workers = cluster.get("worker_nodes") or []
    return (
        cluster.get("status") == "running"
        and bool(cluster.get("ip"))
        and bool(workers)
        and all(worker.get("private_ip") for worker in workers)
    )


def ensure_cluster(client, params, check_mode=False, clock=time.monotonic, sleep=time.sleep):
    """Brings the Instant Cluster named params['hostname'] to params['state'] (present or absent)."""
    hostname = params["hostname"]
    state = params.get("state") or "present"
    waiter = _checked_waiter(params, 3600, clock, sleep)
    current = _one_by_hostname(client.list_clusters(), hostname, "cluster")
    wait = params.get("wait", True)

    if state == "absent":
        if current is None:
            return {"changed": False, "cluster": None, "actions": [], "diff": _diff(None, None, CLUSTER_FIELDS)}
        if not check_mode:
            client.discontinue_clusters([current["id"]])
            if wait:
                waiter.until(lambda: client.get_cluster(current["id"]),
                             lambda item: item is None or item.get("status") in GONE,
                             lambda item: f"cluster {hostname!r} still {item.get('status')!r}")
        return {"changed": True, "cluster": public(current), "actions": ["discontinue"],
                "diff": _diff(current, None, CLUSTER_FIELDS)}

    actions = []
    before = None
    if current is None:
        _require(params, ("cluster_type", "image", "location"), f"cluster {hostname!r}")
        ssh_key_ids = resolve_ssh_keys(client, params.get("ssh_keys"))
        if not client.cluster_available(params["cluster_type"], params["location"]):
            raise ProvisionError(
                f"no capacity for cluster_type={params['cluster_type']!r} in location={params['location']!r} now: "
                f"try another location ({LOCATIONS_HINT}) or later; nothing was ordered",
                code="no_capacity",
            )
        wanted = {"hostname": hostname, "cluster_type": params["cluster_type"], "location": params["location"],
                  "image": params["image"]}
        if check_mode:
            return {"changed": True, "cluster": None, "actions": ["create"],
                    "diff": _diff(None, (wanted, "running"), CLUSTER_FIELDS)}
        cluster_id = client.create_cluster(_cluster_payload(params, ssh_key_ids))
        actions.append("create")
        current = client.get_cluster(cluster_id) or {"id": cluster_id, "status": "ordered", "hostname": hostname}
    else:
        before = dict(current)
        _check_drift("cluster", current, params, ("cluster_type", "location"))

    if current.get("status") in FAILED:
        raise ProvisionError(f"cluster {hostname!r} ({current.get('id')}) is in status {current.get('status')!r}: "
                             "delete it (state: absent) and rent again, or look at it in the console")
    if wait and not cluster_ready(current):
        cluster_id = current["id"]
        current = waiter.until(
            lambda: client.get_cluster(cluster_id),
            lambda item: item is None or item.get("status") in FAILED or cluster_ready(item),
            lambda item: f"cluster {hostname!r} is still {item and item.get('status')!r}",
        )
        if current is None or current.get("status") in FAILED:
            reason = current.get("status") if current else "gone"
            released = "is gone"
            if current is not None:
                released = _release(lambda: client.discontinue_clusters([cluster_id]), "released")
            raise ProvisionError(f"cluster {hostname!r} ({cluster_id}) ended in status {reason!r} and {released}: "
                                 "try another location or later", code=reason)
    ssh = None
    if wait and params.get("wait_for_ssh", True) and cluster_ready(current) and not check_mode:
        ssh = _ssh_banner(params, waiter, current["ip"])
    result = {
        "changed": bool(actions),
        "cluster": public(current),
        "actions": actions,
        "jump_host": current.get("ip"),
        "workers": [{"hostname": w.get("hostname"), "private_ip": w.get("private_ip")}
                    for w in current.get("worker_nodes") or []],
        "diff": _diff(before, (current, current.get("status")), CLUSTER_FIELDS),
    }
    if ssh:
        result["ssh_banner"] = ssh
    return result
