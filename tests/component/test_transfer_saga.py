"""The transfer saga, driven by hand through the wired agents: process_transfer_commands issues a step,
process_account_commands answers it, the answer goes back to process_transfer_commands, and so on.

Every step and reply is put as the exact bytes the previous agent emitted.
"""
from __future__ import annotations

from decimal import Decimal

from harness import scenario
from streams.contract import topics
from streams.domain.accounts import (
    CLOSED,
    AccountCredited,
    AccountDebited,
    AccountRefunded,
    CloseAccount,
    Deposit,
    OpenAccount,
)
from streams.domain.base import Reason
from streams.domain.outcomes import ACCEPTED, REJECTED
from streams.domain.transfer_steps import (
    CreditAccount,
    DebitAccount,
    RecordCredit,
    RecordDebit,
    RecordRefund,
    RefundAccount,
)
from streams.domain.transfers import (
    COMPLETED,
    DEBITED,
    FAILED,
    INITIATED,
    REFUNDED,
    TransferCompleted,
    TransferCreditFailed,
    TransferDebited,
    TransferFailed,
    TransferInitiated,
    TransferMoney,
    TransferRefunded,
)
from streams.services.projections import history_key

ACCOUNTS = "process_account_commands"
TRANSFERS = "process_transfer_commands"


def D(value: str) -> Decimal:
    return Decimal(value)


def open_account(account_id: str, balance: str) -> OpenAccount:
    return OpenAccount(command_id=f"open-{account_id}", account_id=account_id, customer_id="C", title="Checking",
                       initial_balance=D(balance))


def transfer_money(amount: str = "30.00", to_account_id: str = "B", transfer_id: str = "T",
                   command_id: str = "cmd-tr") -> TransferMoney:
    return TransferMoney(command_id=command_id, transfer_id=transfer_id, from_account_id="A",
                         to_account_id=to_account_id, amount=D(amount), description="rent")


def on(topic, records):
    return [r for r in records if r.topic == topic.name]


def where(records):
    return [(r.topic, r.key) for r in records]


class Saga:
    """Both agents of the saga; keeps every put and what it emitted, to put them all again later."""

    def __init__(self, bank, transfers, accounts):
        self.bank, self.transfers, self.accounts = bank, transfers, accounts
        self.puts = []

    async def put(self, agent, key, value, topic=None):
        raw = value if isinstance(value, bytes) else self.bank.codec.encode(value)
        sent = await agent.put(key, raw, topic=topic)
        self.puts.append((agent, key, raw, topic, sent))
        return sent

    async def transfer(self, command):
        return await self.put(self.transfers, command.transfer_id, command, topics.TRANSFER_COMMANDS.name)

    async def account(self, command):
        return await self.put(self.accounts, command.account_id, command)

    async def deliver(self, record):
        """A step to its account, or a reply to its transfer, as emitted."""
        agent = {topics.ACCOUNT_COMMANDS.name: self.accounts, topics.TRANSFER_REPLIES.name: self.transfers}[record.topic]
        return await self.put(agent, record.key, record.value, record.topic)

    async def run(self, command):
        """Initiates `command` and delivers every step and reply until none is left; all records emitted."""
        emitted = list(await self.transfer(command))
        pending = on(topics.ACCOUNT_COMMANDS, emitted)
        while pending:
            sent = await self.deliver(pending.pop(0))
            emitted.extend(sent)
            pending.extend(on(topics.ACCOUNT_COMMANDS, sent) + on(topics.TRANSFER_REPLIES, sent))
        return emitted

    def transfer_state(self, transfer_id="T"):
        return self.bank.view("transfer_to_state", transfer_id)

    def balance(self, account_id):
        return self.bank.view("account_to_state", account_id).balance


# The happy path ---------------------------------------------------------------------------------

