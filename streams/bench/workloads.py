"""The workloads: deposits, transfers, latency (fixed rates) and replay, each with its baselines.

Every workload starts from clean topics and fresh worker state, does a fixed amount of work, and
measures effects by reading Kafka (the view changelogs, outcomes and events) with confluent-kafka.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass
from decimal import Decimal

from confluent_kafka import Producer

from ..cli import progress
from ..contract import topics
from ..contract.avro import Codec
from ..client import BankClient
from ..kafka.producer import produce_when_room, producer_config
from ..kafka.reader import work_left
from ..domain import accounts
from ..contract.jsonio import new_id
from . import baselines
from .env import (ACCOUNT_VIEW_TOPIC, CUSTOMER_VIEW_TOPIC, KSTREAMS_FULL_CUSTOMER_VIEW_TOPIC, KSTREAMS_FULL_VIEW_TOPIC,
                  QUIX_CUSTOMER_VIEW_TOPIC, KSTREAMS_VIEW_TOPIC, PLAIN_VIEW_TOPIC, QUIX_VIEW_TOPIC,
                  TRANSFER_VIEW_TOPIC, BenchEnv)
from .measure import EffectReader, latency_summary

ONE = Decimal("1.00")
PROGRESS_EVERY = 250  # commands between bar updates: drawing must not slow the measured send loop
#: Accounts per customer. The customer view holds a summary of each of its accounts and is re-encoded
#: on every balance change, so one customer owning every account would make each command cost
#: O(accounts) (3 ms per command at 300 accounts): the workloads give each customer 4 accounts.
ACCOUNTS_PER_CUSTOMER = 4


def customer_of(index: int, run: str) -> str:
    return f"cust-{run}-{index // ACCOUNTS_PER_CUSTOMER}"


@dataclass
class Options:
    count: int = 20_000
    accounts: int = 1_000
    workers: int = 1
    baselines: bool = True
    baseline_count: int | None = None      # records for the Kafka tools and the bare loop (default: max(count, 20000))
    fractions: tuple[float, ...] = (0.25, 0.5, 0.75)   # latency: rates as fractions of the measured maximum
    rates: tuple[float, ...] = ()          # latency: explicit rates instead of fractions
    timeout: float = 300.0
    kstreams: bool = True                  # deposits/latency: the simple Kafka Streams peer (DepositPeer)
    kstreams_full: bool = True             # deposits/latency: the Kafka Streams peer with streambank's topology
    quix: bool = True                      # deposits/latency: the Quix Streams peer (its own venv)
    recover: bool = False                  # memory: fill the worker's tables by recovery, not on its disk
    users: int = 16                        # http: concurrent users in the closed loop
    seconds: float | None = None           # http: run this long instead of `count` deposits


def _cpu_figures(cpu: dict[str, float], commands: int) -> dict:
    per = {name: round(seconds / commands * 1000, 4) for name, seconds in cpu.items()} if commands else {}
    total = sum(cpu.values())
    return {"cpu_s": cpu, "cpu_ms_per_command": per, "cpu_s_total": round(total, 3),
            "cpu_ms_per_command_total": round(total / commands * 1000, 4) if commands else None}


def _ratio(a, b):
    return round(a / b, 4) if a and b else None


def _pace(started: float, index: int, rate: float | None, producer) -> None:
    if rate:
        ahead = (index + 1) / rate - (time.time() - started)
        if ahead > 0:
            producer.poll(0)
            time.sleep(ahead)


def _timed(count: int, started: float, sent_ms: dict, seen_ms: dict) -> tuple[float, dict]:
    """When the last effect was seen (ms), and the commands' throughput up to it and their latencies."""
    last_ms = max(v for v in seen_ms.values() if v is not None)
    return last_ms, {"throughput_per_s": round(count / (last_ms / 1000 - started), 1),
                     "latency": latency_summary([seen_ms[k] - sent_ms[k] for k in sent_ms if seen_ms[k] is not None])}


