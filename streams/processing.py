"""The application services the agents call: decode, decide or project, write state, say what to emit.

They work over plain mappings (Faust tables in a worker, dicts in tests) and return the
records to send, so agents stay a few lines and every step is testable without Kafka.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, MutableMapping

from . import topics
from .avro import Codec, DecodeError
from .domain import views
from .domain.base import Command, Event, Reason, Rejection
from .domain.outcomes import CommandOutcome, ProcessedCommand, outcome_of


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A record to produce: topic name, key, encoded value, optional headers."""

    topic: str
    key: str
    value: bytes
    headers: tuple[tuple[str, bytes], ...] | None = None


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a consumed record came from, for dead letters."""

    topic: str
    partition: int
    offset: int


def now_ms() -> int:
    return int(time.time() * 1000)


def dead_letter(key: bytes | None, value: bytes | None, origin: Origin, error: str) -> Outgoing:
    """The original bytes, untouched, with where they came from and why they were parked."""
    headers = (
        ("deadletter.topic", origin.topic.encode()),
        ("deadletter.partition", str(origin.partition).encode()),
        ("deadletter.offset", str(origin.offset).encode()),
        ("deadletter.error", error.encode("utf-8", "replace")[:1000]),
    )
    return Outgoing(topics.DEADLETTER.name, (key or b"").decode("utf-8", "replace"), value or b"", headers)


def decode_expected(codec: Codec, key: bytes | None, value: bytes | None, origin: Origin,
                    expected: tuple[type, ...]):
    """The decoded record, or the dead letter to send when it is unreadable or foreign to its topic."""
    try:
        record = codec.decode(value)
    except DecodeError as exc:
        return None, dead_letter(key, value, origin, f"undecodable: {exc}")
    if not isinstance(record, expected):
        return None, dead_letter(key, value, origin, f"{type(record).__name__} does not belong on {origin.topic}")
    return record, None


class CommandProcessor:
    """Turns the commands of one aggregate type into events and one outcome each.

    Dedup by `command_id`: a command seen before re-emits the records it produced the first time
    (same event ids, same versions), so a crash between the state write and the send loses nothing
    and a duplicate changes nothing.
    """

    def __init__(self, codec: Codec, aggregate, command_topic: topics.TopicSpec, event_topic: topics.TopicSpec,
                 states: MutableMapping[str, bytes], processed: MutableMapping[str, bytes],
                 clock: Callable[[], int] = now_ms):
        self.codec = codec
        self.decide = aggregate.decide
        self.evolve = aggregate.evolve
        self.command_types = command_topic.values
        self.event_topic = event_topic.name
        self.states = states
        self.processed = processed
        self.clock = clock

    def process(self, key: bytes | None, value: bytes | None, origin: Origin) -> list[Outgoing]:
        command, rejected = decode_expected(self.codec, key, value, origin, self.command_types)
        if rejected:
            return [rejected]
        aggregate_id = command.aggregate_id
        if key is None or key.decode("utf-8", "replace") != aggregate_id:
            # On another key it may sit on another partition than its aggregate: refuse, don't guess.
            rejection = Rejection(Reason.INVALID_FIELD, "the record key must be the aggregate id", "key")
            return [self._outcome_record(outcome_of(command, rejection, self.clock()))]

        seen = self.processed.get(command.command_id)
        if seen is not None:
            return self._replay(aggregate_id, command.command_id, seen)

        state_bytes = self.states.get(aggregate_id)
        state = self.codec.decode(state_bytes) if state_bytes is not None else None
        at = self.clock()
        result = self.decide(state, command, at)
        outcome = outcome_of(command, result, at)
        encoded_events = ()
        if not isinstance(result, Rejection):
            for event in result:
                state = self.evolve(state, event)
            encoded_events = tuple(self.codec.encode(e) for e in result)
            self.states[aggregate_id] = self.codec.encode(state)
        outcome_bytes = self.codec.encode(outcome)
        self.processed[command.command_id] = self.codec.encode(
            ProcessedCommand(outcome=outcome_bytes, events=encoded_events))
        out = [Outgoing(self.event_topic, aggregate_id, e) for e in encoded_events]
        out.append(Outgoing(topics.COMMAND_OUTCOMES.name, command.command_id, outcome_bytes))
        return out

    def _replay(self, aggregate_id: str, command_id: str, seen: bytes) -> list[Outgoing]:
        processed: ProcessedCommand = self.codec.decode(seen)
        aggregate_id = self.codec.decode(processed.outcome).aggregate_id  # the first delivery's, not this key's
        # Write both entries again: if the first writes reached local RocksDB but not the
        # changelog before a crash, this puts them on the changelog too.
        self.processed[command_id] = seen
        state_bytes = self.states.get(aggregate_id)
        if state_bytes is not None:
            self.states[aggregate_id] = state_bytes
        out = [Outgoing(self.event_topic, aggregate_id, e) for e in processed.events]
        out.append(Outgoing(topics.COMMAND_OUTCOMES.name, command_id, processed.outcome))
        return out

    def _outcome_record(self, outcome: CommandOutcome) -> Outgoing:
        return Outgoing(topics.COMMAND_OUTCOMES.name, outcome.command_id, self.codec.encode(outcome))


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
            return []  # already applied (a redelivery or a re-emission); gaps cannot happen per partition
        view = views.project_account(current, event)
        self.account_views[view.account_id] = self.codec.encode(view)
        self.history[history_key(view.account_id, view.version)] = self.codec.encode(views.history_entry(view, event))
        return [Outgoing(topics.CUSTOMER_ACCOUNTS.name, view.customer_id, self.codec.encode(views.summarize(view)))]


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
            return []
        current = self._view(record.aggregate_id)
        if not views.is_next(current.version if current else 0, record):
            return []
        view = views.project_customer(current, record)
        self.customer_views[view.customer_id] = self.codec.encode(view)
        if current is None or current.version == 0:  # just created: index the email
            registered = views.EmailRegistered(email=view.email, customer_id=view.customer_id)
            return [Outgoing(topics.CUSTOMER_EMAILS.name, view.email, self.codec.encode(registered))]
        return []

    def _view(self, customer_id: str) -> views.CustomerView | None:
        data = self.customer_views.get(customer_id)
        return self.codec.decode(data) if data is not None else None


class EmailIndexer:
    """email → customer id, for `GET /api/customers?email=`."""

    def __init__(self, codec: Codec, customer_ids_by_email: MutableMapping[str, bytes]):
        self.codec = codec
        self.customer_ids_by_email = customer_ids_by_email

    def index(self, key: bytes | None, value: bytes | None, origin: Origin) -> list[Outgoing]:
        record, rejected = decode_expected(self.codec, key, value, origin, views.EmailRegistered)
        if rejected:
            return [rejected]
        # The first registration of an email wins the lookup.
        if record.email not in self.customer_ids_by_email:
            self.customer_ids_by_email[record.email] = record.customer_id.encode()
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
        return []
