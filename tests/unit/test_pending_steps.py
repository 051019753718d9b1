"""A process that waits on an answer keeps the step it issued, and issues it again once overdue."""
from decimal import Decimal

from streams import topics
from streams.avro import Codec
from streams.domain import transfers
from streams.domain.transfer_steps import RecordCredit, RecordDebit
from streams.domain.transfers import TransferMoney
from streams.processing import CommandProcessor, Origin

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


def test_only_steps_waited_on_longer_than_the_limit_are_issued_again_with_their_first_ids():
    now = [0]
    processor, _ = transfer_processor(lambda: now[0])
    put(processor, TransferMoney(command_id="c1", transfer_id="t1", from_account_id="a", to_account_id="b",
                                 amount=Decimal("5.00")))
    now[0] = 10_000
    put(processor, TransferMoney(command_id="c2", transfer_id="t2", from_account_id="a", to_account_id="b",
                                 amount=Decimal("1.00")))
    due = processor.overdue(now=16_000, after_ms=15_000, wanted=lambda key: True)
    assert list(due) == ["t1"]
    [record] = due["t1"]
    assert (record.topic, record.key, codec.decode(record.value).command_id) == (
        topics.ACCOUNT_COMMANDS.name, "a", "t1.debit")
    assert processor.overdue(now=16_000, after_ms=15_000, wanted=lambda key: key != "t1") == {}


def test_a_reply_refused_in_the_wrong_state_keeps_the_transfer_waiting():
    processor, pending = transfer_processor(lambda: 0)
    put(processor, TransferMoney(command_id="c1", transfer_id="t1", from_account_id="a", to_account_id="b",
                                 amount=Decimal("5.00")))
    put(processor, RecordCredit(command_id="stray.reply", transfer_id="t1", account_id="b", accepted=True))
    assert [codec.decode(c).command_id for c in codec.decode(pending["t1"]).commands] == ["t1.debit"]


def test_overdue_steps_are_found_when_the_table_yields_raw_byte_keys():
    """Faust iterates a table's keys as bytes; the redrive must still find the transfer."""
    processor, pending = transfer_processor(lambda: 0)
    put(processor, TransferMoney(command_id="c1", transfer_id="t1", from_account_id="a", to_account_id="b",
                                 amount=Decimal("5.00")))
    pending[b"t1"] = pending.pop("t1")
    assert list(processor.overdue(now=60_000, after_ms=15_000, wanted=lambda key: key == "t1")) == ["t1"]


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
