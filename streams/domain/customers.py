"""The Customer aggregate: a profile and the accounts the customer may transfer to.

Personal data is sealed by an adapter (streams.services.privacy) before the domain sees it: a sealed command,
its events and the state carry `personal_data` (an opaque encrypted blob), `key_id` and `email_hash`,
with the plaintext fields empty. The domain only copies these along; it never encrypts or decrypts.
A plaintext command (unit tests, records written before sealing) flows through the same rules.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from .emails import RecordEmailReservation, ReserveEmail
from .base import (
    derived_id_error,
    envelope,
    DEFERRED,
    Command,
    Deferred,
    Event,
    Reason,
    Rejection,
    event_id_for,
    first_rejection,
    text_error,
    version_conflict,
)


# Commands ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class CreateCustomer(Command):
    customer_id: str
    first_name: str
    last_name: str
    email: str
    phone: str | None = None
    address: str | None = None
    # Filled by the privacy adapter (plaintext fields then empty); a plain producer leaves them out.
    email_hash: str = ""
    personal_data: bytes = b""
    key_id: str = ""

    @property
    def aggregate_id(self) -> str:
        return self.customer_id


@dataclass(frozen=True, slots=True, kw_only=True)
class ForgetCustomer(Command):
    """Erase the customer's personal data for good (crypto-shredding); accounts and transfers stay."""

    customer_id: str

    @property
    def aggregate_id(self) -> str:
        return self.customer_id


@dataclass(frozen=True, slots=True, kw_only=True)
class AddToAccount(Command):
    customer_id: str
    account_id: str
    title: str = ""
    owner: str = ""

    @property
    def aggregate_id(self) -> str:
        return self.customer_id


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoveToAccount(Command):
    customer_id: str
    account_id: str

    @property
    def aggregate_id(self) -> str:
        return self.customer_id


