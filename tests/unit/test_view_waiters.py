"""ViewWaiters: a GET's `?wait=` is woken when its key changes, and leaves nothing behind either way."""
from __future__ import annotations

import asyncio

from streams.worker.pipeline import ViewWaiters


def test_given_a_waiter_woken_and_one_timed_out_then_no_key_stays_registered():
    async def scenario():
        waiters = ViewWaiters()
        woken = asyncio.ensure_future(waiters.changed("account_to_view", "a-1", timeout=5))
        await asyncio.sleep(0)
        waiters.notify("account_to_view", "a-1")
        timed_out = await waiters.changed("account_to_view", "a-2", timeout=0.01)
        return await woken, timed_out, dict(waiters._waiting)

    assert asyncio.run(scenario()) == (True, False, {})


def test_given_two_waiters_on_a_key_when_one_times_out_then_the_other_is_still_woken():
    async def scenario():
        waiters = ViewWaiters()
        patient = asyncio.ensure_future(waiters.changed("account_to_view", "a-1", timeout=5))
        hasty = await waiters.changed("account_to_view", "a-1", timeout=0.01)
        waiters.notify("account_to_view", "a-1")
        return hasty, await patient, dict(waiters._waiting)

    assert asyncio.run(scenario()) == (False, True, {})
