"""Parked records: list what the agents sent to `bank.deadletter`, and resend them after a fix
(`bank deadletter list`, `bank deadletter replay`; "replay" is the command's word, "resend" the code's,
so it is not mistaken for `bank replay`, which rebuilds views and state from the log).

Every agent parks a record it cannot decode, or that does not belong on its topic, on `bank.deadletter`
with the original key and bytes and the headers `deadletter.topic`, `deadletter.partition`,
`deadletter.offset` and `deadletter.error` (`streams.services.handling.dead_letter`).

- `read_parked` reads `bank.deadletter` from the beginning up to the high watermarks captured at the
  start (all partitions assigned, no consumer group offsets kept) with confluent-kafka.
- `resend` re-produces each parked record's original bytes, with its original key, to its original topic
  (murmur2_random partitioner, as every client of the pipeline; idempotent producer). A record is
  replayed once: after its copy is delivered, "<partition>:<offset>" of the dead letter is written to
  the compacted topic `bank.deadletter-replayed` (created on demand), and a later replay skips it. A
  crash between the two writes replays it again on the next run, which the command processors'
  dedup by command id absorbs. Records that still do not decode with `streams.contract.avro.Codec` (or decode to
  a type foreign to their topic) are refused unless `force`.
- A dead letter of a record too large to park whole (`handling.DEADLETTER_MAX_BYTES`) carries no value
  and the header `deadletter.value-omitted` (the original size; `deadletter.key-omitted` likewise for a
  huge key). `list` shows it as omitted; `resend` reads the original key and bytes at its source topic,
  partition and offset (command and event topics keep their records) and fails it if they are gone.
"""
from __future__ import annotations

import base64
import dataclasses
import time
from dataclasses import dataclass
from typing import Callable

from ..contract import topics
from ..contract.avro import Codec, DecodeError
from ..config import Settings
from ..kafka.admin import AdminError, ensure_topic
from ..kafka.producer import ProduceError, new_producer
from ..kafka.reader import OffsetsUnreadable, Reader, ReadError, ReadTimeout
from ..services.handling import KEY_OMITTED_HEADER, VALUE_OMITTED_HEADER

RESENT_TOPIC = "bank.deadletter-replayed"
RESENT_FROM_HEADER = "deadletter.replayed-from"
#: The resending producer's `message.max.bytes`: above librdkafka's default of 1,000,000, so an original the
#: broker took (a letter that omitted it) can go back; the broker, which took it once, has the last word.
RESEND_MESSAGE_MAX_BYTES = 16 * 2**20


class DeadletterUnavailable(RuntimeError):
    """Kafka did not answer, or a topic was not read to its end in time."""


class OriginalUnavailable(RuntimeError):
    """A letter omitted the original bytes, and they cannot be read at its source offset."""


@dataclass(frozen=True, slots=True)
class Parked:
    """One record of `bank.deadletter` and what its headers say about the original."""

    dl_partition: int
    dl_offset: int
    timestamp: int
    key: bytes | None
    value: bytes
    topic: str | None
    partition: int | None
    offset: int | None
    error: str
    value_omitted: int | None = None  # the original value's size, when the letter left it out
    key_omitted: int | None = None  # the original key's size, when the letter left it out

    @property
    def marker(self) -> str:
        """Its key in `bank.deadletter-replayed`."""
        return f"{self.dl_partition}:{self.dl_offset}"

    @property
    def omitted(self) -> bool:
        """Whether the original bytes are only at the source offset, not in the letter."""
        return self.value_omitted is not None or self.key_omitted is not None

    @property
    def size(self) -> int:
        """The original value's size."""
        return self.value_omitted if self.value_omitted is not None else len(self.value)

    def to_dict(self, replayed: bool | None = None) -> dict:
        out = {"deadletter_partition": self.dl_partition, "deadletter_offset": self.dl_offset,
               "timestamp": self.timestamp, "topic": self.topic, "partition": self.partition, "offset": self.offset,
               "error": self.error, "key": None if self.key is None else self.key.decode("utf-8", "replace"),
               "size": self.size,
               "value_base64": None if self.omitted else base64.b64encode(self.value).decode("ascii"),
               "value_omitted": self.omitted}
        if replayed is not None:
            out["replayed"] = replayed
        return out

    def line(self, replayed: bool = False) -> str:
        origin = f"{self.topic}[{self.partition}]@{self.offset}" if self.topic else "(no origin headers)"
        key = "-" if self.key is None else self.key.decode("utf-8", "replace")
        if self.key_omitted is not None:
            key = f"(omitted, {self.key_omitted} bytes)"
        size = f"{self.size} (omitted: read at its origin)" if self.omitted else str(self.size)
        mark = "  (replayed)" if replayed else ""
        return f"{self.dl_partition}:{self.dl_offset}  {origin}  key={key}  size={size}  error={self.error}{mark}"


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _parse(message) -> Parked:
    headers = {}
    for name, value in message.headers() or ():
        headers.setdefault(name, (value or b"").decode("utf-8", "replace"))
    return Parked(dl_partition=message.partition(), dl_offset=message.offset(), timestamp=message.timestamp()[1],
                  key=message.key(), value=message.value() or b"", topic=headers.get("deadletter.topic") or None,
                  partition=_int(headers.get("deadletter.partition")), offset=_int(headers.get("deadletter.offset")),
                  error=headers.get("deadletter.error", ""), value_omitted=_int(headers.get(VALUE_OMITTED_HEADER)),
                  key_omitted=_int(headers.get(KEY_OMITTED_HEADER)))


