"""process_account_commands, process_customer_commands and process_email_commands, run as wired agents."""
from __future__ import annotations

import os
from decimal import Decimal

import pytest

from harness import scenario
from streams.contract import topics
from streams.config import Settings
from streams.services.privacy import REDACTED_DATA, PersonalData, email_hash, unseal
from streams.domain.accounts import (
    OPEN,
    AccountOpened,
    CloseAccount,
    Deposit,
    MoneyDeposited,
    MoneyWithdrawn,
    OpenAccount,
    Withdraw,
)
from streams.domain.base import Reason
from streams.domain.customers import (
    AddToAccount,
    CreateCustomer,
    CustomerCreated,
    CustomerForgotten,
    ForgetCustomer,
    ToAccountAdded,
)
from streams.domain.emails import EmailReserved, RecordEmailReservation, ReserveEmail
from streams.domain.outcomes import ACCEPTED, REJECTED

ACCOUNTS = "process_account_commands"
CUSTOMERS = "process_customer_commands"
EMAILS = "process_email_commands"


def open_account(command_id="open-1", account_id="A", customer_id="C", balance="5.00"):
    return OpenAccount(command_id=command_id, account_id=account_id, customer_id=customer_id, title="Checking",
                       initial_balance=Decimal(balance))


def deposit(command_id, amount, account_id="A"):
    return Deposit(command_id=command_id, account_id=account_id, amount=Decimal(amount))


def withdraw(command_id, amount, account_id="A"):
    return Withdraw(command_id=command_id, account_id=account_id, amount=Decimal(amount))


#: The registry's key for Ada's email: its keyed hash with the development secret.
ADA_KEY = email_hash(Settings().email_hash_key, "ada@example.com")


def personal_data(bank, record, customer_id="C"):
    """A sealed record's personal data, opened with the customer's key from the keystore table."""
    return unseal(bank.raw("customer_to_key", customer_id), customer_id, record.personal_data)


def create_customer(command_id="create-1", customer_id="C", email="  Ada@Example.COM "):
    return CreateCustomer(command_id=command_id, customer_id=customer_id, first_name="Ada", last_name="Lovelace",
                          email=email)


def on(topic, records):
    return [r for r in records if r.topic == topic.name]


async def through_the_registry(bank, customers, command, key=None):
    """Puts `command` to the customer agent, its ReserveEmail to the registry, the reply back to the
    customer agent, each as the exact bytes emitted; returns what each of the three puts emitted."""
    async with bank.agent(EMAILS) as registry:
        asked = await customers.put(key or command.customer_id, command)
        (request,) = on(topics.EMAIL_COMMANDS, asked)
        answered = await registry.put(request.key, request.value)
        (reply,) = on(topics.CUSTOMER_REPLIES, answered)
        settled = await customers.put(reply.key, reply.value, topic=topics.CUSTOMER_REPLIES.name)
    return asked, answered, settled


# Accepted commands -------------------------------------------------------------------------

@scenario
async def test_opening_an_account_emits_account_opened_keyed_by_account_id_and_an_accepted_outcome(bank):
    async with bank.agent(ACCOUNTS) as agent:
        sent = await agent.put("A", open_account(balance="5.00"))

    assert [(r.topic, r.key) for r in sent] == [(topics.ACCOUNT_EVENTS.name, "A"),
                                                (topics.COMMAND_OUTCOMES.name, "open-1")]
    event, outcome = (bank.decode(r) for r in sent)
    assert isinstance(event, AccountOpened)
    assert (event.event_id, event.aggregate_id, event.version, event.command_id) == ("open-1.0", "A", 1, "open-1")
    assert (event.customer_id, event.initial_balance) == ("C", Decimal("5.00"))
    assert (outcome.command_id, outcome.command_type, outcome.aggregate_id) == ("open-1", "OpenAccount", "A")
    assert (outcome.status, outcome.version, outcome.reason) == (ACCEPTED, 1, None)
    state = bank.view("account_to_state", "A")
    assert (state.balance, state.status, state.version, state.customer_id) == (Decimal("5.00"), OPEN, 1, "C")


