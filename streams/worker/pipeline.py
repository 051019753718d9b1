"""What a wired worker is made of (`Pipeline`), and one agent's handling of a batch (`Batch`): the
records through the service, then the batch's effects committed through a `Sink`."""
from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, OrderedDict, defaultdict
from dataclasses import dataclass, field
from typing import Callable, Iterable, Protocol

import faust

from ..config import Settings
from ..contract.avro import Codec
from ..kafka.transactions import PartitionEffects
from ..services.generations import ServedGenerations, prefix
from ..contract import topics
from ..topology import VIEW_OF_TABLE
from ..services.handling import KeyPrefixed, Origin, Outgoing
from .batches import BatchedTable, coalesce, encoded
from .metrics import Metrics

log = logging.getLogger(__name__)


class Sink(Protocol):
    """Where a batch's effects go: the transactions (a worker) or a recording emitter (component tests)."""

    def accepts(self, agent: str, topic: str, partition: int, offset: int) -> bool: ...

    def needs_catch_up(self, agent: str, partition: int) -> bool: ...

    async def catch_up(self, agent: str, partition: int, applied: dict[str, int | None], apply) -> dict[str, int]: ...

    async def commit(self, agent: str, effects: list[PartitionEffects]) -> list[PartitionEffects]: ...


class Emitter(Protocol):
    async def emit(self, records: Iterable[Outgoing]) -> None: ...


class LocalSink:
    """Without a broker (component tests): every batch commits; its records go to `emitter`."""

    def __init__(self, emitter: Emitter):
        self.emitter = emitter

    def accepts(self, agent: str, topic: str, partition: int, offset: int) -> bool:
        return True

    def needs_catch_up(self, agent: str, partition: int) -> bool:
        return False  # nothing but this process writes the tables

    async def catch_up(self, agent: str, partition: int, applied: dict[str, int | None], apply) -> dict:
        return {}

    async def commit(self, agent: str, effects: list[PartitionEffects]) -> list[PartitionEffects]:
        await self.emitter.emit([record for effect in effects for record in effect.records])
        return effects


class ViewWaiters:
    """Lets a GET wait until a view changes (`?wait=`) without polling the table in a loop."""

    def __init__(self):
        self._waiting: dict[tuple[str, str], list[asyncio.Future]] = defaultdict(list)

    def notify(self, table: str, key: str) -> None:
        for future in self._waiting.pop((table, key), ()):
            if not future.done():
                future.set_result(None)

    async def changed(self, table: str, key: str, timeout: float) -> bool:
        future = asyncio.get_running_loop().create_future()
        self._waiting[(table, key)].append(future)
        try:
            await asyncio.wait_for(future, timeout)
            return True
        except asyncio.TimeoutError:
            return False
        finally:
            waiting = self._waiting.get((table, key))
            if waiting is not None:
                if future in waiting:
                    waiting.remove(future)
                if not waiting:  # else every key ever waited on stays behind
                    del self._waiting[(table, key)]


class RecentOutcomes:
    """The outcomes this worker's processors committed lately, by command id. A POST's `?wait=` answers
    from them once the command's own transaction committed, not a hop and a transaction later when the
    outcome view has it. Bounded: the view keeps every outcome."""

    def __init__(self, size: int = 50_000):
        self.size = size
        # Ordered for O(1) eviction of the oldest: a plain dict's first key is found by scanning past
        # the slots its deletions left, which grows with every eviction until it resizes.
        self._by_command: OrderedDict[str, bytes] = OrderedDict()

    def add(self, command_id: str, value: bytes) -> None:
        by_command = self._by_command
        by_command[command_id] = value
        if len(by_command) > self.size:
            by_command.popitem(last=False)

    def get(self, command_id: str) -> bytes | None:
        return self._by_command.get(command_id)


