"""`bank replay views` and `bank replay state`: rebuild read models and aggregate tables from the log.

Both read the topics with confluent-kafka from the beginning to the end offsets seen at start (batch
consume, each record decoded once) and fold them with the same code the workers run:

* views: the projectors of `streams.services` over plain dicts, one set per partition (a table
  entry lives in the partition of the record that wrote it). The entries go to the workers on
  `bank.view-rebuild` as a new generation (see `streams/services/generations.py` and
  `streams/worker/view_agent.py`); once the workers have loaded them (the `streambank` group has
  committed past them), the pointer moves and the workers serve the new generation. The old one
  answers until then.
* state (disaster recovery, workers stopped): each aggregate's events through its domain's `evolve`
  (never `decide`: nothing is validated again), the dedup records of the commands that produced
  them, and the steps in-flight transfers wait on, written straight to fresh changelog topics, from
  which the workers recover. The views are folded too and written to their changelogs.
"""
from __future__ import annotations

import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, Iterable

from ..contract import topics
from ..contract.avro import Codec, DecodeError
from ..kafka.admin import AdminError, committed_behind, create_topics, group_members, recreate_changelogs
from ..kafka.producer import BulkProducer, ProduceFailed
from ..kafka.reader import Reader, ReadError, ReadTimeout
from ..config import Settings
from ..domain import accounts, customers, emails, transfers
from ..domain.base import Event
from ..domain.rebuild import ViewEntries, ViewHandoff
from ..domain.outcomes import CommandOutcome, PendingSteps, ProcessedCommand
from ..services.generations import Pointer, prefix
from ..kafka.pointer import read_pointer, write_pointer
from ..services.commands import COMMAND_PREFIX, STATE_PREFIX
from ..services.handling import Origin
from ..services.projections import FoldCodec
from ..topology import VIEW_BY_NAME, VIEWS
from ..contract.records import COMMAND_TYPES

GROUP = topics.APP_ID  # the workers' consumer group
BATCH_BYTES = 256 * 1024  # per bank.view-rebuild record, well below Kafka's 1 MB default


class ReplayError(RuntimeError):
    """The replay could not be done (Kafka unreachable, workers running, timed out)."""


class Progress:
    """A progress bar on stderr: done/total, records per second, time left."""

    def __init__(self, label: str, total: int, enabled: bool = True, stream=None):
        self.label, self.total, self.enabled = label, total, enabled
        self.stream = stream or sys.stderr
        self.done = 0
        self.started = time.monotonic()
        self._shown = 0.0

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    def update(self, done: int, force: bool = False) -> None:
        self.done = done
        now = time.monotonic()
        if not self.enabled or (not force and now - self._shown < 0.2):
            return
        self._shown = now
        fraction = min(1.0, done / self.total) if self.total else 1.0
        bar = "#" * int(fraction * 30)
        rate = self.rate
        left = (self.total - done) / rate if rate > 0 and self.total > done else 0.0
        self.stream.write(f"\r{self.label:<22} [{bar:<30}] {fraction:6.1%} {done:,}/{self.total:,} "
                          f"{rate:,.0f}/s, {self.total - done:,} remaining, ~{left:.0f}s left ")
        self.stream.flush()

    def finish(self) -> None:
        self.update(self.done, force=True)
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


# Reading -------------------------------------------------------------------------------------------

@dataclass
class Snapshot:
    """What was read: per (topic, partition) the end offset read up to, and how many records."""

    ends: dict[tuple[str, int], int] = field(default_factory=dict)
    records: int = 0
    seconds: float = 0.0