def _read_topic(settings: Settings, topic: str, timeout: float) -> list:
    """Every record of `topic` up to the high watermarks seen at the start, in (partition, offset) order.

    A topic that does not exist reads as empty. Raises DeadletterUnavailable.
    """
    received: dict[int, list] = {}
    with Reader(settings, "deadletter", timeout) as reader:
        try:
            partitions, missing = reader.ends([topic])
            ends = {where: high for where, (low, high) in partitions.items() if high > low}
            received = {p: [] for _, p in ends}
            for message in reader.read(ends, batch=1000):
                received[message.partition()].append(message)
        except ReadTimeout as exc:
            raise DeadletterUnavailable(f"timed out after {timeout:g}s reading {topic}; not finished: "
                                        f"partitions {[p for _, p in exc.pending]}") from None
        except ReadError as exc:
            raise DeadletterUnavailable(str(exc)) from None
    return [m for p in sorted(received) for m in received[p]]


def read_parked(settings: Settings, timeout: float = 30.0, limit: int | None = None) -> list[Parked]:
    parked = [_parse(m) for m in _read_topic(settings, topics.DEADLETTER.name, timeout)]
    return parked[:limit] if limit is not None else parked


def read_resent(settings: Settings, timeout: float = 30.0) -> set[str]:
    """The markers ("<partition>:<offset>" of dead letters) already replayed."""
    done: set[str] = set()
    for message in _read_topic(settings, RESENT_TOPIC, timeout):
        key = (message.key() or b"").decode("utf-8", "replace")
        if message.value() is None:  # a tombstone: an operator asked for it to be replayable again
            done.discard(key)
        else:
            done.add(key)
    return done


def ensure_resent_topic(settings: Settings, timeout: float = 30.0) -> None:
    try:
        ensure_topic(settings, RESENT_TOPIC, partitions=1, compacted=True, timeout=timeout)
    except AdminError as exc:
        raise DeadletterUnavailable(str(exc)) from None


def why_not_resendable(record: Parked, codec: Codec, known_topics: dict[str, tuple[type, ...]]) -> str | None:
    """Why the record should not go back to its topic as it is (None: it may)."""
    if not record.topic:
        return "no deadletter.topic header: the original topic is unknown"
    try:
        decoded = codec.decode(record.value)
    except DecodeError as exc:
        return f"undecodable: {exc}"
    expected = known_topics.get(record.topic)
    if expected and not isinstance(decoded, expected):
        return f"{type(decoded).__name__} does not belong on {record.topic}"
    return None


def read_original(settings: Settings, record: Parked, timeout: float = 30.0) -> Parked:
    """`record` with the original key and bytes read at its source offset (for a letter that omitted them).

    Raises OriginalUnavailable when there is no origin, or the record is gone from it (retention, a purge)."""
    if not record.topic or record.partition is None or record.partition < 0 or record.offset is None:
        raise OriginalUnavailable("the value was omitted and the letter names no origin to read it from")
    where = f"{record.topic}[{record.partition}]@{record.offset}"
    with Reader(settings, "deadletter", timeout) as reader:
        try:
            low, high = reader.watermarks(record.topic, record.partition)
        except OffsetsUnreadable as exc:
            raise OriginalUnavailable(str(exc)) from None
        if not low <= record.offset < high:
            raise OriginalUnavailable(f"the value was omitted and {where} is no longer on its topic "
                                      f"(it holds offsets {low} to {high - 1})")
        try:
            for message in reader.read({(record.topic, record.partition): high},
                                       {(record.topic, record.partition): record.offset}, batch=1, fatal=None):
                if message.offset() != record.offset:  # compacted away, or an aborted write
                    raise OriginalUnavailable(f"the value was omitted and {where} is no longer on its topic")
                value = message.value() or b""
                if record.value_omitted is not None and len(value) != record.value_omitted:
                    raise OriginalUnavailable(f"{where} holds {len(value)} bytes, the letter says "
                                              f"{record.value_omitted}: not the parked record")
                return dataclasses.replace(record, key=message.key(), value=value, value_omitted=None,
                                           key_omitted=None)
        except ReadTimeout:
            pass
        raise OriginalUnavailable(f"timed out after {timeout:g}s reading {where}")


