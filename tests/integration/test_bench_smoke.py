"""Smoke run of every `bank bench` workload at tiny size: the reported counts must be right.

Self-contained: `bank bench` deletes and recreates every bank.* topic, so it gets its own broker
(BANK_TEST_BENCH_KAFKA_PORT, default 19892; controller on +10000) instead of the session broker that
the session's workers use. No timing assertions.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal

import pytest

from streams.dev import local_broker

from conftest import PORT_SHIFT
from http_api import REPO

KAFKA_PORT = int(os.environ.get("BANK_TEST_BENCH_KAFKA_PORT", "19892")) + PORT_SHIFT
WEB_PORT = int(os.environ.get("BANK_TEST_BENCH_WEB_PORT", "17166")) + PORT_SHIFT


@pytest.fixture(scope="module")
def bench_env(tmp_path_factory):
    home = tmp_path_factory.mktemp("bench-home")
    os.environ.setdefault("BANK_KAFKA_LIBS", str(REPO / ".bank" / "kafka" / "libs"))
    try:
        local_broker.start(home, timeout=120, base_port=KAFKA_PORT)
    except local_broker.KafkaLocalError as exc:
        pytest.fail(f"could not start the bench broker: {exc}", pytrace=False)
    env = {**os.environ, "BANK_HOME": str(home), "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{KAFKA_PORT}",
           "BANK_PARTITIONS": "4", "BANK_WEB_PORT": str(WEB_PORT)}
    yield env
    local_broker.stop(home)


def bench(env, *args) -> dict:
    done = subprocess.run([sys.executable, "-m", "streams.cli", "bench", *args, "--json"], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=600)  # peers: a Maven build, a venv, JVM starts
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert len(report["runs"]) == 1
    return report["runs"][0]


#: Every peer is in the smoke runs: the Kafka Streams peers take a Maven build (under a minute, once
#: per checkout: bench/peers/kstreams/target) and the Quix Streams peer a venv of its own (about half a
#: minute, once: bench/peers/quix/.venv). A peer that cannot be built is missing from the results and
#: the test fails.
PEERS = ("kstreams_full_peer", "quix_peer", "kstreams_simple_peer")
#: The later stages each full pipeline writes (summaries, history, customer view, outcome view).
STAGES = {"kstreams_full_peer": "bench-kstreams-full-", "quix_peer": "changelog__bench-quix--"}


def assert_deposit_counts(phase: dict, count: int, balance: str) -> None:
    assert phase["commands"] == phase["accepted"] == phase["events"] == phase["latency"]["count"] == count
    assert phase["effects_never_visible"] == 0
    assert Decimal(phase["balance_total"]) == Decimal(phase["expected_balance_total"]) == Decimal(balance)


#: Where each pipeline's deposits are timed: at its end, the customer view, where it has one.
TO_CUSTOMER_VIEW = {"streambank", "kstreams_full_peer", "quix_peer"}


def assert_measured_to_its_end(name: str, phase: dict, count: int) -> None:
    if name in TO_CUSTOMER_VIEW:
        assert phase["measured_to"] == "customer view"
        assert phase["account_view"]["latency"]["count"] == count  # the hop before, kept beside
        assert phase["account_view"]["throughput_per_s"] >= phase["throughput_per_s"]
    else:
        assert phase["measured_to"] == "account view" and "account_view" not in phase


def assert_whole_pipeline(name: str, phase: dict, accounts: int, commands: int) -> None:
    """Summaries re-keyed by customer and every view's changelog have records: the topology ran whole."""
    records = phase["pipeline_records"]
    assert len(records) == 4, records
    assert all(n > 0 for n in records.values()), records
    # One summary per event in the peers (none coalesced), at least one per account in streambank.
    if name in STAGES:
        assert records["bank.customer-accounts"] >= accounts + commands
        outcome_views = [n for topic, n in records.items() if "outcome" in topic]
        assert outcome_views and outcome_views[0] >= accounts + commands
    else:
        assert records["bank.customer-accounts"] >= accounts