class DepositDriver:
    """Opens accounts, then runs deposit phases against whatever processes bank.accounts.commands
    (the workers, or the plain baseline) and measures through `view_topic`."""

    def __init__(self, env: BenchEnv, view_topic: str, n_accounts: int, *, extra_pids: dict | None = None,
                 timeout: float = 300.0, counted: tuple[str, ...] = (), customer_view_topic: str | None = None):
        self.env = env
        self.timeout = timeout
        self.codec = Codec()
        #: With a customer view, a deposit is done when its customer's view shows it (the pipeline's end,
        #: as issue 14 measures); the account view's figures are kept beside (`account_view`).
        self.to_customer_view = customer_view_topic is not None
        self.reader = EffectReader(env.settings, views=(view_topic,), outcomes=topics.COMMAND_OUTCOMES.name,
                                   events=(topics.ACCOUNT_EVENTS.name,), codec=self.codec, counted=counted,
                                   customer_views=(customer_view_topic,) if customer_view_topic else ())
        self.client = BankClient(env.settings, self.codec)
        self.meter = env.cpu_meter(**(extra_pids or {}))
        self.run_id = run = new_id()[:8]
        self.account_ids = [f"acc-{run}-{i}" for i in range(n_accounts)]
        self.versions = {a: 1 for a in self.account_ids}
        self.balances = {a: Decimal("0.00") for a in self.account_ids}

    def open(self) -> float:
        started = time.monotonic()
        with progress.bar(len(self.account_ids), "opening accounts", every=100) as shown:
            for index, account_id in enumerate(self.account_ids):
                self.client.open_account(customer_of(index, self.run_id), "bench", "0.00", account_id=account_id)
                shown.tick()
            self.client.flush(self.timeout)
        reader = self.reader
        pending = set(self.account_ids)

        def opened():
            for account_id in list(pending):
                if self._visible(account_id, 1) is not None:
                    pending.discard(account_id)
            return not pending
        reader.wait_for(opened, self.timeout, "opened accounts")
        return time.monotonic() - started

    def run(self, count: int, rate: float | None = None) -> dict:
        reader, client = self.reader, self.client
        with reader.lock:
            accepted0 = reader.outcomes[("Deposit", "ACCEPTED")]
            events0 = reader.event_counts["MoneyDeposited"]
            records0 = reader.event_records
        sent_ms: dict[tuple[str, int], float] = {}
        n = len(self.account_ids)
        cpu0 = self.meter.snapshot()
        started = time.time()
        with progress.bar(count, "sending deposits", every=PROGRESS_EVERY) as shown:
            for index in range(count):
                account_id = self.account_ids[index % n]
                version = self.versions[account_id] + 1
                self.versions[account_id] = version
                self.balances[account_id] += ONE
                sent_ms[(account_id, version)] = time.time() * 1000
                client.deposit(account_id, ONE)
                _pace(started, index, rate, client.producer)
                shown.tick()
            client.flush(self.timeout)
        sent = time.time()
        final = dict(self.versions)
        pending = set(self.account_ids)

        def done():
            for account_id in list(pending):
                if self._visible(account_id, final[account_id]) is not None \
                        and reader.visible_at(account_id, final[account_id]) is not None:  # balances are read there
                    pending.discard(account_id)
            return (not pending and reader.outcomes[("Deposit", "ACCEPTED")] - accepted0 >= count
                    and reader.event_counts["MoneyDeposited"] - events0 >= count)
        observed = reader.wait_for(done, self.timeout, f"{count} deposits")
        cpu1 = self.meter.snapshot()
        with reader.lock:
            account_view_ms = {key: reader.visible_at(*key) for key in sent_ms}
            view_ms = {key: self._visible(*key) for key in sent_ms}
            balance_total = sum(reader.latest[a].balance for a in self.account_ids)
            accepted = reader.outcomes[("Deposit", "ACCEPTED")] - accepted0
            rejected = reader.outcomes[("Deposit", "REJECTED")]
            events = reader.event_counts["MoneyDeposited"] - events0
            event_records = reader.event_records - records0
            pipeline = dict(sorted(reader.records_per_topic.items()))
        missing = [k for k, v in view_ms.items() if v is None]
        last_ms, timed = _timed(count, started, sent_ms, view_ms)
        duration = last_ms / 1000 - started
        account_view = {}
        if self.to_customer_view:  # the same figures a hop earlier, as the simpler peers are measured
            account_view = {"account_view": _timed(count, started, sent_ms, account_view_ms)[1]}
        return {
            "commands": count, "rate_target_per_s": rate, "accepted": accepted, "rejected": rejected,
            "measured_to": "customer view" if self.to_customer_view else "account view", **account_view,
            "events": events, "event_records": event_records, "effects_never_visible": len(missing),
            "balance_total": str(balance_total), "expected_balance_total": str(sum(self.balances.values())),
            "duration_s": round(duration, 3), "send_duration_s": round(sent - started, 3),
            "throughput_per_s": timed["throughput_per_s"], "send_per_s": round(count / max(sent - started, 1e-9), 1),
            "observed_lag_s": round(observed - last_ms / 1000, 3),
            # Records seen so far (account opening included) on the later stages' topics: the summaries
            # re-keyed by customer, the customer, outcome and history views' changelogs.
            "pipeline_records": pipeline,
            "latency": timed["latency"], **_cpu_figures(CpuMeterDelta(cpu0, cpu1), count)}

    def _visible(self, account_id: str, version: int) -> int | None:
        """When the effect of the account's `version` became visible where this driver measures."""
        if self.to_customer_view:
            return self.reader.visible_to_customer_at(account_id, version)
        return self.reader.visible_at(account_id, version)

    def settle(self, group: str, timeout: float = 120.0, names: tuple[str, ...] | None = None) -> float:
        """Waits until `group` has committed every record of the topics it reads (the workers' other
        agents, e.g. the customer view, may still work through a burst after the account view is
        done): the next phase then starts on an idle pipeline. Returns the seconds waited."""
        names = list(names or PEER_TOPICS.get(group, (topics.ACCOUNT_COMMANDS.name,)))
        if group == "streambank":
            names = [spec.name for spec in topics.ALL_TOPICS if spec not in (topics.DEADLETTER, topics.EMAIL_EVENTS)]
        started = time.monotonic()
        while time.monotonic() - started < timeout and work_left(self.env.settings, group, names) > 0:
            time.sleep(0.25)
        return time.monotonic() - started

    def close(self) -> None:
        self.reader.close()
        self.client.producer.flush(10)


