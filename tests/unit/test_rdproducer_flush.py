"""The worker's producer flush drains Faust's changelog buffer for real before offsets are committed."""
from __future__ import annotations

import asyncio

from streams.rdproducer import RdProducer


class SlowBuffer:
    """Faust's ProducerBuffer as it behaves under load: each flush() hands on one record and gives up."""

    def __init__(self, queued: int):
        self.size = queued
        self.flushes = 0

    async def flush(self) -> None:
        self.flushes += 1
        if self.size:
            self.size -= 1


def a_producer_with(buffer) -> RdProducer:
    producer = RdProducer.__new__(RdProducer)  # no transport: only flush() is under test
    producer.buffer = buffer
    producer._producer = None
    producer._transaction_producers = {}
    producer._rd = None
    producer._failures = []
    return producer


def test_given_changelog_records_still_queued_when_flushing_then_it_returns_only_once_all_are_handed_on():
    buffer = SlowBuffer(queued=5)
    asyncio.run(a_producer_with(buffer).flush())
    assert buffer.size == 0
    assert buffer.flushes >= 5


def test_given_an_empty_buffer_when_flushing_then_it_flushes_once():
    buffer = SlowBuffer(queued=0)
    asyncio.run(a_producer_with(buffer).flush())
    assert buffer.flushes == 1
