"""streams.dev.local_broker against a real Kafka 4.0.0 broker (KRaft).

Self-contained: uses its own BANK_HOME under tmp_path and base port 19192 (broker
127.0.0.1:19192, controller 29192), so it never collides with the session broker that
tests/integration/conftest.py runs on 9092.  The jar cache is shared: $BANK_KAFKA_LIBS if
set, else the repository's .bank/kafka/libs if it holds jars, else a fresh maven fetch.
"""
from __future__ import annotations

import os
import socket
import time
import uuid
from pathlib import Path

import pytest

from streams.dev import local_broker
from streams.dev.local_broker import KafkaLocalError

from conftest import PORT_SHIFT

pytestmark = pytest.mark.integration

BASE_PORT = 19192 + PORT_SHIFT
REPO_ROOT = Path(local_broker.__file__).resolve().parent.parent


def _libs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    env = os.environ.get(local_broker.LIBS_ENV)
    if env:
        return Path(env)
    repo_libs = REPO_ROOT / ".bank" / "kafka" / "libs"
    if (repo_libs / local_broker.VERSION_MARKER).exists():
        return repo_libs
    return tmp_path_factory.getbasetemp() / "kafka-libs"


@pytest.fixture(scope="module")
def kafka_env(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("kafkahome")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(local_broker.LIBS_ENV, str(_libs_dir(tmp_path_factory)))
        try:
            yield home
        finally:
            local_broker.stop(home, timeout=30)  # never leave a JVM behind


def _roundtrip(bootstrap: str, replication: int = 1) -> None:
    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = f"kafka-local-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=replication)])
    futures[topic].result(timeout=30)
    for _ in range(50):  # metadata reaches every broker a moment after CreateTopics returns
        parts = admin.list_topics(topic, timeout=10).topics[topic].partitions
        if parts and len(parts[0].isrs) == replication:
            break
        time.sleep(0.2)
    assert len(parts[0].replicas) == replication

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
    producer.produce(topic, key=b"acct-1", value=b"opened")
    assert producer.flush(30) == 0

    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"g-{topic}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    try:
        consumer.subscribe([topic])
        msg = None
        for _ in range(60):
            msg = consumer.poll(1.0)
            if msg is not None and msg.error() is None:
                break
        assert msg is not None and msg.error() is None, msg and msg.error()
        assert (msg.key(), msg.value()) == (b"acct-1", b"opened")
    finally:
        consumer.close()


def test_start_status_idempotent_roundtrip_stop(kafka_env: Path) -> None:
    home = kafka_env
    assert not local_broker.status(home, base_port=BASE_PORT).running

    st = local_broker.start(home, brokers=1, timeout=120, base_port=BASE_PORT)
    assert st.running and len(st.pids) == 1
    assert st.bootstrap_servers == f"127.0.0.1:{BASE_PORT}"
    assert st.version == "4.0.0"
    assert st.data_dir == home.resolve() / "kafka"
    assert (st.data_dir / "broker-1" / "data" / "meta.properties").exists()
    assert (st.data_dir / "broker-1" / "pid").read_text().strip() == str(st.pids[0])

    again = local_broker.status(home)
    assert again.running and again.pids == st.pids

    # idempotent: no second JVM
    st2 = local_broker.start(home, brokers=1, timeout=30, base_port=BASE_PORT)
    assert st2.pids == st.pids

    # a different broker count on the same data is refused clearly
    with pytest.raises(KafkaLocalError, match="reset"):
        local_broker.start(home, brokers=3, base_port=BASE_PORT)

    _roundtrip(st.bootstrap_servers)
    assert "Kafka Server started" in local_broker.logs(home, 10_000)

    stopped = local_broker.stop(home, timeout=30)
    assert stopped == st.pids
    after = local_broker.status(home)
    assert not after.running and after.pids == []
    assert not (st.data_dir / "broker-1" / "pid").exists()
    assert local_broker.stop(home) == []  # idempotent when nothing runs

    # restart on the same (already formatted) data
    st3 = local_broker.start(home, brokers=1, timeout=120, base_port=BASE_PORT)
    assert st3.running and st3.cluster_id == st.cluster_id
    local_broker.stop(home)


def test_port_in_use_is_reported(kafka_env: Path, tmp_path: Path) -> None:
    home = tmp_path / "busy"
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the previous broker left TIME_WAITs
        s.bind(("127.0.0.1", BASE_PORT))
        s.listen()
        with pytest.raises(KafkaLocalError, match=f"port {BASE_PORT}.*in use"):
            local_broker.start(home, brokers=1, timeout=30, base_port=BASE_PORT)
    assert not local_broker.status(home).running


def test_three_brokers_kill_and_restart_one(kafka_env: Path, tmp_path: Path) -> None:
    home = tmp_path / "three"
    try:
        st = local_broker.start(home, brokers=3, timeout=180, base_port=BASE_PORT)
        assert st.running and len(st.pids) == 3 and len(set(st.pids)) == 3
        assert st.bootstrap_servers == ",".join(f"127.0.0.1:{BASE_PORT + i}" for i in range(3))
        props = (home / "kafka" / "broker-2" / "server.properties").read_text()
        assert "min.insync.replicas=2" in props and "default.replication.factor=3" in props
        _roundtrip(st.bootstrap_servers, replication=3)

        killed = local_broker.kill(home, 2)
        assert killed == st.pids[1]
        degraded = local_broker.status(home)
        assert not degraded.running and degraded.nodes[2] is None and len(degraded.pids) == 2

        back = local_broker.start_one(home, 2, timeout=180)
        assert back.running and back.nodes[2] not in (None, killed)
        assert back.nodes[1] == st.pids[0] and back.nodes[3] == st.pids[2]
    finally:
        local_broker.stop(home, timeout=60)
    assert not local_broker.status(home).running
