"""The application services the agents call: decode, decide or project, write state, say what to emit.

They work over plain mappings (Faust tables in a worker, dicts in tests) and return the
records to send, so agents stay a few lines and every step is testable without Kafka.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable, MutableMapping

from . import topics
from .avro import Codec, DecodeError
from .domain import views
from .domain.base import DEFERRED, Reason, Rejection, Reply, derived_id_error, reply_id_for
from .domain.customers import CustomerForgotten
from .domain.outcomes import CommandOutcome, PendingSteps, ProcessedCommand, outcome_of


log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A record to produce: topic name, key, encoded value, optional headers."""

    topic: str
    key: str
    value: bytes | None  # None: a tombstone (compacted topics only)
    headers: tuple[tuple[str, bytes], ...] | None = None
    #: Set on records that state what one thing is now (an account's summary): of those with the same
    #: topic and `latest_of`, a batch sends only its last (streams.batches.coalesce).
    latest_of: str | None = None


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a consumed record came from, for dead letters."""

    topic: str
    partition: int
    offset: int


def now_ms() -> int:
    return int(time.time() * 1000)


#: The broker's default `message.max.bytes`: the largest record batch it takes, so about the largest
#: record any producer can have put on a command or event topic.
BROKER_MESSAGE_MAX_BYTES = 1_048_588
#: librdkafka's default `message.max.bytes`, which the workers' producer keeps: it refuses, before
#: sending, a record whose key, value, headers and framing exceed it (MSG_SIZE_TOO_LARGE).
PRODUCER_MESSAGE_MAX_BYTES = 1_000_000
#: The most a dead letter may take (`wire_size`). A record the broker took (up to 1,048,588 bytes) plus
#: the dead letter's headers may exceed what the producer and the broker take: the letter could not be
#: sent, its batch would fail, and the worker would stop on it again at every restart. Beyond this limit
#: the letter leaves the original value out (`deadletter.value-omitted` gives its size): the command
#: and event topics keep their records, so it stays readable at its topic, partition and offset.
DEADLETTER_MAX_BYTES = PRODUCER_MESSAGE_MAX_BYTES

#: Headers of a dead letter that left the original value (or key) out: their value is its size in bytes.
VALUE_OMITTED_HEADER = "deadletter.value-omitted"
KEY_OMITTED_HEADER = "deadletter.key-omitted"

_BATCH_OVERHEAD = 61  # a record batch's header (magic v2), when the record travels alone
_RECORD_OVERHEAD = 36  # a record's length, attributes, timestamp and offset deltas, key and value lengths,
#                        header count, each varint at its widest (librdkafka's RD_KAFKAP_MESSAGE_V2_MAX_OVERHEAD)
_VARINT_MAX = 5


def wire_size(key: bytes, value: bytes, headers) -> int:
    """At least the bytes one record takes on the wire, alone in its batch: what producer and broker check."""
    return (_BATCH_OVERHEAD + _RECORD_OVERHEAD + len(key) + len(value)
            + sum(2 * _VARINT_MAX + len(name.encode()) + len(data) for name, data in headers))


def dead_letter(key: bytes | None, value: bytes | None, origin: Origin, error: str) -> Outgoing:
    """The original bytes, untouched, with where they came from and why they were parked.

    Bounded by DEADLETTER_MAX_BYTES: the value (and, were it alone too large, the key) of a record too
    large to park whole is left out, and a header says how large it was.
    """
    key_text = (key or b"").decode("utf-8", "replace")
    raw_key, value = key_text.encode(), value or b""
    headers = [
        ("deadletter.topic", origin.topic.encode()),
        ("deadletter.partition", str(origin.partition).encode()),
        ("deadletter.offset", str(origin.offset).encode()),
        ("deadletter.error", error.encode("utf-8", "replace")[:1000]),
    ]
    if wire_size(raw_key, value, headers) > DEADLETTER_MAX_BYTES:
        headers.append((VALUE_OMITTED_HEADER, str(len(value)).encode()))
        value = b""
        if wire_size(raw_key, value, headers) > DEADLETTER_MAX_BYTES:
            headers.append((KEY_OMITTED_HEADER, str(len(key or b"")).encode()))
            key_text = ""
    return Outgoing(topics.DEADLETTER.name, key_text, value, tuple(headers))


class KeyPrefixed(MutableMapping):
    """One kind of entry in a table shared by several kinds: keys get a fixed prefix.

    A command processor keeps its aggregates' state and its dedup records in one table, so both are
    changelogged to the same partition of one topic, in the order written. Written dedup-first, a
    crash can never leave the state changed with the dedup record lost (which would apply a
    redelivered command twice); with two tables (two changelog topics) it could.
    """

    def __init__(self, table: MutableMapping, prefix: str):
        self.table = table
        self.prefix = prefix

    def __getitem__(self, key: str):
        return self.table[self.prefix + key]

    def get(self, key: str, default=None):
        return self.table.get(self.prefix + key, default)

    def __setitem__(self, key: str, value) -> None:
        self.table[self.prefix + key] = value

    def __delitem__(self, key: str) -> None:
        del self.table[self.prefix + key]

    def __contains__(self, key) -> bool:
        return (self.prefix + key) in self.table

    def __iter__(self):
        raise NotImplementedError("a prefixed view is for point lookups; iterate the table instead")

    def __len__(self) -> int:
        raise NotImplementedError("a prefixed view is for point lookups")


STATE_PREFIX = "state:"
COMMAND_PREFIX = "command:"


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
    """Turns the commands (and replies) of one aggregate type into events, follow-up commands and
    one outcome per command.

    Dedup by `command_id`: a command seen before re-emits the records it produced the first time
    (same event ids, same versions, same follow-ups), so a crash between the state write and the
    send loses nothing and a duplicate changes nothing.
    """

    def __init__(self, codec: Codec, aggregate, sources: tuple[topics.TopicSpec, ...], event_topic: topics.TopicSpec,
                 states: MutableMapping[str, bytes], processed: MutableMapping[str, bytes],
                 clock: Callable[[], int] = now_ms, pending: MutableMapping[str, bytes] | None = None,
                 prepare: Callable | None = None, applied: Callable | None = None):
        self.codec = codec
        # Adapter hooks around the pure domain (streams.privacy for customers): `prepare(state, command,
        # waiting, redelivered)` runs for every command handled. Before `decide` it may rewrite a new command
        # (sealing personal data); `waiting` holds the encoded steps the aggregate still waits on once this
        # command is handled (a reply's own step left out). For a redelivery (`redelivered=True`: its records
        # are re-emitted, nothing is decided) its return is ignored: it only writes again what it keeps
        # (the customer's key), as `_replay` does with the dedup and state entries.
        # `applied(events, origin)` runs after its events are stored, and again when a redelivery re-emits
        # them (deleting a forgotten key).
        self.prepare = prepare or (lambda state, command, waiting, redelivered=False: command)
        self.applied = applied
        self.pending = pending  # aggregate id → PendingSteps, for processes that wait on answers
        self.decide = aggregate.decide
        self.evolve = aggregate.evolve
        self.react = aggregate.react
        self.command_types = tuple(t for spec in sources for t in spec.values)
        self.event_topic = event_topic.name
        self.states = states
        self.processed = processed
        self.clock = clock

    #: Told (command type, ACCEPTED / REJECTED / DUPLICATE, reason) of each outcome; streams.metrics sets it.
    observe: Callable[[str, str, str | None], None] = staticmethod(lambda command_type, outcome, reason: None)

    def process(self, key: bytes | None, value: bytes | None, origin: Origin) -> list[Outgoing]:
        command, rejected = decode_expected(self.codec, key, value, origin, self.command_types)
        if rejected:
            return [rejected]
        aggregate_id = command.aggregate_id
        if key is None or key.decode("utf-8", "replace") != aggregate_id:
            # On another key it may sit on another partition than its aggregate: refuse, don't guess.
            if isinstance(command, Reply):
                return [dead_letter(key, value, origin, "a reply's key must be its aggregate id")]
            rejection = Rejection(Reason.INVALID_FIELD, "the record key must be the aggregate id", "key")
            return [self._outcome_record(outcome_of(command, rejection, self.clock()))]
        if rejection := derived_id_error(command):
            # Before the dedup lookup, and not recorded: a client command under a derived id must be
            # neither taken for the step that owns the id nor remembered in the step's place.
            return [self._outcome_record(outcome_of(command, rejection, self.clock()))]

        seen = self.processed.get(command.command_id)
        if seen is not None:
            self.observe(type(command).__name__, "DUPLICATE", None)
            return self._replay(command, seen, origin)

        state_bytes = self.states.get(aggregate_id)
        state = self.codec.decode(state_bytes) if state_bytes is not None else None
        waiting = self._waiting(aggregate_id, command)
        command = self.prepare(state, command, waiting[1])
        at = self.clock()
        result = self.decide(state, command, at)
        encoded_events = ()
        new_state = None
        if isinstance(result, tuple) and result:
            for event in result:
                state = self.evolve(state, event)
            encoded_events = tuple(self.codec.encode(e) for e in result)
            new_state = self.codec.encode(state)
        if isinstance(command, Reply) and isinstance(result, Rejection) and not command.settles_command_id:
            log.warning("reply %s to %s refused: %s %s", type(command).__name__, aggregate_id, result.reason,
                        result.message)
        follow_ups = self.react(state, command, result)
        outcome = None if result is DEFERRED else outcome_of(command, result, at)
        if outcome is not None:
            self.observe(outcome.command_type, outcome.status, outcome.reason)
        processed = ProcessedCommand(
            aggregate_id=aggregate_id, outcome=self.codec.encode(outcome) if outcome else None,
            events=encoded_events, commands=tuple(self.codec.encode(c) for c in follow_ups))
        encoded = self.codec.encode(processed)
        self.processed[command.command_id] = encoded
        if isinstance(command, Reply) and command.settles_command_id:
            # A duplicate of the settled command now re-emits the final outcome, not the request.
            self.processed[command.settles_command_id] = encoded
        if new_state is not None:  # after the dedup records: see KeyPrefixed
            self.states[aggregate_id] = new_state
            if self.applied is not None:
                self.applied(result, origin)
        if self.pending is not None:
            self._wait_on(aggregate_id, waiting, processed.commands, at)
        return self._records(processed, follow_ups, outcome.command_id if outcome else None)

    def _waiting(self, aggregate_id: str, command) -> tuple[PendingSteps | None, tuple[bytes, ...]]:
        """The aggregate's pending steps, and those of them still waited on once `command` is handled:
        all but the one a reply answers (`<step>.reply`), whether the reply was accepted or refused."""
        data = self.pending.get(aggregate_id) if self.pending is not None else None
        if data is None:
            return None, ()
        before: PendingSteps = self.codec.decode(data)
        if not isinstance(command, Reply):
            return before, before.commands
        return before, tuple(step for step in before.commands
                             if reply_id_for(self.codec.decode(step).command_id) != command.command_id)

    def _wait_on(self, aggregate_id: str, waiting: tuple[PendingSteps | None, tuple[bytes, ...]],
                 issued: tuple[bytes, ...], at: int) -> None:
        """Keeps what the aggregate still waits on: the steps not answered yet and those just issued.

        An answered step is never waited on again, even when its answer was a refusal (an email taken, a
        refund refused) that changes no state: the redrive would otherwise ask it again every few seconds
        forever. A stray reply (answering no pending step) leaves the steps as they are.
        """
        before, still = waiting
        steps = still + tuple(step for step in issued if step not in still)
        if not steps:
            if before is not None:
                del self.pending[aggregate_id]  # answered, and nothing more to wait for
        elif before is None or steps != before.commands:
            issued_at = at if issued or before is None else before.issued_at
            self.pending[aggregate_id] = self.codec.encode(PendingSteps(commands=steps, issued_at=issued_at))

    def _records(self, processed: ProcessedCommand, follow_ups, outcome_id: str | None) -> list[Outgoing]:
        """What to send; `outcome_id` keys the outcome (a reply's outcome is the settled command's)."""
        out = [Outgoing(self.event_topic, processed.aggregate_id, e) for e in processed.events]
        for command, encoded in zip(follow_ups, processed.commands):
            out.append(Outgoing(topics.command_topic_for(type(command)).name, command.aggregate_id, encoded))
        if processed.outcome is not None:
            out.append(Outgoing(topics.COMMAND_OUTCOMES.name, outcome_id, processed.outcome))
        return out

    def _replay(self, command, seen: bytes, origin: Origin) -> list[Outgoing]:
        processed: ProcessedCommand = self.codec.decode(seen)
        # Write both entries again: if the first writes reached local RocksDB but not the
        # changelog before a crash (or with an aborted transaction), this puts them on the changelog too.
        self.processed[command.command_id] = seen
        state_bytes = self.states.get(processed.aggregate_id)
        events = [self.codec.decode(e) for e in processed.events]
        state = self.codec.decode(state_bytes) if state_bytes is not None else None
        self.prepare(state, command, (), redelivered=True)
        behind = [e for e in events if e.version > (state.version if state else 0)]
        if behind:
            # The dedup record reached the changelog but the state written after it did not (a crash
            # between the two): apply the recorded events, never deciding again.
            for event in behind:
                state = self.evolve(state, event)
            self.states[processed.aggregate_id] = self.codec.encode(state)
        elif state_bytes is not None:
            self.states[processed.aggregate_id] = state_bytes
        if self.applied is not None and events:
            self.applied(tuple(events), origin)
        outcome_id = self.codec.decode(processed.outcome).command_id if processed.outcome else None
        return self._records(processed, [self.codec.decode(c) for c in processed.commands], outcome_id)

    def _outcome_record(self, outcome: CommandOutcome) -> Outgoing:
        self.observe(outcome.command_type, outcome.status, outcome.reason)
        return Outgoing(topics.COMMAND_OUTCOMES.name, outcome.command_id, self.codec.encode(outcome))


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