@scenario
async def test_a_transfer_debits_the_source_credits_the_target_and_completes(bank):
    async with bank.agent(TRANSFERS) as transfers, bank.agent(ACCOUNTS) as accounts:
        s = Saga(bank, transfers, accounts)
        await s.account(open_account("A", "100.00"))
        await s.account(open_account("B", "5.00"))

        initiated = await s.transfer(transfer_money("30.00"))
        assert where(initiated) == [(topics.TRANSFER_EVENTS.name, "T"), (topics.ACCOUNT_COMMANDS.name, "A"),
                                    (topics.COMMAND_OUTCOMES.name, "cmd-tr")]
        event, debit, outcome = (bank.decode(r) for r in initiated)
        assert isinstance(event, TransferInitiated)
        assert (event.event_id, event.version, event.amount, event.from_account_id, event.to_account_id) == (
            "cmd-tr.0", 1, D("30.00"), "A", "B")
        assert debit == DebitAccount(command_id="T.debit", account_id="A", transfer_id="T", amount=D("30.00"))
        assert (outcome.command_id, outcome.command_type, outcome.status, outcome.version) == (
            "cmd-tr", "TransferMoney", ACCEPTED, 1)
        assert s.transfer_state().state == INITIATED

        debited = await s.deliver(initiated[1])
        # The step is an account command like any other: it also gets its own outcome, under the step id.
        assert where(debited) == [(topics.ACCOUNT_EVENTS.name, "A"), (topics.TRANSFER_REPLIES.name, "T"),
                                  (topics.COMMAND_OUTCOMES.name, "T.debit")]
        step_outcome = bank.decode(debited[2])
        assert (step_outcome.command_type, step_outcome.status, step_outcome.version) == (
            "DebitAccount", ACCEPTED, 2)
        (account_debited,) = (bank.decode(r) for r in on(topics.ACCOUNT_EVENTS, debited))
        assert isinstance(account_debited, AccountDebited)
        assert (account_debited.event_id, account_debited.version, account_debited.transfer_id,
                account_debited.amount, account_debited.balance) == ("T.debit.0", 2, "T", D("30.00"), D("70.00"))
        (reply,) = on(topics.TRANSFER_REPLIES, debited)
        assert bank.decode(reply) == RecordDebit(command_id="T.debit.reply", transfer_id="T", account_id="A",
                                                 accepted=True)

        transfer_debited = await s.deliver(reply)
        assert where(transfer_debited) == [(topics.TRANSFER_EVENTS.name, "T"), (topics.ACCOUNT_COMMANDS.name, "B")]
        event, credit = (bank.decode(r) for r in transfer_debited)
        assert isinstance(event, TransferDebited)
        assert (event.event_id, event.version, event.command_id) == ("T.debit.reply.0", 2, "T.debit.reply")
        assert credit == CreditAccount(command_id="T.credit", account_id="B", transfer_id="T", amount=D("30.00"))
        assert s.transfer_state().state == DEBITED

        credited = await s.deliver(transfer_debited[1])
        (account_credited,) = (bank.decode(r) for r in on(topics.ACCOUNT_EVENTS, credited))
        assert isinstance(account_credited, AccountCredited)
        assert (account_credited.aggregate_id, account_credited.version, account_credited.balance) == (
            "B", 2, D("35.00"))
        (reply,) = on(topics.TRANSFER_REPLIES, credited)
        assert reply.key == "T"
        assert bank.decode(reply) == RecordCredit(command_id="T.credit.reply", transfer_id="T", account_id="B",
                                                  accepted=True)

        completed = await s.deliver(reply)
        assert where(completed) == [(topics.TRANSFER_EVENTS.name, "T")]
        (event,) = (bank.decode(r) for r in completed)
        assert isinstance(event, TransferCompleted)
        assert (event.event_id, event.version) == ("T.credit.reply.0", 3)

    state = s.transfer_state()
    assert (state.state, state.reason, state.version) == (COMPLETED, None, 3)
    assert (s.balance("A"), s.balance("B")) == (D("70.00"), D("35.00"))


@scenario
async def test_the_saga_events_project_into_the_transfer_view_and_the_statements_of_both_accounts(bank):
    async with bank.agent(TRANSFERS) as transfers, bank.agent(ACCOUNTS) as accounts:
        s = Saga(bank, transfers, accounts)
        opened = await s.account(open_account("A", "100.00")) + await s.account(open_account("B", "0.00"))
        emitted = opened + await s.run(transfer_money("30.00"))
    async with bank.agent("project_transfers") as projector:
        for record in on(topics.TRANSFER_EVENTS, emitted):
            assert await projector.put(record.key, record.value) == []
    async with bank.agent("project_accounts") as projector:
        for record in on(topics.ACCOUNT_EVENTS, emitted):
            await projector.put(record.key, record.value)

    view = bank.view("transfer_to_view", "T")
    assert (view.state, view.version, view.amount, view.from_account_id, view.to_account_id) == (
        COMPLETED, 3, D("30.00"), "A", "B")
    debit_line, credit_line = bank.view("account_version_to_entry", history_key("A", 2)), \
        bank.view("account_version_to_entry", history_key("B", 2))
    assert (debit_line.entry_type, debit_line.amount, debit_line.balance, debit_line.transfer_id) == (
        "AccountDebited", D("-30.00"), D("70.00"), "T")
    assert (credit_line.entry_type, credit_line.amount, credit_line.balance, credit_line.transfer_id) == (
        "AccountCredited", D("30.00"), D("30.00"), "T")
    assert (bank.view("account_to_view", "A").balance, bank.view("account_to_view", "B").balance) == (
        D("70.00"), D("30.00"))


