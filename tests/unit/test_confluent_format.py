"""The Confluent wire format (00, 4-byte schema id, body) beside single-object: both decode alike, lookups
by id are cached and bounded, and every way a framed record can be bad is a DecodeError (a dead letter)."""
from __future__ import annotations

import io
import json
import socket
import struct
import threading
import time
from decimal import Decimal

import fastavro
import pytest

from streams.contract import records, schema_registry
from streams.contract.avro import SCHEMA_DIR, Codec, DecodeError
from streams.config import Settings, record_format
from streams.domain.accounts import Deposit, MoneyDeposited
from streams.domain.customers import CustomerCreated
from streams.services.handling import Origin, decode_expected
from streams.contract.schema_history import history, register_all
from streams.contract.schema_registry import (Incompatible, RegistryClient, RegistryUnavailable, SchemaNotFound,
                                     base_url)
from test_avro_codec import HAND_BUILT, NOW, ROUND_TRIP_TYPES, build

D = Decimal


class FakeRegistry:
    """In memory, as the codec uses a RegistryClient: register (idempotent per text) and look up by id."""

    def __init__(self):
        self.by_id: dict[int, str] = {}
        self.ids: dict[tuple[str, str], int] = {}
        self.subjects: dict[str, list[int]] = {}
        self.calls = 0
        self.down = False

    def _call(self):
        self.calls += 1
        if self.down:
            raise RegistryUnavailable("schema registry at fake unreachable: [Errno 111] Connection refused")

    def register(self, subject: str, schema: str) -> int:
        self._call()
        content = json.dumps(json.loads(schema), sort_keys=True)
        for (_, known), schema_id in self.ids.items():
            if known == content:
                break
        else:
            schema_id = len(self.by_id) + 1
            self.by_id[schema_id] = schema
        self.ids[(subject, content)] = schema_id
        self.subjects.setdefault(subject, []).append(schema_id)
        return schema_id

    def schema_by_id(self, schema_id: int) -> str:
        self._call()
        if schema_id not in self.by_id:
            raise SchemaNotFound(f"GET /schemas/ids/{schema_id}: HTTP 404", 404)
        return self.by_id[schema_id]


@pytest.fixture(scope="module")
def fake() -> FakeRegistry:
    return FakeRegistry()


@pytest.fixture(scope="module")
def confluent(fake) -> Codec:
    return Codec(registry=fake, record_format="confluent")


@pytest.fixture(scope="module")
def single_object(fake) -> Codec:
    return Codec(registry=fake, record_format="single-object")


@pytest.fixture(scope="module")
def plain_reader(confluent) -> Codec:
    """A third process's codec: it knows no id until it asks the registry."""
    return Codec(registry=confluent.registry, record_format="single-object")


def framed(schema_id: int, schema: dict, datum: dict) -> bytes:
    out = io.BytesIO()
    out.write(b"\x00" + struct.pack(">I", schema_id))
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), datum)
    return out.getvalue()


# Round trips in both formats ---------------------------------------------------------------

@pytest.mark.parametrize("filled", [True, False], ids=["filled", "empty"])
@pytest.mark.parametrize("record_type", ROUND_TRIP_TYPES)
def test_every_record_type_round_trips_in_both_formats_to_the_same_value(confluent, single_object, plain_reader,
                                                                         record_type, filled):
    record = build(record_type, filled=filled)
    as_framed, as_single = confluent.encode(record), single_object.encode(record)
    assert as_framed[0] == 0 and as_single[:2] == b"\xc3\x01"
    assert as_framed[5:] == as_single[10:], "same body, only the header differs"
    for reader in (confluent, single_object, plain_reader):
        for data in (as_framed, as_single):
            decoded = reader.decode(data)
            assert type(decoded) is record_type and decoded == record and repr(decoded) == repr(record)


def test_the_frame_is_the_registered_id_of_the_current_schema_under_the_record_name(confluent, fake):
    data = confluent.encode(HAND_BUILT[0])
    schema_id = struct.unpack(">I", data[1:5])[0]
    assert fake.subjects["streambank.account.MoneyDeposited"][-1] == schema_id
    assert json.loads(fake.by_id[schema_id]) == json.loads((SCHEMA_DIR / "streambank.account.MoneyDeposited.avsc")
                                                          .read_text())
    assert confluent.schema_id(MoneyDeposited) == schema_id


