"""The single-object Avro codec: round trips, header, fingerprints, errors, schema evolution."""
from __future__ import annotations

import dataclasses
import io
import itertools
import json
import shutil
import types
import typing
from decimal import Decimal
from pathlib import Path

import fastavro
import pytest
from fastavro.schema import fingerprint as fastavro_fingerprint
from fastavro.schema import to_parsing_canonical_form

from streams.contract import records
from streams.contract.avro import MAGIC, SCHEMA_DIR, Codec, DecodeError, fingerprint, record_schema, schema_file
from streams.domain.accounts import Account, Deposit, MoneyDeposited, OpenAccount
from streams.domain.customers import ToAccount
from streams.domain.outcomes import REJECTED, CommandOutcome
from streams.domain.views import AccountSummary, CustomerView

D = Decimal
NOW = 1_700_000_000_123
DECIMALS = (D("0.01"), D("-12.50"), D("99999999999999.99"), D("0.00"), D("-9999999999999999.99"), D("1234.05"))


@pytest.fixture(scope="module")
def codec() -> Codec:
    return Codec()


def type_id(record_type: type) -> str:
    return record_type.__name__


def raw_schema(record_type: type) -> dict:
    return json.loads(schema_file(record_type).read_text())


# Building a realistic instance of any record type ------------------------------------------

def _value(hint, name: str, filled: bool, counter: itertools.count):
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        inner = [a for a in typing.get_args(hint) if a is not type(None)][0]
        return _value(inner, name, filled, counter) if filled else None
    if hint is str:
        return f"{name}-{next(counter)} ünïcødé ✓"
    if hint is bool:
        return True
    if hint is bytes:
        return b"\xc3\x01\x00 raw bytes \xff" + bytes([next(counter) % 256])
    if hint is int:
        return NOW + next(counter) if name in ("occurred_at", "issued_at") else 2 ** 40 + next(counter)
    if hint is Decimal:
        return DECIMALS[next(counter) % len(DECIMALS)]
    if typing.get_origin(hint) is tuple:
        item = typing.get_args(hint)[0]
        if not filled:
            return ()
        if dataclasses.is_dataclass(item):
            return tuple(build(item, filled, counter) for _ in range(2))
        return tuple(_value(item, name, filled, counter) for _ in range(2))
    raise AssertionError(f"the test cannot build {hint!r} ({name}); extend _value")


def build(record_type: type, filled: bool = True, counter: itertools.count | None = None):
    """An instance with every field set: optionals and nested tuples filled, or None and empty."""
    counter = counter or itertools.count()
    hints = typing.get_type_hints(record_type)
    return record_type(**{f.name: _value(hints[f.name], f.name, filled, counter)
                          for f in dataclasses.fields(record_type)})


#: Every record type.
ROUND_TRIP_TYPES = [pytest.param(t, id=t.__name__) for t in records.RECORD_TYPES]


HAND_BUILT = [
    MoneyDeposited(event_id="cmd-1.0", aggregate_id="acc-1", version=7, command_id="cmd-1", occurred_at=NOW,
                   amount=D("0.01"), balance=D("99999999999999.99")),
    OpenAccount(command_id="cmd-2", expected_version=0, account_id="acc-2", customer_id="cust-1",
                title="Checking", description="", initial_balance=D("-12.50")),
    Deposit(command_id="cmd-3", account_id="acc-2", amount=D("12.50")),
    CommandOutcome(command_id="cmd-4", command_type="Withdraw", aggregate_id="acc-1", status=REJECTED,
                   reason="INSUFFICIENT_FUNDS", message="balance 1.00 is less than 9.00", field="amount",
                   version=None, occurred_at=NOW),
    Account(account_id="acc-1", customer_id="cust-1", title="Savings", description="rainy days",
            balance=D("-12.50"), status="OPEN", version=3),
    CustomerView(customer_id="cust-1", first_name="Ada", last_name="Lovelace", email="ada@example.com",
                 phone=None, address="London", version=4,
                 to_accounts=(ToAccount(account_id="acc-9", title="Rent", owner="Landlord"),
                              ToAccount(account_id="acc-8", title="", owner="")),
                 accounts=(AccountSummary(account_id="acc-1", customer_id="cust-1", title="Checking",
                                          balance=D("0.01"), status="OPEN", version=2),
                           AccountSummary(account_id="acc-2", customer_id="cust-1", title="Savings",
                                          balance=D("99999999999999.99"), status="CLOSED", version=9))),
]


