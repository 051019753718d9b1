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
import logging
import threading
import time
from typing import Any, Awaitable, Optional

from confluent_kafka import KafkaException, Producer as LibrdkafkaProducer
from faust.exceptions import ProducerSendError
from faust.transport.drivers.aiokafka import Producer as AIOKafkaDriverProducer
from faust.types.tuples import TP, RecordMetadata

FLUSH_TIMEOUT_S = 120.0

log = logging.getLogger(__name__)


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

    def produce_now(self, topic: str, key: bytes, value: bytes, headers=None, message=None) -> bool:
        """Hands one record to librdkafka without a future: for records nobody awaits one by one.

        Still covered by the commit: `flush` waits for these too, and a refused one fails it.
        Faust's sensors (metrics) hear of the send with `message` as the record. Returns False when
        this producer is not sending through librdkafka (yet).
        """
        rd = self._rd
        if rd is None:
            return False
        state = self.app.sensors.on_send_initiated(self, topic, message=message, keysize=len(key),
                                                   valsize=len(value) if value else 0)
        on_delivery = lambda err, msg, state=state: self._delivered.append((state, err, msg))  # noqa: E731
        while True:
            try:
                if headers:
                    rd.produce(topic, value=value, key=key, headers=list(headers), on_delivery=on_delivery)
                else:
                    rd.produce(topic, value=value, key=key, on_delivery=on_delivery)
                return True
            except BufferError:  # full: let librdkafka drain, then try again
                rd.poll(0.005)

    def produce_batch(self, topic: str, partition: int, entries: list, acknowledged) -> bool:
        """Hands one partition's records (key, value; None is a tombstone) to librdkafka at once.

        `acknowledged(offset of the last)` runs on the event loop once the broker has them all (one
        partition's records are acknowledged in order, so the last one's answer covers the rest). A
        refused record fails the next `flush`, and so the commit. Returns False when this producer is
        not sending through librdkafka (yet).
        """
        rd = self._rd
        if rd is None:
            return False
        last = len(entries) - 1
        note_failure = self._note_failure
        on_last = _Acknowledged(acknowledged)
        for index, (key, value) in enumerate(entries):
            on_delivery = note_failure if index < last else (
                lambda err, msg, waiter=on_last: self._delivered.append((waiter, err, msg)))
            while True:
                try:
                    rd.produce(topic, value=value, key=key, partition=partition, on_delivery=on_delivery)
                    break
                except BufferError:  # full: let librdkafka drain, then try again
                    rd.poll(0.005)
        return True

    def _note_failure(self, err, msg) -> None:
        # librdkafka's threads call this; a list append needs no lock.
        if err is not None:
            self._failures.append(f"{msg.topic()}[{msg.partition()}]: {err}")

    async def send_and_wait(self, topic, key, value, partition, timestamp, headers, *,
                            transactional_id: Optional[str] = None) -> RecordMetadata:
        future = await self.send(topic, key, value, partition, timestamp, headers,
                                 transactional_id=transactional_id)
        return await future

    async def flush(self) -> None:
        # Faust's buffer of send_soon() records (the table changelog writes) hands them to send() first.
        # Its flush() gives up after 0.1 s without a record sent and returns with records still queued;
        # Faust then commits offsets whose changelog writes a crash would lose. Drain it for real.
        deadline = time.monotonic() + FLUSH_TIMEOUT_S
        await super().flush()
        while self.buffer.size:
            if time.monotonic() > deadline:
                raise ProducerSendError(f"{self.buffer.size} changelog records still queued after {FLUSH_TIMEOUT_S:.0f} s")
            await super().flush()
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
        sensors = self.app.sensors
        while delivered:
            waiter, err, msg = delivered.popleft()
            if type(waiter) is _Acknowledged:  # produce_batch
                if err is not None:
                    self._failures.append(f"{msg.topic()}[{msg.partition()}]: {err}")
                else:
                    try:
                        waiter.callback(msg.offset())
                    except Exception:  # bookkeeping only: never lose the other deliveries over it
                        log.exception("after a changelog batch was acknowledged")
                continue
            untracked = not isinstance(waiter, asyncio.Future)  # produce_now: the sensors' state instead
            if not untracked and waiter.done():
                continue
            if err is not None:
                self._failures.append(str(err))
                if untracked:
                    sensors.on_send_error(self, KafkaException(err), waiter)
                else:
                    waiter.set_exception(ProducerSendError(f"delivery failed: {err}"))
                continue
            topic, partition = msg.topic(), msg.partition()
            metadata = RecordMetadata(topic=topic, partition=partition, topic_partition=TP(topic, partition),
                                      offset=msg.offset(), timestamp=msg.timestamp()[1] / 1000.0, timestamp_type=None)
            if untracked:
                sensors.on_send_completed(self, waiter, metadata)
            else:
                waiter.set_result(metadata)


class _Acknowledged:
    """What `produce_batch` waits on: a callback, told the offset of the batch's last record."""

    __slots__ = ("callback",)

    def __init__(self, callback):
        self.callback = callback


def producer_class(rd_config: dict) -> type[RdProducer]:
    """An `RdProducer` class bound to one configuration (Faust instantiates producers itself)."""
    return type("RdProducer", (RdProducer,), {"rd_config": dict(rd_config)})


__all__ = ["RdProducer", "producer_class", "KafkaException"]
