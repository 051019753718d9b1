"""The committed v1 fixture log (tests/fixtures/v1_log.jsonl) read and folded by the current code."""
from __future__ import annotations

import base64
import json
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import pytest

from streams.contract.avro import SCHEMA_DIR, Codec
from streams.domain import accounts
from streams.domain.customers import CustomerCreated
from streams.domain.views import history_entry, is_next, project_account, project_customer
from streams.ops.as_of import account_as_of

D = Decimal
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
T0 = 1_600_000_000_000


def load() -> list[dict]:
    return [json.loads(line) for line in (FIXTURES / "v1_log.jsonl").read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def decoded():
    codec = Codec()
    return [(line["topic"], line["key"], codec.decode(base64.b64decode(line["value"]))) for line in load()]


def test_the_fixture_was_written_with_old_schemas_not_the_current_ones():
    current = set()
    for path in SCHEMA_DIR.glob("*.avsc"):
        raw = json.loads(path.read_text())
        if path.name == f"{raw['namespace']}.{raw['name']}.avsc":
            from fastavro.schema import to_parsing_canonical_form
            from streams.contract.avro import fingerprint
            current.add(fingerprint(to_parsing_canonical_form(raw)))
    written = [base64.b64decode(line["value"])[2:10] for line in load()]
    old = [line["schema"] for line, fp in zip(load(), written) if fp not in current]
    assert {"streambank.account.MoneyDeposited v1", "streambank.account.FundsDeposited v1",
            "streambank.customer.CustomerRegistered v1"} <= set(old)


def test_the_fixture_is_what_its_script_writes():
    import importlib.util
    spec = importlib.util.spec_from_file_location("make_v1_log", FIXTURES / "make_v1_log.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.lines() == load()


def test_every_record_decodes_to_a_current_event_keyed_by_its_aggregate(decoded):
    assert len(decoded) == 16
    for topic, key, event in decoded:
        assert type(event) in (accounts.ACCOUNT_EVENTS if topic == "bank.accounts.events" else (CustomerCreated,))
        assert event.aggregate_id == key


def fold_accounts(decoded):
    views, statements, states = {}, defaultdict(list), {}
    for topic, key, event in decoded:
        if topic != "bank.accounts.events":
            continue
        if is_next(views[key].version if key in views else 0, event):
            views[key] = project_account(views.get(key), event)
            statements[key].append(history_entry(views[key], event))
            states[key] = accounts.evolve(states.get(key), event)
    return views, statements, states


def test_the_v1_log_folds_to_the_hand_computed_balances(decoded):
    views, statements, states = fold_accounts(decoded)
    # acc-a: 100.00 + 25.50 + 10.00 (FundsDeposited) - 40.25 - 20.00 (transfer tr-1) = 75.25
    # acc-b: 0.00 + 5.00 (FundsDeposited) + 20.00 (tr-1) + 0.99 - 25.99 = 0.00, then closed
    # acc-c: 50.00 - 30.00 (tr-2) + 30.00 (refund) = 50.00
    expected = {"acc-a": (D("75.25"), "OPEN", 5), "acc-b": (D("0.00"), "CLOSED", 6), "acc-c": (D("50.00"), "OPEN", 3)}
    assert {k: (v.balance, v.status, v.version) for k, v in views.items()} == expected
    assert {k: (s.balance, s.status, s.version) for k, s in states.items()} == expected
    assert [e.amount for e in statements["acc-a"]] == [D("100.00"), D("25.50"), D("10.00"), D("-40.25"), D("-20.00")]
    assert [e.entry_type for e in statements["acc-a"]] == [
        "AccountOpened", "MoneyDeposited", "MoneyDeposited", "MoneyWithdrawn", "AccountDebited"]
    # Each running balance equals the sum of the amounts so far: the fold agrees with itself.
    for entries in statements.values():
        running = D("0.00")
        for entry in entries:
            running += entry.amount
            assert entry.balance == running


def test_the_v1_log_folds_to_the_hand_computed_customers(decoded):
    views = {}
    for topic, key, event in decoded:
        if topic == "bank.customers.events":
            views[key] = project_customer(views.get(key), event)
    assert (views["cust-ada"].first_name, views["cust-ada"].last_name, views["cust-ada"].phone) == (
        "Ada", "King Lovelace", "+44 20 0000")
    assert (views["cust-grace"].first_name, views["cust-grace"].last_name) == ("Grace", "Hopper")


def test_the_v1_log_answers_as_of_queries(decoded):
    events = [event for topic, key, event in decoded if key == "acc-a"]
    # acc-a's events are records 2, 4, 5, 7, 8 of the log, one minute apart from T0.
    minute = 60_000
    assert account_as_of(events, T0 + 2 * minute - 1) is None
    assert account_as_of(events, T0 + 2 * minute).view.balance == D("100.00")
    assert account_as_of(events, T0 + 5 * minute + 59_999).view.balance == D("135.50")
    assert account_as_of(events, T0 + 7 * minute).view.balance == D("95.25")
    assert account_as_of(events, T0 + 10 ** 9).view.balance == D("75.25")
