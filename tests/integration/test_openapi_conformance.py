"""The OpenAPI description served by a real worker is true: every real answer matches it, and a bounded
schemathesis fuzz of the whole API from it gets no 5xx (against the real broker and two real workers)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

import hypothesis
import jsonschema
import pytest
import requests
from hypothesis import strategies as st

from http_api import REPO

# -- conformance: drive the API, validate each answer against /openapi.json ------------------------


class Conformance:
    """Sends requests through the test client and checks each answer against the served description."""

    def __init__(self, api, document: dict):
        self.api = api
        self.document = document
        self.exercised: set[tuple[str, str]] = set()
        self.statuses: set[tuple[str, str, int]] = set()

    def call(self, method: str, template: str, *, ids: dict | None = None, json=None, content=None,
             params=None, expect: int | None = None):
        path = template.format(**(ids or {}))
        response = self.api.request(method, path, json=json, content=content, params=params)
        self.check(method, template, response)
        if expect is not None:
            assert response.status_code == expect, (method, path, response.status_code, response.text)
        return response

    def check(self, method: str, template: str, response) -> None:
        operation = self.document["paths"][template][method.lower()]
        status = str(response.status_code)
        assert status in operation["responses"], (
            f"{method} {template} answered {status}, undocumented: {response.text[:300]}")
        answer = resolve(self.document, operation["responses"][status])
        (media_type, described), = answer["content"].items()
        assert response.headers["content-type"].split(";")[0] == media_type, (method, template, status)
        if media_type == "application/json":
            schema = {**described["schema"], "components": self.document["components"]}
            errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(response.json()), key=str)
            assert not errors, f"{method} {template} {status}: {errors[0].message} in {response.text[:500]}"
        self.exercised.add((method, template))
        self.statuses.add((method, template, response.status_code))


def resolve(document: dict, node: dict) -> dict:
    while "$ref" in node:
        target = document
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


@pytest.fixture(scope="module")
def document(api):
    response = api.get("/openapi.json")
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/json")
    return response.json()


def test_openapi_real_answers_of_every_operation_match_the_served_description(api, document):
    c = Conformance(api, document)
    W = {"wait": "15"}
    email = f"Ada.{uuid.uuid4().hex[:8]}@Example.com"
    created = c.call("POST", "/api/customers", params=W, expect=200, json={
        "name": {"first_name": "Ada", "last_name": "Lovelace"}, "email": email, "phone": "+44 20 7946 0000",
        "address": "12 St James's Square, London"}).json()
    customer = created["customer_id"]
    assert created["status"] == "ACCEPTED" and created["version"] == 1
    unicode_customer = c.call("POST", "/api/customers", expect=202, json={
        "name": {"first_name": "Zoë 🙂", "last_name": "日本語"}, "email": f"zoë.{uuid.uuid4().hex[:6]}@exämple.com"})
    assert set(unicode_customer.json()) == {"customer_id", "command_id"}
    taken = c.call("POST", "/api/customers", params=W, expect=200, json={
        "name": {"first_name": "Eve", "last_name": "Copy"}, "email": email.upper()}).json()
    assert (taken["status"], taken["reason"]) == ("REJECTED", "EMAIL_TAKEN")

    def open_account(balance: str, title="Checking") -> str:
        answer = c.call("POST", "/api/accounts", params=W, expect=200, json={
            "customer_id": customer, "title": title, "description": "everyday", "initial_balance": balance}).json()
        assert answer["status"] == "ACCEPTED", answer
        return answer["account_id"]

    checking, savings, empty = open_account("100.00"), open_account("0", "Savings"), open_account("0.00", "Spare")
    ids = {"account_id": checking, "customer_id": customer}
    assert c.call("POST", "/api/accounts/{account_id}/deposits", ids=ids, params=W, expect=200,
                  json={"amount": "25.50"}).json()["version"] == 2
    refused = c.call("POST", "/api/accounts/{account_id}/withdrawals", ids=ids, params=W, expect=200,
                     json={"amount": "1000.00"}).json()
    assert (refused["status"], refused["reason"]) == ("REJECTED", "INSUFFICIENT_FUNDS")
    withdrawn = c.call("POST", "/api/accounts/{account_id}/withdrawals", ids=ids, expect=202, json={"amount": "0.25"})
    c.call("GET", "/api/commands/{command_id}", ids={"command_id": withdrawn.json()["command_id"]},
           params=W, expect=200)
    c.call("POST", "/api/accounts/{account_id}/deposits", ids=ids, params=W, expect=200,
           json={"amount": "1.00", "expected_version": 1})  # VERSION_CONFLICT: an outcome, not an error

    moved = c.call("POST", "/api/transfers", params=W, expect=200, json={
        "from_account_id": checking, "to_account_id": savings, "amount": "20.00", "description": "rent"}).json()
    failed = c.call("POST", "/api/transfers", params=W, expect=200, json={
        "from_account_id": empty, "to_account_id": savings, "amount": "5.00"}).json()
    for transfer, state in ((moved, "COMPLETED"), (failed, "FAILED")):
        for _ in range(40):
            view = c.call("GET", "/api/transfers/{transfer_id}", ids=transfer, params={"wait": "5"}, expect=200).json()
            if view["state"] == state:
                break
            time.sleep(0.25)
        assert view["state"] == state, view
    assert view["reason"] == "INSUFFICIENT_FUNDS"

    account = c.call("GET", "/api/accounts/{account_id}", ids=ids, params={"min_version": 4, "wait": 10},
                     expect=200).json()
    assert account["balance"] == "105.25", account
    history = c.call("GET", "/api/accounts/{account_id}/history", ids=ids, params={"min_version": 4, "wait": 10},
                     expect=200).json()
    assert [e["entry_type"] for e in history["entries"]] == [
        "AccountOpened", "MoneyDeposited", "MoneyWithdrawn", "AccountDebited"]
    assert history["entries"][-1]["transfer_id"] == moved["transfer_id"]

    c.call("POST", "/api/customers/{customer_id}/toaccounts", ids=ids, params=W, expect=200,
           json={"account_id": savings, "title": "my savings", "owner": "Ada"})
    c.call("DELETE", "/api/customers/{customer_id}/toaccounts/{account_id}", ids={**ids, "account_id": savings},
           params=W, expect=200)
    c.call("GET", "/api/customers/{customer_id}", ids=ids, params={"min_version": 3, "wait": 10}, expect=200)
    c.call("GET", "/api/customers", params={"email": email.upper(), "wait": 10}, expect=200)
    still_has_money = c.call("DELETE", "/api/accounts/{account_id}", ids=ids, params=W, expect=200).json()
    assert still_has_money["reason"] == "BALANCE_NOT_ZERO"
    assert c.call("DELETE", "/api/accounts/{account_id}", ids={"account_id": empty}, params=W,
                  expect=200).json()["status"] == "ACCEPTED"

    # Forgetting: the customer view then answers with its personal fields redacted (see the description).
    leaving = c.call("POST", "/api/customers", params=W, expect=200, json={
        "name": {"first_name": "Leo", "last_name": "Leaving"}, "email": f"leo.{uuid.uuid4().hex[:8]}@example.com",
        "phone": "+1 555 0100"}).json()["customer_id"]
    assert c.call("POST", "/api/customers/{customer_id}/forget", ids={"customer_id": leaving}, params=W,
                  expect=200).json()["status"] == "ACCEPTED"
    gone = c.call("GET", "/api/customers/{customer_id}", ids={"customer_id": leaving},
                  params={"min_version": 2, "wait": 10}, expect=200).json()
    assert (gone["forgotten"], gone["email"], gone["phone"]) == (True, "[forgotten]", None)

    # Unknown ids: 404 on views, PENDING for a command, 404 for an account of an unknown customer.
    nobody = f"nobody-{uuid.uuid4().hex}"
    for template, name in (("/api/accounts/{account_id}", "account_id"), ("/api/accounts/{account_id}/history",
                           "account_id"), ("/api/customers/{customer_id}", "customer_id"),
                           ("/api/transfers/{transfer_id}", "transfer_id")):
        c.call("GET", template, ids={name: nobody}, expect=404)
    c.call("GET", "/api/customers", params={"email": f"{nobody}@example.com"}, expect=404)
    assert c.call("GET", "/api/commands/{command_id}", ids={"command_id": nobody}, expect=200).json() == {
        "command_id": nobody, "status": "PENDING"}
    c.call("POST", "/api/accounts", expect=404, json={"customer_id": nobody, "title": "x", "initial_balance": "1"})

    # Bad input: each a 400 with the error body, naming the field.
    deposits = "/api/accounts/{account_id}/deposits"
    bad_bodies = {
        "INVALID_JSON": [b"{not json", b"[1, 2]", b"\xff\xfe", b"[" * 20000],
        "amount": [{"amount": "0"}, {"amount": "-5.00"}, {"amount": "1.234"}, {"amount": "1e400"},
                   {"amount": "99999999999999999999"}, {"amount": True}, {"amount": None}, {"amount": ["1"]},
                   {"amount": "NaN"}, {"amount": "twelve"}, {}],
        "zzz": [{"amount": "1.00", "zzz": 1}],
        "expected_version": [{"amount": "1.00", "expected_version": "1"}, {"amount": "1.00", "expected_version": -1},
                             {"amount": "1.00", "expected_version": 2**70}],
    }
    for field, bodies in bad_bodies.items():
        for body in bodies:
            raw = body if isinstance(body, bytes) else None
            answer = c.call("POST", deposits, ids=ids, content=raw, json=None if raw else body, expect=400).json()
            if field == "INVALID_JSON":
                assert answer["error"]["code"] == "INVALID_JSON", (body[:20], answer)
            else:
                assert answer["error"]["field"] == field, (body, answer)
    for body, field in (({"name": {"first_name": "\ud800", "last_name": "x"}, "email": "a@b.co"}, "name.first_name"),
                        ({"name": {"first_name": 1, "last_name": "x"}, "email": "a@b.co"}, "name.first_name"),
                        ({"name": "Ada", "email": "a@b.co"}, "name"),
                        ({"name": {"first_name": "A", "last_name": "B"}, "email": "not-an-email"}, "email"),
                        ({"name": {"first_name": "A", "last_name": "B"}, "email": "a@b.co", "\udfff": 1}, "\\udfff")):
        raw = __import__("json").dumps(body).encode()  # keeps "\ud800" escaped, as a client might send it
        assert c.call("POST", "/api/customers", content=raw, expect=400).json()["error"]["field"] == field
    for params, field in (({"wait": "soon"}, "wait"), ({"wait": "61"}, "wait"), ({"min_version": "-1"}, "min_version"),
                          ({"min_version": "1.5"}, "min_version")):
        assert c.call("GET", "/api/accounts/{account_id}", ids=ids, params=params,
                      expect=400).json()["error"]["field"] == field
    c.call("POST", "/api/transfers", expect=400, json={"from_account_id": checking, "to_account_id": checking,
                                                       "amount": "1.00"})
    c.call("GET", "/api/customers", expect=400)
    too_big = c.call("POST", "/api/customers", content=b'{"name": "' + b"x" * (10 * 1024 * 1024) + b'"}', expect=413)
    assert too_big.json()["error"]["code"] == "BODY_TOO_LARGE"

    c.call("GET", "/health", expect=200)
    assert c.call("GET", "/metrics", expect=200).text.startswith("# HELP")
    assert c.call("GET", "/docs", expect=200).text.startswith("<!doctype html>")
    c.call("GET", "/openapi.json", expect=200)
    assert "/api/stream" in c.call("GET", "/", expect=200).text  # the dashboard page follows the stream
    assert c.call("GET", "/api/dashboard", expect=200).json()["worker"]
    streamed = c.call("GET", "/api/stream", params={"max_seconds": "0.5"}, expect=200).text
    assert "event: snapshot\ndata: {" in streamed
    c.call("GET", "/api/stream", params={"max_seconds": "-1"}, expect=400)
    wrong_method = api.request("PUT", "/api/accounts")
    assert wrong_method.status_code == 405 and "POST" in wrong_method.headers["Allow"]
    assert wrong_method.json()["error"]["code"] == "METHOD_NOT_ALLOWED"

    described = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    assert described - c.exercised == set(), "operations this test never exercised"
    print(f"\nconformance: {len(c.statuses)} (operation, status) pairs validated against /openapi.json")


# -- fuzz: schemathesis from /openapi.json against a real worker -----------------------------------

#: Examples per operation: positive (valid per the description) and negative (invalid). About 180 in all.
#: Deterministic by default; BANK_FUZZ_SEED=<n> explores other cases (and BANK_FUZZ_EXAMPLES=<n> more of them).
POSITIVE = int(os.environ.get("BANK_FUZZ_EXAMPLES", "6"))
NEGATIVE = max(POSITIVE - 1, 1)
SEED = os.environ.get("BANK_FUZZ_SEED")


@pytest.mark.timeout(900)
def test_openapi_schemathesis_fuzz_of_every_operation_gets_no_5xx_and_only_described_answers(api, document, kafka):
    import schemathesis
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
              response_headers_conformance]
    # Real ids, so that fuzzed reads and writes also reach existing accounts, customers and transfers.
    customer = api.create_customer("Fuzz", "Target")
    accounts = [api.open_account(customer, "50.00"), api.open_account(customer, "0.00")]
    transfer = api.accepted("/api/transfers", {"from_account_id": accounts[0], "to_account_id": accounts[1],
                                               "amount": "1.00"})
    real = {"customer_id": [customer], "account_id": accounts, "transfer_id": [transfer["transfer_id"]],
            "command_id": [transfer["command_id"]]}

    def adjust(case, pick: int):
        """Keeps the run bounded (?wait= at most 0.5 s; the description allows 60) and, for one case in
        two, puts real ids in the path and in an account's customer_id."""
        query = case.query or {}
        try:
            wait = float(query.get("wait"))
        except (TypeError, ValueError):
            wait = None
        if wait is not None and 0 <= wait <= 60:
            query["wait"] = min(wait, 0.5)
        if case.operation.path == "/api/stream":  # an event stream ends only when asked to: after 0.5 s
            try:
                seconds = float(query.get("max_seconds", 0))
            except (TypeError, ValueError):
                seconds = None  # answered 400 at once
            if seconds is not None and 0 <= seconds <= 86400:
                query["max_seconds"] = min(seconds, 0.5)
            case.query = query
        if pick % 2:
            for name, values in real.items():
                if name in (case.path_parameters or {}):
                    case.path_parameters[name] = values[pick % len(values)]
            if case.operation.path == "/api/accounts" and isinstance(case.body, dict) \
                    and isinstance(case.body.get("customer_id"), str):
                case.body["customer_id"] = customer  # else each case waits 5 s for an unknown customer
        return case

    schema = schemathesis.openapi.from_dict(document)
    base_url = api.base
    session = requests.Session()
    ran: dict[str, int] = {}
    failures: list[str] = []
    statuses: dict[int, int] = {}

    for result in schema.get_all_operations():
        operation = result.ok()
        label = f"{operation.method.upper()} {operation.path}"
        takes_input = bool(operation.body) or any(True for _ in operation.iter_parameters())
        modes = [(schemathesis.GenerationMode.POSITIVE, POSITIVE)]
        if takes_input:
            modes.append((schemathesis.GenerationMode.NEGATIVE, NEGATIVE))
        for mode, examples in modes:
            strategy = st.tuples(operation.as_strategy(generation_mode=mode), st.integers(0, 7))

            @hypothesis.seed(int(SEED or 0))
            @hypothesis.settings(max_examples=examples, deadline=None, database=None, derandomize=SEED is None,
                                 phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
                                 suppress_health_check=list(hypothesis.HealthCheck))
            @hypothesis.given(strategy)
            def fuzz(drawn):
                case = adjust(*drawn)
                response = case.call(base_url=base_url, session=session, timeout=60)
                ran[label] = ran.get(label, 0) + 1
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                try:
                    case.validate_response(response, checks=checks)
                except Exception as exc:  # collect them all, then fail once with every finding
                    failures.append(f"{label} [{mode.value}] {response.status_code}: {exc}\n  {case.as_curl_command()}")

            fuzz()

    total = sum(ran.values())
    print(f"\nschemathesis: {total} cases over {len(ran)} operations; statuses {dict(sorted(statuses.items()))}; "
          f"{len(failures)} failures")
    assert len(ran) == sum(len(item) for item in document["paths"].values())  # every operation was fuzzed
    assert failures == [], "\n".join(failures[:20])
    assert not [status for status in statuses if status >= 500]

    # And the ledger took all of it: every invariant still holds once the fuzzed commands are processed.
    env = {**os.environ, "BANK_HOME": str(kafka.home), "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers}
    deadline = time.monotonic() + 120
    while True:
        done = subprocess.run([sys.executable, "-m", "streams.cli", "verify"], capture_output=True, text=True,
                              env=env, cwd=REPO, timeout=300)
        if done.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
