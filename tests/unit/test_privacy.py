"""Crypto-shredding (streams.services.privacy): per-customer AES-GCM sealing, the redacted form without a key,
the keyed email hash, and the keystore's part in creating and forgetting customers."""
from __future__ import annotations

import base64
import json
from decimal import Decimal
from pathlib import Path

import pytest

from given_when_then import NOW, Aggregate
from streams.contract.avro import Codec
from streams.config import Settings
from streams.domain import customers, views
from streams.domain.base import Reason
from streams.domain.customers import CreateCustomer, CustomerCreated, CustomerForgotten, ForgetCustomer
from streams.domain.emails import RecordEmailReservation
from streams.services.privacy import (
    DEV_EMAIL_HASH_KEY,
    REDACTED,
    REDACTED_DATA,
    KeyStore,
    PersonalData,
    email_hash,
    new_key,
    personal_data_of,
    seal,
    unseal,
)

ADA = PersonalData(first_name="Ada", last_name="Lovelace", email="ada@example.com", phone="+44 20 7946 0000",
                   address="12 St James's Square")
SECRET = b"test-secret"
customer = Aggregate(customers.decide, customers.evolve, customers.react)


def create(customer_id="C", **overrides) -> CreateCustomer:
    fields = dict(command_id="create-1", customer_id=customer_id, first_name="Ada", last_name="Lovelace",
                  email="  Ada@Example.COM ", phone="+44 20 7946 0000", address="12 St James's Square")
    return CreateCustomer(**{**fields, **overrides})


# Sealing ----------------------------------------------------------------------------------------

def test_sealed_personal_data_opens_with_its_customers_key():
    key = new_key()
    assert unseal(key, "C", seal(key, "C", ADA)) == ADA


def test_a_sealed_blob_holds_none_of_the_plaintext():
    blob = seal(new_key(), "C", ADA)
    for value in ("Ada", "Lovelace", "ada@example.com", "7946", "St James"):
        assert value.encode() not in blob


def test_sealing_twice_gives_different_blobs_because_each_has_a_fresh_nonce():
    key = new_key()
    assert seal(key, "C", ADA) != seal(key, "C", ADA)


def test_without_the_key_the_blob_reads_as_the_redacted_form():
    blob = seal(new_key(), "C", ADA)
    assert unseal(None, "C", blob) == REDACTED_DATA
    assert (REDACTED_DATA.first_name, REDACTED_DATA.email, REDACTED_DATA.phone, REDACTED_DATA.address) == (
        REDACTED, REDACTED, None, None)


def test_another_customers_key_does_not_open_the_blob():
    assert unseal(new_key(), "C", seal(new_key(), "C", ADA)) == REDACTED_DATA


def test_a_blob_copied_onto_another_customer_does_not_open_even_with_the_right_key():
    key = new_key()
    assert unseal(key, "D", seal(key, "C", ADA)) == REDACTED_DATA


def test_a_tampered_or_truncated_blob_reads_as_redacted_not_as_an_error():
    key = new_key()
    blob = seal(key, "C", ADA)
    assert unseal(key, "C", blob[:-1] + bytes([blob[-1] ^ 1])) == REDACTED_DATA
    assert unseal(key, "C", blob[:5]) == REDACTED_DATA
    assert unseal(key, "C", b"\x02" + blob[1:]) == REDACTED_DATA


def test_records_written_before_sealing_show_their_plaintext_until_forgotten():
    legacy = views.CustomerView(customer_id="C", first_name="Ada", last_name="Lovelace", email="ada@example.com",
                                phone=None, address=None, version=1)
    assert personal_data_of(legacy, None) == PersonalData("Ada", "Lovelace", "ada@example.com")
    forgotten = views.project_customer(legacy, CustomerForgotten(event_id="f.0", aggregate_id="C", version=2,
                                                                 command_id="f", occurred_at=NOW))
    assert personal_data_of(forgotten, None) == REDACTED_DATA


# The keyed email hash ---------------------------------------------------------------------------

def test_the_email_hash_is_equal_for_emails_equal_once_normalised():
    assert email_hash(SECRET, "  Ada@Example.COM ") == email_hash(SECRET, "ada@example.com")


def test_the_email_hash_depends_on_the_secret_and_does_not_contain_the_email():
    hashed = email_hash(SECRET, "ada@example.com")
    assert hashed != email_hash(b"another secret", "ada@example.com")
    assert hashed != email_hash(SECRET, "eve@example.com")
    assert "ada" not in hashed and len(hashed) == 64


def test_the_email_hash_secret_comes_from_bank_email_hash_key_with_a_development_default():
    assert Settings.from_env({}).email_hash_key == DEV_EMAIL_HASH_KEY.encode()
    assert Settings.from_env({"BANK_EMAIL_HASH_KEY": "s3cret"}).email_hash_key == b"s3cret"


