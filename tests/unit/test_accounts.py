"""Every rule of the Account aggregate, given events / when a command / then events or a rejection."""
from __future__ import annotations

from decimal import Decimal

import pytest

from given_when_then import NOW, Aggregate
from streams.domain import accounts
from streams.domain.accounts import (
    CLOSED,
    OPEN,
    Account,
    AccountClosed,
    AccountOpened,
    CloseAccount,
    Deposit,
    MoneyDeposited,
    MoneyWithdrawn,
    OpenAccount,
    Withdraw,
)
from streams.domain.base import Reason

account = Aggregate(accounts.decide, accounts.evolve)

ACC = "acc-1"
CUST = "cust-1"
EARLIER = NOW - 60_000
MAX_MONEY = Decimal("9999999999999999.99")  # the largest decimal(18,2)


def D(value: str) -> Decimal:
    return Decimal(value)


def exactly(value: Decimal) -> str:
    """Decimal('5') == Decimal('5.00'); comparing the text also checks the two places."""
    return str(value)


# Given events ------------------------------------------------------------------------------

def opened(initial_balance: str = "0.00", version: int = 1) -> AccountOpened:
    return AccountOpened(event_id="open.0", aggregate_id=ACC, version=version, command_id="open",
                         occurred_at=EARLIER, customer_id=CUST, title="Checking", description="Daily",
                         initial_balance=D(initial_balance))


def deposited(amount: str, balance: str, version: int) -> MoneyDeposited:
    return MoneyDeposited(event_id=f"dep{version}.0", aggregate_id=ACC, version=version,
                          command_id=f"dep{version}", occurred_at=EARLIER, amount=D(amount), balance=D(balance))


def withdrawn(amount: str, balance: str, version: int) -> MoneyWithdrawn:
    return MoneyWithdrawn(event_id=f"wd{version}.0", aggregate_id=ACC, version=version,
                          command_id=f"wd{version}", occurred_at=EARLIER, amount=D(amount), balance=D(balance))


def closed(version: int) -> AccountClosed:
    return AccountClosed(event_id=f"close{version}.0", aggregate_id=ACC, version=version,
                         command_id=f"close{version}", occurred_at=EARLIER)


# Commands ----------------------------------------------------------------------------------

def open_account(**overrides) -> OpenAccount:
    fields = dict(command_id="cmd-open", account_id=ACC, customer_id=CUST, title="Checking",
                  description="Daily", initial_balance=D("100.00"))
    fields.update(overrides)
    return OpenAccount(**fields)


def deposit(amount, **overrides) -> Deposit:
    return Deposit(**{"command_id": "cmd-dep", "account_id": ACC, "amount": amount, **overrides})


def withdraw(amount, **overrides) -> Withdraw:
    return Withdraw(**{"command_id": "cmd-wd", "account_id": ACC, "amount": amount, **overrides})


def close(**overrides) -> CloseAccount:
    return CloseAccount(**{"command_id": "cmd-close", "account_id": ACC, **overrides})


INVALID_AMOUNTS = [
    pytest.param(D("0"), id="zero"),
    pytest.param(D("0.00"), id="zero-two-places"),
    pytest.param(D("-0.01"), id="negative"),
    pytest.param(D("-50.00"), id="negative-large"),
    pytest.param(D("0.001"), id="three-decimals"),
    pytest.param(D("10.005"), id="three-decimals-above-one"),
    pytest.param(D("NaN"), id="nan"),
    pytest.param(D("sNaN"), id="signalling-nan"),
    pytest.param(D("Infinity"), id="infinity"),
    pytest.param(D("-Infinity"), id="minus-infinity"),
    pytest.param(D("10000000000000000.00"), id="beyond-decimal-18-2"),
    pytest.param(D("1E+30"), id="far-beyond-decimal-18-2"),
    pytest.param(1.5, id="a-float-not-a-decimal"),
]


# Open --------------------------------------------------------------------------------------

