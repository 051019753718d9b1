"""What one Kafka transaction costs on this broker with next to nothing in it (bench/RESULTS.md).

    python bench/transaction_floor.py --transactions 200 --producers 4

Each producer (its own transactional id, in its own thread, as streambank's tasks are) runs
back-to-back transactions shaped like a streambank batch on one input partition: 20 records to an
output topic and 20 to a "changelog", the input offset sent to the transaction, flush, commit. The
phases are timed apart. This is the floor under every hop of the pipeline: a batch cannot commit
faster than this whatever the worker does. Topics `bench.txn-floor.*` (4 partitions) are created if
missing on $KAFKA_BOOTSTRAP_SERVERS; the group `bench-txn-floor` has no members, as streambank's own
offset-committing consumer has none.
"""
from __future__ import annotations

import argparse
import json
import statistics
import threading
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from streams.config import Settings
from streams.kafka.producer import producer_config

TOPICS = ("bench.txn-floor.in", "bench.txn-floor.out", "bench.txn-floor.changelog")
PHASES = ("produce", "send_offsets", "flush", "commit", "total")


def ensure_topics(settings: Settings) -> None:
    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
    missing = [t for t in TOPICS if t not in admin.list_topics(timeout=10).topics]
    if not missing:
        return
    for future in admin.create_topics([NewTopic(t, 4, 1) for t in missing]).values():
        future.result()


def run(settings: Settings, tid: str, partitions: list[int], count: int, extra: dict, out: dict) -> None:
    group = Consumer(settings.consumer_config(**{"group.id": "bench-txn-floor"}))
    metadata = group.consumer_group_metadata()
    # As streambank's transactional producers are configured (streams.kafka.transactions).
    producer = Producer(producer_config(settings, **{"transactional.id": tid, "linger.ms": 5,
                                                     "retry.backoff.ms": 5, "compression.type": "none",
                                                     **extra}))
    producer.init_transactions(30)
    timings = {phase: [] for phase in PHASES}
    for i in range(count):
        t0 = time.perf_counter()
        producer.begin_transaction()
        for partition in partitions:
            for _ in range(20):
                producer.produce(TOPICS[1], b"v" * 100, key=b"k", partition=partition)
                producer.produce(TOPICS[2], b"v" * 100, key=b"k", partition=partition)
        t1 = time.perf_counter()
        producer.send_offsets_to_transaction([TopicPartition(TOPICS[0], p, i) for p in partitions], metadata, 30)
        t2 = time.perf_counter()
        producer.flush(30)
        t3 = time.perf_counter()
        producer.commit_transaction(30)
        t4 = time.perf_counter()
        for phase, seconds in zip(PHASES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0)):
            timings[phase].append(seconds * 1000)
    group.close()
    out[tid] = timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--transactions", type=int, default=200, help="transactions per producer")
    parser.add_argument("--producers", type=int, default=4,
                        help="concurrent producers, one input partition each; 1 = one producer over all four")
    parser.add_argument("--config", action="append", default=[], metavar="KEY=VALUE",
                        help="extra librdkafka producer setting (repeatable)")
    args = parser.parse_args()
    settings = Settings.from_env()
    ensure_topics(settings)
    extra = dict(item.split("=", 1) for item in args.config)
    out: dict = {}
    if args.producers == 1:
        layout = [("bench-txn-floor-all", [0, 1, 2, 3])]
    else:
        layout = [(f"bench-txn-floor-{p}", [p % 4]) for p in range(args.producers)]
    run(settings, layout[0][0] + "-warmup", layout[0][1], 20, extra, {})  # coordinator load, first init
    started = time.perf_counter()
    threads = [threading.Thread(target=run, args=(settings, tid, parts, args.transactions, extra, out))
               for tid, parts in layout]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    merged = {phase: [v for timings in out.values() for v in timings[phase]] for phase in PHASES}
    total = sorted(merged["total"])
    print(json.dumps({
        "producers": args.producers, "transactions": len(total), "config": extra,
        "transactions_per_s": round(len(total) / elapsed, 1),
        "median_ms": {phase: round(statistics.median(values), 2) for phase, values in merged.items()},
        "p90_total_ms": round(total[int(0.9 * (len(total) - 1))], 2),
    }, indent=2))


if __name__ == "__main__":
    main()