@scenario
async def test_a_deposit_to_an_open_account_emits_money_deposited_and_an_accepted_outcome(bank):
    async with bank.agent(ACCOUNTS) as agent:
        await agent.put("A", open_account(balance="5.00"))
        sent = await agent.put("A", deposit("dep-1", "10.00"))

    assert [(r.topic, r.key) for r in sent] == [(topics.ACCOUNT_EVENTS.name, "A"),
                                                (topics.COMMAND_OUTCOMES.name, "dep-1")]
    event, outcome = (bank.decode(r) for r in sent)
    assert isinstance(event, MoneyDeposited)
    assert (event.event_id, event.version, event.amount, event.balance) == (
        "dep-1.0", 2, Decimal("10.00"), Decimal("15.00"))
    assert (outcome.status, outcome.version, outcome.command_type) == (ACCEPTED, 2, "Deposit")
    state = bank.view("account_to_state", "A")
    assert (state.balance, state.version) == (Decimal("15.00"), 2)


@scenario
async def test_a_withdrawal_within_the_balance_emits_money_withdrawn_with_the_new_balance(bank):
    async with bank.agent(ACCOUNTS) as agent:
        await agent.put("A", open_account(balance="20.00"))
        sent = await agent.put("A", withdraw("wd-1", "7.50"))

    event, outcome = (bank.decode(r) for r in sent)
    assert isinstance(event, MoneyWithdrawn)
    assert (event.event_id, event.version, event.amount, event.balance) == (
        "wd-1.0", 2, Decimal("7.50"), Decimal("12.50"))
    assert (outcome.status, outcome.version) == (ACCEPTED, 2)
    assert bank.view("account_to_state", "A").balance == Decimal("12.50")


# Rejected commands -------------------------------------------------------------------------

@scenario
async def test_a_withdrawal_beyond_the_balance_emits_only_a_rejected_outcome_and_leaves_the_state_unchanged(bank):
    async with bank.agent(ACCOUNTS) as agent:
        await agent.put("A", open_account(balance="5.00"))
        before = bank.raw("account_to_state", "A")
        sent = await agent.put("A", withdraw("wd-1", "5.01"))

    assert [(r.topic, r.key) for r in sent] == [(topics.COMMAND_OUTCOMES.name, "wd-1")]
    outcome = bank.decode(sent[0])
    assert (outcome.status, outcome.reason, outcome.field, outcome.version) == (
        REJECTED, Reason.INSUFFICIENT_FUNDS, "amount", None)
    assert "5.00" in outcome.message
    assert bank.raw("account_to_state", "A") == before


@scenario
async def test_closing_an_account_with_money_on_it_is_rejected_with_balance_not_zero(bank):
    async with bank.agent(ACCOUNTS) as agent:
        await agent.put("A", open_account(balance="1.00"))
        before = bank.raw("account_to_state", "A")
        sent = await agent.put("A", CloseAccount(command_id="close-1", account_id="A"))

    assert [r.topic for r in sent] == [topics.COMMAND_OUTCOMES.name]
    assert (bank.decode(sent[0]).status, bank.decode(sent[0]).reason) == (REJECTED, Reason.BALANCE_NOT_ZERO)
    assert bank.raw("account_to_state", "A") == before


@scenario
async def test_a_deposit_to_an_unknown_account_is_rejected_and_creates_no_state(bank):
    async with bank.agent(ACCOUNTS) as agent:
        sent = await agent.put("Z", deposit("dep-1", "1.00", account_id="Z"))

    assert [(r.topic, r.key) for r in sent] == [(topics.COMMAND_OUTCOMES.name, "dep-1")]
    outcome = bank.decode(sent[0])
    assert (outcome.status, outcome.reason, outcome.aggregate_id) == (REJECTED, Reason.ACCOUNT_NOT_FOUND, "Z")
    assert bank.raw("account_to_state", "Z") is None


@scenario
async def test_a_deposit_with_a_stale_expected_version_is_rejected_with_version_conflict(bank):
    async with bank.agent(ACCOUNTS) as agent:
        await agent.put("A", open_account())
        await agent.put("A", deposit("dep-1", "1.00"))
        sent = await agent.put("A", Deposit(command_id="dep-2", account_id="A", amount=Decimal("1.00"),
                                            expected_version=1))

    outcome = bank.decode(sent[-1])
    assert (len(sent), outcome.status, outcome.reason, outcome.field) == (
        1, REJECTED, Reason.VERSION_CONFLICT, "expected_version")
    assert bank.view("account_to_state", "A").version == 2


# Duplicates ----------------------------------------------------------------------------------

