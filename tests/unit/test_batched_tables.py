"""Batched table writes (streams.batches): each record's partition, each key's last write, one
RocksDB WriteBatch and one acknowledgement per partition; and coalescing superseded records."""
from __future__ import annotations

import collections
import threading
from decimal import Decimal

import pytest
from rocksdict import Options, Rdict

from streams.avro import Codec
from streams.batches import BatchedTable, coalesce
from streams.domain import accounts
from streams.processing import COMMAND_PREFIX, STATE_PREFIX, CommandProcessor, KeyPrefixed, Origin, Outgoing
from streams.rdproducer import RdProducer
from streams import topics

CHANGELOG = "streambank-account_to_state-changelog"


class ChangelogTopic:
    def get_topic_name(self) -> str:
        return CHANGELOG


class RocksStore:
    """Faust's RocksDB store as BatchedTable uses it: one real database per partition."""

    def __init__(self, path):
        self.path = path
        self._dbs: dict[int, Rdict] = {}
        self.persisted: dict[int, int] = {}

    def _db_for_partition(self, partition: int) -> Rdict:
        if partition not in self._dbs:
            self._dbs[partition] = Rdict(str(self.path / f"p{partition}.db"), Options(raw_mode=True))
        return self._dbs[partition]

    def set_persisted_offset(self, tp, offset: int) -> None:
        self.persisted[tp.partition] = offset


class FaustTable:
    def __init__(self, store):
        self.name = "account_to_state"
        self.data = store
        self.changelog_topic = ChangelogTopic()
        self.sent_by_faust = []

    def get(self, key, default=None):
        for db in self.data._dbs.values():
            value = db.get(key.encode())
            if value is not None:
                return value
        return default

    def send_changelog(self, partition, key, value, key_serializer=None, value_serializer=None):
        self.sent_by_faust.append((partition, key, value))


class BatchProducer:
    """Records what `produce_batch` is handed; acknowledges when told to."""

    def __init__(self):
        self.batches: list[tuple[str, int, list]] = []
        self._acks = []

    def produce_batch(self, topic, partition, entries, acknowledged) -> bool:
        self.batches.append((topic, partition, list(entries)))
        self._acks.append((acknowledged, 100 * (partition + 1) + len(entries) - 1))
        return True

    def acknowledge_all(self) -> None:
        for acknowledged, offset in self._acks:
            acknowledged(offset)
        self._acks.clear()


@pytest.fixture
def table(tmp_path):
    batched = BatchedTable(FaustTable(RocksStore(tmp_path)))
    yield batched
    for db in batched.table.data._dbs.values():
        db.close()


def test_given_a_write_in_the_batch_when_reading_it_in_the_same_batch_then_the_buffered_value_is_seen(table):
    table.partition = 1
    table["state:A"] = b"v1"
    assert table.get("state:A") == b"v1"
    assert "state:A" in table
    assert table.table.get("state:A") is None  # nothing on disk before the flush


def test_given_writes_at_two_partitions_when_flushed_then_each_lands_in_its_partitions_database_and_changelog(table):
    producer = BatchProducer()
    table.partition = 0
    table["state:A"] = b"a"
    table.partition = 3
    table["state:B"] = b"b"
    assert table.flush(producer) == 2
    store = table.table.data
    assert store._db_for_partition(0).get(b"state:A") == b"a"
    assert store._db_for_partition(3).get(b"state:B") == b"b"
    assert store._db_for_partition(0).get(b"state:B") is None
    assert sorted(producer.batches) == [(CHANGELOG, 0, [(b"state:A", b"a")]), (CHANGELOG, 3, [(b"state:B", b"b")])]
    assert table.partition is None


def test_given_a_key_written_twice_when_flushed_then_it_is_sent_once_at_the_place_of_its_last_write(table):
    # The order a command processor writes: dedup record, then state, per command. The state that
    # includes both commands' effects must come after both dedup records on the changelog.
    producer = BatchProducer()
    table.partition = 2
    table["command:c1"] = b"processed c1"
    table["state:A"] = b"after c1"
    table["command:c2"] = b"processed c2"
    table["state:A"] = b"after c2"
    table.flush(producer)
    assert producer.batches == [(CHANGELOG, 2, [(b"command:c1", b"processed c1"), (b"command:c2", b"processed c2"),
                                                (b"state:A", b"after c2")])]


def test_given_a_deleted_key_when_flushed_then_it_is_removed_and_a_tombstone_is_sent(table):
    producer = BatchProducer()
    table.partition = 1
    table["pending:T"] = b"steps"
    table.flush(producer)
    table.partition = 1
    del table["pending:T"]
    assert table.get("pending:T") is None
    table.flush(producer)
    assert table.table.data._db_for_partition(1).get(b"pending:T") is None
    assert producer.batches[-1] == (CHANGELOG, 1, [(b"pending:T", None)])


