"""The view generation pointer on `bank.view-generations` (see `streams.services.generations`): read
it, write it, and follow it in a worker."""
from __future__ import annotations

import logging
import threading
import time

from confluent_kafka import OFFSET_BEGINNING, Producer, TopicPartition

from ..config import Settings
from ..contract import topics
from ..services.generations import POINTER_KEY, POINTER_PARTITION, Pointer, ServedGenerations
from .reader import OffsetsUnreadable, Reader, ReadTimeout, Unreachable, new_consumer

log = logging.getLogger(__name__)


class PointerUnavailable(RuntimeError):
    pass


def read_pointer(settings: Settings, timeout: float = 15.0) -> Pointer:
    """The latest pointer; generation 0 everywhere when the topic is empty or does not exist yet."""
    with Reader(settings, "generations", timeout) as reader:
        try:
            existing = reader.topics(timeout=timeout)
        except Unreachable as exc:
            raise PointerUnavailable(str(exc)) from None
        if topics.VIEW_GENERATIONS.name not in existing:
            return Pointer()
        where = (topics.VIEW_GENERATIONS.name, POINTER_PARTITION)
        while True:
            try:
                low, high = reader.watermarks(*where, timeout=timeout)
                break
            except OffsetsUnreadable as exc:
                # A topic created a moment ago on a broker that just started may not have its leader
                # yet (NOT_LEADER_FOR_PARTITION, LEADER_NOT_AVAILABLE): transient, so ask again.
                if time.monotonic() > reader.deadline:
                    raise PointerUnavailable(f"cannot read {where[0]}: {exc.cause}") from None
                time.sleep(0.2)
        if high <= low:
            return Pointer()
        reader.deadline = time.monotonic() + timeout  # as long again to read it
        latest = None
        try:
            for message in reader.read({where: high}, batch=500, fatal=None):
                if message.key() == POINTER_KEY:
                    latest = message.value()
        except ReadTimeout:
            raise PointerUnavailable(f"timed out reading {topics.VIEW_GENERATIONS.name}") from None
        return Pointer.from_json(latest)


def write_pointer(settings: Settings, pointer: Pointer, timeout: float = 15.0) -> None:
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
    while not generations._stop.is_set():
        consumer = None
        try:
            consumer = new_consumer(settings, "generations")
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

