"""Records a seek overtook: the lead "records fetched before a seek are handed on after it and move
Faust's read offset past the records the seek asked for again", confirmed on Faust's own loop
(`Consumer._drain_messages`), and the fence that keeps them back."""
from __future__ import annotations

import asyncio
from collections import defaultdict
from types import SimpleNamespace

import pytest

from faust.transport.consumer import Consumer as FaustConsumer
from faust.types import TP

from streams.worker.app import SeekFence, not_overtaken

TP0 = TP("bank.accounts.changelog", 0)
TP1 = TP("bank.accounts.changelog", 1)


class Script:
    """Faust's consumer as `_drain_messages` sees it: each fetch a list of offsets of TP0; `seek_after`
    (fetch index, offset handed on) → the offset the partition is sought to at that point, as a
    recovery or a restarted task does while a fetched batch is still being handed on."""

    def __init__(self, fetches: list[list[int]], seek_after: dict[tuple[int, int], int], fence: SeekFence | None,
                 during: bool = True):
        self.fetches, self.seek_after, self.fence = fetches, seek_after, fence
        self.during = during  # the seek while the record is handed on, or just after
        self.handed_on: list[int] = []
        self._read_offset = defaultdict(lambda: None)
        self.fetch_index = -1
        self.fetched_at = None
        stopped = SimpleNamespace(is_set=lambda: self.fetch_index >= len(self.fetches) - 1)
        self._stopped = stopped
        self.fetcher = SimpleNamespace(_stopped=stopped)
        self.diag = SimpleNamespace(set_flag=lambda flag: None, unset_flag=lambda flag: None)
        self._commit_every = None
        # No agent reads TP0 here (nothing for `Delivery`): every record goes through `callback`.
        self.app = SimpleNamespace(topics=SimpleNamespace(acks_enabled_for=lambda topic: False, _tp_to_callback={},
                                                          _tp_index={}, _tp_to_callback_lock=asyncio.Lock()))
        self.should_stop = False
        self.suspend_flow = asyncio.Event()
        self.consumer_stopped_errors = ()
        self.log = SimpleNamespace(dev=lambda *args: None, exception=lambda *args: None)

    async def sleep(self, seconds):
        await asyncio.sleep(0)

    async def wait_first(self, *coros):
        await coros[0]
        coros[1].close()

    async def callback(self, message):
        self.handed_on.append(message.offset)
        if self.during:
            self.seek(message.offset)

    def seek(self, offset: int) -> None:
        seek_to = self.seek_after.get((self.fetch_index, offset))
        if seek_to is not None:  # what Faust's seek does: the fetcher moves back, the read offset with it
            self._read_offset[TP0] = seek_to
            if self.fence is not None:
                self.fence.sought({TP0: seek_to})

    def getmany(self, timeout):
        async def fetch():
            self.fetch_index += 1
            self.fetched_at = self.fence.fetched() if self.fence is not None else None
            for offset in self.fetches[self.fetch_index]:
                yield TP0, SimpleNamespace(offset=offset, topic=TP0.topic, tp=TP0, key=None, value=None)
                if not self.during:
                    self.seek(offset)
        if self.fence is None:
            return fetch()
        return not_overtaken(fetch(), self.fence, lambda: self.fetched_at, self._read_offset)

    def drain(self, loop=FaustConsumer._drain_messages) -> list[int]:
        asyncio.run(loop(self, self.fetcher))
        return self.handed_on


def our_loop(script, fetcher):
    from streams.worker.app import TransactionalConsumer
    return TransactionalConsumer._drain_messages(script, fetcher)


LOOPS = pytest.mark.parametrize("loop", [FaustConsumer._drain_messages, our_loop], ids=["faust-loop", "our-loop"])


