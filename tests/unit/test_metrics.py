"""The metrics module on its own: counters, the Faust sensor, the scrape-time collector, the HTTP middleware."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

from aiohttp import web as aioweb
from aiohttp.test_utils import TestClient, TestServer
from faust.types import TP
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from streams.contract import topics
from streams.worker.metrics import Metrics, MetricsSensor, PipelineCollector, register_metrics


def samples(metrics: Metrics) -> dict[tuple, float]:
    """(sample name, sorted label items) → value, parsed back from the exposition text."""
    out = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(metrics: Metrics, name: str, **labels) -> float | None:
    return samples(metrics).get((name, tuple(sorted(labels.items()))))


def test_each_metrics_object_has_its_own_registry_and_leaves_the_global_one_alone():
    first, second = Metrics(), Metrics()
    first.command_outcome("Deposit", "ACCEPTED")
    assert value(first, "bank_commands_total", command_type="Deposit", outcome="ACCEPTED") == 1
    assert value(second, "bank_commands_total", command_type="Deposit", outcome="ACCEPTED") is None
    assert REGISTRY.get_sample_value("bank_commands_total", {"command_type": "Deposit", "outcome": "ACCEPTED"}) is None


def test_outcomes_count_by_type_and_outcome_and_rejections_by_reason():
    metrics = Metrics(process=False)
    metrics.command_outcome("Withdraw", "REJECTED", "INSUFFICIENT_FUNDS")
    metrics.command_outcome("Withdraw", "REJECTED", "INSUFFICIENT_FUNDS")
    metrics.command_outcome("Withdraw", "ACCEPTED")
    metrics.command_outcome("Withdraw", "DUPLICATE")
    assert value(metrics, "bank_commands_total", command_type="Withdraw", outcome="REJECTED") == 2
    assert value(metrics, "bank_commands_total", command_type="Withdraw", outcome="ACCEPTED") == 1
    assert value(metrics, "bank_commands_total", command_type="Withdraw", outcome="DUPLICATE") == 1
    assert value(metrics, "bank_command_rejections_total", command_type="Withdraw",
                 reason="INSUFFICIENT_FUNDS") == 2


def test_label_children_are_created_once_and_then_reused():
    metrics = Metrics(process=False)
    metrics.command_outcome("Deposit", "ACCEPTED")
    children = dict(metrics._children)
    for _ in range(100):
        metrics.command_outcome("Deposit", "ACCEPTED")
    assert metrics._children == children


def test_each_batch_is_timed_per_agent_and_a_view_remembers_the_last_record_it_applied():
    metrics = Metrics(process=False)
    for _ in range(3):
        metrics.batch_done("project_accounts", 0.002, 1_700_000_000.5)
    metrics.batch_done("process_account_commands", 0.001, 1_700_000_001.0)
    metrics.batch_done("project_transfers", 0.001, None)
    assert value(metrics, "bank_agent_processing_seconds_count", agent="project_accounts") == 3
    assert value(metrics, "bank_agent_processing_seconds_count", agent="process_account_commands") == 1
    assert metrics.last_applied == {"account_to_view": 1_700_000_000.5}


def test_the_sensor_counts_acknowledged_sends_by_topic_and_dead_letters_by_their_source():
    metrics = Metrics(process=False)
    sensor = MetricsSensor(metrics)
    state = sensor.on_send_initiated(None, "bank.accounts.events", SimpleNamespace(headers=None), 1, 10)
    sensor.on_send_completed(None, state, None)
    letter = SimpleNamespace(headers=[("deadletter.topic", b"bank.accounts.commands"),
                                      ("deadletter.error", b"undecodable")])
    state = sensor.on_send_initiated(None, topics.DEADLETTER.name, letter, 1, 10)
    sensor.on_send_completed(None, state, None)
    state = sensor.on_send_initiated(None, "bank.accounts.events", SimpleNamespace(headers=None), 1, 10)
    sensor.on_send_error(None, RuntimeError("broker gone"), state)
    assert value(metrics, "bank_records_emitted_total", topic="bank.accounts.events") == 1
    assert value(metrics, "bank_records_emitted_total", topic=topics.DEADLETTER.name) == 1
    assert value(metrics, "bank_dead_letters_total", source_topic="bank.accounts.commands") == 1
    assert value(metrics, "bank_record_send_errors_total", topic="bank.accounts.events") == 1


class FakeConsumer:
    def __init__(self, highwaters: dict[TP, int | None], read: dict[TP, int], committed: dict[TP, int]):
        self.highwaters, self._read_offset, self._committed_offset = highwaters, read, committed

    def assignment(self):
        return set(self.highwaters)

    def highwater(self, tp):
        return self.highwaters[tp]


def fake_app(consumer, ready=True):
    return SimpleNamespace(_consumer=consumer, rebalancing=not ready, in_recovery=False,
                           tables=SimpleNamespace(actives_ready=True))


def test_lag_is_highwater_minus_the_position_after_the_last_record_read_computed_at_scrape():
    events0, events1 = TP("bank.accounts.events", 0), TP("bank.accounts.events", 1)
    commands0, changelog = TP("bank.accounts.commands", 0), TP("streambank-account_to_view-changelog", 0)
    consumer = FakeConsumer(
        highwaters={events0: 10, events1: 7, commands0: 5, changelog: 99},
        read={events0: 3},                     # read up to offset 3: position 4, 6 behind
        committed={events1: 7, commands0: 5})  # nothing read since start: the committed offset is the position
    metrics = Metrics(process=False)
    metrics.last_applied["account_to_view"] = 1000.0
    metrics.registry.register(PipelineCollector(
        fake_app(consumer),
        {"project_accounts": frozenset({"bank.accounts.events"}),
         "process_account_commands": frozenset({"bank.accounts.commands"})},
        metrics, clock=lambda: 1012.5))
    assert value(metrics, "bank_consumer_lag", topic="bank.accounts.events", partition="0") == 6
    assert value(metrics, "bank_consumer_lag", topic="bank.accounts.events", partition="1") == 0
    assert value(metrics, "bank_consumer_lag", topic="bank.accounts.commands", partition="0") == 0
    assert value(metrics, "bank_consumer_lag", topic=changelog.topic, partition="0") is None  # not a source
    assert value(metrics, "bank_view_lag_records", view="account_to_view") == 6
    assert value(metrics, "bank_view_staleness_seconds", view="account_to_view") == 12.5
    assert value(metrics, "bank_view_lag_records", view="transfer_to_view") == 0
    assert value(metrics, "bank_view_staleness_seconds", view="transfer_to_view") == 0
    assert value(metrics, "bank_view_last_applied_timestamp_seconds", view="account_to_view") == 1000.0
    assert value(metrics, "bank_worker_ready") == 1
    assert value(metrics, "bank_assigned_partitions") == 4

    consumer._read_offset[events0] = 9  # caught up: staleness drops to 0
    assert value(metrics, "bank_view_staleness_seconds", view="account_to_view") == 0


def test_lag_is_zero_when_only_transaction_markers_are_left_between_the_last_record_read_and_the_highwater():
    events0 = TP("bank.accounts.events", 0)
    consumer = FakeConsumer(highwaters={events0: 10}, read={events0: 8}, committed={events0: 9})
    consumer._unacked_messages = set()
    fetched = {events0: 10}  # the consumer fetched past offset 9, a commit marker
    metrics = Metrics(process=False)
    metrics.registry.register(PipelineCollector(
        fake_app(consumer), {"project_accounts": frozenset({"bank.accounts.events"})}, metrics,
        fetched=lambda app, tp: fetched.get(tp)))
    assert value(metrics, "bank_consumer_lag", topic="bank.accounts.events", partition="0") == 0
    assert value(metrics, "bank_view_lag_records", view="account_to_view") == 0

    consumer._unacked_messages = [SimpleNamespace(tp=events0)]  # offset 8 handed on, not yet handled
    assert value(metrics, "bank_view_lag_records", view="account_to_view") == 1

    consumer._unacked_messages = set()
    fetched[events0] = 9  # not fetched up to the highwater: offset 9 may be a record
    assert value(metrics, "bank_view_lag_records", view="account_to_view") == 1


def test_the_collector_answers_before_the_consumer_exists_and_when_it_fails():
    metrics = Metrics(process=False)
    metrics.registry.register(PipelineCollector(fake_app(None, ready=False), {}, metrics))
    assert value(metrics, "bank_worker_ready") == 0
    assert value(metrics, "bank_assigned_partitions") == 0

    class Broken(FakeConsumer):
        def assignment(self):
            raise RuntimeError("consumer not started")

    broken = Metrics(process=False)
    broken.registry.register(PipelineCollector(fake_app(Broken({}, {}, {})), {}, broken))
    assert value(broken, "bank_assigned_partitions") == 0


def test_http_requests_count_by_method_route_template_and_status_and_metrics_are_scraped_as_text():
    metrics = Metrics(process=False)

    async def hello(request):
        return aioweb.json_response({"id": request.match_info["item_id"]})

    async def boom(request):
        raise aioweb.HTTPConflict()

    async def run():
        web_app = aioweb.Application()
        web_app.router.add_get("/items/{item_id}", hello)
        web_app.router.add_post("/boom", boom)
        register_metrics(web_app, metrics)
        async with TestClient(TestServer(web_app)) as client:
            for item in ("a", "b", "c"):
                assert (await client.get(f"/items/{item}")).status == 200
            assert (await client.post("/boom")).status == 409
            assert (await client.get("/nowhere")).status == 404
            scraped = await client.get("/metrics")
            return scraped.status, scraped.headers["Content-Type"], await scraped.text()

    status, content_type, text = asyncio.run(run())
    assert status == 200 and content_type.startswith("text/plain; version=0.0.4")
    assert "bank_http_requests_total" in text
    assert value(metrics, "bank_http_requests_total", method="GET", route="/items/{item_id}", status="200") == 3
    assert value(metrics, "bank_http_requests_total", method="POST", route="/boom", status="409") == 1
    assert value(metrics, "bank_http_requests_total", method="GET", route="unmatched", status="404") == 1
    assert value(metrics, "bank_http_request_duration_seconds_count", route="/items/{item_id}") == 3


def test_a_committed_batch_counts_its_transactions_and_the_records_it_wrote_and_a_fenced_one_is_counted_apart():
    from streams.services.handling import Outgoing
    from streams.kafka.transactions import PartitionEffects
    metrics = Metrics(process=False)
    effects = [PartitionEffects(0, [], [Outgoing("bank.accounts.events", "A", b"e"),
                                        Outgoing("bank.command-outcomes", "c", b"o")], {}),
               PartitionEffects(1, [], [Outgoing("bank.accounts.events", "B", b"e")], {})]
    metrics.transaction_committed("process_account_commands", effects, 0.02)
    metrics.transaction_fenced("process_account_commands")
    assert value(metrics, "bank_transactions_total", agent="process_account_commands", result="committed") == 2
    assert value(metrics, "bank_transactions_total", agent="process_account_commands", result="fenced") == 1
    assert value(metrics, "bank_records_emitted_total", topic="bank.accounts.events") == 2
    assert value(metrics, "bank_transaction_seconds_count", agent="process_account_commands") == 1


def test_a_committed_dead_letter_is_counted_by_the_topic_it_came_from():
    from streams.services.handling import Origin, dead_letter
    from streams.kafka.transactions import PartitionEffects
    metrics = Metrics(process=False)
    letter = dead_letter(b"A", b"garbage", Origin("bank.accounts.commands", 0, 7), "undecodable")
    metrics.transaction_committed("process_account_commands", [PartitionEffects(0, [], [letter], {})], 0.01)
    assert value(metrics, "bank_dead_letters_total", source_topic="bank.accounts.commands") == 1