@scenario
async def test_a_redelivered_deposit_re_emits_the_same_bytes_and_does_not_double_the_balance(bank):
    async with bank.agent(ACCOUNTS) as agent:
        await agent.put("A", open_account(balance="5.00"))
        first = await agent.put("A", deposit("dep-1", "10.00"))
        state_after_first = bank.raw("account_to_state", "A")
        second = await agent.put("A", deposit("dep-1", "10.00"))

    assert len(first) == 2
    assert second == first  # same topics, keys and bytes: same event id, version, occurred_at
    assert bank.raw("account_to_state", "A") == state_after_first
    state = bank.view("account_to_state", "A")
    assert (state.balance, state.version) == (Decimal("15.00"), 2)


@scenario
async def test_a_redelivered_rejected_command_re_emits_the_same_rejection_even_when_it_would_now_succeed(bank):
    async with bank.agent(ACCOUNTS) as agent:
        await agent.put("A", open_account(balance="0.00"))
        first = await agent.put("A", withdraw("wd-1", "3.00"))
        await agent.put("A", deposit("dep-1", "10.00"))
        second = await agent.put("A", withdraw("wd-1", "3.00"))

    assert second == first
    assert bank.decode(second[0]).reason == Reason.INSUFFICIENT_FUNDS
    assert bank.view("account_to_state", "A").balance == Decimal("10.00")


@scenario
async def test_a_command_id_reused_for_another_account_never_puts_an_event_under_the_wrong_key(bank):
    async with bank.agent(ACCOUNTS) as agent:
        await agent.put("A", open_account(command_id="same", account_id="A"))
        sent = await agent.put("B", open_account(command_id="same", account_id="B"))

    for record in on(topics.ACCOUNT_EVENTS, sent):
        assert record.key == bank.decode(record).aggregate_id
    assert bank.raw("account_to_state", "B") is None  # deduplicated by command id: B is not opened


# Key mismatch ----------------------------------------------------------------------------------

@scenario
async def test_a_command_keyed_by_another_id_than_its_account_is_rejected_with_invalid_field_key(bank):
    async with bank.agent(ACCOUNTS) as agent:
        await agent.put("A", open_account(balance="5.00"))
        before = bank.raw("account_to_state", "A")
        sent = await agent.put("B", deposit("dep-1", "1.00", account_id="A"))

    assert [(r.topic, r.key) for r in sent] == [(topics.COMMAND_OUTCOMES.name, "dep-1")]
    outcome = bank.decode(sent[0])
    assert (outcome.status, outcome.reason, outcome.field, outcome.aggregate_id) == (
        REJECTED, Reason.INVALID_FIELD, "key", "A")
    assert bank.raw("account_to_state", "A") == before
    assert bank.raw("account_to_state", "B") is None
    assert bank.raw("account_command_to_result", "dep-1") is None  # not remembered: a correct retry may pass


@scenario
async def test_a_command_without_a_key_is_rejected_with_invalid_field_key(bank):
    async with bank.agent(ACCOUNTS) as agent:
        sent = await agent.put(None, open_account())

    assert [r.topic for r in sent] == [topics.COMMAND_OUTCOMES.name]
    assert (bank.decode(sent[0]).reason, bank.decode(sent[0]).field) == (Reason.INVALID_FIELD, "key")
    assert bank.raw("account_to_state", "A") is None


# Dead letters ------------------------------------------------------------------------------------

def unknown_fingerprint() -> bytes:
    return b"\xc3\x01" + os.urandom(8) + b"\x02A"


def an_account_event(codec) -> bytes:
    return codec.encode(AccountOpened(event_id="x.0", aggregate_id="A", version=1, command_id="x",
                                      occurred_at=0, customer_id="C", title="t", description="",
                                      initial_balance=Decimal("1.00")))


POISON = {
    "garbage bytes": (lambda codec: b"\x00not avro at all", "undecodable"),
    "an unknown schema fingerprint": (lambda codec: unknown_fingerprint(), "unknown schema fingerprint"),
    "a truncated body": (lambda codec: codec.encode(open_account())[:-3], "undecodable"),
    "an event on the command topic": (an_account_event, "AccountOpened does not belong on"),
    "a customer command on the account topic": (lambda codec: codec.encode(create_customer(customer_id="A")),
                                                "CreateCustomer does not belong on"),
}


