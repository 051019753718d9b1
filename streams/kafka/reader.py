"""Reading Kafka from outside the workers, written once: a consumer of a group of its own that commits
nothing, read_committed (`Settings.consumer_config`), quiet; and reading a set of partitions up to the
end offsets seen at the start, with a deadline.

Read committed, a partition written in transactions ends with a transaction marker that no consumer
is ever given: its end offset is reached without a record at `end - 1`. A partition is so read to its
end once a record at `end - 1` arrived or, failing that, once the consumer's position is at or past
the end (`Ends`). Every tool reads this way: bank verify, replay, status, dead letters, the account as
of a time, the customers' keys, the view generation pointer, the view handoff, the dashboard.
"""
from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition

from ..config import Settings

Where = tuple[str, int]  # (topic, partition)


def quiet_logger(name: str = "streams.kafka.librdkafka", *, keep_fatal: bool = False) -> logging.Logger:
    """The logger librdkafka's own log lines go to: dropped (its warnings and errors are retries it handles
    itself; what it cannot handle reaches the caller as an error or an exception, which the tools report),
    or, with `keep_fatal`, passed on only when critical (the workers' transactional producers)."""
    logger = logging.getLogger(name)
    if keep_fatal:
        logger.setLevel(logging.CRITICAL)
        return logger
    logger.addHandler(logging.NullHandler())
    logger.propagate = False
    return logger


def new_consumer(settings: Settings, purpose: str, **config) -> Consumer:
    """A consumer of a group of its own (`bank-<purpose>-<random>`) that commits nothing."""
    return Consumer(settings.consumer_config(**{
        "group.id": f"bank-{purpose}-{uuid.uuid4().hex}", "enable.auto.commit": False,
        "enable.auto.offset.store": False, "auto.offset.reset": "earliest", "logger": quiet_logger(), **config}))


def fatal_read_error(error) -> bool:
    """Whether a consumer error should end a read: end-of-partition notes and retriable errors don't."""
    return error.code() != KafkaError._PARTITION_EOF and (error.fatal() or not error.retriable())


class ReadError(RuntimeError):
    """A read could not be done; each tool words it as its own error (the message is ready to show)."""


class Unreachable(ReadError):
    """The cluster did not answer a metadata request."""


class OffsetsUnreadable(ReadError):
    def __init__(self, topic: str, partition: int, cause: Exception):
        super().__init__(f"cannot read the offsets of {topic}[{partition}]: {cause}")
        self.topic, self.partition, self.cause = topic, partition, cause


class FatalRead(ReadError):
    def __init__(self, message: Message):
        super().__init__(f"error reading {message.topic()}: {message.error()}")
        self.topic, self.partition, self.error = message.topic(), message.partition(), message.error()


class ReadTimeout(ReadError):
    def __init__(self, timeout: float, pending: Iterable[Where]):
        self.timeout, self.pending = timeout, sorted(pending)
        super().__init__(f"timed out after {timeout:g}s; not finished: "
                         + ", ".join(f"{t}[{p}]" for t, p in self.pending))


@dataclass
class Ends:
    """Which partitions are not yet read to their end offsets; told of each record and of positions."""

    ends: dict[Where, int]
    pending: dict[Where, int] = field(init=False)

    def __post_init__(self):
        self.pending = dict(self.ends)

    @property
    def done(self) -> bool:
        return not self.pending

    def wanted(self, message: Message) -> bool:
        """Whether `message` is before its partition's end (and, if it is the last, note the partition done)."""
        where = (message.topic(), message.partition())
        end = self.ends.get(where)
        if end is None or message.offset() >= end or where not in self.pending:
            return False
        if message.offset() + 1 >= end:
            del self.pending[where]
        return True

    def past_markers(self, consumer: Consumer) -> None:
        """Partitions whose position is at their end: what was left were transaction markers."""
        if self.pending:
            for tp in consumer.position([TopicPartition(t, p) for t, p in self.pending]):
                if tp.offset >= 0 and tp.offset >= self.pending[(tp.topic, tp.partition)]:
                    self.pending.pop((tp.topic, tp.partition), None)


