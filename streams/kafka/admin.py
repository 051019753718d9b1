"""Topic administration with confluent-kafka."""
from __future__ import annotations

import logging

from confluent_kafka.admin import AdminClient, NewTopic

from ..contract import topics
from ..config import Settings
from ..topology import TABLES

log = logging.getLogger(__name__)


def topic_config(spec: topics.TopicSpec, settings: Settings) -> dict:
    config = {"retention.ms": "-1"}  # the log is the source of truth: keep it
    if spec.compacted:
        config = {"cleanup.policy": "compact"}
    if settings.replication_factor >= 3:
        config["min.insync.replicas"] = "2"
    return config


def create_topics(settings: Settings, timeout: float = 30.0) -> tuple[list[str], list[str]]:
    """Creates every topic of `streams.topics` that does not exist; returns (created, existing)."""
    admin = AdminClient(settings.confluent_config())
    try:
        existing = set(admin.list_topics(timeout=timeout).topics)
    except Exception as exc:
        raise RuntimeError(f"cannot reach Kafka at {settings.bootstrap_servers}: {exc}") from None
    wanted = [NewTopic(spec.name, num_partitions=settings.partitions, replication_factor=settings.replication_factor,
                       config=topic_config(spec, settings)) for spec in topics.ALL_TOPICS if spec.name not in existing]
    # The tables' changelogs too: a worker assigning partitions before they exist leaves them unowned
    # (and every GET routed to them answers 503) until the next rebalance.
    changelog_config = {"cleanup.policy": "compact"}
    if settings.replication_factor >= 3:
        changelog_config["min.insync.replicas"] = "2"
    wanted += [NewTopic(topics.changelog_topic(table), num_partitions=settings.partitions,
                        replication_factor=settings.replication_factor, config=dict(changelog_config))
               for table in TABLES if topics.changelog_topic(table) not in existing]
    created = []
    if wanted:
        futures = admin.create_topics(wanted, operation_timeout=timeout, request_timeout=timeout)
        for name, future in futures.items():
            try:
                future.result()
                created.append(name)
            except Exception as exc:
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise RuntimeError(f"cannot create {name}: {exc}") from None
    every = [spec.name for spec in topics.ALL_TOPICS] + [topics.changelog_topic(t) for t in TABLES]
    return created, sorted(name for name in every if name in existing)


def purge_processed_commands(settings, group: str, topic: str, partitions, timeout: float = 15.0,
                             admin=None) -> dict[int, int]:
    """Deletes the records of `topic` that `group` has already processed (before its committed offset).

    Commands are transient: their effects are in the events, and the dedup records in the tables. A
    plaintext `CreateCustomer` (the contract lets any producer write one) so leaves the commands topic
    once processed. Returns partition → the new start offset.
    """
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
    from confluent_kafka.admin import AdminClient

    admin = admin or AdminClient(settings.confluent_config())
    wanted = [TopicPartition(topic, p) for p in partitions]
    listed = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group, wanted)],
                                               request_timeout=timeout)
    committed = [tp for tp in listed[group].result(timeout).topic_partitions if tp.offset > 0]
    if not committed:
        return {}
    done = {}
    for tp, future in admin.delete_records(committed, request_timeout=timeout, operation_timeout=timeout).items():
        done[tp.partition] = future.result(timeout).low_watermark
    log.info("purged the processed records of %s[%d] before offset %d", topic, tp.partition, done[tp.partition])
    return done
