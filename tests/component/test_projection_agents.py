"""project_accounts, project_customers, index_emails and record_outcomes, run as wired agents."""
from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from harness import NOW, scenario
from streams.contract import topics
from streams.domain.accounts import (
    CLOSED,
    OPEN,
    AccountClosed,
    AccountOpened,
    Deposit,
    MoneyDeposited,
    MoneyWithdrawn,
    OpenAccount,
)
from streams.domain.customers import CustomerCreated, CustomerForgotten, ToAccount, ToAccountAdded
from streams.domain.outcomes import ACCEPTED, REJECTED, CommandOutcome
from streams.domain.views import AccountSummary, EmailRegistered
from streams.services.projections import history_key


def envelope(aggregate_id, version, command_id):
    return dict(event_id=f"{command_id}.0", aggregate_id=aggregate_id, version=version, command_id=command_id,
                occurred_at=NOW + version)


def opened(version=1, balance="5.00", account_id="A", customer_id="C"):
    return AccountOpened(**envelope(account_id, version, "open"), customer_id=customer_id, title="Checking",
                         description="", initial_balance=Decimal(balance))


def deposited(version, amount, balance, account_id="A"):
    return MoneyDeposited(**envelope(account_id, version, f"dep{version}"), amount=Decimal(amount),
                          balance=Decimal(balance))


def withdrawn(version, amount, balance, account_id="A"):
    return MoneyWithdrawn(**envelope(account_id, version, f"wd{version}"), amount=Decimal(amount),
                          balance=Decimal(balance))


def created(version=1, customer_id="C", email="ada@example.com"):
    return CustomerCreated(**envelope(customer_id, version, "create"), first_name="Ada", last_name="Lovelace",
                           email=email)


def summary(version, balance, account_id="A", customer_id="C", status=OPEN):
    return AccountSummary(account_id=account_id, customer_id=customer_id, title="Checking",
                          balance=Decimal(balance), status=status, version=version)


def outcome(command_id="cmd-1", status=ACCEPTED, version=1, reason=None):
    return CommandOutcome(command_id=command_id, command_type="Deposit", aggregate_id="A", status=status,
                          version=version, reason=reason, occurred_at=NOW)


# project_accounts ----------------------------------------------------------------------------

@scenario
async def test_account_events_build_the_account_view_the_statement_and_a_summary_per_event(bank):
    async with bank.agent("project_accounts") as agent:
        sent = [await agent.put("A", opened(balance="5.00")),
                await agent.put("A", deposited(2, "10.00", "15.00")),
                await agent.put("A", withdrawn(3, "3.00", "12.00"))]

    view = bank.view("account_to_view", "A")
    assert (view.account_id, view.customer_id, view.balance, view.status, view.version) == (
        "A", "C", Decimal("12.00"), OPEN, 3)
    statement = [bank.view("account_version_to_entry", history_key("A", v)) for v in (1, 2, 3)]
    assert [(e.version, e.entry_type, e.amount, e.balance, e.command_id) for e in statement] == [
        (1, "AccountOpened", Decimal("5.00"), Decimal("5.00"), "open"),
        (2, "MoneyDeposited", Decimal("10.00"), Decimal("15.00"), "dep2"),
        (3, "MoneyWithdrawn", Decimal("-3.00"), Decimal("12.00"), "wd3"),
    ]
    assert statement[1].occurred_at == NOW + 2
    assert bank.raw("account_version_to_entry", history_key("A", 4)) is None
    assert all(len(records) == 1 for records in sent)
    summaries = [records[0] for records in sent]
    assert {(r.topic, r.key) for r in summaries} == {(topics.CUSTOMER_ACCOUNTS.name, "C")}
    assert [bank.decode(r) for r in summaries] == [summary(1, "5.00"), summary(2, "15.00"), summary(3, "12.00")]


@scenario
async def test_the_statement_keys_are_account_id_hash_zero_padded_version_so_they_sort_by_version(bank):
    async with bank.agent("project_accounts") as agent:
        await agent.put("A", opened())
        for version in range(2, 12):
            await agent.put("A", deposited(version, "1.00", str(Decimal("4.00") + version)))

    keys = [history_key("A", v) for v in range(1, 12)]
    assert keys[0] == "A#000000000001" and keys == sorted(keys)
    assert all(bank.raw("account_version_to_entry", k) is not None for k in keys)
    assert bank.view("account_to_view", "A").balance == Decimal("15.00")