@pytest.mark.parametrize("poison", POISON.values(), ids=POISON.keys())
@scenario
async def test_an_unreadable_or_foreign_account_command_is_dead_lettered_and_the_next_command_still_runs(
        bank, poison):
    make, error = poison
    async with bank.agent(ACCOUNTS) as agent:
        await agent.put("A", open_account(balance="5.00"))
        value = make(bank.codec)
        parked = await agent.put("A", value)
        after = await agent.put("A", deposit("dep-1", "1.00"))

    assert len(parked) == 1
    letter = parked[0]
    assert (letter.topic, letter.key, letter.value) == (topics.DEADLETTER.name, "A", value)
    headers = dict(letter.headers)
    assert list(headers) == ["deadletter.topic", "deadletter.partition", "deadletter.offset", "deadletter.error"]
    assert headers["deadletter.topic"] == topics.ACCOUNT_COMMANDS.name.encode()
    assert headers["deadletter.partition"] == b"0"
    assert headers["deadletter.offset"] == b"1"  # the second record put into this agent
    assert error.encode() in headers["deadletter.error"]
    assert bank.raw("account_command_to_result", "x") is None
    assert [bank.decode(r).status for r in on(topics.COMMAND_OUTCOMES, after)] == [ACCEPTED]
    assert bank.view("account_to_state", "A").balance == Decimal("6.00")


# Customer commands ----------------------------------------------------------------------------------

@scenario
async def test_creating_a_customer_asks_the_registry_for_the_normalized_email_and_emits_no_outcome_yet(bank):
    async with bank.agent(CUSTOMERS) as agent:
        sent = await agent.put("C", create_customer())

    assert [(r.topic, r.key) for r in sent] == [(topics.EMAIL_COMMANDS.name, ADA_KEY)]
    request = bank.decode(sent[0])
    assert request == ReserveEmail(command_id="create-1.reserve-email", email=ADA_KEY, customer_id="C",
                                   create_command_id="create-1", personal_data=request.personal_data, key_id="C")
    assert personal_data(bank, request) == PersonalData("Ada", "Lovelace", "ada@example.com")
    assert b"Ada" not in sent[0].value and b"ada@example.com" not in sent[0].value
    assert bank.raw("customer_to_state", "C") is None
    assert bank.view("customer_command_to_result", "create-1").outcome is None


@scenario
async def test_the_registry_reserves_a_free_email_and_replies_to_the_customer_keyed_by_customer_id(bank):
    async with bank.agent(CUSTOMERS) as agent:
        asked, answered, _ = await through_the_registry(bank, agent, create_customer())

    assert [(r.topic, r.key) for r in answered] == [(topics.EMAIL_EVENTS.name, ADA_KEY),
                                                    (topics.CUSTOMER_REPLIES.name, "C"),
                                                    (topics.COMMAND_OUTCOMES.name, "create-1.reserve-email")]
    reserved, reply, _ = (bank.decode(r) for r in answered)
    assert isinstance(reserved, EmailReserved)
    assert (reserved.aggregate_id, reserved.customer_id, reserved.version) == (ADA_KEY, "C", 1)
    assert isinstance(reply, RecordEmailReservation)
    assert (reply.command_id, reply.accepted, reply.reason) == ("create-1.reserve-email.reply", True, None)
    assert (reply.settles_command_id, reply.settles_command_type) == ("create-1", "CreateCustomer")
    assert bank.view("email_to_reservation", ADA_KEY).customer_id == "C"


@scenario
async def test_creating_a_customer_emits_customer_created_with_the_normalized_email_and_an_accepted_outcome(bank):
    async with bank.agent(CUSTOMERS) as agent:
        _, _, sent = await through_the_registry(bank, agent, create_customer())

    assert [(r.topic, r.key) for r in sent] == [(topics.CUSTOMER_EVENTS.name, "C"),
                                                (topics.COMMAND_OUTCOMES.name, "create-1")]
    event, outcome = (bank.decode(r) for r in sent)
    assert isinstance(event, CustomerCreated)
    assert (event.event_id, event.aggregate_id, event.version, event.email_hash, event.command_id) == (
        "create-1.0", "C", 1, ADA_KEY, "create-1")
    assert (event.first_name, event.email, event.key_id) == ("", "", "C")  # only the sealed blob holds them
    assert personal_data(bank, event).email == "ada@example.com"
    assert (outcome.status, outcome.version, outcome.command_type, outcome.command_id, outcome.aggregate_id) == (
        ACCEPTED, 1, "CreateCustomer", "create-1", "C")
    state = bank.view("customer_to_state", "C")
    assert (state.email_hash, state.version, state.to_accounts) == (ADA_KEY, 1, ())
    assert personal_data(bank, state).first_name == "Ada"


