"""The email registry: one aggregate per email address, so two customers racing for one email on
different partitions meet on the email's partition, and exactly one wins.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .base import Command, Event, Reason, Rejection, Reply, event_id_for, reply_id_for, text_error


@dataclass(frozen=True, slots=True, kw_only=True)
class ReserveEmail(Command):
    """Asked by a customer's `CreateCustomer`; carries the customer's details back in the reply.

    `email` is the registry's key: the email's keyed hash (streams.services.privacy), and the details are the
    customer's sealed blob; the plaintext fields are filled only by unsealed (test or legacy) commands.
    """

    email: str
    customer_id: str
    create_command_id: str
    first_name: str = ""
    last_name: str = ""
    phone: str | None = None
    address: str | None = None
    personal_data: bytes = b""
    key_id: str = ""
    issued_by_process: ClassVar[bool] = True  # by a customer's CreateCustomer only

    @property
    def aggregate_id(self) -> str:
        return self.email


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordEmailReservation(Reply):
    """The registry's answer; settles the `CreateCustomer` that asked."""

    customer_id: str
    email: str
    accepted: bool
    reason: str | None = None
    first_name: str = ""
    last_name: str = ""
    phone: str | None = None
    address: str | None = None
    personal_data: bytes = b""
    key_id: str = ""

    @property
    def aggregate_id(self) -> str:
        return self.customer_id


@dataclass(frozen=True, slots=True, kw_only=True)
class EmailReserved(Event):
    customer_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class EmailReservation:
    email: str
    customer_id: str
    version: int


EMAIL_COMMANDS = (ReserveEmail,)
EMAIL_EVENTS = (EmailReserved,)


def validate(command: Command) -> Rejection | None:
    return text_error(command.command_id, "command_id", limit=400) or text_error(command.email, "email", limit=254)


def decide(state: EmailReservation | None, command: ReserveEmail, now_ms: int) -> tuple[Event, ...] | Rejection:
    """Free: reserve it. Held by the same customer: nothing to do. Held by another: EMAIL_TAKEN."""
    if rejection := validate(command):
        return rejection
    if state is None:
        return (EmailReserved(event_id=event_id_for(command.command_id, 0), aggregate_id=command.email, version=1,
                              command_id=command.command_id, occurred_at=now_ms, customer_id=command.customer_id),)
    if state.customer_id == command.customer_id:
        return ()
    return Rejection(Reason.EMAIL_TAKEN, "another customer has this email", "email")


def evolve(state: EmailReservation | None, event: EmailReserved) -> EmailReservation:
    return EmailReservation(email=event.aggregate_id, customer_id=event.customer_id, version=event.version)


def react(state: EmailReservation | None, command: ReserveEmail, result) -> tuple[Command, ...]:
    """Answer the customer, carrying its details so it needs nothing kept while it waits."""
    rejected = isinstance(result, Rejection)
    return (RecordEmailReservation(
        command_id=reply_id_for(command.command_id), customer_id=command.customer_id, email=command.email,
        accepted=not rejected, reason=result.reason if rejected else None, first_name=command.first_name,
        last_name=command.last_name, phone=command.phone, address=command.address,
        personal_data=command.personal_data, key_id=command.key_id,
        settles_command_id=command.create_command_id, settles_command_type="CreateCustomer"),)
