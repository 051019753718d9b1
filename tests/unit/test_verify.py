"""`bank verify`'s pure half: `check(log)` over synthetic logs, no broker.

The clean log is made by the real command processors and projectors (`streams.services`) running
over plain dicts, so it holds exactly what the workers write: events, follow-up commands, outcomes,
re-emissions of a duplicate command and the view tables' changelog records. Each violation test
then breaks that log with one record built from the real dataclasses.
"""
from __future__ import annotations

import dataclasses
from collections import deque
from decimal import Decimal

import pytest
from click.testing import CliRunner

from given_when_then import NOW
from streams.contract import topics
from streams.contract.avro import Codec
from streams.cli.main import cli
from streams.domain import accounts, customers, emails, transfers
from streams.domain.accounts import (
    AccountCredited,
    AccountDebited,
    CloseAccount,
    Deposit,
    MoneyDeposited,
    MoneyWithdrawn,
    OpenAccount,
    Withdraw,
)
from streams.domain.base import Event
from streams.domain.customers import AddToAccount, CreateCustomer
from streams.domain.outcomes import REJECTED, CommandOutcome
from streams.domain.transfers import TransferDebited, TransferInitiated, TransferMoney
from streams.services.privacy import DEV_EMAIL_HASH_KEY, KeyStore
from streams.services.commands import COMMAND_PREFIX, STATE_PREFIX, CommandProcessor
from streams.services.projections import (
    AccountProjector,
    CustomerProjector,
    EmailIndexer,
    OutcomeRecorder,
    TransferProjector,
)
from streams.services.handling import KeyPrefixed, Origin
from streams.ops.verify import (
    ACCOUNT_VIEWS,
    CUSTOMER_VIEWS,
    EMAIL_INDEX,
    HISTORY_VIEW,
    OUTCOME_VIEW,
    STATE_TABLES,
    TRANSFER_VIEWS,
    Log,
    Record,
    Report,
    audit,
    changelog_topic,
    check,
)
from streams.ops.verify import _record as decoded_record

D = Decimal
CODEC = Codec()


# A pipeline in memory: the real processors, one queue, every record kept ----------------------

class Changelog(dict):
    """A table that also writes its changelog, as a Faust table does (a deletion: a tombstone)."""

    def __init__(self, name: str, sink: list):
        super().__init__()
        self.name, self.sink = name, sink

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        self.sink.append((self.name, key, value))

    def __delitem__(self, key):
        super().__delitem__(key)
        self.sink.append((self.name, key, None))


VIEWS = (ACCOUNT_VIEWS, TRANSFER_VIEWS, CUSTOMER_VIEWS, EMAIL_INDEX, HISTORY_VIEW, OUTCOME_VIEW)
KEYS = topics.CUSTOMER_KEYS.name


class Pipeline:
    """With `sealed`, customers' personal data is sealed as the workers seal it (streams.services.privacy)."""

    def __init__(self, sealed: bool = False):
        self.topics: dict[str, list[tuple[str, bytes]]] = {}
        self.changelog: list[tuple[str, str, bytes | None]] = []
        self.queue: deque = deque()
        self.sealed = sealed
        clock = lambda: NOW  # noqa: E731
        view = lambda name: Changelog(name, self.changelog)  # noqa: E731

        def ledger(name: str) -> tuple[KeyPrefixed, KeyPrefixed]:  # state and dedup in one table, as app.py has it
            table = Changelog(name, self.changelog)
            return KeyPrefixed(table, STATE_PREFIX), KeyPrefixed(table, COMMAND_PREFIX)

        keystore = KeyStore(Changelog(KEYS, self.changelog), DEV_EMAIL_HASH_KEY.encode())
        sealing = dict(prepare=keystore.prepare, applied=lambda events, origin: keystore.shred(events)) if sealed else {}
        customer = CommandProcessor(CODEC, customers, (topics.CUSTOMER_COMMANDS, topics.CUSTOMER_REPLIES),
                                    topics.CUSTOMER_EVENTS, *ledger("customer_to_state"), clock, **sealing)
        account = CommandProcessor(CODEC, accounts, (topics.ACCOUNT_COMMANDS,), topics.ACCOUNT_EVENTS,
                                   *ledger("account_to_state"), clock)
        transfer = CommandProcessor(CODEC, transfers, (topics.TRANSFER_COMMANDS, topics.TRANSFER_REPLIES),
                                    topics.TRANSFER_EVENTS, *ledger("transfer_to_state"), clock)
        email = CommandProcessor(CODEC, emails, (topics.EMAIL_COMMANDS,), topics.EMAIL_EVENTS,
                                 *ledger("email_to_reservation"), clock)
        customer_views = CustomerProjector(CODEC, view(CUSTOMER_VIEWS))
        self.handlers = {
            topics.CUSTOMER_COMMANDS.name: customer.process, topics.CUSTOMER_REPLIES.name: customer.process,
            topics.ACCOUNT_COMMANDS.name: account.process,
            topics.TRANSFER_COMMANDS.name: transfer.process, topics.TRANSFER_REPLIES.name: transfer.process,
            topics.EMAIL_COMMANDS.name: email.process,
            topics.TRANSFER_EVENTS.name: TransferProjector(CODEC, view(TRANSFER_VIEWS)).project,
            topics.ACCOUNT_EVENTS.name: AccountProjector(CODEC, view(ACCOUNT_VIEWS), view(HISTORY_VIEW)).project,
            topics.CUSTOMER_EVENTS.name: customer_views.project,
            topics.CUSTOMER_ACCOUNTS.name: customer_views.project,
            topics.CUSTOMER_EMAILS.name: EmailIndexer(CODEC, view(EMAIL_INDEX)).index,
            topics.COMMAND_OUTCOMES.name: OutcomeRecorder(CODEC, view(OUTCOME_VIEW)).record,
        }

    def send(self, *commands, key: str | None = None) -> "Pipeline":
        """Sends each command keyed by its aggregate id (or by `key`), then runs until nothing is left."""
        for command in commands:
            self.queue.append((topics.command_topic_for(type(command)).name,
                               command.aggregate_id if key is None else key, CODEC.encode(command)))
        while self.queue:
            topic, key, value = self.queue.popleft()
            assert topic != topics.DEADLETTER.name, "the scenario must not dead-letter anything"
            offset = len(self.topics.setdefault(topic, []))
            self.topics[topic].append((key, value))
            handler = self.handlers.get(topic)
            if handler is not None:
                for out in handler(key.encode(), value, Origin(topic, 0, offset)):
                    self.queue.append((out.topic, out.key, out.value))
        return self

    def log(self) -> Log:
        def records(topic: str, raw_text=False) -> list[Record]:
            return [decoded_record(CODEC, topic, 0, offset, key.encode(), value, raw_text)
                    for offset, (key, value) in enumerate(self.topics.get(topic, []))]

        views = {table: [] for table in VIEWS}
        states = {table: [] for table in STATE_TABLES}
        keys = {}
        for table, key, value in self.changelog:
            if table == KEYS:
                keys[key] = value
                continue
            into = views if table in views else states
            into[table].append(decoded_record(CODEC, changelog_topic(table), 0, len(into[table]), key.encode(),
                                              value, raw_text=table == EMAIL_INDEX))
        return Log(events={spec.name: records(spec.name) for spec in topics.EVENT_TOPICS},
                   commands={spec.name: records(spec.name) for spec in topics.COMMAND_TOPICS},
                   outcomes=records(topics.COMMAND_OUTCOMES.name), views=views, states=states,
                   keys=keys if self.sealed else None)


