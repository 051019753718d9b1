"""The pure projections: account view, statement lines, customer view, outcomes."""
from __future__ import annotations

from decimal import Decimal
from functools import reduce

from given_when_then import NOW
from streams.domain.accounts import (
    CLOSED,
    OPEN,
    AccountClosed,
    AccountCredited,
    AccountDebited,
    AccountOpened,
    AccountRefunded,
    Deposit,
    MoneyDeposited,
    MoneyWithdrawn,
    Withdraw,
)
from streams.domain.base import Reason, Rejection
from streams.domain.customers import CreateCustomer, CustomerCreated, ToAccount, ToAccountAdded, ToAccountRemoved
from streams.domain.emails import RecordEmailReservation
from streams.domain.transfer_steps import CreditAccount, RecordCredit, RecordDebit
from streams.domain.transfers import (
    COMPLETED,
    DEBITED,
    INITIATED,
    Transfer,
    TransferCompleted,
    TransferDebited,
    TransferInitiated,
)
from streams.domain.outcomes import ACCEPTED, REJECTED, CommandOutcome, outcome_of
from streams.domain.views import (
    AccountSummary,
    AccountView,
    CustomerView,
    HistoryEntry,
    history_entry,
    is_next,
    placeholder_customer,
    project_account,
    project_customer,
    project_transfer,
    summarize,
    with_account,
)

D = Decimal
ACC = "acc-1"
CUST = "cust-1"


def envelope(version: int, command_id: str | None = None, aggregate_id: str = ACC) -> dict:
    command_id = command_id or f"c{version}"
    return dict(event_id=f"{command_id}.0", aggregate_id=aggregate_id, version=version, command_id=command_id,
                occurred_at=NOW + version)


OPENED = AccountOpened(**envelope(1), customer_id=CUST, title="Checking", description="Daily",
                       initial_balance=D("100.00"))
DEPOSITED = MoneyDeposited(**envelope(2), amount=D("50.00"), balance=D("150.00"))
WITHDRAWN = MoneyWithdrawn(**envelope(3), amount=D("150.00"), balance=D("0.00"))
CLOSED_EVENT = AccountClosed(**envelope(4))
ACCOUNT_EVENTS = (OPENED, DEPOSITED, WITHDRAWN, CLOSED_EVENT)


def summary(account_id: str, version: int, balance: str = "1.00") -> AccountSummary:
    return AccountSummary(account_id=account_id, customer_id=CUST, title=f"t{version}", balance=D(balance),
                          status=OPEN, version=version)


def customer_created(version: int = 1) -> CustomerCreated:
    return CustomerCreated(**envelope(version, aggregate_id=CUST), first_name="Ada", last_name="Lovelace",
                           email="ada@example.com", phone=None, address="London")


# Account view ------------------------------------------------------------------------------

def test_an_opened_account_projects_to_an_open_view_at_version_1():
    assert project_account(None, OPENED) == AccountView(
        account_id=ACC, customer_id=CUST, title="Checking", description="Daily", balance=D("100.00"),
        status=OPEN, version=1)


def test_the_account_view_follows_each_event_of_a_sequence():
    views = []
    view = None
    for event in ACCOUNT_EVENTS:
        assert is_next(view.version if view else 0, event)
        view = project_account(view, event)
        views.append(view)
    assert [(v.balance, v.status, v.version) for v in views] == [
        (D("100.00"), OPEN, 1), (D("150.00"), OPEN, 2), (D("0.00"), OPEN, 3), (D("0.00"), CLOSED, 4)]
    assert views[-1] == AccountView(account_id=ACC, customer_id=CUST, title="Checking", description="Daily",
                                    balance=D("0.00"), status=CLOSED, version=4)


def test_the_account_view_takes_the_balance_the_event_reports():
    view = project_account(project_account(None, OPENED), MoneyDeposited(**envelope(2), amount=D("1.00"),
                                                                         balance=D("777.77")))
    assert view.balance == D("777.77")


def test_only_the_next_version_is_next():
    assert is_next(1, DEPOSITED)
    assert not is_next(2, DEPOSITED)  # a redelivery
    assert not is_next(0, DEPOSITED)  # a gap


# Statement lines ---------------------------------------------------------------------------

def history_of(events) -> list[HistoryEntry]:
    entries, view = [], None
    for event in events:
        view = project_account(view, event)
        entries.append(history_entry(view, event))
    return entries


def test_each_event_adds_a_statement_line_with_a_signed_amount_and_the_balance_after_it():
    assert history_of(ACCOUNT_EVENTS) == [
        HistoryEntry(account_id=ACC, version=1, entry_type="AccountOpened", amount=D("100.00"),
                     balance=D("100.00"), occurred_at=NOW + 1, command_id="c1"),
        HistoryEntry(account_id=ACC, version=2, entry_type="MoneyDeposited", amount=D("50.00"),
                     balance=D("150.00"), occurred_at=NOW + 2, command_id="c2"),
        HistoryEntry(account_id=ACC, version=3, entry_type="MoneyWithdrawn", amount=D("-150.00"),
                     balance=D("0.00"), occurred_at=NOW + 3, command_id="c3"),
        HistoryEntry(account_id=ACC, version=4, entry_type="AccountClosed", amount=D("0.00"),
                     balance=D("0.00"), occurred_at=NOW + 4, command_id="c4"),
    ]


