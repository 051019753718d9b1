"""The HTTP API: thin handlers that produce commands and read table-backed views.

Any worker answers for any key: a GET is served by the worker that owns the key's partition,
forwarded there when it is another worker (with a timeout), or answered 503 with Retry-After
while partitions move.
"""
from __future__ import annotations

import asyncio
import logging
import re
import time

import aiohttp
import faust
import orjson
from aiohttp import web as aioweb
from yarl import URL

from .. import topology
from ..client import BankClient
from ..contract.jsonio import InputError, as_money, new_id, parse_json, to_plain
from ..contract.topics import partition_for
from ..domain import accounts, customers, transfers
from ..domain.base import Rejection
from ..domain.outcomes import PENDING
from ..ops.as_of import HistoryUnavailable, account_state_at, as_json, parse_instant
from ..services.privacy import email_hash, personal_data_of
from ..services.projections import history_key
from ..worker.metrics import register_metrics
from ..worker.pipeline import Pipeline
from .dashboard import DashboardRoutes
from .limits import MAX_BODY
from .openapi import register_docs
from .responses import ApiError, json_errors, json_response, make_auth_check, query_float, query_int

log = logging.getLogger(__name__)

ROUTED_HEADER = "X-Bank-Routed"
SERVED_BY_HEADER = "X-Bank-Served-By"  # which worker read its table: helps operators see routing
AS_OF_TIMEOUT = 10.0  # seconds to read an account's partition for ?as_of=


class NoAnswer(Exception):
    """The worker owning a key did not answer a forwarded GET."""

    def __init__(self, cause: str):
        super().__init__(cause)
        self.cause = cause