def open_account(account_id: str, customer_id: str, initial: str) -> OpenAccount:
    return OpenAccount(command_id=f"open-{account_id}", account_id=account_id, customer_id=customer_id,
                       title=f"{account_id} title", initial_balance=D(initial))


def clean_pipeline() -> Pipeline:
    """Two customers, three accounts, deposits, withdrawals, one duplicate command, one rejection,
    and a completed, a failed and a refunded transfer."""
    deposit = Deposit(command_id="dep-a2", account_id="a2", amount=D("50.00"))
    return Pipeline().send(
        CreateCustomer(command_id="create-c1", customer_id="c1", first_name="Ada", last_name="Lovelace",
                       email="ada@example.com"),
        CreateCustomer(command_id="create-c2", customer_id="c2", first_name="Bob", last_name="Babbage",
                       email="bob@example.com", phone="+44 1"),
        CreateCustomer(command_id="create-c3", customer_id="c3", first_name="Eve", last_name="Taken",
                       email="ada@example.com"),  # EMAIL_TAKEN
        open_account("a1", "c1", "100.00"),
        open_account("a2", "c2", "0.00"),
        open_account("a3", "c1", "50.00"),
        deposit,
        deposit,  # sent twice: re-emits the very same event and outcome
        Withdraw(command_id="wd-a1", account_id="a1", amount=D("30.00")),
        Withdraw(command_id="wd-a2-too-much", account_id="a2", amount=D("999.00")),  # INSUFFICIENT_FUNDS
        AddToAccount(command_id="add-a2", customer_id="c1", account_id="a2", title="Bob", owner="Bob"),
        TransferMoney(command_id="tm-t1", transfer_id="t1", from_account_id="a1", to_account_id="a2",
                      amount=D("20.00")),  # COMPLETED
        TransferMoney(command_id="tm-t2", transfer_id="t2", from_account_id="a2", to_account_id="a1",
                      amount=D("1000.00")),  # FAILED: insufficient funds
        Withdraw(command_id="wd-a3", account_id="a3", amount=D("50.00")),
        CloseAccount(command_id="close-a3", account_id="a3"),
        TransferMoney(command_id="tm-t3", transfer_id="t3", from_account_id="a1", to_account_id="a3",
                      amount=D("10.00")),  # the credit fails (a3 closed): REFUNDED
    )


@pytest.fixture
def log() -> Log:
    return clean_pipeline().log()


# Helpers to break a log --------------------------------------------------------------------------

EVENT_TOPIC = {t: spec.name for spec in topics.EVENT_TOPICS for t in spec.values}


def events_of(log: Log, aggregate_id: str) -> list[Event]:
    return [r.value for records in log.events.values() for r in records
            if r.value is not None and r.value.aggregate_id == aggregate_id]


def last_event(log: Log, aggregate_id: str) -> Event:
    return max(events_of(log, aggregate_id), key=lambda e: e.version)


def append(records: list[Record], topic: str, key: str, value) -> None:
    records.append(Record(topic, 0, len(records), key, value))


def append_event(log: Log, event: Event) -> None:
    topic = EVENT_TOPIC[type(event)]
    append(log.events[topic], topic, event.aggregate_id, event)


