"""A dead letter always fits in one Kafka record: the worker can always park what it cannot read."""
from __future__ import annotations

import base64
import logging

import pytest
from confluent_kafka import Producer

from streams.contract import topics
from streams.kafka.producer import producer_config
from streams.config import Settings
from streams.services.handling import (
    BROKER_MESSAGE_MAX_BYTES,
    DEADLETTER_MAX_BYTES,
    PRODUCER_MESSAGE_MAX_BYTES,
    Origin,
    dead_letter,
    wire_size,
)

ORIGIN = Origin(topics.ACCOUNT_COMMANDS.name, 3, 123_456)
ERROR = "undecodable: not an Avro single-object encoding " + "x" * 2000  # the error header is capped


def test_the_dead_letter_limit_is_below_what_the_worker_producer_and_the_broker_accept():
    assert DEADLETTER_MAX_BYTES <= PRODUCER_MESSAGE_MAX_BYTES < BROKER_MESSAGE_MAX_BYTES


@pytest.mark.parametrize("size", [1_000_000, 1_040_000, 1_048_000])
def test_a_dead_letter_of_a_record_near_the_brokers_limit_fits_in_the_limit(size):
    letter = dead_letter(b"acc-1", b"\xff" * size, ORIGIN, ERROR)
    assert wire_size(letter.key.encode(), letter.value, letter.headers) <= DEADLETTER_MAX_BYTES


def largest_kept() -> int:
    """The largest value a dead letter (of this key, origin and error) still carries whole."""
    headers = dead_letter(b"acc-1", b"", ORIGIN, ERROR).headers
    return DEADLETTER_MAX_BYTES - wire_size(b"acc-1", b"", headers)


@pytest.mark.parametrize("size", [1_000_000, 1_040_000, 1_048_000, "largest kept"])
def test_the_workers_producer_takes_the_dead_letter_of_a_record_the_broker_took(size):
    """librdkafka checks the size as it queues the record, before any broker is reached."""
    size = largest_kept() if size == "largest kept" else size
    letter = dead_letter(b"acc-1", b"\xff" * size, ORIGIN, ERROR)
    assert len(letter.value) in (0, size)
    quiet = logging.getLogger("test_dead_letters.librdkafka")
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False
    producer = Producer(producer_config(Settings(), **{"bootstrap.servers": "127.0.0.1:1", "logger": quiet,
                                                       "compression.type": "none"}))  # as the workers'
    try:
        producer.produce(letter.topic, key=letter.key.encode(), value=letter.value, headers=list(letter.headers))
    finally:
        producer.purge()


def test_a_dead_letter_too_large_with_its_value_omits_the_value_and_says_how_large_it_was():
    letter = dead_letter(b"acc-1", b"\xff" * 1_040_000, ORIGIN, ERROR)
    headers = dict(letter.headers)
    assert letter.value == b""
    assert headers["deadletter.value-omitted"] == b"1040000"
    assert (headers["deadletter.topic"], headers["deadletter.partition"], headers["deadletter.offset"]) == (
        ORIGIN.topic.encode(), b"3", b"123456")  # where the original still is
    assert letter.key == "acc-1"


def test_a_dead_letter_that_fits_keeps_the_original_bytes_and_says_nothing_is_omitted():
    size = largest_kept()
    letter = dead_letter(b"acc-1", b"\xff" * size, ORIGIN, ERROR)
    assert letter.value == b"\xff" * size
    assert "deadletter.value-omitted" not in dict(letter.headers)
    assert dead_letter(b"acc-1", b"\xff" * (size + 1), ORIGIN, ERROR).value == b""


def test_a_dead_letter_with_a_key_too_large_omits_the_key_too():
    letter = dead_letter(b"k" * 1_040_000, b"value", ORIGIN, ERROR)
    headers = dict(letter.headers)
    assert (letter.key, letter.value) == ("", b"")
    assert (headers["deadletter.key-omitted"], headers["deadletter.value-omitted"]) == (b"1040000", b"5")
    assert wire_size(b"", letter.value, letter.headers) <= DEADLETTER_MAX_BYTES


