"""The OpenAPI 3.1 description of the whole HTTP API, served at `/openapi.json`, and `/docs`, a plain
HTML page rendering it (no scripts, no CDN: it works offline).

This module is the one place the API is described. `tests/unit/test_openapi.py` checks that every
route `streams.http.api.register_routes` adds is described here and every path described here exists;
`tests/integration/test_openapi_conformance.py` validates real responses against it and fuzzes the
API from it with schemathesis.
"""
from __future__ import annotations

import copy
import dataclasses
import html
import json
import re
import types
import typing
from decimal import Decimal

from aiohttp import web as aioweb

from .. import topology
from ..domain import accounts, customers, transfers, views
from ..domain.outcomes import ACCEPTED, PENDING, REJECTED
from .limits import MAX_WAIT


# -- building blocks ---------------------------------------------------------------------------

#: Enums, from the domain's constants (as the Avro schemas are derived from its dataclasses).
ACCOUNT_STATUSES = [accounts.OPEN, accounts.CLOSED]
TRANSFER_STATES = [transfers.INITIATED, transfers.DEBITED, transfers.COMPLETED, transfers.FAILED, transfers.REFUNDED]
ENTRY_TYPES = [event.__name__ for event in accounts.ACCOUNT_EVENTS]  # a statement line's `entry_type`
OUTCOME_STATUSES = [PENDING, ACCEPTED, REJECTED]
TRANSFER_REASON = {"type": "string", "description": "why it failed or was refunded", "examples": ["INSUFFICIENT_FUNDS"]}
#: Fields whose values the domain constrains further than their Python type says.
FIELD_RULES = {"status": {"enum": ACCOUNT_STATUSES}, "state": {"enum": TRANSFER_STATES},
               "entry_type": {"enum": ENTRY_TYPES}, "version": {"type": "integer", "minimum": 1},
               "occurred_at": {"type": "integer", "description": "epoch milliseconds"}}

_REF = "#/components/schemas/"


def ref(name: str) -> dict:
    return {"$ref": _REF + name}


def text(max_length: int, description: str = "", *, min_length: int = 1) -> dict:
    schema = {"type": "string", "minLength": min_length, "maxLength": max_length}
    if description:
        schema["description"] = description
    return schema


def _type_schema(hint) -> dict:
    if hint is Decimal:
        return ref("Money")
    if hint in (str, int, bool):
        return {"type": {str: "string", int: "integer", bool: "boolean"}[hint]}
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (types.UnionType, typing.Union) and type(None) in args:
        (inner,) = (a for a in args if a is not type(None))
        return {"type": [_type_schema(inner)["type"], "null"]}
    if typing.get_origin(hint) is tuple:
        return {"type": "array", "items": ref(args[0].__name__)}
    raise TypeError(f"no JSON schema for {hint!r}")


def view_schema(record: type, *, optional: tuple[str, ...] = (), extra: dict | None = None,
                description: str | None = None, **fields) -> dict:
    """The JSON schema of a view as the API answers it (`jsonio.to_plain` of the dataclass `record`): its
    fields in order, each from its type (`FIELD_RULES` by name, or as given in `fields`); required unless
    it has a default or is `optional`; then the `extra` fields the answer adds, required too."""
    hints = typing.get_type_hints(record)
    properties, required = {}, []
    for f in dataclasses.fields(record):
        properties[f.name] = fields.get(f.name) or FIELD_RULES.get(f.name) or _type_schema(hints[f.name])
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and f.name not in optional:
            required.append(f.name)
    for name, schema in (extra or {}).items():
        properties[name] = schema
        required.append(name)
    schema = {"type": "object", "required": required, "additionalProperties": False, "properties": properties}
    return {"type": "object", "description": description, **schema} if description else schema


ERROR_CODES = (
    "INVALID_JSON", "INVALID_INPUT", "MISSING_FIELD", "UNKNOWN_FIELD", "INVALID_FIELD", "INVALID_AMOUNT",
    "SAME_ACCOUNT", "CUSTOMER_NOT_FOUND", "ACCOUNT_NOT_FOUND", "TRANSFER_NOT_FOUND", "NOT_FOUND",
    "UNAUTHORIZED", "BODY_TOO_LARGE", "METHOD_NOT_ALLOWED", "UNAVAILABLE",
)