@dataclass
class Pipeline:
    """Everything `wire` declared, for the web views, the CLI and the tests."""

    app: faust.App
    settings: Settings
    codec: Codec
    faust_topics: dict[str, faust.TopicT]
    tables: dict[str, faust.Table]
    agents: dict[str, object]
    waiters: ViewWaiters = field(default_factory=ViewWaiters)
    stalled: list = field(default_factory=list)  # partitions with waiting work and no progress (liveness)
    metrics: Metrics | None = None
    generations: ServedGenerations = field(default_factory=ServedGenerations)  # which view generation is served
    writers: dict[str, "BatchedTable"] = field(default_factory=dict)  # the agents' side of `tables`
    handled: Counter = field(default_factory=Counter)  # agent → records handled (tests wait on it)
    recent_outcomes: RecentOutcomes = field(default_factory=RecentOutcomes)
    #: Told of an unexpected error in a batch before it propagates (the worker stops at once: see Batch.run).
    on_batch_failure: Callable[[str, BaseException], None] | None = None

    def view(self, table: str):
        """A view table as the API reads it: the serving generation's entries, by their bare keys."""
        generation = self.generations.serving(VIEW_OF_TABLE[table])
        return self.tables[table] if generation == 0 else KeyPrefixed(self.tables[table], prefix(generation))


#: How many times (a second apart) restore_tables tries to open a table partition's database.
OPEN_ATTEMPTS = 30


async def restore_tables(writers: Iterable[BatchedTable], transactions, changelog_tps, still_wanted) -> None:
    """Every table partition of `changelog_tps` (those now active here) read from its local offset to
    the end of its changelog (`Transactions.restore`); their tasks then need no catch-up.

    A local database built from an earlier incarnation of its changelog (recreated by `bank replay
    state` since: another topic id) or of unknown origin is emptied first and restored from the start:
    its offset means nothing in the new changelog (a worker that had owned a partition long ago missed
    the accounts opened since, and refused their deposits)."""
    by_changelog = {table.changelog: table for table in writers}
    wanted = sorted((tp.topic, tp.partition) for tp in changelog_tps if tp.topic in by_changelog)
    if not wanted:
        return
    started = time.monotonic()
    try:
        ids = await transactions.topic_ids(sorted({topic for topic, _ in wanted}), still_wanted=still_wanted)
        for attempt in range(OPEN_ATTEMPTS):
            try:
                applied = {where: local_offset(by_changelog[where[0]], where[1], ids[where[0]]) for where in wanted}
                break
            except Exception as exc:  # a database still locked by its handle from before a revocation (Faust retries too)
                if attempt == OPEN_ATTEMPTS - 1 or not still_wanted():
                    raise
                log.info("opening a table partition to restore it failed (%s); trying again in 1 s", exc)
                await asyncio.sleep(1.0)
        counts = await transactions.restore(
            applied, lambda where, records: by_changelog[where[0]].restore(where[1], records), still_wanted=still_wanted)
    except Exception as exc:
        if still_wanted():
            raise
        log.info("restoring %d table partitions given up: rebalanced again (%s)", len(wanted), exc)
        return
    for changelog, partition in wanted:
        table = by_changelog[changelog]
        if table.changelog_id(partition) != ids[changelog]:
            table.set_changelog_id(partition, ids[changelog])
    transactions.restored({partition for _, partition in wanted})
    log.info("%d table partitions restored to their changelogs' end in %.2f s (%d records read)",
             len(wanted), time.monotonic() - started, sum(counts.values()))


#: How the worker logs a table partition it could not trust and restores whole (`bank bench memory` counts them).
EMPTIED = "emptied and restored from the start"


def local_offset(table: BatchedTable, partition: int, changelog_id: str) -> int | None:
    """The offset the partition's local database holds in the changelog `changelog_id`; None (after
    emptying it) when it was built from another changelog or nobody knows which."""
    offset = table.persisted_offset(partition)
    known = table.changelog_id(partition)
    if known == changelog_id or (known is None and offset is None):
        return offset
    log.warning("%s[%d]: the local table was built from %s (local offset %s), not from the changelog there now "
                "(%s): " + EMPTIED, table.changelog, partition,
                f"changelog {known}" if known else "an unknown changelog", offset, changelog_id)
    table.clear(partition)
    return None


