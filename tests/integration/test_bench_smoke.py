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

from http_api import REPO

KAFKA_PORT = int(os.environ.get("BANK_TEST_BENCH_KAFKA_PORT", "19892"))
WEB_PORT = int(os.environ.get("BANK_TEST_BENCH_WEB_PORT", "17166"))


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
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert len(report["runs"]) == 1
    return report["runs"][0]


#: The Kafka Streams peer takes a Maven build (a minute, once per checkout): it is in the smoke run when
#: already built (bench/peers/kstreams/target) or when BANK_TEST_BENCH_KSTREAMS=1.
KSTREAMS = (REPO / "bench/peers/kstreams/target/classes").is_dir() or os.environ.get("BANK_TEST_BENCH_KSTREAMS") == "1"


def test_deposits_with_every_baseline(bench_env):
    run = bench(bench_env, "deposits", "--count", "60", "--accounts", "6", "--baseline-count", "200",
                *(() if KSTREAMS else ("--no-kstreams",)))
    phase = run["streambank"]
    assert phase["commands"] == phase["accepted"] == phase["events"] == 60
    assert phase["effects_never_visible"] == 0
    assert Decimal(phase["balance_total"]) == Decimal(phase["expected_balance_total"]) == Decimal("60.00")
    assert phase["latency"]["count"] == 60
    assert {"bench", "worker-1"} <= set(phase["cpu_s"])
    plain = run["baselines"]["plain_loop"]
    assert plain["commands"] == plain["accepted"] == plain["events"] == 60
    assert Decimal(plain["balance_total"]) == Decimal("60.00")
    assert run["baselines"]["bare_loop"]["consumed"] == 200
    assert run["baselines"]["kafka_producer_perf"]["records"] == 200
    assert run["baselines"]["kafka_consumer_perf"]["records"] == 200
    expected = {"streambank/plain_loop", "streambank/bare_loop", "streambank/kafka_producer_perf",
                "streambank/kafka_consumer_perf"}
    if KSTREAMS:
        peer = run["baselines"]["kstreams_peer"]
        assert peer["commands"] == peer["accepted"] == peer["events"] == 60
        assert Decimal(peer["balance_total"]) == Decimal("60.00")
        expected.add("streambank/kstreams_peer")
    assert set(run["ratios"]) == expected


def test_transfers(bench_env):
    run = bench(bench_env, "transfers", "--count", "40", "--accounts", "5", "--no-baselines")
    phase = run["streambank"]
    assert phase["terminal"] == 40
    assert sum(phase["states"].values()) == 40
    assert set(phase["states"]) <= {"COMPLETED", "FAILED", "REFUNDED"}
    assert phase["outcomes"].get("TransferMoney/ACCEPTED") == 40
    assert Decimal(phase["balance_total"]) == Decimal(phase["expected_balance_total"]) == Decimal("5000.00")


def test_latency_at_fixed_rates(bench_env):
    run = bench(bench_env, "latency", "--count", "30", "--accounts", "3", "--rates", "50,100", "--no-baselines")
    phases = run["streambank"]
    assert [p["rate_target_per_s"] for p in phases] == [50.0, 100.0]
    for phase in phases:
        assert phase["commands"] == phase["accepted"] == phase["events"] == phase["latency"]["count"] == 30
    assert Decimal(phases[-1]["balance_total"]) == Decimal("60.00")


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
        assert set(sample) == {"t", "rss_mb", "lag"}
        assert set(sample["rss_mb"]) == set(report["processes"])
    for figures in report["rss"].values():
        assert 0 < figures["first_mb"] <= figures["max_mb"] and 0 < figures["last_mb"] <= figures["max_mb"]
        assert isinstance(figures["slope_mb_per_min"], float)
    assert report["lag"]["max"] is not None and report["lag"]["max"] >= 0
