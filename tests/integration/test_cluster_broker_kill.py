"""A real three-broker cluster (replication 3, min.insync.replicas 2): one broker is killed with -9 during
a transfer storm and brought back; nothing is lost and every invariant holds."""
from __future__ import annotations

import time

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from faults import CLUSTER_KAFKA_PORT, bank_verify, own_kafka, own_workers, quiesce, storm_through
from streams.dev import local_broker
from streams import topology
from streams.contract import topics
from streams.client import BankClient, OutcomeReader
from streams.domain.transfers import TERMINAL
from streams.dev.traffic import open_accounts

ACCOUNTS = 30
TRANSFERS = 600
RATE = 100
VICTIM = 2  # broker index; every partition has a replica on it (replication 3 of 3)


def replication_of_every_topic(settings) -> dict[str, tuple[set[int], str]]:
    """topic -> (replication factors of its partitions, its min.insync.replicas)."""
    admin = AdminClient(settings.confluent_config())
    metadata = admin.list_topics(timeout=30)
    names = [name for name in metadata.topics if not name.startswith("__")]
    resources = [ConfigResource(ConfigResource.Type.TOPIC, name) for name in names]
    configs = {resource.name: future.result(30)
               for resource, future in admin.describe_configs(resources, request_timeout=30).items()}
    return {name: ({len(p.replicas) for p in metadata.topics[name].partitions.values()},
                   configs[name]["min.insync.replicas"].value) for name in names}


@pytest.mark.timeout(400)
def test_a_broker_killed_mid_storm_in_a_three_broker_cluster_loses_nothing(tmp_path):
    with own_kafka(tmp_path, brokers=3, base_port=CLUSTER_KAFKA_PORT) as settings, \
            own_workers(settings) as workers:
        client, reader = BankClient(settings), OutcomeReader(settings)
        ledger = open_accounts(client, reader, "cust-cluster", ACCOUNTS, zero_every=8)

        replication = replication_of_every_topic(settings)
        wanted = {spec.name for spec in topics.ALL_TOPICS} | {topics.changelog_topic(t) for t in topology.TABLES}
        assert wanted <= set(replication), wanted - set(replication)
        # Every topic, the workers' own (Faust's leader topic) included, is replicated 3 times with min ISR 2.
        assert {name: r for name, r in replication.items() if r != ({3}, "2")} == {}

        kills: list[tuple[int, float, float]] = []

        def kill_and_restart():
            time.sleep(3)
            down = time.monotonic()
            pid = local_broker.kill(settings.home, VICTIM)
            assert pid is not None, "the victim broker was not running"
            time.sleep(4)
            local_broker.start_one(settings.home, VICTIM, timeout=120)
            kills.append((pid, down, time.monotonic()))

        storm, resent, storm_started = storm_through(kill_and_restart, client, reader, ledger, TRANSFERS, seed=9,
                                                     rate=RATE)
        assert local_broker.status(settings.home).running, "all three brokers are back"
        client.close()
        reader.close()

        report = quiesce(settings, workers)
        pid, down, up = kills[0]
        print(f"\ncluster: {TRANSFERS} transfers, broker {VICTIM} (pid {pid}) killed -9 and back after {up - down:.0f}s, "
              f"client resends {resent}; {time.monotonic() - storm_started:.0f}s from the first transfer to quiescence; "
              f"{report.summary_line()}")
        assert report.violations == []
        assert sum(report.transfers.values()) == TRANSFERS and set(report.transfers) <= set(TERMINAL)
        assert report.total_balance == ledger.total
        done = bank_verify(settings)
        assert done.returncode == 0, done.stdout + done.stderr
