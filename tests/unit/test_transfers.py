"""Every rule of the MoneyTransfer saga, given events / when a command or reply / then events, a rejection
or the account step it issues."""
from __future__ import annotations

from decimal import Decimal

import pytest

from given_when_then import NOW, Aggregate
from streams.domain import transfers
from streams.domain.base import Reason
from streams.domain.transfer_steps import (
    CreditAccount,
    DebitAccount,
    RecordCredit,
    RecordDebit,
    RecordRefund,
    RefundAccount,
)
from streams.domain.transfers import (
    COMPLETED,
    DEBITED,
    FAILED,
    INITIATED,
    REFUNDED,
    Transfer,
    TransferCompleted,
    TransferCreditFailed,
    TransferDebited,
    TransferFailed,
    TransferInitiated,
    TransferMoney,
    TransferRefunded,
)

transfer = Aggregate(transfers.decide, transfers.evolve, transfers.react)

T = "tr-1"
SRC = "acc-src"
DST = "acc-dst"
EARLIER = NOW - 60_000


def D(value: str) -> Decimal:
    return Decimal(value)


def envelope(version: int, command_id: str) -> dict:
    return dict(event_id=f"{command_id}.0", aggregate_id=T, version=version, command_id=command_id,
                occurred_at=EARLIER)


# Given events ------------------------------------------------------------------------------

def initiated(amount: str = "25.00") -> TransferInitiated:
    return TransferInitiated(**envelope(1, "cmd-tr"), from_account_id=SRC, to_account_id=DST, amount=D(amount),
                             description="rent")


def debited() -> TransferDebited:
    return TransferDebited(**envelope(2, f"{T}.debit.reply"))


def failed(reason: str = Reason.INSUFFICIENT_FUNDS) -> TransferFailed:
    return TransferFailed(**envelope(2, f"{T}.debit.reply"), reason=reason)


def completed() -> TransferCompleted:
    return TransferCompleted(**envelope(3, f"{T}.credit.reply"))


def credit_failed(reason: str = Reason.ACCOUNT_NOT_FOUND) -> TransferCreditFailed:
    return TransferCreditFailed(**envelope(3, f"{T}.credit.reply"), reason=reason)


def refunded() -> TransferRefunded:
    return TransferRefunded(**envelope(4, f"{T}.refund.reply"))


STATES = {
    "initiated": (initiated(),),
    "debited": (initiated(), debited()),
    "failed": (initiated(), failed()),
    "completed": (initiated(), debited(), completed()),
    "credit failed": (initiated(), debited(), credit_failed()),
    "refunded": (initiated(), debited(), credit_failed(), refunded()),
}


# Commands and replies ------------------------------------------------------------------------

def transfer_money(amount="25.00", **overrides) -> TransferMoney:
    fields = dict(command_id="cmd-tr", transfer_id=T, from_account_id=SRC, to_account_id=DST,
                  amount=D(amount) if isinstance(amount, str) else amount, description="rent")
    fields.update(overrides)
    return TransferMoney(**fields)


def debit_reply(accepted: bool = True, reason: str | None = None) -> RecordDebit:
    return RecordDebit(command_id=f"{T}.debit.reply", transfer_id=T, account_id=SRC, accepted=accepted,
                       reason=reason)


def credit_reply(accepted: bool = True, reason: str | None = None) -> RecordCredit:
    return RecordCredit(command_id=f"{T}.credit.reply", transfer_id=T, account_id=DST, accepted=accepted,
                        reason=reason)


def refund_reply(accepted: bool = True, reason: str | None = None) -> RecordRefund:
    return RecordRefund(command_id=f"{T}.refund.reply", transfer_id=T, account_id=SRC, accepted=accepted,
                        reason=reason)


def state(state: str, version: int, reason: str | None = None, amount: str = "25.00") -> Transfer:
    return Transfer(transfer_id=T, from_account_id=SRC, to_account_id=DST, amount=D(amount), description="rent",
                    state=state, reason=reason, version=version)


# Initiate ----------------------------------------------------------------------------------

def test_transferring_money_emits_transfer_initiated_at_version_1():
    transfer.given().when(transfer_money()).then(
        TransferInitiated(event_id="cmd-tr.0", aggregate_id=T, version=1, command_id="cmd-tr", occurred_at=NOW,
                          from_account_id=SRC, to_account_id=DST, amount=D("25.00"), description="rent"))


def test_an_initiated_transfer_is_initiated_with_no_reason():
    transfer.given().when(transfer_money()).then_state(state(INITIATED, 1))


