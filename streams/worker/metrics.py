"""Prometheus metrics of one worker, served at `GET /metrics`.

Each app has its own `CollectorRegistry` (never the global one), so several pipelines in one process
(the tests) do not share counters. The hot path only increments counters and observes histograms on
label children cached in plain dicts; everything derived from the consumer (lag, view staleness,
readiness) is computed when Prometheus scrapes.

Hooks, all installed by `instrument` (called once from `streams.worker.wiring.wire`):
- `Metrics.batch_done`, called by each agent's batch (streams.worker.pipeline.Batch): processing time per agent
  and batch, and the record time of the last event each view applied;
- the transactions (`Transactions.on_commit`, `on_fenced`): transactions by agent and result, their
  duration, and the records each committed one wrote, per topic; `BatchedTable.on_sent` counts the
  table changelog records committed; a Faust sensor, send errors and dead letters by source topic;
- `CommandProcessor.observe`: every outcome decided (command type × ACCEPTED / REJECTED, rejections
  by reason) and every redelivered command answered from the dedup table (DUPLICATE);
- an aiohttp middleware (`register_metrics`): HTTP requests by method, route template and status.
"""
from __future__ import annotations

import collections
import logging
import time
from typing import Iterable

import faust
from aiohttp import web as aioweb
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.process_collector import ProcessCollector

from ..contract import topics
from ..topology import VIEW_AGENTS  # view agent → its view's table: its staleness is the agent's
from .liveness import fetch_position, only_markers_left, unhandled_partitions
from .store import memory_usage as rocksdb_memory_usage

log = logging.getLogger(__name__)

PROCESSING_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
HTTP_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    """The worker's metrics and the cheap calls that move them."""

    def __init__(self, registry: CollectorRegistry | None = None, *, process: bool = True):
        self.registry = registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        if process:
            ProcessCollector(registry=registry)  # process_resident_memory_bytes, cpu, open fds
        self.commands = Counter(
            "bank_commands", "Commands decided by this worker's command processors, by type and outcome "
            "(ACCEPTED, REJECTED; DUPLICATE: a redelivered command answered from the dedup table).",
            ["command_type", "outcome"], registry=registry)
        self.rejections = Counter(
            "bank_command_rejections", "Rejected commands by type and machine-readable reason.",
            ["command_type", "reason"], registry=registry)
        self.processing = Histogram(
            "bank_agent_processing_seconds", "Time an agent spends on one batch of records (decode, decide or "
            "project, table writes, handing its records to the producer).", ["agent"], buckets=PROCESSING_BUCKETS,
            registry=registry)
        self.emitted = Counter(
            "bank_records_emitted", "Records this worker produced and the broker acknowledged, by topic "
            "(events, commands, outcomes, dead letters, re-keyed views and table changelogs).",
            ["topic"], registry=registry)
        self.send_errors = Counter(
            "bank_record_send_errors", "Records the producer failed to send, by topic.", ["topic"],
            registry=registry)
        self.dead_letters = Counter(
            "bank_dead_letters", "Records parked on bank.deadletter by this worker, by the topic they came from.",
            ["source_topic"], registry=registry)
        self.transactions = Counter(
            "bank_transactions", "Batch transactions by agent and result (committed; fenced: the partition had "
            "moved to another worker and nothing of the batch became visible; failed: aborted or hung, the "
            "partition is read again from its committed offsets).", ["agent", "result"],
            registry=registry)
        self.stale_rejoins = Counter(
            "bank_stale_rejoins", "Tasks that, restarting after a fenced or failed transaction, found their "
            "committed offsets moved by another worker (their tables behind them) and rejoined the group "
            "so the rebalance recovers the tables, instead of processing on stale state.", ["agent"],
            registry=registry)
        self.caught_up_records = Counter(
            "bank_catch_up_records", "Changelog records a task restarted in place found past its local "
            "table before its first batch and applied first (its given-up transaction had committed after all), "
            "by agent and changelog.", ["agent", "changelog"], registry=registry)
        self.transaction_seconds = Histogram(
            "bank_transaction_seconds", "Time from a batch's first transaction begun to its last committed (its "
            "input partitions commit concurrently).", ["agent"], buckets=PROCESSING_BUCKETS, registry=registry)
        self.http_requests = Counter(
            "bank_http_requests", "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"], registry=registry)
        self.http_seconds = Histogram(
            "bank_http_request_duration_seconds", "HTTP request duration by route template (includes ?wait=).",
            ["route"], buckets=HTTP_BUCKETS, registry=registry)
        #: view → record time (epoch seconds) of the last event its agent applied
        self.last_applied: dict[str, float] = {}
        self._children: dict[tuple, object] = {}

    def _child(self, metric, *labels):
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    # -- hooks ----------------------------------------------------------------------------------
    def command_outcome(self, command_type: str, outcome: str, reason: str | None = None) -> None:
        self._child(self.commands, command_type, outcome).inc()
        if reason:
            self._child(self.rejections, command_type, reason).inc()

    def batch_done(self, agent: str, seconds: float, last_timestamp: float | None) -> None:
        """An agent handled a batch; for a view agent, the last record's time is its view's freshness."""
        self._child(self.processing, agent).observe(seconds)
        view = VIEW_AGENTS.get(agent)
        if view is not None and last_timestamp is not None:
            self.last_applied[view] = last_timestamp

    def transaction_committed(self, agent: str, effects, seconds: float) -> None:
        self._child(self.transactions, agent, "committed").inc(len(effects))
        self._child(self.transaction_seconds, agent).observe(seconds)
        deadletter = topics.DEADLETTER.name
        # Counted by topic first: a counter's inc takes a lock, once per topic instead of once per record.
        by_topic = collections.Counter(record.topic for effect in effects for record in effect.records)
        for topic, count in by_topic.items():
            self.emitted_child(topic).inc(count)
        if deadletter in by_topic:
            for effect in effects:
                for record in effect.records:
                    if record.topic == deadletter:
                        source = dict(record.headers or ()).get("deadletter.topic", b"")
                        self.dead_lettered(source.decode("utf-8", "replace"))

    def transaction_fenced(self, agent: str) -> None:
        self._child(self.transactions, agent, "fenced").inc()

    def transaction_failed(self, agent: str) -> None:
        self._child(self.transactions, agent, "failed").inc()

    def stale_rejoin(self, agent: str) -> None:
        self._child(self.stale_rejoins, agent).inc()

    def tables_behind(self, agent: str, changelog: str, records: int) -> None:
        self._child(self.caught_up_records, agent, changelog).inc(records)

    def emitted_child(self, topic: str):
        return self._child(self.emitted, topic)

    def send_failed(self, topic: str) -> None:
        self._child(self.send_errors, topic).inc()

    def dead_lettered(self, source_topic: str) -> None:
        self._child(self.dead_letters, source_topic).inc()

    def http_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self._child(self.http_requests, method, route, str(status)).inc()
        self._child(self.http_seconds, route).observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class MetricsSensor(faust.Sensor):
    """Faust calls these for every record sent; each does a dict lookup and a counter update. (Agents
    take batches, so Faust's per-event stream hooks never see one processed: see `Metrics.batch_done`.)"""

    def __init__(self, metrics: Metrics, **kwargs):
        super().__init__(**kwargs)
        self.metrics = metrics
        self._topics: dict[str, tuple] = {}  # topic → (topic, emitted counter child): the send's state

    def on_send_initiated(self, producer, topic, message, keysize, valsize):
        if topic == topics.DEADLETTER.name:
            source = "unknown"
            for key, value in getattr(message, "headers", None) or ():
                if key == "deadletter.topic":
                    source = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
            self.metrics.dead_lettered(source)
        sending = self._topics.get(topic)
        if sending is None:
            sending = self._topics[topic] = (topic, self.metrics.emitted_child(topic))
        return sending

    def on_send_completed(self, producer, state, metadata):
        if state is not None:
            state[1].inc()

    def on_send_error(self, producer, exc, state):
        if state is not None:
            self.metrics.send_failed(state[0])


