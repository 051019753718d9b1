"""The app factory and the one wiring function: topics, tables, agents and web views."""
from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable, Protocol

import faust

from . import topics
from .avro import Codec
from .config import Settings
from .liveness import watch as watch_for_stalls
from .domain import accounts, customers, emails, transfers
from .metrics import Metrics, instrument
from faust.types import TP

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
        processing_guarantee=settings.processing_guarantee,  # exactly-once effects come from our own dedup
        producer_acks=-1,
        # A few ms of linger turns one produce request per record into one per batch: the broker,
        # on the same two cores, otherwise spends more CPU per command than the worker.
        producer_linger=settings.linger_ms / 1000.0,
        broker_commit_every=1000,
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
        web_tables_enabled=False,  # it would expose the raw aggregate tables
        web_stats_enabled=False,
        web_graph_enabled=False,
        web_router_enabled=False,
        web_metrics_enabled=False,
        web_in_thread=False,
        autodiscover=False,
    )
    config.update(overrides)
    app = BankApp(topics.APP_ID, **config)
    if settings.producer == "librdkafka" and settings.processing_guarantee == "at_least_once":
        from .client import producer_config
        app.rd_producer_config = producer_config(settings, **{
            "linger.ms": settings.linger_ms, "compression.type": "none", "client.id": f"{topics.APP_ID}-worker"})
    return app


class BankApp(faust.App):
    """Faust's App, with its producer optionally sending through librdkafka (streams.rdproducer)."""

    rd_producer_config: dict | None = None

    def _new_producer(self):
        if self.rd_producer_config is None:
            return super()._new_producer()
        from .rdproducer import producer_class
        return producer_class(self.rd_producer_config)(self.transport, loop=self.loop, beacon=self.beacon)


class Emitter(Protocol):
    async def emit(self, records: Iterable[Outgoing]) -> None: ...


class FaustEmitter:
    """Sends through Faust topics: inside an agent the sends attach to the event being processed,
    so they are published before its offset is committed (at-least-once)."""

    def __init__(self, faust_topics: dict[str, faust.TopicT], app: faust.App | None = None):
        self.faust_topics = faust_topics
        self.app = app

    async def emit(self, records: Iterable[Outgoing]) -> None:
        produce_now = getattr(self.app.producer, "produce_now", None) if self.app is not None else None
        if produce_now is not None:
            # librdkafka queues them at once; Faust flushes that producer before committing the offset
            # of the record being processed, which is all an attachment would have guaranteed.
            pending = []
            for record in records:
                if not produce_now(record.topic, record.key.encode(), record.value, record.headers):
                    pending.append(record)  # not started yet: Faust's own path below
            records = pending
        for record in records:
            await self.faust_topics[record.topic].send(key=record.key.encode(), value=record.value,
                                                       headers=list(record.headers) if record.headers else None)


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


def origin(event) -> Origin:
    message = event.message
    return Origin(message.topic, message.partition, message.offset)


REDRIVE_AFTER_MS = 15_000


def redrive_pending_steps(pipeline: Pipeline, processors: dict, emitter: Emitter,
                          interval: float = 5.0) -> None:
    """Issues again, with the same ids, the steps a process has waited on for too long.

    Under kill -9 and rebalances Faust has been seen to commit past a record it never handed to
    its agent (a saga reply, a command); the saga then waits forever. Steps are idempotent, so
    issuing them again is always safe: the answer comes back (again) and the process moves on.
    """
    app = pipeline.app
    last_sent: dict[str, int] = {}

    @app.timer(interval)
    async def redrive_overdue_steps():
        """Issue again the steps that processes have waited on for too long."""
        if app.rebalancing or app.in_recovery or not app.tables.actives_ready:
            return
        try:
            actives = app.assignor.assigned_actives()
            now = now_ms()
            for table_name, processor in processors.items():
                changelog = pipeline.tables[table_name].changelog_topic.get_topic_name()

                def wanted(key: str) -> bool:
                    owned = TP(changelog, topics.partition_for(key.encode(), pipeline.settings.partitions)) in actives
                    return owned and now - last_sent.get(key, 0) >= REDRIVE_AFTER_MS

                overdue = processor.overdue(now, REDRIVE_AFTER_MS, wanted)
                for aggregate_id, records in overdue.items():
                    last_sent[aggregate_id] = now
                    await emitter.emit(records)
                if overdue:
                    log.warning("issued the steps of %d waiting processes again (%s)", len(overdue), table_name)
        except Exception:  # a safety net must never take the worker down
            log.exception("redriving overdue steps failed; will try again")


def key_text(event) -> str:
    return (event.key or b"").decode("utf-8", "replace")


