"""Every record type that crosses Kafka, with its Avro namespace: declared once, here.

The Avro record name is the class name (`Deposit`, `MoneyDeposited`, ...), as the contract says.
"""
from __future__ import annotations

from ..domain import accounts, customers, emails, rebuild, outcomes, transfer_steps, transfers, views
from ..domain.base import Command, Event, Reply

NAMESPACES: dict[str, tuple[type, ...]] = {
    "streambank.customer": customers.CUSTOMER_COMMANDS + customers.CUSTOMER_REPLIES + customers.CUSTOMER_EVENTS,
    "streambank.account": accounts.ACCOUNT_COMMANDS + accounts.ACCOUNT_EVENTS,
    "streambank.transfer": transfers.TRANSFER_COMMANDS + transfer_steps.STEP_REPLIES + transfers.TRANSFER_EVENTS,
    "streambank.email": emails.EMAIL_COMMANDS + emails.EMAIL_EVENTS,
    "streambank.outcome": (outcomes.CommandOutcome, outcomes.ProcessedCommand, outcomes.PendingSteps),
    "streambank.view": (views.AccountView, views.HistoryEntry, views.AccountSummary, views.CustomerView,
                        views.EmailRegistered),
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
