"""Helpers for the fault tests: a broker or cluster of their own, workers on it, and waiting for quiet."""
from __future__ import annotations

import contextlib
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from conftest import KAFKA_PORT, WEB_PORT, Worker, wait_until_serving
from http_api import REPO
from streams.dev import local_broker
from streams.ops import status, verify
from streams.contract import topics
from streams.kafka.admin import create_topics
from streams.client import BankClient
from streams.config import Settings
from streams.domain.accounts import Deposit
from streams.domain.transfers import TransferMoney
from streams.contract.jsonio import new_id
from streams.dev.traffic import Ledger, resend_unanswered, transfer_storm

# Ports of their own, so the session broker and its workers are not disturbed: derived from the
# session's so that parallel test sessions given distinct base ports stay apart. With the default 9092:
# 9102 (controller 19102) and 9292-9294 (controllers 19292-19294), clear of test_kafka_local's 19192
# and the bench smoke test's 19892.
RESTART_KAFKA_PORT = int(os.environ.get("BANK_TEST_KAFKA_RESTART_PORT", str(KAFKA_PORT + 10)))
CLUSTER_KAFKA_PORT = int(os.environ.get("BANK_TEST_KAFKA_CLUSTER_PORT", str(KAFKA_PORT + 200)))
OWN_WORKER_PORTS = (WEB_PORT + 2, WEB_PORT + 3)  # the session's workers use WEB_PORT and WEB_PORT + 1
# The `faults` tests (zombie, churn, crash loop): one broker each, in turn, on +20 (controller +10020),
# and a third worker for the churn on WEB_PORT + 4.
FAULTS_KAFKA_PORT = int(os.environ.get("BANK_TEST_KAFKA_FAULTS_PORT", str(KAFKA_PORT + 20)))
EXTRA_WORKER_PORT = WEB_PORT + 4


@contextlib.contextmanager
def own_kafka(home: Path, *, brokers: int, base_port: int) -> Iterator[Settings]:
    """A broker (or a 3-broker cluster) in `home` with every topic created; stopped afterwards."""
    replication = 3 if brokers == 3 else 1
    bootstrap = ",".join(f"127.0.0.1:{local_broker.broker_port(base_port, i)}" for i in range(1, brokers + 1))
    settings = Settings(home=home, partitions=4, replication_factor=replication, bootstrap_servers=bootstrap)
    try:
        local_broker.start(home, brokers=brokers, timeout=120, base_port=base_port)
        create_topics(settings)
    except (local_broker.KafkaLocalError, RuntimeError) as exc:
        local_broker.stop(home)
        pytest.fail(f"could not start a {brokers}-broker kafka on port {base_port}: {exc}", pytrace=False)
    try:
        yield settings
    finally:
        local_broker.stop(home)


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


#: How long a fault test waits, once its commands have outcomes, for every invariant to hold. Not a few
#: seconds: a partition a SIGKILLed worker held stays unprocessed until its session times out (10 s) and
#: the group rebalances and restores, and meanwhile no topic grows, which `settle` cannot tell from done
#: (a churn run in CI read the log then, and found the views a step ahead of it by the time it read them).
QUIESCE_S = 90.0


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


#: How long a storm's sends may wait for delivery while a fault runs.
FAULT_DELIVERY_S = 180.0


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
    # Delivery may wait for the fault to end: a broker restart is allowed 120 s (it took 33 s beside a soak).
    storm = transfer_storm(client, ledger, transfers, seed=seed, rate=rate, flush_timeout=FAULT_DELIVERY_S)
    thread.join()
    assert not failures, failures
    resent = resend_unanswered(client, reader, storm, patience=60)
    return storm, resent, started


def during(fault, work):
    """Runs `work()` here while `fault()` runs in a thread; returns what `work` returned once both are
    done. A fault that failed fails the test (after `work` is done, so nothing is left half-sent)."""
    failures: list[BaseException] = []

    def run_fault():
        try:
            fault()
        except BaseException as exc:  # surfaced in the test's thread below
            failures.append(exc)

    thread = threading.Thread(target=run_fault, name=getattr(fault, "__name__", "fault"))
    thread.start()
    try:
        result = work()
    finally:
        thread.join()
    assert not failures, failures
    return result


@dataclass
class MoneyStorm:
    deposits: list[Deposit] = field(default_factory=list)
    transfers: list[TransferMoney] = field(default_factory=list)

    @property
    def command_ids(self) -> list[str]:
        return [c.command_id for c in self.deposits + self.transfers]


def money_storm(client: BankClient, ledger: Ledger, *, deposits: int, transfers: int, rate: float,
                seed: int) -> MoneyStorm:
    """Deposits (0.01 to 50.00) and transfers (0.01 to 200.00, so some overdraw and fail) between the
    ledger's accounts, shuffled, at most `rate` commands a second, each with a command id of its own
    and sent once (no resends: a command on the log must get its outcome without help)."""
    rng = random.Random(seed)
    kinds = ["deposit"] * deposits + ["transfer"] * transfers
    rng.shuffle(kinds)
    storm = MoneyStorm()
    started = time.monotonic()
    for index, kind in enumerate(kinds):
        if kind == "deposit":
            command = Deposit(command_id=new_id(), account_id=rng.choice(ledger.account_ids),
                              amount=Decimal(rng.randint(1, 5_000)).scaleb(-2))
            storm.deposits.append(command)
        else:
            source, target = rng.sample(ledger.account_ids, 2)
            command = TransferMoney(command_id=new_id(), transfer_id=f"tr-{new_id()}", from_account_id=source,
                                    to_account_id=target, amount=Decimal(rng.randint(1, 20_000)).scaleb(-2),
                                    description=f"storm {index}")
            storm.transfers.append(command)
            ledger.transfers.append(command.transfer_id)
        client.send(command)
        ahead = (index + 1) / rate - (time.monotonic() - started)
        if ahead > 0:
            client.producer.poll(0)
            time.sleep(ahead)
    client.flush()
    return storm


