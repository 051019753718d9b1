"""Poison records on a command topic: the worker keeps going, parks what it cannot read, rejects what is
invalid; `bank deadletter list` shows the parked records and `bank deadletter replay` replays a fixed one once."""
from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import uuid
from decimal import Decimal

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from streams.contract import topics
from streams.contract.avro import MAGIC, Codec, DecodeError
from streams.domain.accounts import AccountOpened, Deposit

from http_api import REPO

COMMANDS = topics.ACCOUNT_COMMANDS.name


def bank(settings, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers}
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=timeout)


def produce(settings, topic: str, records: list[tuple[str, bytes, list | None]], **config) -> list[tuple[int, int]]:
    """(key, value, headers) each → (partition, offset) from the delivery reports, in order."""
    producer = Producer(settings.confluent_config(partitioner="murmur2_random",
                                                  **{"enable.idempotence": True, **config}))
    delivered: dict[int, tuple[int, int]] = {}
    for index, (key, value, headers) in enumerate(records):
        def on_delivery(err, msg, index=index):
            assert err is None, err
            delivered[index] = (msg.partition(), msg.offset())
        producer.produce(topic, key=key.encode(), value=value, headers=headers, on_delivery=on_delivery)
        producer.poll(0)
    assert producer.flush(30) == 0
    return [delivered[i] for i in range(len(records))]


