"""A zombie, deterministically: a worker held inside a batch (after its writes were handed to the producer,
before they commit) until its partitions have moved to the other worker, then released. Nothing it wrote
may become visible to a read_committed reader, and the new owner's results stand alone."""
from __future__ import annotations

import time
from collections import Counter
from decimal import Decimal

import httpx
import pytest
from confluent_kafka import Consumer, TopicPartition

from conftest import Worker, wait_until_serving
from faults import OWN_WORKER_PORTS, RESTART_KAFKA_PORT, bank_verify, own_kafka
from streams.contract import topics
from streams.contract.avro import Codec
from streams.client import BankClient, OutcomeReader
from streams.domain.accounts import MoneyDeposited
from streams.contract.jsonio import new_id
from streams.dev.traffic import open_accounts

ACCOUNTS = 8
HELD_AGENT = "process_account_commands"


def read_all(settings, topic: str, isolation: str) -> list:
    """Every record of `topic` up to its end now, read with the given isolation level."""
    consumer = Consumer(settings.confluent_config(**{
        "group.id": f"zombie-test-{new_id()}", "enable.auto.commit": False, "isolation.level": isolation}))
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in metadata.partitions}
        consumer.assign([TopicPartition(topic, p, 0) for p in ends])
        out, deadline = [], time.monotonic() + 60
        while time.monotonic() < deadline:
            for message in consumer.consume(1000, timeout=0.5):
                if message.error() is None:
                    out.append(message)
            positions = consumer.position([TopicPartition(topic, p) for p in ends])
            if all(tp.offset >= ends[tp.partition] for tp in positions if tp.offset >= 0) and \
                    all(tp.offset >= 0 or ends[tp.partition] == 0 for tp in positions):
                return out
        raise TimeoutError(f"reading {topic} ({isolation}) did not finish")
    finally:
        consumer.close()


def deposits_by_command(settings, isolation: str) -> Counter:
    codec = Codec()
    counts = Counter()
    for message in read_all(settings, topics.ACCOUNT_EVENTS.name, isolation):
        event = codec.decode(message.value())
        if isinstance(event, MoneyDeposited):
            counts[event.command_id] += 1
    return counts


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}", pytrace=False)


@pytest.mark.timeout(400)
def test_a_worker_held_before_its_commit_while_its_partitions_move_writes_nothing_anyone_reads(tmp_path):
    hold = tmp_path / "hold"
    with own_kafka(tmp_path / "home", brokers=1, base_port=RESTART_KAFKA_PORT) as settings:
        zombie = Worker(settings, OWN_WORKER_PORTS[0], env={"BANK_TEST_HOLD_BEFORE_COMMIT": str(hold)})
        survivor = Worker(settings, OWN_WORKER_PORTS[1])
        try:
            for worker in (zombie, survivor):
                worker.start()
            wait_until_serving([zombie, survivor])
            client, reader = BankClient(settings), OutcomeReader(settings)
            ledger = open_accounts(client, reader, f"cust-{new_id()}", ACCOUNTS, seed=5)

            # Hold the zombie's account-command transactions, then deposit into every account: the
            # deposits on the zombie's partitions stop inside its open transactions.
            hold.write_text(HELD_AGENT)
            deposits = {account: client.deposit(account, Decimal("10.00")).command_id
                        for account in ledger.account_ids}
            client.flush()
            wait_for(lambda: "held before committing" in zombie.log.read_text(errors="replace"), 60,
                     "the zombie to hold a transaction")
            assert deposits_by_command(settings, "read_uncommitted"), "the held batch handed nothing to Kafka"

            # Freeze it past its session timeout: the survivor takes every partition over (fencing the
            # zombie's transactional ids) and processes the same deposits again from the committed offsets.
            zombie.pause()
            try:
                outcomes = reader.wait(deposits.values(), timeout=120)
                assert len(outcomes) == ACCOUNTS, f"{ACCOUNTS - len(outcomes)} deposits got no outcome"
                assert {o.status for o in outcomes.values()} == {"ACCEPTED"}
            finally:
                zombie.resume()
            hold.unlink()  # released: its commit must fail now
            wait_until_serving([zombie, survivor], timeout=120)

            committed = deposits_by_command(settings, "read_committed")
            uncommitted = deposits_by_command(settings, "read_uncommitted")
            zombie_writes = sum(uncommitted[c] for c in deposits.values()) - ACCOUNTS
            print(f"deposits {ACCOUNTS}; zombie's records visible only read_uncommitted: {zombie_writes}; "
                  f"read_committed: {sum(committed[c] for c in deposits.values())}")
            assert zombie_writes > 0, "the zombie wrote nothing: the test did not test anything"
            assert {c: committed[c] for c in deposits.values()} == {c: 1 for c in deposits.values()}, \
                "a read_committed reader sees a deposit event other than exactly once"
            wait_for(lambda: "fenced" in zombie.log.read_text(errors="replace"), 60, "the zombie to learn it is fenced")

            # The new owner's state is untouched: every balance is its opening balance plus one deposit.
            with httpx.Client(timeout=10) as http:
                for account in ledger.account_ids:
                    expected = ledger.initial[account] + Decimal("10.00")

                    deadline, answer = time.monotonic() + 60, None
                    while time.monotonic() < deadline:
                        answer = http.get(f"{survivor.url}/api/accounts/{account}")
                        if answer.status_code == 200 and Decimal(answer.json()["balance"]) == expected:
                            break
                        time.sleep(0.2)
                    else:
                        pytest.fail(f"account {account} does not show its one deposit ({expected}): "
                                    f"{answer.status_code} {answer.text[:300]}", pytrace=False)
                    # And a second deposit now lands on exactly the next version (no fork).
                    assert http.get(f"{survivor.url}/api/accounts/{account}").json()["version"] == 2
            result = bank_verify(settings)
            assert result.returncode == 0, result.stdout + result.stderr
            reader.close()
            client.close()
        finally:
            for worker in (zombie, survivor):
                worker.resume() if worker.process and worker.process.poll() is None else None
                worker.stop()
