"""Agents take their records in batches (`take_batches`) and write their tables once per batch.

Why: per record, a Faust table write costs a changelog future, a hop through Faust's producer
buffer, a delivery callback and a RocksDB write of the persisted offset; per record, an agent's
`async for` costs an await and an ack round.
A batch instead buffers its writes per table partition; each partition's changelog records go
into that partition's transaction (streams.kafka.transactions), and only once it committed are they
written to RocksDB, as one WriteBatch with the changelog offset they reach.

Two things change with batches, both handled here:
- Faust's `current_event()` no longer names the record being processed, and Faust's tables pick
  the partition (RocksDB database and changelog partition) from it. So every write of a batch goes
  through a `BatchedTable`, told the partition of each record by the loop (`streams.worker.pipeline.Batch`).
- Writes are buffered until the batch ends. Reads see them (a command processed earlier in the
  same batch is a duplicate), and a key written twice is written once, last.
"""
from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Callable, Iterator, MutableMapping

from mode.utils.futures import maybe_async
from rocksdict import WriteBatch

from ..services.handling import Outgoing


class BatchedTable(MutableMapping):
    """One Faust table (raw bytes keys and values) as its single writer sees it during a batch.

    Between batches (`partition` None) reads go to Faust's table, which looks in every partition.
    """

    #: Told (changelog topic, records) when a partition's changelog records are acknowledged; streams.worker.metrics sets it.
    on_sent: Callable[[str, int], None] = staticmethod(lambda topic, count: None)

    def __init__(self, table, encode: Callable[[object], bytes] | None = None):
        self.table = table
        self.partition: int | None = None  # of the record being processed; set by `streams.worker.pipeline.Batch`
        #: Buffered writes by partition, then key: bytes, None (a delete), or a record (the view agents'
        #: FoldCodec), encoded with `encode` when taken, so a key written many times in a batch is encoded
        #: once and read back as is. By partition first, so taking one partition's writes does not scan
        #: the others'.
        self._pending: dict[int, dict[bytes, object]] = {}
        self.encode = encode

    # -- reads ------------------------------------------------------------------------------------
    def get(self, key: str, default=None):
        partition = self.partition
        if partition is None:
            return self.table.get(key, default)
        raw = key.encode()
        try:
            value = self._pending[partition][raw]
        except KeyError:
            value = self._read(partition, raw)
        return default if value is None else value

    def __getitem__(self, key: str) -> bytes:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __contains__(self, key) -> bool:
        return self.get(key) is not None

    def _read(self, partition: int, raw: bytes) -> bytes | None:
        store = self.table.data
        db_for_partition = getattr(store, "_db_for_partition", None)
        if db_for_partition is None:  # the in-memory store (tests): one dict, keys as given (unencoded)
            return store.data.get(raw.decode())
        return db_for_partition(partition).get(raw)

    def __iter__(self) -> Iterator:
        return iter(self.table)  # what is on disk: buffered writes are flushed before anyone iterates

    def __len__(self) -> int:
        return len(self.table)

    def items(self):
        return self.table.items()

    def persisted_offset(self, partition: int) -> int | None:
        """The changelog offset of the last record the partition's local database holds (None: none)."""
        store = self.table.data
        db_for_partition = getattr(store, "_db_for_partition", None)
        if db_for_partition is None:  # the in-memory store (tests) keeps no offsets
            return None
        value = db_for_partition(partition).get(store.offset_key)
        return int(value) if value is not None else None

    def changelog_id(self, partition: int) -> str | None:
        """The topic id of the changelog the partition's local database was built from (None: unknown)."""
        path = self._id_file(partition)
        if path is None or not path.exists():
            return None
        return path.read_text().strip() or None

    def set_changelog_id(self, partition: int, topic_id: str) -> None:
        path = self._id_file(partition)
        if path is not None:
            temporary = path.with_name(path.name + ".tmp")
            temporary.write_text(topic_id)
            temporary.replace(path)

    def _id_file(self, partition: int) -> Path | None:
        # Beside the database, not in it: Faust's iteration of a table skips only its own offset key.
        partition_path = getattr(self.table.data, "partition_path", None)
        if partition_path is None:  # the in-memory store (tests): nothing outlives the process
            return None
        return changelog_id_path(Path(partition_path(partition)))

    def clear(self, partition: int) -> None:
        """Deletes everything the partition's local database holds, its changelog offset included."""
        store = self.table.data
        db_for_partition = getattr(store, "_db_for_partition", None)
        if db_for_partition is None:
            return
        db = db_for_partition(partition)
        batch = WriteBatch(raw_mode=True)
        for key in db.keys():
            batch.delete(key)
        db.write(batch)

    # -- writes -----------------------------------------------------------------------------------
    def __setitem__(self, key: str, value: bytes) -> None:
        self._buffer(key, value)

    def __delitem__(self, key: str) -> None:
        self._buffer(key, None)  # a tombstone on the changelog

    def _buffer(self, key: str, value: bytes | None) -> None:
        partition = self.partition
        if partition is None:
            raise RuntimeError(f"{self.table.name} written outside a batch")
        pending = self._pending.get(partition)
        if pending is None:
            pending = self._pending[partition] = {}
        raw = key.encode()
        pending.pop(raw, None)  # re-inserted at the end: the changelog keeps each key's last write
        pending[raw] = value

    def take(self, partition: int) -> list[tuple[bytes, bytes | None]]:
        """Removes and returns one partition's buffered entries, each key once at its last write, encoded."""
        pending, encode = self._pending.pop(partition, {}), self.encode
        return [(key, value if is_encoded(value) else encode(value)) for key, value in pending.items()]

    def discard(self) -> None:
        """Forgets every buffered write (a batch that will not be committed)."""
        self._pending.clear()
        self.partition = None

    def apply(self, partition: int, entries: list[tuple[bytes, bytes | None]], changelog_offset: int | None) -> None:
        """Writes committed entries to the partition's RocksDB, with the changelog offset they reach in
        the same WriteBatch: local state is then always a prefix of the committed changelog."""
        self.partition = None
        self._write(partition, entries, changelog_offset)
        self.on_sent(self.changelog, len(entries))

    def restore(self, partition: int, records: list[tuple[int, bytes, bytes | None]]) -> None:
        """Applies (offset, key, value) records read from the partition's changelog, in order (between
        batches or before one: a batch's own partition is left alone)."""
        self._write(partition, [(key, value) for _, key, value in records], records[-1][0])

    def _write(self, partition: int, entries: list[tuple[bytes, bytes | None]], changelog_offset: int | None) -> None:
        store = self.table.data
        db_for_partition = getattr(store, "_db_for_partition", None)
        if db_for_partition is None:  # the in-memory store (tests): keys as given (unencoded)
            for key, value in entries:
                if value is None:
                    store.data.pop(key.decode(), None)
                else:
                    store.data[key.decode()] = value
            return
        batch = WriteBatch(raw_mode=True)
        for key, value in entries:
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        if changelog_offset is not None:
            batch.put(store.offset_key, str(changelog_offset).encode())
        db_for_partition(partition).write(batch)

    @property
    def changelog(self) -> str:
        return self.table.changelog_topic.get_topic_name()


