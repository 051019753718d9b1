"""Producing from outside the workers: the producer's settings and a produce that waits for room."""
from __future__ import annotations

from confluent_kafka import Producer

from ..config import Settings


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
