"""Offsets move only with the effects: the lead "Faust commits from acks past records it never handed to an
agent", confirmed on Faust's own bookkeeping, and the workers' consumer that never sends such a commit."""
from __future__ import annotations

import asyncio
from collections import defaultdict
from types import SimpleNamespace

from faust.transport.consumer import Consumer as FaustConsumer
from faust.types import TP
from intervaltree import IntervalTree

from streams.worker.app import TransactionalConsumer

TP0 = TP("bank.accounts.commands", 0)


def faust_bookkeeping(acked: list[int], committed: int | None) -> SimpleNamespace:
    return SimpleNamespace(_acked=defaultdict(list, {TP0: list(acked)}), _acked_index=defaultdict(set),
                           _gap=defaultdict(IntervalTree), _committed_offset=defaultdict(lambda: None,
                                                                                      {TP0: committed}))


def test_given_faust_forgot_the_committed_offset_after_a_revoke_then_it_commits_past_records_never_acked():
    # Records 0-4 were never handed to the agent; 5-7 were acked. After a revoke Faust pops the committed
    # offset, so its gap check is skipped: it would commit 8, and records 0-4 would never be processed.
    consumer = faust_bookkeeping(acked=[5, 6, 7], committed=None)
    assert FaustConsumer._new_offset(consumer, TP0) == 8


def test_given_the_record_at_the_committed_offset_unacked_then_faust_commits_past_it():
    # Committed at 4 (the next record to read is 4); 4 never acked, 5-7 acked: `min(acked) - 4 > 1` is false.
    consumer = faust_bookkeeping(acked=[5, 6, 7], committed=4)
    assert FaustConsumer._new_offset(consumer, TP0) == 8


def test_given_the_workers_consumer_when_faust_commits_then_nothing_is_sent_to_kafka():
    sent = []

    async def commit_to_kafka(offsets):
        sent.append(offsets)
        return True
    consumer = SimpleNamespace(_committed_offset={}, _commit=commit_to_kafka,
                               _thread=SimpleNamespace(tp_last_committed_at={}))
    assert asyncio.run(TransactionalConsumer._commit_offsets(consumer, {TP0: 8}))
    assert sent == []  # offsets reach Kafka only inside the batches' transactions (streams.kafka.transactions)
    assert consumer._committed_offset == {TP0: 8}  # Faust's ack bookkeeping still trims
    assert TP0 in consumer._thread.tp_last_committed_at  # and its livelock check hears of the commit
