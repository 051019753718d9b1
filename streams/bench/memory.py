"""`bank bench memory`: the resident memory of a worker holding N accounts.

The worker's tables are filled the way a restarted worker fills them: by recovering the table
changelogs. The changelog records are the very bytes a worker writes, produced here by running
the real application services (streams.processing) over N `OpenAccount` commands with dicts for
tables, then written to the changelog topics with librdkafka. Opening a million accounts through
the pipeline would take far longer than the memory figure is worth waiting for.
"""
from __future__ import annotations

import json
import os
import random
import time
import urllib.request
from collections import defaultdict
from decimal import Decimal

from confluent_kafka import Producer

from .. import topics
from ..avro import Codec
from ..client import producer_config
from ..domain import accounts
from ..processing import (COMMAND_PREFIX, STATE_PREFIX, AccountProjector, CommandProcessor, CustomerProjector,
                          KeyPrefixed, Origin)
from .env import BenchEnv, BenchError
from .workloads import ACCOUNTS_PER_CUSTOMER, Options

#: The tables a worker holding accounts fills, as the worker names them.
TABLES = ("account_to_state", "account_to_view", "account_version_to_entry", "customer_to_view")
SAMPLE = 200


def rss_kib(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (peak) of a process, in KiB, from /proc."""
    out = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(("VmRSS:", "VmHWM:")):
                name, value = line.split(":")
                out[name] = int(value.split()[0])
    return {"rss_kib": out.get("VmRSS", 0), "peak_rss_kib": out.get("VmHWM", 0)}


def table_entries(n_accounts: int, codec: Codec, log=print) -> tuple[dict[str, dict], list[str]]:
    """Every table entry a worker would hold after opening `n_accounts` accounts, by table."""
    tables: dict[str, dict] = {name: {} for name in TABLES}
    state = tables["account_to_state"]
    processor = CommandProcessor(codec, accounts, (topics.ACCOUNT_COMMANDS,), topics.ACCOUNT_EVENTS,
                                 KeyPrefixed(state, STATE_PREFIX), KeyPrefixed(state, COMMAND_PREFIX),
                                 clock=lambda: 1_800_000_000_000)
    account_projector = AccountProjector(codec, tables["account_to_view"], tables["account_version_to_entry"])
    customer_projector = CustomerProjector(codec, tables["customer_to_view"])
    origin = Origin(topics.ACCOUNT_COMMANDS.name, 0, 0)
    ids = []
    started = time.monotonic()
    for index in range(n_accounts):
        account_id = f"acct-{index:07d}"
        ids.append(account_id)
        command = accounts.OpenAccount(command_id=f"open-{account_id}", account_id=account_id, customer_id=f"cust-{index // ACCOUNTS_PER_CUSTOMER}",
                                       title="Checking", initial_balance=Decimal("100.00"))
        for record in processor.process(account_id.encode(), codec.encode(command), origin):
            if record.topic != topics.ACCOUNT_EVENTS.name:
                continue
            for summary in account_projector.project(record.key.encode(), record.value, origin):
                customer_projector.project(summary.key.encode(), summary.value, origin)
        if log and index and index % 200_000 == 0:
            log(f"  built {index:,} accounts' table entries ({index / (time.monotonic() - started):,.0f}/s)")
    return tables, ids


def write_changelogs(env: BenchEnv, tables: dict[str, dict]) -> int:
    producer = Producer(producer_config(env.settings, **{"linger.ms": 20, "batch.num.messages": 10000}))
    partitions = env.settings.partitions
    written = 0
    for name, entries in tables.items():
        topic = topics.changelog_topic(name)
        for key, value in entries.items():
            raw_key = key.encode() if isinstance(key, str) else key
            while True:
                try:
                    producer.produce(topic, value=value, key=raw_key,
                                     partition=topics.partition_for(raw_key, partitions))
                    break
                except BufferError:
                    producer.poll(0.05)
            written += 1
    if producer.flush(120):
        raise BenchError("changelog records still unacknowledged after 120 s")
    return written


def _get(port: int, path: str) -> tuple[int, dict | None]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, None
    except Exception:
        return 0, None


def memory(env: BenchEnv, options: Options, log=print) -> dict:
    """Resident memory of one worker holding `options.accounts` accounts, recovered from changelogs."""
    n = options.accounts
    codec = Codec()
    env.reset_topics()
    log(f"memory: building the table entries of {n:,} accounts")
    started = time.monotonic()
    tables, ids = table_entries(n, codec, log)
    built_s = time.monotonic() - started
    counts = {name: len(entries) for name, entries in tables.items()}
    started = time.monotonic()
    written = write_changelogs(env, tables)
    written_s = time.monotonic() - started
    del tables
    log(f"  {written:,} changelog records written in {written_s:.1f} s; starting a worker to recover them")

    started = time.monotonic()
    worker = env.start_workers(1, timeout=options.timeout)[0]
    sample = random.Random(7).sample(ids, min(SAMPLE, len(ids)))
    deadline = time.monotonic() + options.timeout
    missing = list(sample)
    while missing and time.monotonic() < deadline:
        missing = [a for a in missing if _get(worker.port, f"/api/accounts/{a}")[0] != 200]
        if missing:
            time.sleep(1)
    if missing:
        raise BenchError(f"{len(missing)} of {len(sample)} sampled accounts not served within {options.timeout} s")
    recovered_s = time.monotonic() - started
    after_recovery = rss_kib(worker.pid)
    # Read a few thousand accounts at random, as queries would: fills RocksDB's block caches.
    reads = random.Random(11).sample(ids, min(5_000, len(ids)))
    wrong = sum(1 for a in reads if (_get(worker.port, f"/api/accounts/{a}")[1] or {}).get("balance") != "100.00")
    after_reads = rss_kib(worker.pid)
    disk = sum(f.stat().st_size for f in (worker.settings.home / "workers").rglob("*") if f.is_file())
    broker = rss_kib(env.broker_pids[0]) if env.broker_pids else {}
    return {
        "workload": "memory", "accounts": n, "table_entries": counts, "changelog_records": written,
        "build_s": round(built_s, 1), "write_s": round(written_s, 1), "recovery_s": round(recovered_s, 1),
        "sampled_accounts_served": len(sample), "reads": len(reads), "reads_with_wrong_balance": wrong,
        "worker_rss_mib_after_recovery": round(after_recovery["rss_kib"] / 1024, 1),
        "worker_rss_mib_after_reads": round(after_reads["rss_kib"] / 1024, 1),
        "worker_peak_rss_mib": round(after_reads["peak_rss_kib"] / 1024, 1),
        "worker_state_on_disk_mib": round(disk / 2**20, 1),
        "broker_rss_mib": round(broker.get("rss_kib", 0) / 1024, 1),
        "target_rss_mib": 1024,
    }