@scenario
async def test_adding_a_to_account_to_a_customer_emits_to_account_added_at_the_next_version(bank):
    async with bank.agent(CUSTOMERS) as agent:
        await through_the_registry(bank, agent, create_customer())
        sent = await agent.put("C", AddToAccount(command_id="add-1", customer_id="C", account_id="B",
                                                 title="Rent", owner="Landlord"))

    event, outcome = (bank.decode(r) for r in sent)
    assert isinstance(event, ToAccountAdded)
    assert (event.event_id, event.version, event.account_id, event.title) == ("add-1.0", 2, "B", "Rent")
    assert (outcome.status, outcome.version) == (ACCEPTED, 2)
    assert [a.account_id for a in bank.view("customer_to_state", "C").to_accounts] == ["B"]


@scenario
async def test_creating_an_existing_customer_again_is_rejected_with_already_exists_and_changes_nothing(bank):
    async with bank.agent(CUSTOMERS) as agent:
        await through_the_registry(bank, agent, create_customer())
        before = bank.raw("customer_to_state", "C")
        sent = await agent.put("C", create_customer(command_id="create-2", email="other@example.com"))

    assert [(r.topic, r.key) for r in sent] == [(topics.COMMAND_OUTCOMES.name, "create-2")]
    assert (bank.decode(sent[0]).status, bank.decode(sent[0]).reason) == (REJECTED, Reason.ALREADY_EXISTS)
    assert bank.raw("customer_to_state", "C") == before
    assert bank.raw("email_to_reservation", "other@example.com") is None  # no email reserved for nothing


@scenario
async def test_two_customers_racing_for_one_email_create_exactly_one_and_the_other_is_rejected_email_taken(bank):
    async with bank.agent(CUSTOMERS) as customers, bank.agent(EMAILS) as registry:
        ada = await customers.put("C1", create_customer("create-1", "C1", email="ada@example.com"))
        eve = await customers.put("C2", create_customer("create-2", "C2", email=" ADA@example.com"))
        requests = on(topics.EMAIL_COMMANDS, ada + eve)
        assert [r.key for r in requests] == [ADA_KEY, ADA_KEY]  # they meet on one key
        answers = [await registry.put(r.key, r.value) for r in requests]
        replies = [r for answer in answers for r in on(topics.CUSTOMER_REPLIES, answer)]
        settled = [await customers.put(r.key, r.value) for r in replies]

    events = [bank.decode(r) for batch in settled for r in on(topics.CUSTOMER_EVENTS, batch)]
    assert [(type(e), e.aggregate_id) for e in events] == [(CustomerCreated, "C1")]
    outcomes = {o.command_id: o for o in (bank.decode(r) for batch in settled
                                          for r in on(topics.COMMAND_OUTCOMES, batch))}
    assert set(outcomes) == {"create-1", "create-2"}
    assert (outcomes["create-1"].status, outcomes["create-1"].version) == (ACCEPTED, 1)
    assert (outcomes["create-2"].status, outcomes["create-2"].reason, outcomes["create-2"].field) == (
        REJECTED, Reason.EMAIL_TAKEN, "email")
    assert (outcomes["create-2"].command_type, outcomes["create-2"].aggregate_id) == ("CreateCustomer", "C2")
    assert bank.raw("customer_to_state", "C2") is None
    assert bank.view("email_to_reservation", ADA_KEY).customer_id == "C1"


@scenario
async def test_a_second_create_of_one_customer_with_the_same_email_is_answered_but_creates_nothing_twice(bank):
    async with bank.agent(CUSTOMERS) as agent:
        await through_the_registry(bank, agent, create_customer("create-1"))
        sent = await agent.put("C", create_customer("create-2"))

    assert [(r.topic, bank.decode(r).reason) for r in sent] == [(topics.COMMAND_OUTCOMES.name,
                                                                 Reason.ALREADY_EXISTS)]
    assert bank.view("customer_to_state", "C").version == 1