SCHEMAS: dict[str, dict] = {
    "Error": {
        "type": "object",
        "description": "Every error answer: a machine-readable code, a message, and the offending field when "
                       "there is one. Codes include " + ", ".join(ERROR_CODES) + ".",
        "required": ["error"],
        "additionalProperties": False,
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "additionalProperties": False,
                "properties": {
                    "code": {"type": "string", "pattern": "^[A-Z][A-Z0-9_]*$", "examples": ["INVALID_AMOUNT"]},
                    "message": {"type": "string"},
                    "field": {"type": "string", "description": "the offending field or query parameter"},
                },
            },
        },
    },
    "Money": {
        "type": "string",
        "pattern": r"^-?[0-9]{1,16}\.[0-9]{2}$",
        "description": "An exact amount with two decimal places, as a string (never a float).",
        "examples": ["12.50"],
    },
    "MoneyInput": {
        "type": "string",
        "pattern": r"^[0-9]{1,16}(\.[0-9]{1,2})?$",
        "description": "An exact amount >= 0 as a decimal string with at most two decimal places, "
                       "below 10^16 (Avro decimal(18,2)).",
        "examples": ["12.50"],
    },
    "PositiveMoneyInput": {
        "type": "string",
        "pattern": r"^(0*[1-9][0-9]{0,15}(\.[0-9]{1,2})?|0*\.([1-9][0-9]?|0[1-9]))$",
        "description": "An exact amount > 0 as a decimal string with at most two decimal places, "
                       "below 10^16 (Avro decimal(18,2)).",
        "examples": ["12.50"],
    },
    "PersonName": {
        "type": "object",
        "required": ["first_name", "last_name"],
        "additionalProperties": False,
        "properties": {"first_name": text(200), "last_name": text(200)},
    },
    "CreateCustomer": {
        "type": "object",
        "required": ["name", "email"],
        "additionalProperties": False,
        "properties": {
            "name": ref("PersonName"),
            "email": {**text(254), "format": "email", "pattern": r"^\S+@\S+\.\S+$",
                      "description": "unique across customers (compared case-insensitively)"},
            "phone": text(50),
            "address": text(1000),
            "customer_id": text(200, "the customer's id; generated when absent (a retry with the same id "
                                     "is rejected ALREADY_EXISTS)"),
        },
    },
    "AddToAccount": {
        "type": "object",
        "required": ["account_id"],
        "additionalProperties": False,
        "properties": {
            "account_id": text(200),
            "title": text(1000, min_length=0),
            "owner": text(1000, min_length=0),
            "expected_version": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1},
        },
    },
    "OpenAccount": {
        "type": "object",
        "required": ["customer_id", "title", "initial_balance"],
        "additionalProperties": False,
        "properties": {
            "customer_id": text(200, "an existing customer (404 otherwise)"),
            "title": text(1000),
            "description": text(1000, min_length=0),
            "initial_balance": ref("MoneyInput"),
            "account_id": text(200, "the account's id; generated when absent"),
        },
    },
    "MoneyMovement": {
        "type": "object",
        "required": ["amount"],
        "additionalProperties": False,
        "properties": {
            "amount": ref("PositiveMoneyInput"),
            "expected_version": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1,
                                 "description": "optimistic concurrency: the account's current version"},
        },
    },
    "TransferMoney": {
        "type": "object",
        "required": ["from_account_id", "to_account_id", "amount"],
        "additionalProperties": False,
        "properties": {
            "from_account_id": text(200),
            "to_account_id": text(200, "must differ from from_account_id"),
            "amount": ref("PositiveMoneyInput"),
            "description": text(1000, min_length=0),
            "transfer_id": text(transfers.MAX_TRANSFER_ID, "the transfer's id; generated when absent"),
        },
    },
    "CommandOutcome": {
        "type": "object",
        "description": "A command's outcome; PENDING while none is known.",
        "required": ["command_id", "status"],
        "additionalProperties": False,
        "properties": {
            "command_id": {"type": "string"},
            "status": {"enum": OUTCOME_STATUSES},
            "command_type": {"type": "string", "examples": ["Deposit"]},
            "aggregate_id": {"type": "string"},
            "reason": {"type": "string", "description": "why it was rejected", "examples": ["INSUFFICIENT_FUNDS"]},
            "message": {"type": "string"},
            "field": {"type": "string"},
            "version": {"type": "integer", "description": "the aggregate's version after an accepted command"},
            "occurred_at": {"type": "integer", "description": "epoch milliseconds"},
        },
    },
    "AccountHistory": {
        "type": "object",
        "required": ["account_id", "version", "entries"],
        "additionalProperties": False,
        "properties": {
            "account_id": {"type": "string"},
            "version": {"type": "integer", "minimum": 1},
            "entries": {"type": "array", "items": ref("HistoryEntry")},
        },
    },
    "AccountView": view_schema(views.AccountView),
    "HistoryEntry": view_schema(
        views.HistoryEntry, amount={**ref("Money"), "description": "signed: withdrawals and debits are negative"},
        balance={**ref("Money"), "description": "the balance after this entry"},
        transfer_id={"type": ["string", "null"], "description": "set on the legs of a transfer"}),
    "AccountAsOf": view_schema(
        views.AccountView, description="The account as it was at ?as_of=, folded from bank.accounts.events: the view "
                                        "after its last event at or before that instant, with the statement up to it.",
        extra={"as_of": {"type": "string", "description": "the instant asked for, UTC, milliseconds",
                         "examples": ["2024-05-01T12:00:00.000Z"]},
               "history": {"type": "array", "items": ref("HistoryEntry")}}),
    "AccountSummary": view_schema(views.AccountSummary),
    "ToAccount": view_schema(customers.ToAccount),
    "TransferView": view_schema(transfers.Transfer, optional=("reason",), reason=TRANSFER_REASON),
    "DashboardAccount": view_schema(
        views.AccountSummary, extra={"updated_at": {"type": "integer", "description": "epoch ms of the account's last event"}}),
    "DashboardTransfer": view_schema(
        transfers.Transfer, optional=("reason",), reason={"type": "string"},
        extra={"updated_at": {"type": "integer", "description": "epoch ms of the transfer's last event"}}),
    "CustomerView": {
        "type": "object",
        "required": ["customer_id", "name", "email", "phone", "address", "version", "to_accounts", "accounts",
                     "forgotten"],
        "description": "Once the customer is forgotten (POST /api/customers/{customer_id}/forget), first_name, "
                       "last_name and email read \"[forgotten]\" and phone and address null; accounts stay.",
        "additionalProperties": False,
        "properties": {
            "customer_id": {"type": "string"},
            "name": {
                "type": "object", "required": ["first_name", "last_name"], "additionalProperties": False,
                "properties": {"first_name": {"type": "string"}, "last_name": {"type": "string"}},
            },
            "email": {"type": "string", "description": "normalized: trimmed, lower case"},
            "phone": {"type": ["string", "null"]},
            "address": {"type": ["string", "null"]},
            "version": {"type": "integer", "minimum": 1},
            "to_accounts": {"type": "array", "items": ref("ToAccount")},
            "accounts": {"type": "array", "items": ref("AccountSummary"),
                         "description": "the customer's accounts with their balances"},
            "forgotten": {"type": "boolean",
                          "description": "true once the customer's personal data was erased (its key deleted)"},
        },
    },
    "DashboardEvent": {
        "type": "object",
        "description": "One server-sent event of GET /api/stream: its name, and its data as JSON.",
        "required": ["event", "data"],
        "properties": {
            "event": {"enum": ["snapshot", "account", "transfer", "status"]},
            "data": {"type": "string", "contentMediaType": "application/json"},
            "retry": {"type": "integer", "minimum": 0, "description": "ms before a browser reconnects"},
            "id": {"type": "string"},
        },
        "oneOf": [
            {"properties": {"event": {"const": "snapshot"},
                            "data": {"contentMediaType": "application/json", "contentSchema": ref("Dashboard")}}},
            {"properties": {"event": {"const": "account"},
                            "data": {"contentMediaType": "application/json",
                                     "contentSchema": ref("DashboardAccount")}}},
            {"properties": {"event": {"const": "transfer"},
                            "data": {"contentMediaType": "application/json",
                                     "contentSchema": ref("DashboardTransfer")}}},
            {"properties": {"event": {"const": "status"},
                            "data": {"contentMediaType": "application/json",
                                     "contentSchema": {"type": "object", "required": ["caught_up"],
                                                       "properties": {"caught_up": {"type": "boolean"}}}}}},
        ],
    },
    "Dashboard": {
        "type": "object",
        "description": "Folded by this worker from every partition of the event topics (not only its own).",
        "required": ["accounts", "transfers", "totals", "caught_up", "worker"],
        "additionalProperties": False,
        "properties": {
            "accounts": {"type": "array", "items": ref("DashboardAccount"),
                         "description": "the 500 most recently changed accounts, by customer and title"},
            "transfers": {"type": "array", "items": ref("DashboardTransfer"),
                          "description": "the 50 latest transfers, the latest first"},
            "totals": {
                "type": "object", "required": ["accounts", "transfers", "events", "balance"],
                "additionalProperties": False,
                "properties": {"accounts": {"type": "integer", "minimum": 0},
                               "transfers": {"type": "integer", "minimum": 0},
                               "events": {"type": "integer", "minimum": 0},
                               "balance": ref("Money")},
            },
            "caught_up": {"type": "boolean",
                          "description": "the event topics were read up to their end offsets at the first request"},
            "worker": {"type": "string"},
            "error": {"type": "string", "description": "why the event topics cannot be read, while they cannot"},
        },
    },
    "Health": {
        "type": "object",
        "required": ["status", "worker", "rebalancing", "recovering", "assigned_partitions", "stalled_partitions"],
        "additionalProperties": False,
        "properties": {
            "status": {"enum": ["ok", "starting", "stalled"]},
            "worker": {"type": "string", "description": "this worker's URL"},
            "rebalancing": {"type": "boolean"},
            "recovering": {"type": "boolean"},
            "assigned_partitions": {"type": "integer", "minimum": 0},
            "stalled_partitions": {"type": "array", "items": {"type": "string"},
                                   "description": "`topic:partition` of assigned partitions waiting without "
                                                  "progress"},
        },
    },
}


