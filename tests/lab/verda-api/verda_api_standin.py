#!/usr/bin/env python3
"""A stand-in for the DataCrunch (Verda) public API, for tests only. It is not the real service.

It speaks the API's protocol on loopback: OAuth2 client credentials and refresh tokens, the instance, Instant
Cluster, availability and SSH key endpoints that the collection uses, with objects shaped as the API returns them
(including fields the official Python SDK drops: os_name, volume_ids, tags). Instances and clusters move through
ordered -> provisioning -> running on a timer. Addresses come from a capacity pool: give it the addresses of lab
hosts and a rented instance is a real SSH-reachable machine; a cluster's jump host and workers too.

Where the official SDKs document more than one answer shape for an endpoint, each is served and one is chosen per
test through /_standin/shapes (see SHAPES).

Faults are injected through /_standin/faults (rate limits with Retry-After, server errors, refused credentials,
insufficient funds, no capacity, expired tokens, dropped connections). Requests are logged without bodies.

Run:  python3 verda_api_standin.py --listen 127.0.0.1:8799 --pool 172.18.0.2,172.18.0.3
Then: VERDA_BASE_URL=http://127.0.0.1:8799/v1 VERDA_CLIENT_ID=standin-client VERDA_CLIENT_SECRET=standin-secret
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import re
import secrets
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

API_PREFIX = "/v1"
ADMIN_PREFIX = "/_standin"

LOCATIONS = ("FIN-01", "FIN-02", "FIN-03", "ICE-01")
OS_NAMES = {
    "ubuntu-24.04-cuda-12.8-open-docker": "Ubuntu 24.04 + CUDA 12.8 Open + Docker",
    "ubuntu-24.04-cuda-13.0-open-docker": "Ubuntu 24.04 + CUDA 13.0 Open + Docker",
    "ubuntu-22.04-cuda-12.4-docker": "Ubuntu 22.04 + CUDA 12.4 + Docker",
    "ubuntu-24.04": "Ubuntu 24.04",
    "ubuntu-24.04-cuda-13.0-cluster": "Ubuntu 24.04 + CUDA 13.0 Cluster",
    "ubuntu-22.04-cuda-12.9-cluster": "Ubuntu 22.04 + CUDA 12.9 Cluster",
}

# OS images per kind of hardware, as GET /v1/images?instance_type= and GET /v1/images/cluster?instance_type= list
# them. The answer's shape is the SDKs' Image: Go SDK pkg/verda/images.go (id, image_type, name, is_default,
# is_cluster, details, category); Python SDK verda/images/_images.py and verda/clusters/_clusters.py
# (get_cluster_images returns each image's image_type). image_type is the name an order takes. Names seen in the
# SDKs and in use; which driver each ships is documented nowhere.
INSTANCE_IMAGES = (
    "ubuntu-24.04-cuda-12.8-open-docker",
    "ubuntu-24.04-cuda-13.0-open-docker",
    "ubuntu-22.04-cuda-12.4-docker",
    "ubuntu-24.04",
)
CLUSTER_IMAGES = (
    "ubuntu-24.04-cuda-13.0-cluster",
    "ubuntu-22.04-cuda-12.9-cluster",
)

# Answer shapes the official SDKs document, served as chosen per test (POST /_standin/shapes). The first of each
# is what the stand-in answers unless told otherwise.
SHAPES = {
    # POST /v1/instances. Python SDK verda/instances/_instances.py create(): `.post(...).text` is the id (plain text).
    # Go SDK pkg/verda/instances.go createWithPlainTextResponse: "API's inconsistent response format (sometimes
    # JSON, sometimes plain text ID)": the JSON is the instance object, jupyter_token included.
    "create_instance": ("text", "json"),
    # GET /v1/instance-availability/{type}. Python SDK instances.is_available(): `.json()`, a boolean. Go SDK
    # pkg/verda/instances.go CheckInstanceTypeAvailability: "API returns "true"/"false" as JSON string".
    "availability": ("bool", "string"),
    # GET /v1/instances/{id} and PUT /v1/instances for an id the account does not hold (any more): 404 not_found,
    # or 400 invalid_request "Invalid instance id", which dstack's Verda backend reads as "not found".
    "unknown_instance": ("not_found", "invalid_request"),
    # PUT /v1/instances. Go SDK pkg/verda/instances_types.go InstanceActionResult: "Returned as an array for 202 (all
    # succeeded) and 207 (some failed) responses", each {action, instanceId, status, error, statusCode}; Go SDK
    # instances.go Action(). "reject": a request with any failing instance is refused as a whole (400).
    "instance_action": ("reject", "multi_status"),
}
# Seconds a running instance goes on without its ip (0: it has one as soon as it runs). The Python SDK documents
# ip as Optional; the status can reach running before the address is assigned.
SHAPE_NUMBERS = {"running_without_ip_s": 0.0}
# Lists that replace a table for one test: the images a type accepts.
SHAPE_LISTS = {"instance_images": INSTANCE_IMAGES, "cluster_images": CLUSTER_IMAGES}


def default_shapes():
    shapes = {name: choices[0] for name, choices in SHAPES.items()}
    shapes.update(SHAPE_NUMBERS)
    shapes.update({name: list(values) for name, values in SHAPE_LISTS.items()})
    return shapes


def check_shapes(spec):
    for name, value in spec.items():
        if name in SHAPES:
            if value not in SHAPES[name]:
                raise ApiError(400, "invalid_request", f"shape {name}={value!r}: choose one of {SHAPES[name]}")
        elif name in SHAPE_NUMBERS:
            if not isinstance(value, (int, float)) or value < 0:
                raise ApiError(400, "invalid_request", f"shape {name}={value!r}: seconds, 0 or more")
        elif name in SHAPE_LISTS:
            if not isinstance(value, list):
                raise ApiError(400, "invalid_request", f"shape {name}={value!r}: a list of image names")
        else:
            known = ", ".join([*SHAPES, *SHAPE_NUMBERS, *SHAPE_LISTS])
            raise ApiError(400, "invalid_request", f"unknown shape {name!r}; known: {known}")


# Hardware as the API describes it. Prices are illustrative, not DataCrunch's price list.
INSTANCE_TYPES = {
    "1H200.141S.44V": {"gpus": 1, "gpu": "1x H200 SXM5 141GB", "gpu_gb": 141, "cores": 44, "ram_gb": 185,
                       "price": "3.59"},
    "2H200.141S.88V": {"gpus": 2, "gpu": "2x H200 SXM5 141GB", "gpu_gb": 282, "cores": 88, "ram_gb": 370,
                       "price": "7.18"},
    "4H200.141S.176V": {"gpus": 4, "gpu": "4x H200 SXM5 141GB", "gpu_gb": 564, "cores": 176, "ram_gb": 740,
                        "price": "14.36"},
    "8H200.141S.176V": {"gpus": 8, "gpu": "8x H200 SXM5 141GB", "gpu_gb": 1128, "cores": 176, "ram_gb": 1450,
                        "price": "28.72"},
    "8A100.176V": {"gpus": 8, "gpu": "8x A100 SXM4 80GB", "gpu_gb": 640, "cores": 176, "ram_gb": 960, "price": "11.12"},
    "CPU.4V.16G": {"gpus": 0, "gpu": "", "gpu_gb": 0, "cores": 4, "ram_gb": 16, "price": "0.12"},
}
CLUSTER_TYPES = {
    "16H200": {"nodes": 2, "node_type": "8H200.141S.176V", "price": "57.44"},
    "32H200": {"nodes": 4, "node_type": "8H200.141S.176V", "price": "114.88"},
}
ERROR_MESSAGES = {
    "rate_limit": (429, "too_many_requests", "Too many requests"),
    "server_error": (500, "server_error", "Internal server error"),
    "unavailable": (503, "service_unavailable", "Service temporarily unavailable"),
    "bad_credentials": (401, "unauthorized_request", "Invalid client credentials"),
    "insufficient_funds": (400, "insufficient_funds", "Not enough balance to deploy this resource"),
}
FAULT_KINDS = (*ERROR_MESSAGES, "no_capacity", "expire_tokens", "drop")


def _now_iso(at):
    return datetime.datetime.fromtimestamp(at, tz=datetime.timezone.utc).isoformat().replace("+00:00", "Z")


class ApiError(Exception):
    def __init__(self, status, code, message, headers=None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


class Dropped(Exception):
    """Close the connection without an answer."""


class StandInState:
    """Everything the stand-in knows, behind one lock; persisted to a JSON file when one is given."""

    def __init__(self, client_id, client_secret, pool=(), token_ttl=3600.0, refresh_ttl=86400.0,
                 provision_seconds=3.0, action_seconds=1.0, jump_from_workers=False, state_file=None, shapes=None):
        self.lock = threading.RLock()
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_ttl = token_ttl
        self.refresh_ttl = refresh_ttl
        self.provision_seconds = provision_seconds
        self.action_seconds = action_seconds
        self.jump_from_workers = jump_from_workers
        self.state_file = state_file
        self.instances = {}
        self.clusters = {}
        self.ssh_keys = [{
            "id": "5d7c3c4e-3f5a-4a34-9c7a-5b0a3b0c1d01",
            "name": "standin-default",
            "key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIStandInKeyNotARealKey standin",
            "fingerprint": "SHA256:standin",
            "created_at": _now_iso(time.time()),
        }]
        self.pool = list(pool)
        self.faults = []
        self.shapes = default_shapes()
        if shapes:
            self.set_shapes(shapes)
        self.access_tokens = {}
        self.refresh_tokens = {}
        self.deleted_volumes = []
        # Every token ever handed out, so tests can check that none of them shows up in output.
        self.issued_tokens = []
        self.requests = []
        if state_file and os.path.exists(state_file):
            self._load()

    # ---- persistence ----

    def _load(self):
        with open(self.state_file, encoding="utf-8") as handle:
            data = json.load(handle)
        self.instances = data.get("instances", {})
        self.clusters = data.get("clusters", {})
        self.ssh_keys = data.get("ssh_keys", self.ssh_keys)
        self.pool = data.get("pool", self.pool)

    def save(self):
        if not self.state_file:
            return
        data = {"instances": self.instances, "clusters": self.clusters, "ssh_keys": self.ssh_keys, "pool": self.pool}
        tmp = self.state_file + ".tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=1)
        os.replace(tmp, self.state_file)

    # ---- answer shapes ----

    def set_shapes(self, spec):
        check_shapes(spec)
        self.shapes.update(spec)

    def unknown_instance(self, instance_id):
        if self.shapes["unknown_instance"] == "invalid_request":
            return ApiError(400, "invalid_request", "Invalid instance id")
        return ApiError(404, "not_found", f"Instance {instance_id} not found")

    # ---- faults ----

    def add_fault(self, spec):
        kind = spec.get("kind")
        if kind not in FAULT_KINDS:
            raise ApiError(400, "invalid_request", f"unknown fault kind {kind!r}; known: {', '.join(FAULT_KINDS)}")
        if kind == "expire_tokens":
            self.access_tokens.clear()
            if spec.get("refresh", False):
                self.refresh_tokens.clear()
            return
        self.faults.append({
            "kind": kind,
            "remaining": int(spec.get("count", 1)),
            "method": spec.get("method"),
            "path": spec.get("path"),
            "retry_after": spec.get("retry_after", 1),
        })

    def take_fault(self, method, path, kinds):
        for fault in self.faults:
            if fault["kind"] not in kinds or fault["remaining"] == 0:
                continue
            if fault["method"] and fault["method"] != method:
                continue
            if fault["path"] and not path.startswith(fault["path"]):
                continue
            fault["remaining"] -= 1
            return fault
        return None

    # ---- time ----

    def _advance(self):
        """Moves every object along its timeline; called before each answer."""
        now = time.time()
        changed = False
        for table, on_status in ((self.instances, self._instance_reached), (self.clusters, self._cluster_reached)):
            for object_id in list(table):
                record = table[object_id]
                if record.get("_ip_at") is not None and now >= record["_ip_at"]:
                    record["ip"] = record["_addresses"][0]
                    record.pop("_ip_at")
                    changed = True
                while record.get("_next") and now >= record["_next"]["at"]:
                    changed = True
                    step = record.pop("_next")
                    if step["status"] == "gone":
                        self._release(record.pop("_addresses", []))
                        del table[object_id]
                        break
                    record["status"] = step["status"]
                    on_status(record)
                    if step.get("then"):
                        record["_next"] = {"at": step["at"] + step["then"]["after"], "status": step["then"]["status"]}
        if changed:
            self.save()

    def _instance_reached(self, record):
        if record["status"] == "running" and record["ip"] is None and "_ip_at" not in record:
            delay = self.shapes["running_without_ip_s"]
            if delay:
                record["_ip_at"] = time.time() + delay
            else:
                record["ip"] = record["_addresses"][0]

    def _cluster_reached(self, record):
        for worker in record["worker_nodes"]:
            worker["status"] = record["status"]
        if record["status"] == "running":
            addresses = record["_addresses"]
            record["ip"] = addresses[0]
            workers = addresses if self.jump_from_workers else addresses[1:]
            for worker, address in zip(record["worker_nodes"], workers, strict=False):
                worker["private_ip"] = address

    def _release(self, addresses):
        for address in addresses:
            if address not in self.pool:
                self.pool.append(address)

    def _take(self, count):
        if len(self.pool) < count:
            return None
        taken, self.pool = self.pool[:count], self.pool[count:]
        return taken

    # ---- validation shared by instances and clusters ----

    def _check_common(self, body, type_field, known_types, images):
        errors = []
        hostname = body.get("hostname")
        if not isinstance(hostname, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]{0,62}", hostname or ""):
            errors.append(f"hostname {hostname!r} is invalid")
        if body.get(type_field) not in known_types:
            errors.append(f"{type_field} {body.get(type_field)!r} is invalid")
        if body.get("image") not in images and body.get("image") not in self._volume_ids():
            errors.append(f"image {body.get('image')!r} is invalid")
        location = body.get("location_code") or "FIN-03"
        if location not in LOCATIONS:
            errors.append(f"location_code {location!r} is invalid")
        known_keys = {key["id"] for key in self.ssh_keys}
        for key_id in body.get("ssh_key_ids") or []:
            if key_id not in known_keys:
                errors.append(f"ssh key {key_id!r} not found")
        if not isinstance(body.get("description"), str):
            errors.append("description is required")
        if errors:
            raise ApiError(400, "invalid_request", "; ".join(errors))
        return location

    def _volume_ids(self):
        return {record.get("os_volume_id") for record in self.instances.values()}

    def _no_capacity_now(self, needed, path):
        return len(self.pool) < needed or self.take_fault("POST", path, ("no_capacity",)) is not None

    # ---- instances ----

    def create_instance(self, body):
        location = self._check_common(body, "instance_type", INSTANCE_TYPES, self.shapes["instance_images"])
        if self.take_fault("POST", API_PREFIX + "/instances", ("insufficient_funds",)):
            status, code, message = ERROR_MESSAGES["insufficient_funds"]
            raise ApiError(status, code, message)
        spec = INSTANCE_TYPES[body["instance_type"]]
        now = time.time()
        instance_id = str(uuid.uuid4())
        new_volumes = [str(uuid.uuid4()) for _volume in body.get("volumes") or []]
        volumes = new_volumes + list(body.get("existing_volumes") or [])
        record = {
            "id": instance_id,
            "ip": None,
            "status": "ordered",
            "created_at": _now_iso(now),
            "cpu": {"description": f"{spec['cores']} CPU", "number_of_cores": spec["cores"]},
            "gpu": {"description": spec["gpu"], "number_of_gpus": spec["gpus"]},
            "gpu_memory": {"description": f"{spec['gpu_gb']}GB GPU RAM", "size_in_gigabytes": spec["gpu_gb"]},
            "memory": {"description": f"{spec['ram_gb']}GB RAM", "size_in_gigabytes": spec["ram_gb"]},
            "storage": {"description": "Dynamic"},
            "hostname": body["hostname"],
            "description": body.get("description", ""),
            "location": location,
            "price_per_hour": spec["price"],
            "is_spot": bool(body.get("is_spot")),
            "instance_type": body["instance_type"],
            "image": body["image"],
            "os_name": OS_NAMES.get(body["image"], body["image"]),
            "startup_script_id": body.get("startup_script_id"),
            "ssh_key_ids": list(body.get("ssh_key_ids") or []),
            "os_volume_id": str(uuid.uuid4()),
            # The API hands each instance a Jupyter token: a secret, random per instance, for tests to look for.
            "jupyter_token": "jupyter-" + secrets.token_hex(12),
            "contract": body.get("contract") or ("SPOT" if body.get("is_spot") else "PAY_AS_YOU_GO"),
            "pricing": body.get("pricing") or "FIXED_PRICE",
            "volume_ids": volumes,
            "tags": [{"id": str(uuid.uuid4()), "key": tag.get("key"), "value": tag.get("value", "")}
                     for tag in body.get("tags") or []],
        }
        half = self.provision_seconds / 2
        if self._no_capacity_now(1, API_PREFIX + "/instances"):
            record["_addresses"] = []
            record["_next"] = {"at": now + half, "status": "no_capacity"}
        else:
            record["_addresses"] = self._take(1)
            record["_next"] = {"at": now + half, "status": "provisioning",
                               "then": {"after": half, "status": "running"}}
        self.instances[instance_id] = record
        self.save()
        return record

    def instance_action(self, body):
        """(HTTP status, per-instance results) of PUT /v1/instances, in the chosen shape."""
        ids = body.get("id")
        if isinstance(ids, str):
            ids = [ids]
        action = body.get("action")
        if not ids or action not in ("start", "shutdown", "delete", "boot", "force_shutdown", "discontinue",
                                     "hibernate"):
            raise ApiError(400, "invalid_request", f"invalid action {action!r} or empty id list")
        per_instance = self.shapes["instance_action"] == "multi_status"
        refusals = {}
        for instance_id in ids:
            try:
                self._check_action(instance_id, action)
            except ApiError as error:
                if not per_instance:
                    raise
                refusals[instance_id] = error
        results = []
        now = time.time()
        for instance_id in ids:
            if instance_id in refusals:
                error = refusals[instance_id]
                results.append({"action": action, "instanceId": instance_id, "status": "error",
                                "error": error.message, "statusCode": error.status})
                continue
            record = self.instances[instance_id]
            if action in ("delete", "discontinue"):
                # Volumes deleted with the instance (to the trash, or for good), for tests to check.
                for volume_id in body.get("volume_ids") or []:
                    self.deleted_volumes.append({"id": volume_id, "permanently": bool(body.get("delete_permanently"))})
                record["status"] = "deleting" if record["status"] != "no_capacity" else record["status"]
                record["_next"] = {"at": now + self.action_seconds, "status": "gone"}
            elif action in ("shutdown", "force_shutdown", "hibernate"):
                record["_next"] = {"at": now + self.action_seconds, "status": "offline"}
            else:
                record["_next"] = {"at": now + self.action_seconds, "status": "running"}
            results.append({"action": action, "instanceId": instance_id, "status": "success"})
        self.save()
        return (207 if refusals else 202), results

    def _check_action(self, instance_id, action):
        record = self.instances.get(instance_id)
        if record is None:
            raise self.unknown_instance(instance_id)
        status = record["status"]
        if action in ("shutdown", "force_shutdown", "hibernate") and status != "running":
            raise ApiError(400, "invalid_request", f"Instance {instance_id} is {status}, not running")
        if action in ("start", "boot") and status != "offline":
            raise ApiError(400, "invalid_request", f"Instance {instance_id} is {status}, not offline")

    # ---- clusters ----

    def create_cluster(self, body):
        location = self._check_common(body, "cluster_type", CLUSTER_TYPES, self.shapes["cluster_images"])
        if not isinstance(body.get("shared_volume"), dict) or not body["shared_volume"].get("name"):
            raise ApiError(400, "invalid_request", "shared_volume {name, size} is required")
        if self.take_fault("POST", API_PREFIX + "/clusters", ("insufficient_funds",)):
            status, code, message = ERROR_MESSAGES["insufficient_funds"]
            raise ApiError(status, code, message)
        spec = CLUSTER_TYPES[body["cluster_type"]]
        node = INSTANCE_TYPES[spec["node_type"]]
        nodes = spec["nodes"]
        needed = nodes if self.jump_from_workers else nodes + 1
        now = time.time()
        cluster_id = str(uuid.uuid4())
        total_gpus = node["gpus"] * nodes
        record = {
            "id": cluster_id,
            "ip": None,
            "status": "ordered",
            "created_at": _now_iso(now),
            "cpu": {"description": f"{node['cores'] * nodes} CPU", "number_of_cores": node["cores"] * nodes},
            "gpu": {"description": f"{total_gpus}x H200 SXM5 141GB", "number_of_gpus": total_gpus},
            "gpu_memory": {"description": f"{node['gpu_gb'] * nodes}GB GPU RAM",
                           "size_in_gigabytes": node["gpu_gb"] * nodes},
            "memory": {"description": f"{node['ram_gb'] * nodes}GB RAM", "size_in_gigabytes": node["ram_gb"] * nodes},
            "hostname": body["hostname"],
            "description": body.get("description", ""),
            "location": location,
            "price_per_hour": spec["price"],
            "cluster_type": body["cluster_type"],
            "image": body["image"],
            "os_name": OS_NAMES.get(body["image"], body["image"]),
            "ssh_key_ids": list(body.get("ssh_key_ids") or []),
            "contract": body.get("contract") or "PAY_AS_YOU_GO",
            "startup_script_id": body.get("startup_script_id"),
            "worker_nodes": [
                {"id": str(uuid.uuid4()), "hostname": f"{body['hostname']}-node-{index}", "public_ip": None,
                 "private_ip": None, "status": "ordered"}
                for index in range(1, nodes + 1)
            ],
            "shared_volumes": [{
                "id": str(uuid.uuid4()),
                "name": body["shared_volume"]["name"],
                "mount_point": "/mnt/" + body["shared_volume"]["name"],
                "size_in_gigabytes": int(body["shared_volume"].get("size") or 30000),
            }],
            "tags": [],
        }
        half = self.provision_seconds / 2
        if self._no_capacity_now(needed, API_PREFIX + "/clusters"):
            record["_addresses"] = []
            record["_next"] = {"at": now + half, "status": "error"}
        else:
            record["_addresses"] = self._take(needed)
            record["_next"] = {"at": now + half, "status": "provisioning",
                               "then": {"after": half, "status": "running"}}
        self.clusters[cluster_id] = record
        self.save()
        return cluster_id

    def cluster_actions(self, body):
        actions = body.get("actions")
        if not isinstance(actions, list) or not actions:
            raise ApiError(400, "invalid_request", "actions must be a non-empty list")
        now = time.time()
        for item in actions:
            if item.get("action") != "discontinue":
                raise ApiError(400, "invalid_request", f"invalid cluster action {item.get('action')!r}")
            if item.get("id") not in self.clusters:
                raise ApiError(404, "not_found", f"Cluster {item.get('id')} not found")
        for item in actions:
            record = self.clusters[item["id"]]
            record["status"] = "discontinued"
            record["_next"] = {"at": now + self.action_seconds, "status": "gone"}
        self.save()

    # ---- seeding ----

    def seed(self, data):
        for record in data.get("instances", []):
            record = copy.deepcopy(record)
            record.setdefault("id", str(uuid.uuid4()))
            record.setdefault("volume_ids", [])
            record.setdefault("tags", [])
            self.instances[record["id"]] = record
        for record in data.get("clusters", []):
            record = copy.deepcopy(record)
            record.setdefault("id", str(uuid.uuid4()))
            self.clusters[record["id"]] = record
        self.save()

    @staticmethod
    def public(record):
        return {key: value for key, value in record.items() if not key.startswith("_")}


class Handler(BaseHTTPRequestHandler):
    server_version = "verda-api-standin/1"
    protocol_version = "HTTP/1.1"

    @property
    def state(self):
        return self.server.state

    def log_message(self, format, *args):
        if self.server.verbose:
            sys.stderr.write("verda-api stand-in: " + (format % args) + "\n")

    # ---- plumbing ----

    def _body(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return {}
        try:
            return json.loads(raw)
        except ValueError:
            raise ApiError(400, "invalid_request", "request body is not JSON") from None

    def _send(self, status, payload=None, text=None, headers=None):
        if text is not None:
            body = text.encode()
            content_type = "text/plain"
        elif payload is not None:
            body = json.dumps(payload).encode()
            content_type = "application/json"
        else:
            body = b""
            content_type = "application/json"
        # Logged before the answer leaves: a client that has its answer finds its request in the log.
        self._log_request(status)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)
        return status

    def _dispatch(self, method):
        url = urlsplit(self.path)
        path = url.path
        query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        status = 500
        auth = "bearer" if (self.headers.get("Authorization") or "").startswith("Bearer ") else "none"
        self._grant = None
        self._entry = None
        if not path.startswith(ADMIN_PREFIX):
            self._entry = {"method": method, "path": path, "query": query, "auth": auth}
        try:
            with self.state.lock:
                if path.startswith(ADMIN_PREFIX):
                    status = self._admin(method, path[len(ADMIN_PREFIX):], query)
                    return
                status = self._api(method, path, query)
        except Dropped:
            status = 0
            self.close_connection = True
        except ApiError as error:
            status = self._send(error.status, {"code": error.code, "message": error.message}, headers=error.headers)
        finally:
            self._log_request(status)

    def _log_request(self, status):
        """Adds this API request to the log once (admin requests are not logged)."""
        entry, self._entry = self._entry, None
        if entry is not None:
            with self.state.lock:
                self.state.requests.append({**entry, "grant": self._grant, "status": status, "at": time.time()})

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_DELETE(self):
        self._dispatch("DELETE")

    # ---- the API ----

    def _check_fault(self, method, path, kinds):
        fault = self.state.take_fault(method, path, kinds)
        if not fault:
            return
        if fault["kind"] == "drop":
            raise Dropped()
        status, code, message = ERROR_MESSAGES[fault["kind"]]
        headers = {"Retry-After": str(fault["retry_after"])} if status == 429 else {}
        raise ApiError(status, code, message, headers)

    def _authorize(self):
        header = self.headers.get("Authorization") or ""
        token = header[len("Bearer "):] if header.startswith("Bearer ") else None
        expiry = self.state.access_tokens.get(token) if token else None
        if expiry is None or time.time() >= expiry:
            raise ApiError(401, "unauthorized_request", "Invalid or expired access token")

    def _token(self, body):
        grant = self._grant = body.get("grant_type")
        if grant == "client_credentials":
            if self.state.take_fault("POST", API_PREFIX + "/oauth2/token", ("bad_credentials",)) or not (
                secrets.compare_digest(str(body.get("client_id", "")), self.state.client_id)
                and secrets.compare_digest(str(body.get("client_secret", "")), self.state.client_secret)
            ):
                raise ApiError(401, "unauthorized_request", "Invalid client credentials")
        elif grant == "refresh_token":
            expiry = self.state.refresh_tokens.pop(body.get("refresh_token"), None)
            if expiry is None or time.time() >= expiry:
                raise ApiError(401, "unauthorized_request", "Invalid or expired refresh token")
        else:
            raise ApiError(400, "invalid_request", f"unsupported grant_type {grant!r}")
        access, refresh = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        now = time.time()
        self.state.access_tokens[access] = now + self.state.token_ttl
        self.state.refresh_tokens[refresh] = now + self.state.refresh_ttl
        self.state.issued_tokens += [access, refresh]
        return self._send(200, {"access_token": access, "refresh_token": refresh, "scope": "fullAccess",
                                "token_type": "Bearer", "expires_in": int(self.state.token_ttl)})

    def _api(self, method, path, query):
        if not path.startswith(API_PREFIX + "/"):
            raise ApiError(404, "not_found", f"no such endpoint {path}")
        route = path[len(API_PREFIX):]
        body = self._body() if method in ("POST", "PUT") else {}
        self._check_fault(method, path, ("rate_limit", "server_error", "unavailable", "drop"))
        if route == "/oauth2/token" and method == "POST":
            return self._token(body)
        self._authorize()
        state = self.state
        state._advance()
        parts = route.strip("/").split("/")
        if parts[0] == "instances":
            if len(parts) == 1 and method == "GET":
                status = query.get("status")
                items = [state.public(r) for r in state.instances.values() if not status or r["status"] == status]
                return self._send(200, items)
            if len(parts) == 1 and method == "POST":
                record = state.create_instance(body)
                if state.shapes["create_instance"] == "json":
                    return self._send(200, state.public(record))
                return self._send(200, text=record["id"])
            if len(parts) == 1 and method == "PUT":
                status, results = state.instance_action(body)
                return self._send(status, results)
            if len(parts) == 2 and method == "GET":
                record = state.instances.get(parts[1])
                if record is None:
                    raise state.unknown_instance(parts[1])
                return self._send(200, state.public(record))
        if parts[0] == "clusters":
            if len(parts) == 1 and method == "GET":
                status = query.get("status")
                items = [state.public(r) for r in state.clusters.values() if not status or r["status"] == status]
                return self._send(200, items)
            if len(parts) == 1 and method == "POST":
                return self._send(200, {"id": state.create_cluster(body)})
            if len(parts) == 1 and method == "PUT":
                state.cluster_actions(body)
                return self._send(202)
            if len(parts) == 2 and method == "GET":
                record = state.clusters.get(parts[1])
                if record is None:
                    raise ApiError(404, "not_found", f"Cluster {parts[1]} not found")
                return self._send(200, state.public(record))
        if parts[0] == "instance-availability" and method == "GET":
            if len(parts) == 2:
                if parts[1] not in INSTANCE_TYPES:
                    raise ApiError(400, "invalid_request", f"Invalid instance type {parts[1]}")
                available = len(state.pool) >= 1
                if state.shapes["availability"] == "string":
                    return self._send(200, "true" if available else "false")
                return self._send(200, available)
            free = list(INSTANCE_TYPES) if state.pool else []
            return self._send(200, [{"location_code": code, "availabilities": free} for code in LOCATIONS])
        if parts[0] == "cluster-availability" and method == "GET" and len(parts) == 2:
            spec = CLUSTER_TYPES.get(parts[1])
            if spec is None:
                raise ApiError(400, "invalid_request", f"Invalid cluster type {parts[1]}")
            needed = spec["nodes"] if state.jump_from_workers else spec["nodes"] + 1
            return self._send(200, text="true" if len(state.pool) >= needed else "false")
        if parts[0] == "images" and method == "GET" and parts[1:] in ([], ["cluster"]):
            cluster = parts[1:] == ["cluster"]
            wanted = query.get("instance_type")
            if wanted and wanted not in (CLUSTER_TYPES if cluster else INSTANCE_TYPES):
                raise ApiError(400, "invalid_request", f"Invalid instance type {wanted}")
            names = state.shapes["cluster_images" if cluster else "instance_images"]
            return self._send(200, [{
                "id": str(uuid.uuid5(uuid.NAMESPACE_URL, name)), "image_type": name,
                "name": OS_NAMES.get(name, name), "is_default": index == 0, "is_cluster": cluster,
                "details": OS_NAMES.get(name, name).split(" + "), "category": "ubuntu",
            } for index, name in enumerate(names)])
        if parts[0] == "sshkeys" and method == "GET" and len(parts) == 1:
            return self._send(200, state.ssh_keys)
        raise ApiError(404, "not_found", f"no such endpoint {method} {path}")

    # ---- control of the stand-in itself ----

    def _admin(self, method, route, query):
        state = self.state
        if route == "/health":
            return self._send(200, {"ok": True})
        if route == "/faults" and method == "POST":
            state.add_fault(self._body())
            return self._send(204)
        if route == "/shapes" and method == "POST":
            state.set_shapes(self._body())
            return self._send(204)
        if route == "/shapes" and method == "GET":
            return self._send(200, state.shapes)
        if route == "/faults" and method == "DELETE":
            state.faults.clear()
            return self._send(204)
        if route == "/requests" and method == "GET":
            return self._send(200, state.requests)
        if route == "/requests" and method == "DELETE":
            state.requests.clear()
            return self._send(204)
        if route == "/state" and method == "GET":
            state._advance()
            return self._send(200, {"instances": list(state.instances.values()),
                                    "clusters": list(state.clusters.values()), "pool": state.pool,
                                    "faults": state.faults, "ssh_keys": state.ssh_keys,
                                    "deleted_volumes": state.deleted_volumes})
        if route == "/tokens" and method == "GET":
            return self._send(200, state.issued_tokens)
        if route == "/pool" and method == "POST":
            state.pool = list(self._body().get("addresses", []))
            state.save()
            return self._send(204)
        if route == "/seed" and method == "POST":
            state.seed(self._body())
            return self._send(204)
        if route == "/reset" and method == "POST":
            state.instances.clear()
            state.clusters.clear()
            state.faults.clear()
            state.requests.clear()
            state.deleted_volumes.clear()
            state.shapes = default_shapes()
            state.pool = list(self._body().get("addresses", []))
            state.save()
            return self._send(204)
        raise ApiError(404, "not_found", f"no such stand-in control {method} {route}")


class StandInServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, state, verbose=False):
        super().__init__(address, Handler)
        self.state = state
        self.verbose = verbose

    @property
    def base_url(self):
        host, port = self.server_address[:2]
        return f"http://{host}:{port}{API_PREFIX}"

    def start_background(self):
        thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05},
                                  name="verda-api-standin", daemon=True)
        thread.start()
        return thread


def main(argv=None):
    parser = argparse.ArgumentParser(description="DataCrunch (Verda) API stand-in for tests (not the real API).")
    parser.add_argument("--listen", default="127.0.0.1:0", help="host:port (port 0 picks a free one)")
    parser.add_argument("--client-id", default=os.environ.get("STANDIN_CLIENT_ID", "standin-client"))
    parser.add_argument("--client-secret", default=os.environ.get("STANDIN_CLIENT_SECRET", "standin-secret"))
    parser.add_argument("--pool", default="", help="comma-separated addresses handed to rented machines")
    parser.add_argument("--jump-from-workers", action="store_true",
                        help="a cluster's jump host is its first worker (saves one address)")
    parser.add_argument("--token-ttl", type=float, default=3600.0)
    parser.add_argument("--refresh-ttl", type=float, default=86400.0)
    parser.add_argument("--provision-seconds", type=float, default=3.0)
    parser.add_argument("--action-seconds", type=float, default=1.0)
    parser.add_argument("--seed", help="JSON file with {instances: [...], clusters: [...]} in API shape")
    parser.add_argument("--state", help="JSON file that keeps the state across restarts")
    parser.add_argument("--url-file", help="write the base URL here once listening")
    parser.add_argument("--verbose", action="store_true", help="log each request line (never bodies)")
    args = parser.parse_args(argv)

    host, _colon, port = args.listen.rpartition(":")
    state = StandInState(
        args.client_id, args.client_secret,
        pool=[address for address in args.pool.split(",") if address],
        token_ttl=args.token_ttl, refresh_ttl=args.refresh_ttl,
        provision_seconds=args.provision_seconds, action_seconds=args.action_seconds,
        jump_from_workers=args.jump_from_workers, state_file=args.state,
    )
    if args.seed:
        with open(args.seed, encoding="utf-8") as handle:
            state.seed(json.load(handle))
    server = StandInServer((host or "127.0.0.1", int(port)), state, verbose=args.verbose)
    print(f"verda-api stand-in (not the real API) listening on {server.base_url}", flush=True)
    if args.url_file:
        with open(args.url_file + ".tmp", "w", encoding="utf-8") as handle:
            handle.write(server.base_url + "\n")
        os.replace(args.url_file + ".tmp", args.url_file)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
