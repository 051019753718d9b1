"""The app factory and the one wiring function: topics, tables, agents and web views."""
from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Callable, Iterable, Protocol

import faust
from faust.tables.recovery import RebalanceAgain
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, Consumer as AIOKafkaDriverConsumer

from . import topics
from .avro import Codec
from .batches import BatchedTable, coalesce
from .config import Settings
from .liveness import fetch_position, watch as watch_for_stalls
from .privacy import KeyStore, purge_processed_commands
from .domain import accounts, customers, emails, transfers
from .generations import VIEW_OF_TABLE, Registry, prefix
from .metrics import Metrics, instrument
from .transactions import PartitionEffects, Transactions
from .view_generations import ViewAgent

from .processing import (
    AccountProjector,
    COMMAND_PREFIX,
    STATE_PREFIX,
    CommandProcessor,
    CustomerProjector,
    EmailIndexer,
    KeyPrefixed,
    Origin,
    OutcomeRecorder,
    Outgoing,
    TransferProjector,
    now_ms,
)


log = logging.getLogger(__name__)


def create_app(settings: Settings, **overrides) -> faust.App:
    """A Faust app configured from `settings`; nothing is read from the environment here."""
    servers = ";".join(f"kafka://{server}" for server in settings.bootstrap_servers.split(","))
    config = dict(
        broker=servers,
        store="rocksdb://",
        datadir=str(settings.worker_dir),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",  # faust #651: never skip history on a new group
        # Faust's own exactly_once is broken (topology.md, "Exactly-once"): ours is streams.transactions.
        processing_guarantee="at_least_once",
        producer_acks=-1,
        # A few ms of linger turns one produce request per record into one per batch: the broker,
        # on the same two cores, otherwise spends more CPU per command than the worker.
        producer_linger=settings.linger_ms / 1000.0,
        broker_commit_every=1000,  # Faust's commits only trim its ack bookkeeping (TransactionalConsumer)
        broker_commit_interval=0.5,
        broker_max_poll_records=500,  # robinhood/faust#402: smaller polls keep rebalances moving
        # A worker killed with -9 leaves the group after this long; its partitions then move.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=2.0,
        broker_rebalance_timeout=30.0,
        stream_wait_empty=False,
        table_cleanup_interval=30.0,
        web_host=settings.web_host,
        web_bind=settings.web_host,
        web_port=settings.web_port,
        canonical_url=f"http://{settings.web_host}:{settings.web_port}",
        # Names the worker's HTTP address in the consumer group, so `bank status` can tell who holds what.
        broker_client_id=f"streambank-worker-{settings.web_host}-{settings.web_port}",
        # Static membership: a worker restarted (after kill -9, a crash loop) under the same id gets its
        # partitions back without a rebalance, so the healthy workers never stop for it. A worker gone
        # for longer than the session timeout is removed and its partitions move as before.
        consumer_group_instance_id=settings.worker_id,
        web_tables_enabled=False,  # it would expose the raw aggregate tables
        web_stats_enabled=False,
        web_graph_enabled=False,
        web_router_enabled=False,
        web_metrics_enabled=False,
        web_in_thread=False,
        autodiscover=False,
    )
    config.update(overrides)
    return BankApp(topics.APP_ID, **config)


class ReadCommittedThread(AIOKafkaConsumerThread):
    """Faust's aiokafka consumer thread, reading only committed records (agents, recovery, standbys).

    Faust sets read_committed only under its own `exactly_once`, which also makes its highwaters the
    consumer's last stable offsets, unknown (None, so "nothing to recover") until a fetch returns.
    """

    def _create_worker_consumer(self, transport):
        consumer = super()._create_worker_consumer(transport)
        consumer._isolation_level = "read_committed"  # AIOKafkaConsumer hands it to its fetcher at start
        return consumer

    def verify_event_path(self, now: float, tp) -> None:
        # Faust's livelock warnings compare committed offsets with highwaters, which under transactions
        # end with markers: "has not started processing" for ever on an idle partition. The liveness
        # check behind /health (streams.liveness) does this job, markers understood.
        return None


class TransactionalConsumer(AIOKafkaDriverConsumer):
    """Faust's consumer that never commits offsets: they are committed with each batch's effects, in
    its transaction (streams.transactions). Faust's commit rounds still trim its ack bookkeeping."""

    def _new_consumer_thread(self):
        return ReadCommittedThread(self, loop=self.loop, beacon=self.beacon)

    async def _commit_offsets(self, offsets, start_new_transaction: bool = True) -> bool:
        self._committed_offset.update(offsets)
        # What Faust's livelock check reads ("has not committed ... since worker start"): these
        # offsets' effects were committed, in their transactions, before they were acked.
        self._thread.tp_last_committed_at.update({tp: time.monotonic() for tp in offsets})
        return True