@scenario
async def test_a_reply_keyed_by_another_id_than_its_customer_is_dead_lettered(bank):
    async with bank.agent(CUSTOMERS) as agent, bank.agent(EMAILS) as registry:
        asked = await agent.put("C", create_customer())
        answered = await registry.put(asked[0].key, asked[0].value)
        (reply,) = on(topics.CUSTOMER_REPLIES, answered)
        sent = await agent.put("D", reply.value)

    assert [(r.topic, r.key, r.value) for r in sent] == [(topics.DEADLETTER.name, "D", reply.value)]
    assert bank.raw("customer_to_state", "C") is None and bank.raw("customer_to_state", "D") is None


@scenario
async def test_a_customer_with_an_invalid_email_is_rejected_with_invalid_field_email(bank):
    async with bank.agent(CUSTOMERS) as agent:
        sent = await agent.put("C", create_customer(email="not-an-email"))

    outcome = bank.decode(sent[0])
    assert (len(sent), outcome.status, outcome.reason, outcome.field) == (1, REJECTED, Reason.INVALID_FIELD, "email")
    assert bank.raw("customer_to_state", "C") is None


@scenario
async def test_a_to_account_for_an_unknown_customer_is_rejected_with_customer_not_found(bank):
    async with bank.agent(CUSTOMERS) as agent:
        sent = await agent.put("C", AddToAccount(command_id="add-1", customer_id="C", account_id="B"))

    assert [r.topic for r in sent] == [topics.COMMAND_OUTCOMES.name]
    assert (bank.decode(sent[0]).status, bank.decode(sent[0]).reason) == (REJECTED, Reason.CUSTOMER_NOT_FOUND)


@scenario
async def test_a_redelivered_create_customer_re_emits_the_same_bytes_and_leaves_the_state_unchanged(bank):
    async with bank.agent(CUSTOMERS) as agent:
        first = await agent.put("C", create_customer())
        result = bank.raw("customer_command_to_result", "create-1")
        second = await agent.put("C", create_customer())

    assert len(first) == 1 and second == first  # the same ReserveEmail, still no outcome
    assert bank.raw("customer_command_to_result", "create-1") == result
    assert bank.raw("customer_to_state", "C") is None


@scenario
async def test_a_create_customer_redelivered_after_the_reply_re_emits_the_creation_and_the_accepted_outcome(bank):
    async with bank.agent(CUSTOMERS) as agent:
        _, _, settled = await through_the_registry(bank, agent, create_customer())
        state = bank.raw("customer_to_state", "C")
        again = await agent.put("C", create_customer())

    assert len(settled) == 2 and again == settled
    assert bank.raw("customer_to_state", "C") == state
    assert bank.decode(again[1]).status == ACCEPTED  # not ALREADY_EXISTS: the duplicate is answered as before


@scenario
async def test_a_redelivered_reply_and_reservation_re_emit_the_same_bytes_and_leave_the_state_unchanged(bank):
    async with bank.agent(CUSTOMERS) as agent, bank.agent(EMAILS) as registry:
        asked, answered, settled = await through_the_registry(bank, agent, create_customer())
        state, reservation = bank.raw("customer_to_state", "C"), bank.raw("email_to_reservation", "ada@example.com")
        answered_again = await registry.put(asked[0].key, asked[0].value)
        (reply,) = on(topics.CUSTOMER_REPLIES, answered)
        settled_again = await agent.put(reply.key, reply.value)

    assert answered_again == answered and settled_again == settled
    assert bank.raw("customer_to_state", "C") == state
    assert bank.raw("email_to_reservation", "ada@example.com") == reservation
    assert bank.view("customer_to_state", "C").version == 1


@scenario
async def test_a_customer_command_keyed_by_another_id_is_rejected_with_invalid_field_key(bank):
    async with bank.agent(CUSTOMERS) as agent:
        sent = await agent.put("D", create_customer(customer_id="C"))

    assert [(r.topic, r.key) for r in sent] == [(topics.COMMAND_OUTCOMES.name, "create-1")]
    outcome = bank.decode(sent[0])
    assert (outcome.status, outcome.reason, outcome.field) == (REJECTED, Reason.INVALID_FIELD, "key")
    assert bank.raw("customer_to_state", "C") is None and bank.raw("customer_to_state", "D") is None