class Api:
    """The handlers, bound to one pipeline."""

    def __init__(self, pipeline: Pipeline):
        self.pipeline = pipeline
        self.app: faust.App = pipeline.app
        self.codec = pipeline.codec
        self.tables = pipeline.tables
        self._client: BankClient | None = None
        self._http: aiohttp.ClientSession | None = None

    # -- plumbing -----------------------------------------------------------------------------
    @property
    def client(self) -> BankClient:
        if self._client is None:
            self._client = BankClient(self.pipeline.settings, self.codec)
        return self._client

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession()
        return self._http

    async def close(self):
        if self._http is not None:
            await self._http.close()
        if self._client is not None:
            self._client.close()

    def ready(self) -> bool:
        # A worker shutting down closes its tables while its web server still answers: a read then finds
        # nothing and would say 404 for an account that exists (seen in the rebalance test).
        return (not self.app.should_stop and not self.app.rebalancing and not self.app.in_recovery
                and self.app.tables.actives_ready)

    def unavailable(self, why: str) -> ApiError:
        return ApiError(503, "UNAVAILABLE", why, headers={"Retry-After": "1"})

    async def body(self, request) -> dict:
        try:
            data = parse_json(await request.read())
        except RecursionError:  # json.loads on `[[[[...` (deeper than Python's stack): bad input, not a 500
            raise InputError("the body is nested too deeply", code="INVALID_JSON") from None
        if not isinstance(data, dict):
            raise InputError("the body must be a JSON object", code="INVALID_JSON")
        return data

    async def routed(self, request, table: str, key: str, serve):
        """Serves locally when this worker owns `key` in `table`, else forwards the GET to the owner."""
        if request.headers.get(ROUTED_HEADER) or self._owns(table, key):
            if request.headers.get(ROUTED_HEADER) and not self._owns(table, key):
                # Forwarded here by a worker whose view of the assignment is older or newer than ours:
                # our table does not hold this key's partition, so "not found" would be a lie.
                raise self.unavailable("this key's partition is moving between workers; retry shortly")
            if not self.ready():
                raise self.unavailable("partitions are being assigned or recovered; retry shortly")
            try:
                response = await serve()
            except ApiError as exc:  # a 404 too says who answered it
                exc.headers = {**(exc.headers or {}), SERVED_BY_HEADER: str(self.app.conf.canonical_url)}
                raise
            response.headers[SERVED_BY_HEADER] = str(self.app.conf.canonical_url)
            return response
        try:
            status, body, headers = await self.forward(table, key, request.path, request.query,
                                                       query_float(request, "wait") + 10)
        except NoAnswer as exc:
            raise self.unavailable(f"the worker owning this key did not answer ({exc.cause})") from None
        return aioweb.Response(body=body, status=status, content_type="application/json", headers=headers)

    async def forward(self, table: str, key: str, path: str, query, timeout: float) -> tuple[int, bytes, dict]:
        """GETs `path?query` from the worker owning `key` in `table`: its status, body and the headers worth
        passing on. Raises NoAnswer when it does not answer within `timeout` seconds."""
        url = URL(str(self._owner(table, key))).with_path(path).with_query(query)
        try:
            async with self.http.get(url, headers={ROUTED_HEADER: "1"},
                                     timeout=aiohttp.ClientTimeout(total=timeout)) as response:
                headers = {k: v for k, v in response.headers.items()
                           if k in ("Retry-After", "X-Bank-Stale", SERVED_BY_HEADER)}
                return response.status, await response.read(), headers
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise NoAnswer(exc.__class__.__name__) from None

    def _owner(self, table: str, key: str) -> URL:
        """The URL of the worker that actively owns `key`'s partition of `table`.

        Computed here rather than by Faust's router, which asks the producer's metadata for the
        partition count and fails (TypeError) until this worker has written to that changelog.
        """
        topic = self.tables[table].changelog_topic.get_topic_name()
        partition = partition_for(key.encode(), self.pipeline.settings.partitions)
        for url, assigned in self.app.assignor.changelog_distribution.items():
            if partition in assigned.get(topic, ()):
                return URL(url)
        raise self.unavailable("no worker owns this key yet; retry shortly")

    def _owns(self, table: str, key: str) -> bool:
        owner = self._owner(table, key)
        return (owner.host, owner.port) == (self.app.conf.canonical_url.host, self.app.conf.canonical_url.port)

    async def read_view(self, table: str, key: str, request, version_of=lambda view: view.version,
                        wake: tuple[str, str] | None = None):
        """The view at `key`, waiting (`?wait=`) until it exists and reaches `?min_version=`."""
        min_version = query_int(request, "min_version") or 0

        def reached(data: bytes):
            view = self.codec.decode(data)
            return view if version_of(view) >= min_version and version_of(view) > 0 else None
        view, done = await self.wait_for(table, key, query_float(request, "wait"), reached, wake)
        if done:
            return view, True
        view = self.codec.decode(view) if view is not None else None
        return (view if view is not None and version_of(view) > 0 else None), False

    async def serve_view(self, request, table: str, key: str, missing: str, message: str, render, *,
                         route_key: str | None = None):
        """GET of the view at `key`: served by its owner (`routed`, by `route_key`, default `key`: the key
        its sources partition by) once it reaches `?min_version=` within `?wait=` (`X-Bank-Stale: true`
        when the wait ran out first), as `render(view)`; 404 `missing` when there is none."""
        async def serve():
            # An agent tells the waiters of its view's own table, by the key of the record it applied.
            wake = (topology.VIEW_BY_NAME[topology.VIEW_OF_TABLE[table]].table, route_key) if route_key else None
            view, reached = await self.read_view(table, key, request, wake=wake)
            if view is None:
                raise ApiError(404, missing, message)
            return json_response(render(view), headers=None if reached else {"X-Bank-Stale": "true"})
        return await self.routed(request, table, route_key or key, serve)

    def derived_view(self, table: topology.Table):
        """The GET of a view route `streams.topology` declares with its record and no handler here: routed
        by the route's first path parameter (the key its sources partition by); the entry is keyed by the
        parameters joined with "#" (one parameter: the key itself); the answer is the record as JSON."""
        names = re.findall(r"{(\w+)}", table.route)

        async def get(request):
            values = [request.match_info[name] for name in names]
            return await self.serve_view(request, table.name, "#".join(values), "NOT_FOUND",
                                         f"{' '.join(values)}: no such {table.record.__name__}", to_plain,
                                         route_key=values[0])
        return get

    async def wait_for(self, table: str, key: str, wait: float, accept=lambda data: data,
                       wake: tuple[str, str] | None = None, read=None):
        """Waits up to `wait` seconds for this worker's view entry at `key` to be accepted (`accept(bytes)`
        not None), woken by its agent's writes (of `wake`: (view table, record key), default (table, key)):
        (what `accept` returned, True), or (the entry's bytes or None, False) when the wait ran out.
        `read()`, when given, reads the entry in place of the view."""
        deadline = time.monotonic() + wait
        while True:
            data = read() if read is not None else self.pipeline.view(table).get(key)
            found = accept(data) if data is not None else None
            if found is not None:
                return found, True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return data, False
            await self.pipeline.waiters.changed(*(wake or (table, key)), remaining)

    # -- commands -----------------------------------------------------------------------------
    async def submit(self, request, command, validate, ids: dict) -> aioweb.Response:
        rejection: Rejection | None = validate(command)
        if rejection:
            raise ApiError(400, rejection.reason, rejection.message, rejection.field)
        wait = query_float(request, "wait")
        try:
            await self.client.send_async(command, timeout=15)
        except Exception as exc:  # the broker did not take it: say so, the client may retry with the same id
            raise self.unavailable(f"the command could not be written to Kafka: {exc}") from None
        body = {**ids, "command_id": command.command_id}
        if not wait:
            return json_response(body, 202)
        outcome = await self.outcome_of(command.command_id, wait)
        body.update(outcome)
        return json_response(body, 202 if outcome["status"] == PENDING else 200)

    async def outcome_of(self, command_id: str, wait: float) -> dict:
        """The outcome as GET /api/commands/{id} gives it: from this worker's processors if one committed
        it, else from whichever worker owns it in the outcome view."""
        committed_here = self.pipeline.recent_outcomes.get(command_id)
        if committed_here is not None:
            return self._outcome_json(committed_here)
        if self._owns("command_to_outcome", command_id):
            outcome, _ = await self._local_outcome(command_id, wait)
            return outcome
        try:
            status, body, _ = await self.forward("command_to_outcome", command_id, f"/api/commands/{command_id}",
                                                 {"wait": str(wait)}, wait + 10)
            if status == 200:
                return orjson.loads(body)
        except NoAnswer:
            pass
        return {"command_id": command_id, "status": PENDING}

    def _outcome_json(self, data: bytes) -> dict:
        return {k: v for k, v in to_plain(self.codec.decode(data)).items() if v is not None}

    async def _local_outcome(self, command_id: str, wait: float):
        recent, view = self.pipeline.recent_outcomes, self.pipeline.view
        outcome, found = await self.wait_for("command_to_outcome", command_id, wait, self._outcome_json,
                                             read=lambda: recent.get(command_id) or view("command_to_outcome").get(command_id))
        return (outcome, True) if found else ({"command_id": command_id, "status": PENDING}, False)

    async def create_customer(self, request):
        data = await self.body(request)
        known = {"name", "email", "phone", "address", "customer_id"}
        reject_unknown(data, known)
        name = data.get("name")
        if not isinstance(name, dict):
            raise InputError("name must be an object {first_name, last_name}", "name", code="MISSING_FIELD")
        reject_unknown(name, {"first_name", "last_name"}, prefix="name.")
        customer_id = string_field(data, "customer_id", required=False) or new_id()
        command = customers.CreateCustomer(
            command_id=new_id(), customer_id=customer_id,
            first_name=string_field(name, "first_name", prefix="name."),
            last_name=string_field(name, "last_name", prefix="name."),
            email=string_field(data, "email"), phone=string_field(data, "phone", required=False),
            address=string_field(data, "address", required=False))
        return await self.submit(request, command, customers.validate, {"customer_id": customer_id})

    async def add_to_account(self, request):
        data = await self.body(request)
        reject_unknown(data, {"account_id", "title", "owner", "expected_version"})
        customer_id = request.match_info["customer_id"]
        command = customers.AddToAccount(
            command_id=new_id(), customer_id=customer_id, account_id=string_field(data, "account_id"),
            title=string_field(data, "title", required=False) or "",
            owner=string_field(data, "owner", required=False) or "",
            expected_version=version_field(data))
        return await self.submit(request, command, customers.validate, {"customer_id": customer_id})

    async def remove_to_account(self, request):
        customer_id = request.match_info["customer_id"]
        command = customers.RemoveToAccount(command_id=new_id(), customer_id=customer_id,
                                            account_id=request.match_info["account_id"])
        return await self.submit(request, command, customers.validate, {"customer_id": customer_id})

    async def open_account(self, request):
        data = await self.body(request)
        reject_unknown(data, {"customer_id", "title", "description", "initial_balance", "account_id"})
        account_id = string_field(data, "account_id", required=False) or new_id()
        if "initial_balance" not in data:
            raise InputError("initial_balance is required", "initial_balance", code="MISSING_FIELD")
        command = accounts.OpenAccount(
            command_id=new_id(), account_id=account_id, customer_id=string_field(data, "customer_id"),
            title=string_field(data, "title"), description=string_field(data, "description", required=False) or "",
            initial_balance=as_money(data["initial_balance"], "initial_balance"))
        if rejection := accounts.validate(command):
            raise ApiError(400, rejection.reason, rejection.message, rejection.field)
        if not await self.customer_exists(command.customer_id):
            raise ApiError(404, "CUSTOMER_NOT_FOUND", f"customer {command.customer_id} does not exist",
                           "customer_id")
        return await self.submit(request, command, accounts.validate, {"account_id": account_id})

    async def customer_exists(self, customer_id: str, wait: float = 5.0) -> bool:
        """Whether the customer view knows `customer_id`, allowing the view `wait` seconds to catch up."""
        if self._owns("customer_to_view", customer_id):
            if not self.ready():
                raise self.unavailable("partitions are being assigned or recovered; retry shortly")
            _, found = await self.wait_for("customer_to_view", customer_id, wait,
                                           lambda data: True if self.codec.decode(data).version > 0 else None)
            return found
        try:
            status, _, _ = await self.forward("customer_to_view", customer_id, f"/api/customers/{customer_id}",
                                              {"wait": str(wait)}, wait + 10)
        except NoAnswer:
            raise self.unavailable("the customer's worker did not answer") from None
        if status == 503:
            raise self.unavailable("the customer's worker is not ready; retry shortly")
        return status == 200

    async def money_command(self, request, command_type):
        data = await self.body(request)
        reject_unknown(data, {"amount", "expected_version"})
        if "amount" not in data:
            raise InputError("amount is required", "amount", code="MISSING_FIELD")
        account_id = request.match_info["account_id"]
        command = command_type(command_id=new_id(), account_id=account_id, amount=as_money(data["amount"], "amount"),
                               expected_version=version_field(data))
        return await self.submit(request, command, accounts.validate, {"account_id": account_id})

    async def deposit(self, request):
        return await self.money_command(request, accounts.Deposit)

    async def withdraw(self, request):
        return await self.money_command(request, accounts.Withdraw)

    async def close_account(self, request):
        account_id = request.match_info["account_id"]
        command = accounts.CloseAccount(command_id=new_id(), account_id=account_id)
        return await self.submit(request, command, accounts.validate, {"account_id": account_id})

    async def transfer_money(self, request):
        data = await self.body(request)
        reject_unknown(data, {"from_account_id", "to_account_id", "amount", "description", "transfer_id"})
        if "amount" not in data:
            raise InputError("amount is required", "amount", code="MISSING_FIELD")
        transfer_id = string_field(data, "transfer_id", required=False) or new_id()
        command = transfers.TransferMoney(
            command_id=new_id(), transfer_id=transfer_id, from_account_id=string_field(data, "from_account_id"),
            to_account_id=string_field(data, "to_account_id"), amount=as_money(data["amount"], "amount"),
            description=string_field(data, "description", required=False) or "")
        return await self.submit(request, command, transfers.validate, {"transfer_id": transfer_id})

    # -- queries ------------------------------------------------------------------------------
    async def get_customer(self, request):
        customer_id = request.match_info["customer_id"]

        return await self.serve_view(request, "customer_to_view", customer_id, "CUSTOMER_NOT_FOUND",
                                     f"customer {customer_id} does not exist", self.customer_json)

    def customer_json(self, view) -> dict:
        """The view with its personal data opened with the customer's key (held on this same worker:
        the keystore is partitioned by customer id like the view); redacted once forgotten."""
        return customer_json(view, self.tables["customer_to_key"].get(view.customer_id))

    async def forget_customer(self, request):
        customer_id = request.match_info["customer_id"]
        command = customers.ForgetCustomer(command_id=new_id(), customer_id=customer_id)
        return await self.submit(request, command, customers.validate, {"customer_id": customer_id})

    async def find_customer(self, request):
        email = request.query.get("email")
        if not email:
            raise InputError("give ?email= to look a customer up", "email", code="MISSING_FIELD")
        email = email_hash(self.pipeline.settings.email_hash_key, email)  # the lookup is keyed by the hash

        async def serve():
            customer_id, found = await self.wait_for("email_to_customer", email, query_float(request, "wait"))
            if not found:
                raise ApiError(404, "CUSTOMER_NOT_FOUND", "no customer has this email")
            customer_id = customer_id.decode()
            if self._owns("customer_to_view", customer_id):
                data = self.pipeline.view("customer_to_view").get(customer_id)
                if data is None:
                    raise ApiError(404, "CUSTOMER_NOT_FOUND", "no customer has this email")
                return json_response(self.customer_json(self.codec.decode(data)))
            try:
                status, body, _ = await self.forward("customer_to_view", customer_id,
                                                     f"/api/customers/{customer_id}", {}, 10)
            except NoAnswer:
                raise self.unavailable("the customer's worker did not answer") from None
            return aioweb.Response(body=body, status=status, content_type="application/json")
        return await self.routed(request, "email_to_customer", email, serve)

    async def get_account(self, request):
        account_id = request.match_info["account_id"]
        if "as_of" in request.query:  # state as of a time: folded from the log, not read from the view
            return await self.account_as_of(request, account_id)

        return await self.serve_view(request, "account_to_view", account_id, "ACCOUNT_NOT_FOUND",
                                     f"account {account_id} does not exist", to_plain)

    async def account_as_of(self, request, account_id: str):
        """`?as_of=<ISO-8601>`: the account and its statement as they were then (see streams/ops/as_of.py)."""

        try:
            as_of = parse_instant(request.query["as_of"])
        except ValueError as exc:
            raise InputError(str(exc), "as_of") from None
        try:
            state = await asyncio.wait_for(asyncio.to_thread(
                account_state_at, self.pipeline.settings, account_id, as_of, timeout=AS_OF_TIMEOUT,
                codec=self.codec), AS_OF_TIMEOUT + 2)
        except (HistoryUnavailable, asyncio.TimeoutError) as exc:
            raise self.unavailable(f"could not read the account's events: {exc or 'timed out'}") from None
        if state is None:
            raise ApiError(404, "ACCOUNT_NOT_FOUND", f"account {account_id} had no events at or before "
                                                     f"{request.query['as_of']}")
        return json_response(as_json(state))

    async def get_history(self, request):
        account_id = request.match_info["account_id"]

        def statement(view) -> dict:
            entries = []
            history = self.pipeline.view("account_version_to_entry")
            for version in range(1, view.version + 1):
                data = history.get(history_key(account_id, version))
                if data is not None:
                    entries.append(to_plain(self.codec.decode(data)))
            return {"account_id": account_id, "version": view.version, "entries": entries}
        return await self.serve_view(request, "account_to_view", account_id, "ACCOUNT_NOT_FOUND",
                                     f"account {account_id} does not exist", statement)

    async def get_transfer(self, request):
        transfer_id = request.match_info["transfer_id"]

        return await self.serve_view(request, "transfer_to_view", transfer_id, "TRANSFER_NOT_FOUND",
                                     f"transfer {transfer_id} does not exist",
                                     lambda view: {k: v for k, v in to_plain(view).items()
                                                   if not (k == "reason" and v is None)})

    async def get_command(self, request):
        command_id = request.match_info["command_id"]

        async def serve():
            outcome, _ = await self._local_outcome(command_id, query_float(request, "wait"))
            return json_response(outcome)
        return await self.routed(request, "command_to_outcome", command_id, serve)

    async def health(self, request):
        ready = self.ready()
        stalled = self.pipeline.stalled
        assignment = self.app.consumer.assignment() if self.app.consumer else set()
        body = {"status": "stalled" if stalled else "ok" if ready else "starting",
                "worker": str(self.app.conf.canonical_url),
                "rebalancing": bool(self.app.rebalancing), "recovering": bool(self.app.in_recovery),
                "assigned_partitions": len(assignment),
                "stalled_partitions": [f"{tp.topic}:{tp.partition}" for tp in stalled]}
        healthy = ready and not stalled
        return json_response(body, 200 if healthy else 503, None if healthy else {"Retry-After": "1"})


