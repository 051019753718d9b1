"""The projectors: fold events into the read models (views), over plain mappings.

Each applies only the next version of an aggregate, so a record delivered twice changes nothing; a
redelivery writes its entry again unchanged (`restate`).
"""
from __future__ import annotations

from typing import MutableMapping

from ..contract import topics
from ..contract.avro import Codec
from ..domain import views
from ..domain.customers import CustomerForgotten
from ..domain.outcomes import CommandOutcome
from .handling import Origin, Outgoing, decode_expected


class FoldCodec:
    """What the projectors encode and decode with where their tables hold records, not bytes: "encoding"
    keeps the object, decoding an object returns it, and only what came from Kafka or disk (bytes) is
    really decoded. Each entry and each record sent is then encoded once, when it is written out
    (`encoded`): a key a batch writes many times, or a summary it supersedes, costs no Avro in between.
    `bank replay views` folds this way over dicts; a worker's view agents over their batched tables."""

    def __init__(self, codec: Codec):
        self.codec = codec

    def encode(self, record):
        return record

    def decode(self, data):
        return self.codec.decode(data) if isinstance(data, (bytes, bytearray, memoryview)) else data

    def encoded(self, value) -> bytes:
        return bytes(value) if isinstance(value, (bytes, bytearray, memoryview)) else self.codec.encode(value)


def restate(table: MutableMapping[str, bytes], key: str) -> None:
    """Writes an entry again, unchanged, when a record it came from is delivered again.

    After a crash a worker may restart with local RocksDB writes whose changelog records were never
    flushed; the redelivered record then looks already applied and would write nothing, leaving the
    changelog (and so any other worker that recovers this partition) behind for good.
    """
    data = table.get(key)
    if data is not None:
        table[key] = data


class AccountProjector:
    """Builds the account view and statement, and tells customers' views about balance changes."""

    def __init__(self, codec: Codec, account_views: MutableMapping[str, bytes],
                 history: MutableMapping[str, bytes]):
        self.codec = codec
        self.account_views = account_views
        self.history = history

    def project(self, key: bytes | None, value: bytes | None, origin: Origin) -> list[Outgoing]:
        event, rejected = decode_expected(self.codec, key, value, origin, topics.ACCOUNT_EVENTS.values)
        if rejected:
            return [rejected]
        current_bytes = self.account_views.get(event.aggregate_id)
        current = self.codec.decode(current_bytes) if current_bytes is not None else None
        if not views.is_next(current.version if current else 0, event):
            # Already applied (a redelivery or a re-emission); gaps cannot happen per partition.
            restate(self.history, history_key(event.aggregate_id, event.version))
            if current is not None and event.version == current.version:
                restate(self.account_views, event.aggregate_id)
                return [Outgoing(topics.CUSTOMER_ACCOUNTS.name, current.customer_id,
                                 self.codec.encode(views.summarize(current)), latest_of=current.account_id)]
            return []
        view = views.project_account(current, event)
        self.account_views[view.account_id] = self.codec.encode(view)
        self.history[history_key(view.account_id, view.version)] = self.codec.encode(views.history_entry(view, event))
        return [Outgoing(topics.CUSTOMER_ACCOUNTS.name, view.customer_id, self.codec.encode(views.summarize(view)),
                         latest_of=view.account_id)]


def history_key(account_id: str, version: int) -> str:
    return f"{account_id}#{version:012d}"