@pytest.mark.parametrize("poison", POISON.values(), ids=POISON.keys())
@scenario
async def test_an_unreadable_or_foreign_customer_command_is_dead_lettered_and_the_next_command_still_runs(
        bank, poison):
    make, error = poison
    if "CreateCustomer" in error:  # a customer command belongs here: use an account command instead
        make, error = (lambda codec: codec.encode(deposit("dep-1", "1.00", account_id="C")),
                       "Deposit does not belong on")
    async with bank.agent(CUSTOMERS) as agent:
        value = make(bank.codec)
        parked = await agent.put("C", value, topic=topics.CUSTOMER_COMMANDS.name)
        _, _, after = await through_the_registry(bank, agent, create_customer())

    assert [(r.topic, r.key, r.value) for r in parked] == [(topics.DEADLETTER.name, "C", value)]
    headers = dict(parked[0].headers)
    assert headers["deadletter.topic"] == topics.CUSTOMER_COMMANDS.name.encode()
    assert (headers["deadletter.partition"], headers["deadletter.offset"]) == (b"0", b"0")
    assert error.encode() in headers["deadletter.error"]
    assert [bank.decode(r).status for r in on(topics.COMMAND_OUTCOMES, after)] == [ACCEPTED]
    assert bank.view("customer_to_state", "C").version == 1


@scenario
async def test_garbage_on_the_customer_replies_topic_is_dead_lettered_naming_that_topic(bank):
    async with bank.agent(CUSTOMERS) as agent:
        parked = await agent.put("C", b"\x00garbage", topic=topics.CUSTOMER_REPLIES.name)
        _, _, after = await through_the_registry(bank, agent, create_customer())

    assert [(r.topic, r.key, r.value) for r in parked] == [(topics.DEADLETTER.name, "C", b"\x00garbage")]
    assert dict(parked[0].headers)["deadletter.topic"] == topics.CUSTOMER_REPLIES.name.encode()
    assert [bank.decode(r).status for r in on(topics.COMMAND_OUTCOMES, after)] == [ACCEPTED]


@scenario
async def test_a_reply_for_an_email_on_the_email_command_topic_is_dead_lettered(bank):
    reply = RecordEmailReservation(command_id="x.reply", customer_id="C", email="ada@example.com", accepted=True,
                                   first_name="Ada", last_name="Lovelace", settles_command_id="x",
                                   settles_command_type="CreateCustomer")
    async with bank.agent(EMAILS) as registry:
        parked = await registry.put("ada@example.com", reply)

    assert [r.topic for r in parked] == [topics.DEADLETTER.name]
    assert b"RecordEmailReservation does not belong on" in dict(parked[0].headers)["deadletter.error"]
    assert bank.raw("email_to_reservation", "ada@example.com") is None


# Forgetting a customer (crypto-shredding) ---------------------------------------------------------

@scenario
async def test_forgetting_a_customer_deletes_its_key_and_emits_customer_forgotten_and_an_accepted_outcome(bank):
    async with bank.agent(CUSTOMERS) as agent:
        _, _, created_records = await through_the_registry(bank, agent, create_customer())
        created = bank.decode(on(topics.CUSTOMER_EVENTS, created_records)[0])
        assert personal_data(bank, created).first_name == "Ada"
        sent = await agent.put("C", ForgetCustomer(command_id="forget-1", customer_id="C"))
        again = await agent.put("C", ForgetCustomer(command_id="forget-1", customer_id="C"))

    assert [(r.topic, r.key) for r in sent] == [(topics.CUSTOMER_EVENTS.name, "C"),
                                                (topics.COMMAND_OUTCOMES.name, "forget-1")]
    event, outcome = (bank.decode(r) for r in sent)
    assert (type(event), event.version, outcome.status, outcome.version) == (CustomerForgotten, 2, ACCEPTED, 2)
    assert bank.raw("customer_to_key", "C") is None
    assert personal_data(bank, created) == REDACTED_DATA  # every copy of the blob is now noise
    assert bank.view("customer_to_state", "C").forgotten
    assert [r.value for r in again] == [r.value for r in sent]  # a redelivery re-emits, changes nothing


