"""Batched table writes (streams.worker.batches): each record's partition, each key's last write, one
RocksDB WriteBatch per committed partition with its changelog offset; and coalescing superseded records."""
from __future__ import annotations

from decimal import Decimal

import pytest
from rocksdict import Options, Rdict

from streams.contract.avro import Codec
from streams.worker.batches import BatchedTable, coalesce, encoded
from streams.worker.pipeline import local_offset
from streams.domain import accounts
from streams.services.commands import COMMAND_PREFIX, STATE_PREFIX, CommandProcessor
from streams.services.handling import KeyPrefixed, Origin, Outgoing
from streams.services.projections import AccountProjector, FoldCodec
from streams.contract import topics

CHANGELOG = "streambank-account_to_state-changelog"


class ChangelogTopic:
    def get_topic_name(self) -> str:
        return CHANGELOG


class RocksStore:
    """Faust's RocksDB store as BatchedTable uses it: one real database per partition."""

    def __init__(self, path):
        self.path = path
        self._dbs: dict[int, Rdict] = {}

    def _db_for_partition(self, partition: int) -> Rdict:
        if partition not in self._dbs:
            self._dbs[partition] = Rdict(str(self.partition_path(partition)), Options(raw_mode=True))
        return self._dbs[partition]

    offset_key = b"__faust\0offset__"  # where Faust's RocksDB store keeps a partition's changelog offset

    def partition_path(self, partition: int):
        return self.path / f"p{partition}.db"


class FaustTable:
    def __init__(self, store):
        self.name = "account_to_state"
        self.data = store
        self.changelog_topic = ChangelogTopic()

    def get(self, key, default=None):
        for db in self.data._dbs.values():
            value = db.get(key.encode())
            if value is not None:
                return value
        return default



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


def committed(table: BatchedTable, partition: int, changelog_offset: int | None = None) -> list:
    """What a committed transaction does with a partition's writes: take them, then apply them."""
    entries = table.take(partition)
    table.apply(partition, entries, changelog_offset)
    return entries


def test_given_writes_at_two_partitions_when_taken_then_each_partition_gets_only_its_own(table):
    table.partition = 0
    table["state:A"] = b"a"
    table.partition = 3
    table["state:B"] = b"b"
    assert table.take(0) == [(b"state:A", b"a")]
    assert table.take(3) == [(b"state:B", b"b")]
    assert table.take(0) == []


def test_given_taken_writes_when_applied_then_they_land_in_their_partitions_database_with_the_changelog_offset(table):
    table.partition = 0
    table["state:A"] = b"a"
    table.partition = 3
    table["state:B"] = b"b"
    committed(table, 0, changelog_offset=41)
    committed(table, 3, changelog_offset=7)
    dbs = table.table.data._dbs
    assert dbs[0].get(b"state:A") == b"a" and dbs[0].get(b"state:B") is None
    assert dbs[3].get(b"state:B") == b"b"
    # The offset sits in the same WriteBatch: local state is never ahead of the changelog it came from.
    assert dbs[0].get(RocksStore.offset_key) == b"41" and dbs[3].get(RocksStore.offset_key) == b"7"


def test_given_applied_writes_then_the_persisted_offset_is_the_changelog_offset_they_reach(table):
    assert table.persisted_offset(2) is None  # nothing applied yet: a catch-up reads from the start
    table.partition = 2
    table["state:A"] = b"a"
    committed(table, 2, changelog_offset=12)
    assert table.persisted_offset(2) == 12


def test_given_records_read_from_the_changelog_when_restored_then_the_last_of_each_key_wins_and_none_counts_as_sent(
        table):
    sent = []
    table.on_sent = lambda topic, count: sent.append((topic, count))
    table.partition = 0  # a batch in progress on another partition
    table.restore(1, [(3, b"state:A", b"a"), (4, b"state:B", b"b"), (5, b"state:A", b"a2"), (6, b"state:B", None)])
    db = table.table.data._dbs[1]
    assert (db.get(b"state:A"), db.get(b"state:B"), table.persisted_offset(1)) == (b"a2", None, 6)
    assert sent == [] and table.partition == 0


def test_given_a_table_built_from_the_changelog_there_now_then_its_offset_is_kept(table):
    table.restore(1, [(3, b"state:A", b"a")])
    table.set_changelog_id(1, "id-1")
    assert local_offset(table, 1, "id-1") == 3 and table.table.data._dbs[1].get(b"state:A") == b"a"


def test_given_a_table_built_from_an_earlier_changelog_then_it_is_emptied_and_read_from_the_start(table):
    table.restore(1, [(40, b"state:A", b"a")])
    table.set_changelog_id(1, "id-before-replay")
    assert local_offset(table, 1, "id-after-replay") is None
    assert table.table.data._dbs[1].get(b"state:A") is None and table.persisted_offset(1) is None