# Failure paths ------------------------------------------------------------------------------------

@scenario
async def test_a_debit_beyond_the_balance_fails_the_transfer_with_insufficient_funds_and_moves_no_money(bank):
    async with bank.agent(TRANSFERS) as transfers, bank.agent(ACCOUNTS) as accounts:
        s = Saga(bank, transfers, accounts)
        await s.account(open_account("A", "10.00"))
        await s.account(open_account("B", "5.00"))
        initiated = await s.transfer(transfer_money("30.00"))

        refused = await s.deliver(on(topics.ACCOUNT_COMMANDS, initiated)[0])
        assert on(topics.ACCOUNT_EVENTS, refused) == []
        (reply,) = on(topics.TRANSFER_REPLIES, refused)
        assert reply.key == "T"
        assert bank.decode(reply) == RecordDebit(command_id="T.debit.reply", transfer_id="T", account_id="A",
                                                 accepted=False, reason=Reason.INSUFFICIENT_FUNDS)

        failed = await s.deliver(reply)
        assert where(failed) == [(topics.TRANSFER_EVENTS.name, "T")]  # no credit, no refund, no outcome
        (event,) = (bank.decode(r) for r in failed)
        assert isinstance(event, TransferFailed)
        assert (event.version, event.reason) == (2, Reason.INSUFFICIENT_FUNDS)

    state = s.transfer_state()
    assert (state.state, state.reason, state.version) == (FAILED, Reason.INSUFFICIENT_FUNDS, 2)
    assert (s.balance("A"), s.balance("B")) == (D("10.00"), D("5.00"))


@scenario
async def test_a_transfer_whose_debit_is_refused_for_insufficient_funds_waits_on_no_step(bank):
    async with bank.agent(TRANSFERS) as transfers, bank.agent(ACCOUNTS) as accounts:
        s = Saga(bank, transfers, accounts)
        await s.account(open_account("A", "10.00"))
        await s.account(open_account("B", "5.00"))
        initiated = await s.transfer(transfer_money("30.00"))
        assert bank.raw("transfer_to_pending_steps", "T") is not None  # waits on its debit
        refused = await s.deliver(on(topics.ACCOUNT_COMMANDS, initiated)[0])
        await s.deliver(on(topics.TRANSFER_REPLIES, refused)[0])

    assert s.transfer_state().state == FAILED
    assert bank.raw("transfer_to_pending_steps", "T") is None


@scenario
async def test_a_refused_refund_leaves_the_transfer_stuck_but_waits_on_no_step_issued_again_forever(bank):
    # A refund is never refused by the rules; if one is (a bug, a hand-written reply), asking again
    # gets the same recorded answer: the account dedups the step by its id.
    async with bank.agent(TRANSFERS) as transfers, bank.agent(ACCOUNTS) as accounts:
        s = Saga(bank, transfers, accounts)
        await s.account(open_account("A", "100.00"))
        initiated = await s.transfer(transfer_money("30.00", to_account_id="Z"))
        debited = await s.deliver(on(topics.ACCOUNT_COMMANDS, initiated)[0])
        transfer_debited = await s.deliver(on(topics.TRANSFER_REPLIES, debited)[0])
        refused = await s.deliver(on(topics.ACCOUNT_COMMANDS, transfer_debited)[0])
        await s.deliver(on(topics.TRANSFER_REPLIES, refused)[0])
        assert bank.raw("transfer_to_pending_steps", "T") is not None  # waits on its refund
        await s.put(transfers, "T", RecordRefund(command_id="T.refund.reply", transfer_id="T", account_id="A",
                                                 accepted=False, reason=Reason.ACCOUNT_CLOSED),
                    topics.TRANSFER_REPLIES.name)

    assert (s.transfer_state().state, s.transfer_state().reason) == (DEBITED, Reason.ACCOUNT_NOT_FOUND)
    assert bank.raw("transfer_to_pending_steps", "T") is None