def read(settings: Settings, names: Iterable[str], handle: Callable[[str, int, int, bytes, bytes], None], *,
         progress: Progress | None = None, timeout: float = 600.0) -> Snapshot:
    """Calls `handle(topic, partition, offset, key, value)` for every record of `names` from the
    beginning to the end offsets seen at start. Missing topics are read as empty."""
    snapshot = Snapshot()
    started = time.monotonic()
    count = 0
    with Reader(settings, "replay", timeout, **{
            "fetch.max.bytes": 64 * 1024 * 1024, "max.partition.fetch.bytes": 16 * 1024 * 1024,
            "queued.max.messages.kbytes": 256 * 1024}) as reader:
        try:
            existing = reader.topics(timeout=30)
            found = {}
            for name in names:
                if name in existing:
                    for partition in sorted(existing[name].partitions):
                        found[(name, partition)] = reader.watermarks(name, partition, timeout=30)
            snapshot.ends = {where: high for where, (low, high) in found.items()}
            pending = {where: high for where, (low, high) in found.items() if high > low}
            if progress is not None:
                progress.total = sum(high - low for low, high in found.values() if high > low)
            for message in reader.read(pending, batch=10_000, fatal=None):
                handle(message.topic(), message.partition(), message.offset(), message.key(), message.value())
                count += 1
                if progress is not None and count % 1000 == 0:
                    progress.update(count)
        except ReadTimeout:
            raise ReplayError(f"timed out after {timeout:g}s reading the log") from None
        except ReadError as exc:
            raise ReplayError(str(exc)) from None
    snapshot.records = count
    snapshot.seconds = time.monotonic() - started
    if progress is not None:
        progress.update(count)
        progress.finish()
    return snapshot


# Folding the views -----------------------------------------------------------------------------------

def _projector(view: str, codec: Codec, tables: dict[str, dict]):
    """The workers' projector of `view` (streams.topology), over `tables` (plain dicts)."""
    return VIEW_BY_NAME[view].projector(FoldCodec(codec), lambda name: tables.setdefault(name, {}))


@dataclass
class ViewFold:
    """Per view, per partition, per table: the entries (key → value bytes) the fold produced."""

    entries: dict[str, dict[int, dict[str, dict]]]
    snapshot: Snapshot
    skipped: int = 0  # records a projector would dead-letter


def fold_views(settings: Settings, views: Iterable[str], *, codec: Codec | None = None,
               progress: Progress | None = None, timeout: float = 600.0) -> ViewFold:
    codec = codec or Codec()
    views = list(views)
    entries: dict[str, dict[int, dict[str, dict]]] = {v: defaultdict(dict) for v in views}
    projectors: dict[tuple[str, int], Callable] = {}
    readers: dict[str, list[str]] = defaultdict(list)
    for view in views:
        for topic in VIEW_BY_NAME[view].source_names:
            readers[topic].append(view)
    skipped = 0

    def handle(topic: str, partition: int, offset: int, key: bytes, value: bytes) -> None:
        nonlocal skipped
        for view in readers[topic]:
            project = projectors.get((view, partition))
            if project is None:
                project = projectors[(view, partition)] = _projector(view, codec, entries[view][partition])
            out = project(key, value, Origin(topic, partition, offset))
            if out and out[0].topic == topics.DEADLETTER.name:
                skipped += 1

    snapshot = read(settings, list(readers), handle, progress=progress, timeout=timeout)
    return ViewFold(entries, snapshot, skipped)


def _batches(keys_values: Iterable[tuple[str, bytes]]):
    batch, size = [], 0
    for key, value in keys_values:
        batch.append((key, value))
        size += len(key) + len(value) + 8
        if size >= BATCH_BYTES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _value_bytes(value, codec: Codec) -> bytes:
    return FoldCodec(codec).encoded(value)


def _rebuild_ends(settings: Settings) -> dict[int, int]:
    with Reader(settings, "replay-ends", 30) as reader:
        metadata = reader.topics(topics.VIEW_REBUILD.name, timeout=30)[topics.VIEW_REBUILD.name]
        return {p: reader.watermarks(topics.VIEW_REBUILD.name, p, timeout=30)[1] for p in metadata.partitions}


def _flush(producer: BulkProducer) -> None:
    try:
        producer.flush()
    except ProduceFailed as exc:
        raise ReplayError(str(exc)) from None


def running_workers(settings: Settings) -> int:
    """Members of the workers' consumer group (0 when none runs)."""
    try:
        return group_members(settings, GROUP)
    except AdminError as exc:
        raise ReplayError(str(exc)) from None


