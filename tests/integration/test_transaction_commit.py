"""One batch's transaction (`Transactions.commit`) against a real broker: what it commits is visible to
read_committed readers with the changelog offsets it reports; a record the broker refuses makes the whole
batch invisible, its changelog writes and offsets included."""
from __future__ import annotations

import asyncio
import time
import uuid

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType
from faust.types import TP

from streams.contract import topics
from streams.kafka.admin import ensure_topic
from streams.kafka.transactions import PartitionEffects, Transactions
from streams.services.handling import Outgoing

from outside import read_committed

SOURCE = "test.txn-source"
CHANGELOG = "test.txn-changelog"
OUTPUT = "test.txn-output"
SMALL = "test.txn-small-records"  # refuses records over 1,000 bytes


def keys(settings, topic: str, partition: int | None = None) -> list[tuple[int, str]]:
    """(offset, key) of every record of `topic` a read_committed reader sees (on `partition`, if given)."""
    return [(r.offset, r.key) for r in read_committed(settings, [topic])[topic]
            if partition is None or r.partition == partition]


def committed_offset(settings, topic: str, partition: int) -> int:
    consumer = Consumer(settings.consumer_config(**{"group.id": topics.APP_ID, "enable.auto.commit": False}))
    try:
        return consumer.committed([TopicPartition(topic, partition)], timeout=10)[0].offset
    finally:
        consumer.close()


def setup_topics(settings) -> None:
    for name, compacted in ((SOURCE, False), (CHANGELOG, True), (OUTPUT, False), (SMALL, False)):
        ensure_topic(settings, name, partitions=2, compacted=compacted)
    admin = AdminClient(settings.confluent_config())
    resource = ConfigResource(ResourceType.TOPIC, SMALL, set_config={"max.message.bytes": "1000"})
    for future in admin.alter_configs([resource]).values():
        future.result(30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # created is not yet led: wait until every partition has a leader
        metadata = admin.list_topics(timeout=10).topics
        if all(name in metadata and metadata[name].error is None and len(metadata[name].partitions) == 2
               and all(p.leader >= 0 for p in metadata[name].partitions.values())
               for name in (SOURCE, CHANGELOG, OUTPUT, SMALL)):
            return
        time.sleep(0.2)
    raise AssertionError("the test topics did not get leaders in 30 s")


async def one_batch(settings, agent: str, effect: PartitionEffects):
    transactions = Transactions(settings, {agent: (SOURCE,)})
    failed = []
    transactions.on_failed = failed.append

    async def seek(tp, offset):
        pass
    transactions.seek = seek
    await transactions.on_assigned([TP(SOURCE, effect.partition)])
    committed = await transactions.commit(agent, [effect])
    await transactions.on_revoked([TP(SOURCE, effect.partition)])
    return committed, failed


def test_a_batch_commits_its_changelog_records_and_offsets_and_reports_the_changelogs_last_offsets(kafka):
    setup_topics(kafka)
    before = len(keys(kafka, CHANGELOG, 1))
    effect = PartitionEffects(
        1, [(CHANGELOG, [(b"state:A", b"a1"), (b"state:B", b"b1"), (b"state:A", b"a2")])],
        [Outgoing(OUTPUT, "k1", b"event-1"), Outgoing(OUTPUT, "k2", b"event-2", [("h", b"v")])], {SOURCE: 7})

    committed, failed = asyncio.run(one_batch(kafka, "commits", effect))

    assert committed == [effect] and failed == []
    changelog = keys(kafka, CHANGELOG, 1)[before:]
    assert [key for _, key in changelog] == ["state:A", "state:B", "state:A"]
    assert effect.changelog_offsets == {CHANGELOG: changelog[-1][0]}
    assert {"k1", "k2"} <= {key for _, key in keys(kafka, OUTPUT)}
    assert committed_offset(kafka, SOURCE, 1) == 7


def test_a_record_the_broker_refuses_leaves_nothing_of_its_batch_visible(kafka):
    setup_topics(kafka)
    marker = uuid.uuid4().hex.encode()
    effect = PartitionEffects(
        0, [(CHANGELOG, [(b"state:" + marker, b"written")])],
        [Outgoing(OUTPUT, marker.decode(), b"small enough"), Outgoing(SMALL, marker.decode(), b"x" * 5000)],
        {SOURCE: 3})

    committed, failed = asyncio.run(one_batch(kafka, "refused", effect))

    assert committed == [] and failed == ["refused"]
    assert "state:" + marker.decode() not in {key for _, key in keys(kafka, CHANGELOG)}
    assert marker.decode() not in {key for _, key in keys(kafka, OUTPUT)}
    assert committed_offset(kafka, SOURCE, 0) < 0  # nothing committed for the source: still unset
