"""The one wiring function: topics, tables, agents and (with `web`) the HTTP views, declared on a Faust app."""
from __future__ import annotations

import asyncio
import logging
import os

import faust

from ..config import Settings
from ..contract import topics
from ..contract.avro import Codec
from .. import topology
from ..domain import customers
from ..kafka.admin import purge_processed_commands
from ..kafka.transactions import Transactions
from ..services.commands import COMMAND_PREFIX, STATE_PREFIX, CommandProcessor
from ..services.handling import KeyPrefixed, Origin
from ..services.privacy import KeyStore
from ..services.projections import FoldCodec
from ..http.api import register_routes
from .app import end_recovery_past_markers, fence_before_recovery, rejoin_group, skip_untracked_changelog_events
from .batches import BatchedTable, take_batches
from .delivery import RawBytes
from .liveness import watch as watch_for_stalls
from .metrics import instrument
from .pipeline import Batch, Emitter, LocalSink, Pipeline, Sink, restore_tables
from .view_agent import ViewAgent

log = logging.getLogger(__name__)


def _table(app: faust.App, name: str, settings: Settings, help: str) -> faust.Table:
    # key_type=bytes makes Faust use the raw serializer: str keys are written as plain UTF-8 and
    # partition exactly like the command and event topics (str would mean JSON, quoting the keys
    # and routing GETs to the wrong worker).
    return app.Table(name, key_type=bytes, value_type=bytes, partitions=settings.partitions, help=help,
                     options=dict(ROCKSDB_OPTIONS))  # a copy: Faust's store pops keys from it


#: RocksDB sizing per table partition (12 tables × their partitions are each a database). Faust's
#: defaults (3 × 64 MiB memtables per database) let a worker's RSS grow to many GiB as its tables fill;
#: the block cache and the memtables' total are shared by all of them (streams/worker/store.py).
ROCKSDB_OPTIONS = {
    "write_buffer_size": 4 * 2**20,
    "max_write_buffer_number": 2,
    "target_file_size_base": 16 * 2**20,
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


def wire(app: faust.App, settings: Settings, *, codec: Codec | None = None, emitter: Emitter | None = None,
         web: bool = True) -> Pipeline:
    """Declares every topic, table and agent of `streams.topology` and (with `web`) the HTTP API on `app`."""
    codec = codec or Codec()
    faust_topics = {
        spec.name: app.topic(spec.name, key_type=bytes, value_type=bytes, key_serializer="raw",
                             value_serializer="raw", partitions=settings.partitions)
        for spec in topics.ALL_TOPICS
    }
    tables = {}
    for table in topology.ALL_TABLES:
        if table.changelog is None:
            tables[table.name] = _table(app, table.name, settings, table.holds)
        else:  # Faust's changelog settings (see Table._new_changelog_topic), under the name we declared.
            changelog = app.topic(table.changelog.name, key_type=bytes, value_type=bytes, key_serializer="raw",
                                  value_serializer="raw", partitions=settings.partitions, compacting=True,
                                  deleting=False, acks=False, internal=True, maxsize=131_072, allow_empty=True)
            tables[table.name] = app.Table(table.name, key_type=bytes, value_type=bytes,
                                           partitions=settings.partitions, changelog_topic=changelog,
                                           help=table.holds)
    # What the agents write through: each table's single writer, batch by batch (streams.worker.batches).
    # The web views and timers read the Faust tables themselves.
    writers = {name: BatchedTable(table, codec.encode) for name, table in tables.items()}
    pipeline = Pipeline(app, settings, codec, faust_topics, tables, agents={}, writers=writers)
    forgets_to_purge: dict[tuple[str, int], int] = {}  # commands partition → offset of its last ForgetCustomer

    if emitter is not None:
        sink: Sink = LocalSink(emitter)
    else:
        sink = app.transactions = Transactions(
            settings, {agent: tuple(spec.name for spec in specs) for agent, specs in topology.AGENT_SOURCES.items()},
            shared=(topics.VIEW_REBUILD.name,), hold_path=os.environ.get("BANK_TEST_HOLD_BEFORE_COMMIT"))
        sink.seek = lambda tp, offset: app.consumer.seek(tp, offset)
        sink.rejoin = lambda: rejoin_group(app)
        fence_before_recovery(app, sink, lambda actives, still_wanted: restore_tables(
            writers.values(), sink, actives, still_wanted))
        end_recovery_past_markers(app)
        skip_untracked_changelog_events(app)

    def processor(spec: topology.Processor) -> CommandProcessor:
        hooks = {}
        if spec.keys is not None:  # its commands carry personal data: seal it, shred the key when forgotten
            keystore = KeyStore(writers[spec.keys.name], settings.email_hash_key)

            def shred_and_purge(events, origin: Origin) -> None:
                keystore.shred(events)
                if any(isinstance(e, customers.CustomerForgotten) for e in events):
                    where = (origin.topic, origin.partition)
                    forgets_to_purge[where] = max(forgets_to_purge.get(where, -1), origin.offset)
            hooks = dict(prepare=keystore.prepare, applied=shred_and_purge)
        return CommandProcessor(codec, spec.aggregate, spec.sources, spec.events,
                                KeyPrefixed(writers[spec.state.name], STATE_PREFIX),
                                KeyPrefixed(writers[spec.state.name], COMMAND_PREFIX),
                                pending=writers[spec.pending.name] if spec.pending is not None else None, **hooks)

    def declare_agent(spec: topology.Processor | topology.View, batch: Batch):
        channel = app.topic(*(source.name for source in spec.agent_sources), schema=RawBytes(key_type=bytes,
                            value_type=bytes, key_serializer="raw", value_serializer="raw"))  # co-partitioned

        async def agent(stream):
            async for events in take_batches(stream, settings.batch_max, settings.batch_ms / 1000.0):
                await batch.run(events)
        agent.__name__, agent.__qualname__, agent.__doc__ = spec.agent, f"wire.<locals>.{spec.agent}", spec.doc
        pipeline.agents[spec.agent] = app.agent(channel, concurrency=1)(agent)

    def written(spec: topology.Processor | topology.View) -> list[BatchedTable]:
        return [writers[table.name] for table in spec.tables]

    processors = []
    for spec in topology.PROCESSORS:
        processors.append(processor(spec))
        declare_agent(spec, Batch(pipeline, spec.agent, processors[-1].process, written(spec), sink, answers=True))
    # The projectors keep records, not bytes, in their tables and records during a batch (FoldCodec):
    # each entry and each record sent is encoded once, when the batch is taken.
    fold_codec = FoldCodec(codec)
    for spec in topology.VIEWS:
        projection = ViewAgent(spec.name, writers, pipeline.generations, codec, settings,
                               lambda table, spec=spec: spec.projector(fold_codec, table))
        declare_agent(spec, Batch(pipeline, spec.agent, projection.handle, written(spec), sink, view=spec.table))
    pipeline.metrics = instrument(pipeline, tuple(processors))
    watch_for_stalls(pipeline)
    purge_forgotten_commands(pipeline, forgets_to_purge)
    if web:
        register_routes(pipeline)
    return pipeline