def test_a_writer_registers_each_type_once_and_a_reader_asks_once_per_id():
    fake = FakeRegistry()
    writer = Codec(registry=fake, record_format="confluent")
    data = [writer.encode(HAND_BUILT[0]) for _ in range(50)]
    assert fake.calls == 1
    reader = Codec(registry=fake, record_format="single-object")
    assert all(reader.decode(d) == HAND_BUILT[0] for d in data)
    assert fake.calls == 2
    # A writer's own ids need no lookup at all.
    assert writer.decode(data[0]) == HAND_BUILT[0] and fake.calls == 2


def test_prepare_registers_every_current_schema_up_front():
    fake = FakeRegistry()
    codec = Codec(registry=fake, record_format="confluent")
    codec.prepare()
    assert set(fake.subjects) == {records.full_name(t) for t in records.RECORD_TYPES}
    calls = fake.calls
    for record in HAND_BUILT:
        codec.decode(codec.encode(record))
    assert fake.calls == calls


# Schema evolution through the registry ------------------------------------------------------

def test_a_framed_record_of_an_older_version_is_read_into_the_current_type(fake):
    old = json.loads((SCHEMA_DIR / "streambank.account.Deposit.v1.avsc").read_text())
    schema_id = fake.register("streambank.account.Deposit", json.dumps(old))
    datum = {f["name"]: {"string": "x", "long": 1}.get(f["type"] if isinstance(f["type"], str) else "", None)
             for f in old["fields"]}
    datum.update(command_id="c-1", account_id="acc-1", amount=D("12.50"))
    decoded = Codec(registry=fake, record_format="single-object").decode(framed(schema_id, old, datum))
    assert isinstance(decoded, Deposit) and (decoded.command_id, decoded.amount) == ("c-1", D("12.50"))


def test_the_upcasters_apply_to_framed_records_too(fake):
    old = json.loads((SCHEMA_DIR / "streambank.account.FundsDeposited.v1.avsc").read_text())
    schema_id = fake.register("streambank.account.FundsDeposited", json.dumps(old))
    data = framed(schema_id, old, {"event_id": "e.0", "aggregate_id": "acc-1", "version": 2, "command_id": "e",
                                   "occurred_at": NOW, "amount": D("1.00"), "new_balance": D("3.00")})
    decoded = Codec(registry=fake, record_format="single-object").decode(data)
    assert decoded == MoneyDeposited(event_id="e.0", aggregate_id="acc-1", version=2, command_id="e",
                                     occurred_at=NOW, amount=D("1.00"), balance=D("3.00"))


def test_a_version_the_project_never_kept_is_still_read_into_the_current_type(fake):
    """A producer registered its own variant (a field we do not have, with a default)."""
    schema = json.loads((SCHEMA_DIR / "streambank.account.Deposit.avsc").read_text())
    schema["fields"].append({"name": "channel", "type": "string", "default": "web"})
    schema_id = fake.register("streambank.account.Deposit", json.dumps(schema))
    data = framed(schema_id, schema, {"command_id": "c-2", "expected_version": None, "account_id": "acc-1",
                                      "amount": D("5.00"), "reference": "r", "channel": "app"})
    decoded = Codec(registry=fake, record_format="single-object").decode(data)
    assert decoded == Deposit(command_id="c-2", account_id="acc-1", amount=D("5.00"), reference="r")


# Bad framed records: each a DecodeError, which the agents dead-letter ------------------------

def test_an_unknown_schema_id_does_not_decode_and_is_not_asked_again_at_once(fake):
    codec = Codec(registry=fake, record_format="single-object")
    data = b"\x00" + struct.pack(">I", 999_999) + b"\x02x"
    with pytest.raises(DecodeError, match="no schema id 999999"):
        codec.decode(data)
    calls = fake.calls
    with pytest.raises(DecodeError, match="no schema id 999999"):
        codec.decode(data)
    assert fake.calls == calls