@scenario
async def test_a_transfer_from_an_unknown_account_fails_with_account_not_found(bank):
    async with bank.agent(TRANSFERS) as transfers, bank.agent(ACCOUNTS) as accounts:
        s = Saga(bank, transfers, accounts)
        await s.account(open_account("B", "5.00"))
        emitted = await s.run(transfer_money("30.00"))

    assert on(topics.ACCOUNT_EVENTS, emitted) == []
    assert [type(bank.decode(r)) for r in on(topics.TRANSFER_EVENTS, emitted)] == [TransferInitiated, TransferFailed]
    assert (s.transfer_state().state, s.transfer_state().reason) == (FAILED, Reason.ACCOUNT_NOT_FOUND)
    assert bank.raw("account_to_state", "A") is None


@scenario
async def test_a_credit_to_an_unknown_account_is_refunded_to_the_source_with_account_not_found(bank):
    async with bank.agent(TRANSFERS) as transfers, bank.agent(ACCOUNTS) as accounts:
        s = Saga(bank, transfers, accounts)
        await s.account(open_account("A", "100.00"))
        initiated = await s.transfer(transfer_money("30.00", to_account_id="Z"))
        debited = await s.deliver(on(topics.ACCOUNT_COMMANDS, initiated)[0])
        transfer_debited = await s.deliver(on(topics.TRANSFER_REPLIES, debited)[0])
        assert s.balance("A") == D("70.00")

        refused = await s.deliver(on(topics.ACCOUNT_COMMANDS, transfer_debited)[0])
        assert on(topics.ACCOUNT_EVENTS, refused) == []
        (reply,) = on(topics.TRANSFER_REPLIES, refused)
        assert bank.decode(reply) == RecordCredit(command_id="T.credit.reply", transfer_id="T", account_id="Z",
                                                  accepted=False, reason=Reason.ACCOUNT_NOT_FOUND)

        credit_failed = await s.deliver(reply)
        assert where(credit_failed) == [(topics.TRANSFER_EVENTS.name, "T"), (topics.ACCOUNT_COMMANDS.name, "A")]
        event, refund = (bank.decode(r) for r in credit_failed)
        assert isinstance(event, TransferCreditFailed)
        assert (event.version, event.reason) == (3, Reason.ACCOUNT_NOT_FOUND)
        assert refund == RefundAccount(command_id="T.refund", account_id="A", transfer_id="T", amount=D("30.00"))
        assert (s.transfer_state().state, s.transfer_state().reason) == (DEBITED, Reason.ACCOUNT_NOT_FOUND)

        refunded = await s.deliver(credit_failed[1])
        (account_refunded,) = (bank.decode(r) for r in on(topics.ACCOUNT_EVENTS, refunded))
        assert isinstance(account_refunded, AccountRefunded)
        assert (account_refunded.event_id, account_refunded.transfer_id, account_refunded.balance) == (
            "T.refund.0", "T", D("100.00"))
        (reply,) = on(topics.TRANSFER_REPLIES, refunded)
        assert bank.decode(reply) == RecordRefund(command_id="T.refund.reply", transfer_id="T", account_id="A",
                                                  accepted=True)

        done = await s.deliver(reply)
        assert where(done) == [(topics.TRANSFER_EVENTS.name, "T")]
        assert isinstance(bank.decode(done[0]), TransferRefunded)

    state = s.transfer_state()
    assert (state.state, state.reason, state.version) == (REFUNDED, Reason.ACCOUNT_NOT_FOUND, 4)
    assert s.balance("A") == D("100.00")
    assert bank.raw("account_to_state", "Z") is None