def command_answer(*id_fields: str) -> dict:
    """What a command POST answers: the ids, and with `?wait=` the outcome's fields."""
    outcome = SCHEMAS["CommandOutcome"]["properties"]
    return {
        "type": "object",
        "required": [*id_fields, "command_id"],
        "additionalProperties": False,
        "properties": {**{name: {"type": "string"} for name in id_fields}, **outcome},
    }


SCHEMAS.update({
    "CustomerCommandAnswer": command_answer("customer_id"),
    "AccountCommandAnswer": command_answer("account_id"),
    "TransferCommandAnswer": command_answer("transfer_id"),
})


def _error(description: str, headers: dict | None = None) -> dict:
    answer = {"description": description, "content": {"application/json": {"schema": ref("Error")}}}
    if headers:
        answer["headers"] = headers
    return answer


RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "string"}}}
STALE = {"X-Bank-Stale": {"description": "`true` when ?wait= ran out before the view reached ?min_version=",
                          "schema": {"type": "string"}}}

RESPONSES = {
    "BadRequest": _error("Bad input: invalid JSON, a wrong type, an unknown or missing field, a bad amount "
                         "or query parameter."),
    "Unauthorized": _error("A bearer token is required (when the worker has BANK_API_TOKEN set).",
                           {"WWW-Authenticate": {"schema": {"type": "string"}}}),
    "NotFound": _error("No such customer, account or transfer."),
    "TooLarge": _error("The body is larger than 64 KiB."),
    "Unavailable": _error("Partitions are being assigned or recovered, the owning worker did not answer, or "
                          "Kafka did not take the command: retry after Retry-After seconds.", RETRY_AFTER),
}