@LOOPS
@pytest.mark.parametrize("during", [True, False], ids=["seek-while-handed-on", "seek-between-records"])
def test_given_a_seek_while_a_fetch_is_handed_on_then_faust_drops_the_records_the_seek_asked_for_again(during, loop):
    # Fetched 5-7; at 5, recovery seeks back to 3 (records 3 and 4 not applied yet). Faust hands on
    # 6 and 7 from the old fetch, then drops 3 and 4 from the new one as read (7, not below its read
    # offset, comes twice).
    script = Script(fetches=[[5, 6, 7], [3, 4, 5, 6, 7]], seek_after={(0, 5): 3}, fence=None, during=during)
    assert script.drain(loop) == [5, 6, 7, 7]


@LOOPS
@pytest.mark.parametrize("during", [True, False], ids=["seek-while-handed-on", "seek-between-records"])
def test_given_the_fence_when_a_seek_overtakes_a_fetch_then_the_seek_brings_every_record_again_in_order(during, loop):
    script = Script(fetches=[[5, 6, 7], [3, 4, 5, 6, 7]], seek_after={(0, 5): 3}, fence=SeekFence(), during=during)
    assert script.drain(loop) == [5, 3, 4, 5, 6, 7]


@LOOPS
def test_given_the_fence_and_no_seek_then_every_fetched_record_is_handed_on_once(loop):
    script = Script(fetches=[[0, 1, 2], [3, 4]], seek_after={}, fence=SeekFence())
    assert script.drain(loop) == [0, 1, 2, 3, 4]


@LOOPS
def test_given_a_fetch_again_from_below_the_read_offset_then_both_loops_drop_what_lies_below_it(loop):
    # The read offset is the last record handed on: that one comes again (the transactions' positions
    # refuse it), the records below it do not.
    script = Script(fetches=[[0, 1, 2], [0, 1, 2, 3]], seek_after={}, fence=None)
    assert script.drain(loop) == [0, 1, 2, 2, 3]


def test_given_the_consumer_suspended_then_our_loop_hands_on_through_faust_s_race_with_the_suspension():
    script = Script(fetches=[[0, 1]], seek_after={}, fence=None)
    raced = []
    plain_wait_first = script.wait_first

    async def wait_first(*coros):
        raced.append(len(coros))
        await plain_wait_first(*coros)
    script.wait_first = wait_first
    script.suspend_flow.set()
    assert script.drain(our_loop) == [0, 1]
    assert raced == [2, 2]


def test_given_a_seek_of_one_partition_then_a_fetch_before_it_is_overtaken_there_only():
    fence = SeekFence()
    before = fence.fetched()
    fence.sought({TP0: 3})
    after = fence.fetched()
    assert fence.overtaken(TP0, before)
    assert not fence.overtaken(TP1, before)
    assert not fence.overtaken(TP0, after)


def test_given_a_fetch_without_a_tick_then_nothing_is_overtaken():
    fence = SeekFence()
    fence.sought({TP0: 3})
    assert not fence.overtaken(TP0, None)


class PausingConsumer:
    """What Faust's and our `getmany` read of the consumer: one fetch of TP0 (offsets), TP0 paused once
    the record `pause_after` is handed on (as recovery pauses the sources at its start)."""

    def __init__(self, offsets: list[int], pause_after: int):
        from streams.worker.app import Fetched, TransactionalConsumer
        self.seek_fence = SeekFence()
        records = Fetched({TP0: [SimpleNamespace(offset=o) for o in offsets]})
        records.fetched_at = self.seek_fence.fetched()
        self.records, self.pause_after = records, pause_after
        self.active = {TP0}
        self.should_stop, self.flow_active = False, True
        self._buffered_partitions = set()
        self._read_offset = defaultdict(lambda: None)
        self.app = SimpleNamespace(consumer_generation_id=1, monitor=SimpleNamespace(track_tp_end_offset=lambda tp, hw: None))
        self.scheduler = SimpleNamespace(iterate=lambda records: ((tp, r) for tp, rs in records.items() for r in rs))
        self.sought: list[tuple] = []
        self._handed_on = lambda *args: TransactionalConsumer._handed_on(self, *args)

    async def _wait_next_records(self, timeout):
        return self.records, self.active

    def highwater(self, tp):
        return 100

    def _to_message(self, tp, record):
        return record

    def assignment(self):
        return {TP0}

    async def seek(self, tp, offset):
        self.sought.append((tp, offset))

    def hand_on(self, getmany) -> list[int]:
        async def run():
            handed = []
            async for tp, message in getmany(self, 1.0):
                handed.append(message.offset)
                if message.offset == self.pause_after:
                    self.active.discard(tp)
            return handed
        return asyncio.run(run())


