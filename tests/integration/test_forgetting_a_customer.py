"""Crypto-shredding on a real broker: a forgotten customer's personal data is gone from every view, every
replay and every topic, while its money and transfers stay exactly as they were."""
from __future__ import annotations

import time
import uuid
from collections import defaultdict

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from streams.contract import topics
from streams.ops import verify
from streams.domain import views
from streams.services.privacy import REDACTED
from streams.ops.keys import read_keys
from streams.http.api import customer_json


def raw_records(settings) -> list[tuple[str, bytes]]:
    """(topic, bytes of key, value and headers) of every record of every topic of the pipeline:
    commands, replies, events, outcomes, dead letters, keys and every table's changelog."""
    consumer = Consumer(settings.confluent_config(**{
        "group.id": f"privacy-test-{uuid.uuid4().hex}", "enable.auto.commit": False,
        "auto.offset.reset": "earliest"}))
    try:
        metadata = consumer.list_topics(timeout=30)
        names = sorted(n for n in metadata.topics if n.startswith(("bank.", f"{topics.APP_ID}-")))
        assert topics.CUSTOMER_KEYS.name in names and topics.CUSTOMER_COMMANDS.name in names
        ends = {}
        for name in names:
            for partition in metadata.topics[name].partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(name, partition), timeout=30, cached=False)
                if high > low:
                    ends[(name, partition)] = high
        consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in ends])
        found, deadline = [], time.monotonic() + 60
        while ends:
            assert time.monotonic() < deadline, f"could not read to the end of {sorted(ends)}"
            messages = consumer.consume(num_messages=2000, timeout=0.5)
            for message in messages:
                where = (message.topic(), message.partition())
                if message.error() is not None or where not in ends:
                    continue
                headers = b"".join(k.encode() + (v or b"") for k, v in (message.headers() or []))
                found.append((message.topic(), (message.key() or b"") + (message.value() or b"") + headers))
                if message.offset() + 1 >= ends[where]:
                    del ends[where]
            if messages:
                continue  # still reading: the broker is asked about the partitions left only once it runs dry
            for tp in consumer.position([TopicPartition(t, p) for t, p in ends]):  # past trailing markers
                if tp.offset >= ends.get((tp.topic, tp.partition), float("inf")):
                    del ends[(tp.topic, tp.partition)]
            for where in list(ends):  # a purge (DeleteRecords) may have removed what was left to read
                low, _ = consumer.get_watermark_offsets(TopicPartition(*where), timeout=30, cached=False)
                if low >= ends[where]:
                    del ends[where]
        return found
    finally:
        consumer.close()


def topics_holding(settings, needles: list[bytes]) -> set[str]:
    return {topic for topic, data in raw_records(settings) if any(needle in data for needle in needles)}


def replayed_customer_views(settings) -> dict[str, dict]:
    """The customer views rebuilt from the event log alone (as `bank replay views` does), as the API shows
    them: customer events folded with the projection's own code, opened with the keys left in
    bank.customer-keys."""
    log = verify.read_log(settings, views=False)
    folded: dict[str, views.CustomerView] = {}
    for record in log.events[topics.CUSTOMER_EVENTS.name]:
        current = folded.get(record.key)
        if views.is_next(current.version if current else 0, record.value):
            folded[record.key] = views.project_customer(current, record.value)
    keys = read_keys(settings)
    return {customer_id: customer_json(view, keys.get(customer_id)) for customer_id, view in folded.items()}


def wait_for(condition, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def test_a_forgotten_customer_shows_no_personal_data_anywhere_while_balances_and_transfers_stay(api, kafka):
    marker = uuid.uuid4().hex[:12]
    first, last = f"Zelda{marker}", f"Quist{marker}"
    email = f"Zelda.Q.{marker}@Example.com"
    phone, address = f"+44 {marker}", f"{marker} Shredder Lane"
    needles = [s.encode() for s in (first, last, email, email.lower(), phone, address)]
    customer = api.accepted("/api/customers", {"name": {"first_name": first, "last_name": last}, "email": email,
                                               "phone": phone, "address": address})["customer_id"]
    friend = api.create_customer("Kept", "Friend")
    account, friends_account = api.open_account(customer, "100.00"), api.open_account(friend, "5.00")
    api.accepted(f"/api/accounts/{account}/deposits", {"amount": "20.00"})
    transfer = api.accepted("/api/transfers", {"from_account_id": account, "to_account_id": friends_account,
                                               "amount": "30.00", "description": "gift"})["transfer_id"]
    wait_for(lambda: api.get(f"/api/transfers/{transfer}", wait=5).json().get("state") == "COMPLETED",
             "the transfer to complete")
    shown = api.get(f"/api/customers/{customer}", wait=10).json()
    assert (shown["name"], shown["email"], shown["phone"], shown["address"], shown["forgotten"]) == (
        {"first_name": first, "last_name": last}, email.lower(), phone, address, False)
    assert api.get("/api/customers", email=email.upper(), wait=10).json()["customer_id"] == customer
    # Sealed everywhere the workers write; only the client's own CreateCustomer holds plaintext.
    assert topics_holding(kafka, needles) <= {topics.CUSTOMER_COMMANDS.name}  # (gone once purged by a forget)

    forgotten = api.accepted(f"/api/customers/{customer}/forget", {})
    assert forgotten["version"] == 2

    view = api.get(f"/api/customers/{customer}", min_version=2, wait=10).json()
    assert (view["name"], view["email"], view["phone"], view["address"], view["forgotten"]) == (
        {"first_name": REDACTED, "last_name": REDACTED}, REDACTED, None, None, True)
    wait_for(lambda: api.get("/api/customers", email=email).status_code == 404,
             "the email lookup to forget the customer (it is re-keyed through bank.customer-emails)")
    account_view = api.get(f"/api/accounts/{account}", wait=10).json()
    assert (account_view["customer_id"], account_view["balance"], account_view["status"]) == (customer, "90.00", "OPEN")
    assert api.get(f"/api/accounts/{friends_account}").json()["balance"] == "35.00"
    moved = api.get(f"/api/transfers/{transfer}").json()
    assert (moved["state"], moved["amount"], moved["from_account_id"]) == ("COMPLETED", "30.00", account)
    history = api.get(f"/api/accounts/{account}/history").json()
    assert [(e["entry_type"], e["amount"]) for e in history["entries"]] == [
        ("AccountOpened", "100.00"), ("MoneyDeposited", "20.00"), ("AccountDebited", "-30.00")]
    wait_for(lambda: {a["account_id"]: a["balance"] for a in api.get(f"/api/customers/{customer}").json()["accounts"]}
             .get(account) == "90.00", "the customer view's balance")

    # The processed commands (the plaintext CreateCustomer among them) are purged once the forget is committed.
    wait_for(lambda: not topics_holding(kafka, needles), "no plaintext left in any topic")

    replayed = replayed_customer_views(kafka)
    assert (replayed[customer]["name"], replayed[customer]["email"], replayed[customer]["phone"],
            replayed[customer]["address"], replayed[customer]["forgotten"]) == (
        {"first_name": REDACTED, "last_name": REDACTED}, REDACTED, None, None, True)
    assert replayed[friend]["name"] == {"first_name": "Kept", "last_name": "Friend"}  # others still open

    report = verify.run(kafka)
    assert report.ok, "\n".join(report.violations)
