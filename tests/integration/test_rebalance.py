"""Rebalances under load: a third worker joins and one leaves cleanly during a transfer storm. Queries keep
being answered (at worst a 503 that says when to retry) and every invariant holds."""
from __future__ import annotations

import random
import threading
import time
from collections import Counter
from decimal import Decimal

import httpx
import pytest

from conftest import Worker, wait_until_serving
from faults import OWN_WORKER_PORTS, bank_verify, quiesce, storm_through
from http_api import Api
from streams.client import BankClient, OutcomeReader
from streams.domain.transfers import TERMINAL
from streams.dev.traffic import open_accounts

ACCOUNTS = 40
TRANSFERS = 600
RATE = 100


def wait_until_healthy(worker: Worker, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while worker.health() is None:
        if worker.process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"worker {worker.port} did not come up:\n{worker.tail()}")
        time.sleep(0.5)


def steps_so_far(querier) -> str:
    return "after " + ", ".join(querier.steps) if querier.steps else "before any step"


class Querier:
    """Reads accounts from the workers that are up, as a user would, and records every answer."""

    def __init__(self, account_ids: list[str]):
        self.account_ids = account_ids
        self.targets: list[str] = []
        self.answers: Counter = Counter()
        self.unexpected: list[str] = []
        self.longest_unavailable = 0.0  # seconds between a 503 and the next 200 on the same worker
        self.stop = threading.Event()
        self.steps: list[str] = []
        self.thread = threading.Thread(target=self.run, name="querier")

    def run(self):
        rng = random.Random(3)
        unavailable_since: dict[str, float] = {}
        with httpx.Client(timeout=30) as http:
            while not self.stop.is_set():
                for url in list(self.targets):
                    try:
                        response = http.get(f"{url}/api/accounts/{rng.choice(self.account_ids)}")
                    except httpx.HTTPError as exc:  # these workers stay up: no answer is a failure too
                        self.unexpected.append(f"no answer from {url} ({steps_so_far(self)}): {exc!r}")
                        continue
                    self.answers[response.status_code] += 1
                    if response.status_code == 503:
                        if not response.headers.get("Retry-After"):
                            self.unexpected.append(f"503 without Retry-After from {url}: {response.text}")
                        unavailable_since.setdefault(url, time.monotonic())
                    elif response.status_code == 200:
                        if url in unavailable_since:
                            gap = time.monotonic() - unavailable_since.pop(url)
                            self.longest_unavailable = max(self.longest_unavailable, gap)
                    else:
                        self.unexpected.append(f"{response.status_code} from {url} (served by "
                                               f"{response.headers.get('X-Bank-Served-By')}, {steps_so_far(self)}): "
                                               f"{response.text[:300]}")
                time.sleep(0.02)


def wait_until_visible(url: str, account_ids: list[str], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=30) as http:
        for account_id in account_ids:
            while http.get(f"{url}/api/accounts/{account_id}").status_code != 200:
                if time.monotonic() > deadline:
                    pytest.fail(f"account {account_id} not in the views {timeout:.0f} s after it was opened")
                time.sleep(0.05)


@pytest.mark.timeout(400)
def test_a_worker_joining_and_one_leaving_mid_storm_keeps_queries_answered_and_the_ledger_whole(kafka, workers):
    stayer, leaver = workers
    joiner = Worker(kafka, OWN_WORKER_PORTS[0])
    client, reader = BankClient(kafka), OutcomeReader(kafka)
    ledger = open_accounts(client, reader, "cust-rebalance", ACCOUNTS, zero_every=8)
    # A view lags its command's outcome by a hop: a plain GET right after the outcome may say 404, which
    # is the read model being eventually consistent, not the rebalance this test is about.
    wait_until_visible(stayer.url, ledger.account_ids)
    querier = Querier(ledger.account_ids)
    querier.targets.append(stayer.url)
    querier.thread.start()
    steps = querier.steps

    def rebalance():
        time.sleep(2)
        joiner.start()
        # Faust's assignor is sticky: with 4 partitions the two workers keep 2 each and the joiner
        # gets none until someone leaves. So wait for it to be up, not to own work.
        wait_until_healthy(joiner)
        wait_until_serving([stayer, leaver])
        querier.targets.append(joiner.url)
        steps.append("joined")
        leaver.stop()  # SIGTERM: a clean leave, its partitions move to the two others
        assert leaver.process.returncode is not None
        steps.append(f"left ({leaver.process.returncode})")
        wait_until_serving([stayer, joiner])

    try:
        storm, resent, storm_started = storm_through(rebalance, client, reader, ledger, TRANSFERS, seed=21,
                                                     rate=RATE)
        client.close()
        reader.close()
        report = quiesce(kafka, [stayer, joiner])
        querier.stop.set()
        querier.thread.join(60)

        print(f"\nrebalance: {TRANSFERS} transfers, steps {steps}, client resends {resent}, "
              f"answers {dict(querier.answers)}, longest 503 spell {querier.longest_unavailable:.1f}s; "
              f"{time.monotonic() - storm_started:.0f}s from the first transfer to quiescence; "
              f"{report.summary_line()}")
        assert steps == ["joined", "left (0)"]
        assert querier.unexpected == []
        assert querier.answers[200] > 0
        assert report.violations == []
        assert set(report.transfers) <= set(TERMINAL)
        # Once settled, both remaining workers answer for every account, and the balances add up.
        for worker in (stayer, joiner):
            balances = [Api(worker.url).get(f"/api/accounts/{a}").json()["balance"] for a in ledger.account_ids]
            assert sum(Decimal(b) for b in balances) == ledger.total
        done = bank_verify(kafka)
        assert done.returncode == 0, done.stdout + done.stderr
    finally:
        querier.stop.set()
        # Leave the session as it was: its two workers serving, the joiner gone.
        joiner.stop()
        if leaver.process.poll() is not None:
            leaver.start()
        wait_until_serving([stayer, leaver])
