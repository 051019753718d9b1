"""What every agent's handling shares: the records it emits (`Outgoing`), where a record came from
(`Origin`), dead letters and their size limits, decoding a record that belongs on its topic, and one
kind of entry in a shared table (`KeyPrefixed`).

The services (`commands`, `projections`) work over plain mappings (Faust tables in a worker, dicts in
tests) and return the records to send, so agents stay a few lines and every step is testable without Kafka.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import MutableMapping

from ..contract import topics
from ..contract.avro import Codec, DecodeError


log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A record to produce: topic name, key, encoded value, optional headers."""

    topic: str
    key: str
    value: bytes | None  # None: a tombstone (compacted topics only)
    headers: tuple[tuple[str, bytes], ...] | None = None
    #: Set on records that state what one thing is now (an account's summary): of those with the same
    #: topic and `latest_of`, a batch sends only its last (streams.worker.batches.coalesce).
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

