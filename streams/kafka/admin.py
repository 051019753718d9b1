"""Topic and group administration with confluent-kafka."""
from __future__ import annotations

import logging
import time

from dataclasses import dataclass

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicCollection, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

from ..contract import topics
from ..config import Settings
from ..topology import TABLES
from .reader import quiet_logger

log = logging.getLogger(__name__)


class AdminError(RuntimeError):
    """An administrative request failed; the message says which and why."""


def topic_config(spec: topics.TopicSpec, settings: Settings) -> dict:
    config = {"retention.ms": "-1"}  # the log is the source of truth: keep it
    if spec.compacted:
        config = {"cleanup.policy": "compact"}
    if settings.replication_factor >= 3:
        config["min.insync.replicas"] = "2"
    return config


def create_topics(settings: Settings, timeout: float = 30.0) -> tuple[list[str], list[str]]:
    """Creates every topic of `streams.contract.topics` that does not exist; returns (created, existing)."""
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


def committed_behind(settings: Settings, group: str, topic: str, ends: dict[int, int]) -> int:
    """How many records of `topic` before `ends` (partition → offset) `group` has not committed yet."""
    admin = AdminClient(settings.confluent_config())
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in ends])
    result = admin.list_consumer_group_offsets([request], request_timeout=15)[group].result(timeout=20)
    behind = 0
    for tp in result.topic_partitions:
        committed = tp.offset if tp.offset is not None and tp.offset >= 0 else 0
        behind += max(0, ends[tp.partition] - committed)
    return behind


def group_members(settings: Settings, group: str) -> int:
    """Members of the consumer group `group` (0 when none runs). Raises AdminError."""
    admin = AdminClient(settings.confluent_config())
    try:
        described = admin.describe_consumer_groups([group], request_timeout=15)[group].result(timeout=20)
    except Exception as exc:
        if "GROUP_ID_NOT_FOUND" in str(exc):
            return 0
        raise AdminError(f"cannot describe the workers' group: {exc}") from None
    return len(described.members or [])


def recreate_changelogs(settings: Settings, timeout: float = 180.0) -> None:
    """Deletes every table changelog topic and creates it again, empty. Raises AdminError."""
    admin = AdminClient(settings.confluent_config())
    names = [topics.changelog_topic(t) for t in TABLES]
    existing = set(admin.list_topics(timeout=30).topics)
    doomed = [n for n in names if n in existing]
    if doomed:
        for name, future in admin.delete_topics(doomed, operation_timeout=60, request_timeout=60).items():
            try:
                future.result()
            except Exception as exc:
                if "UNKNOWN_TOPIC" not in str(exc):
                    raise AdminError(f"cannot delete {name}: {exc}") from None
    deadline = time.monotonic() + timeout
    while doomed:  # deletion finishes in the background: wait until they are gone before creating any
        existing = set(admin.list_topics(timeout=30).topics)
        doomed = [n for n in doomed if n in existing]
        if doomed and time.monotonic() > deadline:
            raise AdminError(f"the changelog topics were not deleted in {timeout:g}s: {', '.join(doomed)}")
        if doomed:
            time.sleep(1)
    last_error = None
    while True:  # creating right after a deletion may still fail for a moment: retry
        try:
            create_topics(settings)
            if set(names) <= set(admin.list_topics(timeout=30).topics):
                return
        except Exception as exc:
            last_error = exc
        if time.monotonic() > deadline:
            raise AdminError(f"the changelog topics could not be created in {timeout:g}s: {last_error}")
        time.sleep(1)


def ensure_topic(settings: Settings, name: str, *, partitions: int, compacted: bool, timeout: float = 30.0) -> None:
    """Creates the topic `name` unless it exists (topics made on demand, outside `streams.contract.topics`)."""
    admin = AdminClient(settings.confluent_config())
    try:
        existing = admin.list_topics(timeout=timeout).topics
    except Exception as exc:
        raise AdminError(f"cannot reach Kafka at {settings.bootstrap_servers}: {exc}") from None
    if name in existing:
        return
    config = {"cleanup.policy": "compact"} if compacted else {}
    if settings.replication_factor >= 3:
        config["min.insync.replicas"] = "2"
    futures = admin.create_topics([NewTopic(name, num_partitions=partitions,
                                            replication_factor=settings.replication_factor, config=config)],
                                  operation_timeout=timeout, request_timeout=timeout)
    try:
        futures[name].result()
    except Exception as exc:
        if "TOPIC_ALREADY_EXISTS" not in str(exc):
            raise AdminError(f"cannot create {name}: {exc}") from None


