"""The guards around Faust's table recovery (streams.worker.app), on Faust's own recovery service
without a broker: records of partitions recovery no longer tracks, and rounds a rebalance overtook."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

import faust
import pytest
from faust.tables.recovery import RebalanceAgain, Recovery
from faust.types import TP

from streams.worker.app import SeekFence, end_recovery_past_markers, skip_untracked_changelog_events

ACCOUNTS = TP("streambank-accounts-changelog", 0)
REVOKED = TP("streambank-pending-changelog", 1)  # assigned before the last rebalance, not now


def recovering_app() -> tuple[faust.App, dict[str, list[tuple[TP, int]]]]:
    """A Faust app with two tables whose recovery tracks only ACCOUNTS; what each table is given to
    apply is recorded by table name."""
    app = faust.App("recovery-guards", broker="memory://", store="memory://", autodiscover=False)
    applied: dict[str, list[tuple[TP, int]]] = {}
    tables = {}
    for name, tp in (("accounts", ACCOUNTS), ("pending", REVOKED)):
        table = tables[tp] = app.Table(name, partitions=2)
        table.recovery_buffer_size = 1
        applied[name] = []
        table.apply_changelog_batch = (lambda batch, name=name: applied[name].extend(
            (event.message.tp, event.message.offset) for event in batch))
    recovery = app.tables.recovery
    recovery.tp_to_table.update(tables)
    recovery.active_tps.add(ACCOUNTS)
    recovery.active_offsets[ACCOUNTS] = None
    recovery._last_active_event_processed_at = None  # set when the service starts
    return app, applied


def changelog_event(tp: TP, offset: int):
    return SimpleNamespace(message=SimpleNamespace(tp=tp, offset=offset), key=b"k", value=b"v")


async def slurp(app: faust.App, events) -> None:
    """Runs Faust's `_slurp_changelogs` over `events` until the queue is empty."""
    queue = app.tables.changelog_queue
    for event in events:
        queue.put_nowait(event)
    task = asyncio.ensure_future(Recovery._slurp_changelogs.fun(app.tables.recovery))
    while not queue.empty():
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_given_a_record_of_an_untracked_partition_then_faust_applies_it_to_the_table_before_it():
    # The lead, confirmed on Faust's own loop: after "recovery unknown topic" it falls through with
    # the last record's table, so the pending table's record joins the accounts table's buffer and is
    # applied there with the next one, setting the accounts store's offset for partition 1 to 900.
    app, applied = recovering_app()
    asyncio.run(slurp(app, [changelog_event(ACCOUNTS, 5), changelog_event(REVOKED, 900),
                            changelog_event(ACCOUNTS, 6)]))
    assert applied == {"accounts": [(ACCOUNTS, 5), (REVOKED, 900), (ACCOUNTS, 6)], "pending": []}


def test_given_the_guard_when_a_record_of_an_untracked_partition_comes_then_no_table_applies_it():
    app, applied = recovering_app()
    skip_untracked_changelog_events(app)
    asyncio.run(slurp(app, [changelog_event(ACCOUNTS, 5), changelog_event(REVOKED, 900),
                            changelog_event(ACCOUNTS, 6)]))
    assert applied == {"accounts": [(ACCOUNTS, 5), (ACCOUNTS, 6)], "pending": []}


def test_given_a_rebalance_is_fencing_then_recovery_is_not_over():
    app, _ = recovering_app()
    recovery = app.tables.recovery
    recovery.need_recovery = lambda: False  # every tracked partition read to its end
    end_recovery_past_markers(app)
    assert recovery.need_recovery() is False
    app.fencing = 1
    assert recovery.need_recovery() is True
    app.fencing = 0
    assert recovery.need_recovery() is False


def test_given_the_next_rebalance_has_signalled_then_a_recovery_round_goes_no_further():
    went_on = []

    async def step():
        went_on.append(True)

    async def round_after_signal():
        app, _ = recovering_app()  # on this loop: Faust's waits run on the loop the app was made on
        recovery = app.tables.recovery
        end_recovery_past_markers(app)
        recovery.signal_recovery_start.set()
        await recovery._wait(step())

    with pytest.raises(RebalanceAgain):
        asyncio.run(round_after_signal())
    assert went_on == []


def test_given_no_rebalance_signalled_then_a_recovery_round_step_runs():
    went_on = []

    async def step():
        went_on.append(True)

    async def round_step():
        app, _ = recovering_app()
        recovery = app.tables.recovery
        end_recovery_past_markers(app)
        recovery.signal_recovery_start.clear()
        await recovery._wait(step())

    asyncio.run(round_step())
    assert went_on == [True]


def recovery_read_to(handed_through: int | None, applied: int, queued: int = 0, sought_after: bool = False) -> bool:
    """Whether the ACCOUNTS changelog (records up to 59, its last marker at 60: highwater 60 as Faust
    counts it) is recovered, given the consumer's position when its last fetch started (every record
    before it handed on), the last offset applied, and records still in Faust's changelog queue."""
    app, _ = recovering_app()
    fence = SeekFence()
    app._consumer = SimpleNamespace(seek_fence=fence)
    if handed_through is not None:
        fence.fetching({ACCOUNTS: handed_through})
    if sought_after:
        fence.sought({ACCOUNTS: 0})
    recovery = app.tables.recovery
    recovery.active_highwaters[ACCOUNTS] = 60
    recovery.active_offsets[ACCOUNTS] = applied
    for offset in range(queued):
        app.tables.changelog_queue.put_nowait(changelog_event(ACCOUNTS, offset))
    end_recovery_past_markers(app)
    return recovery.active_remaining()[ACCOUNTS] == 0


def test_given_the_record_before_the_last_marker_applied_then_the_partition_is_recovered():
    assert recovery_read_to(handed_through=None, applied=59)


def test_given_everything_handed_on_past_the_highwater_and_taken_then_the_partition_is_recovered():
    # The last committed record sits before an aborted transaction's records: 59 is never applied.
    assert recovery_read_to(handed_through=61, applied=41)


def test_given_records_fetched_past_the_highwater_but_not_all_handed_on_then_recovery_goes_on():
    # The consumer's position is past the highwater as soon as the last fetch returns; its records
    # are handed on after. Ending then left the tables without them (a transfer "does not exist").
    assert not recovery_read_to(handed_through=12, applied=11)


def test_given_everything_handed_on_but_still_queued_then_recovery_goes_on():
    assert not recovery_read_to(handed_through=61, applied=41, queued=3)


def test_given_a_seek_since_the_last_fetch_then_what_was_handed_on_before_counts_no_more():
    assert not recovery_read_to(handed_through=61, applied=41, sought_after=True)