def test_given_a_partition_paused_while_its_fetch_is_handed_on_then_faust_drops_the_rest_without_a_seek():
    consumer = PausingConsumer([0, 1, 4, 5, 6], pause_after=1)
    assert consumer.hand_on(FaustConsumer.getmany) == [0, 1]
    assert consumer.sought == []  # with nothing committed, 4-6 are never read again


def test_given_a_partition_paused_while_its_fetch_is_handed_on_then_it_is_sought_back_to_the_first_held_back():
    from streams.worker.app import TransactionalConsumer
    consumer = PausingConsumer([0, 1, 4, 5, 6], pause_after=1)
    assert consumer.hand_on(TransactionalConsumer.getmany) == [0, 1]
    assert consumer.sought == [(TP0, 4)]


def test_given_no_pause_then_our_getmany_hands_on_the_whole_fetch_and_seeks_nothing():
    from streams.worker.app import TransactionalConsumer
    consumer = PausingConsumer([0, 1, 4, 5, 6], pause_after=-1)
    assert consumer.hand_on(TransactionalConsumer.getmany) == [0, 1, 4, 5, 6]
    assert consumer.sought == []


def test_given_faust_flow_control_resumes_then_the_records_waiting_in_the_streams_queues_are_gone():
    # The lead, on mode's own code: Faust resumes its flow control right after seeking the sources to
    # their committed offsets, and every resume clears the streams' queues.
    from mode.utils.queues import FlowControlEvent, FlowControlQueue

    async def run():
        flow = FlowControlEvent()
        queue = FlowControlQueue(maxsize=10, flow_control=flow, clear_on_resume=True)
        for offset in range(3):
            queue.put_nowait(offset)
        flow.resume()
        return queue.qsize()
    assert asyncio.run(run()) == 0


class CommittedConsumer:
    """An AIOKafkaConsumer as `_seek_to_committed` reads it."""

    def __init__(self, committed: dict, beginnings: dict):
        self._committed, self._beginnings = committed, beginnings
        self.sought: dict = {}
        self._fetcher = SimpleNamespace(seek_to=lambda tp, offset: self.sought.__setitem__(tp, offset))

    def assignment(self):
        return set(self._committed)

    async def committed(self, tp):
        return self._committed[tp]

    async def beginning_offsets(self, tps):
        return {tp: self._beginnings[tp] for tp in tps}


def test_given_a_source_with_nothing_committed_then_the_seek_to_committed_takes_it_back_to_its_first_record():
    from streams.worker.app import ReadCommittedThread
    commands, replies, changelog = TP("bank.accounts.commands", 2), TP("bank.transfers.replies", 2), TP0
    consumer = CommittedConsumer({commands: 40, replies: None, changelog: None}, {replies: 0, changelog: 0})
    fence = SeekFence()
    thread = SimpleNamespace(_ensure_consumer=lambda: consumer, consumer=SimpleNamespace(
        seek_fence=fence, _is_changelog_tp=lambda tp: tp.topic.endswith("changelog")))
    before = fence.fetched()
    committed = asyncio.run(ReadCommittedThread._seek_to_committed(thread))
    assert committed == {commands: 40, replies: None, changelog: None}
    assert consumer.sought == {commands: 40, replies: 0}  # the changelog is recovery's to seek
    assert fence.overtaken(replies, before) and not fence.overtaken(changelog, before)