def test_a_registry_that_is_down_fails_fast_after_the_first_try_and_is_asked_again_later():
    fake = FakeRegistry()
    writer = Codec(registry=fake, record_format="confluent")
    data = writer.encode(HAND_BUILT[0])
    reader = Codec(registry=fake, record_format="single-object")
    reader._ids.down_for = 0.2
    fake.down = True
    with pytest.raises(DecodeError, match="unreachable"):
        reader.decode(data)
    calls = fake.calls
    for _ in range(100):
        with pytest.raises(DecodeError, match="not asked again"):
            reader.decode(data)
    assert fake.calls == calls
    fake.down = False
    time.sleep(0.25)
    assert reader.decode(data) == HAND_BUILT[0]


def test_a_schema_id_of_a_record_that_is_not_ours_does_not_decode(fake):
    foreign = {"type": "record", "name": "Order", "namespace": "shop", "fields": [{"name": "id", "type": "string"}]}
    schema_id = fake.register("shop.Order", json.dumps(foreign))
    with pytest.raises(DecodeError, match="shop.Order"):
        Codec(registry=fake, record_format="single-object").decode(framed(schema_id, foreign, {"id": "o-1"}))
    primitive_id = fake.register("a-string", json.dumps("string"))
    with pytest.raises(DecodeError, match="not a named Avro record"):
        Codec(registry=fake, record_format="single-object").decode(b"\x00" + struct.pack(">I", primitive_id) + b"\x02x")


def test_a_framed_record_without_a_registry_configured_does_not_decode():
    with pytest.raises(DecodeError, match="no schema registry is configured"):
        Codec(registry=None, record_format="single-object").decode(b"\x00\x00\x00\x00\x01\x02x")


def test_a_framed_record_of_another_type_on_a_command_topic_becomes_a_dead_letter(confluent):
    event = confluent.encode(HAND_BUILT[0])  # a MoneyDeposited where commands belong
    record, letter = decode_expected(confluent, b"acc-1", event, Origin("bank.accounts.commands", 0, 7), (Deposit,))
    assert record is None and letter.topic == "bank.deadletter"
    assert dict(letter.headers)["deadletter.error"] == b"MoneyDeposited does not belong on bank.accounts.commands"


def test_an_unknown_framed_id_becomes_a_dead_letter_with_the_reason(fake):
    codec = Codec(registry=fake, record_format="single-object")
    value = b"\x00" + struct.pack(">I", 777_777) + b"\x02x"
    record, letter = decode_expected(codec, b"acc-1", value, Origin("bank.accounts.commands", 1, 3), (Deposit,))
    assert record is None and letter.value == value
    assert b"schema id 777777" in dict(letter.headers)["deadletter.error"]


def test_the_id_cache_is_bounded():
    fake = FakeRegistry()
    schema = (SCHEMA_DIR / "streambank.account.Deposit.avsc").read_text()
    lookup = schema_registry.IdLookup(fake, lambda text: text, max_entries=8)
    for i in range(1, 41):
        fake.by_id[i] = schema
        assert lookup.get(i) == schema
    assert len(lookup._cache) == 8 and set(lookup._cache) == set(range(33, 41))


def test_a_truncated_framed_body_does_not_decode(confluent):
    data = confluent.encode(build(CustomerCreated))
    for cut in range(5, len(data) - 1, 7):
        with pytest.raises(DecodeError):
            confluent.decode(data[:cut])


# Configuration and the HTTP client ---------------------------------------------------------

def test_the_record_format_is_single_object_unless_said_otherwise():
    assert Settings.from_env({}).record_format == "single-object"
    assert Settings.from_env({"BANK_SCHEMA_REGISTRY_URL": "http://r:8081"}).record_format == "single-object"
    assert Settings.from_env({"BANK_RECORD_FORMAT": "Confluent"}).record_format == "confluent"
    with pytest.raises(ValueError, match="BANK_RECORD_FORMAT"):
        record_format("protobuf")


def test_the_confluent_format_needs_a_registry():
    with pytest.raises(RuntimeError, match="BANK_SCHEMA_REGISTRY_URL"):
        Codec(registry=None, record_format="confluent")


