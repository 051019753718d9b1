"""The dashboard's fold (streams.http.dashboard.Board): what the page shows after which events."""
from __future__ import annotations

import asyncio
from decimal import Decimal

from given_when_then import NOW
from streams.contract.avro import Codec
from streams.config import Settings
from streams.http.dashboard import RECENT_TRANSFERS, Board, Feed
from streams.domain.accounts import AccountOpened, MoneyDeposited
from streams.domain.customers import CustomerCreated
from streams.domain.transfers import TransferCompleted, TransferDebited, TransferFailed, TransferInitiated

D = Decimal


def envelope(aggregate_id: str, version: int, at: int | None = None) -> dict:
    return dict(event_id=f"{aggregate_id}.{version}", aggregate_id=aggregate_id, version=version,
                command_id=f"{aggregate_id}-c{version}", occurred_at=NOW + version if at is None else at)


def opened(account_id: str, balance: str = "100.00", customer_id: str = "cust-1", title: str = "Checking"):
    return AccountOpened(**envelope(account_id, 1), customer_id=customer_id, title=title, description="",
                         initial_balance=D(balance))


def initiated(transfer_id: str, at: int | None = None):
    return TransferInitiated(**envelope(transfer_id, 1, at), from_account_id="a1", to_account_id="a2",
                             amount=D("30.00"), description="rent")


def test_given_an_opened_account_when_money_is_deposited_then_the_board_shows_the_new_balance():
    board = Board()
    board.apply(opened("a1"))
    changes = board.apply(MoneyDeposited(**envelope("a1", 2), amount=D("5.50"), balance=D("105.50")))
    assert changes == [("account", board.account_json(board.accounts["a1"]))]
    assert changes[0][1]["balance"] == "105.50" and changes[0][1]["version"] == 2
    assert board.snapshot()["totals"] == {"accounts": 1, "transfers": 0, "events": 2, "balance": "105.50"}


def test_given_an_applied_event_when_it_is_delivered_again_then_nothing_changes():
    board = Board()
    deposit = MoneyDeposited(**envelope("a1", 2), amount=D("5.00"), balance=D("105.00"))
    board.apply(opened("a1"))
    board.apply(deposit)
    assert board.apply(deposit) == [] and board.apply(opened("a1")) == []
    assert board.accounts["a1"].balance == D("105.00") and board.events == 2


def test_given_a_transfer_when_it_is_debited_and_completed_then_its_state_follows():
    board = Board()
    states = [board.apply(event)[0][1]["state"] for event in (
        initiated("t1"), TransferDebited(**envelope("t1", 2)), TransferCompleted(**envelope("t1", 3)))]
    assert states == ["INITIATED", "DEBITED", "COMPLETED"]
    assert "reason" not in board.transfer_json(board.transfers["t1"])


def test_given_a_failed_transfer_then_the_board_shows_the_reason():
    board = Board()
    board.apply(initiated("t1"))
    (kind, shown), = board.apply(TransferFailed(**envelope("t1", 2), reason="INSUFFICIENT_FUNDS"))
    assert kind == "transfer" and shown["state"] == "FAILED" and shown["reason"] == "INSUFFICIENT_FUNDS"


def test_given_a_customer_created_with_a_name_then_the_board_shows_no_personal_data():
    board = Board()
    board.apply(opened("a1", customer_id="cust-9"))
    changes = board.apply(CustomerCreated(**envelope("cust-9", 1), first_name="Ada", last_name="Lovelace",
                                          email="ada@example.com", phone=None, address=None))
    assert changes == []
    shown = board.snapshot()["accounts"][0]
    assert shown["customer_id"] == "cust-9"
    assert not {"Ada", "Lovelace", "ada@example.com"} & {str(v) for v in shown.values()}


def test_given_many_transfers_then_the_snapshot_lists_only_the_latest_the_latest_first():
    board = Board()
    for n in range(RECENT_TRANSFERS + 10):
        board.apply(initiated(f"t{n}", at=NOW + n))
    listed = board.snapshot()["transfers"]
    assert len(listed) == RECENT_TRANSFERS and listed[0]["transfer_id"] == f"t{RECENT_TRANSFERS + 9}"
    assert board.snapshot()["totals"]["transfers"] == RECENT_TRANSFERS + 10


def test_given_a_reader_too_far_behind_when_more_changes_come_then_it_is_sent_a_new_snapshot_instead():
    async def scenario():
        feed = Feed(Settings(), Codec())
        queue = feed.subscribe()
        for n in range(queue.maxsize + 5):
            feed._apply([opened(f"a{n}")], caught_up=False)
        drained = [queue.get_nowait() for _ in range(queue.qsize())]
        return drained, feed.board
    drained, board = asyncio.run(scenario())
    assert ("snapshot", None) in drained and len(drained) < 1005 and len(board.accounts) == 1005