@dataclass
class ViewsReport:
    generations: dict[str, int]
    events: int
    entries: int
    read_seconds: float
    load_seconds: float
    skipped: int

    def to_dict(self) -> dict:
        return {"generations": self.generations, "events": self.events, "entries": self.entries,
                "read_seconds": round(self.read_seconds, 3), "load_seconds": round(self.load_seconds, 3),
                "events_per_second": round(self.events / self.read_seconds) if self.read_seconds else None,
                "skipped_records": self.skipped}


def replay_views(settings: Settings, views: Iterable[str] | None = None, *, show_progress: bool = True,
                 timeout: float = 600.0, log: Callable[[str], None] = lambda line: None) -> ViewsReport:
    """Builds a new generation of `views` (default: all) beside the serving one, then serves it."""
    views = list(views or VIEW_BY_NAME)
    try:
        create_topics(settings)  # bank.view-rebuild and bank.view-generations on an older cluster
        pointer = read_pointer(settings)
    except Exception as exc:
        raise ReplayError(str(exc)) from None
    generations = {v: max(pointer.serving_of(v), pointer.building.get(v, 0)) + 1 for v in views}
    write_pointer(settings, Pointer(dict(pointer.serving), {**pointer.building, **generations}))
    log(f"building generation {', '.join(f'{v} {g}' for v, g in generations.items())}")

    codec = Codec()
    fold = fold_views(settings, views, codec=codec, timeout=timeout,
                      progress=Progress("reading the log", 0, show_progress))
    started = time.monotonic()
    producer = BulkProducer(settings)
    entries = 0
    for view in views:
        for partition, tables in sorted(fold.entries[view].items()):
            for table, content in tables.items():
                for batch in _batches((k, _value_bytes(v, codec)) for k, v in content.items()):
                    record = ViewEntries(generation=generations[view], table=table,
                                         keys=tuple(k for k, _ in batch), values=tuple(v for _, v in batch))
                    producer.send(topics.VIEW_REBUILD.name, partition, view.encode(), codec.encode(record))
                    entries += len(batch)
        for partition in range(settings.partitions):
            sources = VIEW_BY_NAME[view].source_names
            handoff = ViewHandoff(generation=generations[view], view=view, partition=partition, topics=sources,
                                  offsets=tuple(fold.snapshot.ends.get((t, partition), 0) for t in sources))
            producer.send(topics.VIEW_REBUILD.name, partition, view.encode(), codec.encode(handoff))
    _flush(producer)
    ends = _rebuild_ends(settings)
    total = committed_behind(settings, GROUP, topics.VIEW_REBUILD.name, ends)
    progress = Progress("workers loading", total, show_progress)
    deadline = time.monotonic() + timeout
    while (behind := committed_behind(settings, GROUP, topics.VIEW_REBUILD.name, ends)) > 0:
        progress.update(total - behind)
        if time.monotonic() > deadline:
            progress.finish()
            raise ReplayError(f"the workers have not loaded the new generation after {timeout:g}s ({behind} "
                              f"records left; are workers running?); still serving the old one")
        time.sleep(0.5)
    progress.update(total)
    progress.finish()
    latest = read_pointer(settings)
    write_pointer(settings, Pointer({**latest.serving, **generations},
                                    {v: g for v, g in latest.building.items() if v not in generations}))
    log(f"serving generation {', '.join(f'{v} {g}' for v, g in generations.items())}")
    return ViewsReport(generations, fold.snapshot.records, entries, fold.snapshot.seconds,
                       time.monotonic() - started, fold.skipped)


# Rebuilding the aggregate state ----------------------------------------------------------------------