def envelope(aggregate_id: str, version: int, command_id: str) -> dict:
    return dict(event_id=f"{command_id}.0", aggregate_id=aggregate_id, version=version, command_id=command_id,
                occurred_at=NOW)


def next_envelope(log: Log, aggregate_id: str, command_id: str) -> dict:
    return envelope(aggregate_id, last_event(log, aggregate_id).version + 1, command_id)


def balance(log: Log, account_id: str) -> Decimal:
    view = [r.value for r in log.views[ACCOUNT_VIEWS] if r.key == account_id][-1]
    return view.balance


def with_invariant(violations: list[str], number: int) -> list[str]:
    return [v for v in violations if v.startswith(f"[{number}]")]


# A clean log -------------------------------------------------------------------------------------

def test_given_a_clean_log_of_opens_deposits_withdrawals_and_three_kinds_of_transfer_then_nothing_is_violated(log):
    assert check(log) == []


def test_given_the_clean_log_then_the_report_counts_its_accounts_customers_transfers_and_money(log):
    report = audit(log)
    assert isinstance(report, Report) and report.ok
    assert (report.accounts, report.customers) == (3, 2)
    assert report.transfers == {"COMPLETED": 1, "FAILED": 1, "REFUNDED": 1}
    # a1: 100 - 30 - 20 (t1) - 10 + 10 (t3 refunded) = 50; a2: 50 + 20 = 70; a3: 50 - 50 = 0
    assert report.total_balance == D("120.00") and report.in_transit == 0
    assert report.re_emissions >= 1  # the duplicate Deposit
    assert report.events == sum(len(records) for records in log.events.values())
    assert report.commands == len({r.value.command_id for rs in log.commands.values() for r in rs})
    assert report.summary_line().startswith("OK: 3 accounts, 2 customers, 3 transfers")
    assert report.to_dict()["total_balance"] == "120.00"


def test_given_the_clean_log_then_its_transfers_end_completed_failed_and_refunded_as_the_scenario_says(log):
    states = {view.transfer_id: (view.state, view.reason) for view in
              (r.value for r in log.views[TRANSFER_VIEWS])}
    assert states == {"t1": ("COMPLETED", None), "t2": ("FAILED", "INSUFFICIENT_FUNDS"),
                      "t3": ("REFUNDED", "ACCOUNT_CLOSED")}


def test_given_a_byte_identical_re_emission_of_an_event_then_it_is_not_a_violation(log):
    topic = topics.ACCOUNT_EVENTS.name
    original = next(r for r in log.events[topic] if isinstance(r.value, AccountDebited))
    append(log.events[topic], topic, original.key, original.value)
    append(log.events[topic], topic, original.key, dataclasses.replace(original.value, occurred_at=NOW + 5))
    assert check(log) == []
    assert audit(log).re_emissions >= 3


def test_given_a_command_sent_twice_then_its_effect_appears_once_and_nothing_is_violated(log):
    deposits = [r for r in log.events[topics.ACCOUNT_EVENTS.name] if r.value.command_id == "dep-a2"]
    assert len(deposits) == 2 and deposits[0].value == deposits[1].value
    assert check(log) == []


def test_given_records_on_a_command_topic_that_cannot_be_decoded_then_they_are_skipped_not_violations(log):
    topic = topics.ACCOUNT_COMMANDS.name
    log.commands[topic].append(Record(topic, 0, 999, "a1", None, error="not Avro"))
    report = audit(log)
    assert report.ok and report.skipped_commands == 1


# [1] money ---------------------------------------------------------------------------------------

def test_given_an_extra_credit_of_a_completed_transfer_then_money_created_is_reported(log):
    append_event(log, AccountCredited(**next_envelope(log, "a2", "t1.credit-again"), transfer_id="t1",
                                      amount=D("20.00"), balance=balance(log, "a2") + D("20.00")))
    violations = check(log, check_views=False)
    assert any(v.startswith("[1] money not conserved") and "difference 20.00" in v for v in violations)
    assert any(v.startswith("[3] transfer t1") and "2 AccountCredited" in v for v in violations)


def test_given_a_credit_for_a_transfer_that_was_never_initiated_then_money_created_is_reported(log):
    append_event(log, AccountCredited(**next_envelope(log, "a2", "ghost.credit"), transfer_id="ghost",
                                      amount=D("5.00"), balance=balance(log, "a2") + D("5.00")))
    violations = check(log, check_views=False)
    assert any(v.startswith("[1] money not conserved") for v in violations)
    assert any(v.startswith("[3]") and "ghost" in v and "never initiated" in v for v in violations)


def test_given_an_event_whose_balance_field_disagrees_with_the_fold_then_it_is_reported(log):
    append_event(log, MoneyDeposited(**next_envelope(log, "a1", "dep-wrong"), amount=D("1.00"),
                                     balance=D("999.00")))
    violations = check(log, check_views=False)
    assert violations == ["[1] account a1 v6 MoneyDeposited: the event says balance 999.00, the fold gives 51.00"]


# [2] negative balances ---------------------------------------------------------------------------

def test_given_a_withdrawal_below_zero_then_the_negative_balance_is_reported(log):
    append_event(log, MoneyWithdrawn(**next_envelope(log, "a2", "wd-overdraw"), amount=D("100.00"),
                                     balance=D("-30.00")))
    violations = with_invariant(check(log, check_views=False), 2)
    assert violations == ["[2] account a2 v4 MoneyWithdrawn: balance is negative (-30.00)"]


