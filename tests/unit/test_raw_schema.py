"""The agents' topics hand records on as the broker gave them (streams.worker.delivery.RawBytes)."""
from types import SimpleNamespace

from streams.worker.delivery import RawBytes


def test_given_a_record_then_its_key_and_value_come_unchanged():
    message = SimpleNamespace(key=b"A-1", value=b"\xc3\x01avro")
    assert RawBytes().loads_key(None, message) is message.key
    assert RawBytes().loads_value(None, message) is message.value


def test_given_a_tombstone_then_its_value_stays_none():
    message = SimpleNamespace(key=b"A-1", value=None)
    assert RawBytes().loads_value(None, message) is None
