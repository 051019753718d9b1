"""The compiled Avro writers and readers write and read exactly what fastavro does, for every record type."""
from __future__ import annotations

import dataclasses
import types
import typing
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.contract import records
from streams.contract.avro import Codec, DecodeError
from streams.contract.compiled import long_bytes, read_long
from streams.domain.accounts import Account, MoneyDeposited

LONG = st.integers(min_value=-2**63, max_value=2**63 - 1)
MONEY = st.integers(min_value=-(10**18 - 1), max_value=10**18 - 1).map(lambda cents: Decimal(cents).scaleb(-2))


def strategy(hint) -> st.SearchStrategy:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        inner = [a for a in typing.get_args(hint) if a is not type(None)][0]
        return st.none() | strategy(inner)
    if hint is str:
        return st.text(max_size=40)
    if hint is bool:
        return st.booleans()
    if hint is bytes:
        return st.binary(max_size=40)
    if hint is int:
        return LONG
    if hint is Decimal:
        return MONEY
    if typing.get_origin(hint) is tuple:
        return st.lists(strategy(typing.get_args(hint)[0]), max_size=4).map(tuple)
    if dataclasses.is_dataclass(hint):
        return records_of(hint)
    raise AssertionError(f"no strategy for {hint!r}; extend strategy()")


def records_of(record_type: type) -> st.SearchStrategy:
    hints = typing.get_type_hints(record_type)
    return st.builds(record_type, **{f.name: strategy(hints[f.name]) for f in dataclasses.fields(record_type)})


@pytest.fixture(scope="module")
def compiled() -> Codec:
    return Codec(registry=None, record_format="single-object")


@pytest.fixture(scope="module")
def fastavro_only() -> Codec:
    return Codec(registry=None, record_format="single-object", compiled=False)


TYPES = [pytest.param(t, id=t.__name__) for t in records.RECORD_TYPES]
QUICK = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def test_every_current_record_type_has_a_compiled_writer_and_reader(compiled):
    writers = {t for t, entry in compiled._writers.items() if entry[3] is not None}
    assert writers == set(records.RECORD_TYPES)
    readers = {entry[2] for entry in compiled._readers.values() if entry[1] is None and entry[3] is not None}
    assert len(readers) == len(records.RECORD_TYPES)


@pytest.mark.parametrize("record_type", TYPES)
def test_a_compiled_writer_writes_the_bytes_fastavro_writes(compiled, fastavro_only, record_type):
    @QUICK
    @given(records_of(record_type))
    def check(record):
        assert compiled._writers[record_type][3](record) == fastavro_only.encode(record)
    check()


@pytest.mark.parametrize("record_type", TYPES)
def test_a_compiled_reader_reads_what_fastavro_reads(compiled, fastavro_only, record_type):
    @QUICK
    @given(records_of(record_type))
    def check(record):
        data = fastavro_only.encode(record)
        fingerprint = data[2:10]
        read, end = compiled._readers[fingerprint][3](data, 10)
        assert end == len(data)
        assert repr(read) == repr(fastavro_only.decode(data)) == repr(record)
    check()


@pytest.mark.parametrize("record_type", [Account, MoneyDeposited], ids=lambda t: t.__name__)
def test_corrupt_bytes_give_what_fastavro_gives(compiled, fastavro_only, record_type):
    @QUICK
    @given(records_of(record_type), st.integers(min_value=10, max_value=200), st.integers(0, 255),
           st.integers(min_value=10, max_value=200))
    def check(record, at, byte, cut):
        data = bytearray(fastavro_only.encode(record))
        data[at % len(data)] = byte if at % len(data) >= 10 else data[at % len(data)]
        data = bytes(data[:max(10, cut % (len(data) + 1))])
        try:
            expected = ("ok", repr(fastavro_only.decode(data)))
        except DecodeError:
            expected = ("error", None)
        try:
            got = ("ok", repr(compiled.decode(data)))
        except DecodeError:
            got = ("error", None)
        assert got == expected
    check()


def test_a_value_the_compiled_writer_cannot_write_gets_fastavros_error(compiled, fastavro_only):
    bad = Account(account_id=None, customer_id="c", title="t", description="", balance=Decimal("1.00"),
                  status="OPEN", version=1)
    with pytest.raises(Exception) as compiled_error:
        compiled.encode(bad)
    with pytest.raises(Exception) as fastavro_error:
        fastavro_only.encode(bad)
    assert type(compiled_error.value) is type(fastavro_error.value)
    assert str(compiled_error.value) == str(fastavro_error.value)


def test_a_long_past_64_bits_is_refused_not_wrapped():
    with pytest.raises(OverflowError):
        long_bytes(2**63)
    with pytest.raises(OverflowError):
        long_bytes(-2**63 - 1)


@given(LONG)
def test_a_long_reads_back_as_written(n):
    data = long_bytes(n)
    assert read_long(data, 0) == (n, len(data))
