"""Liveness: notices a worker that holds partitions with work waiting but makes no progress on them.

Faust can leave a partition un-fetched or an agent blocked after a rebalance (robinhood/faust#402,
faust #432); nothing fails, the work just waits forever. The detector watches, per assigned source
partition, how far the worker has read and committed against the partition's end; `/health` then
answers 503 "stalled" so a supervisor restarts the worker, which is safe at any instant by design.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Mapping

STALL_SECONDS = 30.0
log = logging.getLogger(__name__)


@dataclass
class StallDetector:
    """Pure bookkeeping: feed it (read, committed, end) offsets per partition; it names the stalled ones."""

    stall_seconds: float = STALL_SECONDS
    _progress: dict = field(default_factory=dict)  # tp -> ((read, committed), since)

    def observe(self, now: float, offsets: Mapping[object, tuple[int | None, int | None, int | None]]) -> list:
        stalled = []
        for tp, (read, committed, end) in offsets.items():
            position = (read, committed)
            waiting = end is not None and ((committed or 0) < end)
            previous = self._progress.get(tp)
            if previous is None or previous[0] != position or not waiting:
                self._progress[tp] = (position, now)
                continue
            if now - previous[1] >= self.stall_seconds:
                stalled.append(tp)
        for gone in set(self._progress) - set(offsets):
            del self._progress[gone]
        return stalled

    def reset(self) -> None:
        self._progress.clear()


def fetch_position(app, tp) -> int | None:
    """The aiokafka consumer's next offset to fetch for `tp` (past any transaction marker it read),
    or None when it has none (not assigned, not started)."""
    try:
        return position_of(app.consumer._thread._ensure_consumer(), tp)
    except Exception:  # not started: no opinion
        return None


def position_of(consumer, tp) -> int | None:
    """An AIOKafkaConsumer's next offset to fetch for `tp`, or None (not assigned, no position yet)."""
    try:
        state = consumer._subscription.subscription.assignment.state_value(tp)
        return state.position if state is not None and state.has_valid_position else None
    except Exception:  # not assigned (any more): no opinion
        return None


def unhandled_partitions(consumer) -> set:
    """The partitions with records handed on to an agent and not yet handled (Faust's unacked)."""
    return {message.tp for message in list(getattr(consumer, "_unacked_messages", ()))}


def only_markers_left(position: int | None, end: int, unhandled: bool) -> bool:
    """Whether what lies before `end` is all handled: the consumer fetched up to it (past any
    transaction marker) and nothing it handed on waits. The offsets between the last record read
    and `end` are then markers, not work."""
    return position is not None and position >= end and not unhandled


def source_offsets(app, changelog_topics: set[str]) -> dict:
    """(read, committed, end) per assigned non-changelog partition, from the Faust consumer.

    `end` is where the work ends: the highwater, unless everything up to it was fetched and nothing
    fetched is unhandled; then the partition's last records are transaction markers (no work) and
    `end` is the committed offset.
    """
    consumer = app.consumer
    unhandled = unhandled_partitions(consumer)
    offsets = {}
    for tp in consumer.assignment():
        if tp.topic in changelog_topics:
            continue
        try:
            end = consumer.highwater(tp)
        except Exception:  # metadata not fetched yet: no opinion
            end = None
        read = consumer._read_offset.get(tp)
        committed = consumer._committed_offset.get(tp)
        position = fetch_position(app, tp)
        if end is not None and only_markers_left(position, end, tp in unhandled):
            end = committed
        offsets[tp] = (read, committed, end)
    return offsets


def watch(pipeline, interval: float = 5.0) -> StallDetector:
    """Adds a timer to the app that keeps `pipeline.stalled` up to date."""
    detector = StallDetector()
    app = pipeline.app
    pipeline.stalled = []

    @app.timer(interval)
    async def detect_stalls():
        """Check that every partition with waiting work makes progress."""
        if app.rebalancing or app.in_recovery or not app.tables.actives_ready:
            detector.reset()
            pipeline.stalled = []
            return
        try:
            changelogs = {table.changelog_topic.get_topic_name() for table in pipeline.tables.values()}
            pipeline.stalled = detector.observe(time.monotonic(), source_offsets(app, changelogs))
        except Exception:  # liveness must never take the worker down
            log.exception("stall detection failed; will try again")

    return detector