def reject_unknown(data: dict, known: set[str], prefix: str = "") -> None:
    unknown = sorted(set(data) - known)
    if unknown:
        name = unknown[0].encode("utf-8", "backslashreplace").decode()  # a "\ud800" key must not break the answer
        raise InputError(f"unknown field {prefix}{name}", prefix + name, code="UNKNOWN_FIELD")


def string_field(data: dict, name: str, *, required: bool = True, prefix: str = "") -> str | None:
    value = data.get(name)
    if value is None:
        if required:
            raise InputError(f"{prefix}{name} is required", prefix + name, code="MISSING_FIELD")
        return None
    if not isinstance(value, str):
        raise InputError(f"{prefix}{name} must be a string", prefix + name)
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate ("\ud800"): not text, and Kafka could not take it (was a 503)
            raise InputError(f"{prefix}{name} is not valid Unicode text", prefix + name) from None
    return value


def version_field(data: dict) -> int | None:
    value = data.get("expected_version")
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63):
        raise InputError("expected_version must be a non-negative integer", "expected_version")
    return value


#: Fields of the customer view that stay inside the worker.
_SEALED_FIELDS = ("email_hash", "personal_data", "key_id")


def customer_json(view, key: bytes | None) -> dict:
    """The customer as the API shows it; a forgotten customer's (or a key-less sealed blob's) name and
    email read "[forgotten]", phone and address null, and `forgotten` is true."""
    plain = to_plain(view)
    for name in _SEALED_FIELDS:
        plain.pop(name, None)
    data = personal_data_of(view, key)
    if view.version == 0:  # accounts seen before the customer's creation: nothing to open yet
        plain["forgotten"] = False
    else:
        plain.update(email=data.email, phone=data.phone, address=data.address,
                     forgotten=view.forgotten or (bool(view.personal_data) and key is None))
        plain["first_name"], plain["last_name"] = data.first_name, data.last_name
    plain["name"] = {"first_name": plain.pop("first_name"), "last_name": plain.pop("last_name")}
    return plain