#: Each command processor's table, by the topic of the commands it decides.
_STATE_TABLES = {
    topics.CUSTOMER_EVENTS.name: ("customer_to_state", customers),
    topics.ACCOUNT_EVENTS.name: ("account_to_state", accounts),
    topics.TRANSFER_EVENTS.name: ("transfer_to_state", transfers),
    topics.EMAIL_EVENTS.name: ("email_to_reservation", emails),
}
_TABLE_OF_COMMAND_TOPIC = {
    topics.CUSTOMER_COMMANDS.name: "customer_to_state", topics.ACCOUNT_COMMANDS.name: "account_to_state",
    topics.TRANSFER_COMMANDS.name: "transfer_to_state", topics.EMAIL_COMMANDS.name: "email_to_reservation",
}
_REPLY_TOPICS = (topics.CUSTOMER_REPLIES.name, topics.TRANSFER_REPLIES.name)


@dataclass
class StateReport:
    aggregates: dict[str, int]
    events: int
    records_read: int
    entries: int
    dedup_entries: int
    pending_transfers: int
    read_seconds: float
    write_seconds: float
    view_entries: int = 0

    def to_dict(self) -> dict:
        return {"aggregates": self.aggregates, "events": self.events, "records_read": self.records_read,
                "entries": self.entries, "dedup_entries": self.dedup_entries,
                "pending_transfers": self.pending_transfers, "view_entries": self.view_entries,
                "read_seconds": round(self.read_seconds, 3), "write_seconds": round(self.write_seconds, 3)}