def test_an_amount_without_places_is_stored_with_two_decimal_places():
    (event,) = transfer.given().when(transfer_money(D("25"))).events
    assert str(event.amount) == "25.00"


def test_a_missing_description_is_stored_as_an_empty_string():
    (event,) = transfer.given().when(transfer_money(description=None)).events
    assert event.description == ""


@pytest.mark.parametrize("amount", ["0.00", "0", "-0.01", "-25.00"])
def test_a_transfer_of_zero_or_less_is_rejected_as_an_invalid_amount(amount):
    transfer.given().when(transfer_money(amount)).then_rejected(Reason.INVALID_AMOUNT, "amount")


@pytest.mark.parametrize("amount", ["0.001", "1.005", "25.000000001"])
def test_a_transfer_with_more_than_two_decimal_places_is_rejected_as_an_invalid_amount(amount):
    transfer.given().when(transfer_money(amount)).then_rejected(Reason.INVALID_AMOUNT, "amount")


@pytest.mark.parametrize("amount", [D("NaN"), D("Infinity"), D("10000000000000000.00")], ids=["nan", "inf", "1e16"])
def test_a_transfer_of_no_decimal_18_2_money_is_rejected_as_an_invalid_amount(amount):
    transfer.given().when(transfer_money(amount)).then_rejected(Reason.INVALID_AMOUNT, "amount")


def test_a_transfer_to_the_same_account_is_rejected_as_same_account():
    transfer.given().when(transfer_money(to_account_id=SRC)).then_rejected(Reason.SAME_ACCOUNT, "to_account_id")


@pytest.mark.parametrize("field", ["transfer_id", "from_account_id", "to_account_id", "command_id"])
@pytest.mark.parametrize("missing", ["", None])
def test_a_transfer_without_an_id_or_account_is_rejected_as_an_invalid_field(field, missing):
    transfer.given().when(transfer_money(**{field: missing})).then_rejected(Reason.INVALID_FIELD, field)


def test_a_description_longer_than_1000_characters_is_rejected():
    transfer.given().when(transfer_money(description="x" * 1001)).then_rejected(Reason.INVALID_FIELD, "description")


@pytest.mark.parametrize("given", STATES.values(), ids=STATES.keys())
def test_a_transfer_that_already_exists_is_rejected_as_already_existing_whatever_its_state(given):
    transfer.given(*given).when(transfer_money(command_id="cmd-again")).then_rejected(Reason.ALREADY_EXISTS)


def test_transferring_with_expected_version_0_is_accepted():
    (event,) = transfer.given().when(transfer_money(expected_version=0)).events
    assert event.version == 1


def test_transferring_with_an_expected_version_other_than_0_is_a_version_conflict():
    transfer.given().when(transfer_money(expected_version=1)).then_rejected(Reason.VERSION_CONFLICT,
                                                                             "expected_version")


# The debit's answer, in INITIATED --------------------------------------------------------------

def test_an_accepted_debit_emits_transfer_debited_at_version_2_under_the_reply():
    transfer.given(initiated()).when(debit_reply()).then(
        TransferDebited(event_id=f"{T}.debit.reply.0", aggregate_id=T, version=2, command_id=f"{T}.debit.reply",
                        occurred_at=NOW))


def test_after_an_accepted_debit_the_transfer_is_debited():
    transfer.given(initiated()).when(debit_reply()).then_state(state(DEBITED, 2))


@pytest.mark.parametrize("reason", [Reason.INSUFFICIENT_FUNDS, Reason.ACCOUNT_CLOSED, Reason.ACCOUNT_NOT_FOUND])
def test_a_refused_debit_fails_the_transfer_with_the_account_reason(reason):
    then = transfer.given(initiated()).when(debit_reply(accepted=False, reason=reason))
    then.then(TransferFailed(event_id=f"{T}.debit.reply.0", aggregate_id=T, version=2,
                             command_id=f"{T}.debit.reply", occurred_at=NOW, reason=reason))
    then.then_state(state(FAILED, 2, reason))


def test_a_refused_debit_without_a_reason_still_fails_the_transfer_with_a_reason():
    (event,) = transfer.given(initiated()).when(debit_reply(accepted=False)).events
    assert isinstance(event, TransferFailed) and event.reason


# The credit's answer, in DEBITED -------------------------------------------------------------

def test_an_accepted_credit_completes_the_transfer_at_version_3():
    then = transfer.given(initiated(), debited()).when(credit_reply())
    then.then(TransferCompleted(event_id=f"{T}.credit.reply.0", aggregate_id=T, version=3,
                                command_id=f"{T}.credit.reply", occurred_at=NOW))
    then.then_state(state(COMPLETED, 3))


