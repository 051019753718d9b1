"""GET /metrics on real workers: present, Prometheus text, and its counters move with real traffic."""
from __future__ import annotations

import time
import uuid
from collections import defaultdict

import httpx
from confluent_kafka import Producer
from prometheus_client.parser import text_string_to_metric_families


def scrape(worker) -> dict[tuple, float]:
    response = httpx.get(f"{worker.url}/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    values = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


def total(workers, name: str, **labels) -> float:
    """`name` summed over every worker and over the labels not given (as a PromQL sum by would)."""
    wanted = set(labels.items())
    return sum(value for worker in workers for (sample, sample_labels), value in scrape(worker).items()
               if sample == name and wanted <= set(sample_labels))


EXPECTED_MOVES = [  # (sample, labels, at least this much more after the traffic below)
    ("bank_commands_total", {"command_type": "CreateCustomer", "outcome": "ACCEPTED"}, 1),
    ("bank_commands_total", {"command_type": "OpenAccount", "outcome": "ACCEPTED"}, 2),
    ("bank_commands_total", {"command_type": "Deposit", "outcome": "ACCEPTED"}, 3),
    ("bank_commands_total", {"command_type": "Withdraw", "outcome": "REJECTED"}, 1),
    ("bank_commands_total", {"command_type": "TransferMoney", "outcome": "ACCEPTED"}, 1),
    ("bank_command_rejections_total", {"command_type": "Withdraw", "reason": "INSUFFICIENT_FUNDS"}, 1),
    ("bank_records_emitted_total", {"topic": "bank.accounts.events"}, 7),  # 2 opened, 3 deposits, debit, credit
    ("bank_records_emitted_total", {"topic": "bank.command-outcomes"}, 8),
    ("bank_records_emitted_total", {"topic": "bank.transfers.events"}, 3),
    ("bank_dead_letters_total", {"source_topic": "bank.accounts.commands"}, 1),
    ("bank_agent_processing_seconds_count", {"agent": "process_account_commands"}, 9),
    ("bank_agent_processing_seconds_count", {"agent": "project_accounts"}, 7),
    ("bank_agent_processing_seconds_count", {"agent": "record_outcomes"}, 8),
    ("bank_consumer_highwater", {"topic": "bank.accounts.events"}, 7),
    ("bank_http_requests_total", {"method": "POST", "route": "/api/accounts/{account_id}/deposits",
                                  "status": "200"}, 3),
    ("bank_http_requests_total", {"method": "GET", "route": "/api/accounts/{account_id}", "status": "200"}, 1),
]


def test_metrics_are_served_by_every_worker_and_their_counters_move_after_traffic(api, workers, kafka):
    for worker in workers:
        names = {name for name, _ in scrape(worker)}
        for family in ("bank_consumer_lag", "bank_view_lag_records", "bank_view_staleness_seconds",
                       "bank_worker_ready", "bank_assigned_partitions", "process_resident_memory_bytes",
                       "bank_rocksdb_memory_bytes"):
            assert family in names, (worker.port, family)
    before = {(name, tuple(labels.items())): total(workers, name, **labels) for name, labels, _ in EXPECTED_MOVES}

    customer = api.create_customer("Metric", "Mover")
    source, target = api.open_account(customer, "10.00"), api.open_account(customer, "0.00")
    for amount in ("1.00", "2.00", "3.00"):
        api.accepted(f"/api/accounts/{source}/deposits", {"amount": amount})
    refused = api.post(f"/api/accounts/{source}/withdrawals", {"amount": "1000.00"}).json()
    assert refused["reason"] == "INSUFFICIENT_FUNDS"
    api.accepted("/api/transfers", {"from_account_id": source, "to_account_id": target, "amount": "4.00"})
    assert api.get(f"/api/accounts/{target}", min_version=2, wait=20).json()["balance"] == "4.00"
    producer = Producer({"bootstrap.servers": kafka.bootstrap_servers, "partitioner": "murmur2_random"})
    producer.produce("bank.accounts.commands", key=f"poison-{uuid.uuid4().hex}".encode(), value=b"\x00not avro")
    assert producer.flush(10) == 0

    deadline = time.monotonic() + 30
    while True:
        moved = {key: total(workers, key[0], **dict(key[1])) - value for key, value in before.items()}
        short = [(name, labels, moved[(name, tuple(labels.items()))], least) for name, labels, least in EXPECTED_MOVES
                 if moved[(name, tuple(labels.items()))] < least]
        if not short or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert short == [], f"counters that did not move enough (name, labels, moved, expected): {short}"

    # Scrape-time gauges: every source partition is someone's, and the views caught up with the traffic.
    partitions = defaultdict(set)
    for worker in workers:
        for (name, labels), value in scrape(worker).items():
            labels = dict(labels)
            if name == "bank_consumer_lag":
                partitions[labels["topic"]].add(labels["partition"])
                assert value >= 0
    assert partitions["bank.accounts.events"] == {"0", "1", "2", "3"}
    deadline = time.monotonic() + 30
    while (behind := total(workers, "bank_view_lag_records", view="account_to_view")) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert behind == 0
    assert total(workers, "bank_view_staleness_seconds", view="account_to_view") == 0
    assert total(workers, "bank_view_last_applied_timestamp_seconds", view="account_to_view") > time.time() - 600
    assert total(workers, "bank_worker_ready") == len(workers)