@scenario
async def test_closing_an_account_marks_the_view_closed_and_tells_the_customer(bank):
    async with bank.agent("project_accounts") as agent:
        await agent.put("A", opened(balance="0.00"))
        sent = await agent.put("A", AccountClosed(**envelope("A", 2, "close")))

    assert (bank.view("account_to_view", "A").status, bank.view("account_to_view", "A").version) == (CLOSED, 2)
    assert bank.decode(sent[0]) == summary(2, "0.00", status=CLOSED)
    entry = bank.view("account_version_to_entry", history_key("A", 2))
    assert (entry.entry_type, entry.amount) == ("AccountClosed", Decimal("0.00"))


@scenario
async def test_a_redelivered_older_account_event_changes_nothing_and_emits_nothing(bank):
    async with bank.agent("project_accounts") as agent:
        await agent.put("A", opened(balance="5.00"))
        await agent.put("A", deposited(2, "10.00", "15.00"))
        await agent.put("A", withdrawn(3, "3.00", "12.00"))
        view_before = bank.raw("account_to_view", "A")
        entry_before = bank.raw("account_version_to_entry", history_key("A", 2))
        again = await agent.put("A", deposited(2, "10.00", "15.00"))
        first_again = await agent.put("A", opened(balance="5.00"))

    assert again == [] and first_again == []
    assert bank.raw("account_to_view", "A") == view_before
    assert bank.raw("account_version_to_entry", history_key("A", 2)) == entry_before
    assert bank.view("account_to_view", "A").balance == Decimal("12.00")


@scenario
async def test_the_account_command_agent_output_projects_to_the_same_balance(bank):
    async with bank.agent("process_account_commands") as agent:
        await agent.put("A", OpenAccount(command_id="o", account_id="A", customer_id="C", title="t",
                                         initial_balance=Decimal("2.00")))
        for n in range(3):
            await agent.put("A", Deposit(command_id=f"d{n}", account_id="A", amount=Decimal("1.25")))
        await agent.put("A", Deposit(command_id="d0", account_id="A", amount=Decimal("1.25")))  # a duplicate
    events = [r for r in bank.emitted if r.topic == topics.ACCOUNT_EVENTS.name]
    assert len(events) == 5  # the duplicate is re-emitted, the projection must ignore it

    async with bank.agent("project_accounts") as agent:
        for record in events:
            await agent.put(record.key, record.value)

    state, view = bank.view("account_to_state", "A"), bank.view("account_to_view", "A")
    assert (view.balance, view.version) == (state.balance, state.version) == (Decimal("5.75"), 4)


@scenario
async def test_a_command_on_the_account_event_topic_is_dead_lettered_and_projection_goes_on(bank):
    async with bank.agent("project_accounts") as agent:
        value = bank.codec.encode(Deposit(command_id="d", account_id="A", amount=Decimal("1.00")))
        # project_accounts reads bank.view-rebuild too: say which topic the record comes from
        parked = await agent.put("A", value, topic=topics.ACCOUNT_EVENTS.name)
        after = await agent.put("A", opened())

    assert [(r.topic, r.key, r.value) for r in parked] == [(topics.DEADLETTER.name, "A", value)]
    headers = dict(parked[0].headers)
    assert headers["deadletter.topic"] == topics.ACCOUNT_EVENTS.name.encode()
    assert b"Deposit does not belong on" in headers["deadletter.error"]
    assert [r.topic for r in after] == [topics.CUSTOMER_ACCOUNTS.name]


# project_customers ----------------------------------------------------------------------------

@scenario
async def test_customer_created_builds_the_customer_view_and_registers_the_email(bank):
    async with bank.agent("project_customers") as agent:
        sent = await agent.put("C", created(email="ada@example.com"))

    view = bank.view("customer_to_view", "C")
    assert (view.customer_id, view.first_name, view.last_name, view.email, view.version, view.accounts) == (
        "C", "Ada", "Lovelace", "ada@example.com", 1, ())
    assert [(r.topic, r.key) for r in sent] == [(topics.CUSTOMER_EMAILS.name, "ada@example.com")]
    assert bank.decode(sent[0]) == EmailRegistered(email="ada@example.com", customer_id="C")


