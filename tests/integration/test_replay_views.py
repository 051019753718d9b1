"""`bank replay views` rebuilds the read models into a new generation while the old one answers."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from decimal import Decimal

import httpx
import pytest

from http_api import REPO
from streams.ops import verify
from streams.client import BankClient, OutcomeReader
from streams.kafka.pointer import read_pointer
from streams.ops.as_of import account_state_at
from streams.dev.traffic import open_accounts, resend_unanswered, transfer_storm


def bank(settings, *args, timeout=300) -> subprocess.CompletedProcess:
    env = {**os.environ, "BANK_HOME": str(settings.home), "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
           "BANK_PARTITIONS": str(settings.partitions)}
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=timeout)


def quiet_and_verified(settings, timeout: float = 120.0) -> verify.Report:
    """Verifies until the log holds (work in flight shows as violations) or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        report = verify.run(settings, views=True, timeout=60)
        if report.ok or time.monotonic() > deadline:
            return report
        time.sleep(2)


class Reader(threading.Thread):
    """Keeps GETting accounts from both workers, round robin, and remembers every status."""

    def __init__(self, workers, account_ids):
        super().__init__(name="reader", daemon=True)
        self.urls = [w.url for w in workers]
        self.account_ids = account_ids
        self.statuses: list[int] = []
        self.stop = threading.Event()

    def run(self):
        with httpx.Client(timeout=30) as http:
            index = 0
            while not self.stop.is_set():
                url = self.urls[index % len(self.urls)]
                account_id = self.account_ids[index % len(self.account_ids)]
                self.statuses.append(http.get(f"{url}/api/accounts/{account_id}").status_code)
                index += 1


@pytest.mark.timeout(420)
def test_views_are_rebuilt_during_live_traffic_while_queries_keep_answering(api, kafka, workers):
    client, reader = BankClient(kafka), OutcomeReader(kafka)
    ledger = open_accounts(client, reader, api.create_customer("Replay", "Views"), 20)
    warmup = transfer_storm(client, ledger, 60, seed=3)
    assert len(reader.wait([c.command_id for c in warmup], timeout=60)) == len(warmup)
    before = read_pointer(kafka)

    queries = Reader(workers, ledger.account_ids)
    storm: list = []
    traffic = threading.Thread(target=lambda: storm.extend(transfer_storm(client, ledger, 150, seed=4, rate=40)))
    queries.start()
    traffic.start()
    time.sleep(1)
    done = bank(kafka, "replay", "views", "--json")
    traffic.join()
    time.sleep(1)  # a few more reads against the new generation
    queries.stop.set()
    queries.join()

    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(done.stdout)
    assert "workers loading" in done.stderr and "/s" in done.stderr  # the progress bar
    after = read_pointer(kafka)
    for view in ("accounts", "transfers", "customers", "emails", "outcomes"):
        assert after.serving_of(view) == summary["generations"][view] == before.serving_of(view) + 1
    assert summary["events"] > 0 and summary["entries"] > 0
    assert len(queries.statuses) > 20
    assert set(queries.statuses) == {200}, {s: queries.statuses.count(s) for s in set(queries.statuses)}

    resend_unanswered(client, reader, storm)
    client.close()
    reader.close()
    report = quiet_and_verified(kafka)
    assert report.violations == []  # [6]: every view of the new generation equals the fold
    now = int(time.time() * 1000)
    for account_id in ledger.account_ids:
        view = api.get(f"/api/accounts/{account_id}").json()
        folded = account_state_at(kafka, account_id, now).view
        assert (Decimal(view["balance"]), view["version"]) == (folded.balance, folded.version)
    assert sum(Decimal(api.get(f"/api/accounts/{a}").json()["balance"]) for a in ledger.account_ids) == ledger.total


@pytest.mark.timeout(300)
def test_one_view_alone_is_rebuilt_and_the_others_keep_their_generation(api, kafka, workers):
    customer_id = api.create_customer("Only", "Accounts")
    account_id = api.open_account(customer_id, "12.50")
    before = read_pointer(kafka)

    done = bank(kafka, "replay", "views", "--view", "accounts", "--json", "--no-progress")

    assert done.returncode == 0, done.stdout + done.stderr
    after = read_pointer(kafka)
    assert after.serving_of("accounts") == before.serving_of("accounts") + 1
    assert {v: after.serving_of(v) for v in ("transfers", "customers", "emails", "outcomes")} == \
           {v: before.serving_of(v) for v in ("transfers", "customers", "emails", "outcomes")}
    assert api.get(f"/api/accounts/{account_id}").json()["balance"] == "12.50"
    history = api.get(f"/api/accounts/{account_id}/history").json()
    assert [e["entry_type"] for e in history["entries"]] == ["AccountOpened"]
    assert quiet_and_verified(kafka).violations == []