def wait_for(check, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


def deposits_with_id(settings, partition: int, command_id: str) -> int:
    """How many Deposits with this command id sit on the commands partition (read to its end)."""
    codec = Codec()
    consumer = Consumer(settings.confluent_config(**{"group.id": f"test-poison-{uuid.uuid4().hex}",
                                                     "enable.auto.commit": False}))
    try:
        _, high = consumer.get_watermark_offsets(TopicPartition(COMMANDS, partition), timeout=10, cached=False)
        consumer.assign([TopicPartition(COMMANDS, partition, OFFSET_BEGINNING)])
        count, position, deadline = 0, 0, time.monotonic() + 30
        while position < high and time.monotonic() < deadline:
            for message in consumer.consume(500, 0.5):
                if message.error():
                    continue
                position = message.offset() + 1
                try:
                    record = codec.decode(message.value())
                except DecodeError:
                    continue
                count += isinstance(record, Deposit) and record.command_id == command_id
        assert position >= high, "did not read the commands partition to its end"
        return count
    finally:
        consumer.close()


def test_poison_records_are_parked_or_rejected_and_a_fixed_one_is_replayed_exactly_once(api, kafka, workers):
    settings = kafka
    codec = Codec()
    customer_id = api.create_customer()
    account_id = api.open_account(customer_id, initial_balance="0.00")

    garbage = b"\x00\xffnot avro at all \xde\xad\xbe\xef"
    unknown_fingerprint = MAGIC + os.urandom(8) + b"\x02x\x02y"
    wrong_type = codec.encode(AccountOpened(event_id=f"{uuid.uuid4()}.0", aggregate_id=account_id, version=1,
                                            command_id=str(uuid.uuid4()), occurred_at=int(time.time() * 1000),
                                            customer_id=customer_id, title="Smuggled", description="",
                                            initial_balance=Decimal("1000.00")))
    impossible_id, good_id = str(uuid.uuid4()), str(uuid.uuid4())
    impossible = codec.encode(Deposit(command_id=impossible_id, account_id=account_id, amount=Decimal("-5.00")))
    good = codec.encode(Deposit(command_id=good_id, account_id=account_id, amount=Decimal("12.34")))
    delivered = produce(settings, COMMANDS, [(account_id, value, None) for value in
                                             (garbage, unknown_fingerprint, wrong_type, impossible, good)])
    partition = delivered[0][0]
    assert {p for p, _ in delivered} == {partition}, "one key, one partition"
    assert [o for _, o in delivered] == sorted(o for _, o in delivered)

    # The worker kept going: the good deposit after the poison is applied, the impossible one rejected.
    wait_for(lambda: api.get(f"/api/accounts/{account_id}").json().get("balance") == "12.34",
             what="the good deposit after the poison records")
    outcome = api.get(f"/api/commands/{impossible_id}", wait=20).json()
    assert (outcome["status"], outcome["reason"]) == ("REJECTED", "INVALID_AMOUNT"), outcome
    assert api.get(f"/api/commands/{good_id}", wait=20).json()["status"] == "ACCEPTED"

    # The three undecodable (or foreign) records are parked with their origin and error.
    poisoned = {delivered[i][1]: value for i, value in enumerate((garbage, unknown_fingerprint, wrong_type))}

    def listed():
        result = bank(settings, "deadletter", "list", "--json")
        assert result.returncode == 0, result.stderr
        rows = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
        ours = {r["offset"]: r for r in rows if r["topic"] == COMMANDS and r["partition"] == partition
                and r["offset"] in poisoned}
        return ours if len(ours) == 3 else None

    parked = wait_for(listed, what="the three poison records on bank.deadletter")
    for offset, value in poisoned.items():
        row = parked[offset]
        assert row["key"] == account_id
        assert row["size"] == len(value)
        assert row["value_base64"] and base64.b64decode(row["value_base64"]) == value
        assert row["replayed"] is False
    # Its first byte, 00, is the Confluent magic byte: the next four read as a schema id no registry knows.
    assert parked[delivered[0][1]]["error"].startswith("undecodable: schema id 4285427572: "), parked
    assert parked[delivered[1][1]]["error"].startswith("undecodable: unknown schema fingerprint")
    assert parked[delivered[2][1]]["error"] == f"AccountOpened does not belong on {COMMANDS}"
    markers = {f"{r['deadletter_partition']}:{r['deadletter_offset']}" for r in parked.values()}

    # A dry run refuses them: they still do not decode (or do not belong); nothing is produced.
    dry = bank(settings, "deadletter", "replay", "--topic", COMMANDS, "--dry-run", "--json")
    assert dry.returncode == 1, dry.stdout + dry.stderr
    actions = {f"{r['deadletter_partition']}:{r['deadletter_offset']}": r
               for r in map(json.loads, dry.stdout.splitlines())}
    for marker in markers:
        assert actions[marker]["action"] == "refused", actions[marker]
    assert {actions[m]["detail"].split(":")[0] for m in markers} >= {"undecodable"}

    # A record an earlier worker version refused, fixed since: park it by hand, then replay it, twice.
    parked_id = str(uuid.uuid4())
    fixed = codec.encode(Deposit(command_id=parked_id, account_id=account_id, amount=Decimal("7.00")))
    headers = [("deadletter.topic", COMMANDS.encode()), ("deadletter.partition", str(partition).encode()),
               ("deadletter.offset", str(delivered[-1][1]).encode()),
               ("deadletter.error", b"undecodable: unknown schema fingerprint (an older worker)")]
    (dl_partition, dl_offset), = produce(settings, topics.DEADLETTER.name, [(account_id, fixed, headers)])
    marker = f"{dl_partition}:{dl_offset}"

    first = bank(settings, "deadletter", "replay", "--topic", COMMANDS, "--json")
    assert first.returncode == 1, first.stdout + first.stderr  # the poison records are still refused
    first_actions = {f"{r['deadletter_partition']}:{r['deadletter_offset']}": r["action"]
                     for r in map(json.loads, first.stdout.splitlines())}
    assert first_actions[marker] == "replayed", first.stdout
    assert all(first_actions[m] == "refused" for m in markers)

    second = bank(settings, "deadletter", "replay", "--topic", COMMANDS, "--json")
    second_actions = {f"{r['deadletter_partition']}:{r['deadletter_offset']}": r
                      for r in map(json.loads, second.stdout.splitlines())}
    assert (second_actions[marker]["action"], second_actions[marker]["detail"]) == ("skipped", "already replayed")

    assert api.get(f"/api/commands/{parked_id}", wait=20).json()["status"] == "ACCEPTED"
    wait_for(lambda: api.get(f"/api/accounts/{account_id}").json().get("balance") == "19.34",
             what="the replayed deposit")
    assert deposits_with_id(settings, partition, parked_id) == 1, "replayed exactly once"
    time.sleep(1)
    assert api.get(f"/api/accounts/{account_id}").json()["balance"] == "19.34"

    listed_after = bank(settings, "deadletter", "list")
    assert listed_after.returncode == 0
    lines = listed_after.stdout.splitlines()
    assert any(line.startswith(marker + " ") and line.endswith("(replayed)") for line in lines)

    verify = bank(settings, "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_a_record_too_large_to_park_whole_is_parked_without_its_value_and_replayed_from_its_origin(
        api, kafka, workers):
    # 1,040,000 bytes: within the broker's message.max.bytes (1,048,588), so a producer may write it, but
    # its dead letter with the original bytes would exceed what the workers' producer sends (1,000,000).
    settings = kafka
    codec = Codec()
    customer_id = api.create_customer()
    account_id = api.open_account(customer_id, initial_balance="0.00")
    huge = b"\xff" + os.urandom(1_040_000 - 1)
    good_id = str(uuid.uuid4())
    good = codec.encode(Deposit(command_id=good_id, account_id=account_id, amount=Decimal("3.00")))
    (partition, huge_offset), (_, good_offset) = produce(
        settings, COMMANDS, [(account_id, huge, None), (account_id, good, None)], **{"message.max.bytes": 2_000_000})

    # The worker parked it and kept going (before, the batch failed and the worker stopped, at every restart).
    wait_for(lambda: api.get(f"/api/accounts/{account_id}").json().get("balance") == "3.00",
             what="the deposit after the huge record")

    def listed():
        result = bank(settings, "deadletter", "list", "--json")
        assert result.returncode == 0, result.stderr
        rows = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
        return next((r for r in rows if (r["topic"], r["partition"], r["offset"]) == (COMMANDS, partition,
                                                                                      huge_offset)), None)

    row = wait_for(listed, what="the huge record on bank.deadletter")
    assert (row["size"], row["value_omitted"], row["value_base64"], row["key"]) == (1_040_000, True, None,
                                                                                    account_id)
    assert row["error"].startswith("undecodable")
    huge_marker = f"{row['deadletter_partition']}:{row['deadletter_offset']}"

    # A dry run reads the omitted bytes at their origin: still undecodable, so refused.
    dry = bank(settings, "deadletter", "replay", "--topic", COMMANDS, "--dry-run", "--json")
    actions = {f"{r['deadletter_partition']}:{r['deadletter_offset']}": r
               for r in map(json.loads, dry.stdout.splitlines())}
    assert actions[huge_marker]["action"] == "refused", actions[huge_marker]
    assert actions[huge_marker]["detail"].startswith("undecodable"), actions[huge_marker]

    # A letter that omitted a value that decodes (as a worker would have parked a too-large command an
    # older version could not read): the replay produces the bytes read at its origin.
    headers = [("deadletter.topic", COMMANDS.encode()), ("deadletter.partition", str(partition).encode()),
               ("deadletter.offset", str(good_offset).encode()),
               ("deadletter.error", b"undecodable: unknown schema fingerprint (an older worker)"),
               ("deadletter.value-omitted", str(len(good)).encode())]
    (dl_partition, dl_offset), = produce(settings, topics.DEADLETTER.name, [(account_id, b"", headers)])
    marker = f"{dl_partition}:{dl_offset}"
    replayed = bank(settings, "deadletter", "replay", "--topic", COMMANDS, "--json")
    actions = {f"{r['deadletter_partition']}:{r['deadletter_offset']}": r
               for r in map(json.loads, replayed.stdout.splitlines())}
    assert actions[marker]["action"] == "replayed", replayed.stdout + replayed.stderr
    wait_for(lambda: deposits_with_id(settings, partition, good_id) == 2, what="the copy read at the origin")
    time.sleep(1)
    assert api.get(f"/api/accounts/{account_id}").json()["balance"] == "3.00"  # a duplicate: applied once