class Reader:
    """One consumer for one read, closed with the reader; every call bounded by the read's deadline."""

    def __init__(self, settings: Settings, purpose: str, timeout: float, **config):
        self.settings = settings
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout  # `follow` has none
        self.consumer = new_consumer(settings, purpose, **config)

    def __enter__(self) -> "Reader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.consumer.close()

    def left(self, at_least: float = 0.1) -> float:
        return max(at_least, self.deadline - time.monotonic())

    def topics(self, topic: str | None = None, timeout: float | None = None) -> dict:
        """The cluster's topics (name → metadata), or just `topic`'s. Raises Unreachable."""
        try:
            if topic is None:
                return self.consumer.list_topics(timeout=timeout or self.left()).topics
            return self.consumer.list_topics(topic, timeout=timeout or self.left()).topics
        except KafkaException as exc:
            raise Unreachable(f"cannot reach Kafka at {self.settings.bootstrap_servers}: {exc}") from None

    def watermarks(self, topic: str, partition: int, timeout: float | None = None) -> tuple[int, int]:
        """(low, high) as the broker has them now. Raises OffsetsUnreadable."""
        try:
            return self.consumer.get_watermark_offsets(TopicPartition(topic, partition),
                                                       timeout=timeout or self.left(), cached=False)
        except KafkaException as exc:
            raise OffsetsUnreadable(topic, partition, exc) from None

    def ends(self, names: Iterable[str], existing: dict | None = None) -> tuple[dict[Where, tuple[int, int]], list[str]]:
        """Every partition of the topics `names` that exist, with its (low, high) now; and the missing topics."""
        existing = self.topics() if existing is None else existing
        found: dict[Where, tuple[int, int]] = {}
        missing = []
        for name in names:
            if name not in existing or existing[name].error is not None:
                missing.append(name)
                continue
            for partition in sorted(existing[name].partitions):
                found[(name, partition)] = self.watermarks(name, partition)
        return found, missing

    def read(self, ends: dict[Where, int], starts: dict[Where, int] | None = None, *, batch: int = 2000,
             fatal: Callable[[KafkaError], bool] | None = fatal_read_error, wait: float = 0.5) -> Iterator[Message]:
        """Every record of the partitions of `ends` from `starts` (default: the beginning) to before their
        end offsets, in each partition's order. Errors that `fatal` calls fatal raise FatalRead (without
        `fatal` every error is skipped); past the deadline, ReadTimeout. `wait`: the longest a consume
        waits (a read that ends in transaction markers only ends after one has returned nothing)."""
        starts = starts or {}
        tracker = Ends({where: end for where, end in ends.items() if where not in starts or end > starts[where]})
        if tracker.done:
            return
        self.consumer.assign([TopicPartition(t, p, starts.get((t, p), OFFSET_BEGINNING))
                              for t, p in tracker.pending])
        while not tracker.done:
            if time.monotonic() > self.deadline:
                raise ReadTimeout(self.timeout, tracker.pending)
            for message in self.consumer.consume(num_messages=batch, timeout=min(wait, self.left())):
                error = message.error()
                if error is not None:
                    if fatal is not None and fatal(error):
                        raise FatalRead(message)
                    continue
                if tracker.wanted(message):
                    yield message
            tracker.past_markers(self.consumer)


    def assign(self, starts: dict[Where, int]) -> None:
        """Read the partitions of `starts` from those offsets on (`poll`)."""
        self.consumer.assign([TopicPartition(t, p, offset) for (t, p), offset in starts.items()])

    def poll(self, batch: int, timeout: float) -> list[Message]:
        """The records the next poll returns (errors skipped)."""
        return [m for m in self.consumer.consume(batch, timeout=timeout) if m.error() is None]

    def follow(self, partitions: Iterable[Where], ends: dict[Where, int], *, batch: int = 500,
               poll: float = 0.25) -> Iterator[tuple[list[Message], bool]]:
        """Every record of `partitions` from the beginning, for as long as the caller iterates: per poll,
        the records read (errors skipped) and whether every partition has reached its end in `ends`."""
        tracker = Ends(dict(ends))
        self.consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in partitions])
        while True:
            messages = []
            for message in self.consumer.consume(num_messages=batch, timeout=poll):
                if message.error() is None:
                    tracker.wanted(message)
                    messages.append(message)
            tracker.past_markers(self.consumer)
            yield messages, tracker.done