def test_given_a_balance_that_goes_negative_and_back_then_the_moment_it_was_negative_is_reported(log):
    append_event(log, MoneyWithdrawn(**next_envelope(log, "a2", "wd-overdraw"), amount=D("100.00"),
                                     balance=D("-30.00")))
    append_event(log, MoneyDeposited(**next_envelope(log, "a2", "dep-back"), amount=D("100.00"),
                                     balance=D("70.00")))
    assert with_invariant(check(log, check_views=False), 2) == [
        "[2] account a2 v4 MoneyWithdrawn: balance is negative (-30.00)"]


# [3] transfers -----------------------------------------------------------------------------------

def test_given_a_transfer_stuck_in_debited_then_it_is_reported_as_in_flight_and_its_money_as_in_transit(log):
    append_event(log, TransferInitiated(**envelope("t4", 1, "tm-t4"), from_account_id="a1", to_account_id="a2",
                                        amount=D("5.00"), description=""))
    append_event(log, AccountDebited(**next_envelope(log, "a1", "t4.debit"), transfer_id="t4", amount=D("5.00"),
                                     balance=balance(log, "a1") - D("5.00")))
    append_event(log, TransferDebited(**envelope("t4", 2, "t4.debit.reply")))
    report = audit(log, check_views=False)
    assert report.violations == [
        "[3] transfer t4 (DEBITED, 5.00 from a1 to a2): never finished, stuck in DEBITED with 5.00 in transit"]
    assert report.in_transit == D("5.00") and report.transfers["DEBITED"] == 1


def test_given_a_second_debit_of_a_transfer_with_another_version_then_the_double_effect_is_reported(log):
    append_event(log, AccountDebited(**next_envelope(log, "a1", "t1.debit-again"), transfer_id="t1",
                                     amount=D("20.00"), balance=balance(log, "a1") - D("20.00")))
    violations = check(log, check_views=False)
    assert "[3] transfer t1 (COMPLETED, 20.00 from a1 to a2): applied more than once: 2 AccountDebited " \
           "(a1 v3, a1 v6)" in violations
    assert any(v.startswith("[1] transfer t1") for v in violations)


def test_given_the_same_debit_event_applied_at_two_versions_then_the_command_took_effect_twice(log):
    first = next(r.value for r in log.events[topics.ACCOUNT_EVENTS.name]
                 if isinstance(r.value, AccountDebited) and r.value.transfer_id == "t1")
    again = dataclasses.replace(first, version=last_event(log, "a1").version + 1,
                                balance=balance(log, "a1") - first.amount)
    append_event(log, again)
    violations = check(log, check_views=False)
    assert any(v.startswith("[4] command t1.debit took effect twice") for v in violations)
    assert any(v.startswith("[3] transfer t1") and "2 AccountDebited" in v for v in violations)


def test_given_a_failed_transfer_with_a_debit_then_the_debit_is_reported(log):
    append_event(log, AccountDebited(**next_envelope(log, "a2", "t2.debit"), transfer_id="t2",
                                     amount=D("1000.00"), balance=balance(log, "a2") - D("1000.00")))
    violations = check(log, check_views=False)
    assert any(v.startswith("[3] transfer t2 (FAILED") and "1 AccountDebited but should have none" in v
               for v in violations)


def test_given_a_leg_on_another_account_than_the_transfers_then_it_is_reported(log):
    transfer_events = log.events[topics.TRANSFER_EVENTS.name]
    index = next(i for i, r in enumerate(transfer_events) if isinstance(r.value, TransferInitiated)
                 and r.key == "t1")
    transfer_events[index] = dataclasses.replace(
        transfer_events[index], value=dataclasses.replace(transfer_events[index].value, to_account_id="a3"))
    violations = check(log, check_views=False)
    assert "[3] transfer t1 (COMPLETED, 20.00 from a1 to a3): AccountCredited on account a2 v3, not on a3" \
           in violations


def test_given_a_transfer_event_out_of_its_state_order_then_the_transition_is_reported(log):
    append_event(log, TransferDebited(**next_envelope(log, "t2", "late")))
    violations = check(log, check_views=False)
    assert any(v.startswith("[3] transfer t2 v3 TransferDebited: not allowed in state FAILED") for v in violations)


def start_transfer_t4(log: Log) -> None:
    """A transfer initiated after the clean scenario and never debited: still in flight."""
    append_event(log, TransferInitiated(**envelope("t4", 1, "tm-t4"), from_account_id="a1", to_account_id="a2",
                                        amount=D("5.00"), description=""))


def test_given_a_transfer_still_initiated_then_by_default_it_is_a_violation_not_a_clean_result(log):
    start_transfer_t4(log)
    report = audit(log, check_views=False)
    assert report.violations == ["[3] transfer t4 (INITIATED, 5.00 from a1 to a2): never finished, stuck in INITIATED"]
    assert not report.ok and report.in_flight == 1


def test_given_a_transfer_in_flight_when_in_flight_is_allowed_then_it_is_counted_and_not_reported(log):
    start_transfer_t4(log)
    report = audit(log, check_views=False, allow_in_flight=True)
    assert report.ok and report.in_flight == 1 and report.transfers["INITIATED"] == 1
    assert "1 transfers in flight" in report.summary_line()