PARAMETERS = {
    "wait": {
        "name": "wait", "in": "query", "required": False,
        "description": f"Seconds (0 to {MAX_WAIT:g}) to wait: for a command's outcome (POST, DELETE) or for the "
                       "view to exist and reach min_version (GET).",
        "schema": {"type": "number", "minimum": 0, "maximum": MAX_WAIT},
    },
    "min_version": {
        "name": "min_version", "in": "query", "required": False,
        "description": "Read your writes: answer once the view has reached this version (with wait).",
        "schema": {"type": "integer", "minimum": 0},
    },
}


def path_id(name: str, description: str) -> dict:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": {"type": "string", "minLength": 1}}


CUSTOMER_ID = path_id("customer_id", "the customer's id")
ACCOUNT_ID = path_id("account_id", "the account's id")


def _json(schema_name: str, description: str, headers: dict | None = None) -> dict:
    answer = {"description": description, "content": {"application/json": {"schema": ref(schema_name)}}}
    if headers:
        answer["headers"] = headers
    return answer


def command_operation(operation_id: str, summary: str, answer: str, *, body: str | None = None,
                      parameters: tuple = (), not_found: bool = False, description: str = "") -> dict:
    """A write: produces one command; 202 at once, or with ?wait= 200 with the outcome (202 if it ran out)."""
    responses = {
        "200": _json(answer, "The outcome is known (with ?wait=): ACCEPTED with the version, or REJECTED "
                             "with the reason."),
        "202": _json(answer, "The command is in Kafka; without ?wait=, or the wait ran out (status PENDING)."),
        "400": ref_response("BadRequest"),
        "401": ref_response("Unauthorized"),
        "503": ref_response("Unavailable"),
    }
    if not_found:
        responses["404"] = ref_response("NotFound")
    if body:
        responses["413"] = ref_response("TooLarge")
    operation = {"operationId": operation_id, "summary": summary}
    if description:
        operation["description"] = description
    operation.update(tags=["commands"], parameters=[*parameters, {"$ref": "#/components/parameters/wait"}],
                     security=[{}, {"bearerAuth": []}])
    if body:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": ref(body)}}}
    operation["responses"] = dict(sorted(responses.items()))
    return operation