def test_opening_a_new_account_emits_account_opened_at_version_1():
    account.given().when(open_account(), now_ms=NOW).then(
        AccountOpened(event_id="cmd-open.0", aggregate_id=ACC, version=1, command_id="cmd-open",
                      occurred_at=NOW, customer_id=CUST, title="Checking", description="Daily",
                      initial_balance=D("100.00")))


def test_an_opened_account_is_open_with_the_initial_balance_at_version_1():
    account.given().when(open_account()).then_state(
        Account(account_id=ACC, customer_id=CUST, title="Checking", description="Daily",
                balance=D("100.00"), status=OPEN, version=1))


def test_an_account_opened_without_an_initial_balance_starts_at_zero_with_two_places():
    command = OpenAccount(command_id="c", account_id=ACC, customer_id=CUST, title="Savings")
    (event,) = account.given().when(command).events
    assert exactly(event.initial_balance) == "0.00"
    assert event.description == ""


def test_an_initial_balance_without_places_is_stored_with_two_decimal_places():
    (event,) = account.given().when(open_account(initial_balance=D("5"))).events
    assert exactly(event.initial_balance) == "5.00"


def test_a_missing_description_is_stored_as_an_empty_string():
    (event,) = account.given().when(open_account(description=None)).events
    assert event.description == ""


def test_the_largest_decimal_18_2_is_a_valid_initial_balance():
    (event,) = account.given().when(open_account(initial_balance=MAX_MONEY)).events
    assert event.initial_balance == MAX_MONEY


def test_opening_an_account_that_already_exists_is_rejected_as_already_existing():
    account.given(opened()).when(open_account()).then_rejected(Reason.ALREADY_EXISTS)


def test_opening_a_closed_account_again_is_rejected_as_already_existing():
    account.given(opened(), closed(2)).when(open_account()).then_rejected(Reason.ALREADY_EXISTS)


@pytest.mark.parametrize("initial_balance", [D("-0.01"), D("-100.00")])
def test_a_negative_initial_balance_is_rejected_as_an_invalid_amount(initial_balance):
    account.given().when(open_account(initial_balance=initial_balance)).then_rejected(
        Reason.INVALID_AMOUNT, "initial_balance")


@pytest.mark.parametrize("initial_balance", [
    D("0.001"), D("1.999"), D("NaN"), D("Infinity"), D("10000000000000000"), D("-10000000000000000"), D("1E+40"),
])
def test_an_initial_balance_that_is_not_decimal_18_2_money_is_rejected_as_an_invalid_amount(initial_balance):
    account.given().when(open_account(initial_balance=initial_balance)).then_rejected(
        Reason.INVALID_AMOUNT, "initial_balance")


@pytest.mark.parametrize("field", ["title", "customer_id"])
@pytest.mark.parametrize("missing", ["", None])
def test_opening_without_a_title_or_customer_is_rejected_as_an_invalid_field(field, missing):
    account.given().when(open_account(**{field: missing})).then_rejected(Reason.INVALID_FIELD, field)


@pytest.mark.parametrize("field", ["title", "description"])
def test_a_title_or_description_longer_than_1000_characters_is_rejected(field):
    account.given().when(open_account(**{field: "x" * 1001})).then_rejected(Reason.INVALID_FIELD, field)


def test_a_title_of_exactly_1000_characters_is_accepted():
    (event,) = account.given().when(open_account(title="x" * 1000)).events
    assert event.title == "x" * 1000


def test_opening_with_expected_version_0_is_accepted():
    (event,) = account.given().when(open_account(expected_version=0)).events
    assert event.version == 1


def test_opening_with_an_expected_version_other_than_0_is_a_version_conflict():
    account.given().when(open_account(expected_version=1)).then_rejected(
        Reason.VERSION_CONFLICT, "expected_version")


# Deposit -----------------------------------------------------------------------------------

