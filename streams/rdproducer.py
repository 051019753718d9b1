"""Faust's producer with the sending done by librdkafka (confluent-kafka) instead of aiokafka.

Why: in a worker most produced records are table changelog writes and the agents' events and
outcomes (nine per deposit). Through aiokafka every record costs Python work on the event loop
(accumulator, partitioner, request encoding, socket writes): about a fifth of a worker's time in
the profile. librdkafka batches, encodes and sends in its own C threads, off the GIL, on the other
core.

At-least-once is kept: Faust flushes its producer before it commits any offset, and `flush` here
returns only when librdkafka has every record acknowledged (acks=all, idempotent), or raises if any
was refused, so that the commit fails and the records are processed again.

Faust's aiokafka producer is still started: Faust uses it for topic declaration and for the key
partitioner of its tables (murmur2, as here).
"""
from __future__ import annotations

import asyncio
import collections
import threading
from typing import Any, Awaitable, Optional

from confluent_kafka import KafkaException, Producer as LibrdkafkaProducer
from faust.exceptions import ProducerSendError
from faust.transport.drivers.aiokafka import Producer as AIOKafkaDriverProducer
from faust.types.tuples import TP, RecordMetadata

FLUSH_TIMEOUT_S = 120.0


class RdProducer(AIOKafkaDriverProducer):
    """Sends through librdkafka; the rest (declaring topics, partitioning keys) stays Faust's."""

    #: confluent-kafka configuration; set by `producer_class`.
    rd_config: dict = {}

    def __post_init__(self) -> None:
        super().__post_init__()
        self._rd: LibrdkafkaProducer | None = None
        self._delivered: collections.deque = collections.deque()
        self._wakeup_scheduled = False
        self._wakeup_lock = threading.Lock()
        self._polling = threading.Event()
        self._poller: threading.Thread | None = None
        self._failures: list[str] = []
        self._event_loop: asyncio.AbstractEventLoop | None = None

    async def on_start(self) -> None:
        await super().on_start()
        self._event_loop = asyncio.get_running_loop()
        self._rd = LibrdkafkaProducer(self.rd_config)
        self._polling.set()
        self._poller = threading.Thread(target=self._poll_deliveries, name="rdproducer-poll", daemon=True)
        self._poller.start()

    async def on_stop(self) -> None:
        if self._rd is not None:
            await self._flush_rd()
            self._polling.clear()
            if self._poller is not None:
                self._poller.join(timeout=5)
        await super().on_stop()

    # -- sending --------------------------------------------------------------------------------
    async def send(self, topic: str, key: Optional[bytes], value: Optional[bytes], partition: Optional[int],
                   timestamp: Optional[float], headers: Any, *,
                   transactional_id: Optional[str] = None) -> Awaitable[RecordMetadata]:
        if transactional_id:
            raise ProducerSendError("transactions go through Faust's own producer, not this one")
        rd = self._rd
        if rd is None:
            return await super().send(topic, key, value, partition, timestamp, headers)
        future = self._event_loop.create_future()
        extra = {}
        if headers:
            extra["headers"] = list(headers.items()) if hasattr(headers, "items") else list(headers)
        if partition is not None:
            extra["partition"] = partition
        if timestamp:
            extra["timestamp"] = int(timestamp * 1000)
        while True:
            try:
                rd.produce(topic, value=value, key=key,
                           on_delivery=lambda err, msg, future=future: self._delivered.append((future, err, msg)),
                           **extra)
                break
            except BufferError:  # librdkafka's queue is full: let it drain, then try again
                await asyncio.sleep(0.005)
        return future

    def produce_now(self, topic: str, key: bytes, value: bytes, headers=None) -> bool:
        """Hands one record to librdkafka without a future: for records nobody awaits one by one.

        Still covered by the commit: `flush` waits for these too, and a refused one fails it.
        Returns False when this producer is not sending through librdkafka (yet).
        """
        rd = self._rd
        if rd is None:
            return False
        while True:
            try:
                if headers:
                    rd.produce(topic, value=value, key=key, headers=list(headers), on_delivery=self._on_untracked)
                else:
                    rd.produce(topic, value=value, key=key, on_delivery=self._on_untracked)
                return True
            except BufferError:  # full: serve deliveries here, then try again
                rd.poll(0.005)

    def _on_untracked(self, err, msg) -> None:
        if err is not None:
            self._failures.append(str(err))

    async def send_and_wait(self, topic, key, value, partition, timestamp, headers, *,
                            transactional_id: Optional[str] = None) -> RecordMetadata:
        future = await self.send(topic, key, value, partition, timestamp, headers,
                                 transactional_id=transactional_id)
        return await future

    async def flush(self) -> None:
        await super().flush()  # Faust's buffer of send_soon() records hands them to send() first
        await self._flush_rd()
        if self._failures:
            failures, self._failures = self._failures[:5], []
            raise ProducerSendError(f"librdkafka refused records: {failures}")

    async def _flush_rd(self) -> None:
        rd = self._rd
        if rd is None or len(rd) == 0:
            return
        remaining = await asyncio.get_running_loop().run_in_executor(None, rd.flush, FLUSH_TIMEOUT_S)
        if remaining:
            raise ProducerSendError(f"{remaining} records still unacknowledged after {FLUSH_TIMEOUT_S:.0f} s")
        self._resolve_delivered()

    # -- deliveries: librdkafka's thread collects them, the event loop resolves them in batches ---
    def _poll_deliveries(self) -> None:
        rd = self._rd
        while self._polling.is_set():
            served = rd.poll(0.05)
            if served and self._delivered:
                self._wake_event_loop()

    def _wake_event_loop(self) -> None:
        # One wake-up per batch of deliveries, not one per record: each wake-up is a syscall.
        with self._wakeup_lock:
            if self._wakeup_scheduled:
                return
            self._wakeup_scheduled = True
        try:
            self._event_loop.call_soon_threadsafe(self._resolve_delivered)
        except RuntimeError:  # the loop is closed: we are shutting down
            pass

    def _resolve_delivered(self) -> None:
        with self._wakeup_lock:
            self._wakeup_scheduled = False
        delivered = self._delivered
        while delivered:
            future, err, msg = delivered.popleft()
            if future.done():
                continue
            if err is not None:
                self._failures.append(str(err))
                future.set_exception(ProducerSendError(f"delivery failed: {err}"))
                continue
            topic, partition = msg.topic(), msg.partition()
            future.set_result(RecordMetadata(topic=topic, partition=partition,
                                             topic_partition=TP(topic, partition), offset=msg.offset(),
                                             timestamp=msg.timestamp()[1] / 1000.0, timestamp_type=None))


def producer_class(rd_config: dict) -> type[RdProducer]:
    """An `RdProducer` class bound to one configuration (Faust instantiates producers itself)."""
    return type("RdProducer", (RdProducer,), {"rd_config": dict(rd_config)})


__all__ = ["RdProducer", "producer_class", "KafkaException"]
