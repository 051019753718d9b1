"""Parked records: list what the agents sent to `bank.deadletter`, and replay them after a fix.

Every agent parks a record it cannot decode, or that does not belong on its topic, on `bank.deadletter`
with the original key and bytes and the headers `deadletter.topic`, `deadletter.partition`,
`deadletter.offset` and `deadletter.error` (`streams.processing.dead_letter`).

- `read_parked` reads `bank.deadletter` from the beginning up to the high watermarks captured at the
  start (all partitions assigned, no consumer group offsets kept) with confluent-kafka.
- `replay` re-produces each parked record's original bytes, with its original key, to its original topic
  (murmur2_random partitioner, as every client of the pipeline; idempotent producer). A record is
  replayed once: after its copy is delivered, "<partition>:<offset>" of the dead letter is written to
  the compacted topic `bank.deadletter-replayed` (created on demand), and a later replay skips it. A
  crash between the two writes replays it again on the next run, which the command processors'
  dedup by command id absorbs. Records that still do not decode with `streams.avro.Codec` (or decode to
  a type foreign to their topic) are refused unless `force`.
- A dead letter of a record too large to park whole (`processing.DEADLETTER_MAX_BYTES`) carries no value
  and the header `deadletter.value-omitted` (the original size; `deadletter.key-omitted` likewise for a
  huge key). `list` shows it as omitted; `replay` reads the original key and bytes at its source topic,
  partition and offset (command and event topics keep their records) and fails it if they are gone.
"""
from __future__ import annotations

import base64
import dataclasses
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Callable

from ..contract import topics
from ..contract.avro import Codec, DecodeError
from ..config import Settings
from ..services.handling import KEY_OMITTED_HEADER, VALUE_OMITTED_HEADER

REPLAYED_TOPIC = "bank.deadletter-replayed"
REPLAYED_FROM_HEADER = "deadletter.replayed-from"
#: The replay producer's `message.max.bytes`: above librdkafka's default of 1,000,000, so an original the
#: broker took (a letter that omitted it) can go back; the broker, which took it once, has the last word.
REPLAY_MESSAGE_MAX_BYTES = 16 * 2**20


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


def _quiet_logger() -> logging.Logger:
    logger = logging.getLogger("streams.deadletters.librdkafka")
    logger.addHandler(logging.NullHandler())
    logger.propagate = False
    return logger


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
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition
    from ..kafka.reader import fatal_read_error

    deadline = time.monotonic() + timeout

    def left() -> float:
        return max(0.1, deadline - time.monotonic())

    consumer = Consumer(settings.consumer_config(**{
        "group.id": f"bank-deadletter-{uuid.uuid4().hex}", "enable.auto.commit": False,
        "enable.auto.offset.store": False, "auto.offset.reset": "earliest", "logger": _quiet_logger(),
    }))
    try:
        try:
            metadata = consumer.list_topics(timeout=left())
        except KafkaException as exc:
            raise DeadletterUnavailable(f"cannot reach Kafka at {settings.bootstrap_servers}: {exc}") from None
        if topic not in metadata.topics or metadata.topics[topic].error is not None:
            return []
        ends: dict[int, int] = {}
        for partition in sorted(metadata.topics[topic].partitions):
            try:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=left(),
                                                           cached=False)
            except KafkaException as exc:
                raise DeadletterUnavailable(f"cannot read the offsets of {topic}[{partition}]: {exc}") from None
            if high > low:
                ends[partition] = high
        received: dict[int, list] = {p: [] for p in ends}
        pending = dict(ends)
        if pending:
            consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in pending])
        while pending:
            if time.monotonic() > deadline:
                raise DeadletterUnavailable(f"timed out after {timeout:g}s reading {topic}; not finished: "
                                            f"partitions {sorted(pending)}")
            messages = consumer.consume(num_messages=1000, timeout=min(0.5, left()))
            for message in messages:
                error = message.error()
                if error is not None:
                    if fatal_read_error(error):
                        raise DeadletterUnavailable(f"error reading {topic}: {error}")
                    continue
                partition = message.partition()
                if partition not in pending or message.offset() >= ends[partition]:
                    continue
                received[partition].append(message)
                if message.offset() + 1 >= ends[partition]:
                    del pending[partition]
            if pending and not messages:  # transaction markers may sit at the end: go by the position
                for tp in consumer.position([TopicPartition(topic, p) for p in pending]):
                    if tp.offset >= 0 and tp.offset >= ends[tp.partition]:
                        pending.pop(tp.partition, None)
        return [m for p in sorted(received) for m in received[p]]
    finally:
        consumer.close()


def read_parked(settings: Settings, timeout: float = 30.0, limit: int | None = None) -> list[Parked]:
    parked = [_parse(m) for m in _read_topic(settings, topics.DEADLETTER.name, timeout)]
    return parked[:limit] if limit is not None else parked


def read_replayed(settings: Settings, timeout: float = 30.0) -> set[str]:
    """The markers ("<partition>:<offset>" of dead letters) already replayed."""
    done: set[str] = set()
    for message in _read_topic(settings, REPLAYED_TOPIC, timeout):
        key = (message.key() or b"").decode("utf-8", "replace")
        if message.value() is None:  # a tombstone: an operator asked for it to be replayable again
            done.discard(key)
        else:
            done.add(key)
    return done