class PipelineCollector:
    """Computed at scrape: consumer lag per partition, view lag and staleness, readiness."""

    def __init__(self, app: faust.App, agent_topics: dict[str, frozenset[str]], metrics: Metrics,
                 clock=time.time, stalled=lambda: 0, fetched=fetch_position):
        self.app = app
        self.fetched = fetched  # (app, tp) -> the consumer's next offset to fetch, past transaction markers
        self.stalled = stalled  # how many partitions the liveness check finds stalled
        self.agent_topics = agent_topics
        self.source_topics = frozenset().union(*agent_topics.values())
        self.metrics = metrics
        self.clock = clock

    def describe(self):
        return []  # nothing to describe up front: the families depend on the live assignment

    def assignment(self) -> set:
        consumer = getattr(self.app, "_consumer", None)  # not `app.consumer`: that would create one
        if consumer is None:
            return set()
        try:
            return consumer.assignment()
        except Exception:  # not started, or stopping
            return set()

    def positions(self, assignment) -> dict[tuple[str, int], tuple[int, int]]:
        """(topic, partition) → (highwater, position) for every assigned partition the consumer knows."""
        consumer = getattr(self.app, "_consumer", None)
        if consumer is None:
            return {}
        read = consumer._read_offset
        committed = consumer._committed_offset
        unhandled = unhandled_partitions(consumer)
        out = {}
        for tp in assignment:
            if tp.topic not in self.source_topics:
                continue  # table changelogs: read only while recovering, their positions mean nothing after
            try:
                highwater = consumer.highwater(tp)
            except Exception:  # the partition went away since the assignment was read
                continue
            if highwater is None:
                continue
            last_read = read.get(tp)
            position = last_read + 1 if last_read is not None else committed.get(tp)
            if position is None:
                position = 0 if highwater == 0 else None
            if position is None:
                continue
            if only_markers_left(self.fetched(self.app, tp), highwater, tp in unhandled):
                position = highwater
            out[(tp.topic, tp.partition)] = (highwater, position)
        return out

    def collect(self) -> Iterable:
        assignment = self.assignment()
        positions = self.positions(assignment)
        lag = GaugeMetricFamily("bank_consumer_lag", "Records not yet processed per assigned partition of the "
                                "topics the agents read: highwater minus the position after the last record read.",
                                labels=["topic", "partition"])
        highwater = GaugeMetricFamily("bank_consumer_highwater", "The partition's highwater offset as the "
                                      "consumer last saw it.", labels=["topic", "partition"])
        for (topic, partition), (high, position) in sorted(positions.items()):
            lag.add_metric([topic, str(partition)], max(high - position, 0))
            highwater.add_metric([topic, str(partition)], high)
        yield lag
        yield highwater

        view_lag = GaugeMetricFamily("bank_view_lag_records", "Records of its source topics that a view's "
                                     "agent has not yet applied, on this worker's partitions.", labels=["view"])
        staleness = GaugeMetricFamily("bank_view_staleness_seconds", "0 when a view has applied everything on "
                                      "this worker's partitions; else the age of the last event it applied.",
                                      labels=["view"])
        applied = GaugeMetricFamily("bank_view_last_applied_timestamp_seconds", "Record time of the last "
                                    "event a view applied on this worker.", labels=["view"])
        now = self.clock()
        for agent, view in VIEW_AGENTS.items():
            sources = self.agent_topics.get(agent, frozenset())
            behind = sum(max(high - position, 0) for (topic, _), (high, position) in positions.items()
                         if topic in sources)
            view_lag.add_metric([view], behind)
            last = self.metrics.last_applied.get(view)
            staleness.add_metric([view], max(now - last, 0.0) if behind and last is not None else 0.0)
            if last is not None:
                applied.add_metric([view], last)
        yield view_lag
        yield staleness
        yield applied

        ready = GaugeMetricFamily("bank_worker_ready", "1 when partitions are assigned and recovered.")
        try:
            ready.add_metric([], 0.0 if self.app.rebalancing or self.app.in_recovery
                             or not self.app.tables.actives_ready else 1.0)
        except Exception:
            ready.add_metric([], 0.0)
        yield ready
        assigned = GaugeMetricFamily("bank_assigned_partitions", "Partitions assigned to this worker's consumer "
                                     "(sources and table changelogs).")
        assigned.add_metric([], len(assignment))
        yield assigned
        stalled = GaugeMetricFamily("bank_stalled_partitions", "Assigned partitions with work waiting and no "
                                    "progress for 30 s (the liveness check behind /health).")
        stalled.add_metric([], self.stalled())
        yield stalled
        rocksdb = GaugeMetricFamily("bank_rocksdb_memory_bytes", "What the block cache and the memtables shared by "
                                    "every table partition of this worker hold (block_cache_pinned: the part "
                                    "of the cache in use by readers); each has a bound (streams/worker/store.py).",
                                    labels=["kind"])
        for kind, size in sorted((rocksdb_memory_usage() or {}).items()):
            rocksdb.add_metric([kind], size)
        yield rocksdb


