"""`bank bench soak`: a steady load for N minutes, watching every process's memory and the consumer lag.

The load is half the pipeline's maximum rate (a short burst measures it first) unless `--rate` says
otherwise: an even mix of deposits and transfers between the soak's accounts, the probe included. A sampler thread reads
each process's resident set size (VmRSS in /proc/<pid>/status) and the `streambank` group's lag (high
watermark minus committed offset, summed over the partitions it reads) every `--interval` seconds.

The figure that matters is the RSS slope per process: a least-squares line through the samples taken after
a warm-up (the first fifth of the run, at most a minute: caches, RocksDB memtables and JIT fill up then),
in MB per minute. A leak shows as a slope that stays positive however long the soak runs.
"""
from __future__ import annotations

import random
import threading
import time
import urllib.request
from decimal import Decimal

from confluent_kafka import Consumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from ..contract import topics
from ..client import BankClient, OutcomeReader
from ..domain.accounts import Deposit
from ..domain.transfers import TransferMoney
from ..contract.jsonio import new_id
from ..dev.traffic import open_accounts
from .env import BenchEnv

MB = 1024 * 1024
#: Commands of the soak's mix sent at once to measure the maximum rate when no --rate is given.
MAX_PROBE_COMMANDS = 1000
#: Lag (records) below which the group counts as caught up: offsets are committed every 0.5 s.
CAUGHT_UP_LAG = 50


def rss_bytes(pid: int) -> int | None:
    """Resident set size of `pid` (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def slope_per_minute(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, value) points, per minute; None for fewer than two distinct times."""
    if len(points) < 2:
        return None
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    if spread == 0:
        return None
    return sum((t - mean_t) * (v - mean_v) for t, v in points) / spread * 60


class LagMeter:
    """The `streambank` group's lag: for each partition it has committed, high watermark minus commit."""

    def __init__(self, settings, group: str = topics.APP_ID):
        self.consumer = Consumer(settings.consumer_config(**{
            "group.id": group, "enable.auto.commit": False, "log_level": 0}))
        metadata = self.consumer.list_topics(timeout=30)
        wanted = {spec.name for spec in topics.ALL_TOPICS} - {topics.DEADLETTER.name}
        self.partitions = [TopicPartition(name, p) for name in sorted(wanted) if name in metadata.topics
                           for p in metadata.topics[name].partitions]

    def lag(self) -> int | None:
        try:
            committed = self.consumer.committed(self.partitions, timeout=10)
            total = 0
            for tp in committed:
                if tp.offset < 0:  # nothing committed: the group does not read it (or has not yet)
                    continue
                _, high = self.consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=10)
                total += max(high - tp.offset, 0)
            return total
        except Exception:  # the broker is busy: a missing sample, not a failed soak
            return None

    def close(self) -> None:
        self.consumer.close()


def rocksdb_bytes(port: int) -> int | None:
    """What a worker's shared RocksDB block cache and memtables hold (`bank_rocksdb_memory_bytes`), from its
    /metrics; None when it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except (OSError, ValueError):
        return None
    kinds = {sample.labels["kind"]: sample.value for family in text_string_to_metric_families(text)
             if family.name == "bank_rocksdb_memory_bytes" for sample in family.samples}
    # The pinned part of the cache is inside the cache's usage: not counted twice.
    return int(sum(v for kind, v in kinds.items() if kind != "block_cache_pinned")) if kinds else None


class Sampler(threading.Thread):
    def __init__(self, processes: dict[str, int], lag_meter: LagMeter, interval: float, started: float,
                 worker_ports: dict[str, int] | None = None):
        super().__init__(name="soak-sampler", daemon=True)
        self.processes, self.lag_meter, self.interval, self.started = processes, lag_meter, interval, started
        self.worker_ports = worker_ports or {}
        self.samples: list[dict] = []
        self.stopping = threading.Event()

    def sample(self) -> None:
        rss = {name: rss_bytes(pid) for name, pid in self.processes.items()}
        rocksdb = {name: rocksdb_bytes(port) for name, port in self.worker_ports.items()}
        self.samples.append({"t": round(time.monotonic() - self.started, 2),
                             "rss_mb": {name: round(b / MB, 1) for name, b in rss.items() if b is not None},
                             "rocksdb_mb": {name: round(b / MB, 1) for name, b in rocksdb.items() if b is not None},
                             "lag": self.lag_meter.lag()})

    def run(self) -> None:
        while not self.stopping.wait(self.interval):
            self.sample()

    def stop(self) -> None:
        self.stopping.set()
        self.join(self.interval + 30)
        self.sample()  # the last figure, at the end of the load


def next_command(rng: random.Random, accounts: list[str]):
    """The soak's mix: half deposits, half transfers between two random accounts (0.01..50.00)."""
    source, target = rng.sample(accounts, 2)
    amount = Decimal(rng.randint(1, 5000)).scaleb(-2)
    if rng.random() < 0.5:
        return Deposit(command_id=new_id(), account_id=source, amount=amount)
    return TransferMoney(command_id=new_id(), transfer_id=f"tr-{new_id()}", from_account_id=source,
                         to_account_id=target, amount=amount)


