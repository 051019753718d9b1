"""The customers' keys as `bank.customer-keys` holds them now (outside the workers: verify, the tests)."""
from __future__ import annotations

from ..config import Settings
from ..contract import topics
from ..kafka.reader import Reader, ReadTimeout


def read_keys(settings: Settings, timeout: float = 30.0) -> dict[str, bytes]:
    """Every live key in `bank.customer-keys` (tombstones remove), read from the start to the end seen now."""
    name = topics.CUSTOMER_KEYS.name
    keys: dict[str, bytes] = {}
    with Reader(settings, "keys", timeout, **{"enable.partition.eof": False}) as reader:
        topic = reader.topics(name, timeout=timeout).get(name)
        if topic is None or topic.error is not None:
            return keys
        ends = {}
        for partition in topic.partitions:
            low, high = reader.watermarks(name, partition, timeout=timeout)
            if high > low:
                ends[(name, partition)] = high
        try:
            for message in reader.read(ends, batch=1000, fatal=None):
                customer_id = message.key().decode()
                if message.value() is None:
                    keys.pop(customer_id, None)
                else:
                    keys[customer_id] = message.value()
        except ReadTimeout:
            raise TimeoutError(f"timed out after {timeout:g}s reading {name}") from None
    return keys