@pytest.mark.parametrize("flags, allowed", [((), False), (("--allow-in-flight",), True)])
def test_given_bank_verify_then_in_flight_transfers_are_allowed_only_when_asked(monkeypatch, flags, allowed):
    told = {}

    def run(settings, **options):
        told.update(options)
        return Report(violations=[])
    monkeypatch.setattr("streams.ops.verify.run", run)
    result = CliRunner(mix_stderr=False).invoke(cli, ["verify", *flags])
    assert result.exit_code == 0, result.output
    assert told["allow_in_flight"] is allowed


# [4] commands and outcomes -----------------------------------------------------------------------

def test_given_a_command_without_outcome_then_it_is_reported(log):
    topic = topics.ACCOUNT_COMMANDS.name
    append(log.commands[topic], topic, "a1", Deposit(command_id="lost", account_id="a1", amount=D("1.00")))
    assert check(log) == ["[4] command lost (Deposit on bank.accounts.commands, a1) has no outcome"]


def test_given_two_different_outcomes_for_one_command_then_it_is_reported(log):
    append(log.outcomes, topics.COMMAND_OUTCOMES.name, "wd-a1", CommandOutcome(
        command_id="wd-a1", command_type="Withdraw", aggregate_id="a1", status=REJECTED,
        reason="INSUFFICIENT_FUNDS"))
    violations = check(log)
    assert len(violations) == 1
    assert violations[0].startswith("[4] command wd-a1 (Withdraw on bank.accounts.commands, a1) has 2 different "
                                    "outcomes: ACCEPTED v2 at ")
    assert "REJECTED INSUFFICIENT_FUNDS" in violations[0]


def test_given_equal_outcomes_re_emitted_for_one_command_then_nothing_is_violated(log):
    outcome = next(r for r in log.outcomes if r.value.command_id == "wd-a1")
    append(log.outcomes, outcome.topic, outcome.key, dataclasses.replace(outcome.value, occurred_at=NOW + 9))
    assert check(log) == []


def test_given_an_accepted_outcome_whose_version_no_event_has_then_it_is_reported(log):
    outcomes = log.outcomes
    index = next(i for i, r in enumerate(outcomes) if r.value.command_id == "wd-a1")
    outcomes[index] = dataclasses.replace(outcomes[index], value=dataclasses.replace(outcomes[index].value,
                                                                                     version=7))
    assert check(log, check_views=False) == [  # with views, the outcome view (the first outcome) differs too
        "[4] command wd-a1 (Withdraw on bank.accounts.commands, a1) was accepted at version 7, "
        "but no event of a1 at that version comes from it"]


def without_keys(log: Log, table: str, *keys: str) -> None:
    """`table`'s changelog as if the entries of `keys` had never been written."""
    log.states[table] = [r for r in log.states[table] if r.key not in keys]


def test_given_an_outcome_whose_dedup_record_was_deleted_then_the_missing_dedup_record_is_reported(log):
    append(log.states["account_to_state"], changelog_topic("account_to_state"), "command:wd-a1", None)
    assert check(log) == ["[4] command wd-a1 (Withdraw on a1, ACCEPTED) has an outcome but no dedup record "
                          "command:wd-a1 in streambank-account_to_state-changelog: sent again, it would be "
                          "decided again"]


def test_given_a_created_customer_without_a_dedup_record_then_it_is_looked_for_in_the_customer_table(log):
    without_keys(log, "customer_to_state", "command:create-c2")  # its outcome came with the email registry's reply
    assert check(log) == ["[4] command create-c2 (CreateCustomer on c2, ACCEPTED) has an outcome but no dedup "
                          "record command:create-c2 in streambank-customer_to_state-changelog: sent again, it "
                          "would be decided again"]


def test_given_a_command_on_a_record_keyed_by_another_id_then_its_rejection_needs_no_dedup_record():
    pipeline = clean_pipeline().send(Deposit(command_id="dep-wrong-key", account_id="a1", amount=D("1.00")),
                                     key="a2")
    log = pipeline.log()
    outcome = next(r.value for r in log.outcomes if r.value.command_id == "dep-wrong-key")
    assert (outcome.status, outcome.reason, outcome.field) == (REJECTED, "INVALID_FIELD", "key")
    assert not any(r.key == "command:dep-wrong-key" for rs in log.states.values() for r in rs)
    report = audit(log)
    assert report.ok, report.violations
    assert report.dedup_records == len({r.value.command_id for r in log.outcomes}) - 1


def test_given_a_dedup_record_of_another_aggregate_then_it_is_reported(log):
    records = log.states["account_to_state"]
    dedup = [r for r in records if r.key == "command:wd-a1"][-1]
    append(records, dedup.topic, dedup.key, dataclasses.replace(dedup.value, aggregate_id="a2"))
    violations = check(log)
    assert len(violations) == 1
    assert violations[0].startswith("[4] command wd-a1 (Withdraw on a1, ACCEPTED): its dedup record in "
                                    "streambank-account_to_state-changelog (")
    assert violations[0].endswith(") is for a2, not a1")


# [5] versions ------------------------------------------------------------------------------------

def test_given_a_version_gap_then_it_is_reported(log):
    follow = last_event(log, "a1").version + 2
    append_event(log, MoneyDeposited(**envelope("a1", follow, "dep-gap"), amount=D("1.00"), balance=D("51.00")))
    violations = check(log, check_views=False)
    assert violations == [f"[5] a1 (bank.accounts.events): versions are not 1..n: missing v{follow - 1} "
                          f"below v{follow}"]