@dataclass(frozen=True, slots=True)
class ResendResult:
    record: Parked
    action: str  # "replayed", "would replay", "skipped" (already replayed), "refused", "failed"
    detail: str = ""

    def line(self) -> str:
        origin = f"{self.record.topic}[{self.record.partition}]@{self.record.offset}"
        return f"{self.action:<12} {self.record.marker}  {origin}" + (f"  {self.detail}" if self.detail else "")

    def to_dict(self) -> dict:
        return {"action": self.action, "detail": self.detail, "deadletter_partition": self.record.dl_partition,
                "deadletter_offset": self.record.dl_offset, "topic": self.record.topic,
                "partition": self.record.partition, "offset": self.record.offset}


def resend(settings: Settings, *, topic: str | None = None, dry_run: bool = False, force: bool = False,
           timeout: float = 30.0, report: Callable[[ResendResult], None] = lambda result: None,
           fetch: Callable[[Settings, Parked, float], Parked] | None = None) -> list[ResendResult]:
    """Resends the parked records (of `topic`, if given) not resent before; see the module docstring."""
    fetch = fetch or read_original
    parked = [r for r in read_parked(settings, timeout) if topic is None or r.topic == topic]
    done = read_resent(settings, timeout)
    codec = Codec()
    known_topics = {spec.name: spec.values for spec in topics.ALL_TOPICS}
    results: list[ResendResult] = []

    def add(result: ResendResult) -> None:
        results.append(result)
        report(result)

    producer = None
    if not dry_run and parked:
        ensure_resent_topic(settings, timeout)
        producer = new_producer(settings, **{
            "partitioner": "murmur2_random", "enable.idempotence": True, "acks": "all",
            "message.max.bytes": RESEND_MESSAGE_MAX_BYTES})
    for record in parked:
        if record.marker in done:
            add(ResendResult(record, "skipped", "already replayed"))
            continue
        if record.omitted:  # the letter left the original out: it is still at its source offset
            try:
                record = fetch(settings, record, timeout)
            except OriginalUnavailable as exc:
                add(ResendResult(record, "failed", str(exc)))
                continue
        reason = why_not_resendable(record, codec, known_topics)
        if reason is not None and not (force and record.topic):
            add(ResendResult(record, "refused", reason + ("" if not record.topic else " (--force replays it anyway)")))
            continue
        detail = f"forced: {reason}" if reason else ""
        if dry_run:
            add(ResendResult(record, "would replay", detail))
            continue
        try:
            _produce(producer, record, RESENT_FROM_HEADER, timeout)
            _produce_marker(producer, record, timeout)
        except (ProduceError, RuntimeError) as exc:
            add(ResendResult(record, "failed", str(exc)))
            continue
        done.add(record.marker)
        add(ResendResult(record, "replayed", detail))
    return results


def _deliver(producer, timeout: float, **kwargs) -> None:
    errors = []
    producer.produce(on_delivery=lambda err, msg: errors.append(err) if err is not None else None, **kwargs)
    if producer.flush(timeout) > 0:
        raise RuntimeError(f"not delivered within {timeout:g}s")
    if errors:
        raise RuntimeError(f"delivery failed: {errors[0]}")


def _produce(producer, record: Parked, header: str, timeout: float) -> None:
    headers = [(header, record.marker.encode())]
    if record.key:
        _deliver(producer, timeout, topic=record.topic, key=record.key, value=record.value, headers=headers)
    else:  # keyless (the dead letter keeps b"" for None): back to the partition it came from
        extra = {"partition": record.partition} if record.partition is not None and record.partition >= 0 else {}
        _deliver(producer, timeout, topic=record.topic, value=record.value, headers=headers, **extra)


def _produce_marker(producer, record: Parked, timeout: float) -> None:
    value = f"{record.topic}[{record.partition}]@{record.offset} replayed at {int(time.time() * 1000)}".encode()
    _deliver(producer, timeout, topic=RESENT_TOPIC, key=record.marker.encode(), value=value)