@scenario
async def test_a_to_account_added_updates_the_view_without_registering_the_email_again(bank):
    async with bank.agent("project_customers") as agent:
        await agent.put("C", created())
        sent = await agent.put("C", ToAccountAdded(**envelope("C", 2, "add"), account_id="B", title="Rent",
                                                   owner="Landlord"))
        again = await agent.put("C", created())

    assert sent == [] and again == []
    view = bank.view("customer_to_view", "C")
    assert (view.version, view.to_accounts) == (2, (ToAccount(account_id="B", title="Rent", owner="Landlord"),))


@scenario
async def test_an_account_summary_before_the_customer_is_kept_in_a_placeholder_and_survives_creation(bank):
    async with bank.agent("project_customers") as agent:
        early = await agent.put("C", summary(1, "5.00"))
        placeholder = bank.view("customer_to_view", "C")
        sent = await agent.put("C", created())

    assert early == []
    assert (placeholder.version, placeholder.email, placeholder.accounts) == (0, "", (summary(1, "5.00"),))
    view = bank.view("customer_to_view", "C")
    assert (view.first_name, view.email, view.version, view.accounts) == (
        "Ada", "ada@example.com", 1, (summary(1, "5.00"),))
    assert [(r.topic, r.key) for r in sent] == [(topics.CUSTOMER_EMAILS.name, "ada@example.com")]


@scenario
async def test_a_newer_account_summary_replaces_the_older_one_and_an_older_one_is_ignored(bank):
    async with bank.agent("project_customers") as agent:
        await agent.put("C", created())
        await agent.put("C", summary(1, "5.00", account_id="A"))
        await agent.put("C", summary(1, "7.00", account_id="B"))
        newer = await agent.put("C", summary(3, "12.00", account_id="A"))
        after_newer = bank.raw("customer_to_view", "C")
        older = await agent.put("C", summary(2, "15.00", account_id="A"))

    assert newer == [] and older == []
    assert bank.raw("customer_to_view", "C") == after_newer
    assert bank.view("customer_to_view", "C").accounts == (summary(3, "12.00", account_id="A"),
                                                          summary(1, "7.00", account_id="B"))


@scenario
async def test_account_summaries_from_the_account_projector_reach_the_customer_view(bank):
    async with bank.agent("project_accounts") as agent:
        await agent.put("A", opened(balance="5.00"))
        await agent.put("A", deposited(2, "10.00", "15.00"))
    summaries = [r for r in bank.emitted if r.topic == topics.CUSTOMER_ACCOUNTS.name]

    async with bank.agent("project_customers") as agent:
        await agent.put("C", created())
        for record in reversed(summaries):  # out of order: the older one must not win
            await agent.put(record.key, record.value)

    assert bank.view("customer_to_view", "C").accounts == (summary(2, "15.00"),)


@scenario
async def test_garbage_on_the_customer_sources_is_dead_lettered_and_projection_goes_on(bank):
    async with bank.agent("project_customers") as agent:
        parked = await agent.put("C", b"\xc3\x01garbage")
        after = await agent.put("C", created())

    assert [(r.topic, r.key, r.value) for r in parked] == [(topics.DEADLETTER.name, "C", b"\xc3\x01garbage")]
    assert {"deadletter.topic", "deadletter.partition", "deadletter.offset", "deadletter.error"} == {
        name for name, _ in parked[0].headers}
    assert [r.topic for r in after] == [topics.CUSTOMER_EMAILS.name]


# index_emails -----------------------------------------------------------------------------------

@scenario
async def test_the_first_registration_of_an_email_wins_the_lookup(bank):
    async with bank.agent("index_emails") as agent:
        first = await agent.put("ada@example.com", EmailRegistered(email="ada@example.com", customer_id="C1"))
        second = await agent.put("ada@example.com", EmailRegistered(email="ada@example.com", customer_id="C2"))
        other = await agent.put("bob@example.com", EmailRegistered(email="bob@example.com", customer_id="C3"))

    assert first == second == other == []
    assert bank.raw("email_to_customer", "ada@example.com") == b"C1"
    assert bank.raw("email_to_customer", "bob@example.com") == b"C3"


