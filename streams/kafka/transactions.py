"""Exactly-once: each agent batch is one Kafka transaction per input partition.

Why this shape (evidence in topology.md, "Exactly-once"): Faust's own `exactly_once` sends outputs
outside the transaction and leaves destination transactions open until the broker aborts them;
its `confluent://` transport never gets ready. What works is librdkafka transactional producers
beside Faust's aiokafka consumer group, one `transactional.id` per (agent, input partition), the
scheme Kafka Streams used before EOS v2:

- On assignment, a task's producer calls `init_transactions` *before* anyone reads the partition's
  committed offset. That fences the previous owner (a zombie paused past its session timeout, or a
  worker still finishing a batch) and aborts or completes its open transaction, so the committed
  offset read afterwards is final.
- A batch's effects on one partition (changelog records of every table it wrote, events, outcomes,
  follow-up commands, dead letters) and the input offsets it consumed go in one transaction. A
  fenced producer's commit fails: nothing it wrote becomes visible to `read_committed` readers.
- Faust never commits offsets (`BankApp` disables it): offsets advance only with the effects.
- Local RocksDB is written only after a commit succeeded, with the changelog offset it reflects in
  the same WriteBatch, so local state is always a prefix of the committed changelog.
- After the fence, every table partition now active here is read from its local offset to the end of
  its changelog (`restore`; Faust's recovery then finds nothing left): nobody else writes them then,
  so that end is final, and a task never decides on state older than its changelog (as a Kafka
  Streams task restores to the changelog's end offset before it runs).
- A record is processed only if its offset is at or past the task's position (the committed
  offset at assignment, then one past each processed record): records still buffered from before
  a rebalance cannot be processed twice or out of order.

All librdkafka calls here block, so they run in worker threads, never on the event loop.
"""
from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Iterable

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from faust.types import TP

from ..contract import topics
from ..config import Settings
from ..services.handling import Outgoing
from .producer import producer_config
from .admin import topic_ids
from .reader import quiet_logger, read_tails

# librdkafka's own log lines go through logging, fatal ones only: its warnings and errors here are
# retries ("coordinator load in progress", a broker restarting: a line per producer and attempt)
# that it handles itself; what it cannot handle reaches us as an exception.
QUIET = quiet_logger("streams.kafka.transactions.librdkafka", keep_fatal=True)

log = logging.getLogger(__name__)

#: librdkafka's timeout for each transactional call (send offsets, flush, commit).
COMMIT_TIMEOUT_S = 30.0
#: How long a transaction may take in all before it is given up for hung. A call can hang past its
#: own timeout (librdkafka #5456, #5511: send_offsets_to_transaction with a stale group coordinator,
#: seen here after a broker restart, for good), so this is shorter than the calls' timeouts: a
#: transaction given up that was only slow cannot commit any more (`Task.abandoned`), and its
#: records are read again.
HUNG_AFTER_S = 20.0
#: How long a revocation waits for batches in flight to finish committing.
REVOKE_WAIT_S = 10.0
#: A fenced task waits this long before restarting: the revocation that usually follows comes first.
FENCED_BACKOFF_S = 2.0
#: How long reading changelogs to their end (`Transactions.restore`) may take in one attempt: long
#: enough for a worker restoring every table from nothing.
RESTORE_TIMEOUT_S = 600.0


@dataclass
class PartitionEffects:
    """What one batch did on one input partition, to be committed together."""

    partition: int
    #: (changelog topic, [(key, value or None)]) per table written on this partition.
    changelogs: list[tuple[str, list[tuple[bytes, bytes | None]]]]
    records: list[Outgoing]
    #: source topic → the next offset to read (one past the last record processed).
    offsets: dict[str, int]
    #: changelog topic → offset of its last record in the transaction (filled in by the commit).
    changelog_offsets: dict[str, int] = field(default_factory=dict)


class Fenced(Exception):
    """This worker no longer owns the partition: another producer took over its transactional id."""


class TransactionFailed(Exception):
    """A transaction could not be committed for a reason other than fencing; it was aborted."""


def transactional_id(agent: str, partition: int) -> str:
    return f"{topics.APP_ID}-{agent}-{partition}"