# The keystore -----------------------------------------------------------------------------------

def test_a_new_customers_create_command_is_sealed_under_a_key_made_for_it_and_keyed_by_the_email_hash():
    keys = {}
    sealed = KeyStore(keys, SECRET).prepare(None, create())
    assert set(keys) == {"C"} and len(keys["C"]) == 32
    assert (sealed.first_name, sealed.last_name, sealed.email, sealed.phone, sealed.address) == ("", "", "", None, None)
    assert (sealed.email_hash, sealed.key_id, sealed.command_id) == (email_hash(SECRET, "ada@example.com"), "C",
                                                                     "create-1")
    assert unseal(keys["C"], "C", sealed.personal_data) == ADA  # the email as the registry saw it: normalised


def test_an_invalid_create_command_is_not_sealed_so_the_domain_rejects_it_naming_the_field():
    keys = {}
    command = create(email="not-an-email")
    assert KeyStore(keys, SECRET).prepare(None, command) is command
    assert keys == {}
    customer.given_nothing().when(command).then_rejected(Reason.INVALID_FIELD, "email")


def test_creating_an_existing_customer_makes_no_key_and_seals_nothing():
    keys = {}
    state = customers.evolve(None, CustomerCreated(event_id="e", aggregate_id="C", version=1, command_id="c",
                                                   occurred_at=NOW, email_hash="h", personal_data=b"x", key_id="C"))
    command = create()
    assert KeyStore(keys, SECRET).prepare(state, command) is command
    assert keys == {}


def test_a_refused_email_reservation_deletes_the_key_made_for_the_customer_that_will_not_exist():
    keys = {"C": new_key()}
    refused = RecordEmailReservation(command_id="r", customer_id="C", email="h", accepted=False,
                                     reason=Reason.EMAIL_TAKEN, settles_command_id="create-1",
                                     settles_command_type="CreateCustomer")
    KeyStore(keys, SECRET).prepare(None, refused)
    assert keys == {}


def test_a_refused_email_reservation_keeps_the_key_while_another_create_of_the_customer_still_waits():
    keys = {"C": new_key()}
    refused = RecordEmailReservation(command_id="create-2.reserve-email.reply", customer_id="C", email="h",
                                     accepted=False, reason=Reason.EMAIL_TAKEN, settles_command_id="create-2",
                                     settles_command_type="CreateCustomer")
    KeyStore(keys, SECRET).prepare(None, refused, waiting=(b"create-1's ReserveEmail",))
    assert set(keys) == {"C"}


def test_customer_forgotten_deletes_the_key_and_a_redelivery_deletes_nothing_more():
    keys = {"C": new_key(), "D": new_key()}
    store = KeyStore(keys, SECRET)
    forgotten = CustomerForgotten(event_id="f.0", aggregate_id="C", version=2, command_id="f", occurred_at=NOW)
    store.shred((forgotten,))
    store.shred((forgotten,))
    assert set(keys) == {"D"}


# Keys on the changelog, whatever the local store kept ---------------------------------------------

class LocalTable(dict):
    """A table as a worker holds it: the local store (this dict) and `written`, the changelog records of
    the attempt under way. An aborted transaction (or a crash before the changelog got them) loses
    `written`; the local store (RocksDB) keeps the writes."""

    def __init__(self):
        super().__init__()
        self.written = {}

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        self.written[key] = value

    def __delitem__(self, key):
        super().__delitem__(key)
        self.written[key] = None


def customer_processor():
    from streams.contract import topics
    from streams.services.commands import COMMAND_PREFIX, STATE_PREFIX, CommandProcessor
    from streams.services.handling import KeyPrefixed

    ledger, keys, pending = LocalTable(), LocalTable(), LocalTable()
    processor = CommandProcessor(Codec(), customers, (topics.CUSTOMER_COMMANDS, topics.CUSTOMER_REPLIES),
                                 topics.CUSTOMER_EVENTS, KeyPrefixed(ledger, STATE_PREFIX),
                                 KeyPrefixed(ledger, COMMAND_PREFIX), clock=lambda: NOW, pending=pending,
                                 prepare=KeyStore(keys, SECRET).prepare)
    return processor, (ledger, keys, pending)


def aborted(tables):
    for table in tables:
        table.written.clear()