#: What each peer's consumer group reads (the pipeline is idle once it has committed all of it).
_FULL_PIPELINE = (topics.ACCOUNT_COMMANDS.name, topics.ACCOUNT_EVENTS.name, topics.CUSTOMER_ACCOUNTS.name,
                  topics.COMMAND_OUTCOMES.name)
PEER_TOPICS = {"bench-kstreams-full": _FULL_PIPELINE, "bench-quix": _FULL_PIPELINE}
#: The later stages' topics each pipeline writes (counted, not timed: `pipeline_records`).
STAGES = {
    "streambank": (topics.CUSTOMER_ACCOUNTS.name, "streambank-account_version_to_entry-changelog",
                   "streambank-customer_to_view-changelog", "streambank-command_to_outcome-changelog"),
    "kstreams-full": (topics.CUSTOMER_ACCOUNTS.name, "bench-kstreams-full-account_version_to_entry-changelog",
                      "bench-kstreams-full-customer_to_view-changelog", "bench-kstreams-full-command_to_outcome-changelog"),
    "quix": (topics.CUSTOMER_ACCOUNTS.name, "changelog__bench-quix--bank.accounts.events--default",
             "changelog__bench-quix--bank.customer-accounts--default",
             "changelog__bench-quix--bank.command-outcomes--default"),
}