@scenario
async def test_a_customer_refused_its_email_keeps_no_key(bank):
    async with bank.agent(CUSTOMERS) as customers, bank.agent(EMAILS) as registry:
        await through_the_registry(bank, customers, create_customer("create-1", "C1", email="ada@example.com"))
        asked = await customers.put("C2", create_customer("create-2", "C2", email="ada@example.com"))
        assert bank.raw("customer_to_key", "C2") is not None
        answered = await registry.put(asked[0].key, asked[0].value)
        (reply,) = on(topics.CUSTOMER_REPLIES, answered)
        await customers.put(reply.key, reply.value, topic=topics.CUSTOMER_REPLIES.name)

    assert bank.raw("customer_to_key", "C2") is None
    assert bank.raw("customer_to_key", "C1") is not None


@scenario
async def test_a_refused_second_create_answered_first_leaves_the_key_the_accepted_create_sealed_with(bank):
    async with bank.agent(CUSTOMERS) as customers, bank.agent(EMAILS) as registry:
        await through_the_registry(bank, customers, create_customer("create-eve", "E", email="eve@example.com"))
        first = await customers.put("C", create_customer("create-1", "C", email="ada@example.com"))
        second = await customers.put("C", create_customer("create-2", "C", email="eve@example.com"))
        accepted = await registry.put(first[0].key, first[0].value)
        refused = await registry.put(second[0].key, second[0].value)
        (accepted_reply,), (refused_reply,) = on(topics.CUSTOMER_REPLIES, accepted), on(topics.CUSTOMER_REPLIES,
                                                                                         refused)
        assert not bank.decode(refused_reply).accepted
        rejected = await customers.put("C", refused_reply.value, topic=topics.CUSTOMER_REPLIES.name)
        assert bank.raw("customer_to_pending_steps", "C") is not None  # create-1 still waits on its email
        created = await customers.put("C", accepted_reply.value, topic=topics.CUSTOMER_REPLIES.name)

    outcomes = {o.command_id: (o.status, o.reason) for o in map(bank.decode, on(topics.COMMAND_OUTCOMES,
                                                                                 rejected + created))}
    assert outcomes == {"create-2": (REJECTED, Reason.EMAIL_TAKEN), "create-1": (ACCEPTED, None)}
    event = bank.decode(on(topics.CUSTOMER_EVENTS, created)[0])
    assert personal_data(bank, event, "C") == PersonalData(first_name="Ada", last_name="Lovelace",
                                                           email="ada@example.com")
    assert bank.raw("customer_to_pending_steps", "C") is None


# Waiting processes ----------------------------------------------------------------------------------

@scenario
async def test_a_customer_refused_its_email_waits_on_nothing_more_so_the_reservation_is_not_issued_again(bank):
    async with bank.agent(CUSTOMERS) as customers, bank.agent(EMAILS) as registry:
        await through_the_registry(bank, customers, create_customer("create-1", "C1", email="ada@example.com"))
        asked = await customers.put("C2", create_customer("create-2", "C2", email="ada@example.com"))
        assert bank.raw("customer_to_pending_steps", "C2") is not None  # waits on its ReserveEmail
        answered = await registry.put(asked[0].key, asked[0].value)
        (reply,) = on(topics.CUSTOMER_REPLIES, answered)
        settled = await customers.put(reply.key, reply.value, topic=topics.CUSTOMER_REPLIES.name)

    assert [(o.status, o.reason) for o in map(bank.decode, on(topics.COMMAND_OUTCOMES, settled))] == [
        (REJECTED, Reason.EMAIL_TAKEN)]
    assert bank.raw("customer_to_pending_steps", "C2") is None
    assert bank.raw("customer_to_pending_steps", "C1") is None


@scenario
async def test_an_unexpected_error_in_a_batch_is_reported_before_anything_of_the_batch_can_be_committed(
        bank, monkeypatch):
    # In a worker the report stops the process at once (streams.worker.run.stop_at_once): Faust acks a
    # batch even when its agent fails, and must not get to commit it.
    from streams.services.commands import CommandProcessor

    def broken(self, key, value, origin):
        raise RuntimeError("a bug")
    monkeypatch.setattr(CommandProcessor, "process", broken)  # before the pipeline is wired
    failures = []
    bank.pipeline.on_batch_failure = lambda agent, exc: failures.append((agent, str(exc)))
    async with bank.agent(ACCOUNTS) as agent:
        with pytest.raises(RuntimeError, match="a bug"):
            await agent.put("A", open_account())
    assert failures == [(ACCOUNTS, "a bug")]
