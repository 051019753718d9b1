"""Agents take their records in batches (Faust's `take_events`) and write their tables once per batch.

Why: per record, a Faust table write costs a changelog future, a hop through Faust's producer
buffer, a delivery callback and a RocksDB write of the persisted offset; per record, an agent's
`async for` costs an await and an ack round (about 11 % and 9 % of a worker's main thread in the
session-2 profile, bench/results/deposits-profile-s2.txt).
A batch instead writes each table partition's entries into RocksDB as one WriteBatch and hands
their changelog records to librdkafka in one go, with one callback per partition.

Two things change with batches, both handled here:
- Faust's `current_event()` no longer names the record being processed, and Faust's tables pick
  the partition (RocksDB database and changelog partition) from it. So every write of a batch goes
  through a `BatchedTable`, told the partition of each record by the loop (`streams.app.Batch`).
- Writes are buffered until the batch ends. Reads see them (a command processed earlier in the
  same batch is a duplicate), and a key written twice is written once, last: in changelog order
  each key sits at its last write, so a processor's dedup record still precedes the state that
  includes its effect (see `processing.KeyPrefixed`).

At-least-once is unchanged: the batch's writes are flushed before its records are emitted and
before its events are acked, and Faust flushes the producer before committing any offset.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Callable, Iterator, MutableMapping

from faust.types import TP

from .processing import Outgoing


class BatchedTable(MutableMapping):
    """One Faust table (raw bytes keys and values) as its single writer sees it during a batch.

    Between batches (`partition` None) reads go to Faust's table, which looks in every partition.
    """

    #: Told (changelog topic, records) when a partition's changelog records are acknowledged; streams.metrics sets it.
    on_sent: Callable[[str, int], None] = staticmethod(lambda topic, count: None)

    def __init__(self, table):
        self.table = table
        self.partition: int | None = None  # of the record being processed; set by `streams.app.Batch`
        self._pending: dict[tuple[int, bytes], bytes | None] = {}

    # -- reads ------------------------------------------------------------------------------------
    def get(self, key: str, default=None):
        partition = self.partition
        if partition is None:
            return self.table.get(key, default)
        raw = key.encode()
        try:
            value = self._pending[(partition, raw)]
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

    # -- writes -----------------------------------------------------------------------------------
    def __setitem__(self, key: str, value: bytes) -> None:
        self._buffer(key, value)

    def __delitem__(self, key: str) -> None:
        self._buffer(key, None)  # a tombstone on the changelog

    def _buffer(self, key: str, value: bytes | None) -> None:
        partition = self.partition
        if partition is None:
            raise RuntimeError(f"{self.table.name} written outside a batch")
        where = (partition, key.encode())
        self._pending.pop(where, None)  # re-inserted at the end: the changelog keeps each key's last write
        self._pending[where] = value

    def flush(self, producer) -> int:
        """Writes the buffered entries to the partitions' RocksDB and their changelog; returns how many."""
        self.partition = None
        if not self._pending:
            return 0
        pending, self._pending = self._pending, {}
        by_partition: dict[int, list[tuple[bytes, bytes | None]]] = defaultdict(list)
        for (partition, key), value in pending.items():
            by_partition[partition].append((key, value))
        topic = self.table.changelog_topic.get_topic_name()
        for partition, entries in by_partition.items():
            self._write_local(partition, entries)
            self._write_changelog(producer, topic, partition, entries)
        return len(pending)

    def _write_local(self, partition: int, entries: list[tuple[bytes, bytes | None]]) -> None:
        store = self.table.data
        db_for_partition = getattr(store, "_db_for_partition", None)
        if db_for_partition is None:  # the in-memory store (tests): keys as given (unencoded)
            for key, value in entries:
                if value is None:
                    store.data.pop(key.decode(), None)
                else:
                    store.data[key.decode()] = value
            return
        from rocksdict import WriteBatch
        batch = WriteBatch(raw_mode=True)
        for key, value in entries:
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        db_for_partition(partition).write(batch)

    def _write_changelog(self, producer, topic: str, partition: int,
                         entries: list[tuple[bytes, bytes | None]]) -> None:
        store = self.table.data
        count = len(entries)

        def acknowledged(offset: int) -> None:
            # What Faust's own changelog callback does, once per partition and batch: remember the
            # changelog offset this database holds, so recovery reads only what came after it.
            if partition in getattr(store, "_dbs", ()):  # not if the partition moved away meanwhile
                store.set_persisted_offset(TP(topic, partition), offset)
            self.on_sent(topic, count)

        produce_batch = getattr(producer, "produce_batch", None)
        if produce_batch is not None and produce_batch(topic, partition, entries, acknowledged):
            return
        for key, value in entries:  # Faust's own producer (aiokafka, or a test context): its per-record path
            self.table.send_changelog(partition, key, value, key_serializer="raw", value_serializer="raw")


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
