"""Integration fixtures: one real Kafka broker and two real workers for the whole session."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from streams.dev import local_broker, local_registry
from streams.kafka.admin import create_topics
from streams.config import Settings

from http_api import REPO, Api

#: `make test` runs two pytest-xdist workers (gw0, gw1), each with its own brokers, registry and
#: workers: every port here and in the modules that start their own is shifted by 1000 per worker.
PORT_SHIFT = 1000 * int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
# Overridable so that several test sessions (or a developer's demo) can share the machine.
KAFKA_PORT = int(os.environ.get("BANK_TEST_KAFKA_PORT", "9092")) + PORT_SHIFT
WEB_PORT = int(os.environ.get("BANK_TEST_WEB_PORT", "16066")) + PORT_SHIFT
WORKER_PORTS = (WEB_PORT, WEB_PORT + 1)
# Not 8081: a developer's own registry may be there.
REGISTRY_PORT = int(os.environ.get("BANK_TEST_REGISTRY_PORT", "18081")) + PORT_SHIFT


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def bank_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("bank-home")
    # The jars are cached in the repo's .bank, shared with `make demo`, so CI fetches them once.
    os.environ.setdefault("BANK_KAFKA_LIBS", str(REPO / ".bank" / "kafka" / "libs"))
    return home


@pytest.fixture(scope="session")
def settings(bank_home) -> Settings:
    return Settings(home=bank_home, partitions=4, bootstrap_servers=f"127.0.0.1:{KAFKA_PORT}")


@pytest.fixture(scope="session")
def kafka(settings):
    """A real Kafka broker on 127.0.0.1:9092, started for this session and stopped after it."""
    if local_broker.status(settings.home).running:  # pragma: no cover - a fresh tmp home never has one
        raise RuntimeError("unexpected broker in a fresh home")
    try:
        local_broker.start(settings.home, timeout=120, base_port=KAFKA_PORT)
    except local_broker.KafkaLocalError as exc:
        pytest.fail(f"could not start the test broker: {exc}", pytrace=False)
    create_topics(settings)
    yield settings
    if not os.environ.get("BANK_TEST_KEEP"):  # BANK_TEST_KEEP=1 leaves broker and workers up to look at
        local_broker.stop(settings.home)


@pytest.fixture(scope="session")
def registry(bank_home):
    """A real Schema Registry (Apicurio, built once and cached in the repo's .bank like the Kafka jars).

    Its URL goes into the environment of everything the session starts (workers, `bank` commands) and of
    the tests' own codecs: every reader then decodes Confluent-framed records as well as single-object ones.
    """
    os.environ.setdefault(local_registry.APP_ENV, str(REPO / ".bank" / "registry" / "app"))
    try:
        found = local_registry.start(bank_home, port=REGISTRY_PORT, timeout=120)
    except local_registry.RegistryLocalError as exc:
        pytest.fail(f"could not start the test schema registry: {exc}", pytrace=False)
    os.environ["BANK_SCHEMA_REGISTRY_URL"] = found.url
    yield found
    if not os.environ.get("BANK_TEST_KEEP"):
        local_registry.stop(bank_home)
        os.environ.pop("BANK_SCHEMA_REGISTRY_URL", None)


class Worker:
    def __init__(self, settings: Settings, port: int, env: dict | None = None):
        self.port = port
        self.env = env or {}  # extra environment for this worker only (test hooks)
        self.url = f"http://127.0.0.1:{port}"
        self.log = settings.home / "logs" / f"worker-{port}.log"
        self.settings = settings
        self.process: subprocess.Popen | None = None

    def start(self):
        with socket.socket() as probe:  # a worker left over from another run would answer in our place
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", self.port))
            except OSError:
                raise RuntimeError(f"port {self.port} is taken: is another worker or test session running?")
        self.log.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "BANK_HOME": str(self.settings.home), "BANK_PARTITIONS": str(self.settings.partitions),
               "KAFKA_BOOTSTRAP_SERVERS": self.settings.bootstrap_servers,
               "BANK_REPLICATION_FACTOR": str(self.settings.replication_factor), **self.env}
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "worker", "--web-port", str(self.port), "--loglevel", "info"],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO, start_new_session=True)

    def stop(self, timeout: float = 30):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def pause(self):
        """SIGSTOP: frozen, as a VM stall or a blocked loop would leave it; `resume` undoes it."""
        os.killpg(self.process.pid, signal.SIGSTOP)

    def resume(self):
        os.killpg(self.process.pid, signal.SIGCONT)

    def kill(self):
        """kill -9: no shutdown, no flush, no commit."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def health(self) -> dict | None:
        try:
            response = httpx.get(f"{self.url}/health", timeout=2)
            return response.json() if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log.exists() else ""


def wait_until_serving(workers: list[Worker], timeout: float = 120.0) -> None:
    """Every worker healthy, all partitions shared out, and stable for two seconds."""
    deadline = time.monotonic() + timeout
    stable_since = None
    while time.monotonic() < deadline:
        for worker in workers:
            if worker.process and worker.process.poll() is not None:
                raise RuntimeError(f"worker {worker.port} exited:\n{worker.tail()}")
        healths = [worker.health() for worker in workers]
        if all(h and h["assigned_partitions"] > 0 for h in healths):
            stable_since = stable_since or time.monotonic()
            if time.monotonic() - stable_since >= 2:
                return
        else:
            stable_since = None
        time.sleep(0.5)
    raise RuntimeError("workers did not settle:\n" + "\n".join(w.tail() for w in workers))


@pytest.fixture(scope="session")
def workers(kafka, registry):
    """Two workers side by side, each with its own state directory and web port."""
    started = [Worker(kafka, port) for port in WORKER_PORTS]
    try:
        for worker in started:
            worker.start()
        wait_until_serving(started)
    except RuntimeError as exc:
        for worker in started:
            worker.stop()
        pytest.fail(str(exc), pytrace=False)
    yield started
    if not os.environ.get("BANK_TEST_KEEP"):
        for worker in started:
            worker.stop()


@pytest.fixture(scope="session")
def api(workers):
    return Api(workers[0].url)