@scenario
async def test_a_credit_to_a_closed_account_is_refunded_with_account_closed(bank):
    async with bank.agent(TRANSFERS) as transfers, bank.agent(ACCOUNTS) as accounts:
        s = Saga(bank, transfers, accounts)
        await s.account(open_account("A", "100.00"))
        await s.account(open_account("B", "0.00"))
        await s.account(CloseAccount(command_id="close-B", account_id="B"))
        emitted = await s.run(transfer_money("30.00"))

    assert [type(bank.decode(r)) for r in on(topics.TRANSFER_EVENTS, emitted)] == [
        TransferInitiated, TransferDebited, TransferCreditFailed, TransferRefunded]
    assert [type(bank.decode(r)) for r in on(topics.ACCOUNT_EVENTS, emitted)] == [AccountDebited, AccountRefunded]
    state = s.transfer_state()
    assert (state.state, state.reason) == (REFUNDED, Reason.ACCOUNT_CLOSED)
    assert s.balance("A") == D("100.00")
    b = bank.view("account_to_state", "B")
    assert (b.balance, b.status, b.version) == (D("0.00"), CLOSED, 2)


@scenario
async def test_the_refund_reaches_a_source_account_closed_while_the_credit_was_pending(bank):
    async with bank.agent(TRANSFERS) as transfers, bank.agent(ACCOUNTS) as accounts:
        s = Saga(bank, transfers, accounts)
        await s.account(open_account("A", "30.00"))
        initiated = await s.transfer(transfer_money("30.00", to_account_id="Z"))
        debited = await s.deliver(on(topics.ACCOUNT_COMMANDS, initiated)[0])
        closed = await s.account(CloseAccount(command_id="close-A", account_id="A"))
        assert bank.decode(on(topics.COMMAND_OUTCOMES, closed)[0]).status == ACCEPTED  # the balance was 0
        transfer_debited = await s.deliver(on(topics.TRANSFER_REPLIES, debited)[0])
        refused = await s.deliver(on(topics.ACCOUNT_COMMANDS, transfer_debited)[0])
        credit_failed = await s.deliver(on(topics.TRANSFER_REPLIES, refused)[0])
        refunded = await s.deliver(on(topics.ACCOUNT_COMMANDS, credit_failed)[0])
        await s.deliver(on(topics.TRANSFER_REPLIES, refunded)[0])

    a = bank.view("account_to_state", "A")
    assert (a.balance, a.status) == (D("30.00"), CLOSED)
    assert (s.transfer_state().state, s.transfer_state().reason) == (REFUNDED, Reason.ACCOUNT_NOT_FOUND)


@scenario
async def test_an_invalid_transfer_is_rejected_and_issues_no_debit(bank):
    async with bank.agent(TRANSFERS) as transfers, bank.agent(ACCOUNTS) as accounts:
        s = Saga(bank, transfers, accounts)
        same = await s.transfer(transfer_money("30.00", to_account_id="A"))
        zero = await s.transfer(transfer_money("0.00", transfer_id="T2", command_id="cmd-tr2"))

    assert where(same) == [(topics.COMMAND_OUTCOMES.name, "cmd-tr")]
    assert where(zero) == [(topics.COMMAND_OUTCOMES.name, "cmd-tr2")]
    assert [(o.status, o.reason) for o in map(bank.decode, same + zero)] == [
        (REJECTED, Reason.SAME_ACCOUNT), (REJECTED, Reason.INVALID_AMOUNT)]
    assert bank.raw("transfer_to_state", "T") is None and bank.raw("transfer_to_state", "T2") is None


@scenario
async def test_a_second_transfer_money_for_an_existing_transfer_is_rejected_and_does_not_debit_again(bank):
    async with bank.agent(TRANSFERS) as transfers, bank.agent(ACCOUNTS) as accounts:
        s = Saga(bank, transfers, accounts)
        await s.account(open_account("A", "100.00"))
        await s.account(open_account("B", "0.00"))
        await s.run(transfer_money("30.00"))
        again = await s.run(transfer_money("30.00", command_id="cmd-tr-again"))

    assert where(again) == [(topics.COMMAND_OUTCOMES.name, "cmd-tr-again")]
    assert (bank.decode(again[0]).status, bank.decode(again[0]).reason) == (REJECTED, Reason.ALREADY_EXISTS)
    assert (s.balance("A"), s.balance("B")) == (D("70.00"), D("30.00"))