def test_a_create_customer_retried_after_an_aborted_attempt_writes_its_key_again_with_the_same_reservation():
    from streams.services.handling import Origin
    processor, tables = customer_processor()
    keys = tables[1]
    command = Codec().encode(create())
    first = processor.process(b"C", command, Origin("bank.customers.commands", 0, 5))
    aborted(tables)  # nothing of the first attempt is visible; the local store still has all of it
    again = processor.process(b"C", command, Origin("bank.customers.commands", 0, 5))

    assert [r.value for r in again] == [r.value for r in first]  # the same reservation, the same blob
    assert keys.written == {"C": keys["C"]}  # and the key it was sealed with, in the same transaction


def test_the_reply_that_creates_a_sealed_customer_writes_its_key_again_with_customer_created():
    from streams.services.handling import Origin
    processor, tables = customer_processor()
    keys = tables[1]
    codec = Codec()
    (request,) = [r for r in processor.process(b"C", codec.encode(create()), Origin("c", 0, 5))
                  if r.topic == "bank.emails.commands"]
    from streams.domain import emails
    reservation = codec.decode(request.value)
    (reply,) = emails.react(None, reservation, emails.decide(None, reservation, NOW))
    aborted(tables)  # say the key's changelog record was lost with an attempt the local store outlived
    created = processor.process(b"C", codec.encode(reply), Origin("r", 0, 9))
    assert any(isinstance(codec.decode(r.value), CustomerCreated) for r in created)
    assert keys.written == {"C": keys["C"]}
    aborted(tables)
    again = processor.process(b"C", codec.encode(reply), Origin("r", 0, 9))  # redelivered: re-emitted
    assert [r.value for r in again] == [r.value for r in created]
    assert keys.written == {"C": keys["C"]}


# The domain, with a sealed customer ------------------------------------------------------------------

@pytest.fixture
def sealed_customer():
    keys = {}
    command = KeyStore(keys, SECRET).prepare(None, create())
    (reserve,) = customer.given_nothing().when(command).then_deferred().reactions
    reply = RecordEmailReservation(command_id=f"{reserve.command_id}.reply", customer_id="C", email=reserve.email,
                                   accepted=True, first_name=reserve.first_name, last_name=reserve.last_name,
                                   phone=reserve.phone, address=reserve.address,
                                   personal_data=reserve.personal_data, key_id=reserve.key_id,
                                   settles_command_id="create-1", settles_command_type="CreateCustomer")
    (created,) = customer.given_nothing().when(reply).events
    return keys, reserve, created


def test_a_sealed_customer_reserves_its_email_hash_and_carries_only_the_blob(sealed_customer):
    keys, reserve, created = sealed_customer
    assert reserve.email == email_hash(SECRET, "ada@example.com")
    assert (reserve.first_name, reserve.phone, reserve.key_id) == ("", None, "C")
    assert (created.first_name, created.email, created.phone) == ("", "", None)
    assert (created.email_hash, created.key_id) == (reserve.email, "C")
    assert unseal(keys["C"], "C", created.personal_data) == ADA


def test_forgetting_a_customer_emits_customer_forgotten_and_leaves_no_personal_data_in_its_state(sealed_customer):
    _, _, created = sealed_customer
    then = customer.given(created).when(ForgetCustomer(command_id="f", customer_id="C"))
    then.then(CustomerForgotten(event_id="f.0", aggregate_id="C", version=2, command_id="f", occurred_at=NOW))
    assert then.state.forgotten and then.state.personal_data == b"" and then.state.version == 2
    assert then.state.email_hash == created.email_hash  # the email stays reserved


def test_forgetting_a_forgotten_customer_again_is_accepted_and_changes_nothing(sealed_customer):
    _, _, created = sealed_customer
    forgotten = CustomerForgotten(event_id="f.0", aggregate_id="C", version=2, command_id="f", occurred_at=NOW)
    customer.given(created, forgotten).when(ForgetCustomer(command_id="f2", customer_id="C")).then()


def test_forgetting_an_unknown_customer_is_rejected_customer_not_found():
    customer.given_nothing().when(ForgetCustomer(command_id="f", customer_id="C")).then_rejected(
        Reason.CUSTOMER_NOT_FOUND)


def test_forgetting_at_a_stale_expected_version_is_rejected_version_conflict(sealed_customer):
    _, _, created = sealed_customer
    customer.given(created).when(ForgetCustomer(command_id="f", customer_id="C", expected_version=5)).then_rejected(
        Reason.VERSION_CONFLICT)


def test_the_customer_view_of_a_forgotten_customer_keeps_accounts_and_drops_the_blob(sealed_customer):
    _, _, created = sealed_customer
    summary = views.AccountSummary(account_id="A", customer_id="C", title="Checking", balance=Decimal("90.00"),
                                   status="OPEN", version=3)
    view = views.with_account(views.project_customer(None, created), summary)
    after = views.project_customer(view, CustomerForgotten(event_id="f.0", aggregate_id="C", version=2,
                                                           command_id="f", occurred_at=NOW))
    assert (after.forgotten, after.personal_data, after.version, after.accounts) == (True, b"", 2, (summary,))
    assert views.email_key(after) == created.email_hash


