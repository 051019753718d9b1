"""Read models and the pure functions that project events into them.

Each projection applies an event only when it is the next version of its aggregate, so a
redelivered event (at-least-once) changes nothing.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal

from .accounts import (
    CLOSED,
    OPEN,
    AccountClosed,
    AccountCredited,
    AccountDebited,
    AccountOpened,
    AccountRefunded,
    MoneyDeposited,
    MoneyWithdrawn,
)
from .base import Event
from .customers import CustomerCreated, CustomerForgotten, ToAccount, ToAccountAdded, ToAccountRemoved
from .transfers import Transfer, evolve as evolve_transfer


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountView:
    account_id: str
    customer_id: str
    title: str
    description: str
    balance: Decimal
    status: str
    version: int


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryEntry:
    """One line of an account's statement."""

    account_id: str
    version: int
    entry_type: str  # the event's type name
    amount: Decimal
    balance: Decimal
    occurred_at: int
    command_id: str
    transfer_id: str | None = None  # set on the legs of a transfer


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountSummary:
    """An account as its customer's view shows it; re-keyed by customer id."""

    account_id: str
    customer_id: str
    title: str
    balance: Decimal
    status: str
    version: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CustomerView:
    customer_id: str
    first_name: str
    last_name: str
    email: str
    phone: str | None
    address: str | None
    version: int
    to_accounts: tuple[ToAccount, ...] = ()
    accounts: tuple[AccountSummary, ...] = ()
    # Sealed personal data (streams.services.privacy); the API opens it when it answers, never the projection.
    email_hash: str = ""
    personal_data: bytes = b""
    key_id: str = ""
    forgotten: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class EmailRegistered:
    """Re-keys a customer by email for the lookup view."""

    email: str
    customer_id: str


def is_next(current_version: int, event: Event) -> bool:
    return event.version == current_version + 1


def project_account(view: AccountView | None, event: Event) -> AccountView:
    """The account view after `event` (the caller has checked `is_next`)."""
    if isinstance(event, AccountOpened):
        return AccountView(account_id=event.aggregate_id, customer_id=event.customer_id, title=event.title,
                           description=event.description, balance=event.initial_balance, status=OPEN,
                           version=event.version)
    if isinstance(event, (MoneyDeposited, MoneyWithdrawn, AccountDebited, AccountCredited, AccountRefunded)):
        return replace(view, balance=event.balance, version=event.version)
    if isinstance(event, AccountClosed):
        return replace(view, status=CLOSED, version=event.version)
    return replace(view, version=event.version)


def history_entry(view: AccountView, event: Event) -> HistoryEntry:
    """The statement line `event` adds, given the view after it."""
    if isinstance(event, AccountOpened):
        amount = event.initial_balance
    elif isinstance(event, (MoneyDeposited, AccountCredited, AccountRefunded)):
        amount = event.amount
    elif isinstance(event, (MoneyWithdrawn, AccountDebited)):
        amount = -event.amount
    else:
        amount = Decimal("0.00")
    return HistoryEntry(account_id=view.account_id, version=event.version, entry_type=type(event).__name__,
                        amount=amount, balance=view.balance, occurred_at=event.occurred_at,
                        command_id=event.command_id, transfer_id=getattr(event, "transfer_id", None))


def summarize(view: AccountView) -> AccountSummary:
    return AccountSummary(account_id=view.account_id, customer_id=view.customer_id, title=view.title,
                          balance=view.balance, status=view.status, version=view.version)


def project_customer(view: CustomerView | None, event: Event) -> CustomerView:
    """The customer view after one of the customer's own events (the caller has checked `is_next`)."""
    if isinstance(event, CustomerCreated):
        accounts = view.accounts if view else ()  # account summaries may arrive before the customer
        return CustomerView(customer_id=event.aggregate_id, first_name=event.first_name,
                            last_name=event.last_name, email=event.email, phone=event.phone,
                            address=event.address, version=event.version, accounts=accounts,
                            email_hash=event.email_hash, personal_data=event.personal_data, key_id=event.key_id)
    if isinstance(event, ToAccountAdded):
        added = ToAccount(account_id=event.account_id, title=event.title, owner=event.owner)
        return replace(view, to_accounts=view.to_accounts + (added,), version=event.version)
    if isinstance(event, ToAccountRemoved):
        kept = tuple(a for a in view.to_accounts if a.account_id != event.account_id)
        return replace(view, to_accounts=kept, version=event.version)
    if isinstance(event, CustomerForgotten):
        return replace(view, first_name="", last_name="", email="", phone=None, address=None, personal_data=b"",
                       forgotten=True, version=event.version)
    return replace(view, version=event.version)


def email_key(view_or_event) -> str:
    """What the email lookup is keyed by: the keyed hash, or the email itself when written before sealing."""
    return view_or_event.email_hash or view_or_event.email


def placeholder_customer(customer_id: str) -> CustomerView:
    """Holds account summaries that arrive before the customer's own creation event."""
    return CustomerView(customer_id=customer_id, first_name="", last_name="", email="", phone=None,
                        address=None, version=0)


def with_account(view: CustomerView, summary: AccountSummary) -> CustomerView:
    """The customer view with `summary` replacing older news of the same account; stale news is ignored."""
    for index, known in enumerate(view.accounts):
        if known.account_id == summary.account_id:
            if known.version >= summary.version:
                return view
            return replace(view, accounts=view.accounts[:index] + (summary,) + view.accounts[index + 1:])
    return replace(view, accounts=view.accounts + (summary,))


#: The transfer view is the transfer's own fold: `GET /api/transfers/{id}` shows its state and reason.
TransferView = Transfer


def project_transfer(view: Transfer | None, event: Event) -> Transfer:
    """The transfer view after `event` (the caller has checked `is_next`)."""
    return evolve_transfer(view, event)
