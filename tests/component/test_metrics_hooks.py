"""The metrics hooks `wire` installs, driven through the real agents (no broker)."""
from __future__ import annotations

from decimal import Decimal

from harness import scenario
from streams.domain.accounts import Deposit, OpenAccount, Withdraw
from streams.worker.metrics import MetricsSensor

ACCOUNTS = "process_account_commands"


def count(bank, name: str, **labels) -> float:
    return bank.pipeline.metrics.registry.get_sample_value(name, labels) or 0.0


@scenario
async def test_wire_counts_each_decided_outcome_once_and_redeliveries_as_duplicates(bank):
    opened = OpenAccount(command_id="open-1", account_id="A", customer_id="C", title="Checking",
                         initial_balance=Decimal("5.00"))
    async with bank.agent(ACCOUNTS) as accounts:
        await accounts.put("A", opened)
        await accounts.put("A", Deposit(command_id="dep-1", account_id="A", amount=Decimal("1.00")))
        await accounts.put("A", Withdraw(command_id="wd-1", account_id="A", amount=Decimal("100.00")))
        await accounts.put("A", opened)  # redelivered: answered from the dedup table
        await accounts.put("B", Deposit(command_id="dep-2", account_id="A", amount=Decimal("1.00")))  # wrong key
    assert count(bank, "bank_commands_total", command_type="OpenAccount", outcome="ACCEPTED") == 1
    assert count(bank, "bank_commands_total", command_type="OpenAccount", outcome="DUPLICATE") == 1
    assert count(bank, "bank_commands_total", command_type="Deposit", outcome="ACCEPTED") == 1
    assert count(bank, "bank_commands_total", command_type="Deposit", outcome="REJECTED") == 1
    assert count(bank, "bank_commands_total", command_type="Withdraw", outcome="REJECTED") == 1
    assert count(bank, "bank_command_rejections_total", command_type="Withdraw", reason="INSUFFICIENT_FUNDS") == 1
    assert count(bank, "bank_command_rejections_total", command_type="Deposit", reason="INVALID_FIELD") == 1


@scenario
async def test_wire_adds_the_metrics_sensor_and_the_scrape_lists_every_family(bank):
    assert any(isinstance(sensor, MetricsSensor) for sensor in bank.pipeline.app.sensors)
    text = bank.pipeline.metrics.exposition().decode()
    for family in ("bank_commands_total", "bank_command_rejections_total", "bank_agent_processing_seconds",
                   "bank_records_emitted_total", "bank_dead_letters_total", "bank_http_requests_total",
                   "bank_consumer_lag", "bank_view_lag_records", "bank_view_staleness_seconds", "bank_worker_ready",
                   "process_resident_memory_bytes"):
        assert f"# TYPE {family} " in text, family