def CpuMeterDelta(before, after) -> dict[str, float]:
    from .env import CpuMeter
    return CpuMeter.delta(before, after)


# ---------------------------------------------------------------------------------------------- deposits

def _deposit_records(n_accounts: int, count: int, codec: Codec) -> list[tuple[bytes, bytes]]:
    """Real encoded Deposit commands with the workload's key shape, for the Kafka baselines."""
    run = new_id()[:8]
    ids = [f"acc-{run}-{i}" for i in range(n_accounts)]
    return [(ids[i % n_accounts].encode(), codec.encode(accounts.Deposit(command_id=new_id(),
                                                                         account_id=ids[i % n_accounts],
                                                                         amount=ONE)))
            for i in range(count)]


def _streambank_deposits(env: BenchEnv, options: Options, rates=(None,), log=print) -> tuple[list[dict], float]:
    env.reset_topics()
    env.start_workers(options.workers)
    driver = None
    try:
        driver = DepositDriver(env, ACCOUNT_VIEW_TOPIC, options.accounts, timeout=options.timeout,
                               counted=STAGES["streambank"], customer_view_topic=CUSTOMER_VIEW_TOPIC)
        opened = driver.open()
        phases = []
        for rate in rates:
            rate = rate(phases) if callable(rate) else rate
            if phases:
                driver.settle("streambank")
            log(f"  streambank deposits: {options.count} at {rate or 'max'}/s")
            phases.append(driver.run(options.count, rate))
        return phases, opened
    finally:
        if driver is not None:
            driver.close()
        env.stop_workers()


def _peer_deposits(env: BenchEnv, options: Options, process, view_topic: str, name: str, group: str,
                   rates, log, customer_view_topic: str | None = None) -> list[dict]:
    """Drive one baseline process (already started on fresh topics) through the deposit phases."""
    driver = None
    try:
        driver = DepositDriver(env, view_topic, options.accounts, extra_pids={name: process.pid},
                               timeout=options.timeout, counted=STAGES.get(name, ()),
                               customer_view_topic=customer_view_topic)
        driver.open()
        phases = []
        for rate in rates:
            if phases:
                driver.settle(group)
            log(f"  {name} deposits: {options.count} at {rate or 'max'}/s")
            phases.append(driver.run(options.count, rate))
        return phases
    finally:
        if driver is not None:
            driver.close()
        baselines.stop_plain(process)


def _plain_deposits(env: BenchEnv, options: Options, rates=(None,), log=print) -> list[dict]:
    env.reset_topics()
    return _peer_deposits(env, options, baselines.start_plain(env), PLAIN_VIEW_TOPIC, "plain", "bench-plain",
                          rates, log)


def _kstreams_deposits(env: BenchEnv, options: Options, rates=(None,), log=print) -> list[dict] | None:
    """The simple Kafka Streams peer: one processor, at-least-once, the plain loop's effects."""
    if not baselines.build_kstreams_peer(log):
        return None
    env.reset_topics()
    return _peer_deposits(env, options, baselines.start_kstreams(env, baselines.KSTREAMS_SIMPLE), KSTREAMS_VIEW_TOPIC,
                          "kstreams-simple", "bench-kstreams", rates, log)


def _kstreams_full_deposits(env: BenchEnv, options: Options, rates=(None,), log=print) -> list[dict] | None:
    """The fair Kafka Streams peer: streambank's topology and tables, exactly_once_v2."""
    if not baselines.build_kstreams_peer(log):
        return None
    env.reset_topics()
    return _peer_deposits(env, options, baselines.start_kstreams(env, baselines.KSTREAMS_FULL), KSTREAMS_FULL_VIEW_TOPIC,
                          "kstreams-full", "bench-kstreams-full", rates, log, KSTREAMS_FULL_CUSTOMER_VIEW_TOPIC)


