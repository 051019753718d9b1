"""The view generation pointer on `bank.view-generations` (see `streams.services.generations`): read
it, write it, and follow it in a worker."""
from __future__ import annotations

import logging
import threading
import time
import uuid

from ..config import Settings
from ..contract import topics
from ..services.generations import POINTER_KEY, POINTER_PARTITION, Pointer, ServedGenerations

log = logging.getLogger(__name__)


class PointerUnavailable(RuntimeError):
    pass


def _consumer(settings: Settings):
    from confluent_kafka import Consumer

    from ..ops.verify import _quiet_logger
    return Consumer(settings.consumer_config(**{
        "group.id": f"bank-generations-{uuid.uuid4().hex}", "enable.auto.commit": False,
        "auto.offset.reset": "earliest", "logger": _quiet_logger()}))


def read_pointer(settings: Settings, timeout: float = 15.0) -> Pointer:
    """The latest pointer; generation 0 everywhere when the topic is empty or does not exist yet."""
    from confluent_kafka import OFFSET_BEGINNING, KafkaException, TopicPartition

    consumer = _consumer(settings)
    try:
        try:
            metadata = consumer.list_topics(timeout=timeout)
        except KafkaException as exc:
            raise PointerUnavailable(f"cannot reach Kafka at {settings.bootstrap_servers}: {exc}") from None
        if topics.VIEW_GENERATIONS.name not in metadata.topics:
            return Pointer()
        tp = TopicPartition(topics.VIEW_GENERATIONS.name, POINTER_PARTITION)
        deadline = time.monotonic() + timeout
        while True:
            try:
                low, high = consumer.get_watermark_offsets(tp, timeout=timeout, cached=False)
                break
            except KafkaException as exc:
                # A topic created a moment ago on a broker that just started may not have its leader
                # yet (NOT_LEADER_FOR_PARTITION, LEADER_NOT_AVAILABLE): transient, so ask again.
                if time.monotonic() > deadline:
                    raise PointerUnavailable(f"cannot read {tp.topic}: {exc}") from None
                time.sleep(0.2)
        if high <= low:
            return Pointer()
        consumer.assign([TopicPartition(tp.topic, tp.partition, OFFSET_BEGINNING)])
        latest, deadline = None, time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in consumer.consume(500, timeout=0.5):
                if message.error() is None and message.key() == POINTER_KEY:
                    latest = message.value()
                if message.error() is None and message.offset() + 1 >= high:
                    return Pointer.from_json(latest)
        raise PointerUnavailable(f"timed out reading {topics.VIEW_GENERATIONS.name}")
    finally:
        consumer.close()


def write_pointer(settings: Settings, pointer: Pointer, timeout: float = 15.0) -> None:
    from confluent_kafka import Producer

    producer = Producer(settings.confluent_config(**{"acks": "all", "enable.idempotence": True}))
    failures = []
    producer.produce(topics.VIEW_GENERATIONS.name, key=POINTER_KEY, value=pointer.to_json(),
                     partition=POINTER_PARTITION, on_delivery=lambda err, msg: err and failures.append(err))
    if producer.flush(timeout) or failures:
        raise PointerUnavailable(f"could not write the view generation pointer: {failures or 'timed out'}")


def follow(generations: ServedGenerations, settings: Settings, interval: float = 1.0) -> None:
    """Reads the pointer once (so a starting worker never serves a retired generation), then
    follows it in a daemon thread."""
    deadline = time.monotonic() + 120
    while True:
        try:
            generations.pointer = read_pointer(settings)
            break
        except PointerUnavailable as exc:
            if time.monotonic() > deadline:
                raise
            log.warning("waiting for the view generation pointer: %s", exc)
            time.sleep(2)
    threading.Thread(target=_follow, args=(generations, settings, interval), name="view-generations",
                     daemon=True).start()


def _follow(generations: ServedGenerations, settings: Settings, interval: float) -> None:
    from confluent_kafka import OFFSET_BEGINNING, TopicPartition

    while not generations._stop.is_set():
        consumer = None
        try:
            consumer = _consumer(settings)
            consumer.assign([TopicPartition(topics.VIEW_GENERATIONS.name, POINTER_PARTITION, OFFSET_BEGINNING)])
            while not generations._stop.is_set():
                for message in consumer.consume(100, timeout=interval):
                    if message.error() is None and message.key() == POINTER_KEY:
                        new = Pointer.from_json(message.value())
                        if new.serving != generations.pointer.serving:
                            log.warning("view generations now served: %s", new.serving)
                        generations.pointer = new
        except Exception:  # the topic may not exist yet; never take the worker down
            log.exception("following the view generation pointer failed; retrying")
            time.sleep(interval)
        finally:
            if consumer is not None:
                consumer.close()

