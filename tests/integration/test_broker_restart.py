"""The broker restarts in the middle of a transfer storm: the same worker processes reconnect and finish
the work, and every invariant holds. The test runs a broker of its own, so others are not disturbed."""
from __future__ import annotations

import time

import pytest

from faults import RESTART_KAFKA_PORT, bank_verify, own_kafka, own_workers, quiesce, storm_through
from streams.dev import local_broker
from streams.client import BankClient, OutcomeReader
from streams.domain.transfers import TERMINAL
from streams.dev.traffic import open_accounts

ACCOUNTS = 40
TRANSFERS = 800
RATE = 100  # per second: the storm lasts ~8 s, the broker goes down 3 s in


@pytest.mark.timeout(300)
def test_workers_ride_out_a_broker_restart_mid_storm_and_every_invariant_holds(tmp_path):
    with own_kafka(tmp_path, brokers=1, base_port=RESTART_KAFKA_PORT) as settings, \
            own_workers(settings) as workers:
        pids = [worker.process.pid for worker in workers]
        client, reader = BankClient(settings), OutcomeReader(settings)
        ledger = open_accounts(client, reader, "cust-restart", ACCOUNTS, zero_every=8)
        restarts: list[tuple[float, float]] = []

        def restart_broker():
            time.sleep(3)  # let the storm get going
            down = time.monotonic()
            local_broker.stop(settings.home)  # SIGTERM: a clean restart, as in a rolling upgrade
            time.sleep(2)
            local_broker.start(settings.home, base_port=RESTART_KAFKA_PORT, timeout=120)
            restarts.append((down, time.monotonic()))

        storm, resent, storm_started = storm_through(restart_broker, client, reader, ledger, TRANSFERS, seed=5,
                                                     rate=RATE)
        client.close()
        reader.close()

        report = quiesce(settings, workers)
        print(f"\nbroker restart: {TRANSFERS} transfers, broker down {restarts[0][1] - restarts[0][0]:.0f}s, "
              f"client resends {resent}; {time.monotonic() - storm_started:.0f}s from the first transfer to quiescence; "
              f"{report.summary_line()}")
        assert len(restarts) == 1
        assert [worker.process.pid for worker in workers] == pids, "the same workers must carry on"
        assert all(worker.process.poll() is None for worker in workers)
        assert report.violations == []
        assert sum(report.transfers.values()) == TRANSFERS and set(report.transfers) <= set(TERMINAL)
        assert report.total_balance == ledger.total
        done = bank_verify(settings)
        assert done.returncode == 0, done.stdout + done.stderr
