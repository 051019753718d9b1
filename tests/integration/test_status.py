"""`bank status --json` against the real broker and the two running workers."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from http_api import REPO

from streams.contract import topics


def bank_status(kafka, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "BANK_HOME": str(kafka.home), "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers}
    return subprocess.run([sys.executable, "-m", "streams.cli", "status", *args], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=120)


def settled_status(kafka, workers, timeout: float = 90.0) -> dict:
    """The status once the group is stable with both workers in it (a rebalance may be under way)."""
    deadline = time.monotonic() + timeout
    while True:
        done = bank_status(kafka, "--json")
        assert done.returncode == 0, done.stderr
        status = json.loads(done.stdout)
        urls = {w["url"] for w in status["workers"]}
        if status["group"]["state"] == "STABLE" and urls == {w.url for w in workers} \
                or time.monotonic() > deadline:
            return status
        time.sleep(1)


def test_bank_status_json_shows_the_broker_every_topic_both_workers_and_who_holds_every_partition(
        api, kafka, workers):
    customer = api.create_customer("Katherine", "Johnson")  # something to count in the end offsets
    status = settled_status(kafka, workers)

    broker = status["broker"]
    assert broker["reachable"] and broker["bootstrap_servers"] == kafka.bootstrap_servers
    assert len(broker["brokers"]) == 1 and broker["brokers"][0]["port"] == int(kafka.bootstrap_servers.rsplit(":")[1])
    assert broker["version"] == "4.0.0"

    by_name = {t["name"]: t for t in status["topics"]}
    for spec in topics.ALL_TOPICS:
        topic = by_name[spec.name]
        assert topic["partitions"] == kafka.partitions and topic["replication_factor"] == 1
        assert [p["partition"] for p in topic["partition_details"]] == list(range(kafka.partitions))
    customers_events = by_name[topics.CUSTOMER_EVENTS.name]
    assert customers_events["end_offsets"] >= 1 and customers_events["lag"] is not None

    assert status["group"]["group_id"] == "streambank" and status["group"]["state"] == "STABLE"
    members = status["group"]["members"]
    assert sorted(m["worker"] for m in members) == sorted(w.url for w in workers)
    assert {w["url"]: w["status"] for w in status["workers"]} == {w.url: "ok" for w in workers}
    assert all(w["reachable"] and w["partitions"] > 0 for w in status["workers"])

    # Every partition of every topic an agent reads is held by exactly one worker, and both hold some.
    consumed = {name for spec in topics.ALL_TOPICS for name in [spec.name] if spec.readers
                and any(not reader.startswith(("bank ", "operators")) for reader in spec.readers)}
    assert topics.ACCOUNT_COMMANDS.name in consumed and topics.DEADLETTER.name not in consumed
    held: dict[tuple[str, int], list[str]] = {}
    for member in members:
        for topic, partitions in member["assignment"].items():
            for partition in partitions:
                held.setdefault((topic, partition), []).append(member["worker"])
    for name in consumed:
        for partition in range(kafka.partitions):
            assert len(held.get((name, partition), [])) == 1, (name, partition, held.get((name, partition)))
            assert by_name[name]["partition_details"][partition]["owners"] == held[(name, partition)]
    assert {owner for owners in held.values() for owner in owners} == {w.url for w in workers}
    assert customer  # (used above: the end offsets include its events)

    text = bank_status(kafka)
    assert text.returncode == 0 and "workers" in text.stdout and workers[0].url.removeprefix("http://") in text.stdout


def test_bank_status_says_kafka_is_unreachable_with_exit_2(kafka):
    env = {**os.environ, "BANK_HOME": str(kafka.home), "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    done = subprocess.run([sys.executable, "-m", "streams.cli", "status", "--json", "--timeout", "3"],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=60)
    assert done.returncode == 2 and "cannot reach Kafka" in done.stderr
    assert json.loads(done.stdout) == {"broker": {"reachable": False, "error": done.stderr.strip()[len("Error: "):]}}