@scenario
async def test_a_reply_keyed_by_another_id_than_its_transfer_is_dead_lettered_and_the_saga_waits(bank):
    async with bank.agent(TRANSFERS) as transfers, bank.agent(ACCOUNTS) as accounts:
        s = Saga(bank, transfers, accounts)
        await s.account(open_account("A", "100.00"))
        initiated = await s.transfer(transfer_money("30.00"))
        debited = await s.deliver(on(topics.ACCOUNT_COMMANDS, initiated)[0])
        (reply,) = on(topics.TRANSFER_REPLIES, debited)
        parked = await transfers.put("A", reply.value, topic=topics.TRANSFER_REPLIES.name)
        assert [(r.topic, r.key, r.value) for r in parked] == [(topics.DEADLETTER.name, "A", reply.value)]
        assert dict(parked[0].headers)["deadletter.topic"] == topics.TRANSFER_REPLIES.name.encode()
        assert s.transfer_state().state == INITIATED
        assert bank.raw("transfer_command_to_result", "T.debit.reply") is None  # a correct delivery still runs
        resumed = await s.deliver(reply)

    assert isinstance(bank.decode(resumed[0]), TransferDebited)


@scenario
async def test_a_step_on_the_transfer_command_topic_is_dead_lettered(bank):
    async with bank.agent(TRANSFERS) as transfers:
        step = bank.codec.encode(DebitAccount(command_id="T.debit", account_id="A", transfer_id="T",
                                              amount=D("1.00")))
        parked = await transfers.put("T", step, topic=topics.TRANSFER_COMMANDS.name)

    assert [r.topic for r in parked] == [topics.DEADLETTER.name]
    assert b"DebitAccount does not belong on" in dict(parked[0].headers)["deadletter.error"]


# Ids the saga derives -----------------------------------------------------------------------------

@scenario
async def test_a_deposit_with_the_id_of_a_future_debit_step_is_refused_and_the_transfer_still_completes(bank):
    async with bank.agent(TRANSFERS) as transfers, bank.agent(ACCOUNTS) as accounts:
        s = Saga(bank, transfers, accounts)
        await s.account(open_account("A", "100.00"))
        await s.account(open_account("B", "0.00"))
        refused = await s.account(Deposit(command_id="T.debit", account_id="A", amount=D("1.00")))
        await s.run(transfer_money("30.00"))

    assert s.transfer_state().state == COMPLETED
    assert (s.balance("A"), s.balance("B")) == (D("70.00"), D("30.00"))
    assert [(r.topic, r.key) for r in refused] == [(topics.COMMAND_OUTCOMES.name, "T.debit")]
    outcome = bank.decode(refused[0])
    assert (outcome.command_type, outcome.status, outcome.reason, outcome.field) == (
        "Deposit", REJECTED, Reason.INVALID_FIELD, "command_id")
    assert "reserved" in outcome.message


@scenario
async def test_a_deposit_with_the_id_of_a_past_debit_step_is_refused_not_answered_as_that_debit(bank):
    async with bank.agent(TRANSFERS) as transfers, bank.agent(ACCOUNTS) as accounts:
        s = Saga(bank, transfers, accounts)
        await s.account(open_account("A", "100.00"))
        await s.account(open_account("B", "0.00"))
        await s.run(transfer_money("30.00"))
        refused = await s.account(Deposit(command_id="T.debit", account_id="A", amount=D("1.00")))

    assert [(r.topic, bank.decode(r).command_type, bank.decode(r).reason) for r in refused] == [
        (topics.COMMAND_OUTCOMES.name, "Deposit", Reason.INVALID_FIELD)]  # no second reply to the transfer
    assert s.balance("A") == D("70.00")


@scenario
async def test_a_transfer_money_with_the_id_of_its_own_debit_reply_is_refused_and_a_valid_one_completes(bank):
    async with bank.agent(TRANSFERS) as transfers, bank.agent(ACCOUNTS) as accounts:
        s = Saga(bank, transfers, accounts)
        await s.account(open_account("A", "100.00"))
        await s.account(open_account("B", "0.00"))
        refused = await s.transfer(transfer_money("1.00", transfer_id="T", command_id="T.debit.reply"))
        await s.run(transfer_money("30.00", transfer_id="T", command_id="cmd-tr"))

    assert s.transfer_state().state == COMPLETED
    assert s.balance("B") == D("30.00")
    assert [(o.status, o.reason, o.field) for o in map(bank.decode, refused)] == [
        (REJECTED, Reason.INVALID_FIELD, "command_id")]


# Duplicates --------------------------------------------------------------------------------------

async def redeliver_everything(s):
    """Puts every record of the saga again; returns (what it emitted first, what it emitted again)."""
    first, again = [], []
    for agent, key, raw, topic, sent in list(s.puts):
        first.append(sent)
        again.append(await agent.put(key, raw, topic=topic))
    return first, again


