"""Exactly-once effects through kill -9: a storm of transfers while workers are killed and restarted."""
from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from decimal import Decimal

import httpx
import pytest

from conftest import wait_until_serving
from http_api import REPO
from streams.ops import verify
from streams.client import BankClient, OutcomeReader
from streams.domain.transfers import TERMINAL
from streams.dev.traffic import open_accounts, resend_unanswered, transfer_storm

ACCOUNTS = 100
TRANSFERS_PER_HALF = 1000
KILLS = 3


def supervise(workers, restarts: list) -> None:
    """What a process supervisor does: restart a worker that died or whose liveness check fails."""
    for worker in workers:
        if worker.process.poll() is not None:
            restarts.append((worker.port, "exited"))
            worker.start()
            continue
        try:
            health = httpx.get(f"{worker.url}/health", timeout=5).json()
        except (httpx.HTTPError, ValueError):
            continue
        if health.get("status") == "stalled":
            restarts.append((worker.port, f"stalled on {health['stalled_partitions']}"))
            worker.kill()
            worker.start()


def quiesce(settings, workers, restarts: list, timeout: float = 240.0) -> verify.Report:
    """Reads and checks the log until it holds (work still in flight shows as violations) or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        report = verify.run(settings, views=True, timeout=60)
        if report.ok or time.monotonic() > deadline:
            return report
        print(f"not yet: {len(report.violations)} violations, e.g. {report.violations[:3]}", flush=True)
        supervise(workers, restarts)
        time.sleep(3)


@pytest.mark.timeout(600)
def test_transfers_survive_kill_9_of_workers_with_every_invariant_intact(api, kafka, workers):
    rng = random.Random(2026)
    client = BankClient(kafka)
    reader = OutcomeReader(kafka)
    ledger = open_accounts(client, reader, api.create_customer("Storm", "Test"), ACCOUNTS, zero_every=10)
    doomed = ledger.account_ids[::10][:5]  # opened at 0.00; closed halfway through, then sent money
    living = [a for a in ledger.account_ids if a not in doomed]

    kills: list[tuple[int, float]] = []

    def kill_and_restart():
        for _ in range(KILLS):
            time.sleep(rng.uniform(2.0, 4.0))
            victim = rng.choice(workers)
            victim.kill()
            kills.append((victim.port, time.monotonic()))
            time.sleep(rng.uniform(0.5, 2.0))
            victim.start()

    killer = threading.Thread(target=kill_and_restart, name="killer")
    started = time.monotonic()
    killer.start()
    storm = transfer_storm(client, ledger, TRANSFERS_PER_HALF, seed=1, rate=120, sources=living, targets=living)
    for account_id in doomed:
        client.close_account(account_id)
    storm += transfer_storm(client, ledger, TRANSFERS_PER_HALF, seed=2, rate=120, sources=living)
    killer.join()
    wait_until_serving(workers)

    restarts: list = []
    resent = resend_unanswered(client, reader, storm)
    client.close()
    reader.close()
    report = quiesce(kafka, workers, restarts)
    elapsed = time.monotonic() - started
    redriven = sum(worker.log.read_text(errors="replace").count("issued the steps of") for worker in workers)
    print(f"\ncrash test: {2 * TRANSFERS_PER_HALF} transfers, {len(kills)} kills {kills}, "
          f"client resends {resent}, saga redrives {redriven}, supervisor restarts {restarts}, {elapsed:.0f}s to quiescence; "
          f"{report.summary_line()}")
    assert len(kills) == KILLS
    assert report.violations == []
    assert sum(report.transfers.values()) >= 2 * TRANSFERS_PER_HALF
    assert set(report.transfers) <= TERMINAL, report.transfers

    balances = [api.get(f"/api/accounts/{account_id}").json()["balance"] for account_id in ledger.account_ids]
    assert sum(Decimal(b) for b in balances) == ledger.total
    closed_targets = [t for t in ledger.transfers[TRANSFERS_PER_HALF:]
                      if api.get(f"/api/transfers/{t}").json().get("reason") == "ACCOUNT_CLOSED"]
    assert closed_targets, "some transfers must have met an account closed meanwhile"

    env = {**os.environ, "BANK_HOME": str(kafka.home), "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers}
    done = subprocess.run([sys.executable, "-m", "streams.cli", "verify"], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
