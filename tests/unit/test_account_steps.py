"""The account's side of a transfer: debit, credit and refund steps, and the reply each one sends back."""
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
    AccountCredited,
    AccountDebited,
    AccountOpened,
    AccountRefunded,
    Deposit,
    MoneyWithdrawn,
    OpenAccount,
)
from streams.domain.base import Reason
from streams.domain.transfer_steps import (
    CreditAccount,
    DebitAccount,
    RecordCredit,
    RecordDebit,
    RecordRefund,
    RefundAccount,
)
from test_accounts import INVALID_AMOUNTS, MAX_MONEY

account = Aggregate(accounts.decide, accounts.evolve, accounts.react)

ACC = "acc-1"
CUST = "cust-1"
T = "tr-1"
EARLIER = NOW - 60_000


def D(value: str) -> Decimal:
    return Decimal(value)


# Given events ------------------------------------------------------------------------------

def opened(initial_balance: str = "100.00") -> AccountOpened:
    return AccountOpened(event_id="open.0", aggregate_id=ACC, version=1, command_id="open", occurred_at=EARLIER,
                         customer_id=CUST, title="Checking", description="", initial_balance=D(initial_balance))


def emptied(amount: str, version: int = 2) -> MoneyWithdrawn:
    return MoneyWithdrawn(event_id=f"wd{version}.0", aggregate_id=ACC, version=version, command_id=f"wd{version}",
                          occurred_at=EARLIER, amount=D(amount), balance=D("0.00"))


def closed(version: int) -> AccountClosed:
    return AccountClosed(event_id=f"close{version}.0", aggregate_id=ACC, version=version,
                         command_id=f"close{version}", occurred_at=EARLIER)


def a_closed_account():
    return opened("0.00"), closed(2)


# Steps -------------------------------------------------------------------------------------

def debit(amount="30.00", **overrides) -> DebitAccount:
    return DebitAccount(**{"command_id": f"{T}.debit", "account_id": ACC, "transfer_id": T,
                           "amount": D(amount) if isinstance(amount, str) else amount, **overrides})


def credit(amount="30.00", **overrides) -> CreditAccount:
    return CreditAccount(**{"command_id": f"{T}.credit", "account_id": ACC, "transfer_id": T,
                            "amount": D(amount) if isinstance(amount, str) else amount, **overrides})


def refund(amount="30.00", **overrides) -> RefundAccount:
    return RefundAccount(**{"command_id": f"{T}.refund", "account_id": ACC, "transfer_id": T,
                            "amount": D(amount) if isinstance(amount, str) else amount, **overrides})


def after(version: int, command_id: str) -> dict:
    return dict(event_id=f"{command_id}.0", aggregate_id=ACC, version=version, command_id=command_id,
                occurred_at=NOW)


# Debit -------------------------------------------------------------------------------------

def test_a_debit_takes_the_amount_and_reports_the_transfer_and_the_resulting_balance():
    account.given(opened("100.00")).when(debit("30.00")).then(
        AccountDebited(**after(2, f"{T}.debit"), transfer_id=T, amount=D("30.00"), balance=D("70.00")))


def test_after_a_debit_the_account_has_the_new_balance_and_the_next_version():
    account.given(opened("100.00")).when(debit("30.00")).then_state(
        Account(account_id=ACC, customer_id=CUST, title="Checking", description="", balance=D("70.00"),
                status=OPEN, version=2))


def test_a_debit_of_exactly_the_balance_leaves_zero():
    (event,) = account.given(opened("30.00")).when(debit("30")).events
    assert (str(event.amount), str(event.balance)) == ("30.00", "0.00")


def test_a_debit_larger_than_the_balance_is_rejected_for_insufficient_funds():
    account.given(opened("29.99")).when(debit("30.00")).then_rejected(Reason.INSUFFICIENT_FUNDS, "amount")


def test_a_debit_from_a_closed_account_is_rejected_as_closed():
    account.given(*a_closed_account()).when(debit("1.00")).then_rejected(Reason.ACCOUNT_CLOSED)


def test_a_debit_from_an_unknown_account_is_rejected_as_not_found():
    account.given().when(debit()).then_rejected(Reason.ACCOUNT_NOT_FOUND)


# Credit ------------------------------------------------------------------------------------

def test_a_credit_adds_the_amount_and_reports_the_transfer_and_the_resulting_balance():
    account.given(opened("100.00")).when(credit("30.00")).then(
        AccountCredited(**after(2, f"{T}.credit"), transfer_id=T, amount=D("30.00"), balance=D("130.00")))


def test_after_a_credit_the_account_has_the_new_balance():
    state = account.given(opened("100.00")).when(credit("0.01")).state
    assert (state.balance, state.version, state.status) == (D("100.01"), 2, OPEN)


def test_a_credit_to_a_closed_account_is_rejected_as_closed():
    account.given(*a_closed_account()).when(credit()).then_rejected(Reason.ACCOUNT_CLOSED)


def test_a_credit_to_an_unknown_account_is_rejected_as_not_found():
    account.given().when(credit()).then_rejected(Reason.ACCOUNT_NOT_FOUND)


def test_a_credit_that_would_take_the_balance_beyond_decimal_18_2_is_rejected_as_an_invalid_amount():
    account.given(opened(str(MAX_MONEY))).when(credit("0.01")).then_rejected(Reason.INVALID_AMOUNT, "amount")


def test_a_credit_up_to_the_largest_decimal_18_2_balance_is_accepted():
    (event,) = account.given(opened(str(MAX_MONEY - 1))).when(credit("1.00")).events
    assert event.balance == MAX_MONEY


# Refund ------------------------------------------------------------------------------------