def tables(bank, *names):
    return {name: dict(bank.pipeline.tables[name].items()) for name in names}


SAGA_TABLES = ("transfer_to_state", "account_to_state")  # each holds its aggregates' state and dedup records


@scenario
async def test_every_step_and_reply_of_a_completed_saga_redelivered_re_emits_the_same_bytes_and_changes_nothing(
        bank):
    async with bank.agent(TRANSFERS) as transfers, bank.agent(ACCOUNTS) as accounts:
        s = Saga(bank, transfers, accounts)
        await s.account(open_account("A", "100.00"))
        await s.account(open_account("B", "5.00"))
        await s.run(transfer_money("30.00"))
        before = tables(bank, *SAGA_TABLES)
        first, again = await redeliver_everything(s)

    assert len(first) == 7  # two opens, TransferMoney, debit, its reply, credit, its reply
    assert again == first
    assert tables(bank, *SAGA_TABLES) == before
    assert (s.balance("A"), s.balance("B")) == (D("70.00"), D("35.00"))
    assert (s.transfer_state().state, s.transfer_state().version) == (COMPLETED, 3)


@scenario
async def test_every_step_and_reply_of_a_refunded_saga_redelivered_re_emits_the_same_bytes_and_changes_nothing(
        bank):
    async with bank.agent(TRANSFERS) as transfers, bank.agent(ACCOUNTS) as accounts:
        s = Saga(bank, transfers, accounts)
        await s.account(open_account("A", "100.00"))
        await s.run(transfer_money("30.00", to_account_id="Z"))
        before = tables(bank, *SAGA_TABLES)
        first, again = await redeliver_everything(s)

    assert again == first
    assert tables(bank, *SAGA_TABLES) == before
    assert s.balance("A") == D("100.00")  # not refunded twice
    assert (s.transfer_state().state, s.transfer_state().version) == (REFUNDED, 4)


@scenario
async def test_a_step_redelivered_mid_saga_is_applied_once(bank):
    async with bank.agent(TRANSFERS) as transfers, bank.agent(ACCOUNTS) as accounts:
        s = Saga(bank, transfers, accounts)
        await s.account(open_account("A", "100.00"))
        await s.account(open_account("B", "5.00"))
        initiated = await s.transfer(transfer_money("30.00"))
        (debit,) = on(topics.ACCOUNT_COMMANDS, initiated)
        first = await s.deliver(debit)
        second = await s.deliver(debit)
        assert second == first
        assert s.balance("A") == D("70.00")  # not debited twice

        initiated_again = await s.transfer(transfer_money("30.00"))  # TransferMoney redelivered
        assert initiated_again == initiated  # re-issues the same debit, which the account dedups
        assert await s.deliver(on(topics.ACCOUNT_COMMANDS, initiated_again)[0]) == first

        (reply,) = on(topics.TRANSFER_REPLIES, first)
        debited = await s.deliver(reply)
        assert await s.deliver(reply) == debited
        assert s.transfer_state().version == 2
        (credit,) = on(topics.ACCOUNT_COMMANDS, debited)
        credited = await s.deliver(credit)
        assert await s.deliver(credit) == credited
        assert s.balance("B") == D("35.00")  # not credited twice
        await s.deliver(on(topics.TRANSFER_REPLIES, credited)[0])

    assert (s.transfer_state().state, s.transfer_state().version) == (COMPLETED, 3)
    assert (s.balance("A"), s.balance("B")) == (D("70.00"), D("35.00"))


@scenario
async def test_two_transfers_between_the_same_accounts_are_independent_sagas(bank):
    async with bank.agent(TRANSFERS) as transfers, bank.agent(ACCOUNTS) as accounts:
        s = Saga(bank, transfers, accounts)
        await s.account(open_account("A", "100.00"))
        await s.account(open_account("B", "0.00"))
        await s.run(transfer_money("30.00", transfer_id="T1", command_id="c1"))
        await s.run(transfer_money("30.00", transfer_id="T2", command_id="c2"))
        await s.run(transfer_money("50.00", transfer_id="T3", command_id="c3"))

    assert [s.transfer_state(t).state for t in ("T1", "T2", "T3")] == [COMPLETED, COMPLETED, FAILED]
    assert s.transfer_state("T3").reason == Reason.INSUFFICIENT_FUNDS
    assert (s.balance("A"), s.balance("B")) == (D("40.00"), D("60.00"))

