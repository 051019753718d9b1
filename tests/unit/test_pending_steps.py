"""A process that waits on an answer keeps the steps it issued until each is answered (what `bank verify`
and an operator read to see what a saga waits on)."""
from decimal import Decimal

from streams.contract import topics
from streams.contract.avro import Codec
from streams.domain import transfers
from streams.domain.transfer_steps import RecordCredit, RecordDebit
from streams.domain.transfers import TransferMoney
from streams.services.commands import CommandProcessor
from streams.services.handling import Origin

ORIGIN = Origin("bank.transfers.commands", 0, 0)
codec = Codec()


def transfer_processor(clock):
    pending = {}
    processor = CommandProcessor(codec, transfers, (topics.TRANSFER_COMMANDS, topics.TRANSFER_REPLIES),
                                 topics.TRANSFER_EVENTS, {}, {}, clock=clock, pending=pending)
    return processor, pending


def put(processor, record):
    return processor.process(record.aggregate_id.encode(), codec.encode(record), ORIGIN)


def test_a_new_transfer_waits_on_its_debit_until_the_answer_and_then_on_its_credit():
    now = [1_000]
    processor, pending = transfer_processor(lambda: now[0])
    put(processor, TransferMoney(command_id="c1", transfer_id="t1", from_account_id="a", to_account_id="b",
                                 amount=Decimal("5.00")))
    waiting = codec.decode(pending["t1"])
    assert [codec.decode(c).command_id for c in waiting.commands] == ["t1.debit"]
    assert waiting.issued_at == 1_000

    now[0] = 2_000
    put(processor, RecordDebit(command_id="t1.debit.reply", transfer_id="t1", account_id="a", accepted=True))
    assert [codec.decode(c).command_id for c in codec.decode(pending["t1"]).commands] == ["t1.credit"]

    put(processor, RecordCredit(command_id="t1.credit.reply", transfer_id="t1", account_id="b", accepted=True))
    assert "t1" not in pending  # completed: nothing more to wait for


def test_a_reply_refused_in_the_wrong_state_keeps_the_transfer_waiting():
    processor, pending = transfer_processor(lambda: 0)
    put(processor, TransferMoney(command_id="c1", transfer_id="t1", from_account_id="a", to_account_id="b",
                                 amount=Decimal("5.00")))
    put(processor, RecordCredit(command_id="stray.reply", transfer_id="t1", account_id="b", accepted=True))
    assert [codec.decode(c).command_id for c in codec.decode(pending["t1"]).commands] == ["t1.debit"]


def test_a_customer_created_twice_waits_on_both_reservations_until_each_is_answered_accepted_or_not():
    from streams.domain import customers
    from streams.domain.customers import CreateCustomer
    from streams.domain.emails import RecordEmailReservation

    pending = {}
    processor = CommandProcessor(codec, customers, (topics.CUSTOMER_COMMANDS, topics.CUSTOMER_REPLIES),
                                 topics.CUSTOMER_EVENTS, {}, {}, clock=lambda: 0, pending=pending)
    for command_id, email in (("create-1", "ada@example.com"), ("create-2", "eve@example.com")):
        put(processor, CreateCustomer(command_id=command_id, customer_id="c", first_name="Ada", last_name="L",
                                      email=email))
    assert [codec.decode(c).command_id for c in codec.decode(pending["c"]).commands] == [
        "create-1.reserve-email", "create-2.reserve-email"]

    put(processor, RecordEmailReservation(command_id="create-2.reserve-email.reply", customer_id="c",
                                          email="eve@example.com", accepted=False, reason="EMAIL_TAKEN",
                                          settles_command_id="create-2", settles_command_type="CreateCustomer"))
    assert [codec.decode(c).command_id for c in codec.decode(pending["c"]).commands] == ["create-1.reserve-email"]

    put(processor, RecordEmailReservation(command_id="create-1.reserve-email.reply", customer_id="c",
                                          email="ada@example.com", accepted=True, first_name="Ada", last_name="L",
                                          settles_command_id="create-1", settles_command_type="CreateCustomer"))
    assert "c" not in pending