def test_given_a_version_that_appears_twice_with_different_event_ids_then_the_duplicate_in_effect_is_reported(log):
    append_event(log, MoneyDeposited(**envelope("a1", 2, "dep-conflict"), amount=D("1.00"), balance=D("71.00")))
    violations = check(log, check_views=False)
    assert len(violations) == 1
    assert violations[0].startswith("[5] a1 v2: duplicates in effect: MoneyWithdrawn wd-a1.0 (")
    assert "MoneyDeposited dep-conflict.0" in violations[0]


def test_given_a_re_emission_with_the_same_event_id_but_other_content_then_it_is_reported(log):
    original = next(r for r in log.events[topics.ACCOUNT_EVENTS.name] if r.value.command_id == "wd-a1")
    append_event(log, dataclasses.replace(original.value, amount=D("31.00")))
    assert any(v.startswith("[5] a1 v2: event wd-a1.0 re-emitted with other content") for v in check(log))


def test_given_an_undecodable_event_then_it_is_reported(log):
    topic = topics.ACCOUNT_EVENTS.name
    log.events[topic].append(Record(topic, 2, 17, "a9", None, error="corrupt Avro body"))
    assert check(log) == ["[5] undecodable event at bank.accounts.events[2]@17 (key a9): corrupt Avro body"]


def test_given_an_event_topic_that_does_not_exist_then_it_is_reported(log):
    log.missing_topics.append(topics.EMAIL_EVENTS.name)
    del log.events[topics.EMAIL_EVENTS.name]
    assert check(log) == ["[5] topic bank.emails.events does not exist: run `bank topics create`"]


# [6] views ---------------------------------------------------------------------------------------

def test_given_an_account_view_whose_balance_differs_from_the_fold_then_it_is_reported(log):
    latest = [r for r in log.views[ACCOUNT_VIEWS] if r.key == "a1"][-1]
    append(log.views[ACCOUNT_VIEWS], latest.topic, "a1", dataclasses.replace(latest.value, balance=D("49.00")))
    violations = check(log)
    assert any(v.startswith("[6] view account_to_view of account a1 differs from the fold: "
                            "balance 49.00 != 50.00 (fold)") for v in violations)


def test_given_a_customer_view_whose_account_balance_is_stale_then_it_is_reported(log):
    latest = [r for r in log.views[CUSTOMER_VIEWS] if r.key == "c2"][-1]
    stale = tuple(dataclasses.replace(s, balance=D("50.00"), version=2) for s in latest.value.accounts)
    append(log.views[CUSTOMER_VIEWS], latest.topic, "c2", dataclasses.replace(latest.value, accounts=stale))
    assert check(log) == ["[6] view customer_to_view of customer c2 differs from the fold: "
                          "account a2 balance 50.00 != 70.00 (fold); account a2 version 2 != 3 (fold)"]


def test_given_an_aggregate_without_a_view_then_the_missing_view_is_reported(log):
    log.views[ACCOUNT_VIEWS] = [r for r in log.views[ACCOUNT_VIEWS] if r.key != "a2"]
    assert check(log) == ["[6] account a2 has no view in account_to_view"]


def test_given_a_deleted_view_then_it_counts_as_missing(log):
    append(log.views[TRANSFER_VIEWS], changelog_topic(TRANSFER_VIEWS), "t2", None)
    assert check(log) == ["[6] transfer t2 has no view in transfer_to_view"]


def test_given_a_view_of_an_aggregate_the_log_does_not_know_then_it_is_reported(log):
    view = [r for r in log.views[TRANSFER_VIEWS] if r.key == "t1"][-1].value
    append(log.views[TRANSFER_VIEWS], changelog_topic(TRANSFER_VIEWS), "t9",
           dataclasses.replace(view, transfer_id="t9"))
    assert check(log) == ["[6] view transfer_to_view has transfer t9, which the event log does not know"]


def test_given_an_email_index_pointing_at_another_customer_then_it_is_reported(log):
    append(log.views[EMAIL_INDEX], changelog_topic(EMAIL_INDEX), "ada@example.com", "c3")
    assert check(log) == ["[6] view email_to_customer of email ada@example.com differs from the fold: "
                          "'c3' != 'c1' (fold)"]


def test_given_a_missing_changelog_topic_then_it_is_a_violation_only_when_views_are_checked(log):
    del log.views[CUSTOMER_VIEWS]
    log.missing_topics.append(changelog_topic(CUSTOMER_VIEWS))
    assert check(log) == ["[6] changelog topic streambank-customer_to_view-changelog does not exist "
                          "(no worker has built the view customer_to_view)"]
    assert check(log, check_views=False) == []


def test_given_a_log_read_without_views_then_views_are_not_checked(log):
    log.views = None
    report = audit(log)
    assert report.ok and not report.views_checked
    assert report.summary_line().endswith("(views not checked)")


def latest_view(log: Log, table: str, key: str) -> Record:
    return [r for r in log.views[table] if r.key == key][-1]


def test_given_a_history_entry_whose_amount_differs_from_the_fold_then_it_is_reported(log):
    entry = latest_view(log, HISTORY_VIEW, "a1#000000000002")  # the withdrawal of 30.00
    append(log.views[HISTORY_VIEW], entry.topic, entry.key, dataclasses.replace(entry.value, amount=D("-31.00")))
    assert check(log) == ["[6] view account_version_to_entry of history entry a1#000000000002 differs from the "
                          "fold: amount -31.00 != -30.00 (fold)"]