@pytest.mark.timeout(900)  # every peer, each starting its own JVM or venv process
def test_deposits_with_every_baseline(bench_env):
    run = bench(bench_env, "deposits", "--count", "60", "--accounts", "6", "--baseline-count", "200")
    phase = run["streambank"]
    assert_deposit_counts(phase, 60, "60.00")
    assert_measured_to_its_end("streambank", phase, 60)
    assert_whole_pipeline("streambank", phase, 6, 60)
    assert {"bench", "worker-1"} <= set(phase["cpu_s"])
    plain = run["baselines"]["plain_loop"]
    assert plain["commands"] == plain["accepted"] == plain["events"] == 60
    assert_measured_to_its_end("plain_loop", plain, 60)
    assert Decimal(plain["balance_total"]) == Decimal("60.00")
    assert run["baselines"]["bare_loop"]["consumed"] == 200
    assert run["baselines"]["kafka_producer_perf"]["records"] == 200
    assert run["baselines"]["kafka_consumer_perf"]["records"] == 200
    for name in PEERS:
        peer = run["baselines"][name]
        assert_deposit_counts(peer, 60, "60.00")
        assert_measured_to_its_end(name, peer, 60)
        if name in STAGES:
            assert_whole_pipeline(name, peer, 6, 60)
            assert all(topic == "bank.customer-accounts" or topic.startswith(STAGES[name])
                       for topic in peer["pipeline_records"])
    assert set(run["ratios"]) == {f"streambank/{name}" for name in
                                  ("plain_loop", "bare_loop", "kafka_producer_perf", "kafka_consumer_perf") + PEERS}


@pytest.mark.timeout(900)  # every peer, each starting its own JVM or venv process
def test_latency_with_every_peer(bench_env):
    """Two fixed rates, streambank and every peer: counts per phase, a p99 ratio per peer and rate."""
    run = bench(bench_env, "latency", "--count", "30", "--accounts", "3", "--rates", "50,100")
    phases = run["streambank"]
    assert [p["rate_target_per_s"] for p in phases] == [50.0, 100.0]
    for phase in phases:
        assert phase["commands"] == phase["accepted"] == phase["events"] == phase["latency"]["count"] == 30
        assert_measured_to_its_end("streambank", phase, 30)
    assert Decimal(phases[-1]["balance_total"]) == Decimal("60.00")
    for name in ("plain_loop",) + PEERS:
        phases = run["baselines"][name]
        assert [p["rate_target_per_s"] for p in phases] == [50.0, 100.0]
        for phase, balance in zip(phases, ("30.00", "60.00")):
            assert_deposit_counts(phase, 30, balance)
        for rate in (50.0, 100.0):
            assert f"p99 streambank/{name} at {rate}/s" in run["ratios"]


def test_peers_can_be_skipped(bench_env):
    run = bench(bench_env, "deposits", "--count", "20", "--accounts", "4", "--baseline-count", "100",
                "--no-kstreams-full", "--no-quix", "--no-kstreams-simple")
    assert not set(PEERS) & set(run["baselines"])
    assert not any(name.endswith(PEERS) for name in run["ratios"])


def test_transfers(bench_env):
    run = bench(bench_env, "transfers", "--count", "40", "--accounts", "5", "--no-baselines")
    phase = run["streambank"]
    assert phase["terminal"] == 40
    assert sum(phase["states"].values()) == 40
    assert set(phase["states"]) <= {"COMPLETED", "FAILED", "REFUNDED"}
    assert phase["outcomes"].get("TransferMoney/ACCEPTED") == 40
    assert Decimal(phase["balance_total"]) == Decimal(phase["expected_balance_total"]) == Decimal("5000.00")


def test_http_closed_loop(bench_env):
    """4 users, 40 deposits over HTTP: each answered 200 with its version and read back at it, no failures."""
    run = bench(bench_env, "http", "--users", "4", "--count", "40")
    phase = run["streambank"]
    assert phase["users"] == phase["accounts"] == phase["warmup_deposits"] == 4
    assert phase["deposits"] == phase["accepted"] == phase["read_back"] == phase["versions_from_answer"] == 40
    assert phase["post_wait_ms"]["count"] == phase["post_then_get_ms"]["count"] == 40
    assert phase["failures"] == {} and phase["failures_total"] == 0 and phase["valid"] is True
    # Read back over HTTP after the loop: 40 timed deposits and one warm-up deposit per user.
    assert phase["accounts_with_wrong_balance"] == 0
    assert Decimal(phase["balance_total"]) == Decimal(phase["expected_balance_total"]) == Decimal("44.00")
    assert phase["http_requests"] == 80
    assert {"bench", "broker", "worker-1"} <= set(phase["cpu_s"])
    assert phase["targets"] == {"post_wait_p99_ms": 50, "post_then_get_p99_ms": 100}
    assert run["baselines"] == {}