def ensure_replayed_topic(settings: Settings, timeout: float = 30.0) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(settings.confluent_config())
    try:
        existing = admin.list_topics(timeout=timeout).topics
    except Exception as exc:
        raise DeadletterUnavailable(f"cannot reach Kafka at {settings.bootstrap_servers}: {exc}") from None
    if REPLAYED_TOPIC in existing:
        return
    config = {"cleanup.policy": "compact"}
    if settings.replication_factor >= 3:
        config["min.insync.replicas"] = "2"
    futures = admin.create_topics([NewTopic(REPLAYED_TOPIC, num_partitions=1,
                                            replication_factor=settings.replication_factor, config=config)],
                                  operation_timeout=timeout, request_timeout=timeout)
    try:
        futures[REPLAYED_TOPIC].result()
    except Exception as exc:
        if "TOPIC_ALREADY_EXISTS" not in str(exc):
            raise DeadletterUnavailable(f"cannot create {REPLAYED_TOPIC}: {exc}") from None


def why_not_replayable(record: Parked, codec: Codec, known_topics: dict[str, tuple[type, ...]]) -> str | None:
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
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    if not record.topic or record.partition is None or record.partition < 0 or record.offset is None:
        raise OriginalUnavailable("the value was omitted and the letter names no origin to read it from")
    where = f"{record.topic}[{record.partition}]@{record.offset}"
    deadline = time.monotonic() + timeout

    def left() -> float:
        return max(0.1, deadline - time.monotonic())

    consumer = Consumer(settings.consumer_config(**{
        "group.id": f"bank-deadletter-{uuid.uuid4().hex}", "enable.auto.commit": False,
        "enable.auto.offset.store": False, "auto.offset.reset": "earliest", "logger": _quiet_logger(),
    }))
    try:
        tp = TopicPartition(record.topic, record.partition)
        try:
            low, high = consumer.get_watermark_offsets(tp, timeout=left(), cached=False)
        except KafkaException as exc:
            raise OriginalUnavailable(f"cannot read the offsets of {record.topic}[{record.partition}]: {exc}") from None
        if not low <= record.offset < high:
            raise OriginalUnavailable(f"the value was omitted and {where} is no longer on its topic "
                                      f"(it holds offsets {low} to {high - 1})")
        consumer.assign([TopicPartition(record.topic, record.partition, record.offset)])
        while time.monotonic() < deadline:
            for message in consumer.consume(num_messages=1, timeout=min(0.5, left())):
                if message.error() is not None:
                    continue
                if message.offset() != record.offset:  # compacted away, or an aborted write
                    raise OriginalUnavailable(f"the value was omitted and {where} is no longer on its topic")
                value = message.value() or b""
                if record.value_omitted is not None and len(value) != record.value_omitted:
                    raise OriginalUnavailable(f"{where} holds {len(value)} bytes, the letter says "
                                              f"{record.value_omitted}: not the parked record")
                return dataclasses.replace(record, key=message.key(), value=value, value_omitted=None,
                                           key_omitted=None)
        raise OriginalUnavailable(f"timed out after {timeout:g}s reading {where}")
    finally:
        consumer.close()


@dataclass(frozen=True, slots=True)
class ReplayResult:
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


def replay(settings: Settings, *, topic: str | None = None, dry_run: bool = False, force: bool = False,
           timeout: float = 30.0, report: Callable[[ReplayResult], None] = lambda result: None,
           fetch: Callable[[Settings, Parked, float], Parked] | None = None) -> list[ReplayResult]:
    """Replays the parked records (of `topic`, if given) not replayed before; see the module docstring."""
    from confluent_kafka import KafkaException, Producer

    fetch = fetch or read_original
    parked = [r for r in read_parked(settings, timeout) if topic is None or r.topic == topic]
    done = read_replayed(settings, timeout)
    codec = Codec()
    known_topics = {spec.name: spec.values for spec in topics.ALL_TOPICS}
    results: list[ReplayResult] = []

    def add(result: ReplayResult) -> None:
        results.append(result)
        report(result)

    producer = None
    if not dry_run and parked:
        ensure_replayed_topic(settings, timeout)
        producer = Producer(settings.confluent_config(**{
            "partitioner": "murmur2_random", "enable.idempotence": True, "acks": "all",
            "message.max.bytes": REPLAY_MESSAGE_MAX_BYTES, "logger": _quiet_logger()}))
    for record in parked:
        if record.marker in done:
            add(ReplayResult(record, "skipped", "already replayed"))
            continue
        if record.omitted:  # the letter left the original out: it is still at its source offset
            try:
                record = fetch(settings, record, timeout)
            except OriginalUnavailable as exc:
                add(ReplayResult(record, "failed", str(exc)))
                continue
        reason = why_not_replayable(record, codec, known_topics)
        if reason is not None and not (force and record.topic):
            add(ReplayResult(record, "refused", reason + ("" if not record.topic else " (--force replays it anyway)")))
            continue
        detail = f"forced: {reason}" if reason else ""
        if dry_run:
            add(ReplayResult(record, "would replay", detail))
            continue
        try:
            _produce(producer, record, REPLAYED_FROM_HEADER, timeout)
            _produce_marker(producer, record, timeout)
        except (KafkaException, RuntimeError) as exc:
            add(ReplayResult(record, "failed", str(exc)))
            continue
        done.add(record.marker)
        add(ReplayResult(record, "replayed", detail))
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
    _deliver(producer, timeout, topic=REPLAYED_TOPIC, key=record.marker.encode(), value=value)