def _quix_deposits(env: BenchEnv, options: Options, rates=(None,), log=print) -> list[dict] | None:
    """The Quix Streams peer: the same pipeline, exactly-once, in its own venv."""
    if not baselines.ensure_quix_venv(log):
        return None
    env.reset_topics()
    return _peer_deposits(env, options, baselines.start_quix(env), QUIX_VIEW_TOPIC, "quix", "bench-quix", rates, log,
                          QUIX_CUSTOMER_VIEW_TOPIC)


def _peers(options: Options) -> list[tuple[str, object]]:
    """The stream-processing peers this run compares with: result name, runner."""
    return [(name, runner) for name, runner, wanted in (
        ("kstreams_full_peer", _kstreams_full_deposits, options.kstreams_full),
        ("quix_peer", _quix_deposits, options.quix),
        ("kstreams_simple_peer", _kstreams_deposits, options.kstreams)) if wanted]


def _kafka_baselines(env: BenchEnv, records: list[tuple[bytes, bytes]], log=print) -> dict:
    size = round(sum(len(v) for _, v in records) / len(records))
    log(f"  bare confluent-kafka loop: {len(records)} records of ~{size} bytes")
    bare = baselines.bare_loop(env, "bench.bare", records)
    log(f"  kafka ProducerPerformance / ConsumerPerformance: {len(records)} records of {size} bytes")
    produce = baselines.producer_perf(env, "bench.perf", len(records), size)
    consume = baselines.consumer_perf(env, "bench.perf", len(records))
    return {"bare_loop": bare, "kafka_producer_perf": produce, "kafka_consumer_perf": consume}


def deposits(env: BenchEnv, options: Options, log=print) -> dict:
    codec = Codec()
    records = _deposit_records(options.accounts, options.baseline_count or max(options.count, 20_000), codec)
    log(f"deposits: {options.count} commands over {options.accounts} accounts, {options.workers} worker(s)")
    (phase,), opened = _streambank_deposits(env, options, log=log)
    result = {"workload": "deposits", "options": vars(options).copy(),
              "record_size": round(sum(len(v) for _, v in records) / len(records)),
              "setup_open_accounts_s": round(opened, 3), "streambank": phase, "baselines": {}}
    if options.baselines:
        result["baselines"]["plain_loop"] = _plain_deposits(env, options, log=log)[0]
        for name, runner in _peers(options):
            if peer := runner(env, options, log=log):
                result["baselines"][name] = peer[0]
        result["baselines"].update(_kafka_baselines(env, records, log))
    result["ratios"] = _ratios(phase, result["baselines"])
    return result


def _ratios(phase: dict, found: dict) -> dict:
    """streambank's throughput over each baseline's, like for like (`_like`)."""
    return {f"streambank/{name}": _ratio(_like(phase, figures)["throughput_per_s"], figures.get("throughput_per_s"))
            for name, figures in found.items() if isinstance(figures, dict)}


def _like(ours: dict, theirs: dict) -> dict:
    """Our phase's figures measured where `theirs` were: at the account view for a baseline that ends
    there or has no view at all (`DepositDriver`'s `account_view`), else as they are."""
    if theirs.get("measured_to") != "customer view" and "account_view" in ours:
        return ours["account_view"]
    return ours


# ---------------------------------------------------------------------------------------------- latency