class CustomerProjector:
    """Builds the customer view from the customer's events and summaries of its accounts."""

    def __init__(self, codec: Codec, customer_views: MutableMapping[str, bytes]):
        self.codec = codec
        self.customer_views = customer_views

    def project(self, key: bytes | None, value: bytes | None, origin: Origin) -> list[Outgoing]:
        record, rejected = decode_expected(self.codec, key, value, origin,
                                           topics.CUSTOMER_EVENTS.values + topics.CUSTOMER_ACCOUNTS.values)
        if rejected:
            return [rejected]
        if isinstance(record, views.AccountSummary):
            current = self._view(record.customer_id) or views.placeholder_customer(record.customer_id)
            updated = views.with_account(current, record)
            if updated is not current:
                self.customer_views[record.customer_id] = self.codec.encode(updated)
            else:
                restate(self.customer_views, record.customer_id)
            return []
        current = self._view(record.aggregate_id)
        if not views.is_next(current.version if current else 0, record):
            if current is not None and record.version == current.version:
                restate(self.customer_views, record.aggregate_id)
                if isinstance(record, CustomerForgotten):
                    # A customer created before sealing had its email (the lookup key) wiped: nothing to repeat.
                    return [self._unindex(current)] if views.email_key(current) else []
                if record.version == 1:
                    return [self._index(current)]
            return []
        view = views.project_customer(current, record)
        self.customer_views[view.customer_id] = self.codec.encode(view)
        if isinstance(record, CustomerForgotten):  # a forgotten customer cannot be looked up by email
            return [self._unindex(current)]
        if current is None or current.version == 0:  # just created: index the email
            return [self._index(view)]
        return []

    def _index(self, view: views.CustomerView) -> Outgoing:
        key = views.email_key(view)
        registered = views.EmailRegistered(email=key, customer_id=view.customer_id)
        return Outgoing(topics.CUSTOMER_EMAILS.name, key, self.codec.encode(registered))

    def _unindex(self, view_before: views.CustomerView) -> Outgoing:
        """A tombstone for the forgotten customer's entry on the compacted `bank.customer-emails`."""
        return Outgoing(topics.CUSTOMER_EMAILS.name, views.email_key(view_before), None)

    def _view(self, customer_id: str) -> views.CustomerView | None:
        data = self.customer_views.get(customer_id)
        return self.codec.decode(data) if data is not None else None


class TransferProjector:
    """Builds the transfer view: state, reason, amount and accounts."""

    def __init__(self, codec: Codec, transfer_views: MutableMapping[str, bytes]):
        self.codec = codec
        self.transfer_views = transfer_views

    def project(self, key: bytes | None, value: bytes | None, origin: Origin) -> list[Outgoing]:
        event, rejected = decode_expected(self.codec, key, value, origin, topics.TRANSFER_EVENTS.values)
        if rejected:
            return [rejected]
        current_bytes = self.transfer_views.get(event.aggregate_id)
        current = self.codec.decode(current_bytes) if current_bytes is not None else None
        if views.is_next(current.version if current else 0, event):
            self.transfer_views[event.aggregate_id] = self.codec.encode(views.project_transfer(current, event))
        elif current is not None and event.version == current.version:
            restate(self.transfer_views, event.aggregate_id)
        return []


class EmailIndexer:
    """email → customer id, for `GET /api/customers?email=`."""

    def __init__(self, codec: Codec, customer_ids_by_email: MutableMapping[str, bytes]):
        self.codec = codec
        self.customer_ids_by_email = customer_ids_by_email

    def index(self, key: bytes | None, value: bytes | None, origin: Origin) -> list[Outgoing]:
        if value is None and key:  # a tombstone: the customer was forgotten
            email = key.decode("utf-8", "replace")
            if email in self.customer_ids_by_email:
                del self.customer_ids_by_email[email]
            return []
        record, rejected = decode_expected(self.codec, key, value, origin, views.EmailRegistered)
        if rejected:
            return [rejected]
        # The first registration of an email wins the lookup.
        if record.email not in self.customer_ids_by_email:
            self.customer_ids_by_email[record.email] = record.customer_id.encode()
        else:
            restate(self.customer_ids_by_email, record.email)
        return []


class OutcomeRecorder:
    """command id → outcome, for `GET /api/commands/{id}` and `?wait=`."""

    def __init__(self, codec: Codec, outcomes: MutableMapping[str, bytes]):
        self.codec = codec
        self.outcomes = outcomes

    def record(self, key: bytes | None, value: bytes | None, origin: Origin) -> list[Outgoing]:
        outcome, rejected = decode_expected(self.codec, key, value, origin, CommandOutcome)
        if rejected:
            return [rejected]
        if outcome.command_id not in self.outcomes:  # the first outcome is the one; re-emissions are equal
            self.outcomes[outcome.command_id] = value
        else:
            restate(self.outcomes, outcome.command_id)
        return []