def test_a_refund_gives_the_amount_back_to_an_open_account():
    then = account.given(opened("70.00")).when(refund("30.00"))
    then.then(AccountRefunded(**after(2, f"{T}.refund"), transfer_id=T, amount=D("30.00"), balance=D("100.00")))
    assert (then.state.balance, then.state.status) == (D("100.00"), OPEN)


def test_a_refund_gives_the_amount_back_even_to_an_account_closed_meanwhile():
    then = account.given(opened("30.00"), emptied("30.00"), closed(3)).when(refund("30.00"))
    then.then(AccountRefunded(**after(4, f"{T}.refund"), transfer_id=T, amount=D("30.00"), balance=D("30.00")))
    assert (then.state.balance, then.state.status, then.state.version) == (D("30.00"), CLOSED, 4)


def test_a_refund_to_an_unknown_account_is_rejected_as_not_found():
    account.given().when(refund()).then_rejected(Reason.ACCOUNT_NOT_FOUND)


# Every step ------------------------------------------------------------------------------------

STEPS = [pytest.param(debit, id="debit"), pytest.param(credit, id="credit"), pytest.param(refund, id="refund")]


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("amount", INVALID_AMOUNTS)
def test_a_step_of_an_invalid_amount_is_rejected_as_an_invalid_amount(step, amount):
    account.given(opened("100.00")).when(step(amount)).then_rejected(Reason.INVALID_AMOUNT, "amount")


@pytest.mark.parametrize("step", STEPS)
def test_a_step_without_a_command_id_is_rejected_as_an_invalid_field(step):
    account.given(opened("100.00")).when(step(command_id="")).then_rejected(Reason.INVALID_FIELD, "command_id")


@pytest.mark.parametrize("step", STEPS)
def test_the_same_step_twice_on_the_same_state_yields_the_same_event(step):
    given = account.given(opened("100.00"))
    assert given.when(step()).events == given.when(step()).events


# React: each step answers its transfer -------------------------------------------------------------

@pytest.mark.parametrize(("step", "reply_type"), [(debit, RecordDebit), (credit, RecordCredit),
                                                  (refund, RecordRefund)], ids=["debit", "credit", "refund"])
def test_an_accepted_step_replies_accepted_to_its_transfer_under_the_step_id_dot_reply(step, reply_type):
    command = step("1.00")
    account.given(opened("100.00")).when(command).then_issues(
        reply_type(command_id=f"{command.command_id}.reply", transfer_id=T, account_id=ACC, accepted=True,
                   reason=None))


def test_the_reply_is_keyed_by_the_transfer_and_settles_no_command():
    (reply,) = account.given(opened("100.00")).when(debit()).reactions
    assert reply.aggregate_id == T
    assert (reply.settles_command_id, reply.settles_command_type) == (None, None)


REFUSED = [
    pytest.param(debit("100.01"), (opened("100.00"),), RecordDebit, Reason.INSUFFICIENT_FUNDS, id="debit-funds"),
    pytest.param(debit(), a_closed_account(), RecordDebit, Reason.ACCOUNT_CLOSED, id="debit-closed"),
    pytest.param(debit(), (), RecordDebit, Reason.ACCOUNT_NOT_FOUND, id="debit-unknown"),
    pytest.param(credit(), a_closed_account(), RecordCredit, Reason.ACCOUNT_CLOSED, id="credit-closed"),
    pytest.param(credit(), (), RecordCredit, Reason.ACCOUNT_NOT_FOUND, id="credit-unknown"),
    pytest.param(credit("0.01"), (opened(str(MAX_MONEY)),), RecordCredit, Reason.INVALID_AMOUNT,
                 id="credit-overflow"),
    pytest.param(refund(), (), RecordRefund, Reason.ACCOUNT_NOT_FOUND, id="refund-unknown"),
    pytest.param(debit("0.001"), (opened(),), RecordDebit, Reason.INVALID_AMOUNT, id="debit-invalid-amount"),
]


@pytest.mark.parametrize(("command", "given", "reply_type", "reason"), REFUSED)
def test_a_refused_step_replies_refused_with_the_reason_and_changes_nothing(command, given, reply_type, reason):
    then = account.given(*given).when(command)
    then.then_rejected(reason)
    then.then_issues(reply_type(command_id=f"{command.command_id}.reply", transfer_id=T, account_id=ACC,
                                accepted=False, reason=reason))


@pytest.mark.parametrize("command", [
    OpenAccount(command_id="o", account_id=ACC, customer_id=CUST, title="t"),
    Deposit(command_id="d", account_id=ACC, amount=D("1.00")),
], ids=["open", "deposit"])
def test_commands_that_are_no_transfer_steps_issue_nothing(command):
    given = account.given() if isinstance(command, OpenAccount) else account.given(opened())
    given.when(command).then_issues()


# Ids the saga derives ------------------------------------------------------------------------

@pytest.mark.parametrize("command_id", [f"{T}.debit", f"{T}.credit", f"{T}.refund", f"{T}.debit.reply",
                                        "c.reserve-email"])
def test_a_client_command_under_an_id_the_saga_derives_is_rejected_as_an_invalid_command_id(command_id):
    rejection = account.given(opened("100.00")).when(
        Deposit(command_id=command_id, account_id=ACC, amount=D("1.00"))).then_rejected(
        Reason.INVALID_FIELD, "command_id")
    assert "reserved" in rejection.message


def test_a_client_command_whose_id_only_contains_a_derived_suffix_is_accepted():
    assert account.given(opened("100.00")).when(
        Deposit(command_id=f"{T}.debit-1", account_id=ACC, amount=D("1.00"))).events


@pytest.mark.parametrize("step", [debit, credit, refund])
def test_a_saga_step_under_its_derived_id_is_accepted(step):
    assert account.given(opened("100.00")).when(step("1.00")).events
