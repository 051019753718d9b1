"""Transfers, the email registry and duplicate delivery, against the real broker and workers."""
from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition

from streams.contract import topics
from streams.contract.topics import partition_for
from streams.client import BankClient, OutcomeReader
from streams.contract.avro import Codec, DecodeError


def wait_terminal(api, transfer_id: str, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        view = api.get(f"/api/transfers/{transfer_id}", wait=5).json()  # waits only until the view exists
        if view.get("state") in ("COMPLETED", "FAILED", "REFUNDED"):
            return view
        time.sleep(0.05)
    steps = {step: api.get(f"/api/commands/{transfer_id}.{step}").json() for step in ("debit", "credit", "refund")}
    raise AssertionError(f"transfer {transfer_id} not terminal: {view}; steps: {steps}")


def balance(api, account_id: str, min_version: int = 1) -> str:
    return api.get(f"/api/accounts/{account_id}", min_version=min_version, wait=10).json()["balance"]


def test_a_transfer_moves_money_and_shows_in_both_histories(api):
    customer = api.create_customer()
    source, target = api.open_account(customer, "100.00"), api.open_account(customer, "5.00")
    started = api.accepted("/api/transfers", {"from_account_id": source, "to_account_id": target,
                                             "amount": "40.00", "description": "rent"})
    view = wait_terminal(api, started["transfer_id"])
    assert (view["state"], view["amount"], view.get("reason")) == ("COMPLETED", "40.00", None)
    assert (balance(api, source, 2), balance(api, target, 2)) == ("60.00", "45.00")
    legs = [(e["entry_type"], e["amount"], e["transfer_id"])
            for account in (source, target)
            for e in api.get(f"/api/accounts/{account}/history").json()["entries"] if e["transfer_id"]]
    assert legs == [("AccountDebited", "-40.00", started["transfer_id"]),
                    ("AccountCredited", "40.00", started["transfer_id"])]


def test_a_transfer_beyond_the_source_balance_fails_and_moves_nothing(api):
    customer = api.create_customer()
    source, target = api.open_account(customer, "10.00"), api.open_account(customer, "0.00")
    started = api.accepted("/api/transfers", {"from_account_id": source, "to_account_id": target, "amount": "10.01"})
    view = wait_terminal(api, started["transfer_id"])
    assert (view["state"], view["reason"]) == ("FAILED", "INSUFFICIENT_FUNDS")
    assert (balance(api, source), balance(api, target)) == ("10.00", "0.00")


def test_a_transfer_to_a_closed_or_unknown_account_is_refunded(api):
    customer = api.create_customer()
    source, closed = api.open_account(customer, "50.00"), api.open_account(customer, "0.00")
    assert api.request("DELETE", f"/api/accounts/{closed}", params={"wait": "20"}).json()["status"] == "ACCEPTED"
    for target, reason in ((closed, "ACCOUNT_CLOSED"), (f"missing-{uuid.uuid4()}", "ACCOUNT_NOT_FOUND")):
        started = api.accepted("/api/transfers", {"from_account_id": source, "to_account_id": target,
                                                 "amount": "20.00"})
        view = wait_terminal(api, started["transfer_id"])
        assert (view["state"], view["reason"]) == ("REFUNDED", reason)
    assert balance(api, source, 5) == "50.00"
    assert balance(api, closed) == "0.00"


def test_bad_transfers_get_a_4xx(api):
    customer = api.create_customer()
    account = api.open_account(customer, "1.00")
    same = api.post("/api/transfers", {"from_account_id": account, "to_account_id": account, "amount": "1.00"})
    assert (same.status_code, same.json()["error"]["code"]) == (400, "SAME_ACCOUNT")
    zero = api.post("/api/transfers", {"from_account_id": account, "to_account_id": "x", "amount": "0.00"})
    assert (zero.status_code, zero.json()["error"]["code"]) == (400, "INVALID_AMOUNT")
    assert api.get(f"/api/transfers/{uuid.uuid4()}").status_code == 404


def ids_on_different_partitions(partitions: int) -> tuple[str, str]:
    first = f"cust-{uuid.uuid4()}"
    while True:
        second = f"cust-{uuid.uuid4()}"
        if partition_for(second.encode(), partitions) != partition_for(first.encode(), partitions):
            return first, second


def test_two_customers_racing_for_one_email_on_different_partitions_exactly_one_wins(api, kafka):
    email = f"race.{uuid.uuid4().hex[:8]}@example.com"
    first, second = ids_on_different_partitions(kafka.partitions)
    reader = OutcomeReader(kafka)
    client = BankClient(kafka)
    try:
        sent = [client.create_customer("Race", name, email, customer_id=customer_id)
                for name, customer_id in (("One", first), ("Two", second))]
        client.flush()
        outcomes = reader.wait([ids.command_id for ids in sent], timeout=30)
    finally:
        reader.close()
    results = sorted((o.status, o.reason) for o in outcomes.values())
    assert results == [("ACCEPTED", None), ("REJECTED", "EMAIL_TAKEN")]
    winner = next(o.aggregate_id for o in outcomes.values() if o.status == "ACCEPTED")
    assert api.get("/api/customers", email=email, wait=10).json()["customer_id"] == winner


def read_raw(settings, topic: str, limit: int) -> list[tuple[bytes, bytes]]:
    consumer = Consumer(settings.confluent_config(**{"group.id": f"raw-{uuid.uuid4()}", "enable.auto.commit": False}))
    records = []
    try:
        for partition in range(settings.partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            if high > low:
                consumer.assign([TopicPartition(topic, partition, low)])
                while len(records) < limit * (partition + 1):
                    batch = consumer.consume(500, timeout=5)
                    if not batch:
                        break
                    records.extend((m.key(), m.value()) for m in batch if m.error() is None and m.offset() < high)
                    if batch[-1].offset() >= high - 1:
                        break
    finally:
        consumer.close()
    return records[: limit * settings.partitions]


def test_re_producing_already_processed_commands_changes_nothing(api, kafka):
    customer = api.create_customer()
    source, target = api.open_account(customer, "80.00"), api.open_account(customer, "0.00")
    api.accepted(f"/api/accounts/{source}/deposits", {"amount": "20.00"})
    transfer = api.accepted("/api/transfers", {"from_account_id": source, "to_account_id": target, "amount": "30.00"})
    wait_terminal(api, transfer["transfer_id"])
    before = {account: api.get(f"/api/accounts/{account}", min_version=3 if account == source else 2,
                                wait=10).json() for account in (source, target)}

    codec = Codec()

    def a_command_of(spec: topics.TopicSpec, value: bytes) -> bool:
        """Other tests park poison on these topics too (garbage, events): those get no outcome."""
        try:
            return isinstance(codec.decode(value), spec.values)
        except DecodeError:
            return False

    # This test's own commands, wherever they sit: earlier tests may have written thousands before them.
    ours = {source.encode(), target.encode(), transfer["transfer_id"].encode()}
    duplicates = [(spec.name, key, value) for spec in (topics.ACCOUNT_COMMANDS, topics.TRANSFER_COMMANDS)
                  for key, value in read_raw(kafka, spec.name, 1_000_000) if key in ours and a_command_of(spec, value)]
    assert any(key == source.encode() for _, key, _ in duplicates)
    command_ids = {codec.decode(value).command_id for _, _, value in duplicates}
    reader = OutcomeReader(kafka)
    producer = Producer({"bootstrap.servers": kafka.bootstrap_servers, "partitioner": "murmur2_random"})
    for topic, key, value in duplicates:
        producer.produce(topic, key=key, value=value)
    assert producer.flush(30) == 0
    # Every duplicate gets its first outcome re-emitted: seeing them all means all were handled.
    assert len(reader.wait(command_ids, timeout=60)) == len(command_ids)
    reader.close()
    after = {account: api.get(f"/api/accounts/{account}").json() for account in (source, target)}
    assert after == before
    assert wait_terminal(api, transfer["transfer_id"])["state"] == "COMPLETED"
