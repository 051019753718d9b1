"""How fast a worker restores a table partition from its changelog (streams.kafka.transactions.Transactions.restore
into a BatchedTable on RocksDB, as streams.worker.pipeline.restore_tables does on assignment), from nothing.

    BANK_HOME=/work/main/.bank KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9900 .venv/bin/python bench/results/s5/restore_tables.py

Writes RECORDS changelog records (KEYS distinct keys, 200-byte values) to a fresh compacted topic in
transactions of 2,000, then restores partition 0 three times into empty databases, and reads it three times applying
nothing (the same-run baseline); prints JSON."""
from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from confluent_kafka import Producer
from rocksdict import Options, Rdict

from streams.config import Settings
from streams.kafka.admin import ensure_topic
from streams.kafka.producer import producer_config
from streams.kafka.reader import read_tails
from streams.kafka.transactions import Task, Transactions
from streams.worker.batches import BatchedTable

RECORDS = int(sys.argv[1]) if len(sys.argv) > 1 else 300_000
KEYS = 100_000


class Store:
    offset_key = b"__faust\0offset__"

    def __init__(self, path: Path):
        self.db = Rdict(str(path), Options(raw_mode=True))

    def _db_for_partition(self, partition: int) -> Rdict:
        return self.db


class Table:
    def __init__(self, store, changelog):
        self.name, self.data = "bench", store
        self.changelog_topic = type("T", (), {"get_topic_name": lambda self: changelog})()


def main() -> None:
    settings = Settings.from_env()
    topic = f"bench.restore-{uuid.uuid4().hex[:8]}"
    ensure_topic(settings, topic, partitions=1, compacted=True)
    producer = Producer(producer_config(settings, **{"transactional.id": topic, "linger.ms": 20}))
    producer.init_transactions(30)
    value = b"x" * 200
    for start in range(0, RECORDS, 2000):
        producer.begin_transaction()
        for i in range(start, min(start + 2000, RECORDS)):
            while True:
                try:
                    producer.produce(topic, key=b"state:%d" % (i % KEYS), value=value, partition=0)
                    break
                except BufferError:
                    producer.poll(0.01)
        producer.commit_transaction(60)
    runs, raw = [], []
    for _ in range(3):
        started = time.monotonic()  # the same-run baseline: the same read, applying nothing
        assert read_tails(settings, {(topic, 0): 0}, lambda where, records: None, 600)[(topic, 0)] == RECORDS
        raw.append(time.monotonic() - started)
        with tempfile.TemporaryDirectory() as tmp:
            table = BatchedTable(Table(Store(Path(tmp) / "db"), topic))
            transactions = Transactions(settings, {"agent": ("source",)})
            transactions.tasks[("agent", 0)] = Task("agent", 0, producer=None, positions={"source": 0})

            async def restore():
                return await transactions.restore({(topic, 0): None}, lambda where, records: table.restore(0, records))
            started = time.monotonic()
            counts = asyncio.run(restore())
            seconds = time.monotonic() - started
            assert counts[(topic, 0)] == RECORDS, counts
            assert table.persisted_offset(0) is not None
            table.table.data.db.close()
            runs.append(seconds)
    print(json.dumps({"records": RECORDS, "keys": KEYS, "value_bytes": 200, "seconds": runs, "raw_read_seconds": raw,
                      "records_per_s_median": round(RECORDS / statistics.median(runs)),
                      "raw_read_records_per_s_median": round(RECORDS / statistics.median(raw)),
                      "ratio_to_raw_read": round(statistics.median(raw) / statistics.median(runs), 2)}))


if __name__ == "__main__":
    main()