@pytest.mark.parametrize("reason", [Reason.ACCOUNT_NOT_FOUND, Reason.ACCOUNT_CLOSED, Reason.INVALID_AMOUNT])
def test_a_refused_credit_records_the_failure_and_stays_debited_until_refunded(reason):
    then = transfer.given(initiated(), debited()).when(credit_reply(accepted=False, reason=reason))
    then.then(TransferCreditFailed(event_id=f"{T}.credit.reply.0", aggregate_id=T, version=3,
                                   command_id=f"{T}.credit.reply", occurred_at=NOW, reason=reason))
    then.then_state(state(DEBITED, 3, reason))
    assert DEBITED not in transfers.TERMINAL


# The refund's answer, after a credit failure ------------------------------------------------------

def test_an_accepted_refund_after_a_credit_failure_refunds_the_transfer_keeping_the_reason():
    then = transfer.given(initiated(), debited(), credit_failed(Reason.ACCOUNT_CLOSED)).when(refund_reply())
    then.then(TransferRefunded(event_id=f"{T}.refund.reply.0", aggregate_id=T, version=4,
                               command_id=f"{T}.refund.reply", occurred_at=NOW))
    then.then_state(state(REFUNDED, 4, Reason.ACCOUNT_CLOSED))


def test_a_refused_refund_is_rejected_and_leaves_the_transfer_visibly_stuck():
    then = transfer.given(initiated(), debited(), credit_failed()).when(
        refund_reply(accepted=False, reason=Reason.ACCOUNT_NOT_FOUND))
    rejection = then.then_rejected(Reason.INVALID_STATE)
    assert Reason.ACCOUNT_NOT_FOUND in rejection.message
    then.then_issues()


# Replies in the wrong state --------------------------------------------------------------------

WRONG_STATE = [
    ("nothing", (), debit_reply()),
    ("debited", STATES["debited"], debit_reply()),
    ("failed", STATES["failed"], debit_reply()),
    ("completed", STATES["completed"], debit_reply()),
    ("credit failed", STATES["credit failed"], debit_reply(accepted=False, reason=Reason.INSUFFICIENT_FUNDS)),
    ("refunded", STATES["refunded"], debit_reply()),
    ("nothing", (), credit_reply()),
    ("initiated", STATES["initiated"], credit_reply()),
    ("failed", STATES["failed"], credit_reply()),
    ("completed", STATES["completed"], credit_reply()),
    ("credit failed", STATES["credit failed"], credit_reply()),
    ("refunded", STATES["refunded"], credit_reply(accepted=False, reason=Reason.ACCOUNT_CLOSED)),
    ("nothing", (), refund_reply()),
    ("initiated", STATES["initiated"], refund_reply()),
    ("debited", STATES["debited"], refund_reply()),
    ("failed", STATES["failed"], refund_reply()),
    ("completed", STATES["completed"], refund_reply()),
    ("refunded", STATES["refunded"], refund_reply()),
]


@pytest.mark.parametrize(("given", "reply"), [(g, r) for _, g, r in WRONG_STATE],
                         ids=[f"{type(r).__name__} {'accepted' if r.accepted else 'refused'} on {name}"
                              for name, _, r in WRONG_STATE])
def test_a_reply_in_the_wrong_state_is_rejected_as_invalid_state_and_issues_nothing(given, reply):
    then = transfer.given(*given).when(reply)
    then.then_rejected(Reason.INVALID_STATE)
    then.then_issues()


# React: the account step each event calls for ------------------------------------------------------

def test_an_initiated_transfer_debits_the_source_account_by_the_amount():
    transfer.given().when(transfer_money("25")).then_issues(
        DebitAccount(command_id=f"{T}.debit", account_id=SRC, transfer_id=T, amount=D("25.00")))


def test_the_debit_step_carries_the_amount_with_two_places():
    (step,) = transfer.given().when(transfer_money("7.5")).reactions
    assert str(step.amount) == "7.50"


def test_a_debited_transfer_credits_the_target_account_by_the_amount():
    transfer.given(initiated("25.00")).when(debit_reply()).then_issues(
        CreditAccount(command_id=f"{T}.credit", account_id=DST, transfer_id=T, amount=D("25.00")))


def test_a_failed_debit_issues_nothing():
    transfer.given(initiated()).when(debit_reply(accepted=False, reason=Reason.INSUFFICIENT_FUNDS)).then_issues()


def test_a_completed_transfer_issues_nothing():
    transfer.given(initiated(), debited()).when(credit_reply()).then_issues()