# Events -----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class CustomerCreated(Event):
    first_name: str = ""
    last_name: str = ""
    email: str = ""
    phone: str | None = None
    address: str | None = None
    email_hash: str = ""
    personal_data: bytes = b""  # the sealed name, email, phone and address (streams.services.privacy)
    key_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class CustomerForgotten(Event):
    """The customer's key was deleted: its personal data is unreadable everywhere from now on."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ToAccountAdded(Event):
    account_id: str
    title: str
    owner: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ToAccountRemoved(Event):
    account_id: str


# State ------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class ToAccount:
    account_id: str
    title: str
    owner: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Customer:
    customer_id: str
    first_name: str
    last_name: str
    email: str
    phone: str | None
    address: str | None
    to_accounts: tuple[ToAccount, ...]
    version: int
    email_hash: str = ""
    personal_data: bytes = b""
    key_id: str = ""
    forgotten: bool = False


CUSTOMER_COMMANDS = (CreateCustomer, AddToAccount, RemoveToAccount, ForgetCustomer)
CUSTOMER_REPLIES = (RecordEmailReservation,)
CUSTOMER_EVENTS = (CustomerCreated, ToAccountAdded, ToAccountRemoved, CustomerForgotten)


def normalize_email(email: str) -> str:
    """Emails compare case-insensitively and without surrounding blanks."""
    return email.strip().lower()


def validate(command: Command) -> Rejection | None:
    """The rules that need no state: the HTTP API checks them before producing, `decide` again after."""
    if rejection := text_error(command.command_id, "command_id", limit=200) or derived_id_error(command):
        return rejection
    if isinstance(command, CreateCustomer) and command.personal_data:  # sealed: checked before sealing
        return first_rejection(
            text_error(command.customer_id, "customer_id", limit=200),
            text_error(command.email_hash, "email_hash", limit=254),
            text_error(command.key_id, "key_id", limit=200),
        )
    if isinstance(command, CreateCustomer):
        return first_rejection(
            text_error(command.customer_id, "customer_id", limit=200),
            text_error(command.first_name, "first_name", limit=200),
            text_error(command.last_name, "last_name", limit=200),
            _email_error(command.email),
            text_error(command.phone, "phone", required=False, limit=50),
            text_error(command.address, "address", required=False),
        )
    if isinstance(command, AddToAccount):
        return first_rejection(
            text_error(command.account_id, "account_id", limit=200),
            text_error(command.title, "title", required=False),
            text_error(command.owner, "owner", required=False),
        )
    if isinstance(command, RemoveToAccount):
        return text_error(command.account_id, "account_id", limit=200)
    if isinstance(command, ForgetCustomer):
        return text_error(command.customer_id, "customer_id", limit=200)
    return None


def decide(state: Customer | None, command: Command, now_ms: int) -> tuple[Event, ...] | Rejection | Deferred:
    """The events `command` causes on `state`, or why it is refused, or DEFERRED until the email registry answers."""
    if isinstance(command, RecordEmailReservation):
        return _record_email_reservation(state, command, now_ms)
    return validate(command) or _DECIDERS[type(command)](state, command, now_ms)


def react(state: Customer | None, command: Command, result) -> tuple[Command, ...]:
    """A new customer first reserves its email with the registry."""
    if isinstance(command, CreateCustomer) and result is DEFERRED:
        # The registry is keyed by the email's keyed hash when the command is sealed.
        return (ReserveEmail(command_id=f"{command.command_id}.reserve-email",
                             email=command.email_hash or normalize_email(command.email),
                             customer_id=command.customer_id, create_command_id=command.command_id,
                             first_name=command.first_name, last_name=command.last_name, phone=command.phone,
                             address=command.address, personal_data=command.personal_data,
                             key_id=command.key_id),)
    return ()


def evolve(state: Customer | None, event: Event) -> Customer:
    """`state` after `event`; never validates (replay trusts the log)."""
    return _EVOLVERS[type(event)](state, event)




def _email_error(email: str | None) -> Rejection | None:
    if rejection := text_error(email, "email", limit=254):
        return rejection
    local, at, domain = email.strip().partition("@")
    if not (local and at and "." in domain and " " not in email.strip()):
        return Rejection(Reason.INVALID_FIELD, "email is not a valid address", "email")
    return None


def _create(state: Customer | None, command: CreateCustomer, now_ms: int):
    if state is not None:
        return Rejection(Reason.ALREADY_EXISTS, f"customer {command.customer_id} already exists")
    if rejection := version_conflict(command, 0):
        return rejection
    return DEFERRED


def _record_email_reservation(state: Customer | None, reply: RecordEmailReservation, now_ms: int):
    if not reply.accepted:
        return Rejection(reply.reason or Reason.EMAIL_TAKEN, "another customer has this email", "email")
    if state is not None:
        return Rejection(Reason.ALREADY_EXISTS, f"customer {reply.customer_id} already exists")
    sealed = bool(reply.personal_data)  # then `email` is the registry's key: the keyed hash
    return (CustomerCreated(event_id=event_id_for(reply.settles_command_id, 0), aggregate_id=reply.customer_id,
                            version=1, command_id=reply.settles_command_id, occurred_at=now_ms,
                            first_name=reply.first_name, last_name=reply.last_name,
                            email="" if sealed else reply.email, phone=reply.phone or None,
                            address=reply.address or None, email_hash=reply.email if sealed else "",
                            personal_data=reply.personal_data, key_id=reply.key_id),)


def _existing(state: Customer | None, command: Command) -> Rejection | None:
    if state is None:
        return Rejection(Reason.CUSTOMER_NOT_FOUND, f"customer {command.aggregate_id} does not exist")
    return version_conflict(command, state.version)


def _add_to_account(state: Customer | None, command: AddToAccount, now_ms: int):
    if rejection := _existing(state, command):
        return rejection
    if any(a.account_id == command.account_id for a in state.to_accounts):
        return Rejection(Reason.TO_ACCOUNT_EXISTS, f"{command.account_id} is already a to-account")
    return (ToAccountAdded(**envelope(state, command, now_ms), account_id=command.account_id,
                           title=command.title or "", owner=command.owner or ""),)


def _remove_to_account(state: Customer | None, command: RemoveToAccount, now_ms: int):
    if rejection := _existing(state, command):
        return rejection
    if not any(a.account_id == command.account_id for a in state.to_accounts):
        return Rejection(Reason.TO_ACCOUNT_NOT_FOUND, f"{command.account_id} is not a to-account")
    return (ToAccountRemoved(**envelope(state, command, now_ms), account_id=command.account_id),)


def _forget(state: Customer | None, command: ForgetCustomer, now_ms: int):
    if rejection := _existing(state, command):
        return rejection
    if state.forgotten:
        return ()  # forgetting twice changes nothing
    return (CustomerForgotten(**envelope(state, command, now_ms)),)


_DECIDERS = {CreateCustomer: _create, AddToAccount: _add_to_account, RemoveToAccount: _remove_to_account,
             ForgetCustomer: _forget}

_EVOLVERS = {
    CustomerCreated: lambda _, e: Customer(
        customer_id=e.aggregate_id, first_name=e.first_name, last_name=e.last_name, email=e.email,
        phone=e.phone, address=e.address, to_accounts=(), version=e.version, email_hash=e.email_hash,
        personal_data=e.personal_data, key_id=e.key_id),
    ToAccountAdded: lambda s, e: replace(
        s, to_accounts=s.to_accounts + (ToAccount(account_id=e.account_id, title=e.title, owner=e.owner),),
        version=e.version),
    ToAccountRemoved: lambda s, e: replace(
        s, to_accounts=tuple(a for a in s.to_accounts if a.account_id != e.account_id), version=e.version),
    # The sealed blob is dropped too; plaintext fields matter only for customers created before sealing.
    CustomerForgotten: lambda s, e: replace(
        s, first_name="", last_name="", email="", phone=None, address=None, personal_data=b"", forgotten=True,
        version=e.version),
}
