"""The Confluent wire format against the real Schema Registry (Apicurio) and broker.

`bank schemas register` accepts today's history and refuses an incompatible change; a Deposit sent with
confluent-kafka's own AvroSerializer takes effect; AvroDeserializer reads the events the workers write with
BANK_RECORD_FORMAT=confluent; framed records that cannot be read (unknown id, another type, registry
down) are dead letters and the partition keeps going; the views rebuilt over a log that holds both formats
(within one account) are right; and a registry stopped and started again still resolves every id.
"""
from __future__ import annotations

import json
import shutil
import struct
import time
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient, record_subject_name_strategy
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from streams.contract import topics
from streams.dev import local_registry
from streams.contract.avro import SCHEMA_DIR, Codec
from streams.domain.accounts import Deposit, MoneyDeposited

from conftest import REGISTRY_PORT, wait_until_serving
from test_poison import bank, produce, wait_for

COMMANDS = topics.ACCOUNT_COMMANDS.name
EVENTS = topics.ACCOUNT_EVENTS.name
DEPOSIT_SCHEMA = (SCHEMA_DIR / "streambank.account.Deposit.avsc").read_text()


def restart(workers, record_format: str | None) -> None:
    for worker in workers:
        worker.stop()
    for worker in workers:
        if record_format:
            worker.env["BANK_RECORD_FORMAT"] = record_format
        else:
            worker.env.pop("BANK_RECORD_FORMAT", None)
        worker.start()
    wait_until_serving(workers)


@pytest.fixture(scope="module")
def sr(registry) -> SchemaRegistryClient:
    return SchemaRegistryClient({"url": registry.url})


@pytest.fixture(scope="module")
def mixed(api, workers, registry):
    """An account with single-object events, then the workers writing the Confluent format."""
    result = bank(workers[0].settings, "schemas", "register")
    assert result.returncode == 0, result.stdout + result.stderr
    customer_id = api.create_customer()
    account_id = api.open_account(customer_id, initial_balance="10.00")
    assert api.accepted(f"/api/accounts/{account_id}/deposits", {"amount": "1.00"})
    restart(workers, "confluent")
    yield {"customer_id": customer_id, "account_id": account_id}
    restart(workers, None)


def read_events(settings, account_id: str, timeout: float = 30) -> list[bytes]:
    """Every value of the account's events, in order (the topic read to its end)."""
    consumer = Consumer(settings.consumer_config(**{"group.id": f"test-sr-{uuid.uuid4().hex}",
                                                    "enable.auto.commit": False}))
    try:
        partitions = list(consumer.list_topics(EVENTS, timeout=10).topics[EVENTS].partitions)
        highs = {p: consumer.get_watermark_offsets(TopicPartition(EVENTS, p), timeout=10, cached=False)[1]
                 for p in partitions}
        consumer.assign([TopicPartition(EVENTS, p, OFFSET_BEGINNING) for p in partitions])
        values, deadline = [], time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in consumer.consume(500, 0.5):
                if not message.error() and message.key() == account_id.encode():
                    values.append(message.value())
            positions = consumer.position([TopicPartition(EVENTS, p) for p in partitions])
            if all(tp.offset >= highs[tp.partition] or highs[tp.partition] == 0 for tp in positions):
                return values
        raise AssertionError("did not read the events topic to its end")
    finally:
        consumer.close()


