"""The one wiring function: topics, tables, agents and (with `web`) the HTTP views, declared on a Faust app."""
from __future__ import annotations

import asyncio
import logging
import os

import faust

from ..config import Settings
from ..contract import topics
from ..contract.avro import Codec
from ..domain import accounts, customers, emails, transfers
from ..kafka.admin import purge_processed_commands
from ..kafka.transactions import Transactions
from ..services.commands import COMMAND_PREFIX, STATE_PREFIX, CommandProcessor
from ..services.generations import VIEW_OF_TABLE
from ..services.handling import KeyPrefixed, Origin
from ..services.privacy import KeyStore
from ..services.projections import AccountProjector, CustomerProjector, EmailIndexer, OutcomeRecorder, TransferProjector
from .app import end_recovery_past_markers, fence_before_recovery, rejoin_group
from .batches import BatchedTable
from .liveness import watch as watch_for_stalls
from .metrics import instrument
from .pipeline import Batch, Emitter, LocalSink, Pipeline, Sink
from .view_agent import ViewAgent

log = logging.getLogger(__name__)


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


#: view → the tables its projecting agent writes (its entries, its statement, its handoff markers).
TABLES_OF_VIEW = {view: tuple(t for t, v in VIEW_OF_TABLE.items() if v == view) for view in set(VIEW_OF_TABLE.values())}

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
        from ..http.api import register_routes
        register_routes(pipeline)
    return pipeline
