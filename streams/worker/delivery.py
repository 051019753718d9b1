"""How a fetched record reaches the agents that read its topic.

Faust hands each record to its conductor, which per record takes a lock, awaits flow control and
the producer buffer, builds an `Event` through the channel's schema and `app.create_event`, and puts
it into each subscribed channel's queue: about a tenth of a worker's event loop in bulk deposits
(py-spy, bench/RESULTS.md). Our agents read raw bytes (`RawBytes`) and take from their queues in batches
(`streams.worker.batches.take_batches`), needing only a record's key, value and Faust message.
`Delivery` puts such a record into those queues directly, as Faust would, with the same
back-pressure (`put_nowait_enhanced`, pausing the partition's fetch when a queue fills). Whenever
Faust's path would wait or do more (flow control suspended for a rebalance, the subscription being
updated, the producer buffer full, a queue full, a channel of another kind), it is left to Faust.
"""
from __future__ import annotations

import faust
from faust.types import TP


class RawBytes(faust.Schema):
    """Keys and values as the broker gave them, for the services decode them (Avro) themselves: what
    Faust's "raw" serializer returns, without its codec registry's lookups for every record."""

    def loads_key(self, app, message, *, loads=None, serializer=None):
        return message.key

    def loads_value(self, app, message, *, loads=None, serializer=None):
        return message.value


class Record:
    """What an agent's batch reads of a record: its key, value and Faust message (offsets, acks)."""

    __slots__ = ("key", "value", "message")

    def __init__(self, key, value, message):
        self.key = key
        self.value = value
        self.message = message


class Delivery:
    """Puts records straight into the queues of the agents reading their partitions (see the module)."""

    def __init__(self, app: faust.App):
        self.app = app
        #: tp → (Faust's handler for it when planned, [(queue, on_pressure_high, on_pressure_drop)] or None).
        self._plans: dict[TP, tuple[object, list | None]] = {}

    def deliver(self, message) -> bool:
        """Whether the record was delivered; False: Faust's conductor must take it."""
        conductor = self.app.topics
        tp = message.tp
        handler = conductor._tp_to_callback.get(tp)
        planned = self._plans.get(tp)
        if planned is None or planned[0] is not handler:  # the assignment changed: Faust built new handlers
            planned = self._plans[tp] = (handler, self._plan(tp, handler))
        plan = planned[1]
        if plan is None or conductor._tp_to_callback_lock.locked() or not self.app.flow_control.is_active():
            return False
        buffer = self.app.producer.buffer
        if buffer.size > buffer.max_messages:
            return False
        for queue, _, _ in plan:
            if queue.full():
                return False
        message.incref(len(plan))
        record = Record(message.key, message.value, message)
        for queue, on_pressure_high, on_pressure_drop in plan:
            queue.put_nowait_enhanced(record, on_pressure_high=on_pressure_high, on_pressure_drop=on_pressure_drop)
        return True

    def _plan(self, tp: TP, handler) -> list | None:
        channels = self.app.topics._tp_index.get(tp)
        if handler is None or not channels or not all(isinstance(c.schema, RawBytes) for c in channels):
            return None
        consumer, sensors = self.app.consumer, self.app.sensors
        tp = TP(tp.topic, tp.partition)  # Faust's own (a message's may be aiokafka's): the consumer asserts it

        def on_pressure_high() -> None:  # as Faust's conductor: stop fetching the partition for now
            sensors.on_topic_buffer_full(tp)
            consumer.on_buffer_full(tp)

        def on_pressure_drop() -> None:
            consumer.on_buffer_drop(tp)
        return [(channel.queue, on_pressure_high, on_pressure_drop) for channel in channels]