def test_the_url_gets_apicurios_confluent_path_only_when_it_has_none():
    assert base_url("http://127.0.0.1:8081") == "http://127.0.0.1:8081/apis/ccompat/v7"
    assert base_url("http://127.0.0.1:8081/apis/ccompat/v6/") == "http://127.0.0.1:8081/apis/ccompat/v6"
    assert base_url("https://sr.example.com/sr") == "https://sr.example.com/sr"


def test_basic_auth_from_the_url_or_user_info_is_sent_and_not_left_in_the_url():
    client = RegistryClient("https://ada:s%40cret@sr.example.com:8443")
    assert client.url == "https://sr.example.com:8443/apis/ccompat/v7"
    assert client._headers["Authorization"] == "Basic YWRhOnNAY3JldA=="  # ada:s@cret
    other = RegistryClient("http://sr:8081", user_info="bob:pw")
    assert other._headers["Authorization"] == "Basic Ym9iOnB3"


def test_a_registry_that_accepts_but_never_answers_times_out():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        stop = threading.Event()
        threading.Thread(target=lambda: (server.accept(), stop.wait(5)), daemon=True).start()
        client = RegistryClient(f"http://127.0.0.1:{port}", timeout=0.3)
        started = time.monotonic()
        with pytest.raises(RegistryUnavailable):
            client.schema_by_id(1)
        assert time.monotonic() - started < 3
        stop.set()


def test_a_refused_connection_is_unavailable():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(RegistryUnavailable, match="unreachable"):
        RegistryClient(f"http://127.0.0.1:{port}", timeout=1).subjects()


# The schema history ------------------------------------------------------------------------

def test_the_history_lists_every_file_once_oldest_first():
    found = history()
    assert sum(len(v) for v in found.values()) == len(list(SCHEMA_DIR.glob("*.avsc")))
    deposit = [v.path.name for v in found["streambank.account.Deposit"]]
    assert deposit == ["streambank.account.Deposit.v1.avsc", "streambank.account.Deposit.avsc"]
    assert [v.path.name for v in found["streambank.account.FundsDeposited"]] == \
        ["streambank.account.FundsDeposited.v1.avsc"]


class CompatibilityFake(FakeRegistry):
    """Refuses a version whose field types differ from the latest's (enough to see the flow)."""

    def __init__(self):
        super().__init__()
        self.config = {}

    def compatibility(self, subject=None):
        return self.config.get(subject)

    def set_compatibility(self, level="BACKWARD", subject=None):
        self.config[subject] = level

    def versions(self, subject):
        return list(range(1, len(self.subjects.get(subject, [])) + 1))

    def lookup(self, subject, schema):
        return self.ids.get((subject, json.dumps(json.loads(schema), sort_keys=True)))

    def is_compatible(self, subject, schema):
        if not self.subjects.get(subject):
            return True
        latest = {f["name"]: f["type"] for f in json.loads(self.by_id[self.subjects[subject][-1]])["fields"]}
        return all(latest.get(f["name"], f["type"]) == f["type"] for f in json.loads(schema)["fields"])

    def register(self, subject, schema):
        if not self.is_compatible(subject, schema):
            raise Incompatible("incompatible", 409)
        return super().register(subject, schema)


def test_register_all_goes_oldest_first_sets_backward_and_stops_a_subject_at_a_refusal(tmp_path):
    for path in SCHEMA_DIR.glob("streambank.account.Deposit*.avsc"):
        (tmp_path / path.name).write_text(path.read_text())
    bad = json.loads((SCHEMA_DIR / "streambank.account.Deposit.avsc").read_text())
    bad["fields"][2]["type"] = "long"  # account_id: string → long
    (tmp_path / "streambank.account.Deposit.avsc").write_text(json.dumps(bad))
    fake = CompatibilityFake()
    rows = register_all(None, schema_dir=tmp_path, client=fake)
    assert [(r.file, r.status) for r in rows] == [("streambank.account.Deposit.v1.avsc", "registered"),
                                                  ("streambank.account.Deposit.avsc", "refused")]
    assert fake.config == {None: "BACKWARD", "streambank.account.Deposit": "BACKWARD"}
    again = register_all(None, schema_dir=tmp_path, client=fake, check=True)
    assert [(r.status, r.ok) for r in again] == [("already registered", True), ("refused", False)]
