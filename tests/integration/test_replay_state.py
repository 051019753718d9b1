"""Disaster recovery: `bank replay state` rebuilds the tables from the events; workers whose local state
Kafka contradicts drop it by themselves."""
from __future__ import annotations

import dataclasses
import json
import shutil
import threading
import time
from decimal import Decimal

import pytest
from confluent_kafka.admin import AdminClient

from conftest import wait_until_serving
from streams.worker import localstate
from streams import topology
from streams.contract import topics
from streams.client import BankClient, OutcomeReader
from streams.dev.traffic import open_accounts, resend_unanswered, transfer_storm
from test_replay_views import bank, quiet_and_verified


def balances(api, account_ids) -> dict[str, str]:
    return {a: api.get(f"/api/accounts/{a}").json()["balance"] for a in account_ids}


def worker_settings(settings, worker):
    return dataclasses.replace(settings, web_port=worker.port)


def start_supervised(workers, restarts: list, attempts: int = 3) -> None:
    """Starts the workers and waits until they serve, restarting one that exits as a supervisor would:
    right after changelog topics were recreated, Faust 0.15.3 has been seen to crash once while
    seeking its standby partitions ("Offset must be a positive integer"); a restart recovers."""
    for worker in workers:
        worker.start()
    for _ in range(attempts):
        try:
            wait_until_serving(workers)
            return
        except RuntimeError:
            exited = [w for w in workers if w.process.poll() is not None]
            if not exited:
                raise
            for worker in exited:
                restarts.append((worker.port, worker.tail(5)))
                worker.start()
    wait_until_serving(workers)


def delete_changelogs(settings) -> None:
    admin = AdminClient(settings.confluent_config())
    for future in admin.delete_topics([topics.changelog_topic(t) for t in topology.TABLES]).values():
        future.result()


@pytest.mark.timeout(480)
def test_tables_are_rebuilt_from_the_events_after_local_state_and_changelogs_are_lost(api, kafka, workers):
    client, reader = BankClient(kafka), OutcomeReader(kafka)
    ledger = open_accounts(client, reader, api.create_customer("Disaster", "Recovery"), 20, zero_every=5)
    first = transfer_storm(client, ledger, 100, seed=5)
    assert len(reader.wait([c.command_id for c in first], timeout=60)) == len(first)
    assert quiet_and_verified(kafka).violations == []
    before = balances(api, ledger.account_ids)

    for worker in workers:  # the disaster: every worker's disk and every changelog topic are gone
        worker.stop()
        shutil.rmtree(worker_settings(kafka, worker).worker_dir)
    delete_changelogs(kafka)
    done = bank(kafka, "replay", "state", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(done.stdout)
    assert summary["aggregates"]["account_to_state"] >= 20 and summary["dedup_entries"] > 0
    assert "writing changelogs" in done.stderr  # the progress bar

    restarts: list = []
    start_supervised(workers, restarts)
    print(f"\nsupervisor restarts after the recovery: {restarts}")
    assert balances(api, ledger.account_ids) == before
    assert quiet_and_verified(kafka).violations == []

    # The workers go on where the log ends: redelivered old commands stay deduplicated, new ones apply,
    # and a worker killed with -9 in the middle changes nothing.
    for command in first[:20]:
        client.send(command)
    client.flush()

    def kill_and_restart():
        time.sleep(2)
        workers[1].kill()
        time.sleep(1)
        workers[1].start()

    killer = threading.Thread(target=kill_and_restart)
    killer.start()
    storm = transfer_storm(client, ledger, 200, seed=6, rate=60)
    killer.join()
    wait_until_serving(workers)
    resend_unanswered(client, reader, storm)
    client.close()
    reader.close()
    report = quiet_and_verified(kafka, timeout=180)
    assert report.violations == []
    assert sum(Decimal(b) for b in balances(api, ledger.account_ids).values()) == ledger.total
    done = bank(kafka, "verify")
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.timeout(300)
def test_a_worker_whose_local_state_is_past_a_recreated_changelog_drops_it_and_recovers(api, kafka, workers):
    customer_id = api.create_customer("Local", "State")
    account_id = api.open_account(customer_id, "1.00")
    for _ in range(12):  # many writes to few keys: the rebuilt changelog is much shorter than the old one
        api.accepted(f"/api/accounts/{account_id}/deposits", {"amount": "1.00"})
    assert quiet_and_verified(kafka).violations == []

    for worker in workers:
        worker.stop()  # the local RocksDB state stays on disk
    done = bank(kafka, "replay", "state", "--no-progress")  # recreates every changelog, shorter
    assert done.returncode == 0, done.stdout + done.stderr
    stale = [m for w in workers for m in localstate.inconsistent(worker_settings(kafka, w))]
    assert stale, "the workers' local state should now be past the recreated changelogs"
    assert all(m.persisted >= m.end for m in stale)

    restarts: list = []
    start_supervised(workers, restarts)
    print(f"\nsupervisor restarts after the recovery: {restarts}")

    dropped = sum(w.log.read_text(errors="replace").count("dropped, Faust recovers it from the changelog")
                  for w in workers)
    assert dropped >= len(stale)
    assert api.get(f"/api/accounts/{account_id}").json()["balance"] == "13.00"
    api.accepted(f"/api/accounts/{account_id}/deposits", {"amount": "1.00"})
    assert api.get(f"/api/accounts/{account_id}", min_version=14, wait=10).json()["balance"] == "14.00"
    report = quiet_and_verified(kafka)
    assert report.violations == []
