"""State as of a time: the pure fold and ISO-8601 parsing of streams.ops.as_of."""
from __future__ import annotations

from decimal import Decimal

import pytest

from streams.domain.accounts import AccountClosed, AccountCredited, AccountOpened, MoneyDeposited, MoneyWithdrawn
from streams.ops.as_of import account_as_of, as_json, format_instant, parse_instant

D = Decimal
T = 1_714_564_800_000  # 2024-05-01T12:00:00Z
ACC = "acc-1"


def env(version: int, at: int) -> dict:
    return {"event_id": f"c{version}.0", "aggregate_id": ACC, "version": version, "command_id": f"c{version}",
            "occurred_at": at}


LOG = [
    AccountOpened(**env(1, T), customer_id="cust", title="Checking", description="", initial_balance=D("10.00")),
    MoneyDeposited(**env(2, T + 1_000), amount=D("5.25"), balance=D("15.25")),
    MoneyDeposited(**env(2, T + 1_000), amount=D("5.25"), balance=D("15.25")),  # a redelivery
    MoneyWithdrawn(**env(3, T + 2_000), amount=D("15.25"), balance=D("0.00")),
    AccountCredited(**env(4, T + 3_000), transfer_id="tr", amount=D("7.00"), balance=D("7.00")),
    MoneyWithdrawn(**env(5, T + 4_000), amount=D("7.00"), balance=D("0.00")),
    AccountClosed(**env(6, T + 5_000)),
]


@pytest.mark.parametrize("at, expected", [
    (T - 1, None),
    (T, (D("10.00"), "OPEN", 1)),
    (T + 999, (D("10.00"), "OPEN", 1)),
    (T + 1_000, (D("15.25"), "OPEN", 2)),
    (T + 2_500, (D("0.00"), "OPEN", 3)),
    (T + 3_000, (D("7.00"), "OPEN", 4)),
    (T + 4_999, (D("0.00"), "OPEN", 5)),
    (T + 5_000, (D("0.00"), "CLOSED", 6)),
    (T + 10 ** 9, (D("0.00"), "CLOSED", 6)),
])
def test_the_fold_answers_hand_computed_states(at, expected):
    state = account_as_of(LOG, at)
    if expected is None:
        assert state is None
        return
    assert (state.view.balance, state.view.status, state.view.version) == expected
    assert [entry.version for entry in state.history] == list(range(1, expected[2] + 1))
    assert state.history[-1].balance == expected[0]


def test_the_history_has_signed_amounts_and_transfer_ids():
    state = account_as_of(LOG, T + 3_000)
    assert [(e.entry_type, e.amount, e.balance, e.transfer_id) for e in state.history] == [
        ("AccountOpened", D("10.00"), D("10.00"), None),
        ("MoneyDeposited", D("5.25"), D("15.25"), None),
        ("MoneyWithdrawn", D("-15.25"), D("0.00"), None),
        ("AccountCredited", D("7.00"), D("7.00"), "tr"),
    ]


def test_the_fold_stops_at_the_first_event_after_the_instant_even_if_a_later_one_has_an_earlier_clock():
    skewed = LOG[:2] + [MoneyWithdrawn(**env(3, T + 9_000), amount=D("1.00"), balance=D("14.25")),
                        MoneyDeposited(**env(4, T + 8_000), amount=D("1.00"), balance=D("15.25"))]
    state = account_as_of(skewed, T + 8_500)
    assert (state.view.version, state.view.balance) == (2, D("15.25"))


def test_events_of_other_accounts_or_types_and_gaps_are_ignored():
    from streams.domain.customers import CustomerCreated
    other = CustomerCreated(**env(1, T), first_name="a", last_name="b", email="e")
    gap = MoneyDeposited(**env(9, T), amount=D("1.00"), balance=D("999.00"))
    state = account_as_of([other, LOG[0], gap], T + 10)
    assert (state.view.version, state.view.balance) == (1, D("10.00"))


def test_the_json_answer_has_the_view_the_instant_and_the_history():
    answer = as_json(account_as_of(LOG, T + 1_000))
    assert answer["balance"] == "15.25" and answer["status"] == "OPEN" and answer["version"] == 2
    assert answer["as_of"] == "2024-05-01T12:00:01.000Z"
    assert [e["amount"] for e in answer["history"]] == ["10.00", "5.25"]


@pytest.mark.parametrize("text, ms", [
    ("2024-05-01T12:00:00Z", T),
    ("2024-05-01T12:00:00z", T),
    ("2024-05-01T12:00:00+00:00", T),
    ("2024-05-01T14:00:00+02:00", T),
    ("2024-05-01T12:00:00", T),
    ("2024-05-01T12:00:00.123Z", T + 123),
    ("2024-05-01T12:00:00.123999Z", T + 123),
    ("2024-05-01", T - 12 * 3_600_000),
    (" 2024-05-01T12:00:00Z ", T),
])
def test_iso_8601_instants_are_parsed_to_epoch_milliseconds(text, ms):
    assert parse_instant(text) == ms


@pytest.mark.parametrize("text", ["", "yesterday", "2024-13-01", "1714564800000", "2024-05-01T25:00Z", "Z"])
def test_anything_else_is_a_value_error(text):
    with pytest.raises(ValueError):
        parse_instant(text)


def test_format_instant_round_trips():
    assert format_instant(T + 7) == "2024-05-01T12:00:00.007Z"
    assert parse_instant(format_instant(T + 7)) == T + 7
