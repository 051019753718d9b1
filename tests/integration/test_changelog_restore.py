"""Restoring tables from their changelogs (`Transactions.restore`, `catch_up`) against a real broker: a
changelog partition is read past the local table's offset to its end, committed records only, in order."""
from __future__ import annotations

import asyncio

from confluent_kafka import Producer

from streams.kafka.admin import ensure_topic
from streams.kafka.producer import producer_config
from streams.kafka.transactions import Task, Transactions

TOPIC = "test.catch-up-changelog"
AT_END = "test.catch-up-at-end"
FROM_NOTHING = "test.catch-up-from-nothing"


def transaction(settings, records, *, commit: bool, topic: str = TOPIC, transactional_id: str = "test-catch-up") -> None:
    producer = Producer(producer_config(settings, **{"transactional.id": transactional_id}))
    producer.init_transactions(30)
    producer.begin_transaction()
    for key, value in records:
        producer.produce(topic, key=key, value=value, partition=1)
    producer.flush(30)
    if commit:
        producer.commit_transaction(30)
    else:
        producer.abort_transaction(30)


def with_task(settings) -> Transactions:
    transactions = Transactions(settings, {"agent": ("source",)})
    transactions.tasks[("agent", 1)] = Task("agent", 1, producer=None, positions={"source": 0})
    return transactions


def test_a_task_behind_its_changelog_gets_the_committed_records_past_its_table_once(kafka):
    ensure_topic(kafka, TOPIC, partitions=2, compacted=True)
    transaction(kafka, [(b"state:A", b"a1"), (b"state:B", b"b1")], commit=True)  # offsets 0, 1; marker 2
    transaction(kafka, [(b"state:A", b"aborted")], commit=False)  # 3; marker 4
    transaction(kafka, [(b"state:A", b"a2"), (b"state:C", None)], commit=True)  # 5, 6; marker 7
    transactions = with_task(kafka)
    behind, applied = [], []
    transactions.on_behind = lambda agent, changelog, records: behind.append((agent, changelog, records))

    async def catch_up():  # the local table holds offset 0 (state:A = a1)
        return await transactions.catch_up("agent", 1, {TOPIC: 0}, lambda topic, records: applied.append((topic, records)))

    assert transactions.needs_catch_up("agent", 1)
    assert asyncio.run(catch_up()) == {TOPIC: 3}
    assert applied == [(TOPIC, [(1, b"state:B", b"b1"), (5, b"state:A", b"a2"), (6, b"state:C", None)])]
    assert behind == [("agent", TOPIC, 3)]
    assert not transactions.needs_catch_up("agent", 1)
    assert asyncio.run(catch_up()) == {} and len(applied) == 1  # caught up: not read again


def test_a_table_at_its_changelogs_end_reads_nothing(kafka):
    ensure_topic(kafka, AT_END, partitions=2, compacted=True)
    transaction(kafka, [(b"state:D", b"d1")], commit=True, topic=AT_END, transactional_id="test-catch-up-2")
    applied = []

    async def restore(offset):
        return await with_task(kafka).restore({(AT_END, 1): offset}, lambda where, records: applied.extend(records))

    assert asyncio.run(restore(None)) == {(AT_END, 1): 1} and applied == [(0, b"state:D", b"d1")]  # from nothing
    assert asyncio.run(restore(0)) == {(AT_END, 1): 0} and len(applied) == 1


def test_a_table_restored_from_nothing_gets_its_whole_changelog_in_order_in_chunks(kafka):
    ensure_topic(kafka, FROM_NOTHING, partitions=2, compacted=True)
    records = [(b"state:%d" % (i % 50), b"v%d" % i) for i in range(12_000)]
    transaction(kafka, records, commit=True, topic=FROM_NOTHING, transactional_id="test-catch-up-3")
    chunks = []

    async def restore():
        return await with_task(kafka).restore({(FROM_NOTHING, 1): None}, lambda where, got: chunks.append(list(got)))

    assert asyncio.run(restore()) == {(FROM_NOTHING, 1): 12_000}
    assert len(chunks) == 3  # 5,000 at a time: a large table is never held whole
    assert [(key, value) for chunk in chunks for _, key, value in chunk] == records