def test_a_deposit_adds_the_amount_and_reports_the_resulting_balance():
    account.given(opened("100.00")).when(deposit(D("25.50"))).then(
        MoneyDeposited(event_id="cmd-dep.0", aggregate_id=ACC, version=2, command_id="cmd-dep",
                       occurred_at=NOW, amount=D("25.50"), balance=D("125.50")))


def test_after_a_deposit_the_account_has_the_new_balance_and_the_next_version():
    then = account.given(opened("100.00"), deposited("10.00", "110.00", 2)).when(deposit(D("0.01")))
    assert then.state.balance == D("110.01")
    assert then.state.version == 3
    assert then.state.status == OPEN


def test_a_deposit_amount_without_places_is_stored_with_two_decimal_places():
    (event,) = account.given(opened()).when(deposit(D("7"))).events
    assert (exactly(event.amount), exactly(event.balance)) == ("7.00", "7.00")


def test_a_deposit_into_an_unknown_account_is_rejected_as_not_found():
    account.given().when(deposit(D("10.00"))).then_rejected(Reason.ACCOUNT_NOT_FOUND)


def test_a_deposit_into_a_closed_account_is_rejected_as_closed():
    account.given(opened(), closed(2)).when(deposit(D("10.00"))).then_rejected(Reason.ACCOUNT_CLOSED)


@pytest.mark.parametrize("amount", INVALID_AMOUNTS)
def test_a_deposit_of_an_invalid_amount_is_rejected_as_an_invalid_amount(amount):
    account.given(opened("100.00")).when(deposit(amount)).then_rejected(Reason.INVALID_AMOUNT, "amount")


def test_a_deposit_that_would_take_the_balance_beyond_decimal_18_2_is_rejected_as_an_invalid_amount():
    account.given(opened(str(MAX_MONEY))).when(deposit(D("0.01"))).then_rejected(
        Reason.INVALID_AMOUNT, "amount")


def test_a_deposit_up_to_the_largest_decimal_18_2_balance_is_accepted():
    (event,) = account.given(opened("0.01")).when(deposit(MAX_MONEY - D("0.01"))).events
    assert event.balance == MAX_MONEY


def test_a_deposit_with_a_stale_expected_version_is_a_version_conflict():
    given = account.given(opened(), deposited("5.00", "5.00", 2))
    given.when(deposit(D("1.00"), expected_version=1)).then_rejected(Reason.VERSION_CONFLICT, "expected_version")
    given.when(deposit(D("1.00"), expected_version=3)).then_rejected(Reason.VERSION_CONFLICT, "expected_version")


def test_a_deposit_whose_expected_version_matches_is_accepted():
    (event,) = account.given(opened(), deposited("5.00", "5.00", 2)).when(
        deposit(D("1.00"), expected_version=2)).events
    assert (event.version, event.balance) == (3, D("6.00"))


# Withdraw ----------------------------------------------------------------------------------

def test_a_withdrawal_subtracts_the_amount_and_reports_the_resulting_balance():
    account.given(opened("100.00")).when(withdraw(D("30.25"))).then(
        MoneyWithdrawn(event_id="cmd-wd.0", aggregate_id=ACC, version=2, command_id="cmd-wd",
                       occurred_at=NOW, amount=D("30.25"), balance=D("69.75")))


def test_after_a_withdrawal_the_account_has_the_new_balance_and_the_next_version():
    state = account.given(opened("100.00")).when(withdraw(D("30.25"))).state
    assert (state.balance, state.version) == (D("69.75"), 2)


def test_withdrawing_exactly_the_balance_leaves_zero():
    (event,) = account.given(opened("40.00"), deposited("2.50", "42.50", 2)).when(withdraw(D("42.50"))).events
    assert exactly(event.balance) == "0.00"
    assert event.version == 3


def test_a_withdrawal_larger_than_the_balance_is_rejected_for_insufficient_funds():
    account.given(opened("100.00")).when(withdraw(D("100.01"))).then_rejected(Reason.INSUFFICIENT_FUNDS, "amount")


