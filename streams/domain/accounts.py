"""The Account aggregate: open, deposit, withdraw, close."""
from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal

from .transfer_steps import ACCOUNT_STEPS, CreditAccount, DebitAccount, RefundAccount, reply_to
from .base import (
    derived_id_error,
    envelope,
    ZERO,
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

OPEN = "OPEN"
CLOSED = "CLOSED"


# Commands ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class OpenAccount(Command):
    account_id: str
    customer_id: str
    title: str
    description: str = ""
    initial_balance: Decimal = ZERO

    @property
    def aggregate_id(self) -> str:
        return self.account_id


@dataclass(frozen=True, slots=True, kw_only=True)
class Deposit(Command):
    account_id: str
    amount: Decimal
    reference: str = ""  # v2: the payer's reference; v1 records read it as ""

    @property
    def aggregate_id(self) -> str:
        return self.account_id


@dataclass(frozen=True, slots=True, kw_only=True)
class Withdraw(Command):
    account_id: str
    amount: Decimal

    @property
    def aggregate_id(self) -> str:
        return self.account_id


@dataclass(frozen=True, slots=True, kw_only=True)
class CloseAccount(Command):
    account_id: str

    @property
    def aggregate_id(self) -> str:
        return self.account_id


# Events -----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class AccountOpened(Event):
    customer_id: str
    title: str
    description: str
    initial_balance: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class MoneyDeposited(Event):
    amount: Decimal
    balance: Decimal  # after the deposit: lets readers check their own fold
    reference: str = ""  # v2 (schemas/streambank.account.MoneyDeposited.v1.avsc has none)


@dataclass(frozen=True, slots=True, kw_only=True)
class MoneyWithdrawn(Event):
    amount: Decimal
    balance: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountClosed(Event):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountDebited(Event):
    """A transfer took `amount` from this account."""

    transfer_id: str
    amount: Decimal
    balance: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountCredited(Event):
    """A transfer gave `amount` to this account."""

    transfer_id: str
    amount: Decimal
    balance: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountRefunded(Event):
    """A failed transfer gave its debited `amount` back."""

    transfer_id: str
    amount: Decimal
    balance: Decimal


# State ------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class Account:
    account_id: str
    customer_id: str
    title: str
    description: str
    balance: Decimal
    status: str
    version: int


ACCOUNT_COMMANDS = (OpenAccount, Deposit, Withdraw, CloseAccount) + ACCOUNT_STEPS
ACCOUNT_EVENTS = (AccountOpened, MoneyDeposited, MoneyWithdrawn, AccountClosed, AccountDebited, AccountCredited,
                  AccountRefunded)


def validate(command: Command) -> Rejection | None:
    """The rules that need no state: the HTTP API checks them before producing, `decide` again after."""
    if rejection := text_error(command.command_id, "command_id", limit=200) or derived_id_error(command):
        return rejection
    if isinstance(command, OpenAccount):
        return first_rejection(
            text_error(command.account_id, "account_id", limit=200),
            text_error(command.customer_id, "customer_id", limit=200),
            text_error(command.title, "title"),
            text_error(command.description, "description", required=False),
            money_error(command.initial_balance, positive=False, field="initial_balance"),
        )
    if isinstance(command, Deposit):
        return first_rejection(money_error(command.amount, positive=True),
                               text_error(command.reference, "reference", required=False, limit=200))
    if isinstance(command, (Withdraw,) + ACCOUNT_STEPS):
        return money_error(command.amount, positive=True)
    return None


def decide(state: Account | None, command: Command, now_ms: int) -> tuple[Event, ...] | Rejection:
    """The events `command` causes on `state`, or why it is refused."""
    return validate(command) or _DECIDERS[type(command)](state, command, now_ms)


def evolve(state: Account | None, event: Event) -> Account:
    """`state` after `event`; never validates (replay trusts the log)."""
    return _EVOLVERS[type(event)](state, event)


def react(state: Account | None, command: Command, result) -> tuple[Command, ...]:
    """A transfer step is answered to its transfer, accepted or with the reason it was refused."""
    if isinstance(command, ACCOUNT_STEPS):
        return (reply_to(command, result.reason if isinstance(result, Rejection) else None),)
    return ()




def _must_be_open(state: Account | None, command: Command) -> Rejection | None:
    if state is None:
        return Rejection(Reason.ACCOUNT_NOT_FOUND, f"account {command.aggregate_id} does not exist")
    if state.status == CLOSED:
        return Rejection(Reason.ACCOUNT_CLOSED, f"account {command.aggregate_id} is closed")
    return version_conflict(command, state.version)


def _open(state: Account | None, command: OpenAccount, now_ms: int):
    if state is not None:
        return Rejection(Reason.ALREADY_EXISTS, f"account {command.account_id} already exists")
    if rejection := version_conflict(command, 0):
        return rejection
    return (AccountOpened(**envelope(state, command, now_ms), customer_id=command.customer_id,
                          title=command.title, description=command.description or "",
                          initial_balance=money(command.initial_balance)),)


def _deposit(state: Account | None, command: Deposit, now_ms: int):
    if rejection := _must_be_open(state, command):
        return rejection
    balance = state.balance + money(command.amount)
    if money_error(balance, positive=False, field="balance"):
        return Rejection(Reason.INVALID_AMOUNT, "the balance would exceed decimal(18,2)", "amount")
    return (MoneyDeposited(**envelope(state, command, now_ms), amount=money(command.amount), balance=balance,
                           reference=command.reference or ""),)


def _withdraw(state: Account | None, command: Withdraw, now_ms: int):
    if rejection := _must_be_open(state, command):
        return rejection
    if command.amount > state.balance:
        return Rejection(Reason.INSUFFICIENT_FUNDS,
                         f"balance {state.balance} is less than {money(command.amount)}", "amount")
    return (MoneyWithdrawn(**envelope(state, command, now_ms), amount=money(command.amount),
                           balance=state.balance - money(command.amount)),)


def _close(state: Account | None, command: CloseAccount, now_ms: int):
    rejection = _must_be_open(state, command)
    if rejection:
        return rejection
    if state.balance != 0:
        return Rejection(Reason.BALANCE_NOT_ZERO, f"balance is {state.balance}; only an empty account closes")
    return (AccountClosed(**envelope(state, command, now_ms)),)


def _debit(state: Account | None, command: DebitAccount, now_ms: int):
    if rejection := _must_be_open(state, command):
        return rejection
    if command.amount > state.balance:
        return Rejection(Reason.INSUFFICIENT_FUNDS,
                         f"balance {state.balance} is less than {money(command.amount)}", "amount")
    return (AccountDebited(**envelope(state, command, now_ms), transfer_id=command.transfer_id,
                           amount=money(command.amount), balance=state.balance - money(command.amount)),)


def _credit(state: Account | None, command: CreditAccount, now_ms: int):
    if rejection := _must_be_open(state, command):
        return rejection
    balance = state.balance + money(command.amount)
    if money_error(balance, positive=False, field="balance"):
        return Rejection(Reason.INVALID_AMOUNT, "the balance would exceed decimal(18,2)", "amount")
    return (AccountCredited(**envelope(state, command, now_ms), transfer_id=command.transfer_id,
                            amount=money(command.amount), balance=balance),)


def _refund(state: Account | None, command: RefundAccount, now_ms: int):
    # The money was taken from this account by the same transfer: it goes back even if the account
    # was closed meanwhile, or it would vanish from the ledger.
    if state is None:
        return Rejection(Reason.ACCOUNT_NOT_FOUND, f"account {command.account_id} does not exist")
    return (AccountRefunded(**envelope(state, command, now_ms), transfer_id=command.transfer_id,
                            amount=money(command.amount), balance=state.balance + money(command.amount)),)


_DECIDERS = {OpenAccount: _open, Deposit: _deposit, Withdraw: _withdraw, CloseAccount: _close,
             DebitAccount: _debit, CreditAccount: _credit, RefundAccount: _refund}

_EVOLVERS = {
    AccountOpened: lambda _, e: Account(
        account_id=e.aggregate_id, customer_id=e.customer_id, title=e.title, description=e.description,
        balance=e.initial_balance, status=OPEN, version=e.version),
    MoneyDeposited: lambda s, e: replace(s, balance=s.balance + e.amount, version=e.version),
    MoneyWithdrawn: lambda s, e: replace(s, balance=s.balance - e.amount, version=e.version),
    AccountClosed: lambda s, e: replace(s, status=CLOSED, version=e.version),
    AccountDebited: lambda s, e: replace(s, balance=s.balance - e.amount, version=e.version),
    AccountCredited: lambda s, e: replace(s, balance=s.balance + e.amount, version=e.version),
    AccountRefunded: lambda s, e: replace(s, balance=s.balance + e.amount, version=e.version),
}