def latency(env: BenchEnv, options: Options, log=print) -> dict:
    log(f"latency: {options.count} deposits per rate, {options.accounts} accounts, {options.workers} worker(s)")
    if options.rates:
        rates = tuple(options.rates)
    else:
        def at(fraction):
            return lambda phases: round(phases[0]["throughput_per_s"] * fraction, 1)
        rates = (None,) + tuple(at(f) for f in options.fractions)
    phases, _ = _streambank_deposits(env, options, rates, log=log)
    result = {"workload": "latency", "options": vars(options).copy(), "streambank": phases, "baselines": {}}
    if options.baselines:
        plain = _plain_deposits(env, options, tuple(p["rate_target_per_s"] for p in phases), log=log)
        result["baselines"]["plain_loop"] = plain
        rates_used = tuple(p["rate_target_per_s"] for p in phases)
        for name, runner in _peers(options):
            if peer := runner(env, options, rates_used, log=log):
                result["baselines"][name] = peer
        result["ratios"] = {}
        for name, base in result["baselines"].items():
            if phases[0]["rate_target_per_s"] is None:  # throughput means something at the maximum rate only
                result["ratios"][f"streambank/{name} at max"] = _ratio(
                    _like(phases[0], base[0])["throughput_per_s"], base[0]["throughput_per_s"])
            for p, q in zip(phases, base):
                result["ratios"][f"p99 streambank/{name} at {p['rate_target_per_s'] or 'max'}/s"] = \
                    _ratio(_like(p, q)["latency"]["p99_ms"], q["latency"]["p99_ms"])
    return result


# ---------------------------------------------------------------------------------------------- transfers

def transfers(env: BenchEnv, options: Options, log=print) -> dict:
    log(f"transfers: {options.count} transfers over {options.accounts} accounts, {options.workers} worker(s)")
    codec = Codec()
    env.reset_topics()
    env.start_workers(options.workers)
    reader = client = None
    try:
        reader = EffectReader(env.settings, views=(ACCOUNT_VIEW_TOPIC, TRANSFER_VIEW_TOPIC),
                              outcomes=topics.COMMAND_OUTCOMES.name,
                              events=(topics.ACCOUNT_EVENTS.name, topics.TRANSFER_EVENTS.name), codec=codec)
        client = BankClient(env.settings, codec)
        meter = env.cpu_meter()
        run = new_id()[:8]
        account_ids = [f"acc-{run}-{i}" for i in range(options.accounts)]
        initial = Decimal("1000.00")
        with progress.bar(len(account_ids), "opening accounts", every=100) as shown:
            for index, account_id in enumerate(account_ids):
                client.open_account(customer_of(index, run), "bench", initial, account_id=account_id)
                shown.tick()
            client.flush(options.timeout)
        reader.wait_for(lambda: all(reader.visible_at(a, 1) is not None for a in account_ids), options.timeout,
                        "opened accounts")
        rng = random.Random(11)
        transfer_ids = [f"tr-{run}-{i}" for i in range(options.count)]
        sent_ms = {}
        cpu0 = meter.snapshot()
        started = time.time()
        with progress.bar(len(transfer_ids), "sending transfers", every=PROGRESS_EVERY) as shown:
            for transfer_id in transfer_ids:
                source, target = rng.sample(account_ids, 2)
                sent_ms[transfer_id] = time.time() * 1000
                client.transfer_money(source, target, Decimal(rng.randint(1, 20_000)).scaleb(-2),
                                      transfer_id=transfer_id)
                shown.tick()
            client.flush(options.timeout)
        sent = time.time()
        reader.wait_for(lambda: len(reader.terminal_time) >= options.count, options.timeout,
                        f"{options.count} terminal transfers")
        cpu1 = meter.snapshot()
        with reader.lock:
            terminal = {t: reader.terminal_time.get(t) for t in transfer_ids}
            states = {t: reader.latest[t] for t in transfer_ids if t in reader.latest}
        # Each account's expected version from the transfers' fates, then the views' total.
        expected = {a: 1 for a in account_ids}
        for view in states.values():
            if view.state == "COMPLETED":
                expected[view.from_account_id] += 1
                expected[view.to_account_id] += 1
            elif view.state == "REFUNDED":
                expected[view.from_account_id] += 2
        reader.wait_for(lambda: all(reader.visible_at(a, v) is not None for a, v in expected.items()), options.timeout,
                        "account views")
        with reader.lock:
            balance_total = sum(reader.latest[a].balance for a in account_ids)
            outcomes = {f"{t}/{s}": n for (t, s), n in reader.outcomes.items() if t == "TransferMoney"}
            event_counts = dict(reader.event_counts)
        by_state: dict[str, int] = {}
        for view in states.values():
            by_state[view.state] = by_state.get(view.state, 0) + 1
        last_ms = max(v for v in terminal.values() if v is not None)
        duration = last_ms / 1000 - started
        phase = {"commands": options.count, "terminal": sum(1 for v in terminal.values() if v is not None),
                 "states": by_state, "outcomes": outcomes, "events": event_counts,
                 "balance_total": str(balance_total), "expected_balance_total": str(initial * len(account_ids)),
                 "duration_s": round(duration, 3), "send_duration_s": round(sent - started, 3),
                 "throughput_per_s": round(options.count / duration, 1),
                 "latency": latency_summary([terminal[t] - sent_ms[t] for t in transfer_ids if terminal[t]]),
                 **_cpu_figures(CpuMeterDelta(cpu0, cpu1), options.count)}
    finally:
        if reader is not None:
            reader.close()
        if client is not None:
            client.producer.flush(10)
        env.stop_workers()
    result = {"workload": "transfers", "options": vars(options).copy(), "streambank": phase, "baselines": {}}
    if options.baselines:
        records = []
        rng = random.Random(5)
        ids = [f"acc-x-{i}" for i in range(options.accounts)]
        from ..domain import transfers as transfer_domain
        for i in range(options.baseline_count or max(options.count, 20_000)):
            source, target = rng.sample(ids, 2)
            command = transfer_domain.TransferMoney(command_id=new_id(), transfer_id=f"tr-x-{i}",
                                                    from_account_id=source, to_account_id=target,
                                                    amount=Decimal("1.00"), description="")
            records.append((command.transfer_id.encode(), codec.encode(command)))
        result["record_size"] = round(sum(len(v) for _, v in records) / len(records))
        result["baselines"].update(_kafka_baselines(env, records, log))
    result["ratios"] = _ratios(phase, result["baselines"])
    return result


