"""Reading effects straight from Kafka (confluent-kafka, not HTTP) and turning them into figures."""
from __future__ import annotations

import bisect
import threading
import time
import uuid
from collections import Counter

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from ..contract.avro import Codec, DecodeError
from ..config import Settings
from ..domain.transfers import TERMINAL


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(round(q / 100.0 * len(ordered) + 0.5))))
    return ordered[rank - 1]


def latency_summary(latencies_ms: list[float]) -> dict:
    return {"count": len(latencies_ms),
            "p50_ms": _r(percentile(latencies_ms, 50)), "p95_ms": _r(percentile(latencies_ms, 95)),
            "p99_ms": _r(percentile(latencies_ms, 99)), "max_ms": _r(max(latencies_ms) if latencies_ms else None)}


def _note_version(versions: dict[str, list[int]], times: dict[str, list[int]], key: str, version: int, ts: int) -> None:
    """Keeps `key`'s increasing versions and when each was first seen (a later batch may skip some)."""
    seen = versions.get(key)
    if seen is None:
        versions[key], times[key] = [version], [ts]
    elif version > seen[-1]:
        seen.append(version)
        times[key].append(ts)


def _first_at_or_past(versions: list[int] | None, times: list[int] | None, version: int) -> int | None:
    if not versions:
        return None
    index = bisect.bisect_left(versions, version)
    return times[index] if index < len(versions) else None


def _r(value):
    return None if value is None else round(value, 1)


class EffectReader:
    """Follows view changelogs, outcomes and events from offset 0 of freshly created topics in a thread.

    For views it keeps, per key, the latest decoded view and the broker timestamp (LogAppendTime) of
    each version; for customer views, per account, when its summary there first showed each version
    (the deposit's effect at the end of the pipeline); for outcomes the count per (command type,
    status); for events the count per type.
    """

    def __init__(self, settings: Settings, *, views: tuple[str, ...] = (), outcomes: str | None = None,
                 events: tuple[str, ...] = (), codec: Codec | None = None, counted: tuple[str, ...] = (),
                 customer_views: tuple[str, ...] = ()):
        self.codec = codec or Codec()
        self.views = set(views)
        self.customer_views = set(customer_views) - self.views
        self.outcomes_topic = outcomes
        self.events = set(events)
        self.consumer = Consumer(settings.consumer_config(**{
            "group.id": f"bench-reader-{uuid.uuid4()}", "enable.auto.commit": False,
            "fetch.wait.max.ms": 10, "enable.partition.eof": False}))
        # `counted`: topics whose records are only counted (the later stages of a pipeline).
        self.counted = set(counted) - self.views - self.events - {outcomes}  # customer views may be counted too
        topics = list(views) + sorted(self.customer_views) + ([outcomes] if outcomes else []) + list(events) \
            + sorted(self.counted - self.customer_views)
        # A topic created a moment ago may not be in every metadata answer yet, and a peer just started
        # creates its changelogs itself (a JVM on a busy machine takes a while).
        deadline = time.monotonic() + (90 if self.counted else 30)
        while True:
            metadata = self.consumer.list_topics(timeout=30)
            if all(t in metadata.topics and metadata.topics[t].partitions for t in topics):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"topics missing: {[t for t in topics if t not in metadata.topics]}")
            time.sleep(0.2)
        assignment = [TopicPartition(t, p, OFFSET_BEGINNING) for t in topics for p in metadata.topics[t].partitions]
        self.consumer.assign(assignment)
        self.lock = threading.Condition()
        self.latest: dict[str, object] = {}                 # key -> latest decoded view
        self.view_time: dict[tuple[str, int], int] = {}     # (key, version) -> first broker timestamp, ms
        # Per key, the increasing versions its view was written with and when: a view written once per
        # batch skips versions (the later one includes the earlier effects), so effects are looked up
        # as "the first version at or past it" (`visible_at`).
        self._versions: dict[str, list[int]] = {}
        self._times: dict[str, list[int]] = {}
        # The same for each account as its customer's view shows it (its summary's version).
        self._customer_versions: dict[str, list[int]] = {}
        self._customer_times: dict[str, list[int]] = {}
        self.terminal_time: dict[str, int] = {}             # transfer id -> when its view became terminal
        self.view_records = 0
        self.outcomes: Counter = Counter()                   # (command type, status) -> count
        self.outcome_ids: set[str] = set()
        self.event_counts: Counter = Counter()              # distinct events per type
        self.event_ids: set[str] = set()
        self.event_records = 0                               # records, re-emissions included
        self.undecodable = 0
        self.records_per_topic: Counter = Counter()         # records of the `counted` topics
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-effect-reader", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            messages = self.consumer.consume(2000, timeout=0.05)
            if not messages:
                continue
            with self.lock:
                for message in messages:
                    if message.error() is not None:
                        continue
                    self._take(message)
                self.lock.notify_all()

    def _take(self, message) -> None:
        topic = message.topic()
        value = message.value()
        if value is None:
            return
        if topic in self.counted:
            self.records_per_topic[topic] += 1
            if topic not in self.customer_views:
                return
        try:
            record = self.codec.decode(value)  # for events, the type name is in the schema fingerprint
        except DecodeError:
            self.undecodable += 1
            return
        if topic in self.views:
            key = message.key().decode()
            self.view_records += 1
            self.latest[key] = record
            ts = message.timestamp()[1]
            self.view_time.setdefault((key, record.version), ts)
            _note_version(self._versions, self._times, key, record.version, ts)
            if getattr(record, "state", None) in TERMINAL:
                self.terminal_time.setdefault(key, ts)
        elif topic in self.customer_views:
            ts = message.timestamp()[1]
            for summary in getattr(record, "accounts", ()):  # other entries (handoff markers) have none
                _note_version(self._customer_versions, self._customer_times, summary.account_id, summary.version, ts)
        elif topic == self.outcomes_topic:
            if record.command_id not in self.outcome_ids:
                self.outcome_ids.add(record.command_id)
                self.outcomes[(record.command_type, record.status)] += 1
        elif topic in self.events:
            # Redeliveries re-emit events byte for byte (at-least-once): count distinct event ids.
            self.event_records += 1
            if record.event_id not in self.event_ids:
                self.event_ids.add(record.event_id)
                self.event_counts[type(record).__name__] += 1

    def visible_at(self, key: str, version: int) -> int | None:
        """When (broker ms) the view of `key` first showed `version` or a later one; None if not yet."""
        return _first_at_or_past(self._versions.get(key), self._times.get(key), version)

    def visible_to_customer_at(self, account_id: str, version: int) -> int | None:
        """When (broker ms) the account's customer view first showed its `version` or a later one."""
        return _first_at_or_past(self._customer_versions.get(account_id), self._customer_times.get(account_id),
                                 version)

    def wait_for(self, condition, timeout: float, what: str = "effects") -> float:
        """Blocks until `condition()` holds (checked under the lock); returns the time.time() it held."""
        from ..cli import progress

        deadline = time.monotonic() + timeout
        with self.lock, progress.bar(None, f"waiting for {what}"):
            while not condition():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{what} not visible within {timeout} s")
                self.lock.wait(min(remaining, 0.5))
            return time.time()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.consumer.close()
