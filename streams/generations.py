"""View generations: which copy of each read model the workers serve.

A view (`accounts`, `transfers`, `customers`, `emails`, `outcomes`) keeps its entries in its Faust
tables under a key prefix per generation: generation 0 is the bare key (what every worker wrote before
generations existed), generation N > 0 is `\\x1fgN\\x1f<key>`. `bank replay views` builds generation
N+1 beside the serving one and then moves the pointer, a JSON record in the compacted topic
`bank.view-generations`: `{"serving": {"accounts": 2, ...}, "building": {"accounts": 3}}`.
Workers read it when they start and follow it in a background thread.
"""
from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field

from . import topics
from .config import Settings

log = logging.getLogger(__name__)

POINTER_KEY = b"views"
POINTER_PARTITION = 0
SEPARATOR = "\x1f"  # not in any id a client sends, so a prefixed key never meets a bare one

#: view name → (its tables, the topics its agent projects). One agent writes each view's tables.
VIEWS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "accounts": (("account_to_view", "account_version_to_entry"), (topics.ACCOUNT_EVENTS.name,)),
    "transfers": (("transfer_to_view",), (topics.TRANSFER_EVENTS.name,)),
    "customers": (("customer_to_view",), (topics.CUSTOMER_EVENTS.name, topics.CUSTOMER_ACCOUNTS.name)),
    "emails": (("email_to_customer",), (topics.CUSTOMER_EMAILS.name,)),
    "outcomes": (("command_to_outcome",), (topics.COMMAND_OUTCOMES.name,)),
}
VIEW_OF_TABLE = {table: view for view, (tables, _) in VIEWS.items() for table in tables}


def prefix(generation: int) -> str:
    return "" if generation == 0 else f"{SEPARATOR}g{generation}{SEPARATOR}"


def strip(key: str, generation: int) -> str | None:
    """The view key of a table key of `generation`, None when the key belongs to another generation."""
    if generation == 0:
        return None if key.startswith(SEPARATOR) else key
    wanted = prefix(generation)
    return key[len(wanted):] if key.startswith(wanted) else None


def handoff_key(generation: int, topic: str, partition: int) -> str:
    """Where an agent keeps "generation G takes every record of topic[partition] from offset O on"."""
    return f"{SEPARATOR}handoff{SEPARATOR}{generation}{SEPARATOR}{topic}{SEPARATOR}{partition}"


@dataclass
class Pointer:
    serving: dict[str, int] = field(default_factory=dict)
    building: dict[str, int] = field(default_factory=dict)

    def serving_of(self, view: str) -> int:
        return self.serving.get(view, 0)

    def to_json(self) -> bytes:
        return json.dumps({"serving": self.serving, "building": self.building}, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes | None) -> "Pointer":
        if not data:
            return cls()
        parsed = json.loads(data)
        return cls({k: int(v) for k, v in parsed.get("serving", {}).items()},
                   {k: int(v) for k, v in parsed.get("building", {}).items()})


class PointerUnavailable(RuntimeError):
    pass


def _consumer(settings: Settings):
    from confluent_kafka import Consumer

    from .verify import _quiet_logger
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


class Registry:
    """What this worker knows of the pointer; the projecting agents and the HTTP API read it."""

    def __init__(self, pointer: Pointer | None = None):
        self.pointer = pointer or Pointer()
        self._stop = threading.Event()

    def serving(self, view: str) -> int:
        return self.pointer.serving_of(view)

    def building(self, view: str) -> int | None:
        generation = self.pointer.building.get(view)
        return generation if generation is not None and generation > self.serving(view) else None

    def note_building(self, view: str, generation: int) -> None:
        """An agent met the new generation's records before the pointer reached this worker."""
        if generation > self.serving(view) and self.pointer.building.get(view, -1) < generation:
            self.pointer = Pointer(dict(self.pointer.serving), {**self.pointer.building, view: generation})

    def follow(self, settings: Settings, interval: float = 1.0) -> None:
        """Reads the pointer once (so a starting worker never serves a retired generation), then
        follows it in a daemon thread."""
        deadline = time.monotonic() + 120
        while True:
            try:
                self.pointer = read_pointer(settings)
                break
            except PointerUnavailable as exc:
                if time.monotonic() > deadline:
                    raise
                log.warning("waiting for the view generation pointer: %s", exc)
                time.sleep(2)
        threading.Thread(target=self._follow, args=(settings, interval), name="view-generations",
                         daemon=True).start()

    def _follow(self, settings: Settings, interval: float) -> None:
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        while not self._stop.is_set():
            consumer = None
            try:
                consumer = _consumer(settings)
                consumer.assign([TopicPartition(topics.VIEW_GENERATIONS.name, POINTER_PARTITION, OFFSET_BEGINNING)])
                while not self._stop.is_set():
                    for message in consumer.consume(100, timeout=interval):
                        if message.error() is None and message.key() == POINTER_KEY:
                            new = Pointer.from_json(message.value())
                            if new.serving != self.pointer.serving:
                                log.warning("view generations now served: %s", new.serving)
                            self.pointer = new
            except Exception:  # the topic may not exist yet; never take the worker down
                log.exception("following the view generation pointer failed; retrying")
                time.sleep(interval)
            finally:
                if consumer is not None:
                    consumer.close()

    def stop(self) -> None:
        self._stop.set()