class BankApp(faust.App):
    """Faust's App whose transactional tasks (streams.transactions) stop on revocation (assignment:
    `fence_before_recovery`) and close with it."""

    transactions: "Transactions | None" = None
    #: Rebalances between their fence and Faust's table rebalance (fence_before_recovery).
    fencing: int = 0

    def _new_consumer(self):
        self.transport.Consumer = TransactionalConsumer
        return super()._new_consumer()

    async def _on_partitions_revoked(self, revoked) -> None:
        if self.transactions is not None and not self.should_stop:
            try:
                await self.transactions.on_revoked(revoked)
            except Exception as exc:
                await self.crash(exc)
                return
        await super()._on_partitions_revoked(revoked)

    async def on_stop(self) -> None:
        if self.transactions is not None:
            await self.transactions.close()
        await super().on_stop()


def rejoin_group(app: faust.App) -> None:
    """Makes the workers' aiokafka consumer rejoin its group: the rebalance revokes every partition and
    recovers the tables of those assigned again from their changelogs (on the consumer's own thread:
    aiokafka's coordinator is not thread-safe)."""
    thread = app.consumer._thread
    coordinator = thread._ensure_consumer()._coordinator
    thread.thread_loop.call_soon_threadsafe(coordinator.request_rejoin)


def fence_before_recovery(app: faust.App, transactions: Transactions) -> None:
    """Runs the transactions' `on_assigned` between Faust's pausing of a new assignment and its table
    recovery (which ends in the seek to committed offsets): init_transactions fences the previous
    owners first, so what recovery and the seek read is final."""
    tables = app.tables
    on_rebalance = tables.on_rebalance

    async def fence_then_recover(assigned, revoked, newly_assigned, generation_id: int = 0):
        # While the fence is awaited, the last round's recovery still waits for its end; it must not
        # be ended then (end_recovery_past_markers): Faust's rebalance below swaps its partition sets
        # in place, and a round ended meanwhile went on with the new standbys' unbuilt offsets
        # (ValueError from aiokafka's seek: the worker crashed).
        app.fencing = getattr(app, "fencing", 0) + 1  # a plain faust.App in component tests
        try:
            if not app.should_stop:
                await transactions.on_assigned(assigned)
            await on_rebalance(assigned, revoked, newly_assigned, generation_id)
        finally:
            app.fencing -= 1
    tables.on_rebalance = fence_then_recover