@scenario
async def test_a_foreign_record_on_the_email_topic_is_dead_lettered_and_indexing_goes_on(bank):
    async with bank.agent("index_emails") as agent:
        value = bank.codec.encode(created())
        parked = await agent.put("ada@example.com", value, topic=topics.CUSTOMER_EMAILS.name)
        await agent.put("ada@example.com", EmailRegistered(email="ada@example.com", customer_id="C"))

    assert [(r.topic, r.value) for r in parked] == [(topics.DEADLETTER.name, value)]
    assert dict(parked[0].headers)["deadletter.topic"] == topics.CUSTOMER_EMAILS.name.encode()
    assert bank.raw("email_to_customer", "ada@example.com") == b"C"


# record_outcomes --------------------------------------------------------------------------------

@scenario
async def test_the_first_outcome_of_a_command_is_recorded_and_a_later_different_one_does_not_replace_it(bank):
    async with bank.agent("record_outcomes") as agent:
        first_bytes = bank.codec.encode(outcome("cmd-1", ACCEPTED, version=2))
        first = await agent.put("cmd-1", first_bytes)
        later = await agent.put("cmd-1", outcome("cmd-1", REJECTED, version=None, reason="INSUFFICIENT_FUNDS"))
        await agent.put("cmd-2", outcome("cmd-2", REJECTED, version=None, reason="ACCOUNT_NOT_FOUND"))

    assert first == later == []
    assert bank.raw("command_to_outcome", "cmd-1") == first_bytes
    assert (bank.view("command_to_outcome", "cmd-1").status, bank.view("command_to_outcome", "cmd-1").version) == (
        ACCEPTED, 2)
    assert bank.view("command_to_outcome", "cmd-2").reason == "ACCOUNT_NOT_FOUND"


@scenario
async def test_garbage_on_the_outcome_topic_is_dead_lettered_and_recording_goes_on(bank):
    async with bank.agent("record_outcomes") as agent:
        parked = await agent.put("cmd-1", b"garbage", topic=topics.COMMAND_OUTCOMES.name)
        await agent.put("cmd-1", outcome("cmd-1"))

    assert [(r.topic, r.key, r.value) for r in parked] == [(topics.DEADLETTER.name, "cmd-1", b"garbage")]
    assert dict(parked[0].headers)["deadletter.topic"] == topics.COMMAND_OUTCOMES.name.encode()
    assert bank.view("command_to_outcome", "cmd-1").status == ACCEPTED


# forgetting a customer ------------------------------------------------------------------------------

@scenario
async def test_customer_forgotten_marks_the_view_forgotten_keeps_its_accounts_and_unindexes_the_email(bank):
    async with bank.agent("project_customers") as agent:
        sealed = replace(created(email=""), first_name="", last_name="", email_hash="h(ada)", key_id="C",
                         personal_data=b"\x01sealed")
        await agent.put("C", sealed)
        await agent.put("C", summary(1, "5.00"), topic=topics.CUSTOMER_ACCOUNTS.name)
        forgotten = CustomerForgotten(**envelope("C", 2, "forget"))
        sent = await agent.put("C", forgotten)
        again = await agent.put("C", forgotten)

    view = bank.view("customer_to_view", "C")
    assert (view.forgotten, view.personal_data, view.version, view.accounts) == (True, b"", 2, (summary(1, "5.00"),))
    assert [(r.topic, r.key, r.value) for r in sent] == [(topics.CUSTOMER_EMAILS.name, "h(ada)", None)]
    assert [(r.topic, r.key, r.value) for r in again] == [(topics.CUSTOMER_EMAILS.name, "h(ada)", None)]


@scenario
async def test_a_tombstone_on_customer_emails_removes_the_email_from_the_lookup(bank):
    async with bank.agent("index_emails") as agent:
        await agent.put("ada@example.com", EmailRegistered(email="ada@example.com", customer_id="C1"))
        await agent.put("bob@example.com", EmailRegistered(email="bob@example.com", customer_id="C2"))
        parked = await agent.put("ada@example.com", None)

    assert parked == []
    assert bank.raw("email_to_customer", "ada@example.com") is None
    assert bank.raw("email_to_customer", "bob@example.com") == b"C2"