def _retrying(call, timeout: float):
    """`call()`, again while Kafka answers with a retriable error (a fresh broker has no group coordinator
    yet and new topics no leader for a moment), for at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            retriable = getattr(error, "retriable", lambda: False)() or getattr(error, "name", lambda: "")() in (
                "NOT_COORDINATOR", "COORDINATOR_LOAD_IN_PROGRESS", "COORDINATOR_NOT_AVAILABLE",
                "NOT_LEADER_FOR_PARTITION", "LEADER_NOT_AVAILABLE")
            if not retriable or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@dataclass
class ClusterState:
    """What `bank status` shows of the cluster: its metadata, each partition's end offset, the consumer
    group's description and its committed offsets."""

    metadata: object  # confluent-kafka's ClusterMetadata
    ends: dict[tuple[str, int], int]
    group: object  # confluent-kafka's ConsumerGroupDescription
    committed: dict[tuple[str, int], int]


def cluster_state(settings: Settings, group: str, timeout: float = 10.0) -> ClusterState:
    """Raises AdminError when Kafka does not answer (the message says at which step)."""
    admin = AdminClient(settings.confluent_config(logger=quiet_logger()))
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise AdminError(f"cannot reach Kafka at {settings.bootstrap_servers}: {exc}") from None
    names = sorted(name for name in metadata.topics if not name.startswith("__"))
    partitions = [TopicPartition(name, p) for name in names for p in sorted(metadata.topics[name].partitions)]
    ends: dict[tuple[str, int], int] = {}
    try:
        if partitions:
            def end_offsets():
                futures = admin.list_offsets({tp: OffsetSpec.latest() for tp in partitions}, request_timeout=timeout)
                return {(tp.topic, tp.partition): future.result().offset for tp, future in futures.items()}
            ends = _retrying(end_offsets, timeout)
    except KafkaException as exc:
        raise AdminError(f"cannot read the end offsets: {exc}") from None

    try:
        described = _retrying(lambda: admin.describe_consumer_groups([group], request_timeout=timeout)[group].result(),
                              timeout)
        committed_list = _retrying(lambda: admin.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(group)], request_timeout=timeout)[group].result().topic_partitions, timeout)
    except KafkaException as exc:
        raise AdminError(f"cannot describe the consumer group {group}: {exc}") from None
    committed = {(tp.topic, tp.partition): tp.offset for tp in committed_list or () if tp.offset >= 0}
    return ClusterState(metadata, ends, described, committed)


def metadata_brokers(bootstrap: str, timeout: float) -> set[int] | None:
    """Ids of the brokers in the cluster metadata, or None if nobody answers (the local broker's readiness)."""
    client = AdminClient({
        "bootstrap.servers": bootstrap,
        "socket.connection.setup.timeout.ms": 2000,
        "reconnect.backoff.ms": 100,
        "reconnect.backoff.max.ms": 500,
        "log_level": 0,  # connection-refused noise while the broker boots
    })
    try:
        md = client.list_topics(timeout=timeout)
    except KafkaException:
        return None
    return set(md.brokers)


def topic_ids(settings: Settings, names: list[str], timeout: float = 30.0) -> dict[str, str]:
    """Each topic's id: a topic deleted and created again under the same name gets a new one."""
    if not names:
        return {}
    admin = AdminClient(settings.confluent_config(logger=quiet_logger()))
    futures = admin.describe_topics(TopicCollection(sorted(set(names))), request_timeout=timeout)
    return {name: str(future.result(timeout).topic_id) for name, future in futures.items()}