def changelog_id_path(database: Path) -> Path:
    """Where the id of the changelog a table partition's database (`database`) was built from is kept:
    a database whose id is missing or another is emptied and restored (streams.worker.pipeline.local_offset)."""
    return database.with_name(database.name + ".changelog-id")


def is_encoded(value) -> bool:
    """Whether a buffered value goes to Kafka as it is: bytes, or None (a delete). Anything else is a
    record still to encode (the view agents' FoldCodec keeps records until the batch ends)."""
    return value is None or value.__class__ is bytes


def encoded(records: list[Outgoing], encode: Callable[[object], bytes]) -> list[Outgoing]:
    """The records with any value still a record (the view agents' FoldCodec) encoded: after `coalesce`,
    so a summary superseded in the batch is never encoded."""
    if all(is_encoded(r.value) for r in records):
        return records
    return [r if is_encoded(r.value) else Outgoing(r.topic, r.key, encode(r.value), r.headers, r.latest_of)
            for r in records]


def coalesce(records: list[Outgoing]) -> list[Outgoing]:
    """Of the records with the same topic and `latest_of`, only the batch's last: a newer state of
    the same thing supersedes the older (as a Kafka Streams record cache does before forwarding)."""
    last: dict[tuple[str, str], int] = {}
    for index, record in enumerate(records):
        if record.latest_of is not None:
            last[(record.topic, record.latest_of)] = index
    if not last:
        return records
    return [r for i, r in enumerate(records) if r.latest_of is None or last[(r.topic, r.latest_of)] == i]


async def take_batches(stream, max_events: int, interval_s: float):
    """The records waiting for an agent, in batches of at most `max_events`, each batch starting at
    least `interval_s` after the one before (as Kafka Streams commits every commit.interval.ms).

    So a record that comes when the agent has been idle that long is taken at once, and under load
    records gather for `interval_s`: each batch is one transaction per input partition, so this
    bounds the transactions per second whatever the rate, where taking records as they come made
    many tiny transactions at moderate rates and fell behind.

    Why not Faust's `take_events`: it runs every record through the stream's iterator (sensors, a
    context variable, an await and an ack each) and a buffering processor, and fills its buffer for a
    fixed window after each batch while nothing accumulates during the batch itself.

    Kept from Faust's stream: records fetched before a rebalance (another consumer generation) or
    while flow control is suspended are skipped, and a record counts as unacked (consumer.unacked,
    which the revocation and the stall detector wait on) from being taken until its batch ends.
    """
    app = stream.app
    consumer = app.consumer
    flow = app.flow_control
    queue = aiter(stream.channel).queue  # aiter subscribes the agent's channel to its topics
    unacked = consumer.unacked
    acking_topics = app.topics.acking_topics
    processors = stream._processors  # none in a worker; Faust's test context records values with one
    started = float("-inf")
    while True:
        try:
            events = [await queue.get()]
        except StopAsyncIteration:  # the stream stopped (thrown into its channel): as Faust's iterator ends
            return
        wait = started + interval_s - time.monotonic()
        if wait > 0 and queue.qsize() + 1 < max_events:
            await asyncio.sleep(wait)
        started = time.monotonic()
        while len(events) < max_events and not queue.empty():
            events.append(queue.get_nowait())
        generation, active = app.consumer_generation_id, flow.is_active()
        taken = []
        for event in events:
            message = event.message
            if not active or message.generation_id != generation:
                message.ack(consumer)  # as Faust's stream does: dropped, and nothing waits for it
                continue
            if not message.tracked and message.topic in acking_topics:
                message.tracked = True
                unacked.add(message)
            taken.append(event)
            for processor in processors:
                await maybe_async(processor(event.value))
        if not taken:
            continue
        try:
            yield taken
        finally:
            for event in taken:
                event.message.ack(consumer)
