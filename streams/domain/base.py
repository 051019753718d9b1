"""What every command, event and decision shares: envelopes, money, rejections."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar
from decimal import Decimal, InvalidOperation

#: Money is decimal(18,2): at most 16 digits before the point, exactly 2 after.
MONEY_PLACES = Decimal("0.01")
MONEY_LIMIT = Decimal("10000000000000000")  # 10**16, the first value decimal(18,2) cannot hold
ZERO = Decimal("0.00")


class Reason:
    """Machine-readable rejection reasons (the contract's, plus a few of our own)."""

    INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"
    ACCOUNT_CLOSED = "ACCOUNT_CLOSED"
    ACCOUNT_NOT_FOUND = "ACCOUNT_NOT_FOUND"
    CUSTOMER_NOT_FOUND = "CUSTOMER_NOT_FOUND"
    EMAIL_TAKEN = "EMAIL_TAKEN"
    INVALID_AMOUNT = "INVALID_AMOUNT"
    VERSION_CONFLICT = "VERSION_CONFLICT"
    DUPLICATE = "DUPLICATE"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    BALANCE_NOT_ZERO = "BALANCE_NOT_ZERO"
    INVALID_FIELD = "INVALID_FIELD"
    TO_ACCOUNT_EXISTS = "TO_ACCOUNT_EXISTS"
    TO_ACCOUNT_NOT_FOUND = "TO_ACCOUNT_NOT_FOUND"
    SAME_ACCOUNT = "SAME_ACCOUNT"
    INVALID_STATE = "INVALID_STATE"


@dataclass(frozen=True, slots=True)
class Rejection:
    """A command the rules refuse; it becomes a REJECTED outcome, never an exception."""

    reason: str
    message: str
    field: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Command:
    command_id: str
    expected_version: int | None = None
    #: True for the messages a process issues itself (saga steps, replies, email reservations), whose ids
    #: it derives (`DERIVED_ID_SUFFIXES`); False for the commands clients send.
    issued_by_process: ClassVar[bool] = False

    @property
    def aggregate_id(self) -> str:  # pragma: no cover - every command overrides it
        raise NotImplementedError


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply(Command):
    """A step's answer to the process that asked for it (on a `*.replies` topic, not a command topic).

    A reply gets no outcome of its own; when it `settles` a command whose outcome was deferred until
    this answer (CreateCustomer waits for its email), the outcome it produces is that command's.
    """

    issued_by_process: ClassVar[bool] = True
    settles_command_id: str | None = None
    settles_command_type: str | None = None


@dataclass(frozen=True, slots=True)
class Deferred:
    """The command's outcome waits for a reply; `react` says which command asks for it."""


DEFERRED = Deferred()


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    event_id: str
    aggregate_id: str
    version: int
    command_id: str
    occurred_at: int  # milliseconds since the epoch, UTC


def event_id_for(command_id: str, index: int) -> str:
    """Deterministic: the same command always yields the same event ids, so re-emission dedups."""
    return f"{command_id}.{index}"


#: How the ids a process derives for its own messages end: a transfer's steps `<transfer>.debit`,
#: `.credit`, `.refund` (domain.transfers), a new customer's `<create>.reserve-email` (domain.customers),
#: every answer `<step>.reply` (`reply_id_for`). A processor dedups by command id, and a step goes to the
#: same aggregate's table as the clients' commands: a client command under such an id would be taken for
#: the step (or the step for it), and the process would never end. So clients may not use them.
DERIVED_ID_SUFFIXES = (".debit", ".credit", ".refund", ".reserve-email", ".reply")


def derived_id_error(command: Command) -> Rejection | None:
    """Why a client's `command` may not have its id (None when it may); a process's own messages may."""
    if command.issued_by_process or not isinstance(command.command_id, str):
        return None
    for suffix in DERIVED_ID_SUFFIXES:
        if command.command_id.endswith(suffix):
            return Rejection(Reason.INVALID_FIELD, f"command_id must not end with {suffix!r}: the suffix is reserved "
                                                   f"for the ids the transfer saga and the email registry derive",
                             "command_id")
    return None


def reply_id_for(step_command_id: str) -> str:
    """A step's answer is `<step>.reply`: the id tells which waited-on step a reply answers."""
    return f"{step_command_id}.reply"


def envelope(state, command: Command, now_ms: int, index: int = 0) -> dict:
    """The fields every event of `command` shares: derived id, the aggregate's next version, cause, time."""
    return {
        "event_id": event_id_for(command.command_id, index),
        "aggregate_id": command.aggregate_id,
        "version": (state.version if state else 0) + 1 + index,
        "command_id": command.command_id,
        "occurred_at": now_ms,
    }


def money_error(amount: Decimal, *, positive: bool, field: str = "amount") -> Rejection | None:
    """Why `amount` is not valid money (None when it is): finite, 2 places, within decimal(18,2)."""
    try:
        if not isinstance(amount, Decimal) or not amount.is_finite():
            return Rejection(Reason.INVALID_AMOUNT, f"{field} must be a decimal number", field)
        if amount != amount.quantize(MONEY_PLACES):
            return Rejection(Reason.INVALID_AMOUNT, f"{field} has more than 2 decimal places", field)
    except InvalidOperation:
        return Rejection(Reason.INVALID_AMOUNT, f"{field} is too large", field)
    if abs(amount) >= MONEY_LIMIT:
        return Rejection(Reason.INVALID_AMOUNT, f"{field} is too large", field)
    if positive and amount <= 0:
        return Rejection(Reason.INVALID_AMOUNT, f"{field} must be greater than 0", field)
    if not positive and amount < 0:
        return Rejection(Reason.INVALID_AMOUNT, f"{field} must not be negative", field)
    return None


def money(amount: Decimal) -> Decimal:
    """The canonical two-place form of an amount already checked by `money_error`."""
    return amount.quantize(MONEY_PLACES)


def version_conflict(command: Command, current_version: int) -> Rejection | None:
    if command.expected_version is not None and command.expected_version != current_version:
        return Rejection(
            Reason.VERSION_CONFLICT,
            f"expected version {command.expected_version}, aggregate is at {current_version}",
            "expected_version",
        )
    return None


def text_error(value: str | None, field: str, *, required: bool = True, limit: int = 1000) -> Rejection | None:
    if value is None or value == "":
        return Rejection(Reason.INVALID_FIELD, f"{field} is required", field) if required else None
    if len(value) > limit:
        return Rejection(Reason.INVALID_FIELD, f"{field} is longer than {limit} characters", field)
    return None


def first_rejection(*checks: Rejection | None) -> Rejection | None:
    for check in checks:
        if check is not None:
            return check
    return None