def assert_round_trips(codec: Codec, record) -> None:
    decoded = codec.decode(codec.encode(record))
    assert type(decoded) is type(record)
    assert decoded == record
    # Decimal("12.5") == Decimal("12.50"): the repr also checks places and nested tuple types.
    assert repr(decoded) == repr(record)


# Round trips -------------------------------------------------------------------------------

def test_every_record_type_has_a_distinct_full_name():
    names = [records.full_name(t) for t in records.RECORD_TYPES]
    assert len(names) == len(set(names)) >= 22
    assert records.full_name(Deposit) == "streambank.account.Deposit"


@pytest.mark.parametrize("record_type", ROUND_TRIP_TYPES)
def test_every_record_type_round_trips_with_every_field_filled(codec, record_type):
    assert_round_trips(codec, build(record_type, filled=True))


@pytest.mark.parametrize("record_type", ROUND_TRIP_TYPES)
def test_every_record_type_round_trips_with_optionals_absent_and_tuples_empty(codec, record_type):
    assert_round_trips(codec, build(record_type, filled=False))


@pytest.mark.parametrize("record", HAND_BUILT, ids=lambda r: type(r).__name__)
def test_realistic_records_round_trip(codec, record):
    assert_round_trips(codec, record)


def test_nested_records_come_back_as_tuples_of_dataclasses(codec):
    view = codec.decode(codec.encode(HAND_BUILT[-1]))
    assert isinstance(view.accounts, tuple) and isinstance(view.to_accounts, tuple)
    assert all(isinstance(a, AccountSummary) for a in view.accounts)
    assert all(isinstance(a, ToAccount) for a in view.to_accounts)


@pytest.mark.parametrize("amount", DECIMALS + (D("-0.01"), D("5.00")))
def test_decimals_keep_their_value_and_two_places(codec, amount):
    decoded = codec.decode(codec.encode(Deposit(command_id="c", account_id="a", amount=amount)))
    assert decoded.amount == amount
    assert decoded.amount.as_tuple().exponent == -2


# Header and fingerprints -------------------------------------------------------------------

def test_the_crc_64_avro_of_int_is_the_specification_test_vector():
    assert fingerprint('"int"') == bytes.fromhex("8f5c393f1ad57572")


def test_the_fingerprint_of_an_empty_string_is_the_crc_64_avro_empty_value():
    assert fingerprint("") == (0xC15D213AA4D7A795).to_bytes(8, "little")


@pytest.mark.parametrize("record_type", records.RECORD_TYPES, ids=type_id)
def test_a_record_starts_with_c3_01_and_the_fingerprint_of_its_schema_file(codec, record_type):
    canonical = to_parsing_canonical_form(raw_schema(record_type))
    data = codec.encode(build(record_type))
    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == fingerprint(canonical)
    assert data[2:10] == bytes.fromhex(fastavro_fingerprint(canonical, "CRC-64-AVRO"))  # an independent CRC


def test_distinct_schemas_have_distinct_fingerprints():
    fps = {fingerprint(to_parsing_canonical_form(raw_schema(t))) for t in records.RECORD_TYPES}
    assert len(fps) == len(records.RECORD_TYPES)


# Decode errors -----------------------------------------------------------------------------

@pytest.mark.parametrize("data", [
    b"", b"\xc3", b"\xc3\x01", b"\xc3\x01\x00\x01\x02", b"garbage bytes that are no record",
    b"\x00\x01" + bytes(20), b"\x01\xc3" + bytes(20), "\xc3\x01 a str, not bytes", None,
], ids=lambda d: repr(d)[:24])
def test_garbage_does_not_decode(codec, data):
    with pytest.raises(DecodeError):
        codec.decode(data)


def test_an_unknown_fingerprint_does_not_decode(codec):
    data = codec.encode(HAND_BUILT[0])
    with pytest.raises(DecodeError, match="fingerprint"):
        codec.decode(MAGIC + bytes(8) + data[10:])
    flipped = data[:2] + bytes([data[2] ^ 0x01]) + data[3:]
    with pytest.raises(DecodeError):
        codec.decode(flipped)