def channel_topics(agent) -> frozenset[str]:
    channel = getattr(agent, "channel", None)
    return frozenset(getattr(channel, "topics", ()) or ())


def instrument(pipeline, command_processors: Iterable = ()) -> Metrics:
    """Installs every hook on `pipeline` (see the module docstring) and returns its metrics."""
    metrics = Metrics()
    for processor in command_processors:
        processor.observe = metrics.command_outcome
    pipeline.app.sensors.add(MetricsSensor(metrics))
    transactions = getattr(pipeline.app, "transactions", None)
    if transactions is not None:
        transactions.on_commit = metrics.transaction_committed
        transactions.on_fenced = metrics.transaction_fenced
        transactions.on_failed = metrics.transaction_failed
        transactions.on_stale = metrics.stale_rejoin
        transactions.on_behind = metrics.tables_behind
    for writer in getattr(pipeline, "writers", {}).values():  # table changelogs sent in batches
        writer.on_sent = lambda topic, count: metrics.emitted_child(topic).inc(count)
    agent_topics = {name: channel_topics(agent) for name, agent in pipeline.agents.items()}
    metrics.registry.register(PipelineCollector(pipeline.app, agent_topics, metrics,
                                                stalled=lambda: len(getattr(pipeline, "stalled", ()))))
    return metrics


def route_of(request) -> str:
    """The route template (bounded label values), `unmatched` for 404s outside every route."""
    try:
        resource = request.match_info.route.resource
    except AttributeError:
        resource = None
    return resource.canonical if resource is not None else "unmatched"


def make_http_middleware(metrics: Metrics):
    @aioweb.middleware
    async def count_requests(request, handler):
        started = time.monotonic()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except aioweb.HTTPException as exc:
            status = exc.status
            raise
        finally:
            metrics.http_request(request.method, route_of(request), status, time.monotonic() - started)
    return count_requests


def register_metrics(web_app: aioweb.Application, metrics: Metrics) -> None:
    """Adds GET /metrics and, outermost, the request-counting middleware."""
    web_app.middlewares.insert(0, make_http_middleware(metrics))

    async def scrape(request):
        return aioweb.Response(body=metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})

    web_app.router.add_get("/metrics", scrape)