def wire(app: faust.App, settings: Settings, *, codec: Codec | None = None, emitter: Emitter | None = None,
         web: bool = True) -> Pipeline:
    """Declares every topic, table, agent and (with `web`) HTTP view on `app`."""
    codec = codec or Codec()
    faust_topics = {
        spec.name: app.topic(spec.name, key_type=bytes, value_type=bytes, key_serializer="raw",
                             value_serializer="raw", partitions=settings.partitions)
        for spec in topics.ALL_TOPICS
    }
    emitter = emitter or FaustEmitter(faust_topics, app)
    tables = {name: _table(app, name, settings, help) for name, help in topics.TABLES.items()}
    pipeline = Pipeline(app, settings, codec, faust_topics, tables, agents={})

    def ledger(name: str) -> tuple[KeyPrefixed, KeyPrefixed]:
        """The state and dedup views of one command processor's table."""
        return KeyPrefixed(tables[name], STATE_PREFIX), KeyPrefixed(tables[name], COMMAND_PREFIX)
    waiters = pipeline.waiters

    customer_commands = CommandProcessor(codec, customers, (topics.CUSTOMER_COMMANDS, topics.CUSTOMER_REPLIES),
                                         topics.CUSTOMER_EVENTS, *ledger("customer_to_state"),
                                         pending=tables["customer_to_pending_steps"])
    account_commands = CommandProcessor(codec, accounts, (topics.ACCOUNT_COMMANDS,), topics.ACCOUNT_EVENTS,
                                        *ledger("account_to_state"))
    transfer_commands = CommandProcessor(codec, transfers, (topics.TRANSFER_COMMANDS, topics.TRANSFER_REPLIES),
                                         topics.TRANSFER_EVENTS, *ledger("transfer_to_state"),
                                         pending=tables["transfer_to_pending_steps"])
    email_commands = CommandProcessor(codec, emails, (topics.EMAIL_COMMANDS,), topics.EMAIL_EVENTS,
                                      *ledger("email_to_reservation"))
    transfer_projector = TransferProjector(codec, tables["transfer_to_view"])
    account_projector = AccountProjector(codec, tables["account_to_view"], tables["account_version_to_entry"])
    customer_projector = CustomerProjector(codec, tables["customer_to_view"])
    email_indexer = EmailIndexer(codec, tables["email_to_customer"])
    outcome_recorder = OutcomeRecorder(codec, tables["command_to_outcome"])

    def sources(*specs: topics.TopicSpec):
        """One channel over co-partitioned topics (same key, same partition count)."""
        return app.topic(*(spec.name for spec in specs), key_type=bytes, value_type=bytes, key_serializer="raw",
                         value_serializer="raw")

    @app.agent(sources(topics.CUSTOMER_COMMANDS, topics.CUSTOMER_REPLIES), concurrency=1)
    async def process_customer_commands(stream):
        """Decide customer commands into events and one outcome each; reserve emails first."""
        async for event in stream.events():
            await emitter.emit(customer_commands.process(event.key, event.value, origin(event)))

    @app.agent(faust_topics[topics.EMAIL_COMMANDS.name], concurrency=1)
    async def process_email_commands(stream):
        """Reserve each email for exactly one customer."""
        async for event in stream.events():
            await emitter.emit(email_commands.process(event.key, event.value, origin(event)))

    @app.agent(sources(topics.TRANSFER_COMMANDS, topics.TRANSFER_REPLIES), concurrency=1)
    async def process_transfer_commands(stream):
        """Run each transfer's saga: initiate, then debit, credit or refund as the accounts answer."""
        async for event in stream.events():
            await emitter.emit(transfer_commands.process(event.key, event.value, origin(event)))

    @app.agent(faust_topics[topics.TRANSFER_EVENTS.name], concurrency=1)
    async def project_transfers(stream):
        """Project transfer events into the transfer view."""
        async for event in stream.events():
            await emitter.emit(transfer_projector.project(event.key, event.value, origin(event)))
            waiters.notify("transfer_to_view", key_text(event))

    @app.agent(faust_topics[topics.ACCOUNT_COMMANDS.name], concurrency=1)
    async def process_account_commands(stream):
        """Decide account commands into events and one outcome each."""
        async for event in stream.events():
            await emitter.emit(account_commands.process(event.key, event.value, origin(event)))

    @app.agent(faust_topics[topics.ACCOUNT_EVENTS.name], concurrency=1)
    async def project_accounts(stream):
        """Project account events into the account view and statement."""
        async for event in stream.events():
            await emitter.emit(account_projector.project(event.key, event.value, origin(event)))
            waiters.notify("account_to_view", key_text(event))

    @app.agent(sources(topics.CUSTOMER_EVENTS, topics.CUSTOMER_ACCOUNTS), concurrency=1)
    async def project_customers(stream):
        """Project customer events and account summaries into the customer view."""
        async for event in stream.events():
            await emitter.emit(customer_projector.project(event.key, event.value, origin(event)))
            waiters.notify("customer_to_view", key_text(event))

    @app.agent(faust_topics[topics.CUSTOMER_EMAILS.name], concurrency=1)
    async def index_emails(stream):
        """Index customers by email."""
        async for event in stream.events():
            await emitter.emit(email_indexer.index(event.key, event.value, origin(event)))
            waiters.notify("email_to_customer", key_text(event))

    @app.agent(faust_topics[topics.COMMAND_OUTCOMES.name], concurrency=1)
    async def record_outcomes(stream):
        """Record each command's outcome for queries and waits."""
        async for event in stream.events():
            await emitter.emit(outcome_recorder.record(event.key, event.value, origin(event)))
            waiters.notify("command_to_outcome", key_text(event))

    pipeline.agents.update(
        process_customer_commands=process_customer_commands, process_account_commands=process_account_commands,
        process_transfer_commands=process_transfer_commands, process_email_commands=process_email_commands,
        project_transfers=project_transfers,
        project_accounts=project_accounts, project_customers=project_customers, index_emails=index_emails,
        record_outcomes=record_outcomes)
    pipeline.metrics = instrument(pipeline, (customer_commands, account_commands, transfer_commands, email_commands))
    watch_for_stalls(pipeline)
    redrive_pending_steps(pipeline, {"transfer_to_pending_steps": transfer_commands,
                                     "customer_to_pending_steps": customer_commands}, emitter)
    if web:
        from .web import register_routes
        register_routes(pipeline)
    return pipeline
