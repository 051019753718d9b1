"""The MoneyTransfer aggregate and its saga: debit the source, credit the target, refund on failure.

The transfer reacts to its own events by issuing account steps (`DebitAccount`, `CreditAccount`,
`RefundAccount`) with command ids derived from the transfer id, so a step issued twice is applied
once. The accounts answer with `RecordDebit` / `RecordCredit` / `RecordRefund` replies.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal

from .base import (
    derived_id_error,
    envelope,
    Command,
    Event,
    Reason,
    Rejection,
    first_rejection,
    money,
    money_error,
    text_error,
    version_conflict,
)
from .transfer_steps import CreditAccount, DebitAccount, RecordCredit, RecordDebit, RecordRefund, RefundAccount

INITIATED = "INITIATED"
DEBITED = "DEBITED"
COMPLETED = "COMPLETED"
FAILED = "FAILED"
REFUNDED = "REFUNDED"
TERMINAL = frozenset({COMPLETED, FAILED, REFUNDED})
MAX_TRANSFER_ID = 100


# Commands and replies -----------------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class TransferMoney(Command):
    transfer_id: str
    from_account_id: str
    to_account_id: str
    amount: Decimal
    description: str = ""

    @property
    def aggregate_id(self) -> str:
        return self.transfer_id


# Events -----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class TransferInitiated(Event):
    from_account_id: str
    to_account_id: str
    amount: Decimal
    description: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferDebited(Event):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferCompleted(Event):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferFailed(Event):
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferCreditFailed(Event):
    """The credit was refused: the debited money goes back (state stays DEBITED until refunded)."""

    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferRefunded(Event):
    pass


# State ------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class Transfer:
    transfer_id: str
    from_account_id: str
    to_account_id: str
    amount: Decimal
    description: str
    state: str
    reason: str | None
    version: int


TRANSFER_COMMANDS = (TransferMoney,)
TRANSFER_REPLIES = (RecordDebit, RecordCredit, RecordRefund)
TRANSFER_EVENTS = (TransferInitiated, TransferDebited, TransferCompleted, TransferFailed, TransferCreditFailed,
                   TransferRefunded)


def validate(command: Command) -> Rejection | None:
    """The rules that need no state: the HTTP API checks them before producing, `decide` again after."""
    if rejection := text_error(command.command_id, "command_id", limit=200) or derived_id_error(command):
        return rejection
    if isinstance(command, TransferMoney):
        rejection = first_rejection(
            # The saga's step and reply ids append up to 13 characters ("<id>.refund.reply"): keep them
            # well inside the 200 characters every command id may have.
            text_error(command.transfer_id, "transfer_id", limit=MAX_TRANSFER_ID),
            text_error(command.from_account_id, "from_account_id", limit=200),
            text_error(command.to_account_id, "to_account_id", limit=200),
            text_error(command.description, "description", required=False),
            money_error(command.amount, positive=True),
        )
        if rejection:
            return rejection
        if command.from_account_id == command.to_account_id:
            return Rejection(Reason.SAME_ACCOUNT, "a transfer needs two different accounts", "to_account_id")
    return None


def decide(state: Transfer | None, command: Command, now_ms: int) -> tuple[Event, ...] | Rejection:
    """The events `command` causes on `state`, or why it is refused."""
    return validate(command) or _DECIDERS[type(command)](state, command, now_ms)


def evolve(state: Transfer | None, event: Event) -> Transfer:
    """`state` after `event`; never validates (replay trusts the log)."""
    return _EVOLVERS[type(event)](state, event)


def react(state: Transfer | None, command: Command, result) -> tuple[Command, ...]:
    """The account step each new transfer event calls for (`state` is the transfer after them)."""
    if not isinstance(result, tuple):
        return ()
    steps = []
    for event in result:
        transfer = event.aggregate_id
        if isinstance(event, TransferInitiated):
            steps.append(DebitAccount(command_id=f"{transfer}.debit", account_id=state.from_account_id,
                                      transfer_id=transfer, amount=state.amount))
        elif isinstance(event, TransferDebited):
            steps.append(CreditAccount(command_id=f"{transfer}.credit", account_id=state.to_account_id,
                                       transfer_id=transfer, amount=state.amount))
        elif isinstance(event, TransferCreditFailed):
            steps.append(RefundAccount(command_id=f"{transfer}.refund", account_id=state.from_account_id,
                                       transfer_id=transfer, amount=state.amount))
    return tuple(steps)




def _transfer_money(state: Transfer | None, command: TransferMoney, now_ms: int):
    if state is not None:
        return Rejection(Reason.ALREADY_EXISTS, f"transfer {command.transfer_id} already exists")
    if rejection := version_conflict(command, 0):
        return rejection
    return (TransferInitiated(**envelope(state, command, now_ms), from_account_id=command.from_account_id,
                              to_account_id=command.to_account_id, amount=money(command.amount),
                              description=command.description or ""),)


def _expecting(state: Transfer | None, command: Command, wanted: str, refund_pending: bool = False):
    if state is None:
        return Rejection(Reason.INVALID_STATE, f"transfer {command.aggregate_id} does not exist")
    if state.state != wanted or (state.reason is not None) != refund_pending:
        return Rejection(Reason.INVALID_STATE, f"transfer {state.transfer_id} is {state.state}; "
                                               f"{type(command).__name__} does not apply")
    return None


def _record_debit(state: Transfer | None, reply: RecordDebit, now_ms: int):
    if rejection := _expecting(state, reply, INITIATED):
        return rejection
    if reply.accepted:
        return (TransferDebited(**envelope(state, reply, now_ms)),)
    return (TransferFailed(**envelope(state, reply, now_ms), reason=reply.reason or Reason.INVALID_STATE),)


def _record_credit(state: Transfer | None, reply: RecordCredit, now_ms: int):
    if rejection := _expecting(state, reply, DEBITED):
        return rejection
    if reply.accepted:
        return (TransferCompleted(**envelope(state, reply, now_ms)),)
    return (TransferCreditFailed(**envelope(state, reply, now_ms), reason=reply.reason or Reason.INVALID_STATE),)


def _record_refund(state: Transfer | None, reply: RecordRefund, now_ms: int):
    if rejection := _expecting(state, reply, DEBITED, refund_pending=True):
        return rejection
    if not reply.accepted:  # a refund cannot be refused by the rules; leave the transfer visibly stuck
        return Rejection(Reason.INVALID_STATE, f"the refund was refused: {reply.reason}")
    return (TransferRefunded(**envelope(state, reply, now_ms)),)


_DECIDERS = {TransferMoney: _transfer_money, RecordDebit: _record_debit, RecordCredit: _record_credit,
             RecordRefund: _record_refund}

_EVOLVERS = {
    TransferInitiated: lambda _, e: Transfer(
        transfer_id=e.aggregate_id, from_account_id=e.from_account_id, to_account_id=e.to_account_id,
        amount=e.amount, description=e.description, state=INITIATED, reason=None, version=e.version),
    TransferDebited: lambda s, e: replace(s, state=DEBITED, version=e.version),
    TransferCompleted: lambda s, e: replace(s, state=COMPLETED, version=e.version),
    TransferFailed: lambda s, e: replace(s, state=FAILED, reason=e.reason, version=e.version),
    TransferCreditFailed: lambda s, e: replace(s, reason=e.reason, version=e.version),
    TransferRefunded: lambda s, e: replace(s, state=REFUNDED, version=e.version),
}