def test_given_a_table_of_unknown_origin_then_it_is_emptied_but_a_new_empty_one_is_not_an_error(table):
    table.restore(2, [(7, b"state:B", b"b")])  # an offset, and no changelog id: written before ids were kept
    assert local_offset(table, 2, "id") is None and table.persisted_offset(2) is None
    assert local_offset(table, 3, "id") is None  # nothing on disk: read from the start, nothing to empty


def test_given_a_key_written_twice_when_taken_then_it_comes_once_at_the_place_of_its_last_write(table):
    table.partition = 2
    table["command:c1"] = b"dedup"
    table["state:A"] = b"v1"
    table["state:A"] = b"v2"
    assert table.take(2) == [(b"command:c1", b"dedup"), (b"state:A", b"v2")]


def test_given_a_deleted_key_when_committed_then_it_is_removed_and_taken_as_a_tombstone(table):
    table.partition = 1
    table["state:A"] = b"a"
    committed(table, 1)
    table.partition = 1
    del table["state:A"]
    assert committed(table, 1) == [(b"state:A", None)]
    assert table.table.data._dbs[1].get(b"state:A") is None


def test_given_a_batch_that_is_not_committed_when_discarded_then_nothing_reaches_the_database(table):
    table.partition = 1
    table["state:A"] = b"a"
    table.discard()
    assert table.take(1) == []
    assert table.table.get("state:A") is None


def test_given_no_batch_when_writing_then_it_is_refused(table):
    with pytest.raises(RuntimeError):
        table["state:A"] = b"a"


def summary(account: str, customer: str, version: int) -> Outgoing:
    return Outgoing(topics.CUSTOMER_ACCOUNTS.name, customer, f"{account}@{version}".encode(), latest_of=account)


def test_given_several_summaries_of_one_account_when_coalesced_then_only_the_last_is_sent_in_its_place():
    event = Outgoing(topics.ACCOUNT_EVENTS.name, "A", b"event")
    records = [summary("A", "C", 2), event, summary("B", "C", 5), summary("A", "C", 3)]
    assert coalesce(records) == [event, summary("B", "C", 5), summary("A", "C", 3)]


def test_given_no_record_that_supersedes_another_when_coalesced_then_all_are_kept_in_order():
    records = [Outgoing("t", "k", b"1"), Outgoing("t", "k", b"2")]
    assert coalesce(records) == records


class CountingCodec(Codec):
    """The real codec, counting what it encodes and decodes."""

    def __init__(self):
        super().__init__()
        self.encodes = self.decodes = 0

    def encode(self, record) -> bytes:
        self.encodes += 1
        return super().encode(record)

    def decode(self, data):
        self.decodes += 1
        return super().decode(data)


def test_given_a_projector_writing_one_account_many_times_in_a_batch_then_its_view_and_summary_are_encoded_once(tmp_path):
    codec = CountingCodec()
    views, history = (BatchedTable(FaustTable(RocksStore(tmp_path / name)), codec.encode) for name in ("v", "h"))
    projector = AccountProjector(FoldCodec(codec), views, history)
    events = [accounts.AccountOpened(event_id="e1", aggregate_id="A", version=1, occurred_at=1, command_id="o1",
                                     customer_id="C", title="t", description="", initial_balance=Decimal("0.00"))]
    events += [accounts.MoneyDeposited(event_id=f"e{v}", aggregate_id="A", version=v, occurred_at=v,
                                       command_id=f"d{v}", amount=Decimal("1.00"), balance=Decimal(v - 1))
               for v in range(2, 6)]
    raw = [codec.encode(event) for event in events]
    codec.encodes = 0
    views.partition = history.partition = 0
    records = [r for offset, value in enumerate(raw)
               for r in projector.project(b"A", value, Origin(topics.ACCOUNT_EVENTS.name, 0, offset))]
    assert codec.decodes == 5 and codec.encodes == 0  # the events only: the view is read back as written

    sent = encoded(coalesce(records), codec.encode)
    view_entries, history_entries = views.take(0), history.take(0)
    assert codec.encodes == 1 + 1 + 5  # the last summary, the last view, a statement entry per event
    assert [r.key for r in sent] == ["C"] and codec.decode(sent[0].value).balance == Decimal("4.00")
    assert [key for key, _ in view_entries] == [b"A"]
    assert codec.decode(view_entries[0][1]).version == 5
    assert len(history_entries) == 5 and all(value.__class__ is bytes for _, value in history_entries)


def test_given_records_already_encoded_when_encoding_a_batch_then_they_are_sent_as_they_are():
    records = [Outgoing("t", "k", b"1"), Outgoing("t", "k", None)]
    assert encoded(records, lambda record: pytest.fail("nothing to encode")) is records


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
