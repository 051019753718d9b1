"""Helpers for the fault tests: a broker or cluster of their own, workers on it, and waiting for quiet."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import KAFKA_PORT, WEB_PORT, Worker, wait_until_serving
from http_api import REPO
from streams import kafka_local, verify
from streams.admin import create_topics
from streams.config import Settings
from streams.workload import resend_unanswered, transfer_storm

# Ports of their own, so the session broker and its workers are not disturbed: derived from the
# session's so that parallel test sessions given distinct base ports stay apart. With the default 9092:
# 9102 (controller 19102) and 9292-9294 (controllers 19292-19294), clear of test_kafka_local's 19192
# and the bench smoke test's 19892.
RESTART_KAFKA_PORT = int(os.environ.get("BANK_TEST_KAFKA_RESTART_PORT", str(KAFKA_PORT + 10)))
CLUSTER_KAFKA_PORT = int(os.environ.get("BANK_TEST_KAFKA_CLUSTER_PORT", str(KAFKA_PORT + 200)))
OWN_WORKER_PORTS = (WEB_PORT + 2, WEB_PORT + 3)  # the session's workers use WEB_PORT and WEB_PORT + 1


@contextlib.contextmanager
def own_kafka(home: Path, *, brokers: int, base_port: int) -> Iterator[Settings]:
    """A broker (or a 3-broker cluster) in `home` with every topic created; stopped afterwards."""
    replication = 3 if brokers == 3 else 1
    bootstrap = ",".join(f"127.0.0.1:{kafka_local.broker_port(base_port, i)}" for i in range(1, brokers + 1))
    settings = Settings(home=home, partitions=4, replication_factor=replication, bootstrap_servers=bootstrap)
    try:
        kafka_local.start(home, brokers=brokers, timeout=120, base_port=base_port)
        create_topics(settings)
    except (kafka_local.KafkaLocalError, RuntimeError) as exc:
        kafka_local.stop(home)
        pytest.fail(f"could not start a {brokers}-broker kafka on port {base_port}: {exc}", pytrace=False)
    try:
        yield settings
    finally:
        kafka_local.stop(home)


@contextlib.contextmanager
def own_workers(settings: Settings, ports=OWN_WORKER_PORTS) -> Iterator[list[Worker]]:
    started = [Worker(settings, port) for port in ports]
    try:
        for worker in started:
            worker.start()
        wait_until_serving(started)
        yield started
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    finally:
        for worker in started:
            worker.stop()


def quiesce(settings: Settings, workers: list[Worker], timeout: float = 180.0) -> verify.Report:
    """Reads and checks the log until every invariant holds (work in flight shows as violations) or time
    runs out. A worker that exits fails the test: nothing here restarts one behind the test's back."""
    deadline = time.monotonic() + timeout
    while True:
        for worker in workers:
            if worker.process and worker.process.poll() is not None:
                pytest.fail(f"worker {worker.port} exited ({worker.process.returncode}):\n{worker.tail()}",
                            pytrace=False)
        report = verify.run(settings, views=True, timeout=60)
        if report.ok or time.monotonic() > deadline:
            return report
        print(f"not yet: {len(report.violations)} violations, e.g. {report.violations[:3]}", flush=True)
        time.sleep(2)


def bank_verify(settings: Settings) -> subprocess.CompletedProcess:
    """`bank verify` as an operator runs it."""
    env = {**os.environ, "BANK_HOME": str(settings.home), "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers}
    return subprocess.run([sys.executable, "-m", "streams.cli", "verify"], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=300)


def storm_through(fault, client, reader, ledger, transfers: int, *, seed: int, rate: float):
    """Sends a transfer storm while `fault` runs in a thread; fails the test if the fault itself failed;
    then resends what got no outcome. Returns (the storm, client resends, when the storm started)."""
    failures: list[BaseException] = []

    def run_fault():
        try:
            fault()
        except BaseException as exc:  # surfaced in the test's thread below
            failures.append(exc)

    thread = threading.Thread(target=run_fault, name=getattr(fault, "__name__", "fault"))
    thread.start()
    started = time.monotonic()
    storm = transfer_storm(client, ledger, transfers, seed=seed, rate=rate)
    thread.join()
    assert not failures, failures
    resent = resend_unanswered(client, reader, storm, patience=60)
    return storm, resent, started
