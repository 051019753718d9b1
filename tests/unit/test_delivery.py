"""Records for the agents go straight into their queues (streams.worker.delivery.Delivery), as Faust's
conductor would put them, back-pressure included; anything Faust's path would wait on is left to it."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

import faust
from aiokafka.structs import TopicPartition
from faust.types import TP
from mode.utils.queues import FlowControlEvent, ThrowableQueue

from streams.worker.delivery import Delivery, RawBytes

COMMANDS = TP("bank.accounts.commands", 2)


class Message:
    """Faust's consumer message as delivery sees it: a partition, key and value, a reference count."""

    def __init__(self, offset: int, tp=COMMANDS):
        self.tp, self.topic, self.partition, self.offset = tp, tp.topic, tp.partition, offset
        self.key, self.value = b"A", b"command %d" % offset
        self.refcount = 0

    def incref(self, n: int = 1) -> None:
        self.refcount += n


class Channel:
    """An agent's channel as the conductor indexes it (hashable, as Faust's topics are)."""

    def __init__(self, schema, queue):
        self.schema, self.queue = schema, queue


class Worker:
    """What `Delivery` reads of a Faust app: the conductor's indexes, flow control, producer buffer."""

    def __init__(self, maxsize: int = 100, schema=None):
        self.flow = FlowControlEvent()
        self.flow.resume()
        self.queue = ThrowableQueue(maxsize=maxsize, flow_control=self.flow)
        self.channel = Channel(schema or RawBytes(key_type=bytes, value_type=bytes), self.queue)
        self.paused: list = []
        self.resumed: list = []
        self.full_counted: list = []
        self.handler = object()  # Faust's compiled handler for the partition (rebuilt on each assignment)
        self.app = SimpleNamespace(
            topics=SimpleNamespace(_tp_to_callback={COMMANDS: self.handler}, _tp_index={COMMANDS: {self.channel}},
                                   _tp_to_callback_lock=asyncio.Lock()),
            flow_control=self.flow,
            producer=SimpleNamespace(buffer=SimpleNamespace(size=0, max_messages=100)),
            consumer=SimpleNamespace(on_buffer_full=self.paused.append, on_buffer_drop=self.resumed.append),
            sensors=SimpleNamespace(on_topic_buffer_full=self.full_counted.append))


def test_given_a_partition_an_agent_reads_when_a_record_comes_then_its_key_value_and_message_are_in_the_agents_queue():
    worker = Worker()
    message = Message(7)

    assert Delivery(worker.app).deliver(message)

    record = worker.queue.get_nowait()
    assert (record.key, record.value, record.message) == (b"A", b"command 7", message)
    assert message.refcount == 1  # acked once its batch ends, as with Faust's own delivery


def test_given_flow_control_suspended_for_a_rebalance_then_the_record_is_left_to_faust():
    worker = Worker()
    worker.flow.suspend()

    assert not Delivery(worker.app).deliver(Message(7))
    assert worker.queue.empty()


def test_given_the_subscription_being_updated_then_the_record_is_left_to_faust():
    async def during_an_update():
        worker = Worker()
        async with worker.app.topics._tp_to_callback_lock:
            return Delivery(worker.app).deliver(Message(7)), worker.queue.empty()
    assert asyncio.run(during_an_update()) == (False, True)


def test_given_a_full_queue_or_producer_buffer_then_the_record_is_left_to_faust_which_waits_for_room():
    worker = Worker(maxsize=1)
    delivery = Delivery(worker.app)
    assert delivery.deliver(Message(1))
    assert not delivery.deliver(Message(2))
    assert worker.queue.qsize() == 1

    roomy = Worker()
    roomy.app.producer.buffer.size = 101
    assert not Delivery(roomy.app).deliver(Message(1))


def test_given_a_channel_that_does_not_read_raw_bytes_then_its_records_are_left_to_faust():
    worker = Worker(schema=faust.Schema(key_type=str, value_type=str))

    assert not Delivery(worker.app).deliver(Message(7))


def test_given_a_queue_under_pressure_then_the_partitions_fetch_pauses_and_resumes_as_it_drains_with_fausts_tp():
    worker = Worker(maxsize=10)  # high pressure at 8 queued (Faust: maxsize / 1.25), drop below 4
    delivery = Delivery(worker.app)
    aiokafka_tp = TopicPartition(COMMANDS.topic, COMMANDS.partition)  # what a fetched message may carry
    for offset in range(9):
        assert delivery.deliver(Message(offset, tp=aiokafka_tp))
    assert worker.paused == [COMMANDS] and worker.full_counted == [COMMANDS]
    assert all(type(tp) is TP for tp in worker.paused)  # Faust's consumer asserts its own TP type

    while worker.queue.qsize() > 2:
        worker.queue.get_nowait()
    assert worker.resumed == [COMMANDS] and type(worker.resumed[0]) is TP


def test_given_a_new_assignment_then_the_partitions_new_channels_get_its_records():
    worker = Worker()
    delivery = Delivery(worker.app)
    assert delivery.deliver(Message(1))
    other = Worker()  # the agents' channels after a rebalance: Faust builds a new handler for the partition
    worker.app.topics._tp_index[COMMANDS] = {other.channel}
    worker.app.topics._tp_to_callback[COMMANDS] = object()

    assert delivery.deliver(Message(2))
    assert worker.queue.qsize() == 1 and other.queue.get_nowait().message.offset == 2