def register_routes(pipeline: Pipeline) -> Api:
    """Adds the API's routes and error handling to the worker's aiohttp application."""
    api = Api(pipeline)
    web_app: aioweb.Application = pipeline.app.web.web_app
    web_app.middlewares.append(json_errors)
    web_app.middlewares.append(make_auth_check(pipeline.settings.api_token))
    web_app._client_max_size = MAX_BODY
    routes = web_app.router
    routes.add_post("/api/customers", api.create_customer)
    routes.add_get("/api/customers", api.find_customer)
    routes.add_get("/api/customers/{customer_id}", api.get_customer)
    routes.add_post("/api/customers/{customer_id}/toaccounts", api.add_to_account)
    routes.add_post("/api/customers/{customer_id}/forget", api.forget_customer)
    routes.add_delete("/api/customers/{customer_id}/toaccounts/{account_id}", api.remove_to_account)
    routes.add_post("/api/accounts", api.open_account)
    routes.add_get("/api/accounts/{account_id}", api.get_account)
    routes.add_delete("/api/accounts/{account_id}", api.close_account)
    routes.add_get("/api/accounts/{account_id}/history", api.get_history)
    routes.add_post("/api/accounts/{account_id}/deposits", api.deposit)
    routes.add_post("/api/accounts/{account_id}/withdrawals", api.withdraw)
    routes.add_post("/api/transfers", api.transfer_money)
    routes.add_get("/api/transfers/{transfer_id}", api.get_transfer)
    routes.add_get("/api/commands/{command_id}", api.get_command)
    routes.add_get("/health", api.health)
    for table in topology.ALL_TABLES:  # the views declared with their record and served as it is
        if table.route is not None and table.record is not None and not any(
                route.method == "GET" and route.resource.canonical == table.route for route in routes.routes()):
            routes.add_get(table.route, api.derived_view(table))
    register_docs(web_app)  # GET /openapi.json, GET /docs
    dashboard = DashboardRoutes(pipeline.settings, pipeline.codec, str(pipeline.app.conf.canonical_url))
    dashboard.register(web_app)  # GET / (the live page), GET /api/dashboard, GET /api/stream (SSE)
    register_metrics(web_app, pipeline.metrics)  # GET /metrics, and counts every request

    @pipeline.app.service
    class ApiResources(faust.Service):
        """Closes the API's HTTP session and producer when the worker stops."""

        async def on_stop(self) -> None:
            await dashboard.close()
            await asyncio.to_thread(dashboard.feed.stop)
            await api.close()

    return api