def replay_state(settings: Settings, *, force: bool = False, show_progress: bool = True, timeout: float = 600.0,
                 log: Callable[[str], None] = lambda line: None) -> StateReport:
    """Rebuilds every table's changelog from the event log; the workers must be stopped."""
    if not force:
        # A stopped worker may stay a member until the group's session timeout (10 s) expires.
        deadline = time.monotonic() + 30
        while (members := running_workers(settings)) and time.monotonic() < deadline:
            time.sleep(1)
        if members:
            raise ReplayError(f"{members} worker(s) are running (group {GROUP}); stop them first, or --force")
    codec = Codec()
    events: dict[str, dict[str, dict[int, tuple[Event, bytes]]]] = defaultdict(lambda: defaultdict(dict))
    outcomes: dict[str, tuple[CommandOutcome, bytes]] = {}
    replies: dict[str, bytes] = {}
    view_topics = {t for view in VIEWS for t in view.source_names}
    view_records: list[tuple[str, int, int, bytes, bytes]] = []
    undecodable = 0

    def handle(topic: str, partition: int, offset: int, key: bytes, value: bytes) -> None:
        nonlocal undecodable
        if topic in view_topics:
            view_records.append((topic, partition, offset, key, value))
        try:
            record = codec.decode(value)
        except DecodeError:
            undecodable += 1
            return
        if topic in _STATE_TABLES:
            if isinstance(record, Event):  # the first record of a version is the one in effect
                events[topic][record.aggregate_id].setdefault(record.version, (record, value))
        elif topic == topics.COMMAND_OUTCOMES.name:
            if isinstance(record, CommandOutcome):
                outcomes.setdefault(record.command_id, (record, value))
        elif topic in _REPLY_TOPICS:
            replies.setdefault(record.command_id, value)

    wanted = list(_STATE_TABLES) + [topics.COMMAND_OUTCOMES.name, *_REPLY_TOPICS] + sorted(view_topics)
    snapshot = read(settings, dict.fromkeys(wanted), handle, progress=Progress("reading the log", 0, show_progress),
                    timeout=timeout)

    # table → partition → key → value
    out: dict[str, dict[int, dict[str, bytes]]] = defaultdict(lambda: defaultdict(dict))
    partitions = settings.partitions
    counts: dict[str, int] = {}
    pending_transfers = 0
    by_command: dict[str, list[bytes]] = defaultdict(list)  # command id → its events' bytes, in order
    aggregate_of: dict[str, tuple[str, str]] = {}  # command id → (table, aggregate id)
    for topic, per_aggregate in events.items():
        table, domain = _STATE_TABLES[topic]
        counts[table] = len(per_aggregate)
        for aggregate_id, versions in per_aggregate.items():
            state = None
            for version in sorted(versions):
                event, raw = versions[version]
                state = domain.evolve(state, event)  # never decide: the log is trusted
                by_command[event.command_id].append(raw)
                aggregate_of.setdefault(event.command_id, (table, aggregate_id))
            partition = topics.partition_for(aggregate_id.encode(), partitions)
            out[table][partition][STATE_PREFIX + aggregate_id] = codec.encode(state)
            if domain is transfers and state.state in (transfers.INITIATED, transfers.DEBITED):
                steps = transfers.react(state, None, (versions[max(versions)][0],))
                if steps:
                    out["transfer_to_pending_steps"][partition][aggregate_id] = codec.encode(PendingSteps(
                        commands=tuple(codec.encode(s) for s in steps), issued_at=0))
                    pending_transfers += 1

    dedup = 0
    for command_id, (outcome, raw) in outcomes.items():
        command_type = COMMAND_TYPES.get(outcome.command_type)
        if command_type is None:
            continue
        table = _TABLE_OF_COMMAND_TOPIC.get(topics.command_topic_for(command_type).name)
        if table is None:
            continue
        aggregate_of[command_id] = (table, outcome.aggregate_id)
    for command_id, (table, aggregate_id) in aggregate_of.items():
        outcome = outcomes.get(command_id)
        reply = replies.get(f"{command_id}.reply")
        processed = codec.encode(ProcessedCommand(
            aggregate_id=aggregate_id, outcome=outcome[1] if outcome else None,
            events=tuple(by_command.get(command_id, ())), commands=(reply,) if reply else ()))
        partition = topics.partition_for(aggregate_id.encode(), partitions)
        out[table][partition][COMMAND_PREFIX + command_id] = processed
        dedup += 1
        if table == "customer_to_state" and by_command.get(command_id):
            # The email registry's reply settled this CreateCustomer: a redelivered reply is a duplicate too.
            out[table][partition][f"{COMMAND_PREFIX}{command_id}.reserve-email.reply"] = processed
            dedup += 1

    # The views, into the generation the workers serve.
    pointer = read_pointer(settings)
    view_entries = 0
    view_tables: dict[str, dict[int, dict]] = defaultdict(lambda: defaultdict(dict))
    projectors: dict[tuple[str, int], Callable] = {}
    readers = defaultdict(list)
    for view in VIEWS:
        for topic in view.source_names:
            readers[topic].append(view.name)
    for topic, partition, offset, key, value in view_records:
        for view in readers[topic]:
            project = projectors.get((view, partition))
            if project is None:
                project = projectors[(view, partition)] = _projector(view, codec, view_tables[view][partition])
            project(key, value, Origin(topic, partition, offset))
    for view, per_partition in view_tables.items():
        key_prefix = prefix(pointer.serving_of(view))
        for partition, tables in per_partition.items():
            for table, content in tables.items():
                for key, value in content.items():
                    out[table][partition][key_prefix + key] = _value_bytes(value, codec)
                    view_entries += 1

    started = time.monotonic()
    try:
        recreate_changelogs(settings)
    except AdminError as exc:
        raise ReplayError(str(exc)) from None
    if pointer.building:  # an unfinished view build cannot survive its changelogs
        write_pointer(settings, Pointer(dict(pointer.serving), {}))
    total = sum(len(c) for per in out.values() for c in per.values())
    progress = Progress("writing changelogs", total, show_progress)
    producer = BulkProducer(settings)
    for table, per_partition in out.items():
        changelog = topics.changelog_topic(table)
        for partition, content in per_partition.items():
            for key, value in content.items():
                producer.send(changelog, partition, key.encode(), value)
                progress.update(producer.sent)
    _flush(producer)
    progress.update(producer.sent)
    progress.finish()
    entries = total - view_entries
    log(f"{sum(counts.values())} aggregates, {dedup} dedup records, {pending_transfers} transfers in flight, "
        f"{view_entries} view entries written to fresh changelogs")
    return StateReport(counts, sum(len(v) for per in events.values() for v in per.values()), snapshot.records,
                       entries, dedup, pending_transfers, snapshot.seconds, time.monotonic() - started, view_entries)