OUTCOMES = topics.COMMAND_OUTCOMES.name
OUTCOME_TABLE = "command_to_outcome"  # the outcome view's table: its waiters are the `?wait=` of POSTs


def key_text(event) -> str:
    return (event.key or b"").decode("utf-8", "replace")


class Batch:
    """One agent's handling of a batch: every record through `handle` with its tables at the
    record's partition; then, per partition, the tables' writes, the records to send and the input
    offsets committed together (the sink); then the committed writes applied to local state."""

    def __init__(self, pipeline: "Pipeline", agent: str, handle, written: list[BatchedTable], sink: Sink,
                 view: str | None = None, answers: bool = False):
        self.pipeline = pipeline
        self.agent = agent
        self.handle = handle
        self.is_async = asyncio.iscoroutinefunction(handle)
        self.written = written
        self.sink = sink
        self.view = view  # the view table whose waiters (`?wait=`) hear of each key
        self.answers = answers  # a processor: the outcomes it commits answer `?wait=` (RecentOutcomes)

    async def run(self, events) -> None:
        try:
            await self._run(events)
        except Exception as exc:
            # Bad input is not an error here (it becomes a dead letter or a rejection); anything else
            # is a bug or a transaction that could not commit. Nothing of the batch is visible or
            # committed, and its records are not processed again by this process: the worker stops,
            # and on restart they are read again from the committed offsets.
            for table in self.written:
                table.discard()
            if self.pipeline.on_batch_failure is not None:
                self.pipeline.on_batch_failure(self.agent, exc)
            raise

    async def _catch_up(self, partition: int) -> None:
        """Before a restarted task's first batch: its tables read forward to the end of their changelogs."""
        by_changelog = {table.changelog: table for table in self.written}
        await self.sink.catch_up(self.agent, partition,
                                 {changelog: table.persisted_offset(partition) for changelog, table in by_changelog.items()},
                                 lambda changelog, records: by_changelog[changelog].restore(partition, records))

    async def _run(self, events) -> None:
        started = time.monotonic()
        pipeline, agent, sink = self.pipeline, self.agent, self.sink
        written, handle = self.written, self.handle
        records: dict[int, list[Outgoing]] = {}
        offsets: dict[int, dict[str, int]] = {}
        keys: dict[int, list[str]] = {}
        for partition in {event.message.partition for event in events}:
            if sink.needs_catch_up(agent, partition):
                await self._catch_up(partition)
        for event in events:
            message = event.message
            partition = message.partition
            if not sink.accepts(agent, message.topic, partition, message.offset):
                continue  # processed already, or the partition is no longer ours
            for table in written:
                table.partition = partition
            out = handle(event.key, event.value, Origin(message.topic, partition, message.offset))
            records.setdefault(partition, []).extend(await out if self.is_async else out)
            offsets.setdefault(partition, {})[message.topic] = message.offset + 1
            keys.setdefault(partition, []).append(key_text(event))
        if not offsets:
            return
        encode = pipeline.codec.encode
        effects = [PartitionEffects(partition, [(t.changelog, t.take(partition)) for t in written],
                                    encoded(coalesce(records[partition]), encode), offsets[partition])
                   for partition in offsets]
        for table in written:
            table.partition = None
        committed = await sink.commit(agent, effects)
        for effect in committed:
            for table, (changelog, entries) in zip(written, effect.changelogs):
                if entries:
                    table.apply(effect.partition, entries, effect.changelog_offsets.get(changelog))
        pipeline.handled[agent] += len(events)
        if self.answers:
            recent, notify = pipeline.recent_outcomes, pipeline.waiters.notify
            for effect in committed:
                for record in effect.records:
                    if record.topic == OUTCOMES and record.value is not None:
                        recent.add(record.key, record.value)
                        notify(OUTCOME_TABLE, record.key)
        if self.view is not None:
            notify = pipeline.waiters.notify
            for effect in committed:
                for key in keys[effect.partition]:
                    notify(self.view, key)
        if pipeline.metrics is not None:
            pipeline.metrics.batch_done(agent, time.monotonic() - started, events[-1].message.timestamp)
