"""`bank bench memory`: the resident memory of a worker holding N accounts.

The table entries are the very bytes a worker writes, made here by running the real application
services (streams.processing) over N `OpenAccount` commands with dicts for tables. They are written
to the table changelog topics with librdkafka AND into the worker's local RocksDB with Faust's
persisted offsets at the changelogs' ends: the worker then starts as one restarted with its disk
intact, with nothing to recover. (`--recover` makes the worker recover them from the changelogs
instead, at Faust's recovery rate, one record at a time: for a million accounts, many minutes;
bench/RESULTS.md has the measured figures.)
"""
from __future__ import annotations

import json
import random
import time
import urllib.request
from collections import defaultdict
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

from confluent_kafka import Producer

from ..contract import topics
from ..contract.avro import Codec
from ..kafka.admin import topic_ids
from ..kafka.producer import produce_when_room, producer_config
from ..domain import accounts
from ..services.commands import COMMAND_PREFIX, STATE_PREFIX, CommandProcessor
from ..services.projections import AccountProjector, CustomerProjector
from ..services.handling import KeyPrefixed, Origin
from ..worker.batches import changelog_id_path
from ..worker.pipeline import EMPTIED
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


FAUST_OFFSET_KEY = b"__faust\0offset__"  # where Faust's RocksDB store keeps a partition's persisted offset


def write_changelogs(env: BenchEnv, tables: dict[str, dict], worker_dir: Path | None = None) -> int:
    """Every entry to its changelog partition; with `worker_dir`, into that worker's RocksDB too."""
    from rocksdict import Options, Rdict, WriteBatch

    producer = Producer(producer_config(env.settings, **{"linger.ms": 20, "batch.num.messages": 10000}))
    partitions = env.settings.partitions
    written = 0
    # Beside each database, the id of the changelog it mirrors: without it the worker takes the database
    # for one of unknown origin, empties it and restores it from the changelog (a full restore, not a
    # restart with its disk intact).
    ids = topic_ids(env.settings, [topics.changelog_topic(name) for name in tables]) if worker_dir else {}
    for name, entries in tables.items():
        topic = topics.changelog_topic(name)
        by_partition: dict[int, list] = defaultdict(list)
        for key, value in entries.items():
            raw_key = key.encode() if isinstance(key, str) else key
            by_partition[topics.partition_for(raw_key, partitions)].append((raw_key, value))
        for partition, records in by_partition.items():
            for raw_key, value in records:
                produce_when_room(producer, topic, value=value, key=raw_key, partition=partition)
            written += len(records)
            if worker_dir is not None:
                # A fresh topic's offsets start at 0: the last record of this partition is len - 1.
                path = worker_dir / "v1" / "tables" / f"{name}-{partition}.db"
                path.parent.mkdir(parents=True, exist_ok=True)
                db = Rdict(str(path), Options(raw_mode=True))
                batch = WriteBatch(raw_mode=True)
                for raw_key, value in records:
                    batch.put(raw_key, value)
                batch.put(FAUST_OFFSET_KEY, str(len(records) - 1).encode())
                db.write(batch)
                db.close()
                changelog_id_path(path).write_text(ids[topic])
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
    recover = options.recover
    codec = Codec()
    env.reset_topics()
    log(f"memory: building the table entries of {n:,} accounts")
    started = time.monotonic()
    tables, ids = table_entries(n, codec, log)
    built_s = time.monotonic() - started
    counts = {name: len(entries) for name, entries in tables.items()}
    started = time.monotonic()
    # The worker env.start_workers starts next: its state directory, as streams.config names it.
    home = env.settings.home / f"phase-{env.phase + 1}"
    worker_dir = None if recover else replace(env.settings, home=home, web_port=env.web_port).worker_dir
    written = write_changelogs(env, tables, worker_dir)
    written_s = time.monotonic() - started
    del tables
    log(f"  {written:,} changelog records written in {written_s:.1f} s"
        + ("; starting a worker to recover them" if recover else ", and into the worker's RocksDB"))

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
    serving = rss_kib(worker.pid)
    # Read a few thousand accounts at random, as queries would: fills RocksDB's block caches.
    reads = random.Random(11).sample(ids, min(5_000, len(ids)))
    wrong = sum(1 for a in reads if (_get(worker.port, f"/api/accounts/{a}")[1] or {}).get("balance") != "100.00")
    after_reads = rss_kib(worker.pid)
    disk = sum(f.stat().st_size for f in (worker.settings.home / "workers").rglob("*") if f.is_file())
    broker = rss_kib(env.broker_pids[0]) if env.broker_pids else {}
    # Without --recover every database was written here, so none should have been restored whole.
    emptied = worker.log.read_text(errors="replace").count(EMPTIED) if worker.log.exists() else 0
    return {
        "workload": "memory", "accounts": n, "state": "recovered from changelogs" if recover else "local RocksDB", "table_entries": counts, "changelog_records": written,
        "build_s": round(built_s, 1), "write_s": round(written_s, 1), "start_to_serving_s": round(recovered_s, 1),
        "sampled_accounts_served": len(sample), "reads": len(reads), "reads_with_wrong_balance": wrong,
        "worker_rss_mib_serving": round(serving["rss_kib"] / 1024, 1),
        "worker_rss_mib_after_reads": round(after_reads["rss_kib"] / 1024, 1),
        "worker_peak_rss_mib": round(after_reads["peak_rss_kib"] / 1024, 1),
        "worker_state_on_disk_mib": round(disk / 2**20, 1),
        "broker_rss_mib": round(broker.get("rss_kib", 0) / 1024, 1),
        "target_rss_mib": 1024,
        "table_partitions_restored_whole": emptied,
    }