def health_of(worker: Worker) -> dict | None:
    """GET /health's body whatever its status (a 503 says starting, rebalancing or stalled), or None."""
    try:
        return httpx.get(f"{worker.url}/health", timeout=2).json()
    except (httpx.HTTPError, ValueError):
        return None


def _exited(workers: list[Worker]) -> None:
    for worker in workers:
        if worker.process and worker.process.poll() is not None:
            pytest.fail(f"worker {worker.port} exited ({worker.process.returncode}):\n{worker.tail()}",
                        pytrace=False)


def settle(settings: Settings, workers: list[Worker], tail, command_ids, *, timeout: float,
           quiet: float = 3.0) -> tuple[float, bool]:
    """Waits, never longer than `timeout`, until every command in `command_ids` has an outcome (`tail`
    is an outside.OutcomeTail), every worker answers /health with 200, and no topic has grown for `quiet`
    seconds. Returns (seconds it took, whether it got there). What is not done by then shows up in the
    checks that follow; a worker that exited fails the test."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    from outside import end_offsets

    started = time.monotonic()
    deadline = started + timeout
    missing = set(command_ids)
    while missing and time.monotonic() < deadline:
        missing = tail.wait(missing, timeout=min(5.0, max(0.0, deadline - time.monotonic())))
        _exited(workers)
    admin = AdminClient(settings.confluent_config())
    last, still_since = None, None
    while time.monotonic() < deadline:
        _exited(workers)
        try:
            offsets = end_offsets(admin)
        except KafkaException:
            offsets = None
        healthy = all(worker.health() is not None for worker in workers)
        if offsets is not None and offsets == last and healthy:
            still_since = still_since or time.monotonic()
            if time.monotonic() - still_since >= quiet:
                return time.monotonic() - started, not missing
        else:
            still_since = None
        last = offsets
        time.sleep(0.5)
    return time.monotonic() - started, False


def wipe_local_state(workers: list[Worker]) -> list[Path]:
    """Removes each (stopped) worker's state directory under settings.home/"workers"."""
    wiped = []
    for worker in workers:
        assert worker.process is None or worker.process.poll() is not None, f"worker {worker.port} is running"
        directory = worker.settings.with_web_port(worker.port).worker_dir
        assert directory.is_dir(), f"worker {worker.port} has no state at {directory}: did the layout change?"
        shutil.rmtree(directory)
        wiped.append(directory)
    return wiped


def restart_from_kafka_alone(workers: list[Worker], timeout: float = 150.0) -> float:
    """Stops every worker (SIGTERM), wipes their local state and starts them again, so that all they
    know comes from Kafka; returns the seconds until they serve again."""
    for worker in workers:
        worker.stop()
    wipe_local_state(workers)
    started = time.monotonic()
    for worker in workers:
        worker.start()
    wait_until_serving(workers, timeout)
    return time.monotonic() - started


def group_settled(settings: Settings, workers: list[Worker]) -> str | None:
    """None when the consumer group is these workers alone, Stable, each healthy and done rebalancing
    and recovering, and every partition of every topic they consume is assigned; else what is not so."""
    for worker in workers:
        health = health_of(worker)
        if not health or health.get("status") != "ok" or health.get("rebalancing") or health.get("recovering") \
                or not health.get("assigned_partitions"):
            return f"worker {worker.port}: {health}"
    try:
        now = status.collect(settings, timeout=5)
    except status.StatusUnavailable as exc:
        return str(exc)
    group = now["group"]
    members = sorted(m["worker"] or m["client_id"] for m in group["members"])
    if group["state"].upper() != "STABLE" or members != sorted(w.url for w in workers):
        return f"group {group['state']} with members {members}"
    held: dict[str, set[int]] = {}
    for member in group["members"]:
        for topic, partitions in member["assignment"].items():
            held.setdefault(topic, set()).update(partitions)
    for spec in topics.COMMAND_TOPICS + (topics.CUSTOMER_REPLIES, topics.TRANSFER_REPLIES):
        if held.get(spec.name, set()) != set(range(settings.partitions)):
            return f"{spec.name}: partitions {sorted(held.get(spec.name, ()))} assigned"
    return None


def assignment_of(settings: Settings, worker: Worker) -> dict[str, set[int]]:
    """The partitions the consumer group has given `worker`, per topic (from `bank status`'s collect)."""
    now = status.collect(settings, timeout=10)
    for member in now["group"]["members"]:
        if member["worker"] == worker.url:
            return {topic: set(partitions) for topic, partitions in member["assignment"].items()}
    return {}