class Task:
    """One agent's work on one partition: its transactional producer and its input position."""

    def __init__(self, agent: str, partition: int, producer: Producer, positions: dict[str, int | None]):
        self.agent = agent
        self.partition = partition
        self.producer = producer
        #: source topic → the next offset to process (None: nothing committed yet, take the first).
        self.positions = positions
        #: source topic → the offset committed by this task's last transaction.
        self.committed: dict[str, int | None] = dict(positions)
        self.active = True
        self.committing = 0
        #: Set when a transaction of this task was given up for hung: it must not commit if it wakes.
        self.abandoned = False
        #: source topic → the last offset of a batch whose transaction failed: until the consumer,
        #: sought back to the committed offset, delivers a record at or before it again, later records
        #: are ones buffered before the rewind (they come again, in order, after it).
        self.rewinding: dict[str, int] = {}
        #: source topic → the highest offset delivered to this task, taken or not.
        self.seen: dict[str, int] = {}
        #: Whether its tables were read to the end of their changelogs (`Transactions.catch_up`).
        self.caught_up = False

    def accepts(self, topic: str, offset: int) -> bool:
        if offset > self.seen.get(topic, -1):
            self.seen[topic] = offset
        if not self.active:
            return False
        position = self.positions.get(topic)
        if position is not None and offset < position:
            return False  # processed already (a record buffered before a rebalance, delivered again)
        bound = self.rewinding.get(topic)
        if bound is not None:
            if offset > bound:
                return False
            del self.rewinding[topic]
        self.positions[topic] = offset + 1
        return True


class Hold:
    """A test-only hook: while the file named by `BANK_TEST_HOLD_BEFORE_COMMIT` exists, the
    transactions of the agent it names wait after their records are handed to the producer and
    before they commit (the zombie test holds a worker there while its partitions move)."""

    def __init__(self, path: str | None):
        self.path = path

    def wait(self, task: Task) -> None:
        if not self.path or not os.path.exists(self.path):
            return
        try:
            with open(self.path) as file:
                if file.read().strip() not in ("", task.agent):
                    return
        except OSError:  # removed meanwhile: released
            return
        log.warning("held before committing %s (test hook %s)", transactional_id(task.agent, task.partition),
                    self.path)
        while os.path.exists(self.path):
            time.sleep(0.05)
        log.warning("released: committing %s", transactional_id(task.agent, task.partition))