def test_schemas_register_accepts_todays_history_and_refuses_an_incompatible_change(workers, registry, tmp_path):
    settings = workers[0].settings
    first = bank(settings, "schemas", "register", "--json")
    assert first.returncode == 0, first.stdout + first.stderr
    rows = [json.loads(line) for line in first.stdout.splitlines()]
    assert len(rows) == len(list(SCHEMA_DIR.glob("*.avsc"))) and all(r["ok"] for r in rows)
    again = bank(settings, "schemas", "register", "--check")
    assert again.returncode == 0 and "already registered" in again.stdout

    changed = tmp_path / "schemas"
    shutil.copytree(SCHEMA_DIR, changed)
    schema = json.loads(DEPOSIT_SCHEMA)
    # (amount as a string would pass: Avro promotes bytes and string into each other)
    next(f for f in schema["fields"] if f["name"] == "account_id")["type"] = "long"
    (changed / "streambank.account.Deposit.avsc").write_text(json.dumps(schema))
    for mode in (["--check"], []):
        refused = bank(settings, "schemas", "register", "--dir", str(changed), *mode)
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert "REFUSED streambank.account.Deposit.avsc" in refused.stdout
    client = SchemaRegistryClient({"url": registry.url})
    assert client.get_compatibility("streambank.account.Deposit") == "BACKWARD"
    assert client.get_versions("streambank.account.Deposit") == [1, 2], "the refused version was not registered"


def test_a_deposit_sent_with_confluents_avro_serializer_takes_effect(api, mixed, sr, workers):
    account_id = mixed["account_id"]
    serialize = AvroSerializer(sr, DEPOSIT_SCHEMA, conf={"subject.name.strategy": record_subject_name_strategy,
                                                         "auto.register.schemas": False})
    command_id = str(uuid.uuid4())
    value = serialize({"command_id": command_id, "account_id": account_id, "amount": Decimal("2.50"),
                       "expected_version": None}, SerializationContext(COMMANDS, MessageField.VALUE))
    assert value[0] == 0
    produce(workers[0].settings, COMMANDS, [(account_id, value, None)])
    assert api.get(f"/api/commands/{command_id}", wait=30).json()["status"] == "ACCEPTED"
    wait_for(lambda: api.get(f"/api/accounts/{account_id}").json().get("balance") == "13.50",
             what="the AvroSerializer deposit")


def test_confluents_avro_deserializer_reads_the_events_the_workers_write(api, mixed, sr, workers):
    customer_id = mixed["customer_id"]
    account_id = api.open_account(customer_id, initial_balance="5.00")
    api.accepted(f"/api/accounts/{account_id}/deposits", {"amount": "0.25"})
    values = wait_for(lambda: (v := read_events(workers[0].settings, account_id)) and len(v) >= 2 and v,
                      what="the account's events")
    deserialize = AvroDeserializer(sr)
    decoded = [deserialize(v, SerializationContext(EVENTS, MessageField.VALUE)) for v in values]
    assert all(v[0] == 0 for v in values)
    assert decoded[0]["initial_balance"] == Decimal("5.00") and decoded[0]["version"] == 1
    assert (decoded[1]["amount"], decoded[1]["balance"], decoded[1]["version"]) == (Decimal("0.25"), Decimal("5.25"), 2)