def test_a_withdrawal_line_has_a_negative_amount():
    (_, line) = history_of((OPENED, MoneyWithdrawn(**envelope(2), amount=D("12.50"), balance=D("87.50"))))
    assert line.amount == D("-12.50")
    assert line.amount < 0


def test_the_legs_of_a_transfer_are_statement_lines_that_name_the_transfer():
    lines = history_of((OPENED, AccountDebited(**envelope(2, "t1.debit"), transfer_id="t1", amount=D("30.00"),
                                               balance=D("70.00")),
                        AccountCredited(**envelope(3, "t2.credit"), transfer_id="t2", amount=D("5.00"),
                                        balance=D("75.00")),
                        AccountRefunded(**envelope(4, "t1.refund"), transfer_id="t1", amount=D("30.00"),
                                        balance=D("105.00"))))
    assert [(l.entry_type, l.amount, l.balance, l.transfer_id, l.command_id) for l in lines] == [
        ("AccountOpened", D("100.00"), D("100.00"), None, "c1"),
        ("AccountDebited", D("-30.00"), D("70.00"), "t1", "t1.debit"),
        ("AccountCredited", D("5.00"), D("75.00"), "t2", "t2.credit"),
        ("AccountRefunded", D("30.00"), D("105.00"), "t1", "t1.refund"),
    ]


def test_the_account_view_takes_the_balance_of_transfer_legs():
    view = project_account(project_account(None, OPENED), AccountDebited(
        **envelope(2, "t1.debit"), transfer_id="t1", amount=D("30.00"), balance=D("70.00")))
    assert (view.balance, view.version) == (D("70.00"), 2)


# Transfer view -----------------------------------------------------------------------------

def test_the_transfer_view_follows_the_saga():
    initiated = TransferInitiated(**envelope(1, "tr", aggregate_id="t1"), from_account_id="a", to_account_id="b",
                                  amount=D("30.00"), description="rent")
    view = project_transfer(None, initiated)
    assert view == Transfer(transfer_id="t1", from_account_id="a", to_account_id="b", amount=D("30.00"),
                            description="rent", state=INITIATED, reason=None, version=1)
    view = project_transfer(view, TransferDebited(**envelope(2, "t1.debit.reply", aggregate_id="t1")))
    assert (view.state, view.version) == (DEBITED, 2)
    view = project_transfer(view, TransferCompleted(**envelope(3, "t1.credit.reply", aggregate_id="t1")))
    assert (view.state, view.version, view.reason) == (COMPLETED, 3, None)


# Customer view -----------------------------------------------------------------------------

def test_a_summary_carries_the_account_view():
    view = project_account(project_account(None, OPENED), DEPOSITED)
    assert summarize(view) == AccountSummary(account_id=ACC, customer_id=CUST, title="Checking",
                                             balance=D("150.00"), status=OPEN, version=2)


def test_a_new_account_summary_is_appended():
    view = with_account(with_account(placeholder_customer(CUST), summary("a", 1)), summary("b", 1))
    assert [s.account_id for s in view.accounts] == ["a", "b"]


def test_a_newer_summary_replaces_the_older_one_in_place():
    view = reduce(with_account, [summary("a", 1), summary("b", 1), summary("c", 1)], placeholder_customer(CUST))
    view = with_account(view, summary("b", 5, "9.99"))
    assert view.accounts == (summary("a", 1), summary("b", 5, "9.99"), summary("c", 1))


def test_a_stale_summary_is_ignored():
    view = with_account(placeholder_customer(CUST), summary("a", 5, "5.00"))
    assert with_account(view, summary("a", 4, "4.00")) == view


def test_a_summary_of_the_same_version_changes_nothing():
    view = with_account(placeholder_customer(CUST), summary("a", 5, "5.00"))
    assert with_account(view, summary("a", 5, "6.00")).accounts == (summary("a", 5, "5.00"),)


def test_a_placeholder_customer_is_empty_at_version_0():
    view = placeholder_customer(CUST)
    assert (view.customer_id, view.version, view.accounts, view.to_accounts) == (CUST, 0, (), ())


def test_a_customer_created_after_its_accounts_keeps_the_account_summaries():
    early = with_account(with_account(placeholder_customer(CUST), summary("a", 2)), summary("b", 1))
    view = project_customer(early, customer_created())
    assert view == CustomerView(customer_id=CUST, first_name="Ada", last_name="Lovelace", email="ada@example.com",
                                phone=None, address="London", version=1, to_accounts=(),
                                accounts=(summary("a", 2), summary("b", 1)))


def test_a_customer_created_with_no_earlier_view_has_no_accounts():
    view = project_customer(None, customer_created())
    assert (view.version, view.accounts, view.first_name) == (1, (), "Ada")


