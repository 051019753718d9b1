"""`bank replay views` throughput beside the raw consume rate of the same topic (bench/RESULTS.md).

    python bench/replay_views.py --events 120000 --accounts 1000

Needs a broker at $KAFKA_BOOTSTRAP_SERVERS with `bank topics create` done (and, for the full
command, a worker: run `bank replay views --view accounts --json` afterwards). Produces the account
events straight to bank.accounts.events (a benchmark fixture, like `bank bench replay`), then times
(1) a bare confluent-kafka consume loop over the topic, (2) the fold `bank replay views` does
(read, decode once, project with the workers' AccountProjector into dicts), same topic, same process.
"""
from __future__ import annotations

import argparse
import json
import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from streams.contract import topics
from streams.contract.avro import Codec
from streams.bench.workloads import _account_events
from streams.kafka.producer import producer_config
from streams.config import Settings
from streams.ops.replay import fold_views


def raw_consume(settings: Settings, topic: str) -> tuple[int, float]:
    consumer = Consumer(settings.consumer_config(**{
        "group.id": f"bench-raw-{uuid.uuid4().hex}", "enable.auto.commit": False,
        "fetch.max.bytes": 64 * 1024 * 1024, "max.partition.fetch.bytes": 16 * 1024 * 1024,
        "queued.max.messages.kbytes": 256 * 1024}))
    partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
    ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in partitions}
    pending = {p for p, end in ends.items() if end > 0}
    started = time.monotonic()
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in pending])
    count = 0
    while pending:
        for message in consumer.consume(10_000, timeout=0.5):
            if message.error() is None:
                count += 1
                if message.offset() + 1 >= ends[message.partition()]:
                    pending.discard(message.partition())
    elapsed = time.monotonic() - started
    consumer.close()
    return count, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=120_000)
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--no-produce", action="store_true", help="Measure the log as it is.")
    args = parser.parse_args()
    settings = Settings.from_env()
    if not args.no_produce:
        records, _ = _account_events(args.accounts, args.events, Codec())
        producer = __import__("confluent_kafka").Producer(producer_config(settings))
        for key, value in records:
            while True:
                try:
                    producer.produce(topics.ACCOUNT_EVENTS.name, key=key, value=value)
                    break
                except BufferError:
                    producer.poll(0.05)
            producer.poll(0)
        producer.flush(120)
    count, raw_s = raw_consume(settings, topics.ACCOUNT_EVENTS.name)
    fold = fold_views(settings, ["accounts"])
    print(json.dumps({
        "events": count, "raw_consume_s": round(raw_s, 3), "raw_consume_per_s": round(count / raw_s),
        "replay_fold_events": fold.snapshot.records, "replay_fold_s": round(fold.snapshot.seconds, 3),
        "replay_fold_per_s": round(fold.snapshot.records / fold.snapshot.seconds),
        "entries": sum(len(t) for per in fold.entries["accounts"].values() for t in per.values())}))


if __name__ == "__main__":
    main()