def read_range(settings: Settings, topic: str, partition: int, start: int, timeout: float = 60.0):
    """(offset, key, value) of `topic[partition]` from `start` to its end now (the view handoff's tail)."""
    with Reader(settings, "handoff", timeout) as reader:
        _, end = reader.watermarks(topic, partition, timeout=timeout)
        if end <= start:
            return []
        reader.deadline = time.monotonic() + timeout  # as long again to read it
        try:
            return [(m.offset(), m.key(), m.value())
                    for m in reader.read({(topic, partition): end}, {(topic, partition): start}, fatal=None)]
        except ReadTimeout:
            raise TimeoutError(f"reading {topic}[{partition}] {start}..{end} took longer than {timeout:g}s") from None


Record = tuple[int, bytes, bytes | None]  # (offset, key, value)


def read_tails(settings: Settings, starts: dict[Where, int], apply: Callable[[Where, list[Record]], None],
               timeout: float = 30.0, chunk: int = 5000) -> dict[Where, int]:
    """Reads each partition of `starts` from its offset there to its end now, handing its records to
    `apply(where, records)` in offset order, `chunk` at a time (a table restored from nothing is not
    held in memory whole); returns how many records each partition had."""
    with Reader(settings, "tails", timeout) as reader:
        ends = {where: reader.watermarks(*where)[1] for where in starts}
        counts = {where: 0 for where in starts}
        pending: dict[Where, list[Record]] = {}
        for message in reader.read(ends, starts, wait=0.02):  # mostly only markers left: don't wait long
            where = (message.topic(), message.partition())
            records = pending.setdefault(where, [])
            records.append((message.offset(), message.key(), message.value()))
            if len(records) >= chunk:
                apply(where, records)
                counts[where] += len(records)
                pending[where] = []
        for where, records in pending.items():
            if records:
                apply(where, records)
                counts[where] += len(records)
        return counts


def read_to_end(settings: Settings, names: Iterable[str], *, purpose: str, timeout: float, batch: int = 2000,
                fatal: Callable[[KafkaError], bool] | None = fatal_read_error, **config):
    """Every record of the topics `names` (those that exist), from the beginning to the end offsets
    seen now: (the partitions read, with their (low, high); the missing topics; the records)."""
    reader = Reader(settings, purpose, timeout, **config)
    try:
        found, missing = reader.ends(names)
        records = list(reader.read({w: high for w, (low, high) in found.items() if high > low},
                                   batch=batch, fatal=fatal))
        return found, missing, records
    finally:
        reader.close()


def work_left(settings: Settings, group: str, names: Iterable[str], timeout: float = 10.0) -> int:
    """How many records of the topics `names` the consumer group `group` has yet to process: per
    partition, its end offset less the group's committed offset, unless what lies between is only
    transaction markers (a transactional reader commits one past its last record, and the commit
    marker that follows is never given to anyone: a partition so ends short of its end offset).
    Read committed, a partition ends at its last stable offset: the records of a transaction still
    open are not work yet (their writer's input shows as not committed meanwhile)."""
    with Reader(settings, "work-left", timeout) as reader:
        found, _ = reader.ends(names)
        partitions = [TopicPartition(t, p) for (t, p), (low, high) in found.items() if high > low]
        if not partitions:
            return 0
        group_reader = Consumer(settings.consumer_config(**{
            "group.id": group, "enable.auto.commit": False, "logger": quiet_logger()}))
        try:
            while True:
                try:
                    committed = group_reader.committed(partitions, timeout=reader.left())
                    break
                except KafkaException as exc:  # e.g. NOT_COORDINATOR while the offsets topic is set up
                    if time.monotonic() > reader.deadline:
                        raise OffsetsUnreadable(partitions[0].topic, partitions[0].partition, exc) from None
                    time.sleep(0.1)
        finally:
            group_reader.close()
        gaps = {}
        for tp in committed:
            low, high = found[(tp.topic, tp.partition)]
            start = max(tp.offset, low)
            if high > start:
                gaps[(tp.topic, tp.partition)] = (start, high)
        if not gaps:
            return 0
        # Does anything but markers lie in the gaps? A read from the committed offsets says.
        with_records: set[Where] = set()
        try:
            for message in reader.read({w: high for w, (_, high) in gaps.items()},
                                       {w: start for w, (start, _) in gaps.items()}, wait=0.1):
                with_records.add((message.topic(), message.partition()))
        except ReadTimeout as exc:  # a transaction opened since the ends were read: work in flight
            with_records.update(exc.pending)
        return sum(high - start for where, (start, high) in gaps.items() if where in with_records)