def test_to_accounts_are_added_and_removed_in_the_customer_view():
    view = project_customer(None, customer_created())
    view = project_customer(view, ToAccountAdded(**envelope(2, aggregate_id=CUST), account_id="x", title="X",
                                                 owner="Mr X"))
    view = project_customer(view, ToAccountAdded(**envelope(3, aggregate_id=CUST), account_id="y", title="Y",
                                                 owner="Ms Y"))
    assert view.to_accounts == (ToAccount(account_id="x", title="X", owner="Mr X"),
                                ToAccount(account_id="y", title="Y", owner="Ms Y"))
    view = project_customer(view, ToAccountRemoved(**envelope(4, aggregate_id=CUST), account_id="x"))
    assert view.to_accounts == (ToAccount(account_id="y", title="Y", owner="Ms Y"),)
    assert view.version == 4


# Outcomes ----------------------------------------------------------------------------------

def test_an_accepted_command_has_an_accepted_outcome_with_the_version_it_produced():
    command = Deposit(command_id="cmd-1", account_id=ACC, amount=D("1.00"))
    assert outcome_of(command, (DEPOSITED,), NOW) == CommandOutcome(
        command_id="cmd-1", command_type="Deposit", aggregate_id=ACC, status=ACCEPTED, reason=None,
        message=None, field=None, version=2, occurred_at=NOW)


def test_the_accepted_version_is_that_of_the_last_event():
    command = Deposit(command_id="cmd-1", account_id=ACC, amount=D("1.00"))
    assert outcome_of(command, (OPENED, DEPOSITED, WITHDRAWN), NOW).version == 3


def test_a_rejected_command_has_a_rejected_outcome_with_the_reason_and_no_version():
    command = Withdraw(command_id="cmd-2", account_id=ACC, amount=D("9.00"))
    rejection = Rejection(Reason.INSUFFICIENT_FUNDS, "balance 1.00 is less than 9.00", "amount")
    assert outcome_of(command, rejection, NOW + 5) == CommandOutcome(
        command_id="cmd-2", command_type="Withdraw", aggregate_id=ACC, status=REJECTED,
        reason="INSUFFICIENT_FUNDS", message="balance 1.00 is less than 9.00", field="amount", version=None,
        occurred_at=NOW + 5)


def email_reply(accepted: bool, settles: str | None = "create-1") -> RecordEmailReservation:
    return RecordEmailReservation(command_id="create-1.reserve-email.reply", customer_id=CUST,
                                  email="ada@example.com", accepted=accepted,
                                  reason=None if accepted else Reason.EMAIL_TAKEN, first_name="Ada",
                                  last_name="Lovelace", settles_command_id=settles,
                                  settles_command_type="CreateCustomer" if settles else None)


def test_a_reply_that_settles_a_command_gives_the_accepted_outcome_of_the_settled_command():
    assert outcome_of(email_reply(True), (customer_created(),), NOW) == CommandOutcome(
        command_id="create-1", command_type="CreateCustomer", aggregate_id=CUST, status=ACCEPTED, version=1,
        occurred_at=NOW)


def test_a_reply_that_settles_a_command_gives_the_rejected_outcome_of_the_settled_command():
    rejection = Rejection(Reason.EMAIL_TAKEN, "another customer has this email", "email")
    assert outcome_of(email_reply(False), rejection, NOW) == CommandOutcome(
        command_id="create-1", command_type="CreateCustomer", aggregate_id=CUST, status=REJECTED,
        reason=Reason.EMAIL_TAKEN, message="another customer has this email", field="email", occurred_at=NOW)


def test_the_settled_outcome_is_the_one_the_create_command_would_have_had():
    create = CreateCustomer(command_id="create-1", customer_id=CUST, first_name="Ada", last_name="Lovelace",
                            email="ada@example.com")
    assert outcome_of(email_reply(True), (customer_created(),), NOW) == outcome_of(
        create, (customer_created(),), NOW)


def test_a_reply_that_settles_nothing_gives_no_outcome():
    debit = RecordDebit(command_id="t1.debit.reply", transfer_id="t1", account_id=ACC, accepted=True)
    credit = RecordCredit(command_id="t1.credit.reply", transfer_id="t1", account_id="b", accepted=False,
                          reason=Reason.ACCOUNT_CLOSED)
    assert outcome_of(debit, (TransferDebited(**envelope(2, aggregate_id="t1")),), NOW) is None
    assert outcome_of(credit, Rejection(Reason.INVALID_STATE, "no"), NOW) is None
    assert outcome_of(email_reply(True, settles=None), (customer_created(),), NOW) is None


def test_an_accepted_command_with_no_events_has_an_accepted_outcome_without_a_version():
    step = CreditAccount(command_id="t1.credit", account_id=ACC, transfer_id="t1", amount=D("1.00"))
    outcome = outcome_of(step, (), NOW)
    assert (outcome.status, outcome.version, outcome.command_id) == (ACCEPTED, None, "t1.credit")