# ---------------------------------------------------------------------------------------------- replay

def _account_events(n_accounts: int, count: int, codec: Codec) -> tuple[list[tuple[bytes, bytes]], dict]:
    """`count` account events: each account's AccountOpened, then MoneyDeposited round robin."""
    run = new_id()[:8]
    ids = [f"acc-{run}-{i}" for i in range(n_accounts)]
    versions = {a: 0 for a in ids}
    balances = {a: Decimal("0.00") for a in ids}
    records = []
    now = int(time.time() * 1000)
    for i in range(count):
        account_id = ids[i % n_accounts]
        version = versions[account_id] + 1
        versions[account_id] = version
        command_id = f"cmd-{run}-{i}"
        common = dict(event_id=f"{command_id}.0", aggregate_id=account_id, version=version, command_id=command_id,
                      occurred_at=now)
        if version == 1:
            event = accounts.AccountOpened(**common, customer_id=customer_of(i, run), title="bench", description="",
                                           initial_balance=Decimal("0.00"))
        else:
            balances[account_id] += ONE
            event = accounts.MoneyDeposited(**common, amount=ONE, balance=balances[account_id])
        records.append((account_id.encode(), codec.encode(event)))
    return records, {"versions": versions, "balances": balances}


def _produce(env: BenchEnv, topic: str, records) -> float:
    producer = Producer(producer_config(env.settings))
    started = time.time()
    for key, value in records:
        produce_when_room(producer, topic, key=key, value=value)
        producer.poll(0)
    producer.flush(120)
    return time.time() - started