def test_framed_records_that_cannot_be_read_are_dead_letters_and_the_partition_goes_on(api, mixed, workers, registry):
    settings = workers[0].settings
    account_id = mixed["account_id"]
    codec = Codec()  # the session's registry, from the environment
    event_id = codec.schema_id(MoneyDeposited)
    event = codec.encode(MoneyDeposited(event_id="x.0", aggregate_id=account_id, version=99, command_id="x",
                                        occurred_at=0, amount=Decimal("1000.00"), balance=Decimal("1000.00")))
    unknown = b"\x00" + struct.pack(">I", 7_654_321) + b"\x02x"
    # A Deposit variant with a field of its own, registered now, so that no worker has its id cached.
    variant = json.loads(DEPOSIT_SCHEMA)
    variant["fields"].append({"name": "channel", "type": "string", "default": "web"})
    variant_id = SchemaRegistryClient({"url": registry.url}).register_schema(
        "streambank.account.Deposit", Schema(json.dumps(variant), "AVRO"))
    down_id, good_id, first_id = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    while_down = AvroSerializer(SchemaRegistryClient({"url": registry.url}), json.dumps(variant),
                                conf={"subject.name.strategy": record_subject_name_strategy,
                                      "auto.register.schemas": False})(
        {"command_id": down_id, "account_id": account_id, "amount": Decimal("100.00"), "expected_version": None,
         "reference": "", "channel": "app"}, SerializationContext(COMMANDS, MessageField.VALUE))
    assert struct.unpack(">I", while_down[1:5])[0] == variant_id
    first = codec.encode(Deposit(command_id=first_id, account_id=account_id, amount=Decimal("0.25")))
    good = codec.encode(Deposit(command_id=good_id, account_id=account_id, amount=Decimal("0.50")))
    before = api.get(f"/api/accounts/{account_id}").json()["balance"]

    # With the registry up: an id it does not know, and an event's id where a command belongs.
    delivered = produce(settings, COMMANDS, [(account_id, v, None) for v in (unknown, event, first)])
    assert api.get(f"/api/commands/{first_id}", wait=60).json()["status"] == "ACCEPTED"
    # With the registry down: an id it knows but no worker has cached.
    local_registry.stop(settings.home)
    try:
        delivered += produce(settings, COMMANDS, [(account_id, v, None) for v in (while_down, good)])
        assert api.get(f"/api/commands/{good_id}", wait=60).json()["status"] == "ACCEPTED"
    finally:
        local_registry.start(settings.home, port=REGISTRY_PORT)
    assert api.get(f"/api/accounts/{account_id}").json()["balance"] == str(Decimal(before) + Decimal("0.75"))
    assert api.get(f"/api/commands/{down_id}").json()["status"] == "PENDING"

    offsets = {delivered[i][1]: name for i, name in ((0, "unknown"), (1, "event"), (3, "down"))}

    def parked():
        result = bank(settings, "deadletter", "list", "--json")
        assert result.returncode == 0, result.stderr
        rows = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
        ours = {offsets[r["offset"]]: r["error"] for r in rows
                if r["topic"] == COMMANDS and r["partition"] == delivered[0][0] and r["offset"] in offsets}
        return ours if len(ours) == 3 else None

    errors = wait_for(parked, what="three dead letters")
    assert "schema id 7654321" in errors["unknown"] and "no schema id" in errors["unknown"]
    assert errors["event"] == f"MoneyDeposited does not belong on {COMMANDS}", (event_id, errors)
    assert f"schema id {variant_id}" in errors["down"] and "unreachable" in errors["down"], errors

    # With the registry back, the parked record reads again and is replayed (the two others are refused).
    replayed = bank(settings, "deadletter", "replay", "--topic", COMMANDS, "--json")
    assert replayed.returncode in (0, 1), replayed.stdout + replayed.stderr
    assert api.get(f"/api/commands/{down_id}", wait=30).json()["status"] == "ACCEPTED"


def test_a_view_rebuild_over_both_formats_and_a_restarted_registry_resolve_every_id(api, mixed, workers, registry):
    settings = workers[0].settings
    account_id = mixed["account_id"]
    values = read_events(settings, account_id)
    assert {v[0] for v in values} == {0xC3, 0x00}, "the account's log holds both formats"
    expected = api.get(f"/api/accounts/{account_id}").json()

    local_registry.stop(settings.home)
    local_registry.start(settings.home, port=REGISTRY_PORT)
    fresh = Codec()  # a new process's codec: it knows no id until it asks the restarted registry
    decoded = [fresh.decode(v) for v in values]
    assert [e.version for e in decoded] == list(range(1, len(decoded) + 1))

    rebuilt = bank(settings, "replay", "views", "--view", "accounts", "--json", "--no-progress", timeout=600)
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    view = api.get(f"/api/accounts/{account_id}", min_version=expected["version"], wait=30).json()
    assert (view["balance"], view["version"]) == (expected["balance"], expected["version"])
    verified = bank(settings, "verify", "--json", timeout=300)
    assert verified.returncode == 0, verified.stdout + verified.stderr
