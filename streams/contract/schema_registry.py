"""A Confluent-compatible Schema Registry: a small HTTP client and the codec's lookup of schemas by id.

Records in the Confluent wire format are `00`, the 4-byte big-endian schema id, the Avro body. The
writer's schema is found by that id in the registry: `IdLookup` asks the registry once per id, with a
timeout, and keeps the answers in a bounded cache. A registry that does not answer is not asked again for
a second (every lookup fails at once meanwhile: longer, and a record replayed just after the registry came
back was parked again unasked), and an id it does not know is remembered as unknown
for a while, so a run of bad records costs no more than one timeout a second, never a stalled
partition: the codec turns each failure into a `DecodeError`, which the agents dead-letter.

Subjects are named by record (Confluent's `RecordNameStrategy`): one topic holds several record types,
so the subject of `streambank.account.Deposit` is `streambank.account.Deposit` wherever it is written.

Configuration (read when a command starts): `BANK_SCHEMA_REGISTRY_URL` (e.g. `http://127.0.0.1:8081`, the
local Apicurio registry; a URL ending in `/apis/ccompat/v7` or any Confluent-compatible registry's root
is used as given), basic auth as `https://user:password@host/...` or `BANK_SCHEMA_REGISTRY_USER_INFO`
(`user:password`, Confluent's `basic.auth.user.info`), `BANK_SCHEMA_REGISTRY_TIMEOUT` (seconds per
request, default 3).
"""
from __future__ import annotations

import base64
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import OrderedDict

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
#: Where Apicurio Registry 2.x serves its Confluent-compatible API.
CCOMPAT_PATH = "/apis/ccompat/v7"
COMPATIBILITY = "BACKWARD"


class RegistryError(RuntimeError):
    """The registry refused a request or could not be reached."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class RegistryUnavailable(RegistryError):
    """No answer from the registry (refused, timed out, reset)."""


class SchemaNotFound(RegistryError):
    """The registry does not know this schema id, subject or version (HTTP 404)."""


class Incompatible(RegistryError):
    """The registry refused a schema as incompatible with the subject's versions (HTTP 409)."""


def base_url(url: str) -> str:
    """The API root to send requests to: a bare Apicurio address gets its Confluent-compatible path."""
    url = url.rstrip("/")
    path = urllib.parse.urlsplit(url).path
    if path in ("", "/"):
        return url + CCOMPAT_PATH
    return url


def subject_for(full_name: str) -> str:
    """RecordNameStrategy: the subject is the record's full name."""
    return full_name