def test_given_a_flushed_batch_when_its_changelog_records_are_acknowledged_then_the_persisted_offset_is_the_last(table):
    producer = BatchProducer()
    sent = []
    table.on_sent = lambda topic, count: sent.append((topic, count))
    table.partition = 0
    table["a"] = b"1"
    table["b"] = b"2"
    table.flush(producer)
    assert table.table.data.persisted == {}  # not before the broker has them
    producer.acknowledge_all()
    assert table.table.data.persisted == {0: 101}
    assert sent == [(CHANGELOG, 2)]


def test_given_no_batch_when_writing_then_it_is_refused(table):
    with pytest.raises(RuntimeError, match="outside a batch"):
        table["state:A"] = b"x"


def test_given_a_producer_without_batches_when_flushed_then_faust_sends_each_record(table):
    table.partition = 1
    table["state:A"] = b"a"
    table.flush(producer=object())
    assert table.table.sent_by_faust == [(1, b"state:A", b"a")]


def summary(account: str, customer: str, version: int) -> Outgoing:
    return Outgoing(topics.CUSTOMER_ACCOUNTS.name, customer, f"{account}@{version}".encode(), latest_of=account)


def test_given_several_summaries_of_one_account_when_coalesced_then_only_the_last_is_sent_in_its_place():
    event = Outgoing(topics.ACCOUNT_EVENTS.name, "A", b"event")
    records = [summary("A", "C", 2), event, summary("B", "C", 5), summary("A", "C", 3)]
    assert coalesce(records) == [event, summary("B", "C", 5), summary("A", "C", 3)]


def test_given_no_record_that_supersedes_another_when_coalesced_then_all_are_kept_in_order():
    records = [Outgoing("t", "k", b"1"), Outgoing("t", "k", b"2")]
    assert coalesce(records) == records


def test_given_a_dedup_record_whose_state_write_was_lost_when_the_command_comes_again_then_its_events_are_applied():
    codec = Codec()
    table: dict[str, bytes] = {}
    processor = CommandProcessor(codec, accounts, (topics.ACCOUNT_COMMANDS,), topics.ACCOUNT_EVENTS,
                                 KeyPrefixed(table, STATE_PREFIX), KeyPrefixed(table, COMMAND_PREFIX),
                                 clock=lambda: 1_700_000_000_000)
    where = Origin(topics.ACCOUNT_COMMANDS.name, 0, 0)
    open_account = accounts.OpenAccount(command_id="open-1", account_id="A", customer_id="C", title="t",
                                        initial_balance=Decimal("0.00"))
    processor.process(b"A", codec.encode(open_account), where)
    before_deposit = table[STATE_PREFIX + "A"]
    deposit = accounts.Deposit(command_id="dep-1", account_id="A", amount=Decimal("5.00"))
    first = processor.process(b"A", codec.encode(deposit), where)
    table[STATE_PREFIX + "A"] = before_deposit  # a crash: the dedup record survived, the state did not

    again = processor.process(b"A", codec.encode(deposit), where)

    assert again == first  # the same records, byte for byte
    state = codec.decode(table[STATE_PREFIX + "A"])
    assert (state.balance, state.version) == (Decimal("5.00"), 2)


def test_given_a_batch_of_records_when_produced_through_librdkafka_then_only_the_last_carries_the_acknowledgement():
    producer = RdProducer.__new__(RdProducer)
    producer._failures = []
    producer._delivered = collections.deque()
    produced = []

    class Rd:
        def produce(self, topic, value=None, key=None, partition=None, on_delivery=None):
            produced.append((topic, partition, key, value, on_delivery))

    producer._rd = Rd()
    offsets = []
    assert producer.produce_batch(CHANGELOG, 2, [(b"a", b"1"), (b"b", None)], offsets.append)
    assert [(t, p, k, v) for t, p, k, v, _ in produced] == [(CHANGELOG, 2, b"a", b"1"), (CHANGELOG, 2, b"b", None)]

    class Message:
        def __init__(self, offset):
            self._offset = offset

        def topic(self):
            return CHANGELOG

        def partition(self):
            return 2

        def offset(self):
            return self._offset

    produced[0][4]("broker said no", Message(7))  # a refused record fails the next flush
    produced[1][4](None, Message(8))
    producer._event_loop = None
    producer._wakeup_lock = threading.Lock()
    producer._wakeup_scheduled = False
    producer.app = type("App", (), {"sensors": None})()
    producer._resolve_delivered()
    assert offsets == [8]
    assert producer._failures == [f"{CHANGELOG}[2]: broker said no"]
