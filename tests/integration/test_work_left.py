"""`work_left` against a real broker: what a consumer group has yet to process, transaction markers not
counted as work (the bench waits on it between phases)."""
from __future__ import annotations

from confluent_kafka import Consumer, Producer, TopicPartition

from streams.kafka.admin import ensure_topic
from streams.kafka.producer import producer_config
from streams.kafka.reader import work_left

TOPIC = "test.work-left"


def commit(settings, group: str, offset: int) -> None:
    consumer = Consumer(settings.consumer_config(**{"group.id": group, "enable.auto.commit": False}))
    try:
        consumer.commit(offsets=[TopicPartition(TOPIC, 0, offset)], asynchronous=False)
    finally:
        consumer.close()


def test_a_group_past_its_last_record_has_no_work_left_though_a_commit_marker_follows_it(kafka):
    ensure_topic(kafka, TOPIC, partitions=1, compacted=False)
    producer = Producer(producer_config(kafka, **{"transactional.id": "test-work-left"}))
    producer.init_transactions(30)
    producer.begin_transaction()
    for value in (b"1", b"2", b"3"):
        producer.produce(TOPIC, key=b"k", value=value, partition=0)
    producer.commit_transaction(30)  # records at 0-2, the marker at 3: the end offset is 4

    assert work_left(kafka, "test-work-left-none", [TOPIC]) == 4  # nothing committed: everything is work
    commit(kafka, "test-work-left-done", 3)  # one past the last record, as a transactional reader commits
    assert work_left(kafka, "test-work-left-done", [TOPIC]) == 0

    plain = Producer(producer_config(kafka))
    plain.produce(TOPIC, key=b"k", value=b"4", partition=0)  # a record outside any transaction, at 4
    plain.flush(30)
    assert work_left(kafka, "test-work-left-done", [TOPIC]) == 2  # the marker and the record after it

    producer.begin_transaction()
    producer.produce(TOPIC, key=b"k", value=b"open", partition=0)  # at 5
    producer.flush(30)
    commit(kafka, "test-work-left-done", 5)
    # Read committed, the partition ends where the open transaction starts: its record is no work yet.
    assert work_left(kafka, "test-work-left-done", [TOPIC]) == 0
    producer.commit_transaction(30)  # the marker at 6
    assert work_left(kafka, "test-work-left-done", [TOPIC]) == 2