class RegistryClient:
    """The handful of Schema Registry calls the project needs, on the standard library's HTTP client."""

    def __init__(self, url: str, user_info: str | None = None, timeout: float = 3.0):
        parts = urllib.parse.urlsplit(url)
        if parts.username is not None:  # https://user:password@host/... : take the credentials out of the URL
            user_info = user_info or f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
            netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
            url = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
        self.url = base_url(url)
        self.timeout = timeout
        self._headers = {"Accept": CONTENT_TYPE, "Content-Type": CONTENT_TYPE}
        if user_info:
            self._headers["Authorization"] = "Basic " + base64.b64encode(user_info.encode()).decode()

    def __repr__(self) -> str:
        return f"RegistryClient({self.url!r})"

    def request(self, method: str, path: str, body=None, timeout: float | None = None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=self._headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            try:
                detail = json.loads(exc.read() or b"{}")
                message = detail.get("message") or detail
            except ValueError:
                message = exc.reason
            cls = {404: SchemaNotFound, 409: Incompatible}.get(exc.code, RegistryError)
            if exc.code in (502, 503, 504):
                cls = RegistryUnavailable
            raise cls(f"{method} {path}: HTTP {exc.code}: {message}", exc.code) from None
        except (urllib.error.URLError, OSError) as exc:  # refused, timed out, reset, bad host
            reason = getattr(exc, "reason", exc)
            raise RegistryUnavailable(f"schema registry at {self.url} unreachable: {reason}") from None
        return json.loads(raw) if raw else None

    # --- the calls
    def subjects(self) -> list[str]:
        return self.request("GET", "/subjects")

    def schema_by_id(self, schema_id: int) -> str:
        answer = self.request("GET", f"/schemas/ids/{int(schema_id)}")
        if (answer.get("schemaType") or "AVRO") != "AVRO":
            raise RegistryError(f"schema id {schema_id} is {answer.get('schemaType')}, not Avro")
        return answer["schema"]

    def register(self, subject: str, schema: str) -> int:
        """Registers (or finds) a schema version under a subject; the registry checks compatibility."""
        return int(self.request("POST", f"/subjects/{_quote(subject)}/versions", {"schema": schema})["id"])

    def lookup(self, subject: str, schema: str) -> int | None:
        """The id of this schema if it is registered under the subject, else None."""
        try:
            return int(self.request("POST", f"/subjects/{_quote(subject)}", {"schema": schema})["id"])
        except SchemaNotFound:
            return None

    def versions(self, subject: str) -> list[int]:
        try:
            return self.request("GET", f"/subjects/{_quote(subject)}/versions")
        except SchemaNotFound:
            return []

    def is_compatible(self, subject: str, schema: str) -> bool:
        """Would this schema be accepted as the subject's next version? (True for a new subject.)"""
        if not self.versions(subject):
            return True
        answer = self.request("POST", f"/compatibility/subjects/{_quote(subject)}/versions/latest",
                              {"schema": schema})
        return bool(answer.get("is_compatible"))

    def compatibility(self, subject: str | None = None) -> str | None:
        try:
            answer = self.request("GET", f"/config/{_quote(subject)}" if subject else "/config")
        except SchemaNotFound:
            return None
        return answer.get("compatibilityLevel") or answer.get("compatibility")

    def set_compatibility(self, level: str = COMPATIBILITY, subject: str | None = None) -> None:
        self.request("PUT", f"/config/{_quote(subject)}" if subject else "/config", {"compatibility": level})


def _quote(subject: str) -> str:
    return urllib.parse.quote(subject, safe="")


class IdLookup:
    """Schema id → whatever `build(schema_text)` makes of the registry's schema, cached and bounded.

    `pin` adds entries that are never evicted (the ids of the schemas this process writes).
    """

    def __init__(self, client: RegistryClient, build, max_entries: int = 1024, down_for: float = 1.0,
                 unknown_for: float = 30.0):
        self.client = client
        self.build = build
        self.max_entries = max_entries
        self.down_for = down_for
        self.unknown_for = unknown_for
        self._pinned: dict[int, object] = {}
        self._cache: OrderedDict[int, object] = OrderedDict()
        self._failed: OrderedDict[int, tuple[float, RegistryError]] = OrderedDict()
        self._down_until = 0.0
        self._down_error: RegistryError | None = None
        self._lock = threading.Lock()
        self.lookups = 0  # requests made to the registry (for tests and metrics)

    def pin(self, schema_id: int, entry) -> None:
        self._pinned[schema_id] = entry

    def get(self, schema_id: int):
        """The entry for this id; raises `RegistryError` (unavailable, unknown id, unusable schema)."""
        entry = self._pinned.get(schema_id)
        if entry is not None:
            return entry
        entry = self._cache.get(schema_id)
        if entry is not None:
            return entry
        return self._fetch(schema_id)

    def _fetch(self, schema_id: int):
        now = time.monotonic()
        with self._lock:
            entry = self._cache.get(schema_id)
            if entry is not None:
                return entry
            failed = self._failed.get(schema_id)
            if failed is not None and failed[0] > now:
                raise failed[1]
            if self._down_until > now:
                raise RegistryUnavailable(f"{self._down_error} (not asked again for "
                                          f"{self._down_until - now:.1f} s)")
            self.lookups += 1
            try:
                text = self.client.schema_by_id(schema_id)
            except RegistryUnavailable as exc:
                self._down_until, self._down_error = now + self.down_for, exc
                raise
            except SchemaNotFound as exc:
                self._remember_failure(schema_id, SchemaNotFound(f"the schema registry has no schema id {schema_id}",
                                                                 404), now)
                raise self._failed[schema_id][1] from exc
            except RegistryError as exc:
                self._remember_failure(schema_id, exc, now)
                raise
            try:
                entry = self.build(text)
            except RegistryError as exc:
                self._remember_failure(schema_id, exc, now)
                raise
            self._cache[schema_id] = entry
            while len(self._cache) > self.max_entries:
                self._cache.popitem(last=False)
            return entry

    def _remember_failure(self, schema_id: int, exc: RegistryError, now: float) -> None:
        self._failed[schema_id] = (now + self.unknown_for, exc)
        while len(self._failed) > self.max_entries:
            self._failed.popitem(last=False)


def client_from_settings(settings) -> RegistryClient | None:
    if not settings.schema_registry_url:
        return None
    return RegistryClient(settings.schema_registry_url, settings.schema_registry_user_info,
                          settings.schema_registry_timeout)