def measure_max_rate(client: BankClient, reader: OutcomeReader, lag_meter: LagMeter, accounts: list[str],
                     timeout: float) -> float:
    """Commands per second of the soak's own mix, sent all at once: from the first send until every command
    has its outcome and the group has caught up (a transfer's saga goes on after its outcome)."""
    rng = random.Random(5)
    commands = [next_command(rng, accounts) for _ in range(MAX_PROBE_COMMANDS)]
    started = time.monotonic()
    for command in commands:
        client.send(command)
    client.flush()
    outcomes = reader.wait([c.command_id for c in commands], timeout)
    if len(outcomes) < len(commands):
        raise TimeoutError(f"the rate probe got {len(outcomes)} of {len(commands)} outcomes within {timeout} s")
    deadline = time.monotonic() + timeout
    caught_up_at = time.monotonic()
    recent: list[int] = []
    # Caught up: the lag is small, or has stopped moving (what is left is offsets not yet committed
    # on quiet partitions, not work); then the probe ended when the lag was last seen falling.
    while True:
        lag = lag_meter.lag()
        if lag is not None:
            if not recent or lag < recent[-1]:
                caught_up_at = time.monotonic()
            recent.append(lag)
            if lag <= CAUGHT_UP_LAG or (len(recent) >= 6 and len(set(recent[-6:])) == 1):
                break
        if time.monotonic() > deadline:
            raise TimeoutError(f"the pipeline did not catch up with the rate probe within {timeout} s (lag {lag})")
        time.sleep(0.25)
    return len(commands) / (caught_up_at - started)


def soak(env: BenchEnv, *, minutes: float, rate: float | None, workers: int, accounts: int, interval: float | None,
         timeout: float, log=print) -> dict:
    env.reset_topics()
    env.start_workers(workers)
    client, reader = BankClient(env.settings), OutcomeReader(env.settings)
    lag_meter = None
    try:
        ledger = open_accounts(client, reader, f"cust-soak-{new_id()}", accounts, timeout=timeout)
        lag_meter = LagMeter(env.settings)
        probe = None
        if rate is None:
            probe = measure_max_rate(client, reader, lag_meter, ledger.account_ids, timeout)
            rate = probe / 2
            log(f"measured max {probe:.0f} commands/s; soaking at half: {rate:.0f}/s")
        duration = minutes * 60
        interval = interval or max(1.0, min(10.0, duration / 30))  # about 30 samples, at most every 10 s
        processes = {f"worker-{i + 1}": w.pid for i, w in enumerate(env.workers)}
        processes.update({("broker" if i == 0 else f"broker-{i + 1}"): pid for i, pid in enumerate(env.broker_pids)})
        started = time.monotonic()
        sampler = Sampler(processes, lag_meter, interval, started,
                          worker_ports={f"worker-{i + 1}": w.port for i, w in enumerate(env.workers)})
        sampler.sample()
        sampler.start()
        log(f"soaking {minutes} min at {rate:.0f} commands/s, sampling every {interval:.0f} s")

        rng = random.Random(17)
        sent: list[str] = []
        deposits = transfers = 0
        while (elapsed := time.monotonic() - started) < duration:
            ahead = len(sent) / rate - elapsed
            if ahead > 0:
                client.producer.poll(0)
                time.sleep(min(ahead, 0.05))
                continue
            command = next_command(rng, ledger.account_ids)
            if isinstance(command, Deposit):
                deposits += 1
            else:
                transfers += 1
            client.send(command)
            sent.append(command.command_id)
        client.flush()
        load_seconds = time.monotonic() - started
        outcomes = reader.wait(sent, timeout)
        sampler.stop()
    finally:
        client.close()
        reader.close()
        if lag_meter is not None:
            lag_meter.close()
    return report(sampler.samples, processes, minutes=minutes, rate=rate, probe=probe, interval=interval,
                  deposits=deposits, transfers=transfers, outcomes=len(outcomes), load_seconds=load_seconds)


