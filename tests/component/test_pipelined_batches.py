"""An agent handles its next batch while the last one commits (`Batch.run_pipelined`): it decides on
the writes in flight, commits in order, and a batch that did not commit takes the writes decided on
it with it."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

from harness import scenario
from streams.contract import topics
from streams.worker.pipeline import Batch

ACCOUNTS = "process_account_commands"
STATE = "account_to_state"


class Task:
    """A partition's owner as the transactions hand it out (truthy)."""


class GatedSink:
    """Transactions whose commits wait for the test: each commit waits on its gate, then commits
    unless told to fail; a failed commit restarts the partition's task (a new owner), as
    `Transactions` does, and effects of an owner since replaced are dropped."""

    def __init__(self):
        self.task = Task()
        self.gates: list[asyncio.Event] = []
        self.failing: set[int] = set()  # which commits (0, 1, ...) fail
        self.started: list = []
        self.committed: list = []

    def accepts(self, agent, topic, partition, offset):
        return self.task

    def owns(self, agent, partition, owner):
        return owner is self.task

    def needs_catch_up(self, agent, partition):
        return False

    async def commit(self, agent, effects):
        number = len(self.started)
        self.started.append(effects)
        self.gates.append(asyncio.Event())
        await self.gates[number].wait()
        if number in self.failing:
            self.task = Task()
            return []
        done = [effect for effect in effects if effect.owner is self.task]
        self.committed.append(done)
        return done

    async def until_started(self, count: int) -> None:
        await eventually(lambda: len(self.started) >= count)

    def release(self, number: int) -> None:
        while len(self.gates) <= number:
            self.gates.append(asyncio.Event())
        self.gates[number].set()


def command(offset: int):
    message = SimpleNamespace(topic=topics.ACCOUNT_COMMANDS.name, partition=1, offset=offset, timestamp=0)
    return SimpleNamespace(message=message, key=b"A", value=b"a command")


class Feed:
    """The batches an agent is handed, put in by the test."""

    def __init__(self):
        self.queue: asyncio.Queue = asyncio.Queue()

    def __aiter__(self):
        return self

    async def __anext__(self):
        events = await self.queue.get()
        if events is None:
            raise StopAsyncIteration
        return events


def counting(state, seen):
    """A handler that counts its records in state:A, noting what it read."""

    def handle(key, value, origin):
        count = int(state.get("state:A") or b"0")
        seen.append(count)
        state["state:A"] = str(count + 1).encode()
        return []
    return handle


async def eventually(condition, timeout: float = 5.0) -> None:
    async def poll():
        while not condition():
            await asyncio.sleep(0.001)
    await asyncio.wait_for(poll(), timeout)


async def handled(pipeline, count):
    await eventually(lambda: pipeline.handled[ACCOUNTS] >= count)


@scenario
async def test_given_a_batch_committing_when_the_next_comes_then_it_is_handled_on_the_writes_in_flight(bank):
    pipeline = bank.pipeline
    state = pipeline.writers[STATE]
    seen: list = []
    sink, feed = GatedSink(), Feed()
    running = asyncio.ensure_future(Batch(pipeline, ACCOUNTS, counting(state, seen), [state], sink).run_pipelined(feed))

    feed.queue.put_nowait([command(0)])
    await sink.until_started(1)
    feed.queue.put_nowait([command(1)])
    await eventually(lambda: len(seen) >= 2)
    assert seen == [0, 1]  # batch 2 saw batch 1's write before batch 1 committed
    assert len(sink.started) == 1  # and waits for it before committing
    assert pipeline.tables[STATE].get("state:A") is None  # nothing on disk before a commit

    sink.release(0)
    await sink.until_started(2)
    assert pipeline.tables[STATE].get("state:A") == b"1"
    sink.release(1)
    feed.queue.put_nowait(None)
    await asyncio.wait_for(running, 5)
    assert pipeline.tables[STATE].get("state:A") == b"2"
    assert [effect.offsets for (effect,) in sink.committed] == [{topics.ACCOUNT_COMMANDS.name: 1},
                                                               {topics.ACCOUNT_COMMANDS.name: 2}]


@scenario
async def test_given_a_batch_that_does_not_commit_then_the_batch_decided_on_it_is_neither_committed_nor_applied(bank):
    pipeline = bank.pipeline
    state = pipeline.writers[STATE]
    seen: list = []
    sink, feed = GatedSink(), Feed()
    sink.failing.add(0)
    running = asyncio.ensure_future(Batch(pipeline, ACCOUNTS, counting(state, seen), [state], sink).run_pipelined(feed))

    feed.queue.put_nowait([command(0)])
    await sink.until_started(1)
    feed.queue.put_nowait([command(1)])
    await eventually(lambda: len(seen) >= 2)
    sink.release(0)  # batch 1 fails: its task restarts
    sink.release(1)
    await handled(pipeline, 2)
    assert sink.committed == [[]]  # batch 2 belonged to the replaced task: dropped, not committed
    assert pipeline.tables[STATE].get("state:A") is None

    feed.queue.put_nowait([command(0)])  # read again by the new task
    await eventually(lambda: len(seen) >= 3)
    assert seen[2] == 0  # decided on committed state, not on the dropped batches
    sink.release(2)
    feed.queue.put_nowait(None)
    await asyncio.wait_for(running, 5)
    assert pipeline.tables[STATE].get("state:A") == b"1"


@scenario
async def test_given_a_partition_that_moved_while_its_batch_committed_then_the_batch_is_not_applied_locally(bank):
    pipeline = bank.pipeline
    state = pipeline.writers[STATE]
    sink, feed = GatedSink(), Feed()
    running = asyncio.ensure_future(Batch(pipeline, ACCOUNTS, counting(state, []), [state], sink).run_pipelined(feed))

    feed.queue.put_nowait([command(0)])
    await sink.until_started(1)
    committed_owner = sink.task
    sink.owns = lambda agent, partition, owner: False  # revoked and restored elsewhere meanwhile
    sink.release(0)
    await handled(pipeline, 1)
    feed.queue.put_nowait(None)
    await asyncio.wait_for(running, 5)
    assert [effect.owner for effect in sink.committed[0]] == [committed_owner]
    assert pipeline.tables[STATE].get("state:A") is None  # its changelog restores it, not a stale apply