def end_recovery_past_markers(app: faust.App, interval: float = 0.1, idle: float = 10.0) -> None:
    """Lets table recovery end when a changelog partition is read to its end.

    Read committed, a changelog ends with a transaction marker that no consumer is ever given, so
    Faust's recovery (which waits for the record at highwater - 1) would wait for it forever; its own
    workaround, under its `exactly_once`, waits two 5 s timeouts. Here a partition is recovered once
    the consumer's position is past the highwater and either the record just before the marker was
    applied or nothing has arrived for `idle` seconds (the last committed record sits further back,
    before an aborted transaction's records).
    """
    recovery = app.tables.recovery
    active_remaining, standby_remaining = recovery.active_remaining, recovery.standby_remaining
    started = {"at": time.monotonic()}

    def read_to_end(remaining: Counter, highwaters, offsets, received_at) -> Counter:
        now = time.monotonic()
        for tp, left in remaining.items():
            if left <= 0:
                continue
            at = fetch_position(app, tp)
            if at is None or at <= highwaters.get(tp, at):
                continue
            applied = offsets.get(tp)
            # Fetched is not applied: records may still wait in Faust's queue. Going by quiet alone
            # needs a long wait and an empty queue (a short one ended recovery with records unapplied).
            quiet = (now - max(received_at.get(tp, 0.0), started["at"]) >= idle
                     and app.tables.changelog_queue.empty())
            if (applied is not None and applied >= highwaters[tp] - 1) or quiet:
                remaining[tp] = 0
        return remaining

    # Neither Faust's own check (after each changelog record, and every 5 s) nor the timer below may end
    # the last round while the next rebalance is fencing (fence_before_recovery).
    need_recovery = recovery.need_recovery
    recovery.need_recovery = lambda: bool(getattr(app, "fencing", 0)) or need_recovery()
    # A round goes no further once the next rebalance has signalled: Faust notices that only when
    # the signal wins the race inside a wait, and a round that went on used the new assignment's
    # partition sets, swapped in place, with their offsets not built (the worker crashed).
    wait = recovery._wait

    async def wait_unless_rebalancing(coro, timeout=None) -> None:
        if recovery.signal_recovery_start.is_set():
            if asyncio.iscoroutine(coro):
                coro.close()
            raise RebalanceAgain()
        await wait(coro, timeout=timeout)
        if recovery.signal_recovery_start.is_set():
            raise RebalanceAgain()
    recovery._wait = wait_unless_rebalancing
    recovery.active_remaining = lambda: read_to_end(
        active_remaining(), recovery.active_highwaters, recovery.active_offsets, recovery._active_events_received_at)
    recovery.standby_remaining = lambda: read_to_end(
        standby_remaining(), recovery.standby_highwaters, recovery.standby_offsets,
        recovery._standby_events_received_at)

    @app.task
    async def end_recovery_when_read():
        waiting = False
        while not app.should_stop:
            await asyncio.sleep(interval)
            # Only while Faust's recovery waits for the end of the changelogs: before that, in the same
            # round, its highwaters and offsets are still being built (or are the last round's); and not
            # while the next rebalance is fencing (fence_before_recovery).
            if getattr(app, "fencing", 0) or not (recovery.in_recovery and recovery.signal_recovery_end._waiters):
                waiting = False
                continue
            if not waiting:
                waiting, started["at"] = True, time.monotonic()
            if not recovery.need_recovery():
                recovery.flush_buffers()
                recovery._set_recovery_ended()
                recovery.signal_recovery_end.set()


class Sink(Protocol):
    """Where a batch's effects go: the transactions (a worker) or a recording emitter (component tests)."""

    def accepts(self, agent: str, topic: str, partition: int, offset: int) -> bool: ...

    async def commit(self, agent: str, effects: list[PartitionEffects]) -> list[PartitionEffects]: ...


class Emitter(Protocol):
    async def emit(self, records: Iterable[Outgoing]) -> None: ...


class LocalSink:
    """Without a broker (component tests): every batch commits; its records go to `emitter`."""

    def __init__(self, emitter: Emitter):
        self.emitter = emitter

    def accepts(self, agent: str, topic: str, partition: int, offset: int) -> bool:
        return True

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
            if waiting and future in waiting:
                waiting.remove(future)


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
    generations: Registry = field(default_factory=Registry)  # which view generation is served
    writers: dict[str, "BatchedTable"] = field(default_factory=dict)  # the agents' side of `tables`
    handled: Counter = field(default_factory=Counter)  # agent → records handled (tests wait on it)
    #: Told of an unexpected error in a batch before it propagates (the worker stops at once: see Batch.run).
    on_batch_failure: Callable[[str, BaseException], None] | None = None

    def view(self, table: str):
        """A view table as the API reads it: the serving generation's entries, by their bare keys."""
        generation = self.generations.serving(VIEW_OF_TABLE[table])
        return self.tables[table] if generation == 0 else KeyPrefixed(self.tables[table], prefix(generation))


def _table(app: faust.App, name: str, settings: Settings, help: str) -> faust.Table:
    # key_type=bytes makes Faust use the raw serializer: str keys are written as plain UTF-8 and
    # partition exactly like the command and event topics (str would mean JSON, quoting the keys
    # and routing GETs to the wrong worker).
    return app.Table(name, key_type=bytes, value_type=bytes, partitions=settings.partitions, help=help,
                     options=dict(ROCKSDB_OPTIONS))  # a copy: Faust's store pops keys from it


#: RocksDB sizing per table partition (12 tables × their partitions are each a database). Faust's
#: defaults (a 2 GiB block cache and 3 × 64 MiB memtables per database) let a worker's RSS grow to
#: many GiB as its tables fill; these keep a worker holding a million accounts well under 1 GiB.
ROCKSDB_OPTIONS = {
    "write_buffer_size": 4 * 2**20,
    "max_write_buffer_number": 2,
    "target_file_size_base": 16 * 2**20,
    "block_cache_size": 8 * 2**20,
    "block_cache_compressed_size": 0,
    "max_open_files": 256,
}


