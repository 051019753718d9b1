"""Reading Kafka from outside the workers."""
from __future__ import annotations

from confluent_kafka import KafkaError


def fatal_read_error(error) -> bool:
    """Whether a consumer error should end a read: end-of-partition notes and retriable errors don't."""
    return error.code() != KafkaError._PARTITION_EOF and (error.fatal() or not error.retriable())