def test_wire_size_counts_key_value_headers_and_the_record_and_batch_framing():
    bare = wire_size(b"", b"", ())
    assert wire_size(b"k" * 10, b"v" * 100, (("h", b"x" * 7),)) == bare + 10 + 100 + 1 + 7 + 2 * 5


# bank deadletter list / replay, of a letter that omitted the value ----------------------------------

class Message:
    """What confluent-kafka's consumer hands `streams.ops.deadletters._parse`."""

    def __init__(self, letter, partition=0, offset=7):
        self.letter, self._partition, self._offset = letter, partition, offset

    def partition(self):
        return self._partition

    def offset(self):
        return self._offset

    def timestamp(self):
        return (1, 1_700_000_000_000)

    def key(self):
        return self.letter.key.encode()

    def value(self):
        return self.letter.value

    def headers(self):
        return list(self.letter.headers)


def parked(value: bytes, offset=7):
    from streams.ops.deadletters import _parse
    return _parse(Message(dead_letter(b"acc-1", value, ORIGIN, "undecodable: too large"), offset=offset))


def test_a_letter_that_omitted_the_value_lists_the_original_size_and_says_where_to_read_it():
    record = parked(b"\xff" * 1_040_000)
    assert (record.value, record.value_omitted, record.size, record.omitted) == (b"", 1_040_000, 1_040_000, True)
    row = record.to_dict(replayed=False)
    assert (row["size"], row["value_omitted"], row["value_base64"], row["offset"]) == (1_040_000, True, None, 123_456)
    assert "size=1040000 (omitted: read at its origin)" in record.line()


def test_a_letter_that_kept_the_value_lists_it_as_before():
    record = parked(b"\xff" * 10)
    row = record.to_dict()
    assert (row["size"], row["value_omitted"], row["value_base64"]) == (10, False, base64.b64encode(b"\xff" * 10).decode())
    assert "size=10  " in record.line()


def dry_replay(monkeypatch, records, fetch):
    from streams.ops import deadletters
    monkeypatch.setattr(deadletters, "read_parked", lambda settings, timeout: records)
    monkeypatch.setattr(deadletters, "read_resent", lambda settings, timeout: set())
    return {r.record.marker: (r.action, r.detail, r.record)
            for r in deadletters.resend(Settings(), dry_run=True, fetch=fetch)}


def test_replaying_a_letter_that_omitted_the_value_reads_the_original_at_its_source_offset(monkeypatch):
    from decimal import Decimal

    from streams.contract.avro import Codec
    from streams.ops.deadletters import OriginalUnavailable
    from streams.domain.accounts import Deposit

    original = Codec().encode(Deposit(command_id="d-1", account_id="acc-1", amount=Decimal("1.00")))
    fixed, garbage, gone = parked(b"\xff" * 1_040_000, 1), parked(b"\xff" * 1_040_000, 2), parked(b"\xff" * 1_040_000, 3)
    asked = []

    def fetch(settings, record, timeout):
        asked.append((record.topic, record.partition, record.offset))
        if record is gone:
            raise OriginalUnavailable("no longer on its topic")
        import dataclasses
        value = original if record is fixed else b"\xff" * 1_040_000
        return dataclasses.replace(record, key=b"acc-1", value=value, value_omitted=None)

    actions = dry_replay(monkeypatch, [fixed, garbage, gone], fetch)
    assert asked == [(ORIGIN.topic, 3, 123_456)] * 3
    assert actions["0:1"][:2] == ("would replay", "")
    assert actions["0:1"][2].value == original  # what a real replay produces: the original bytes
    assert actions["0:2"][0] == "refused" and actions["0:2"][1].startswith("undecodable")
    assert actions["0:3"][:2] == ("failed", "no longer on its topic")
