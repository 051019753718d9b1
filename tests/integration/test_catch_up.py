"""A task's catch-up (`Transactions.catch_up`) against a real broker: it reads a changelog partition past
the local table's offset to its end, committed records only, and only once per task."""
from __future__ import annotations

import asyncio

from confluent_kafka import Producer

from streams.kafka.admin import ensure_topic
from streams.kafka.producer import producer_config
from streams.kafka.transactions import Task, Transactions

TOPIC = "test.catch-up-changelog"
AT_END = "test.catch-up-at-end"


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


def test_a_task_behind_its_changelog_reads_the_committed_records_past_its_table_once(kafka):
    ensure_topic(kafka, TOPIC, partitions=2, compacted=True)
    transaction(kafka, [(b"state:A", b"a1"), (b"state:B", b"b1")], commit=True)  # offsets 0, 1; marker 2
    transaction(kafka, [(b"state:A", b"aborted")], commit=False)  # 3; marker 4
    transaction(kafka, [(b"state:A", b"a2"), (b"state:C", None)], commit=True)  # 5, 6; marker 7
    transactions = Transactions(kafka, {"agent": ("source",)})
    transactions.tasks[("agent", 1)] = Task("agent", 1, producer=None, positions={"source": 0})
    behind = []
    transactions.on_behind = lambda agent, changelog, records: behind.append((agent, changelog, records))

    async def catch_up(applied):
        return await transactions.catch_up("agent", 1, applied)

    assert transactions.needs_catch_up("agent", 1)
    tails = asyncio.run(catch_up({TOPIC: 0}))  # the local table holds offset 0 (state:A = a1)

    assert tails == {TOPIC: [(1, b"state:B", b"b1"), (5, b"state:A", b"a2"), (6, b"state:C", None)]}
    assert behind == [("agent", TOPIC, 3)]
    assert not transactions.needs_catch_up("agent", 1)
    assert asyncio.run(catch_up({TOPIC: 0})) == {}  # caught up: not read again


def test_a_task_whose_table_is_at_the_changelogs_end_finds_nothing_to_read(kafka):
    ensure_topic(kafka, AT_END, partitions=2, compacted=True)
    transaction(kafka, [(b"state:D", b"d1")], commit=True, topic=AT_END,
                transactional_id="test-catch-up-2")
    transactions = Transactions(kafka, {"agent": ("source",)})
    transactions.tasks[("agent", 1)] = Task("agent", 1, producer=None, positions={"source": 0})
    last = asyncio.run(transactions.catch_up("agent", 1, {AT_END: None}))[AT_END][-1]  # everything, from the start
    assert last[1:] == (b"state:D", b"d1")

    transactions.tasks[("agent", 1)] = Task("agent", 1, producer=None, positions={"source": 0})
    assert asyncio.run(transactions.catch_up("agent", 1, {AT_END: last[0]})) == {}