class Transactions:
    """The worker's transactional tasks: created on assignment, closed on revocation."""

    def __init__(self, settings: Settings, sources: dict[str, tuple[str, ...]], *, shared: Iterable[str] = (),
                 hold_path: str | None = None):
        self.settings = settings
        self.sources = sources  # agent → the topics it reads
        #: Topics several agents read (bank.view-rebuild): their offset is the least any agent committed.
        self.shared = set(shared)
        self.tasks: dict[tuple[str, int], Task] = {}
        self.hold = Hold(hold_path)
        # Roomy: a librdkafka call can hang past its timeout (librdkafka #5456: send_offsets_to_transaction
        # while the group coordinator is down), keeping its thread until it returns.
        self._pool = ThreadPoolExecutor(max_workers=64, thread_name_prefix="txn")
        #: Seeks the workers' consumer (Faust's `consumer.seek`); set by streams.worker.wiring.
        self.seek = None
        #: Makes the workers' consumer rejoin its group, so the rebalance that follows recovers the
        #: tables from their changelogs (set by streams.worker.wiring).
        self.rejoin = lambda: None
        self._shared_locks: dict[tuple[str, int], asyncio.Lock] = {}
        self._last_seen: dict[tuple[str, int], dict[str, int]] = {}
        self._shared_committed: dict[tuple[str, int], int] = {}
        self._group: Consumer | None = None
        self._group_lock = threading.Lock()
        #: Told (agent, the committed effects, seconds) after each batch, and (agent) of each fenced or
        #: failed transaction and each stale task that rejoined; streams.worker.metrics sets them.
        self.on_commit = lambda agent, effects, seconds: None
        self.on_fenced = lambda agent: None
        self.on_failed = lambda agent: None
        self.on_stale = lambda agent: None
        #: Told (agent, changelog topic, records) when a task's table was behind its changelog (catch_up).
        self.on_behind = lambda agent, changelog, records: None

    # -- configuration -----------------------------------------------------------------------
    def producer_config(self, agent: str, partition: int) -> dict:
        return producer_config(self.settings, **{
            "transactional.id": transactional_id(agent, partition),
            "transaction.timeout.ms": int(COMMIT_TIMEOUT_S * 1000),
            "linger.ms": self.settings.linger_ms,
            "compression.type": "none",
            # Back-to-back transactions meet CONCURRENT_TRANSACTIONS while the last one's markers are
            # written; librdkafka retries after this backoff (100 ms by default: 10 transactions/s).
            "retry.backoff.ms": 5,
            "client.id": transactional_id(agent, partition),
            "logger": QUIET,
        })

    def group(self) -> Consumer:
        """A consumer with the workers' group id that never subscribes: it reads committed offsets and
        gives the group metadata `send_offsets_to_transaction` wants."""
        with self._group_lock:
            if self._group is None:
                self._group = Consumer(self.settings.consumer_config(**{
                    "group.id": topics.APP_ID, "enable.auto.commit": False, "logger": QUIET}))
            return self._group

    # -- rebalancing -------------------------------------------------------------------------
    async def on_revoked(self, revoked) -> None:
        """Stops the tasks of revoked partitions (no new transaction starts for them), waits a while for
        commits in flight, then closes their producers."""
        partitions = {tp.partition for tp in revoked}
        gone = [task for key, task in self.tasks.items() if key[1] in partitions]
        for task in gone:
            task.active = False
        deadline = time.monotonic() + REVOKE_WAIT_S
        while any(task.committing for task in gone) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for task in gone:
            # What it was handed beyond its committed offsets (a batch in flight or failed) comes again
            # after the next assignment; until then records buffered behind it must wait (see on_assigned).
            self._last_seen[(task.agent, task.partition)] = dict(task.seen)
            if self.tasks.get((task.agent, task.partition)) is task and not task.committing:
                del self.tasks[(task.agent, task.partition)]
                await asyncio.get_running_loop().run_in_executor(self._pool, _close, task.producer)
            elif task.committing:
                log.warning("%s still committing after %.0f s; left to fail on its own",
                            transactional_id(task.agent, task.partition), REVOKE_WAIT_S)
                self.tasks.pop((task.agent, task.partition), None)

    async def on_assigned(self, assigned) -> None:
        """Creates a task for every (agent, partition) now assigned: `init_transactions` first (fencing
        any previous owner), then the committed offsets, read only after that."""
        loop = asyncio.get_running_loop()
        wanted = []
        for agent, sources in self.sources.items():
            for tp in assigned:
                if tp.topic == sources[0] and (agent, tp.partition) not in self.tasks:
                    wanted.append((agent, tp.partition))
        started = time.monotonic()
        producers = await asyncio.gather(*(loop.run_in_executor(self._pool, self._init, agent, partition)
                                           for agent, partition in wanted))
        committed = await loop.run_in_executor(self._pool, self._committed, wanted)
        for (agent, partition), producer in zip(wanted, producers):
            positions = {topic: committed.get((topic, partition)) for topic in self.sources[agent]}
            task = self.tasks[(agent, partition)] = Task(agent, partition, producer, positions)
            # Records handed to the last task here past the committed offsets (its batch did not commit)
            # come again from the seek to committed; records buffered behind them must not go first.
            seen = self._last_seen.pop((agent, partition), {})
            task.rewinding = {topic: offset for topic, offset in seen.items()
                              if topic in positions and offset >= (positions[topic] or 0)}
        if wanted:
            log.info("%d transactional tasks ready in %.2f s", len(wanted), time.monotonic() - started)

    def _init(self, agent: str, partition: int) -> Producer:
        producer = Producer(self.producer_config(agent, partition))
        producer.init_transactions(COMMIT_TIMEOUT_S)
        return producer

    def _committed(self, wanted: list[tuple[str, int]]) -> dict[tuple[str, int], int | None]:
        tps = sorted({(topic, partition) for agent, partition in wanted for topic in self.sources[agent]})
        if not tps:
            return {}
        answer = self.group().committed([TopicPartition(t, p) for t, p in tps], timeout=COMMIT_TIMEOUT_S)
        return {(tp.topic, tp.partition): (tp.offset if tp.offset >= 0 else None) for tp in answer}

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        tasks, self.tasks = list(self.tasks.values()), {}
        for task in tasks:
            task.active = False
        await asyncio.gather(*(loop.run_in_executor(self._pool, _close, t.producer) for t in tasks))
        if self._group is not None:
            await loop.run_in_executor(self._pool, self._group.close)
            self._group = None

    # -- processing ----------------------------------------------------------------------------
    def task(self, agent: str, partition: int) -> Task | None:
        return self.tasks.get((agent, partition))

    async def restore(self, applied: dict[tuple[str, int], int | None], apply, *, still_wanted=lambda: True
                      ) -> dict[tuple[str, int], int]:
        """Reads each changelog partition of `applied` ((topic, partition) → the offset of the last
        record the local table holds, None: none) from past that offset to its end, handing the records
        to `apply((topic, partition), records)` in order (in a worker thread); returns how many each had.

        This, not Faust's recovery, makes the tables current (`streams.worker.wiring`): on assignment,
        after the fence, for every table partition now active here (nobody else writes them then, so
        the ends are final), and again before a restarted task's first batch (`catch_up`). Faust's
        recovery (standby reading cut short, no recovery at the next assignment) has let a worker woken
        from SIGSTOP take a partition over with the tables it had before the freeze, and skipped
        changelog records a standby should have applied: account versions forked, transfer views froze.
        A failed read is tried again (a broker restarting) for as long as `still_wanted()`."""
        starts = {where: (offset + 1 if offset is not None else 0) for where, offset in applied.items()}
        loop = asyncio.get_running_loop()

        def apply_on_loop(where, records) -> None:
            # Tables are written on the event loop only: between batches' synchronous steps, never
            # beside one, and RocksDB databases are opened by one thread.
            asyncio.run_coroutine_threadsafe(as_coroutine(apply, where, records), loop).result()
        if not starts:
            return {}
        return await self._retrying(f"reading {len(starts)} changelog partitions to their end", still_wanted,
                                    read_tails, self.settings, starts, apply_on_loop, RESTORE_TIMEOUT_S)

    async def topic_ids(self, names: list[str], *, still_wanted=lambda: True) -> dict[str, str]:
        """The changelogs' topic ids: a changelog recreated (`bank replay state`) has a new one, and a
        local table holding an earlier one is not a prefix of it, whatever its offset says."""
        return await self._retrying("reading the changelogs' topic ids", still_wanted, topic_ids, self.settings,
                                    names, COMMIT_TIMEOUT_S)

    async def _retrying(self, what: str, still_wanted, function, *args):
        """`function(*args)` in a worker thread, tried again while it fails (the cluster unwell, a broker
        restarting) and `still_wanted()`."""
        delay = 0.5
        while True:
            try:
                return await asyncio.get_running_loop().run_in_executor(self._pool, function, *args)
            except Exception as exc:
                if not still_wanted():
                    raise
                log.warning("%s failed (%s); trying again in %.1f s", what, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    def restored(self, partitions: Iterable[int]) -> None:
        """The tables of `partitions` are current: their tasks need no catch-up."""
        partitions = set(partitions)
        for (agent, partition), task in self.tasks.items():
            if partition in partitions:
                task.caught_up = True

    def needs_catch_up(self, agent: str, partition: int) -> bool:
        task = self.tasks.get((agent, partition))
        return task is not None and task.active and not task.caught_up

    async def catch_up(self, agent: str, partition: int, applied: dict[str, int | None], apply) -> dict[str, int]:
        """A task's tables (changelog topic → the offset of the last record its local table holds) read
        forward to their changelogs' end before its first batch (`restore`): for a task restarted in
        place after a failed transaction, whose batch may have committed after all. Returns the records
        found per changelog (none, normally)."""
        task = self.tasks.get((agent, partition))
        if task is None or task.caught_up:
            return {}
        counts = await self.restore({(topic, partition): offset for topic, offset in applied.items()},
                                    lambda where, records: apply(where[0], records),
                                    still_wanted=lambda: self.tasks.get((agent, partition)) is task and task.active)
        task.caught_up = True
        behind = {topic: count for (topic, _), count in counts.items() if count}
        for topic, count in behind.items():
            log.warning("%s[%d]: its table was %d records behind %s (local state at %s); read forward before "
                        "processing", agent, partition, count, topic, applied[topic])
            self.on_behind(agent, topic, count)
        return behind

    def accepts(self, agent: str, topic: str, partition: int, offset: int) -> bool:
        task = self.tasks.get((agent, partition))
        if task is None:
            # Handed on while no task holds the partition (between a revocation and the next assignment):
            # if the partition comes back here, records buffered behind these must wait until they come
            # again (on_assigned), or the next task would take a later one first and refuse these after.
            seen = self._last_seen.setdefault((agent, partition), {})
            if offset > seen.get(topic, -1):
                seen[topic] = offset
            return False
        return task.accepts(topic, offset)

    async def commit(self, agent: str, effects: list[PartitionEffects]) -> list[PartitionEffects]:
        """Commits each partition's effects in its own transaction, concurrently; returns those committed.

        A partition whose producer was fenced is dropped (its records are another worker's now). After
        any other failure (aborted, or no answer in time) the partition's task restarts in the
        background (`_restart`) and its records are read again; this batch's effects there are dropped.
        """
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        jobs, tasks = [], []
        for effect in effects:
            task = self.tasks.get((agent, effect.partition))
            if task is None or not task.active:
                log.info("%s[%d]: partition no longer ours; its batch is dropped", agent, effect.partition)
                continue
            task.committing += 1
            tasks.append((task, effect))
            jobs.append(loop.run_in_executor(self._pool, self._transact, task, effect, self._offsets(task, effect)))
        results = await asyncio.gather(*(_watched(job) for job in jobs), return_exceptions=True)
        committed = []
        for (task, effect), result in zip(tasks, results):
            task.committing -= 1
            if result is None:
                task.committed.update(effect.offsets)
                committed.append(effect)
                if self.shared.intersection(effect.offsets):
                    await self._commit_shared(task, effect)
            elif isinstance(result, Fenced):
                # Another worker took the partition over. Usually the revocation follows and the task
                # goes; if the partition comes back to this worker first (a zombie rejoining), the task
                # restarts like after a failure, fencing in turn.
                log.warning("%s[%d] fenced: another worker owns it now; nothing of this batch is visible (%s)",
                            agent, effect.partition, result)
                task.active = False
                task.abandoned = True
                self.on_fenced(agent)
                asyncio.ensure_future(self._restart(task, effect, backoff=FENCED_BACKOFF_S))
            else:
                log.warning("%s[%d]: the transaction failed (%s); nothing of this batch is visible, and the "
                            "partition is read again from its committed offsets", agent, effect.partition, result)
                task.active = False
                task.abandoned = True
                self.on_failed(agent)
                asyncio.ensure_future(self._restart(task, effect))
        self.on_commit(agent, committed, time.monotonic() - started)
        return committed

    async def _restart(self, failed: Task, effect: PartitionEffects, backoff: float = 0.0) -> None:
        """After a failed transaction: a new producer for the task (init_transactions fences the old one
        and aborts what it left open), the committed offsets read again, and the consumer sought back
        to them for the topics the failed batch read, so its records are processed again, in order.

        Only while the committed offsets are still the task's own: if they moved, another worker
        owned the partition meanwhile (this one is a zombie that has not heard yet, or its failed batch
        committed after all) and the local tables are behind them. Then the worker rejoins the group
        instead: a new producer would fence the partition's real owner, and a batch decided on the
        stale tables would fork versions or skip view updates. The rebalance revokes the partition and,
        if it comes back, recovers its tables from the changelogs first."""
        loop = asyncio.get_running_loop()
        key = (failed.agent, failed.partition)
        await asyncio.sleep(backoff)  # fenced: give the rebalance that usually follows time to revoke it
        delay = 0.5
        while self.tasks.get(key) is failed:  # until revoked
            try:
                committed = await loop.run_in_executor(self._pool, self._committed, [key])
                if self._moved(failed, committed):
                    break
                producer = await loop.run_in_executor(self._pool, self._init, *key)
                committed = await loop.run_in_executor(self._pool, self._committed, [key])
                if self._moved(failed, committed):
                    loop.run_in_executor(self._pool, _close, producer)
                break
            except Exception as exc:  # the cluster still unwell: try again, backing off
                log.warning("%s[%d]: restarting its transactions failed (%s); trying again in %.1f s",
                            *key, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        else:
            return
        if self.tasks.get(key) is not failed:  # revoked meanwhile: the next owner reads it
            if not self._moved(failed, committed):
                loop.run_in_executor(self._pool, _close, producer)
            return
        if self._moved(failed, committed):
            log.warning("%s[%d]: its committed offsets moved without it (%s, not %s): another worker owned it "
                        "meanwhile; rejoining the group so its tables recover before it processes again",
                        *key, self._own(failed, committed), self._own(failed, failed.committed))
            self.on_stale(failed.agent)
            self.rejoin()
            return
        positions = {topic: committed.get((topic, failed.partition)) for topic in self.sources[failed.agent]}
        task = Task(failed.agent, failed.partition, producer, positions)
        # Every record delivered since the committed offsets (the failed batch, and any refused while
        # the task was stopped) comes again.
        task.rewinding = {topic: offset for topic, offset in failed.seen.items()
                          if topic in positions and offset >= (positions[topic] or 0)}
        self.tasks[key] = task
        log.warning("%s[%d]: transactions restarted; reading again from %s", *key,
                    {t: positions[t] for t in task.rewinding})
        # Seek back, and again while the records before the failure have not come back: Faust drops a
        # record below the offset it last handed on, and records fetched before a seek can still be
        # handed on after it, moving that offset past the seek.
        for attempt in range(120):
            for topic in list(task.rewinding):
                await self.seek(TP(topic, failed.partition), positions[topic] or 0)
            await asyncio.sleep(1.0)
            if not task.rewinding or self.tasks.get(key) is not task:
                return
        log.error("%s[%d]: the records before a failed transaction did not come back", *key)

    def _own(self, task: Task, offsets: dict) -> dict[str, int | None]:
        """`offsets` (by topic, or by (topic, partition)) for the task's own input topics."""
        return {topic: offsets.get(topic, offsets.get((topic, task.partition)))
                for topic in self.sources[task.agent] if topic not in self.shared}

    def _moved(self, task: Task, committed: dict[tuple[str, int], int | None]) -> bool:
        """Whether the group's committed offsets differ from those of the task's last transaction."""
        return self._own(task, committed) != self._own(task, task.committed)

    def _offsets(self, task: Task, effect: PartitionEffects) -> list[TopicPartition]:
        # A topic several agents read (bank.view-rebuild) is committed apart: `_commit_shared`.
        return [TopicPartition(topic, effect.partition, offset) for topic, offset in effect.offsets.items()
                if topic not in self.shared]

    def _shared_done(self, topic: str, partition: int) -> int | None:
        """The least offset every agent reading `topic` here has committed (None: one has none yet)."""
        done = [t.committed.get(topic) for (agent, p), t in self.tasks.items()
                if p == partition and topic in self.sources[agent]]
        return None if not done or any(d is None for d in done) else min(done)

    async def _commit_shared(self, task: Task, effect: PartitionEffects) -> None:
        """Commits a shared topic's offset once every agent reading it has committed that far, in a
        transaction of its own on `task`'s producer. One at a time per partition, recomputed under the
        lock, so a commit never goes back past a later one."""
        loop = asyncio.get_running_loop()
        for topic in effect.offsets:
            if topic not in self.shared:
                continue
            where = (topic, effect.partition)
            lock = self._shared_locks.setdefault(where, asyncio.Lock())
            async with lock:
                offset = self._shared_done(topic, effect.partition)
                if offset is None or offset <= self._shared_committed.get(where, -1) or not task.active:
                    continue
                only = PartitionEffects(effect.partition, [], [], {})
                task.committing += 1
                try:
                    result = await _watched(loop.run_in_executor(
                        self._pool, self._transact, task, only, [TopicPartition(topic, effect.partition, offset)]))
                except Exception as exc:  # fenced or failed: the task's next batch finds out and restarts it
                    result = exc
                finally:
                    task.committing -= 1
                if result is None:
                    self._shared_committed[where] = offset
                else:
                    log.warning("committing %s[%d] at %d failed (%s); the next batch tries again", topic,
                                effect.partition, offset, result)

    def _transact(self, task: Task, effect: PartitionEffects, offsets: list[TopicPartition]) -> None:
        producer = task.producer
        try:
            producer.begin_transaction()
            last: dict[str, int] = {}
            errors: list[str] = []

            def delivered(err, msg):
                if err is not None:
                    errors.append(f"{msg.topic()}[{msg.partition()}]: {err}")
                else:
                    last[msg.topic()] = msg.offset()
            # A delivery report only for each changelog's last record (the offset local state records):
            # one Python callback per record, each taking the GIL from the event loop, cost more than
            # the records. Any other record the broker refuses fails the transaction all the same:
            # librdkafka puts it in the abortable error state, and commit_transaction raises.
            for topic, entries in effect.changelogs:
                last_entry = len(entries) - 1
                for index, (key, value) in enumerate(entries):
                    if index == last_entry:
                        _produce(producer, topic, key=key, value=value, partition=effect.partition,
                                 on_delivery=delivered)
                    else:
                        _produce(producer, topic, key=key, value=value, partition=effect.partition)
            for record in effect.records:
                if record.headers:
                    _produce(producer, record.topic, key=record.key.encode(), value=record.value,
                             headers=list(record.headers))
                else:
                    _produce(producer, record.topic, key=record.key.encode(), value=record.value)
            if offsets:
                producer.send_offsets_to_transaction(offsets, self.group().consumer_group_metadata(),
                                                     COMMIT_TIMEOUT_S)
            remaining = producer.flush(COMMIT_TIMEOUT_S)
            if remaining or errors:
                raise TransactionFailed(f"{remaining} records unacknowledged; refused: {errors[:5]}")
            self.hold.wait(task)
            if task.abandoned:  # given up for hung meanwhile: its task restarts and reads this again
                raise TransactionFailed("given up for hung before its commit")
            _commit(producer)
            effect.changelog_offsets = {topic: last[topic] for topic, _ in effect.changelogs if topic in last}
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if _is_fenced(error):
                raise Fenced(str(error)) from None
            _abort(producer)
            raise TransactionFailed(str(error)) from None
        except TransactionFailed:
            _abort(producer)
            raise
        except Exception as exc:
            # confluent-kafka has been seen to raise SystemError from flush() once the producer was
            # fenced; aborting tells a fenced producer (it refuses, fenced) from any other failure.
            _abort(producer)
            raise TransactionFailed(repr(exc)) from exc


async def _watched(job: asyncio.Future):
    """The transaction's result, or a failure once it took longer than librdkafka was told it may."""
    try:
        return await asyncio.wait_for(asyncio.shield(job), HUNG_AFTER_S)
    except asyncio.TimeoutError:
        job.add_done_callback(lambda done: done.exception())  # whatever it ends with, nobody waits for it now
        return TransactionFailed(f"no answer after {HUNG_AFTER_S:.0f} s")


async def as_coroutine(function, *args):
    """`function(*args)` as a coroutine, for APIs that run only those (on another thread's loop)."""
    return function(*args)


def _produce(producer: Producer, topic: str, **record) -> None:
    while True:
        try:
            producer.produce(topic, **record)
            return
        except BufferError:  # librdkafka's queue is full: let it drain
            producer.poll(0.005)


def _commit(producer: Producer) -> None:
    """commit_transaction, called again while its error is retriable (a broker restarting, a timeout),
    as librdkafka asks, until COMMIT_TIMEOUT_S has passed."""
    deadline = time.monotonic() + COMMIT_TIMEOUT_S
    while True:
        try:
            producer.commit_transaction(max(1.0, deadline - time.monotonic()))
            return
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if not error.retriable() or error.txn_requires_abort() or time.monotonic() >= deadline:
                raise
            log.warning("committing a transaction failed (%s); trying again", error)
            time.sleep(0.1)


def _is_fenced(error: KafkaError) -> bool:
    return error.code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH,
                            KafkaError.INVALID_PRODUCER_ID_MAPPING) or (error.fatal() and "fenced" in str(error).lower())


def _abort(producer: Producer) -> None:
    """Aborts the open transaction; raises Fenced when the producer was fenced meanwhile."""
    try:
        producer.abort_transaction(COMMIT_TIMEOUT_S)
    except KafkaException as exc:
        if _is_fenced(exc.args[0]):
            raise Fenced(str(exc.args[0])) from None
        log.warning("aborting a transaction failed: %s", exc)


def _close(producer: Producer) -> None:
    try:
        producer.flush(1.0)
    except Exception:  # closing only
        pass