def purge_forgotten_commands(pipeline: Pipeline, forgets: dict[tuple[str, int], int], interval: float = 5.0) -> None:
    """Once a ForgetCustomer is committed, deletes the processed records before it from its commands
    partition: the customer's plaintext `CreateCustomer` (any producer may write one) goes with them."""
    app = pipeline.app

    @app.timer(interval)
    async def purge_processed_customer_commands():
        """Delete processed customer commands once a customer was forgotten."""
        for (topic, partition), offset in list(forgets.items()):
            try:
                starts = await asyncio.wait_for(asyncio.to_thread(
                    purge_processed_commands, pipeline.settings, topics.APP_ID, topic, [partition]), 30)
            except Exception:  # retried on the next tick; never takes the worker down
                log.exception("purging %s[%d] after a ForgetCustomer failed; will try again", topic, partition)
                continue
            if starts.get(partition, -1) > offset and forgets.get((topic, partition)) == offset:
                del forgets[(topic, partition)]


def key_text(event) -> str:
    return (event.key or b"").decode("utf-8", "replace")


#: view → the tables its projecting agent writes (its entries, its statement, its handoff markers).
TABLES_OF_VIEW = {view: tuple(t for t, v in VIEW_OF_TABLE.items() if v == view) for view in set(VIEW_OF_TABLE.values())}


class Batch:
    """One agent's handling of a batch: every record through `handle` with its tables at the
    record's partition; then, per partition, the tables' writes, the records to send and the input
    offsets committed together (the sink); then the committed writes applied to local state."""

    def __init__(self, pipeline: "Pipeline", agent: str, handle, written: list[BatchedTable], sink: Sink,
                 view: str | None = None):
        self.pipeline = pipeline
        self.agent = agent
        self.handle = handle
        self.is_async = asyncio.iscoroutinefunction(handle)
        self.written = written
        self.sink = sink
        self.view = view  # the view table whose waiters (`?wait=`) hear of each key

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

    async def _run(self, events) -> None:
        started = time.monotonic()
        pipeline, agent, sink = self.pipeline, self.agent, self.sink
        written, handle = self.written, self.handle
        records: dict[int, list[Outgoing]] = {}
        offsets: dict[int, dict[str, int]] = {}
        keys: dict[int, list[str]] = {}
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
        effects = [PartitionEffects(partition, [(t.changelog, t.take(partition)) for t in written],
                                    coalesce(records[partition]), offsets[partition])
                   for partition in offsets]
        for table in written:
            table.partition = None
        committed = await sink.commit(agent, effects)
        for effect in committed:
            for table, (changelog, entries) in zip(written, effect.changelogs):
                if entries:
                    table.apply(effect.partition, entries, effect.changelog_offsets.get(changelog))
        pipeline.handled[agent] += len(events)
        if self.view is not None:
            notify = pipeline.waiters.notify
            for effect in committed:
                for key in keys[effect.partition]:
                    notify(self.view, key)
        if pipeline.metrics is not None:
            pipeline.metrics.batch_done(agent, time.monotonic() - started, events[-1].message.timestamp)


#: agent → the topics it reads (co-partitioned: the same key, the same partition count); the first
#: names its transactional tasks' partitions.
AGENT_SOURCES = {
    "process_customer_commands": (topics.CUSTOMER_COMMANDS, topics.CUSTOMER_REPLIES),
    "process_email_commands": (topics.EMAIL_COMMANDS,),
    "process_transfer_commands": (topics.TRANSFER_COMMANDS, topics.TRANSFER_REPLIES),
    "process_account_commands": (topics.ACCOUNT_COMMANDS,),
    "project_transfers": (topics.TRANSFER_EVENTS, topics.VIEW_REBUILD),
    "project_accounts": (topics.ACCOUNT_EVENTS, topics.VIEW_REBUILD),
    "project_customers": (topics.CUSTOMER_EVENTS, topics.CUSTOMER_ACCOUNTS, topics.VIEW_REBUILD),
    "index_emails": (topics.CUSTOMER_EMAILS, topics.VIEW_REBUILD),
    "record_outcomes": (topics.COMMAND_OUTCOMES, topics.VIEW_REBUILD),
}