def test_given_a_history_entry_whose_balance_differs_from_the_fold_then_it_is_reported(log):
    entry = latest_view(log, HISTORY_VIEW, "a2#000000000003")  # t1's credit: 50.00 + 20.00
    append(log.views[HISTORY_VIEW], entry.topic, entry.key, dataclasses.replace(entry.value, balance=D("20.00")))
    assert check(log) == ["[6] view account_version_to_entry of history entry a2#000000000003 differs from the "
                          "fold: balance 20.00 != 70.00 (fold)"]


def test_given_an_account_version_without_a_history_entry_then_it_is_reported(log):
    log.views[HISTORY_VIEW] = [r for r in log.views[HISTORY_VIEW] if r.key != "a3#000000000003"]
    assert check(log) == ["[6] history entry a3#000000000003 has no view in account_version_to_entry"]


def test_given_a_history_entry_for_a_version_the_account_never_had_then_it_is_reported(log):
    entry = latest_view(log, HISTORY_VIEW, "a1#000000000002")
    append(log.views[HISTORY_VIEW], entry.topic, "a1#000000000099", dataclasses.replace(entry.value, version=99))
    assert check(log) == ["[6] view account_version_to_entry has history entry a1#000000000099, which the event "
                          "log does not know"]


def test_given_an_outcome_view_that_is_not_the_commands_first_outcome_then_it_is_reported(log):
    entry = latest_view(log, OUTCOME_VIEW, "wd-a1")
    append(log.views[OUTCOME_VIEW], entry.topic, entry.key, dataclasses.replace(
        entry.value, status=REJECTED, reason="INSUFFICIENT_FUNDS", version=None))
    assert check(log) == ["[6] view command_to_outcome of command wd-a1 differs from the fold: status REJECTED != "
                          "ACCEPTED (fold); reason INSUFFICIENT_FUNDS != None (fold); version None != 2 (fold)"]


def test_given_a_command_whose_outcome_is_missing_from_the_outcome_view_then_it_is_reported(log):
    append(log.views[OUTCOME_VIEW], changelog_topic(OUTCOME_VIEW), "tm-t2", None)
    assert check(log) == ["[6] command tm-t2 has no view in command_to_outcome"]


# [state] the command processors' tables -----------------------------------------------------------

def latest_state(log: Log, table: str, aggregate_id: str) -> Record:
    return [r for r in log.states[table] if r.key == f"state:{aggregate_id}"][-1]


def test_given_an_account_state_entry_whose_balance_differs_from_the_fold_then_it_is_reported(log):
    state = latest_state(log, "account_to_state", "a1")
    append(log.states["account_to_state"], state.topic, state.key, dataclasses.replace(state.value, balance=D("49.00")))
    violations = check(log)
    assert len(violations) == 1
    assert violations[0].startswith("[state] account a1: state:a1 at streambank-account_to_state-changelog[0]@")
    assert violations[0].endswith(" differs from the fold of its events: balance 49.00 != 50.00 (fold)")


def test_given_a_transfer_state_entry_behind_its_events_then_it_is_reported(log):
    debited = [r for r in log.states["transfer_to_state"] if r.key == "state:t1" and r.value.state == "DEBITED"][0]
    append(log.states["transfer_to_state"], debited.topic, debited.key, debited.value)
    violations = check(log)
    assert len(violations) == 1
    assert violations[0].endswith("differs from the fold of its events: state DEBITED != COMPLETED (fold); "
                                  "version 2 != 3 (fold)")


def test_given_a_customer_state_entry_that_is_forgotten_while_its_events_are_not_then_it_is_reported(log):
    state = latest_state(log, "customer_to_state", "c2")
    append(log.states["customer_to_state"], state.topic, state.key, dataclasses.replace(state.value, forgotten=True))
    violations = check(log)
    assert len(violations) == 1 and violations[0].startswith("[state] customer c2: state:c2 at ")
    assert violations[0].endswith("differs from the fold of its events: forgotten True != False (fold)")


def test_given_an_aggregate_whose_state_entry_was_tombstoned_then_its_missing_state_is_reported(log):
    append(log.states["email_to_reservation"], changelog_topic("email_to_reservation"), "state:bob@example.com", None)
    assert check(log) == ["[state] email bob@example.com has events but no state entry state:bob@example.com in "
                          "streambank-email_to_reservation-changelog"]


def test_given_a_state_entry_of_an_aggregate_the_log_does_not_know_then_it_is_reported(log):
    state = latest_state(log, "account_to_state", "a1")
    append(log.states["account_to_state"], state.topic, "state:a9", dataclasses.replace(state.value, account_id="a9"))
    violations = check(log)
    assert len(violations) == 1
    assert violations[0].startswith("[state] account a9: state:a9 at streambank-account_to_state-changelog[0]@")
    assert violations[0].endswith(", but the event log has no such account")


def test_given_a_state_entry_that_is_not_a_state_then_it_is_reported(log):
    dedup = [r for r in log.states["account_to_state"] if r.key == "command:wd-a1"][-1]
    append(log.states["account_to_state"], dedup.topic, "state:a2", dedup.value)
    violations = check(log)
    assert len(violations) == 1 and violations[0].endswith(" holds a ProcessedCommand, not a state (Account)")


