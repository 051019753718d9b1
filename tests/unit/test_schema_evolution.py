"""Schema evolution: MoneyDeposited/Deposit v2 (a `reference` with a default) and upcasters of retired names."""
from __future__ import annotations

import io
import json
from decimal import Decimal

import fastavro
import pytest
from fastavro.schema import to_parsing_canonical_form

from streams.contract.avro import SCHEMA_DIR, Codec, DecodeError, fingerprint
from streams.domain.accounts import Account, Deposit, MoneyDeposited, OPEN, decide
from streams.domain.customers import CustomerCreated
from streams.domain.views import AccountView, history_entry, project_account
from streams.contract.upcasters import UPCASTERS, customer_registered_v1, funds_deposited_v1, split_name

D = Decimal
NOW = 1_700_000_000_000


@pytest.fixture(scope="module")
def codec() -> Codec:
    return Codec()


def schema(file_name: str) -> dict:
    return json.loads((SCHEMA_DIR / file_name).read_text())


def single_object(raw: dict, datum: dict) -> bytes:
    out = io.BytesIO()
    out.write(b"\xc3\x01" + fingerprint(to_parsing_canonical_form(raw)))
    fastavro.schemaless_writer(out, fastavro.parse_schema(raw), datum)
    return out.getvalue()


ENVELOPE = {"event_id": "c-1.0", "aggregate_id": "acc-1", "version": 2, "command_id": "c-1", "occurred_at": NOW}


# A new field with a default ---------------------------------------------------------------

def test_every_older_version_is_kept_beside_the_current_schema():
    for name in ("streambank.account.MoneyDeposited", "streambank.account.Deposit"):
        old, new = schema(f"{name}.v1.avsc"), schema(f"{name}.avsc")
        assert [f["name"] for f in new["fields"]] == [f["name"] for f in old["fields"]] + ["reference"]
        assert new["fields"][-1] == {"name": "reference", "type": "string", "default": ""}


def test_a_v1_money_deposited_reads_as_the_current_type_with_an_empty_reference(codec):
    data = single_object(schema("streambank.account.MoneyDeposited.v1.avsc"),
                         {**ENVELOPE, "amount": D("12.50"), "balance": D("112.50")})
    assert codec.decode(data) == MoneyDeposited(**ENVELOPE, amount=D("12.50"), balance=D("112.50"), reference="")


def test_v1_and_v2_money_deposited_fold_to_the_same_view(codec):
    v1 = codec.decode(single_object(schema("streambank.account.MoneyDeposited.v1.avsc"),
                                    {**ENVELOPE, "amount": D("12.50"), "balance": D("112.50")}))
    v2 = codec.decode(codec.encode(MoneyDeposited(**ENVELOPE, amount=D("12.50"), balance=D("112.50"),
                                                  reference="invoice 42")))
    assert v2.reference == "invoice 42"
    opened = AccountView(account_id="acc-1", customer_id="c", title="t", description="", balance=D("100.00"),
                         status=OPEN, version=1)
    assert project_account(opened, v1) == project_account(opened, v2)
    assert history_entry(project_account(opened, v1), v1) == history_entry(project_account(opened, v2), v2)


def test_a_v1_deposit_command_is_accepted_and_a_v2_reference_reaches_its_event(codec):
    state = Account(account_id="acc-1", customer_id="c", title="t", description="", balance=D("1.00"),
                    status=OPEN, version=1)
    v1 = codec.decode(single_object(schema("streambank.account.Deposit.v1.avsc"),
                                    {"command_id": "d-1", "expected_version": None, "account_id": "acc-1",
                                     "amount": D("2.00")}))
    (event,) = decide(state, v1, NOW)
    assert (event.balance, event.reference) == (D("3.00"), "")
    (event,) = decide(state, Deposit(command_id="d-2", account_id="acc-1", amount=D("2.00"), reference="rent"), NOW)
    assert event.reference == "rent"


def test_a_reference_longer_than_200_characters_is_rejected():
    state = Account(account_id="acc-1", customer_id="c", title="t", description="", balance=D("1.00"),
                    status=OPEN, version=1)
    rejection = decide(state, Deposit(command_id="d-3", account_id="acc-1", amount=D("2.00"), reference="x" * 201),
                       NOW)
    assert (rejection.reason, rejection.field) == ("INVALID_FIELD", "reference")


# Renamed and split events, through upcasters ------------------------------------------------

def test_the_upcasters_cover_exactly_the_retired_schemas_in_schemas_dir():
    retired = set()
    for path in SCHEMA_DIR.glob("*.avsc"):
        raw = json.loads(path.read_text())
        full = f"{raw['namespace']}.{raw['name']}"
        if not (SCHEMA_DIR / f"{full}.avsc").exists():
            retired.add(full)
    assert retired == set(UPCASTERS)


def test_funds_deposited_v1_is_upcast_to_money_deposited(codec):
    data = single_object(schema("streambank.account.FundsDeposited.v1.avsc"),
                         {**ENVELOPE, "amount": D("10.00"), "new_balance": D("135.50")})
    decoded = codec.decode(data)
    assert decoded == MoneyDeposited(**ENVELOPE, amount=D("10.00"), balance=D("135.50"), reference="")
    assert type(decoded) is MoneyDeposited


def test_customer_registered_v1_is_split_into_first_and_last_name(codec):
    envelope = {**ENVELOPE, "aggregate_id": "cust-1", "version": 1}
    data = single_object(schema("streambank.customer.CustomerRegistered.v1.avsc"),
                         {**envelope, "name": "Ada King Lovelace", "email": "ada@example.com", "phone": None})
    assert codec.decode(data) == CustomerCreated(**envelope, first_name="Ada", last_name="King Lovelace",
                                                 email="ada@example.com", phone=None, address=None)


@pytest.mark.parametrize("name, split", [
    ("Ada Lovelace", ("Ada", "Lovelace")), ("  Grace   Brewster  Hopper ", ("Grace", "Brewster Hopper")),
    ("Cher", ("Cher", "")), ("", ("", "")),
])
def test_split_name(name, split):
    assert split_name(name) == split


def test_the_upcaster_functions_work_on_plain_dicts():
    assert funds_deposited_v1({**ENVELOPE, "amount": D("1.00"), "new_balance": D("2.00")}).balance == D("2.00")
    created = customer_registered_v1({**ENVELOPE, "name": "A B", "email": "e", "phone": "1"})
    assert (created.first_name, created.last_name, created.phone) == ("A", "B", "1")


def test_an_upcaster_that_cannot_build_the_record_is_a_decode_error(tmp_path):
    for path in SCHEMA_DIR.glob("*.avsc"):
        (tmp_path / path.name).write_text(path.read_text())
    codec = Codec(schema_dir=tmp_path, upcasters={"streambank.account.FundsDeposited": lambda d: d["missing"]})
    data = single_object(schema("streambank.account.FundsDeposited.v1.avsc"),
                         {**ENVELOPE, "amount": D("1.00"), "new_balance": D("2.00")})
    with pytest.raises(DecodeError, match="does not fit"):
        codec.decode(data)


def test_without_its_upcaster_a_retired_schema_does_not_decode(tmp_path):
    for path in SCHEMA_DIR.glob("*.avsc"):
        (tmp_path / path.name).write_text(path.read_text())
    codec = Codec(schema_dir=tmp_path, upcasters={})
    data = single_object(schema("streambank.account.FundsDeposited.v1.avsc"),
                         {**ENVELOPE, "amount": D("1.00"), "new_balance": D("2.00")})
    with pytest.raises(DecodeError, match="fingerprint"):
        codec.decode(data)
