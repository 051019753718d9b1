"""Every record type that crosses Kafka, with its Avro namespace: declared once, here.

The Avro record name is the class name (`Deposit`, `MoneyDeposited`, ...), as the contract says.
"""
from __future__ import annotations

import dataclasses

from ..domain import accounts, customers, emails, rebuild, outcomes, transfer_steps, transfers, views
from ..domain.base import Command, Event, Reply

#: Every record of `streams.domain.views` (the read models and what the projections exchange), in the
#: order it declares them.
VIEW_RECORDS: tuple[type, ...] = tuple(t for t in vars(views).values() if isinstance(t, type)
                                       and dataclasses.is_dataclass(t) and t.__module__ == views.__name__)

NAMESPACES: dict[str, tuple[type, ...]] = {
    "streambank.customer": customers.CUSTOMER_COMMANDS + customers.CUSTOMER_REPLIES + customers.CUSTOMER_EVENTS,
    "streambank.account": accounts.ACCOUNT_COMMANDS + accounts.ACCOUNT_EVENTS,
    "streambank.transfer": transfers.TRANSFER_COMMANDS + transfer_steps.STEP_REPLIES + transfers.TRANSFER_EVENTS,
    "streambank.email": emails.EMAIL_COMMANDS + emails.EMAIL_EVENTS,
    "streambank.outcome": (outcomes.CommandOutcome, outcomes.ProcessedCommand, outcomes.PendingSteps),
    "streambank.view": VIEW_RECORDS,
    "streambank.state": (accounts.Account, customers.Customer, transfers.Transfer, emails.EmailReservation),
    "streambank.replay": (rebuild.ViewEntries, rebuild.ViewHandoff),
}

#: Nested record types, written inline in the schema of the record that holds them.
NESTED_NAMESPACE = {customers.ToAccount: "streambank.customer", views.AccountSummary: "streambank.view"}

RECORD_TYPES: tuple[type, ...] = tuple(t for types in NAMESPACES.values() for t in types)
COMMAND_TYPES = {t.__name__: t for t in RECORD_TYPES if issubclass(t, Command) and not issubclass(t, Reply)}
EVENT_TYPES = {t.__name__: t for t in RECORD_TYPES if issubclass(t, Event)}


def full_name(record_type: type) -> str:
    for namespace, types in NAMESPACES.items():
        if record_type in types:
            return f"{namespace}.{record_type.__name__}"
    return f"{NESTED_NAMESPACE[record_type]}.{record_type.__name__}"
