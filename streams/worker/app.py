"""The Faust app: its factory, its read-committed consumer that never commits on its own, and the hooks
that fence a new assignment before recovery and end recovery past transaction markers."""
from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter

import faust
from faust.tables.recovery import RebalanceAgain
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, Consumer as AIOKafkaDriverConsumer

from ..config import Settings
from ..contract import topics
from ..kafka.transactions import Transactions, as_coroutine
from . import store
from .delivery import Delivery
from .liveness import position_of


def create_app(settings: Settings, **overrides) -> faust.App:
    """A Faust app configured from `settings`; nothing is read from the environment here."""
    servers = ";".join(f"kafka://{server}" for server in settings.bootstrap_servers.split(","))
    config = dict(
        broker=servers,
        store=f"{store.SCHEME}://",  # Faust's RocksDB store with shared memory bounds
        datadir=str(settings.worker_dir),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",  # faust #651: never skip history on a new group
        # Faust's own exactly_once is broken (topology.md, "Exactly-once"): ours is streams.kafka.transactions.
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
        # No standby replicas (Kafka Streams' default too): a partition taken over is restored from its
        # changelog by streams.worker.pipeline.restore_tables. A standby here lacked changelog records
        # its offsets said it had applied, and froze transfer views when it became active (SIGSTOP test).
        table_standby_replicas=0,
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


class SeekFence:
    """Tells records fetched before a seek of their partition from those fetched after it.

    Faust hands a fetched batch on record by record, with awaits between; a seek meanwhile (table
    recovery, the seek to committed offsets after a rebalance, a task restarting) does not stop the
    rest of that batch, and a seek during a record's handing on is undone when Faust then sets its
    read offset to that record. Either way Faust's read offset ends past the records the seek asked
    for again, and it drops them as read: a changelog record skipped so leaves a table behind its
    changelog (the next command forks a version), a command skipped is lost. So every fetch and
    every seek takes a tick of one clock, on the consumer's thread where both happen; a record whose
    partition was sought after its fetch is not handed on (the seek brings it again, in order), and
    a seek during a handing on gets its read offset back (`not_overtaken`).
    """

    def __init__(self):
        self._clock = itertools.count()
        self._sought: dict = {}  # tp → (the tick of its last seek, the offset sought)
        self._through: dict = {}  # tp → the position up to which every record fetched was handed on

    def fetching(self, positions) -> None:
        """A fetch starts with the consumer at `positions` (tp → next offset). Faust fetches again only
        once the last fetch was handed on in full, so every record before them was handed on."""
        self._through.update(positions)

    def handed_through(self, tp) -> int | None:
        return self._through.get(tp)

    def fetched(self) -> int:
        return next(self._clock)

    def sought(self, offsets) -> None:
        """`offsets`: tp → the offset each was sought to."""
        tick = next(self._clock)
        for tp, offset in offsets.items():
            self._sought[tp] = (tick, offset)
            self._through.pop(tp, None)  # known again at the next fetch

    def last_seek(self, tp) -> tuple[int, int] | None:
        return self._sought.get(tp)

    def overtaken(self, tp, fetched_at: int | None) -> bool:
        seek = self._sought.get(tp)
        return fetched_at is not None and seek is not None and seek[0] > fetched_at


class Fetched(dict):
    """A fetch's records by partition, with the tick it was taken at (SeekFence)."""

    fetched_at: int | None = None


class ReadCommittedThread(AIOKafkaConsumerThread):
    """Faust's aiokafka consumer thread, reading only committed records (agents, recovery, standbys),
    with every fetch and seek ticked on the consumer's SeekFence.

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
        # check behind /health (streams.worker.liveness) does this job, markers understood.
        return None

    # Everything below runs on the consumer's thread, the only place aiokafka's fetcher changes.
    async def _fetch_records(self, consumer, active_partitions, timeout=None, max_records=None):
        if self.consumer.flow_active and active_partitions:
            self.consumer.seek_fence.fetching(
                {tp: at for tp in active_partitions if (at := position_of(consumer, tp)) is not None})
        records = Fetched(await super()._fetch_records(consumer, active_partitions, timeout=timeout,
                                                       max_records=max_records))
        records.fetched_at = self.consumer.seek_fence.fetched()
        return records

    async def _seek_wait(self, consumer, partitions) -> None:
        for tp, offset in partitions.items():
            consumer.seek(tp, offset)
            if offset > 0:
                self.consumer._read_offset[tp] = offset
            else:
                self.consumer._read_offset.pop(tp, None)
        self.consumer.seek_fence.sought(partitions)
        await asyncio.wait_for(asyncio.gather(*[consumer.position(tp) for tp in partitions]),
                               timeout=self.app.conf.broker_request_timeout)

    async def seek_to_committed(self):
        return await self.call_thread(self._seek_to_committed)

    async def _seek_to_committed(self):
        """Faust's seek of the sources to their committed offsets after recovery, for every source
        partition: one with nothing committed goes back to its first record.

        Faust's flow control clears the streams' queues each time it resumes (mode's
        FlowControlEvent.resume), the last time right after this seek. Records of a partition with
        nothing committed that were handed on before it were cleared with no seek to bring them back:
        the first replies of a partition were never processed. aiokafka's own version also awaits
        between its seeks; here every offset is read first, then all are sought at once, so no fetch
        falls between a seek and its tick.
        """
        consumer = self._ensure_consumer()
        committed = {tp: await consumer.committed(tp) for tp in consumer.assignment()}
        unstarted = [tp for tp, offset in committed.items()
                     if (offset is None or offset < 0) and not self.consumer._is_changelog_tp(tp)]
        sought = {tp: offset for tp, offset in committed.items() if offset and offset > 0}
        if unstarted:
            sought.update(await consumer.beginning_offsets(unstarted))
        for tp, offset in sought.items():
            consumer._fetcher.seek_to(tp, offset)
        self.consumer.seek_fence.sought(sought)
        return committed

    def seek(self, partition, offset: int) -> None:
        self._ensure_consumer().seek(partition, offset)
        self.consumer.seek_fence.sought({partition: offset})


class TransactionalConsumer(AIOKafkaDriverConsumer):
    """Faust's consumer that never commits offsets: they are committed with each batch's effects, in
    its transaction (streams.kafka.transactions). Faust's commit rounds still trim its ack bookkeeping.
    Records a seek overtook are not handed on (SeekFence)."""

    seek_fence: SeekFence

    def __init__(self, *args, **kwargs) -> None:
        self.seek_fence = SeekFence()
        super().__init__(*args, **kwargs)

    def _new_consumer_thread(self):
        return ReadCommittedThread(self, loop=self.loop, beacon=self.beacon)

    async def _seek(self, partition, offset: int) -> None:
        # On the consumer's thread, like every other seek, so its tick orders it against the fetches.
        thread = self._thread
        await thread.call_thread(as_coroutine, thread.seek, partition, offset)

    async def _drain_messages(self, fetcher) -> None:
        """Faust's fetch loop (`Consumer._drain_messages`), handing each record on with a plain await.

        Faust hands each record on through `wait_first(callback, suspend_flow.wait())`: four tasks per
        record, a quarter of a worker's CPU, to abandon a hand-on that blocks when the consumer is
        suspended. The hand-on blocks only on a full stream queue or suspended flow control, so that
        race is kept for a suspended consumer alone. Faust's gap bookkeeping and read offsets are kept.
        An agent's record goes straight into its queue (`Delivery`) unless Faust's conductor has
        something to wait for.
        """
        callback = self.callback
        deliver = Delivery(self.app).deliver  # straight to the agents' queues where Faust's path adds nothing
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        read_offset = self._read_offset
        acks_enabled_for = self.app.topics.acks_enabled_for
        suspend_flow = self.suspend_flow
        commit_every = self._commit_every
        set_flag, unset_flag = self.diag.set_flag, self.diag.unset_flag
        since_yield = 0
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(CONSUMER_FETCHING)
                records = self.getmany(timeout=1.0)
                await self.sleep(0)
                if self.should_stop:
                    continue
                async for tp, message in records:
                    since_yield += 1
                    if since_yield > 100:  # as Faust: let the loop breathe on long fetches
                        await asyncio.sleep(0)
                        since_yield = 0
                    offset = message.offset
                    r_offset = read_offset.get(tp)
                    if r_offset is not None and offset < r_offset:
                        continue  # read already (Faust drops it the same way)
                    if r_offset and offset - r_offset > 1 and acks_enabled_for(message.topic):
                        await self._add_gap(tp, r_offset + 1, offset)  # transaction markers
                    if commit_every is not None and self._n_acked >= commit_every:
                        self._n_acked = 0
                        await self.commit()  # only trims Faust's ack bookkeeping (_commit_offsets)
                    if suspend_flow.is_set():
                        await self.wait_first(callback(message), suspend_flow.wait())
                    elif not deliver(message):
                        await callback(message)
                    read_offset[tp] = offset
                unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            unset_flag(CONSUMER_FETCHING)

    async def getmany(self, timeout: float):
        """Faust's `getmany` (one fetch, handed on record by record), without its ways of skipping records.

        Faust checks, before each record, that its partition is still active, against the live set
        that pausing changes: a partition paused meanwhile (recovery pauses the sources at its start)
        lost the rest of the fetch without a seek, so a partition with nothing committed never read
        them again (a transfer's debit replies, the transfer left INITIATED). Such records are held
        back, and the partition is sought back to the first of them. Records a seek overtook are
        not handed on (SeekFence); a rebalance meanwhile ends the fetch, as in Faust: it positions
        every partition again.
        """
        records, active_partitions = await self._wait_next_records(timeout)
        if records is None or self.should_stop:
            return
        if not self.flow_active:  # as Faust does
            try:
                await self.perform_seek()
            except Exception as exc:
                self.log.warning(f"exception performing seek when flow not active {exc}")
            return
        generation_id = self.app.consumer_generation_id
        fetched_at = getattr(records, "fetched_at", None)
        held_back: dict = {}  # tp → the first offset of the fetch not handed on because it was paused
        async for tp, message in not_overtaken(self._handed_on(records, active_partitions, generation_id, held_back),
                                               self.seek_fence, lambda: fetched_at, self._read_offset):
            yield tp, message
        if not self.flow_active or self.app.consumer_generation_id != generation_id:
            return  # a rebalance positions every partition again
        assigned = self.assignment()
        for tp, offset in held_back.items():
            if tp in assigned and not self.seek_fence.overtaken(tp, fetched_at):
                await self.seek(tp, offset)

    async def _handed_on(self, records, active_partitions, generation_id: int, held_back: dict):
        for tp, record in self.scheduler.iterate(records):
            if not self.flow_active or self.app.consumer_generation_id != generation_id:
                return
            if tp in held_back or not (active_partitions is None or tp in active_partitions
                                       or tp in self._buffered_partitions):
                held_back.setdefault(tp, record.offset)  # and the rest of it, to keep the order
                continue
            self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
            yield tp, self._to_message(tp, record)

    async def _commit_offsets(self, offsets, start_new_transaction: bool = True) -> bool:
        self._committed_offset.update(offsets)
        # What Faust's livelock check reads ("has not committed ... since worker start"): these
        # offsets' effects were committed, in their transactions, before they were acked.
        self._thread.tp_last_committed_at.update({tp: time.monotonic() for tp in offsets})
        return True


async def not_overtaken(records, fence: SeekFence, fetched_at, read_offset):
    """`records` ((tp, message) pairs of one fetch, handed on by Faust's `_drain_messages`) without
    those a seek of their partition overtook. `fetched_at()` gives the fetch's tick once it returned;
    `read_offset` is Faust's, given back to a seek that came while a record was handed on."""
    async for tp, message in records:
        if fence.overtaken(tp, fetched_at()):
            continue
        before = fence.last_seek(tp)
        yield tp, message
        # Faust has handed the record on and set its read offset to it: a seek meanwhile is undone.
        seek = fence.last_seek(tp)
        if seek is not before:
            if seek[1]:
                read_offset[tp] = seek[1]
            else:
                read_offset.pop(tp, None)


class BankApp(faust.App):
    """Faust's App whose transactional tasks (streams.kafka.transactions) stop on revocation (assignment:
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


def fence_before_recovery(app: faust.App, transactions: Transactions, restore=None) -> None:
    """Runs the transactions' `on_assigned` between Faust's pausing of a new assignment and its table
    recovery (which ends in the seek to committed offsets): init_transactions fences the previous
    owners first, so what recovery and the seek read is final. Then `restore(active partitions,
    still_wanted)` brings the tables now active here to their changelogs' end, so Faust's recovery
    finds nothing left to read (`streams.worker.pipeline.restore_tables`)."""
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
                if restore is not None:
                    await restore(app.assignor.assigned_actives(),
                                  lambda: app.consumer_generation_id == generation_id and not app.should_stop)
            await on_rebalance(assigned, revoked, newly_assigned, generation_id)
        finally:
            app.fencing -= 1
    tables.on_rebalance = fence_then_recover


def end_recovery_past_markers(app: faust.App, interval: float = 0.1) -> None:
    """Lets table recovery end when a changelog partition is read to its end.

    Read committed, a changelog ends with a transaction marker that no consumer is ever given, so
    Faust's recovery (which waits for the record at highwater - 1) would wait for it forever; its own
    workaround, under its `exactly_once`, waits two 5 s timeouts. Here a partition is recovered once
    the record just before the marker was applied, or once every record up to past the highwater was
    handed on (SeekFence: the consumer's position when its next fetch started) and Faust's changelog
    queue is empty, so recovery has taken them all (the last committed record sits further back, before
    an aborted transaction's records). Fetched is not handed on: a position past the highwater alone
    ended recovery with the records of a fetch still waiting (the tables then missed them for good).
    """
    recovery = app.tables.recovery
    active_remaining, standby_remaining = recovery.active_remaining, recovery.standby_remaining

    def read_to_end(remaining: Counter, highwaters, offsets) -> Counter:
        fence = getattr(app.consumer, "seek_fence", None)
        for tp, left in remaining.items():
            if left <= 0:
                continue
            applied, highwater = offsets.get(tp), highwaters[tp]
            through = fence.handed_through(tp) if fence is not None else None
            if ((applied is not None and applied >= highwater - 1)
                    or (through is not None and through > highwater and app.tables.changelog_queue.empty())):
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
        active_remaining(), recovery.active_highwaters, recovery.active_offsets)
    recovery.standby_remaining = lambda: read_to_end(
        standby_remaining(), recovery.standby_highwaters, recovery.standby_offsets)

    @app.task
    async def end_recovery_when_read():
        while not app.should_stop:
            await asyncio.sleep(interval)
            # Only while Faust's recovery waits for the end of the changelogs: before that, in the same
            # round, its highwaters and offsets are still being built (or are the last round's); and not
            # while the next rebalance is fencing (fence_before_recovery).
            if getattr(app, "fencing", 0) or not (recovery.in_recovery and recovery.signal_recovery_end._waiters):
                continue
            if not recovery.need_recovery():
                recovery.flush_buffers()
                recovery._set_recovery_ended()
                recovery.signal_recovery_end.set()


def skip_untracked_changelog_events(app: faust.App) -> None:
    """Drops a changelog record whose partition recovery no longer tracks (revoked while it waited in
    the queue) before Faust's recovery takes it.

    Faust's `_slurp_changelogs` logs "recovery unknown topic" for such a record and then applies it to
    the table of the record before it, setting that table's persisted offset for the foreign partition:
    the table then starts its next recovery past records it never applied. Skipped here, the record is
    read again if its partition comes back, from that table's own persisted offset.
    """
    recovery = app.tables.recovery
    queue = app.tables.changelog_queue
    get = queue.get

    async def get_tracked():
        while True:
            event = await get()
            tp = event.message.tp
            if tp in recovery.active_tps or tp in recovery.standby_tps:
                return event
    queue.get = get_tracked