def wire(app: faust.App, settings: Settings, *, codec: Codec | None = None, emitter: Emitter | None = None,
         web: bool = True) -> Pipeline:
    """Declares every topic, table, agent and (with `web`) HTTP view on `app`."""
    codec = codec or Codec()
    faust_topics = {
        spec.name: app.topic(spec.name, key_type=bytes, value_type=bytes, key_serializer="raw",
                             value_serializer="raw", partitions=settings.partitions)
        for spec in topics.ALL_TOPICS
    }
    tables = {name: _table(app, name, settings, help) for name, help in topics.TABLES.items()}
    for name, spec in topics.OWN_CHANGELOG_TABLES.items():
        # Faust's changelog settings (see Table._new_changelog_topic), under the name we declared.
        changelog = app.topic(spec.name, key_type=bytes, value_type=bytes, key_serializer="raw",
                              value_serializer="raw", partitions=settings.partitions, compacting=True,
                              deleting=False, acks=False, internal=True, maxsize=131_072, allow_empty=True)
        tables[name] = app.Table(name, key_type=bytes, value_type=bytes, partitions=settings.partitions,
                                 changelog_topic=changelog, help="customer id → AES key (streams.privacy)")
    # What the agents write through: each table's single writer, batch by batch (streams.batches).
    # The web views and timers read the Faust tables themselves.
    writers = {name: BatchedTable(table) for name, table in tables.items()}
    keystore = KeyStore(writers["customer_to_key"], settings.email_hash_key)
    forgets_to_purge: dict[tuple[str, int], int] = {}  # commands partition → offset of its last ForgetCustomer

    def shred_and_purge(events, origin: Origin) -> None:
        keystore.shred(events)
        if any(isinstance(e, customers.CustomerForgotten) for e in events):
            where = (origin.topic, origin.partition)
            forgets_to_purge[where] = max(forgets_to_purge.get(where, -1), origin.offset)
    pipeline = Pipeline(app, settings, codec, faust_topics, tables, agents={}, writers=writers)

    def ledger(name: str) -> tuple[KeyPrefixed, KeyPrefixed]:
        """The state and dedup views of one command processor's table."""
        return KeyPrefixed(writers[name], STATE_PREFIX), KeyPrefixed(writers[name], COMMAND_PREFIX)

    customer_commands = CommandProcessor(codec, customers, (topics.CUSTOMER_COMMANDS, topics.CUSTOMER_REPLIES),
                                         topics.CUSTOMER_EVENTS, *ledger("customer_to_state"),
                                         pending=writers["customer_to_pending_steps"],
                                         prepare=keystore.prepare, applied=shred_and_purge)
    account_commands = CommandProcessor(codec, accounts, (topics.ACCOUNT_COMMANDS,), topics.ACCOUNT_EVENTS,
                                        *ledger("account_to_state"))
    transfer_commands = CommandProcessor(codec, transfers, (topics.TRANSFER_COMMANDS, topics.TRANSFER_REPLIES),
                                         topics.TRANSFER_EVENTS, *ledger("transfer_to_state"),
                                         pending=writers["transfer_to_pending_steps"])
    email_commands = CommandProcessor(codec, emails, (topics.EMAIL_COMMANDS,), topics.EMAIL_EVENTS,
                                      *ledger("email_to_reservation"))
    generations = pipeline.generations
    if emitter is not None:
        sink: Sink = LocalSink(emitter)
    else:
        sink = app.transactions = Transactions(
            settings, {agent: tuple(spec.name for spec in specs) for agent, specs in AGENT_SOURCES.items()},
            shared=(topics.VIEW_REBUILD.name,), hold_path=os.environ.get("BANK_TEST_HOLD_BEFORE_COMMIT"))
        sink.seek = lambda tp, offset: app.consumer.seek(tp, offset)
        sink.rejoin = lambda: rejoin_group(app)
        fence_before_recovery(app, sink)
        end_recovery_past_markers(app)

    def view_agent(view: str, make) -> ViewAgent:
        return ViewAgent(view, writers, generations, codec, settings, make)
    transfer_views = view_agent("transfers", lambda t: TransferProjector(codec, t("transfer_to_view")).project)
    account_views = view_agent("accounts", lambda t: AccountProjector(
        codec, t("account_to_view"), t("account_version_to_entry")).project)
    customer_views = view_agent("customers", lambda t: CustomerProjector(codec, t("customer_to_view")).project)
    email_views = view_agent("emails", lambda t: EmailIndexer(codec, t("email_to_customer")).index)
    outcome_views = view_agent("outcomes", lambda t: OutcomeRecorder(codec, t("command_to_outcome")).record)

    def sources(*specs: topics.TopicSpec):
        """One channel over co-partitioned topics (same key, same partition count)."""
        return app.topic(*(spec.name for spec in specs), key_type=bytes, value_type=bytes, key_serializer="raw",
                         value_serializer="raw")

    def batches(stream):
        return stream.take_events(settings.batch_max, settings.batch_ms / 1000.0)

    def batch_of(agent: str, handle, *written: str, view: str | None = None) -> Batch:
        return Batch(pipeline, agent, handle, [writers[name] for name in written], sink, view)

    customer_batch = batch_of("process_customer_commands", customer_commands.process,
                              "customer_to_state", "customer_to_pending_steps", "customer_to_key")
    email_batch = batch_of("process_email_commands", email_commands.process, "email_to_reservation")
    transfer_batch = batch_of("process_transfer_commands", transfer_commands.process,
                              "transfer_to_state", "transfer_to_pending_steps")
    account_batch = batch_of("process_account_commands", account_commands.process, "account_to_state")
    transfer_view_batch = batch_of("project_transfers", transfer_views.handle, *TABLES_OF_VIEW["transfers"],
                                   view="transfer_to_view")
    account_view_batch = batch_of("project_accounts", account_views.handle, *TABLES_OF_VIEW["accounts"],
                                  view="account_to_view")
    customer_view_batch = batch_of("project_customers", customer_views.handle, *TABLES_OF_VIEW["customers"],
                                   view="customer_to_view")
    email_view_batch = batch_of("index_emails", email_views.handle, *TABLES_OF_VIEW["emails"],
                                view="email_to_customer")
    outcome_batch = batch_of("record_outcomes", outcome_views.handle, *TABLES_OF_VIEW["outcomes"],
                             view="command_to_outcome")

    @app.agent(sources(*AGENT_SOURCES["process_customer_commands"]), concurrency=1)
    async def process_customer_commands(stream):
        """Decide customer commands into events and one outcome each; reserve emails first."""
        async for events in batches(stream):
            await customer_batch.run(events)

    @app.agent(sources(*AGENT_SOURCES["process_email_commands"]), concurrency=1)
    async def process_email_commands(stream):
        """Reserve each email for exactly one customer."""
        async for events in batches(stream):
            await email_batch.run(events)

    @app.agent(sources(*AGENT_SOURCES["process_transfer_commands"]), concurrency=1)
    async def process_transfer_commands(stream):
        """Run each transfer's saga: initiate, then debit, credit or refund as the accounts answer."""
        async for events in batches(stream):
            await transfer_batch.run(events)

    @app.agent(sources(*AGENT_SOURCES["project_transfers"]), concurrency=1)
    async def project_transfers(stream):
        """Project transfer events into the transfer view."""
        async for events in batches(stream):
            await transfer_view_batch.run(events)

    @app.agent(sources(*AGENT_SOURCES["process_account_commands"]), concurrency=1)
    async def process_account_commands(stream):
        """Decide account commands into events and one outcome each."""
        async for events in batches(stream):
            await account_batch.run(events)

    @app.agent(sources(*AGENT_SOURCES["project_accounts"]), concurrency=1)
    async def project_accounts(stream):
        """Project account events into the account view and statement."""
        async for events in batches(stream):
            await account_view_batch.run(events)

    @app.agent(sources(*AGENT_SOURCES["project_customers"]), concurrency=1)
    async def project_customers(stream):
        """Project customer events and account summaries into the customer view."""
        async for events in batches(stream):
            await customer_view_batch.run(events)

    @app.agent(sources(*AGENT_SOURCES["index_emails"]), concurrency=1)
    async def index_emails(stream):
        """Index customers by email."""
        async for events in batches(stream):
            await email_view_batch.run(events)

    @app.agent(sources(*AGENT_SOURCES["record_outcomes"]), concurrency=1)
    async def record_outcomes(stream):
        """Record each command's outcome for queries and waits."""
        async for events in batches(stream):
            await outcome_batch.run(events)

    pipeline.agents.update(
        process_customer_commands=process_customer_commands, process_account_commands=process_account_commands,
        process_transfer_commands=process_transfer_commands, process_email_commands=process_email_commands,
        project_transfers=project_transfers,
        project_accounts=project_accounts, project_customers=project_customers, index_emails=index_emails,
        record_outcomes=record_outcomes)
    pipeline.metrics = instrument(pipeline, (customer_commands, account_commands, transfer_commands, email_commands))
    watch_for_stalls(pipeline)
    purge_forgotten_commands(pipeline, forgets_to_purge)
    if web:
        from .web import register_routes
        register_routes(pipeline)
    return pipeline
