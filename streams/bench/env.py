"""The benchmark's environment: the broker, a clean set of topics, worker processes, CPU accounting."""
from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path

from confluent_kafka.admin import AdminClient, NewTopic

from ..dev import local_broker
from ..kafka.admin import create_topics
from ..config import Settings

REPO = Path(__file__).resolve().parent.parent.parent
#: A topic that says "this broker's bank.* topics belong to benchmarks": without it `bank bench`
#: refuses to delete existing bank topics unless given --force.
MARKER_TOPIC = "bench.marker"
#: The view changelogs the benchmarks read; pre-created with LogAppendTime so that a record's
#: timestamp is the moment the broker appended the view update (see bench/README.md).
ACCOUNT_VIEW_TOPIC = "streambank-account_to_view-changelog"
TRANSFER_VIEW_TOPIC = "streambank-transfer_to_view-changelog"
PLAIN_VIEW_TOPIC = "bench.plain.account-views"
KSTREAMS_VIEW_TOPIC = "bench.kstreams.account-views"
#: The fair Kafka Streams peer's account view is its store's changelog, as the workers' is.
KSTREAMS_FULL_VIEW_TOPIC = "bench-kstreams-full-account_to_view-changelog"
#: The Quix Streams peer's changelogs are in Quix's framing: it also produces the Avro view here.
QUIX_VIEW_TOPIC = "bench.quix.account-views"
#: The customer views, the deposit pipeline's end (issue 14 measures deposits there): the same for each.
CUSTOMER_VIEW_TOPIC = "streambank-customer_to_view-changelog"
KSTREAMS_FULL_CUSTOMER_VIEW_TOPIC = "bench-kstreams-full-customer_to_view-changelog"
QUIX_CUSTOMER_VIEW_TOPIC = "bench.quix.customer-views"
#: Quix Streams names its internal topics `changelog__<group>--<topic>--<store>`.
BENCH_PREFIXES = ("bank.", "streambank-", "bench.", "bench-kstreams-", "changelog__bench-quix--",
                  "repartition__bench-quix--")
GROUPS = ("streambank", "bench-plain", "bench-kstreams", "bench-kstreams-full", "bench-quix")


class BenchError(RuntimeError):
    pass


def _base_port(bootstrap: str) -> int:
    first = bootstrap.split(",")[0]
    return int(first.rsplit(":", 1)[1])


def _is_local(bootstrap: str) -> bool:
    host = bootstrap.split(",")[0].rsplit(":", 1)[0]
    return host in ("127.0.0.1", "localhost")


@dataclass
class CpuSnapshot:
    at: float
    per_process: dict[str, float]


def process_cpu_seconds(pid: int) -> float:
    """user + system CPU seconds of one process, from /proc/<pid>/stat (fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds (user + system) of named processes between two snapshots."""

    def __init__(self):
        self.processes: dict[str, int] = {}
        self._last: dict[str, float] = {}

    def add(self, name: str, pid: int) -> None:
        self.processes[name] = pid

    def remove(self, name: str) -> None:
        self.processes.pop(name, None)

    def _seconds(self, name: str, pid: int) -> float:
        try:
            value = process_cpu_seconds(pid)
            self._last[name] = value
            return value
        except (OSError, ValueError, IndexError):  # gone: its last reading stands
            return self._last.get(name, 0.0)

    def snapshot(self) -> CpuSnapshot:
        return CpuSnapshot(time.monotonic(), {name: self._seconds(name, p) for name, p in self.processes.items()})

    @staticmethod
    def delta(before: CpuSnapshot, after: CpuSnapshot) -> dict[str, float]:
        return {name: round(after.per_process[name] - before.per_process.get(name, 0.0), 3)
                for name in after.per_process}


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Worker:
    """A `bank worker` process with its own BANK_HOME (fresh state) and web port."""

    def __init__(self, settings: Settings, port: int, loglevel: str = "warning"):
        self.settings = settings
        self.port = port
        self.loglevel = loglevel
        self.log = settings.home / "logs" / f"worker-{port}.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "BANK_HOME": str(self.settings.home), "BANK_PARTITIONS": str(self.settings.partitions),
               "KAFKA_BOOTSTRAP_SERVERS": self.settings.bootstrap_servers, "BANK_WEB_PORT": str(self.port)}
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "worker", "--web-port", str(self.port), "--loglevel",
                 self.loglevel], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.process.pid

    def health(self) -> dict | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as response:
                return json.loads(response.read())
        except Exception:
            return None

    def stop(self, timeout: float = 30) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log.exists() else ""