@pytest.mark.parametrize("record", HAND_BUILT, ids=lambda r: type(r).__name__)
def test_a_truncated_body_does_not_decode_wherever_it_is_cut(codec, record):
    data = codec.encode(record)
    for end in range(10, len(data)):
        with pytest.raises(DecodeError):
            codec.decode(data[:end])


@pytest.mark.parametrize("extra", [b"\x00", b"trailing junk"])
def test_trailing_bytes_do_not_decode(codec, extra):
    data = codec.encode(HAND_BUILT[0])
    with pytest.raises(DecodeError, match="trailing"):
        codec.decode(data + extra)


def test_decode_accepts_bytearray_and_memoryview(codec):
    data = codec.encode(HAND_BUILT[0])
    assert codec.decode(bytearray(data)) == HAND_BUILT[0]
    assert codec.decode(memoryview(data)) == HAND_BUILT[0]


# Committed schemas -------------------------------------------------------------------------

@pytest.mark.parametrize("record_type", records.RECORD_TYPES, ids=type_id)
def test_the_committed_schema_is_the_one_generated_from_the_dataclass(record_type):
    """A schema change must be deliberate: regenerate with `python -m streams.contract.avro` and commit it."""
    assert schema_file(record_type).exists(), f"missing {schema_file(record_type).name}"
    assert raw_schema(record_type) == record_schema(record_type)


def test_timestamps_are_timestamp_millis_and_money_is_decimal_18_2_in_the_schema():
    fields = {f["name"]: f["type"] for f in raw_schema(MoneyDeposited)["fields"]}
    assert fields["occurred_at"] == {"type": "long", "logicalType": "timestamp-millis"}
    assert fields["amount"] == {"type": "bytes", "logicalType": "decimal", "precision": 18, "scale": 2}
    assert raw_schema(MoneyDeposited)["namespace"] == "streambank.account"


# Schema evolution --------------------------------------------------------------------------

def _schema_dir_with(tmp_path: Path, older: dict, file_name: str) -> Path:
    for path in SCHEMA_DIR.glob("*.avsc"):
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / file_name).write_text(json.dumps(older, indent=2))
    return tmp_path


def _single_object(schema: dict, datum: dict) -> bytes:
    out = io.BytesIO()
    out.write(b"\xc3\x01" + fingerprint(to_parsing_canonical_form(schema)))
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), datum)
    return out.getvalue()


MONEY = {"type": "bytes", "logicalType": "decimal", "precision": 18, "scale": 2}

DEPOSIT_V0 = {
    "type": "record", "name": "Deposit", "namespace": "streambank.account",
    "fields": [
        {"name": "command_id", "type": "string"},
        {"name": "account_id", "type": "string"},
        {"name": "amount", "type": MONEY},
        {"name": "memo", "type": "string"},  # a field the current schema dropped
    ],
}


def test_a_record_written_with_an_older_schema_is_read_into_the_current_type_with_defaults(tmp_path):
    codec = Codec(schema_dir=_schema_dir_with(tmp_path, DEPOSIT_V0, "streambank.account.Deposit.v0.avsc"))
    data = _single_object(DEPOSIT_V0, {"command_id": "old-1", "account_id": "acc-1", "amount": D("-12.50"),
                                       "memo": "dropped since"})
    decoded = codec.decode(data)
    assert decoded == Deposit(command_id="old-1", expected_version=None, account_id="acc-1", amount=D("-12.50"))
    assert repr(decoded.amount) == "Decimal('-12.50')"


def test_the_current_schema_still_writes_after_an_older_one_is_registered(tmp_path):
    codec = Codec(schema_dir=_schema_dir_with(tmp_path, DEPOSIT_V0, "streambank.account.Deposit.v0.avsc"))
    record = Deposit(command_id="new-1", expected_version=4, account_id="acc-1", amount=D("1.00"))
    data = codec.encode(record)
    assert data[2:10] == fingerprint(to_parsing_canonical_form(raw_schema(Deposit)))
    assert codec.decode(data) == record


def test_an_older_schema_that_is_not_registered_does_not_decode(codec):
    data = _single_object(DEPOSIT_V0, {"command_id": "old-1", "account_id": "acc-1", "amount": D("1.00"),
                                       "memo": ""})
    with pytest.raises(DecodeError, match="fingerprint"):
        codec.decode(data)