def _rounded_slope(points: list[tuple[float, float]], digits: int) -> float | None:
    slope = slope_per_minute(points)
    return None if slope is None else round(slope, digits)


def report(samples: list[dict], processes: dict[str, int], *, minutes, rate, probe, interval, deposits, transfers,
           outcomes, load_seconds) -> dict:
    warmup = min(60.0, samples[-1]["t"] / 5) if samples else 0.0
    steady = [s for s in samples if s["t"] >= warmup]
    # Caches and memtables fill for minutes before a bounded process levels off: the last half's slope
    # is the one a leak keeps and a filling cache does not.
    half = samples[-1]["t"] / 2 if samples else 0.0
    rss = {}
    for name in processes:
        series = [(s["t"], s["rss_mb"][name]) for s in samples if name in s["rss_mb"]]
        steady_series = [(t, v) for t, v in series if t >= warmup]
        rss[name] = {"first_mb": series[0][1] if series else None, "last_mb": series[-1][1] if series else None,
                     "max_mb": max(v for _, v in series) if series else None,
                     "slope_mb_per_min": _rounded_slope(steady_series, 3),
                     "slope_mb_per_min_last_half": _rounded_slope([(t, v) for t, v in series if t >= half], 3)}
        held = [(s["t"], s["rocksdb_mb"][name]) for s in samples if name in s.get("rocksdb_mb", {})]
        if held:  # a worker: how much of its RSS is RocksDB's bounded cache and memtables
            rss[name]["rocksdb_first_mb"], rss[name]["rocksdb_last_mb"] = held[0][1], held[-1][1]
            rss[name]["rocksdb_max_mb"] = max(v for _, v in held)
    lags = [s["lag"] for s in samples if s["lag"] is not None]
    steady_lags = [s["lag"] for s in steady if s["lag"] is not None]
    commands = deposits + transfers
    return {
        "minutes": minutes, "rate": round(rate, 1), "rate_source": "--rate" if probe is None else "half the measured max",
        "measured_max_rate": None if probe is None else round(probe, 1),
        "interval_s": interval, "warmup_s": round(warmup, 1), "load_seconds": round(load_seconds, 1),
        "commands": commands, "deposits": deposits, "transfers": transfers, "outcomes": outcomes,
        "achieved_rate": round(commands / load_seconds, 1) if load_seconds else None,
        "processes": processes, "rss": rss,
        "lag": {"max": max(lags) if lags else None, "last": lags[-1] if lags else None,
                "mean_after_warmup": round(sum(steady_lags) / len(steady_lags), 1) if steady_lags else None,
                "slope_per_min_after_warmup": _rounded_slope(
                    [(x["t"], x["lag"]) for x in steady if x["lag"] is not None], 1),
                "slope_per_min_last_half": _rounded_slope(
                    [(x["t"], x["lag"]) for x in samples if x["t"] >= half and x["lag"] is not None], 1)},
        "samples": samples,
    }


def text_report(result: dict) -> str:
    lines = [f"soak: {result['minutes']} min at {result['rate']} commands/s ({result['rate_source']}), "
             f"{result['commands']} commands ({result['deposits']} deposits, {result['transfers']} transfers), "
             f"{result['outcomes']} outcomes, {len(result['samples'])} samples every {result['interval_s']} s",
             f"{'process':<10} {'first MB':>9} {'last MB':>9} {'max MB':>9} {'slope MB/min':>13} {'last half':>10}  (slope after {result['warmup_s']} s warm-up; over the last half)"]
    for name, r in result["rss"].items():
        slope = "-" if r["slope_mb_per_min"] is None else f"{r['slope_mb_per_min']:+.3f}"
        late = "-" if r.get("slope_mb_per_min_last_half") is None else f"{r['slope_mb_per_min_last_half']:+.3f}"
        lines.append(f"{name:<10} {r['first_mb']!s:>9} {r['last_mb']!s:>9} {r['max_mb']!s:>9} {slope:>13} {late:>10}")
        if "rocksdb_last_mb" in r:
            lines.append(f"{'  rocksdb':<10} {r['rocksdb_first_mb']!s:>9} {r['rocksdb_last_mb']!s:>9} "
                         f"{r['rocksdb_max_mb']!s:>9}  (its shared block cache and memtables, inside the RSS)")
    lag = result["lag"]
    lines.append(f"consumer lag (records): max {lag['max']}, mean after warm-up {lag['mean_after_warmup']}, "
                 f"last {lag['last']}, slope {lag['slope_per_min_after_warmup']}/min "
                 f"({lag.get('slope_per_min_last_half')}/min over the last half)")
    return "\n".join(lines)
