"""Producing from outside the workers: the producer's settings, a produce that waits for room, a bulk
producer to explicit partitions. `ProduceError` is the client's exception, for callers that name it."""
from __future__ import annotations

from confluent_kafka import KafkaException, Producer

from ..config import Settings
from .reader import quiet_logger

ProduceError = KafkaException  # what produce and flush raise, for callers outside streams.kafka


def new_producer(settings: Settings, **config) -> Producer:
    """A producer with `config`, librdkafka's own log lines dropped (its errors reach the caller)."""
    return Producer(settings.confluent_config(**{"logger": quiet_logger(), **config}))


def producer_config(settings: Settings, **extra) -> dict:
    return settings.confluent_config(**{
        "partitioner": "murmur2_random",  # the Java/aiokafka partitioning; librdkafka's default differs
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "lz4",
        **extra,
    })


def produce_when_room(producer: Producer, topic: str, *, wait: float = 0.05, **record) -> None:
    """`producer.produce(topic, **record)`; while librdkafka's local queue is full, lets deliveries
    drain for `wait` seconds and tries again."""
    while True:
        try:
            producer.produce(topic, **record)
            return
        except BufferError:
            producer.poll(wait)


class ProduceFailed(RuntimeError):
    """Records could not be written (the message says why)."""


class BulkProducer:
    """Many records to explicit partitions (bank replay), idempotent, all acknowledged by `flush`."""

    def __init__(self, settings: Settings):
        self.producer = Producer(settings.confluent_config(**{
            "acks": "all", "enable.idempotence": True, "linger.ms": 20, "compression.type": "lz4",
            "message.max.bytes": 1_000_000, "logger": quiet_logger()}))
        self.failures: list = []
        self.sent = 0

    def send(self, topic: str, partition: int, key: bytes, value: bytes | None) -> None:
        produce_when_room(self.producer, topic, wait=0.1, key=key, value=value, partition=partition,
                          on_delivery=lambda err, msg: err and self.failures.append(err))
        self.sent += 1
        self.producer.poll(0)

    def flush(self, timeout: float = 60.0) -> None:
        if self.producer.flush(timeout) or self.failures:
            raise ProduceFailed(f"could not write to Kafka: {self.failures[:3] or 'timed out'}")