def view_operation(operation_id: str, summary: str, answer: str, parameters: tuple, *, min_version=True,
                   description: str = "") -> dict:
    query = [{"$ref": "#/components/parameters/wait"}]
    if min_version:
        query.insert(0, {"$ref": "#/components/parameters/min_version"})
    operation = {
        "operationId": operation_id, "summary": summary, "tags": ["views"],
        "parameters": [*parameters, *query],
        "responses": {
            "200": _json(answer, "The view (served by the worker owning the key; any worker answers).", STALE),
            "400": ref_response("BadRequest"),
            "404": ref_response("NotFound"),
            "503": ref_response("Unavailable"),
        },
    }
    if description:
        operation["description"] = description
    return operation


def _with_as_of(operation: dict) -> dict:
    """GET /api/accounts/{id}?as_of=: the answer is then an AccountAsOf folded from the log."""
    operation["parameters"].append({
        "name": "as_of", "in": "query", "required": False,
        "description": "ISO-8601 instant (no offset: UTC): answer the account as it was then, folded from the "
                       "event log (min_version and wait are ignored); 404 when it had no events by then.",
        "schema": {"type": "string", "minLength": 1}, "examples": {"utc": {"value": "2024-05-01T12:00:00Z"}}})
    ok = operation["responses"]["200"]["content"]["application/json"]
    ok["schema"] = {"oneOf": [ok["schema"], ref("AccountAsOf")]}
    return operation


def ref_response(name: str) -> dict:
    return {"$ref": "#/components/responses/" + name}