def test_any_withdrawal_from_an_empty_account_is_rejected_for_insufficient_funds():
    account.given(opened("0.00")).when(withdraw(D("0.01"))).then_rejected(Reason.INSUFFICIENT_FUNDS)


def test_a_withdrawal_counts_every_earlier_deposit_and_withdrawal():
    given = account.given(opened("10.00"), deposited("5.00", "15.00", 2), withdrawn("12.00", "3.00", 3))
    given.when(withdraw(D("3.01"))).then_rejected(Reason.INSUFFICIENT_FUNDS)
    assert given.when(withdraw(D("3.00"))).state.balance == D("0.00")


def test_a_withdrawal_from_an_unknown_account_is_rejected_as_not_found():
    account.given().when(withdraw(D("1.00"))).then_rejected(Reason.ACCOUNT_NOT_FOUND)


def test_a_withdrawal_from_a_closed_account_is_rejected_as_closed():
    account.given(opened(), closed(2)).when(withdraw(D("1.00"))).then_rejected(Reason.ACCOUNT_CLOSED)


@pytest.mark.parametrize("amount", INVALID_AMOUNTS)
def test_a_withdrawal_of_an_invalid_amount_is_rejected_as_an_invalid_amount(amount):
    account.given(opened(str(MAX_MONEY))).when(withdraw(amount)).then_rejected(Reason.INVALID_AMOUNT, "amount")


def test_a_withdrawal_with_a_stale_expected_version_is_a_version_conflict():
    account.given(opened("100.00"), withdrawn("1.00", "99.00", 2)).when(
        withdraw(D("1.00"), expected_version=1)).then_rejected(Reason.VERSION_CONFLICT, "expected_version")


def test_a_withdrawal_whose_expected_version_matches_is_accepted():
    (event,) = account.given(opened("100.00"), withdrawn("1.00", "99.00", 2)).when(
        withdraw(D("1.00"), expected_version=2)).events
    assert (event.version, event.balance) == (3, D("98.00"))


# Close -------------------------------------------------------------------------------------

def test_an_account_with_a_zero_balance_closes():
    account.given(opened("0.00")).when(close()).then(
        AccountClosed(event_id="cmd-close.0", aggregate_id=ACC, version=2, command_id="cmd-close",
                      occurred_at=NOW))


def test_a_closed_account_is_closed_and_keeps_its_other_state():
    account.given(opened("0.00")).when(close()).then_state(
        Account(account_id=ACC, customer_id=CUST, title="Checking", description="Daily",
                balance=D("0.00"), status=CLOSED, version=2))


def test_an_account_emptied_by_withdrawals_closes():
    (event,) = account.given(opened("10.00"), withdrawn("10.00", "0.00", 2)).when(close()).events
    assert event.version == 3


@pytest.mark.parametrize("balance", ["0.01", "100.00"])
def test_closing_an_account_with_money_on_it_is_rejected_as_balance_not_zero(balance):
    account.given(opened(balance)).when(close()).then_rejected(Reason.BALANCE_NOT_ZERO)


def test_closing_an_account_twice_is_rejected_as_closed():
    account.given(opened(), closed(2)).when(close()).then_rejected(Reason.ACCOUNT_CLOSED)


def test_closing_an_unknown_account_is_rejected_as_not_found():
    account.given().when(close()).then_rejected(Reason.ACCOUNT_NOT_FOUND)


def test_closing_with_a_stale_expected_version_is_a_version_conflict():
    account.given(opened()).when(close(expected_version=0)).then_rejected(Reason.VERSION_CONFLICT, "expected_version")


def test_closing_with_the_current_expected_version_is_accepted():
    (event,) = account.given(opened()).when(close(expected_version=1)).events
    assert isinstance(event, AccountClosed)


# Envelopes: ids, versions, time ------------------------------------------------------------