# What the API shows, and records written before sealing ---------------------------------------------

def test_the_api_opens_a_sealed_view_with_its_key_and_redacts_it_without(sealed_customer):
    from streams.http.api import customer_json

    keys, _, created = sealed_customer
    view = views.project_customer(None, created)
    shown = customer_json(view, keys["C"])
    assert (shown["name"], shown["email"], shown["phone"], shown["forgotten"]) == (
        {"first_name": "Ada", "last_name": "Lovelace"}, "ada@example.com", ADA.phone, False)
    assert not {"personal_data", "email_hash", "key_id"} & set(shown)
    redacted = customer_json(view, None)
    assert (redacted["name"], redacted["email"], redacted["address"], redacted["forgotten"]) == (
        {"first_name": REDACTED, "last_name": REDACTED}, REDACTED, None, True)


def test_a_customer_created_v1_record_reads_with_empty_sealed_fields_as_bytes():
    fixture = Path(__file__).resolve().parents[1] / "fixtures" / "v1_log.jsonl"
    line = next(json.loads(l) for l in fixture.read_text().splitlines()
                if '"streambank.customer.CustomerCreated v1"' in l)
    event = Codec().decode(base64.b64decode(line["value"]))
    assert (event.email, event.personal_data, event.email_hash) == ("grace@example.com", b"", "")
    assert views.email_key(event) == "grace@example.com"  # indexed by the email, as before sealing


def test_sealed_fields_a_producer_sends_are_dropped_and_the_plaintext_is_sealed_instead():
    keys = {}
    command = create(personal_data=b"\x01forged", email_hash="forged", key_id="someone-else")
    sealed = KeyStore(keys, SECRET).prepare(None, command)
    assert (sealed.email_hash, sealed.key_id) == (email_hash(SECRET, "ada@example.com"), "C")
    assert unseal(keys["C"], "C", sealed.personal_data) == ADA


def test_a_producer_cannot_skip_the_plaintext_by_sending_only_a_sealed_blob():
    keys = {}
    command = create(first_name="", last_name="", email="", personal_data=b"\x01forged", email_hash="h", key_id="C")
    customer.given_nothing().when(KeyStore(keys, SECRET).prepare(None, command)).then_rejected(
        Reason.INVALID_FIELD, "first_name")
    assert keys == {}


def test_bank_send_takes_forget_customer_with_a_customer_id():
    from streams.cli.sending import parse_lines

    (command,) = parse_lines([(1, '{"type": "ForgetCustomer", "customer_id": "c1"}')])
    assert isinstance(command, ForgetCustomer) and command.customer_id == "c1" and command.command_id


# Purging processed customer commands ---------------------------------------------------------------

class FakeAdmin:
    """Answers as confluent-kafka's AdminClient does: futures of ConsumerGroupTopicPartitions / DeletedRecords."""

    def __init__(self, committed: dict[int, int]):
        self.committed = committed
        self.deleted = []

    @staticmethod
    def _done(value):
        from concurrent.futures import Future

        future = Future()
        future.set_result(value)
        return future

    def list_consumer_group_offsets(self, requests, request_timeout):
        from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition

        (request,) = requests
        answered = [TopicPartition(tp.topic, tp.partition, self.committed.get(tp.partition, -1001))
                    for tp in request.topic_partitions]
        return {request.group_id: self._done(ConsumerGroupTopicPartitions(request.group_id, answered))}

    def delete_records(self, partitions, request_timeout, operation_timeout):
        from confluent_kafka.admin import DeletedRecords

        self.deleted.extend((tp.topic, tp.partition, tp.offset) for tp in partitions)
        return {tp: self._done(DeletedRecords(tp.offset)) for tp in partitions}


def test_purging_deletes_each_partition_up_to_the_groups_committed_offset_and_says_where_it_starts_now():
    from streams.kafka.admin import purge_processed_commands

    admin = FakeAdmin({0: 17, 2: 5})
    starts = purge_processed_commands(None, "streambank", "bank.customers.commands", [0, 1, 2], admin=admin)
    assert starts == {0: 17, 2: 5}
    assert admin.deleted == [("bank.customers.commands", 0, 17), ("bank.customers.commands", 2, 5)]


def test_purging_a_partition_nothing_was_committed_on_deletes_nothing():
    from streams.kafka.admin import purge_processed_commands

    admin = FakeAdmin({})
    assert purge_processed_commands(None, "streambank", "bank.customers.commands", [1], admin=admin) == {}
    assert admin.deleted == []