def test_a_failed_credit_refunds_the_source_account_by_the_amount():
    transfer.given(initiated("25.00"), debited()).when(
        credit_reply(accepted=False, reason=Reason.ACCOUNT_NOT_FOUND)).then_issues(
        RefundAccount(command_id=f"{T}.refund", account_id=SRC, transfer_id=T, amount=D("25.00")))


def test_a_refunded_transfer_issues_nothing():
    transfer.given(initiated(), debited(), credit_failed()).when(refund_reply()).then_issues()


@pytest.mark.parametrize("command", [transfer_money(amount="0"), transfer_money(to_account_id=SRC),
                                     transfer_money(expected_version=4)],
                         ids=["invalid amount", "same account", "version conflict"])
def test_a_rejected_transfer_issues_no_debit(command):
    transfer.given().when(command).then_issues()


def test_a_transfer_that_already_exists_does_not_debit_again():
    transfer.given(initiated()).when(transfer_money(command_id="cmd-again")).then_issues()


def test_the_steps_ids_derive_from_the_transfer_id_so_issuing_twice_is_applied_once():
    first = transfer.given().when(transfer_money(command_id="a")).reactions
    again = transfer.given().when(transfer_money(command_id="b")).reactions
    assert first == again
    assert [s.command_id for s in first] == [f"{T}.debit"]


# The whole saga -------------------------------------------------------------------------------

def test_a_successful_saga_is_gap_free_from_1_to_3():
    events = transfer.run(transfer_money(), debit_reply(), credit_reply(), now_ms=12345)
    assert [type(e).__name__ for e in events] == ["TransferInitiated", "TransferDebited", "TransferCompleted"]
    assert [e.version for e in events] == [1, 2, 3]
    assert {e.occurred_at for e in events} == {12345}


def test_a_refunded_saga_is_gap_free_from_1_to_4():
    events = transfer.run(transfer_money(), debit_reply(), credit_reply(False, Reason.ACCOUNT_CLOSED),
                          refund_reply())
    assert [type(e).__name__ for e in events] == [
        "TransferInitiated", "TransferDebited", "TransferCreditFailed", "TransferRefunded"]
    assert [e.version for e in events] == [1, 2, 3, 4]


# Identifier lengths across the saga ------------------------------------------------------------------

def saga_with_real_accounts(transfer_id: str):
    """Runs a transfer of 25.00 from SRC (100.00) to DST (0.00) through the real account rules, step by step;
    returns the transfer and both accounts at the end."""
    from streams.domain import accounts
    from streams.domain.accounts import AccountOpened

    def opened(account_id, balance):
        return accounts.evolve(None, AccountOpened(event_id="o.0", aggregate_id=account_id, version=1,
                                                   command_id="o", occurred_at=EARLIER, customer_id="c",
                                                   title="t", description="", initial_balance=D(balance)))

    books = {SRC: opened(SRC, "100.00"), DST: opened(DST, "0.00")}
    command = transfer_money(transfer_id=transfer_id)
    state = None
    pending = [command]
    while pending:
        message = pending.pop(0)
        if isinstance(message, (DebitAccount, CreditAccount, RefundAccount)):
            result = accounts.decide(books[message.account_id], message, NOW)
            if isinstance(result, tuple):
                for event in result:
                    books[message.account_id] = accounts.evolve(books[message.account_id], event)
            pending.extend(accounts.react(books[message.account_id], message, result))
        else:
            result = transfers.decide(state, message, NOW)
            if isinstance(result, tuple):
                for event in result:
                    state = transfers.evolve(state, event)
            pending.extend(transfers.react(state, message, result))
    return state, books[SRC], books[DST]


def test_a_transfer_id_at_the_limit_runs_its_saga_to_completion():
    state, source, target = saga_with_real_accounts("t" * transfers.MAX_TRANSFER_ID)
    assert (state.state, source.balance, target.balance) == (COMPLETED, D("75.00"), D("25.00"))


def test_a_transfer_id_longer_than_the_limit_is_rejected_before_any_money_moves():
    # Longer ids would push the derived step and reply ids past the 200-character command id limit.
    transfer.given().when(transfer_money(transfer_id="t" * (transfers.MAX_TRANSFER_ID + 1))).then_rejected(
        "INVALID_FIELD", "transfer_id")


@pytest.mark.parametrize("command_id", [f"{T}.debit.reply", "x.credit", "x.refund.reply"])
def test_transferring_under_an_id_the_saga_derives_is_rejected_as_an_invalid_command_id(command_id):
    transfer.given().when(transfer_money(command_id=command_id)).then_rejected(Reason.INVALID_FIELD, "command_id")
