# Copyright: datacrunch.sglang contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A small client for the DataCrunch (Verda) public API.

OAuth2 client credentials with token refresh, bounded retries (429 with Retry-After, 5xx on safe requests) and
errors that say what failed and how to fix it, without ever repeating the client secret or a token.

Standard library only: the inventory plugin and the provisioning modules share it, and module code may run on a
Python without ``requests``.
"""

from __future__ import annotations

import email.utils
import ipaddress
import json
import os
import socket
import ssl
import time
import urllib.error
import urllib.parse

from ansible.module_utils.urls import ConnectionError as UrlsConnectionError
from ansible.module_utils.urls import SSLValidationError, open_url

DEFAULT_BASE_URL = "https://api.verda.com/v1"
CLIENT_ID_ENV = ("VERDA_CLIENT_ID", "DATACRUNCH_CLIENT_ID")
CLIENT_SECRET_ENV = ("VERDA_CLIENT_SECRET", "DATACRUNCH_CLIENT_SECRET")
BASE_URL_ENV = ("VERDA_BASE_URL", "DATACRUNCH_BASE_URL")

USER_AGENT = "datacrunch.sglang"
# Refresh a little before the announced expiry, so a request never leaves with a token that dies in flight.
TOKEN_EXPIRY_MARGIN_S = 30
# Requests that can be repeated without effect beyond the first: retried on server errors and timeouts.
SAFE_METHODS = frozenset({"GET", "HEAD"})
REDACTED = "********"
# Fields of API objects that are secrets: the API sends a Jupyter token with each instance. Never kept or shown.
SECRET_FIELDS = ("jupyter_token",)
_TLS_ERRORS = (ssl.SSLError, SSLValidationError)

# What to do about each error code the API documents.
_FIXES = {
    "unauthorized_request": (
        "check the client credentials (VERDA_CLIENT_ID / VERDA_CLIENT_SECRET, or client_id / client_secret); "
        "create or rotate them under Keys in the DataCrunch (Verda) console"
    ),
    "insufficient_funds": "add funds to the DataCrunch (Verda) account, then run again",
    "forbidden_action": "the account may not do this; check the project and the key's permissions",
    "not_found": "the object does not exist (any more); refresh what you know about it",
    "invalid_request": "check the values sent (type, image, location, hostname, SSH key ids)",
    "server_error": "the API failed on its side; run again later",
    "service_unavailable": "the API is unavailable; run again later",
}


class DataCrunchError(Exception):
    """Any failure talking to the API. ``str()`` is a complete, user-facing message."""

    def __init__(self, message, code=None, status=None, api_message=None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        # The API's own message, as it sent it (for telling error kinds apart, not for display).
        self.api_message = api_message


class DataCrunchConfigError(DataCrunchError):
    """Bad or missing settings, found before any request is sent."""


class DataCrunchAPIError(DataCrunchError):
    """The API answered with an error, or could not be reached."""


class DataCrunchActionError(DataCrunchAPIError):
    """A batch action that some instances refused; ``failures`` holds ``(instance id, message, HTTP status)``."""

    def __init__(self, message, failures, code=None, status=None):
        super().__init__(message, code=code, status=status)
        self.failures = failures


# An unknown or deleted instance may be answered 400 invalid_request "Invalid instance id" rather than 404 (dstack's
# Verda backend reads that message as "not found").
_UNKNOWN_INSTANCE_MESSAGES = ("invalid instance id",)
_PLAIN_ID = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~")


def is_gone_message(message):
    """Whether an API message is the one an unknown or deleted instance is answered with."""
    return isinstance(message, str) and message.strip().lower().rstrip(".") in _UNKNOWN_INSTANCE_MESSAGES


def is_gone(error):
    """Whether an API error says that the object does not exist (any more)."""
    if error.status == 404 or error.code == "not_found":
        return True
    return error.code == "invalid_request" and is_gone_message(error.api_message)


def _plain_id(value):
    return isinstance(value, str) and 0 < len(value) <= 128 and set(value) <= _PLAIN_ID


def yes_answer(data):
    """An availability answer: JSON true, or the JSON string "true" (Go SDK pkg/verda/instances.go)."""
    return data is True or (isinstance(data, str) and data.strip().lower() == "true")


class DataCrunchSettings:
    """Where and as whom to talk to the API."""

    __slots__ = ("base_url", "client_id", "client_secret")

    def __init__(self, base_url, client_id, client_secret):
        self.base_url = base_url
        self.client_id = client_id
        self.client_secret = client_secret

    def __repr__(self):
        return f"DataCrunchSettings(base_url={self.base_url!r}, client_id={mask(self.client_id)!r}, client_secret=...)"


def without_secrets(record):
    """An API object without its secret fields."""
    if not isinstance(record, dict):
        return record
    return {key: value for key, value in record.items() if key not in SECRET_FIELDS}


def mask(value):
    """A hint of an identifier that is safe to print: its first characters only."""
    if not value:
        return ""
    return value[:4] + "..." if len(value) > 4 else "..."


def _first_env(names, environ):
    for name in names:
        if environ.get(name):
            return environ[name]
    return None


def _is_loopback(host):
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_base_url(base_url, variable="base_url"):
    """The base URL without a trailing slash; refuses what would leak the secret or cannot work."""
    parsed = urllib.parse.urlsplit(base_url or "")
    if parsed.scheme not in ("https", "http") or not parsed.hostname:
        raise DataCrunchConfigError(
            f"{variable}={base_url!r} is not an API URL: use the form {DEFAULT_BASE_URL} (or set VERDA_BASE_URL)"
        )
    if parsed.query or parsed.fragment:
        raise DataCrunchConfigError(
            f"{variable}={base_url!r} must not carry a query or fragment: use {DEFAULT_BASE_URL}"
        )
    if parsed.username or parsed.password:
        raise DataCrunchConfigError(
            f"{variable} must not carry credentials in the URL: set VERDA_CLIENT_ID / VERDA_CLIENT_SECRET instead"
        )
    if parsed.scheme == "http" and not _is_loopback(parsed.hostname):
        raise DataCrunchConfigError(
            f"{variable}={base_url!r} would send the client secret unencrypted to {parsed.hostname}: use https:// "
            "(plain http is accepted on loopback only)"
        )
    return base_url.rstrip("/")


def resolve_settings(client_id=None, client_secret=None, base_url=None, environ=None,
                     base_url_variable="base_url (VERDA_BASE_URL)"):
    """Settings from explicit values, else the environment (``VERDA_*``, then the older ``DATACRUNCH_*``)."""
    environ = os.environ if environ is None else environ
    if not client_id:
        client_id = _first_env(CLIENT_ID_ENV, environ)
    if not client_secret:
        client_secret = _first_env(CLIENT_SECRET_ENV, environ)
    if not base_url:
        base_url = _first_env(BASE_URL_ENV, environ)
    missing = [name for name, value in (("client_id", client_id), ("client_secret", client_secret)) if not value]
    if missing:
        raise DataCrunchConfigError(
            "no DataCrunch (Verda) API credentials: {} not set. Export VERDA_CLIENT_ID and VERDA_CLIENT_SECRET "
            "(the older DATACRUNCH_CLIENT_ID / DATACRUNCH_CLIENT_SECRET also work), or set client_id and "
            "client_secret in the inventory config or module arguments".format(" and ".join(missing))
        )
    return DataCrunchSettings(check_base_url(base_url or DEFAULT_BASE_URL, base_url_variable), client_id, client_secret)


def parse_retry_after(value, now=None):
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date); None when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


def _describe_body(response):
    """What an answer was, without quoting it: its type and size."""
    kind = (response.headers.get("Content-Type") or "no content type").split(";")[0].strip() if response.headers else (
        "no content type")
    return f"an answer that is not an API error object ({kind}, {len(response.body)} bytes)" if response.body else (
        "an empty answer")


class _Response:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def text(self):
        return self.body.decode("utf-8", errors="replace")

    def json(self):
        if not self.body.strip():
            return None
        return json.loads(self.body)


class DataCrunchClient:
    """Talks to the API as one OAuth2 client; authenticates on first use and refreshes as tokens expire."""

    def __init__(
        self,
        settings,
        timeout=30.0,
        max_retries=4,
        max_server_retries=2,
        max_retry_wait=60.0,
        log=None,
        sleep=time.sleep,
        clock=time.monotonic,
    ):
        self.settings = settings
        self.timeout = timeout
        # Rate limits say when to come back; a failing or unreachable server may not recover soon, and a run
        # that waits long for it helps nobody: fewer tries there.
        self.max_retries = max_retries
        self.max_server_retries = max_server_retries
        self.max_retry_wait = max_retry_wait
        self._log = log or (lambda message: None)
        self._sleep = sleep
        self._clock = clock
        self._access_token = None
        self._refresh_token = None
        self._expires_at = 0.0

    # ---- low level -------------------------------------------------------------------------------------------

    def _redact(self, text):
        for secret in (self.settings.client_secret, self._access_token, self._refresh_token):
            if secret:
                text = text.replace(secret, REDACTED)
        return text

    def _fail(self, message, code=None, status=None, api_message=None):
        return DataCrunchAPIError(self._redact(message), code=code, status=status, api_message=api_message)

    def _send(self, method, path, params=None, body=None, token=None):
        url = self.settings.base_url + path
        if params:
            query = {key: value for key, value in params.items() if value is not None}
            if query:
                url += "?" + urllib.parse.urlencode(query)
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if token:
            headers["Authorization"] = "Bearer " + token
        self._log(f"DataCrunch API: {method} {path}")
        try:
            # No redirects (they could carry the token elsewhere) and no ~/.netrc (it would replace the token).
            with open_url(url, data=data, headers=headers, method=method, timeout=self.timeout,
                          follow_redirects="none", use_netrc=False, http_agent=USER_AGENT) as answer:
                return _Response(answer.status, answer.headers, answer.read())
        except urllib.error.HTTPError as error:
            return _Response(error.code, error.headers, error.read() or b"")
        except UrlsConnectionError as error:
            raise urllib.error.URLError(error) from None

    def _send_retrying(self, method, path, params=None, body=None, token=None):
        """One logical request: retries 429 always, and network or 5xx failures for safe methods."""
        retryable = method in SAFE_METHODS or path == "/oauth2/token"
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._send(method, path, params=params, body=body, token=token)
            except (urllib.error.URLError, OSError) as error:
                reason = getattr(error, "reason", error)
                if retryable and attempt <= self.max_server_retries and not isinstance(reason, _TLS_ERRORS):
                    self._backoff(attempt, None, f"{method} {path}: {reason}")
                    continue
                raise self._unreachable(method, path, reason) from None
            if response.status == 429 and attempt <= self.max_retries:
                self._backoff(attempt, parse_retry_after(response.headers.get("Retry-After")), f"{method} {path}: 429")
                continue
            if response.status >= 500 and retryable and attempt <= self.max_server_retries:
                self._backoff(attempt, parse_retry_after(response.headers.get("Retry-After")), f"{method} {path}: "
                              f"HTTP {response.status}")
                continue
            return response, attempt

    def _backoff(self, attempt, retry_after, what):
        wait = retry_after if retry_after is not None else min(2.0 ** (attempt - 1), 16.0)
        wait = min(wait, self.max_retry_wait)
        self._log(f"DataCrunch API: {what}; retrying in {wait:.1f}s (attempt {attempt + 1})")
        self._sleep(wait)

    def _unreachable(self, method, path, reason):
        if isinstance(reason, _TLS_ERRORS):
            fix = "the TLS connection failed; check the system CA certificates and any proxy in between"
        elif isinstance(reason, (socket.timeout, TimeoutError)):
            fix = f"no answer within {self.timeout:g}s; check the network or raise the timeout"
        else:
            fix = "check the network and VERDA_BASE_URL (or base_url)"
        return self._fail(
            f"DataCrunch API at {self.settings.base_url} is unreachable ({method} {path}: {reason}): {fix}",
            code="unreachable",
        )

    def _error(self, method, path, response, attempts):
        try:
            payload = response.json()
        except ValueError:
            payload = None
        code = message = None
        if isinstance(payload, dict):
            code = payload.get("code") if isinstance(payload.get("code"), str) else None
            message = payload.get("message") or payload.get("error_description") or payload.get("error")
            message = message if isinstance(message, str) else None
        api_message = message
        if not message:
            # Only the code and message of an API error are shown: anything else in an answer may hold secrets.
            message = _describe_body(response)
        if response.status == 429:
            retry_after = response.headers.get("Retry-After")
            fix = (
                f"the API rate limit held through {attempts} attempts"
                + (f" (Retry-After: {retry_after}s)" if retry_after else "")
                + "; wait and run again, and let the inventory cache its answers (cache: true)"
            )
            code = code or "rate_limited"
        elif code in _FIXES:
            fix = _FIXES[code]
        elif response.status in (401, 403):
            fix = _FIXES["unauthorized_request"]
        elif response.status >= 500:
            fix = _FIXES["server_error"]
        else:
            fix = _FIXES["invalid_request"]
        return self._fail(
            f"DataCrunch API {method} {path} failed: HTTP {response.status}"
            + (f" {code}" if code else "")
            + f": {message}. Fix: {fix}",
            code=code,
            status=response.status,
            api_message=api_message,
        )

    # ---- authentication ----------------------------------------------------------------------------------------

    def _take_token(self, response):
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict) or not data.get("access_token"):
            raise self._fail("DataCrunch API POST /oauth2/token answered without an access_token: "
                             "check that VERDA_BASE_URL points at the API (.../v1)", code="invalid_token_answer")
        self._access_token = data["access_token"]
        self._refresh_token = data.get("refresh_token")
        expires_in = float(data.get("expires_in") or 0)
        self._expires_at = self._clock() + max(0.0, expires_in - TOKEN_EXPIRY_MARGIN_S)

    def authenticate(self):
        """Client-credentials grant: a fresh access token (and refresh token)."""
        body = {
            "grant_type": "client_credentials",
            "client_id": self.settings.client_id,
            "client_secret": self.settings.client_secret,
        }
        response, attempts = self._send_retrying("POST", "/oauth2/token", body=body)
        if response.status >= 400:
            error = self._error("POST", "/oauth2/token", response, attempts)
            if response.status in (400, 401, 403):
                raise self._fail(
                    f"DataCrunch API refused the client credentials (client id {mask(self.settings.client_id)!r}, "
                    f"HTTP {response.status}{' ' + error.code if error.code else ''}). Fix: "
                    + _FIXES["unauthorized_request"],
                    code=error.code or "unauthorized_request",
                    status=response.status,
                )
            raise error
        self._take_token(response)

    def refresh(self):
        """Refresh-token grant; falls back to the client credentials when the refresh token is refused."""
        if not self._refresh_token:
            self.authenticate()
            return
        body = {"grant_type": "refresh_token", "refresh_token": self._refresh_token}
        response, attempts = self._send_retrying("POST", "/oauth2/token", body=body)
        if response.status in (400, 401, 403):
            self._log("DataCrunch API: refresh token refused; authenticating again")
            self.authenticate()
            return
        if response.status >= 400:
            raise self._error("POST", "/oauth2/token", response, attempts)
        self._take_token(response)

    def _token(self):
        if not self._access_token:
            self.authenticate()
        elif self._clock() >= self._expires_at:
            self.refresh()
        return self._access_token

    # ---- requests ----------------------------------------------------------------------------------------------

    def request(self, method, path, params=None, body=None):
        """Sends an authenticated request; returns the response. Errors raise DataCrunchAPIError."""
        response, attempts = self._send_retrying(method, path, params=params, body=body, token=self._token())
        if response.status == 401:
            # The token may have been revoked or expired early: one more try with a fresh one.
            self._log("DataCrunch API: access token refused; refreshing")
            self.refresh()
            response, attempts = self._send_retrying(method, path, params=params, body=body, token=self._token())
        if response.status >= 400:
            raise self._error(method, path, response, attempts)
        return response

    def _json(self, method, path, params=None, body=None):
        response = self.request(method, path, params=params, body=body)
        try:
            return response.json()
        except ValueError:
            raise self._fail(f"DataCrunch API {method} {path} answered with something other than JSON "
                             f"({_describe_body(response)}). Fix: check VERDA_BASE_URL", code="bad_answer") from None

    def _list(self, path, params=None):
        data = self._json("GET", path, params=params)
        if not isinstance(data, list):
            raise self._fail(f"DataCrunch API GET {path} answered with {type(data).__name__}, not a list. "
                             "Fix: check VERDA_BASE_URL", code="bad_answer")
        return data

    def _get_or_none(self, path):
        try:
            return self._json("GET", path)
        except DataCrunchAPIError as error:
            if is_gone(error):
                return None
            raise

    @staticmethod
    def _segment(value, what):
        value = str(value)
        if not value or value in (".", "..") or not all(c.isalnum() or c in "-._~" for c in value):
            raise DataCrunchConfigError(f"{what}={value!r} is not a valid identifier: use the id the API returned")
        return value

    # Instances

    def list_instances(self, status=None):
        return self._list("/instances", params={"status": status})

    def get_instance(self, instance_id):
        return self._get_or_none("/instances/" + self._segment(instance_id, "instance id"))

    def create_instance(self, payload):
        """Orders an instance; returns its id.

        The API answers with the bare id as text (Python SDK verda/instances/_instances.py), or with the instance as
        JSON, or the id as a JSON string (Go SDK pkg/verda/instances.go, createWithPlainTextResponse). The order is
        placed either way: an answer without a usable id is reported without quoting it (it holds the instance's
        Jupyter token).
        """
        response = self.request("POST", "/instances", body=payload)
        text = response.text().strip()
        try:
            data = json.loads(text) if text[:1] in ('{', '"') else text
        except ValueError:
            data = None
        if isinstance(data, dict):
            data = data.get("id")
        if not _plain_id(data):
            raise self._fail(
                f"DataCrunch API POST /instances took the order but answered without a usable instance id "
                f"({_describe_body(response)}): the instance may exist and be billed; look for hostname "
                f"{payload.get('hostname')!r} in the console, or run again (renting is idempotent by hostname)",
                code="bad_answer",
            )
        return data

    def instance_action(self, instance_ids, action, volume_ids=None, delete_permanently=False):
        """Runs an action on instances; returns the per-instance results. Raises DataCrunchActionError naming each
        instance the API refused (a 207 answer: Go SDK pkg/verda/instances_types.go, InstanceActionResult)."""
        body = {"id": list(instance_ids), "action": action, "volume_ids": volume_ids}
        if delete_permanently:
            body["delete_permanently"] = True
        response = self.request("PUT", "/instances", body=body)
        try:
            results = response.json()
        except ValueError:
            results = None
        results = [item for item in results if isinstance(item, dict)] if isinstance(results, list) else []
        failures = [item for item in results if item.get("error") or item.get("status") not in (None, "success")]
        if failures:
            described = "; ".join(
                "instance {}: {}{}".format(
                    item.get("instanceId") if _plain_id(item.get("instanceId")) else "(no id)",
                    f"HTTP {item['statusCode']} " if isinstance(item.get("statusCode"), int) else "",
                    item.get("error") if isinstance(item.get("error"), str) else item.get("status"),
                )
                for item in failures
            )
            raise DataCrunchActionError(
                self._redact(f"DataCrunch API PUT /instances ({action}) failed for {len(failures)} of "
                             f"{len(body['id'])} instance(s): {described}"),
                [(item.get("instanceId"), item.get("error") or item.get("status"), item.get("statusCode"))
                 for item in failures],
                code="action_failed",
                status=response.status,
            )
        return results

    def instance_available(self, instance_type, location=None, is_spot=False):
        """True or the JSON string "true" (Go SDK pkg/verda/instances.go, CheckInstanceTypeAvailability)."""
        path = "/instance-availability/" + self._segment(instance_type, "instance_type")
        return yes_answer(self._json("GET", path, params={"isSpot": str(bool(is_spot)).lower(),
                                                          "location_code": location}))

    def list_images(self, instance_type, cluster=False):
        """Names of the OS images a type accepts (each image's image_type): GET /images?instance_type=, for cluster
        types GET /images/cluster?instance_type= (Go SDK pkg/verda/images.go; Python SDK get_cluster_images)."""
        path = "/images/cluster" if cluster else "/images"
        names = []
        for image in self._list(path, params={"instance_type": instance_type}):
            name = image.get("image_type") if isinstance(image, dict) else image
            if isinstance(name, str) and name:
                names.append(name)
        return names

    # Instant Clusters

    def list_clusters(self, status=None):
        return self._list("/clusters", params={"status": status})

    def get_cluster(self, cluster_id):
        return self._get_or_none("/clusters/" + self._segment(cluster_id, "cluster id"))

    def create_cluster(self, payload):
        data = self._json("POST", "/clusters", body=payload)
        if not isinstance(data, dict) or not _plain_id(data.get("id")):
            raise self._fail("DataCrunch API POST /clusters took the order but answered without a usable id: the "
                             f"cluster may exist and be billed; look for hostname {payload.get('hostname')!r} in the "
                             "console", code="bad_answer")
        return data["id"]

    def discontinue_clusters(self, cluster_ids):
        body = {"actions": [{"id": cluster_id, "action": "discontinue"} for cluster_id in cluster_ids]}
        return self.request("PUT", "/clusters", body=body).json()

    def cluster_available(self, cluster_type, location=None):
        path = "/cluster-availability/" + self._segment(cluster_type, "cluster_type")
        text = self.request("GET", path, params={"location_code": location}).text().strip()
        try:
            return yes_answer(json.loads(text))
        except ValueError:
            return text == "true"

    # SSH keys

    def list_ssh_keys(self):
        return self._list("/sshkeys")
