"""The replay fold writes what a worker's projector writes, byte for byte; local state is found and read."""
from __future__ import annotations

from decimal import Decimal

from rocksdict import Options, Rdict

from given_when_then import NOW
from streams.worker import localstate
from streams.contract.avro import Codec
from streams.config import Settings
from streams.domain.accounts import AccountOpened, MoneyDeposited, MoneyWithdrawn
from streams.services.generations import Pointer, handoff_key, prefix, strip
from streams.services.projections import AccountProjector
from streams.services.handling import Origin
from streams.ops.replay import _projector
from streams.services.projections import FoldCodec

CODEC = Codec()


def account_events(account_id="A"):
    common = lambda v: dict(event_id=f"c{v}.0", aggregate_id=account_id, version=v, command_id=f"c{v}",  # noqa: E731
                            occurred_at=NOW + v)
    return [AccountOpened(**common(1), customer_id="C", title="Main", description="", initial_balance=Decimal("5.00")),
            MoneyDeposited(**common(2), amount=Decimal("2.50"), balance=Decimal("7.50")),
            MoneyWithdrawn(**common(3), amount=Decimal("1.00"), balance=Decimal("6.50"))]


def test_the_replay_fold_yields_the_same_entry_bytes_as_the_workers_projector():
    events = [CODEC.encode(e) for e in account_events()]
    views, history = {}, {}
    worker = AccountProjector(CODEC, views, history)
    tables: dict[str, dict] = {}
    replay = _projector("accounts", CODEC, tables)
    for offset, value in enumerate(events + events[1:2]):  # a redelivery too
        worker.project(b"A", value, Origin("bank.accounts.events", 0, offset))
        replay(b"A", value, Origin("bank.accounts.events", 0, offset))

    encode = FoldCodec(CODEC).encoded
    assert {k: encode(v) for k, v in tables["account_to_view"].items()} == views
    assert {k: encode(v) for k, v in tables["account_version_to_entry"].items()} == history
    assert CODEC.decode(views["A"]).balance == Decimal("6.50")


def test_generation_prefixes_never_meet_bare_keys_or_handoff_markers():
    assert prefix(0) == "" and strip("acc-1", 0) == "acc-1"
    assert strip(prefix(2) + "acc-1", 2) == "acc-1"
    assert strip(prefix(2) + "acc-1", 0) is None and strip("acc-1", 2) is None
    assert strip(prefix(12) + "acc-1", 1) is None
    assert strip(handoff_key(1, "bank.accounts.events", 3), 0) is None
    assert strip(handoff_key(1, "bank.accounts.events", 3), 1) is None


def test_the_pointer_survives_its_json_and_defaults_to_generation_zero():
    pointer = Pointer({"accounts": 3}, {"customers": 2})
    assert Pointer.from_json(pointer.to_json()) == pointer
    assert Pointer.from_json(None).serving_of("accounts") == 0


def test_a_local_table_partition_is_found_with_its_persisted_offset_and_reset_removes_it(tmp_path):
    settings = Settings(home=tmp_path, web_port=17099)
    path = localstate.tables_dir(settings) / "account_to_state-2.db"
    path.parent.mkdir(parents=True)
    db = Rdict(str(path), options=Options(raw_mode=True))  # as Faust writes it
    db[localstate.OFFSET_KEY] = b"41"
    db.close()
    (localstate.tables_dir(settings) / "not_a_table-0.db").mkdir()

    assert localstate.local_partitions(settings) == [("account_to_state", 2, path)]
    assert localstate.persisted_offset(path) == 41
    localstate.reset(settings)
    assert not path.exists() and localstate.local_partitions(settings) == []
