"""The customers' keys as `bank.customer-keys` holds them now (outside the workers: verify, the tests)."""
from __future__ import annotations

import os
import time

def read_keys(settings, timeout: float = 30.0) -> dict[str, bytes]:
    """Every live key in `bank.customer-keys` (tombstones remove), read from the start to the end seen now."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    from ..contract import topics

    consumer = Consumer(settings.consumer_config(**{
        "group.id": f"bank-keys-{os.urandom(6).hex()}", "enable.auto.commit": False,
        "auto.offset.reset": "earliest", "enable.partition.eof": False}))
    keys: dict[str, bytes] = {}
    deadline = time.monotonic() + timeout
    try:
        metadata = consumer.list_topics(topics.CUSTOMER_KEYS.name, timeout=timeout)
        topic = metadata.topics.get(topics.CUSTOMER_KEYS.name)
        if topic is None or topic.error is not None:
            return keys
        ends = {}
        for partition in topic.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topics.CUSTOMER_KEYS.name, partition),
                                                       timeout=timeout, cached=False)
            if high > low:
                ends[partition] = high
        if ends:
            consumer.assign([TopicPartition(topics.CUSTOMER_KEYS.name, p, OFFSET_BEGINNING) for p in ends])
        while ends:
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:g}s reading {topics.CUSTOMER_KEYS.name}")
            messages = consumer.consume(num_messages=1000, timeout=0.5)
            for message in messages:
                if message.error() is not None or message.partition() not in ends:
                    continue
                customer_id = message.key().decode()
                if message.value() is None:
                    keys.pop(customer_id, None)
                else:
                    keys[customer_id] = message.value()
                if message.offset() + 1 >= ends[message.partition()]:
                    del ends[message.partition()]
            if ends and not messages:
                # Control records (transaction markers) sit at the end: go by the fetch position.
                for tp in consumer.position([TopicPartition(topics.CUSTOMER_KEYS.name, p) for p in ends]):
                    if tp.offset >= 0 and tp.offset >= ends[tp.partition]:
                        del ends[tp.partition]
    finally:
        consumer.close()
    return keys