def replay(env: BenchEnv, options: Options, log=print) -> dict:
    """Views rebuilt from `count` account events already on the log, by workers with empty state."""
    n_accounts = min(options.accounts, options.count)
    log(f"replay: {options.count} account events over {n_accounts} accounts, {options.workers} worker(s)")
    codec = Codec()
    env.reset_topics()
    records, expected = _account_events(n_accounts, options.count, codec)
    _produce(env, topics.ACCOUNT_EVENTS.name, records)
    reader = EffectReader(env.settings, views=(ACCOUNT_VIEW_TOPIC,), codec=codec)
    versions = expected["versions"]
    try:
        started = time.time()
        cpu_before = env.cpu_meter().snapshot()  # bench and broker; workers join below
        env.start_workers(options.workers)
        meter = env.cpu_meter()
        cpu0 = meter.snapshot()
        # Workers count from 0 (all their CPU since they started); bench and broker from before the start.
        cpu0.per_process = {**{name: 0.0 for name in meter.processes}, **cpu_before.per_process}
        pending = set(versions)

        def rebuilt():
            for account_id in list(pending):
                if reader.visible_at(account_id, versions[account_id]) is not None:
                    pending.discard(account_id)
            return not pending
        observed = reader.wait_for(rebuilt, options.timeout, "rebuilt views")
        cpu1 = meter.snapshot()
        with reader.lock:
            times = list(reader.view_time.values())
            view_records = reader.view_records
            balances_ok = all(reader.latest[a].balance == expected["balances"][a] for a in versions)
        first, last = min(times) / 1000, max(times) / 1000
        phase = {"events": options.count, "accounts": n_accounts, "view_records": view_records,
                 "views_match_fold": balances_ok,
                 "replay_s": round(last - first, 3), "throughput_per_s": round(options.count / max(last - first, 1e-3), 1),
                 "wall_s_incl_worker_start": round(last - started, 3),
                 "throughput_incl_worker_start_per_s": round(options.count / (last - started), 1),
                 "observed_lag_s": round(observed - last, 3), **_cpu_figures(CpuMeterDelta(cpu0, cpu1), options.count)}
    finally:
        reader.close()
        env.stop_workers()
    result = {"workload": "replay", "options": vars(options).copy(), "streambank": phase, "baselines": {}}
    if options.baselines:
        log("  plain fold of the event topic (confluent-kafka + streams.domain.views) and ConsumerPerformance")
        result["baselines"]["plain_fold"] = plain_fold(env, options.count)
        result["baselines"]["kafka_consumer_perf"] = baselines.consumer_perf(env, topics.ACCOUNT_EVENTS.name,
                                                                             options.count)
    result["ratios"] = _ratios(phase, result["baselines"])
    return result


def plain_fold(env: BenchEnv, count: int) -> dict:
    """The account view folded from bank.accounts.events in this process: consume, decode, project."""
    import uuid

    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    from ..domain import views
    codec = Codec()
    topic = topics.ACCOUNT_EVENTS.name
    consumer = Consumer(env.settings.consumer_config(**{"group.id": f"bench-fold-{uuid.uuid4()}",
                                                         "enable.auto.commit": False}))
    partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    folded: dict[str, views.AccountView] = {}
    seen = 0
    started = time.time()
    cpu0 = time.process_time()
    deadline = time.monotonic() + 120
    while seen < count and time.monotonic() < deadline:
        for message in consumer.consume(2000, timeout=0.2):
            if message.error() is not None:
                continue
            event = codec.decode(message.value())
            current = folded.get(event.aggregate_id)
            if views.is_next(current.version if current else 0, event):
                folded[event.aggregate_id] = views.project_account(current, event)
            seen += 1
    elapsed = time.time() - started
    cpu = time.process_time() - cpu0
    consumer.close()
    return {"system": "plain fold (confluent-kafka consume + decode + project_account into a dict)",
            "records": seen, "accounts": len(folded), "throughput_per_s": round(seen / elapsed, 1),
            "process_cpu_s": round(cpu, 3)}


WORKLOADS = {"deposits": deposits, "transfers": transfers, "latency": latency, "replay": replay}