class BenchEnv:
    """One benchmark run's world: its own BANK_HOME subdirectory, a broker, clean topics, workers."""

    def __init__(self, settings: Settings, *, web_port: int | None = None, force: bool = False,
                 log=lambda message: None):
        run_id = time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"
        self.base_settings = settings
        self.settings = replace(settings, home=settings.home / "bench" / run_id)
        self.web_port = web_port or settings.web_port
        self.force = force
        self.log = log
        self.workers: list[Worker] = []
        self.broker_pids: list[int] = []
        self.started_broker = False
        self.phase = 0

    # -- broker -------------------------------------------------------------------------------
    def admin(self) -> AdminClient:
        return AdminClient(self.settings.confluent_config())

    def ensure_broker(self) -> None:
        """Uses the broker at KAFKA_BOOTSTRAP_SERVERS; starts the local one in $BANK_HOME when none answers."""
        try:
            self.admin().list_topics(timeout=5)
        except Exception:
            if not _is_local(self.settings.bootstrap_servers):
                raise BenchError(f"no broker answers at {self.settings.bootstrap_servers}")
            self.log(f"starting the local broker in {self.base_settings.home} on "
                     f"{self.settings.bootstrap_servers}")
            local_broker.start(self.base_settings.home, timeout=120,
                              base_port=_base_port(self.settings.bootstrap_servers))
            self.started_broker = True
        status = local_broker.status(self.base_settings.home)
        self.broker_pids = list(status.pids) if status.running else self._broker_pids_by_port()

    def _broker_pids_by_port(self) -> list[int]:
        """The broker's pid when it runs on this machine but was started elsewhere (CPU accounting):
        the process holding the listening socket, found through /proc."""
        port = _base_port(self.settings.bootstrap_servers)
        inodes = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                for line in open(table).readlines()[1:]:
                    parts = line.split()
                    if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(parts[9])
            except OSError:
                pass
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                for fd in os.listdir(f"/proc/{pid}/fd"):
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if link.startswith("socket:[") and link[8:-1] in inodes:
                        return [int(pid)]
            except OSError:
                continue
        return []

    # -- topics -------------------------------------------------------------------------------
    def _delete_groups(self, admin: AdminClient, timeout: float = 60.0) -> None:
        """Deletes the pipeline's consumer groups, asking again while the broker cannot answer yet.

        A broker just started on an existing data directory answers COORDINATOR_LOAD_IN_PROGRESS for a
        while. A group left behind keeps its committed offsets, and on the recreated (shorter) topics
        they point past the end: the workers would then wait there and never process the new records.
        """
        from confluent_kafka import KafkaError, KafkaException
        pending, deadline = list(GROUPS), time.monotonic() + timeout
        while pending:
            failed = []
            for group, future in admin.delete_consumer_groups(pending, request_timeout=30).items():
                try:
                    future.result()
                except KafkaException as exc:
                    if exc.args[0].code() != KafkaError.GROUP_ID_NOT_FOUND:
                        failed.append((group, exc))
            if not failed:
                return
            if time.monotonic() > deadline:
                raise BenchError(f"could not delete the consumer groups: {failed}")
            pending = [group for group, _ in failed]
            time.sleep(0.5)

    def reset_topics(self) -> None:
        """Deletes every bank.*, streambank-* and bench.* topic and the pipeline's consumer groups, then
        creates the topics again, empty: the clean, known state each workload starts from."""
        admin = self.admin()
        names = set(admin.list_topics(timeout=30).topics)
        ours = sorted(n for n in names if n.startswith(BENCH_PREFIXES) and n != MARKER_TOPIC)
        if any(n.startswith("bank.") for n in ours) and MARKER_TOPIC not in names and not self.force:
            raise BenchError(f"{self.settings.bootstrap_servers} holds bank.* topics that no benchmark created; "
                             "`bank bench` deletes them to start clean: run it on a benchmark broker or pass --force")
        if ours:
            for future in admin.delete_topics(ours, operation_timeout=30).values():
                try:
                    future.result()
                except Exception:
                    pass
        self._delete_groups(admin)
        deadline = time.monotonic() + 60
        while set(ours) & set(admin.list_topics(timeout=30).topics):
            if time.monotonic() > deadline:
                raise BenchError("topics were not deleted within 60 s")
            time.sleep(0.2)
        for attempt in range(50):
            try:
                create_topics(self.settings)
                self._create_extra(admin)
                break
            except Exception as exc:  # "marked for deletion" right after a delete: try again
                if attempt == 49:
                    raise BenchError(f"cannot create topics: {exc}")
                time.sleep(0.3)

    def _create_extra(self, admin: AdminClient) -> None:
        view = {"cleanup.policy": "compact", "message.timestamp.type": "LogAppendTime"}
        wanted = [NewTopic(MARKER_TOPIC, 1, self.settings.replication_factor)]
        wanted += [NewTopic(name, self.settings.partitions, self.settings.replication_factor, config=view)
                   for name in (ACCOUNT_VIEW_TOPIC, TRANSFER_VIEW_TOPIC, PLAIN_VIEW_TOPIC, KSTREAMS_VIEW_TOPIC,
                                 KSTREAMS_FULL_VIEW_TOPIC, QUIX_VIEW_TOPIC, CUSTOMER_VIEW_TOPIC,
                                 KSTREAMS_FULL_CUSTOMER_VIEW_TOPIC, QUIX_CUSTOMER_VIEW_TOPIC)]
        existing = set(admin.list_topics(timeout=30).topics)
        wanted = [t for t in wanted if t.topic not in existing]
        if wanted:
            for name, future in admin.create_topics(wanted, operation_timeout=30).items():
                try:
                    future.result()
                except Exception as exc:
                    if "TOPIC_ALREADY_EXISTS" not in str(exc):
                        raise

    def create_topic(self, name: str, *, log_append_time: bool = False) -> None:
        admin = self.admin()
        if name in admin.list_topics(timeout=30).topics:
            return
        config = {"message.timestamp.type": "LogAppendTime"} if log_append_time else {}
        for future in admin.create_topics([NewTopic(name, self.settings.partitions, self.settings.replication_factor,
                                                    config=config)], operation_timeout=30).values():
            future.result()

    # -- workers ------------------------------------------------------------------------------
    def start_workers(self, count: int, timeout: float = 120.0) -> list[Worker]:
        # Fresh state every time: RocksDB left from an earlier phase would not match the recreated topics.
        self.phase += 1
        phase_settings = replace(self.settings, home=self.settings.home / f"phase-{self.phase}")
        self.workers = [Worker(phase_settings, self.web_port + index) for index in range(count)]
        for worker in self.workers:
            worker.start()
        deadline = time.monotonic() + timeout
        stable_since = None
        while time.monotonic() < deadline:
            for worker in self.workers:
                if worker.process.poll() is not None:
                    self.stop_workers()
                    raise BenchError(f"worker {worker.port} exited:\n{worker.tail()}")
            healths = [worker.health() for worker in self.workers]
            if all(h and h.get("status") == "ok" and h["assigned_partitions"] > 0 for h in healths):
                stable_since = stable_since or time.monotonic()
                if time.monotonic() - stable_since >= 1.5:
                    return self.workers
            else:
                stable_since = None
            time.sleep(0.25)
        tails = "\n".join(w.tail() for w in self.workers)
        self.stop_workers()
        raise BenchError(f"workers did not settle within {timeout} s:\n{tails}")

    def stop_workers(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.workers = []

    def cpu_meter(self, **extra_pids: int) -> CpuMeter:
        meter = CpuMeter()
        meter.add("bench", os.getpid())
        for index, pid in enumerate(self.broker_pids):
            meter.add("broker" if index == 0 else f"broker-{index + 1}", pid)
        for index, worker in enumerate(self.workers):
            meter.add(f"worker-{index + 1}", worker.pid)
        for name, pid in extra_pids.items():
            meter.add(name, pid)
        return meter

    def close(self) -> None:
        self.stop_workers()
        if self.started_broker:
            local_broker.stop(self.base_settings.home)
            self.started_broker = False