def test_given_events_that_were_not_read_then_their_state_entries_are_not_compared(log):
    log.missing_topics.append(topics.EMAIL_EVENTS.name)
    del log.events[topics.EMAIL_EVENTS.name]
    assert check(log) == ["[5] topic bank.emails.events does not exist: run `bank topics create`"]


def test_given_the_clean_log_then_the_report_says_how_many_changelog_entries_it_checked(log):
    report = audit(log)
    outcomes = {r.value.command_id for r in log.outcomes}
    # 2 customers, 3 accounts, 3 transfers and 2 reserved emails; every account version; every command answered
    assert (report.state_entries, report.history_entries) == (10, 11)
    assert report.dedup_records == report.outcome_entries == len(outcomes)
    assert report.summary_line().endswith(f"; checked 10 state entries, {len(outcomes)} dedup records, "
                                          f"11 history entries, {len(outcomes)} outcome entries, "
                                          f"0 sealed customers")


def test_given_verify_spells_the_processors_table_keys_itself_then_they_are_the_processors(log):
    from streams import topology
    from streams.ops import verify
    from streams.services.projections import history_key
    assert (verify.STATE_KEY, verify.DEDUP_KEY) == (STATE_PREFIX, COMMAND_PREFIX)
    assert set(STATE_TABLES) <= set(topology.TABLES) and {HISTORY_VIEW, OUTCOME_VIEW} <= set(topology.TABLES)
    assert {r.key for r in log.views[HISTORY_VIEW]} >= {history_key("a1", 1), history_key("a3", 3)}


# The command line --------------------------------------------------------------------------------

def test_given_an_unreachable_broker_then_bank_verify_exits_2_with_a_clear_error():
    result = CliRunner(mix_stderr=False).invoke(
        cli, ["verify", "--timeout", "1"], env={"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"})
    assert result.exit_code == 2, result.output
    assert "cannot reach Kafka at 127.0.0.1:1" in result.stderr


# [privacy] crypto-shredding ------------------------------------------------------------------------

def forget(log: Log, customer_id: str) -> None:
    append_event(log, customers.CustomerForgotten(**next_envelope(log, customer_id, f"forget-{customer_id}")))


def test_given_a_forgotten_customer_whose_key_is_still_live_then_it_is_reported(log):
    forget(log, "c1")
    log.keys = {"c1": bytes(32), "c2": bytes(32)}
    assert [v for v in check(log) if v.startswith("[privacy]")] == [
        "[privacy] customer c1 was forgotten but its key is still in bank.customer-keys"]


def test_given_a_forgotten_customer_whose_key_was_deleted_then_nothing_about_privacy_is_reported(log):
    forget(log, "c1")
    log.keys = {"c1": None}  # tombstoned
    assert [v for v in check(log) if v.startswith("[privacy]")] == []


def test_given_a_sealed_customer_without_a_key_then_its_unreadable_data_is_reported(log):
    append_event(log, customers.CustomerCreated(**envelope("c9", 1, "create-c9"), email_hash="h9",
                                                personal_data=b"\x01sealed", key_id="c9"))
    log.keys = {}
    assert [v for v in check(log) if v.startswith("[privacy]")] == [
        "[privacy] customer c9 has sealed personal data but no key in bank.customer-keys: it can no longer be read"]


def sealed_log() -> Log:
    """Customers created as the workers create them: personal data sealed, keys in bank.customer-keys."""
    return Pipeline(sealed=True).send(
        CreateCustomer(command_id="create-c1", customer_id="c1", first_name="Ada", last_name="Lovelace",
                       email="ada@example.com", phone="+44 1"),
        CreateCustomer(command_id="create-c2", customer_id="c2", first_name="Bob", last_name="Babbage",
                       email="bob@example.com"),
        open_account("a1", "c1", "10.00"),
    ).log()


def test_given_sealed_customers_then_each_opens_with_its_stored_key_and_nothing_is_violated():
    log = sealed_log()
    assert all(c.value.personal_data for c in log.events[topics.CUSTOMER_EVENTS.name])
    report = audit(log)
    assert report.ok, report.violations
    assert report.sealed_customers == 2 and report.summary_line().endswith(", 2 sealed customers")


def test_given_a_sealed_customer_whose_stored_key_is_another_customers_then_its_data_not_opening_is_reported():
    log = sealed_log()
    log.keys["c1"] = log.keys["c2"]
    assert [v for v in check(log) if v.startswith("[privacy]")] == [
        "[privacy] customer c1: the sealed personal data of its CustomerCreated does not open with its key in "
        "bank.customer-keys: authentication failed (another key, or a blob of another customer)"]


def test_given_a_sealed_customer_whose_stored_key_is_not_an_aes_key_then_it_is_reported():
    log = sealed_log()
    log.keys["c2"] = b"short"
    assert [v for v in check(log) if v.startswith("[privacy]")] == [
        "[privacy] customer c2: the sealed personal data of its CustomerCreated does not open with its key in "
        "bank.customer-keys: the key is 5 bytes, not 32"]


def test_given_a_forgotten_sealed_customer_then_its_data_is_exempt_from_opening():
    log = Pipeline(sealed=True).send(
        CreateCustomer(command_id="create-c1", customer_id="c1", first_name="Ada", last_name="Lovelace",
                       email="ada@example.com")).send(
        customers.ForgetCustomer(command_id="forget-c1", customer_id="c1")).log()
    assert log.keys == {"c1": None}  # tombstoned
    report = audit(log)
    assert report.ok, report.violations
    assert report.sealed_customers == 0