def test_the_same_command_twice_on_the_same_state_yields_the_same_event_ids():
    given = account.given(opened("100.00"))
    first = given.when(deposit(D("1.00"), command_id="same"), now_ms=NOW).events
    again = given.when(deposit(D("1.00"), command_id="same"), now_ms=NOW).events
    assert first == again
    assert [e.event_id for e in first] == ["same.0"]


def test_different_commands_yield_different_event_ids():
    given = account.given(opened("100.00"))
    a = given.when(deposit(D("1.00"), command_id="a")).events
    b = given.when(deposit(D("1.00"), command_id="b")).events
    assert a[0].event_id != b[0].event_id
    assert (a[0].command_id, b[0].command_id) == ("a", "b")


def test_versions_are_gap_free_from_1_over_a_sequence_of_commands():
    events = account.run(
        open_account(command_id="c1", initial_balance=D("10.00")),
        deposit(D("5.00"), command_id="c2"),
        deposit(D("0.10"), command_id="c3"),
        withdraw(D("15.00"), command_id="c4"),
        withdraw(D("0.10"), command_id="c5"),
        close(command_id="c6"),
    )
    assert [e.version for e in events] == [1, 2, 3, 4, 5, 6]
    assert [e.event_id for e in events] == ["c1.0", "c2.0", "c3.0", "c4.0", "c5.0", "c6.0"]
    assert {e.aggregate_id for e in events} == {ACC}
    assert [type(e).__name__ for e in events] == [
        "AccountOpened", "MoneyDeposited", "MoneyDeposited", "MoneyWithdrawn", "MoneyWithdrawn", "AccountClosed"]
    assert [e.balance for e in events[1:5]] == [D("15.00"), D("15.10"), D("0.10"), D("0.00")]


def test_a_replayed_sequence_folds_to_the_same_state_as_the_decisions():
    events = account.run(open_account(initial_balance=D("1.00")), deposit(D("2.00")), withdraw(D("0.50")))
    state = None
    for event in events:
        state = accounts.evolve(state, event)
    assert state == Account(account_id=ACC, customer_id=CUST, title="Checking", description="Daily",
                            balance=D("2.50"), status=OPEN, version=3)


@pytest.mark.parametrize("now_ms", [0, 1, NOW, 4_102_444_800_000])
@pytest.mark.parametrize("command", [open_account(), deposit(D("1.00")), withdraw(D("1.00")), close()],
                         ids=["open", "deposit", "withdraw", "close"])
def test_every_event_occurs_at_the_now_it_was_decided_at(command, now_ms):
    if isinstance(command, OpenAccount):
        given = account.given()
    else:
        given = account.given(opened("0.00" if isinstance(command, CloseAccount) else "1.00"))
    events = given.when(command, now_ms=now_ms).events
    assert [e.occurred_at for e in events] == [now_ms]


def test_deciding_never_changes_the_given_state():
    given = account.given(opened("100.00"))
    before = given.state
    given.when(withdraw(D("50.00"))).events
    assert given.state == before
    assert before.balance == D("100.00")


# Identifiers -------------------------------------------------------------------------------

@pytest.mark.parametrize("command", [
    open_account(command_id=""), deposit(D("1.00"), command_id=""), withdraw(D("1.00"), command_id=""),
    close(command_id=""), deposit(D("1.00"), command_id="x" * 201),
], ids=["open", "deposit", "withdraw", "close", "over-long"])
def test_a_command_without_a_usable_command_id_is_rejected_as_an_invalid_field(command):
    account.given(opened("10.00")).when(command).then_rejected(Reason.INVALID_FIELD, "command_id")


@pytest.mark.parametrize("field", ["account_id", "customer_id"])
def test_an_account_or_customer_id_longer_than_200_characters_is_rejected(field):
    account.given().when(open_account(**{field: "x" * 201})).then_rejected(Reason.INVALID_FIELD, field)