PATHS: dict[str, dict] = {
    "/api/customers": {
        "post": command_operation(
            "createCustomer", "Create a customer", "CustomerCommandAnswer", body="CreateCustomer",
            description="The email is reserved first (unique across customers); the outcome is REJECTED "
                        "EMAIL_TAKEN when another customer has it."),
        "get": view_operation(
            "findCustomerByEmail", "Look a customer up by email", "CustomerView",
            ({"name": "email", "in": "query", "required": True, "description": "compared case-insensitively",
              "schema": {"type": "string", "minLength": 1}},), min_version=False),
    },
    "/api/customers/{customer_id}": {
        "get": view_operation("getCustomer", "A customer with its to-accounts and accounts with balances",
                              "CustomerView", (CUSTOMER_ID,)),
    },
    "/api/customers/{customer_id}/toaccounts": {
        "post": command_operation("addToAccount", "Add an account this customer may transfer to",
                                  "CustomerCommandAnswer", body="AddToAccount", parameters=(CUSTOMER_ID,)),
    },
    "/api/customers/{customer_id}/forget": {
        "post": command_operation(
            "forgetCustomer", "Forget a customer: erase its personal data for good", "CustomerCommandAnswer",
            parameters=(CUSTOMER_ID,),
            description="Deletes the customer's encryption key (crypto-shredding): its name, email, phone and "
                        "address become unreadable in every view, replay and topic; accounts, balances and "
                        "transfers stay. REJECTED CUSTOMER_NOT_FOUND for an unknown customer; forgetting "
                        "twice is ACCEPTED and changes nothing."),
    },
    "/api/customers/{customer_id}/toaccounts/{account_id}": {
        "delete": command_operation("removeToAccount", "Remove a to-account", "CustomerCommandAnswer",
                                    parameters=(CUSTOMER_ID, ACCOUNT_ID)),
    },
    "/api/accounts": {
        "post": command_operation("openAccount", "Open an account for an existing customer", "AccountCommandAnswer",
                                  body="OpenAccount", not_found=True,
                                  description="404 CUSTOMER_NOT_FOUND when the customer view does not know "
                                              "the customer (after waiting up to 5 s for it to catch up)."),
    },
    "/api/accounts/{account_id}": {
        "get": _with_as_of(view_operation(
            "getAccount", "An account and its balance (with ?as_of=, as it was then, with its history)",
            "AccountView", (ACCOUNT_ID,))),
        "delete": command_operation("closeAccount", "Close an account (only at balance 0)", "AccountCommandAnswer",
                                    parameters=(ACCOUNT_ID,)),
    },
    "/api/accounts/{account_id}/history": {
        "get": view_operation("getAccountHistory", "The account's statement, in order", "AccountHistory",
                              (ACCOUNT_ID,)),
    },
    "/api/accounts/{account_id}/deposits": {
        "post": command_operation("deposit", "Deposit money", "AccountCommandAnswer", body="MoneyMovement",
                                  parameters=(ACCOUNT_ID,)),
    },
    "/api/accounts/{account_id}/withdrawals": {
        "post": command_operation("withdraw", "Withdraw money (REJECTED INSUFFICIENT_FUNDS beyond the balance)",
                                  "AccountCommandAnswer", body="MoneyMovement", parameters=(ACCOUNT_ID,)),
    },
    "/api/transfers": {
        "post": command_operation("transferMoney", "Transfer money between two accounts (a saga)",
                                  "TransferCommandAnswer", body="TransferMoney",
                                  description="ACCEPTED means the transfer was initiated; follow its state with "
                                              "GET /api/transfers/{transfer_id}."),
    },
    "/api/transfers/{transfer_id}": {
        "get": view_operation("getTransfer", "A transfer's state: INITIATED, DEBITED, COMPLETED, FAILED or "
                                             "REFUNDED (with the reason)", "TransferView",
                              (path_id("transfer_id", "the transfer's id"),)),
    },
    "/api/commands/{command_id}": {
        "get": {
            "operationId": "getCommand", "summary": "A command's outcome", "tags": ["views"],
            "parameters": [path_id("command_id", "the command's id"), {"$ref": "#/components/parameters/wait"}],
            "responses": {
                "200": _json("CommandOutcome", "The outcome, or PENDING while none is known (an unknown id is "
                                               "PENDING too: its command may still be on its way)."),
                "400": ref_response("BadRequest"),
                "503": ref_response("Unavailable"),
            },
        },
    },
    "/": {
        "get": {
            "operationId": "dashboardPage", "summary": "The live dashboard: accounts, balances, recent transfers",
            "tags": ["operations"],
            "description": "Plain HTML and a small script that follows GET /api/stream.",
            "responses": {"200": {"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}}},
        },
    },
    "/api/dashboard": {
        "get": {
            "operationId": "getDashboard", "summary": "What the dashboard shows, once", "tags": ["operations"],
            "description": "The first request starts this worker's reading of the event topics; until it has "
                           "read them to their end, caught_up is false.",
            "responses": {
                "200": _json("Dashboard", "The accounts and the latest transfers."),
                "400": ref_response("BadRequest"),
                "503": ref_response("Unavailable"),
            },
        },
    },
    "/api/stream": {
        "get": {
            "operationId": "streamDashboard", "summary": "The dashboard as server-sent events", "tags": ["operations"],
            "description": "text/event-stream: first `event: snapshot` (a Dashboard), then `event: account` "
                           "(a DashboardAccount) and `event: transfer` (a DashboardTransfer) as they change, "
                           "`event: status` once caught up, and a comment every 15 s while idle. A reader too far "
                           "behind is sent a new snapshot.",
            "parameters": [{"name": "max_seconds", "in": "query", "required": False,
                            "description": "end the stream after this many seconds (default: a day)",
                            "schema": {"type": "number", "minimum": 0, "maximum": 86400}}],
            "responses": {
                "200": {"description": "server-sent events, each `data:` one line of JSON; the schema describes "
                                       "one event (`event`, `data`, `retry`) as SSE readers parse it",
                        "content": {"text/event-stream": {"schema": ref("DashboardEvent")}}},
                "400": ref_response("BadRequest"),
                "503": ref_response("Unavailable"),
            },
        },
    },
    "/health": {
        "get": {
            "operationId": "health", "summary": "Liveness and readiness of this worker", "tags": ["operations"],
            "responses": {
                "200": _json("Health", "Ready: partitions assigned and recovered."),
                "503": _json("Health", "Starting, rebalancing, recovering, or stalled (assigned partitions "
                                       "waiting without progress).", RETRY_AFTER),
            },
        },
    },
    "/metrics": {
        "get": {
            "operationId": "metrics", "summary": "Prometheus metrics of this worker", "tags": ["operations"],
            "responses": {"200": {"description": "Prometheus text exposition format 0.0.4",
                                  "content": {"text/plain": {"schema": {"type": "string"}}}}},
        },
    },
    "/openapi.json": {
        "get": {
            "operationId": "openapi", "summary": "This description", "tags": ["operations"],
            "responses": {"200": {"description": "OpenAPI 3.1",
                                  "content": {"application/json": {"schema": {"type": "object"}}}}},
        },
    },
    "/docs": {
        "get": {
            "operationId": "docs", "summary": "This description as a readable page", "tags": ["operations"],
            "responses": {"200": {"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}}},
        },
    },
}

def _derived_view_paths() -> None:
    """The GET of every view route `streams.topology` declares with its record and no hand-written operation."""
    for table in topology.ALL_TABLES:
        if table.route is None or table.record is None or "get" in PATHS.get(table.route, {}):
            continue
        SCHEMAS.setdefault(table.record.__name__, view_schema(table.record))
        parameters = tuple(path_id(name, f"the {name.replace('_', ' ')}") for name in re.findall(r"{(\w+)}", table.route))
        operation_id = "get" + "".join(part.title() for part in table.name.split("_"))
        PATHS.setdefault(table.route, {})["get"] = view_operation(operation_id, table.holds, table.record.__name__,
                                                                  parameters)


_derived_view_paths()

SPEC: dict = {
    "openapi": "3.1.0",
    "info": {
        "title": "streambank",
        "version": "0.1.0",
        "description": "Event-sourced banking on Kafka. Writes produce commands (202, or with ?wait= the outcome); "
                       "reads serve materialized views (any worker answers for any key). Money is a decimal "
                       "string. Every error is {error: {code, message, field?}}.",
    },
    "tags": [{"name": "commands", "description": "produce a command"},
             {"name": "views", "description": "read a materialized view"},
             {"name": "operations", "description": "for operators"}],
    "paths": PATHS,
    "components": {
        "schemas": SCHEMAS,
        "responses": RESPONSES,
        "parameters": PARAMETERS,
        "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer",
                                           "description": "required on writes when BANK_API_TOKEN is set"}},
    },
}


def spec(server_url: str | None = None) -> dict:
    """A copy of the description, with `servers` set to `server_url` when given."""
    document = copy.deepcopy(SPEC)
    if server_url:
        document["servers"] = [{"url": server_url}]
    return document


def operations(document: dict | None = None):
    """(METHOD, path template, operation) for every described operation."""
    document = document or SPEC
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield method.upper(), path, operation


# -- the docs page -----------------------------------------------------------------------------

def resolve(document: dict, node: dict) -> dict:
    while isinstance(node, dict) and "$ref" in node:
        target = document
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _type_of(document: dict, schema: dict) -> str:
    name = schema["$ref"].rsplit("/", 1)[1] if "$ref" in schema else None
    schema = resolve(document, schema)
    if "enum" in schema:
        kind = " | ".join(json.dumps(v) for v in schema["enum"])
    elif schema.get("type") == "array":
        kind = f"array of {_type_of(document, schema['items'])}"
    else:
        kind = schema.get("type", "any")
        kind = " or ".join(kind) if isinstance(kind, list) else kind
    return f"{name} ({kind})" if name and not name.startswith(("Money", "PositiveMoney")) else kind


def _constraints(schema: dict) -> str:
    parts = []
    for key in ("minLength", "maxLength", "minimum", "maximum", "pattern", "format"):
        if key in schema:
            parts.append(f"{key} {schema[key]}")
    return ", ".join(parts)


def _fields_table(document: dict, schema: dict) -> str:
    schema = resolve(document, schema)
    if schema.get("type") != "object" or "properties" not in schema:
        return f"<p><code>{html.escape(_type_of(document, schema))}</code></p>"
    required = set(schema.get("required", ()))
    rows = []
    for name, field in schema["properties"].items():
        resolved = resolve(document, field)
        rows.append(
            f"<tr><td><code>{html.escape(name)}</code></td><td>{'yes' if name in required else ''}</td>"
            f"<td>{html.escape(_type_of(document, field))}</td><td>{html.escape(_constraints(resolved))}</td>"
            f"<td>{html.escape(resolved.get('description', ''))}</td></tr>")
    closed = "" if schema.get("additionalProperties", True) else "<p class=note>No other fields are accepted.</p>"
    return ("<table><tr><th>field</th><th>required</th><th>type</th><th>constraints</th><th></th></tr>"
            + "".join(rows) + "</table>" + closed)


def docs_html(document: dict | None = None) -> str:
    """The description as one static HTML page: every operation with its parameters, body and answers."""
    document = document or SPEC
    info = document["info"]
    sections, index = [], []
    for method, path, operation in operations(document):
        anchor = operation["operationId"]
        index.append(f'<li><a href="#{anchor}"><code>{method} {html.escape(path)}</code></a> '
                     f'{html.escape(operation["summary"])}</li>')
        parts = [f'<section id="{anchor}"><h2><span class="method {method.lower()}">{method}</span> '
                 f'<code>{html.escape(path)}</code></h2><p>{html.escape(operation["summary"])}</p>']
        if operation.get("description"):
            parts.append(f"<p>{html.escape(operation['description'])}</p>")
        if operation.get("security"):
            parts.append("<p class=note>Needs <code>Authorization: Bearer &lt;token&gt;</code> when the worker "
                         "has <code>BANK_API_TOKEN</code> set.</p>")
        parameters = [resolve(document, p) for p in operation.get("parameters", ())]
        if parameters:
            parts.append("<h3>Parameters</h3><table><tr><th>name</th><th>in</th><th>required</th><th>type</th>"
                         "<th>constraints</th><th></th></tr>")
            for p in parameters:
                parts.append(
                    f"<tr><td><code>{html.escape(p['name'])}</code></td><td>{p['in']}</td>"
                    f"<td>{'yes' if p.get('required') else ''}</td><td>{html.escape(_type_of(document, p['schema']))}"
                    f"</td><td>{html.escape(_constraints(p['schema']))}</td>"
                    f"<td>{html.escape(p.get('description', ''))}</td></tr>")
            parts.append("</table>")
        if "requestBody" in operation:
            body = operation["requestBody"]["content"]["application/json"]["schema"]
            parts.append(f"<h3>Body (application/json): {html.escape(body['$ref'].rsplit('/', 1)[1])}</h3>")
            parts.append(_fields_table(document, body))
        parts.append("<h3>Answers</h3><dl>")
        for status, answer in operation["responses"].items():
            answer = resolve(document, answer)
            content = answer.get("content", {})
            shape = ""
            for media, media_type in content.items():
                shape = f" <code>{html.escape(media)}</code> {html.escape(_type_of(document, media_type['schema']))}"
            parts.append(f"<dt>{status}{shape}</dt><dd>{html.escape(answer['description'])}</dd>")
        parts.append("</dl></section>")
        sections.append("".join(parts))
    schemas = "".join(f'<section id="schema-{name}"><h3>{name}</h3>{_fields_table(document, schema)}</section>'
                      for name, schema in document["components"]["schemas"].items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(info['title'])} API</title>
<style>
body {{ font: 15px/1.45 system-ui, sans-serif; max-width: 70em; margin: 2em auto; padding: 0 1em; color: #222 }}
table {{ border-collapse: collapse; margin: .5em 0 }} td, th {{ border: 1px solid #ccc; padding: .2em .5em;
text-align: left; vertical-align: top }} section {{ border-top: 1px solid #ddd; padding-top: .5em }}
.method {{ font-family: monospace; padding: .1em .4em; border-radius: 3px; color: #fff; background: #555 }}
.get {{ background: #2a7 }} .post {{ background: #27c }} .delete {{ background: #c33 }} .note {{ color: #666 }}
dt {{ font-weight: bold }} code {{ background: #f4f4f4 }}
</style></head><body>
<h1>{html.escape(info['title'])} HTTP API <small>{html.escape(info['version'])}</small></h1>
<p>{html.escape(info['description'])}</p>
<p>Machine-readable: <a href="/openapi.json">/openapi.json</a> (OpenAPI {html.escape(document['openapi'])}).</p>
<ul>{''.join(index)}</ul>
{''.join(sections)}
<h2>Schemas</h2>{schemas}
</body></html>"""


def register_docs(web_app: aioweb.Application) -> None:
    """Adds GET /openapi.json and GET /docs."""
    page = docs_html().encode()

    async def openapi_json(request):
        document = spec(f"{request.scheme}://{request.host}")
        return aioweb.Response(body=json.dumps(document, indent=1).encode(), content_type="application/json")

    async def docs(request):
        return aioweb.Response(body=page, content_type="text/html", charset="utf-8")

    web_app.router.add_get("/openapi.json", openapi_json)
    web_app.router.add_get("/docs", docs)