OPEN_ACCOUNT_V0 = {
    "type": "record", "name": "OpenAccount", "namespace": "streambank.account",
    "fields": [
        {"name": "command_id", "type": "string"},
        {"name": "account_id", "type": "string"},
        {"name": "customer_id", "type": "string"},
        {"name": "title", "type": "string"},
    ],
}


def test_a_decimal_field_missing_from_an_older_writer_gets_its_default_as_a_decimal(tmp_path):
    codec = Codec(schema_dir=_schema_dir_with(tmp_path, OPEN_ACCOUNT_V0, "streambank.account.OpenAccount.v0.avsc"))
    data = _single_object(OPEN_ACCOUNT_V0, {"command_id": "old-2", "account_id": "acc-1", "customer_id": "c",
                                            "title": "Checking"})
    decoded = codec.decode(data)
    assert (decoded.description, decoded.expected_version) == ("", None)
    assert decoded.initial_balance == D("0.00")
    assert isinstance(decoded.initial_balance, Decimal)


# Interoperability with plain fastavro ------------------------------------------------------

@pytest.mark.parametrize("amount", DECIMALS)
def test_a_decimal_written_by_plain_fastavro_with_the_raw_schema_decodes_to_the_same_decimal(codec, amount):
    schema = raw_schema(MoneyDeposited)  # as a user outside the project would read the .avsc
    datum = {"event_id": "e.0", "aggregate_id": "acc-1", "version": 3, "command_id": "e",
             "occurred_at": NOW, "amount": amount, "balance": -amount}
    decoded = codec.decode(_single_object(schema, datum))
    assert decoded == MoneyDeposited(**datum)
    assert (decoded.amount, decoded.balance) == (amount, -amount)
    assert decoded.occurred_at == NOW


def test_plain_fastavro_reads_what_the_codec_writes(codec):
    record = HAND_BUILT[0]
    data = codec.encode(record)
    assert data[:10] == b"\xc3\x01" + fingerprint(to_parsing_canonical_form(raw_schema(MoneyDeposited)))
    value = fastavro.schemaless_reader(io.BytesIO(data[10:]), fastavro.parse_schema(raw_schema(MoneyDeposited)),
                                       None)
    assert (value["amount"], value["balance"]) == (D("0.01"), D("99999999999999.99"))
    assert value["event_id"] == "cmd-1.0" and value["version"] == 7


@pytest.mark.parametrize("amount", DECIMALS + (D("-0.01"), D("5"), D("5.1"), D("-128.00"), D("1.28"), D("-1.29")))
def test_money_is_written_byte_for_byte_as_plain_fastavro_writes_it(codec, amount):
    datum = {"event_id": "e.0", "aggregate_id": "acc-1", "version": 3, "command_id": "e",
             "occurred_at": NOW, "amount": amount, "balance": -amount, "reference": ""}
    plain = io.BytesIO()
    fastavro.schemaless_writer(plain, fastavro.parse_schema(raw_schema(MoneyDeposited)), datum)
    assert codec.encode(MoneyDeposited(**datum))[10:] == plain.getvalue()


@pytest.mark.parametrize("amount", (D("0.001"), D("-1.005"), D("10000000000000000.00"), D("-1E+16")))
def test_money_that_does_not_fit_decimal_18_2_is_refused_when_encoded(codec, amount):
    with pytest.raises(ValueError):
        codec.encode(Deposit(command_id="c", account_id="a", amount=amount))


def test_money_nested_in_a_view_round_trips_with_two_places(codec):
    view = CustomerView(customer_id="c-1", first_name="Ada", last_name="Lovelace", email="ada@example.com",
                        phone=None, address=None, version=len(DECIMALS),
                        accounts=tuple(AccountSummary(account_id=f"acc-{i}", customer_id="c-1", title="t",
                                                      balance=amount, status="OPEN", version=i)
                                       for i, amount in enumerate(DECIMALS)))
    decoded = codec.decode(codec.encode(view))
    assert decoded == view
    assert [a.balance.as_tuple().exponent for a in decoded.accounts] == [-2] * len(DECIMALS)