def test_replay(bench_env):
    run = bench(bench_env, "replay", "--count", "300", "--accounts", "10")
    phase = run["streambank"]
    assert phase["events"] == 300 and phase["accounts"] == 10
    assert phase["views_match_fold"] is True
    # A batch writes each account's view once (its last version), so there are fewer view records than
    # events, and at least one per account.
    assert 10 <= phase["view_records"] <= 300
    assert run["baselines"]["plain_fold"]["records"] == 300
    assert run["baselines"]["plain_fold"]["accounts"] == 10
    assert run["baselines"]["kafka_consumer_perf"]["records"] == 300


def test_memory_of_a_worker_holding_accounts(bench_env):
    run = bench(bench_env, "memory", "--accounts", "400")
    assert run["accounts"] == 400
    assert run["table_entries"] == {"account_to_state": 800, "account_to_view": 400,
                                    "account_version_to_entry": 400, "customer_to_view": 100}
    assert run["changelog_records"] == 1700
    assert run["sampled_accounts_served"] == 200 and run["reads"] == 400
    assert run["reads_with_wrong_balance"] == 0
    assert run["table_partitions_restored_whole"] == 0  # started on the databases written for it
    assert 0 < run["worker_rss_mib_serving"] <= run["worker_peak_rss_mib"]


def test_soak_reports_memory_of_every_process_and_the_lag(bench_env):
    """Shape and counts only: a soak of 18 s at 40 commands/s (so no rate probe) with two workers."""
    done = subprocess.run([sys.executable, "-m", "streams.cli", "bench", "soak", "--minutes", "0.3", "--rate", "40",
                           "--workers", "2", "--accounts", "10", "--interval", "2", "--json"], env=bench_env, cwd=REPO,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["workload"] == "soak" and report["rate_source"] == "--rate" and report["rate"] == 40
    assert report["commands"] == report["deposits"] + report["transfers"] == report["outcomes"] > 0
    assert set(report["processes"]) == set(report["rss"]) == {"worker-1", "worker-2", "broker"}
    assert len(report["samples"]) >= 3
    for sample in report["samples"]:
        assert set(sample) == {"t", "rss_mb", "rocksdb_mb", "lag"}
        assert set(sample["rss_mb"]) == set(report["processes"])
        assert set(sample["rocksdb_mb"]) <= {"worker-1", "worker-2"}  # read from each worker's /metrics
    assert any(sample["rocksdb_mb"] for sample in report["samples"])
    for figures in report["rss"].values():
        assert 0 < figures["first_mb"] <= figures["max_mb"] and 0 < figures["last_mb"] <= figures["max_mb"]
        assert isinstance(figures["slope_mb_per_min"], float)
    for worker in ("worker-1", "worker-2"):
        figures = report["rss"][worker]
        assert 0 <= figures["rocksdb_last_mb"] <= figures["rocksdb_max_mb"] < figures["max_mb"]
    assert report["lag"]["max"] is not None and report["lag"]["max"] >= 0


def test_idle_reports_the_cpu_of_a_worker_with_nothing_to_do(bench_env):
    """Shape only: a worker settled for 1 s, measured for 3 s (no figure asserted: speed is the bench's)."""
    done = subprocess.run([sys.executable, "-m", "streams.cli", "bench", "idle", "--seconds", "3", "--settle", "1",
                           "--json"], env=bench_env, cwd=REPO, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["workload"] == "idle" and report["seconds"] >= 3 and report["settle_s"] == 1
    assert {"worker-1", "broker", "bench"} <= set(report["cpu_s"]) == set(report["percent_of_a_core"])
    assert report["cpu_s"]["worker-1"] >= 0 and report["target_percent_of_a_core"] == 2.0
