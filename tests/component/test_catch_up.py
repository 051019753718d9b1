"""Before a task's first batch its tables are read forward to the end of their changelogs
(`Transactions.catch_up`), whatever Faust's recovery left: the batch then decides on current state."""
from __future__ import annotations

from types import SimpleNamespace

from harness import scenario
from streams.contract import topics
from streams.worker.pipeline import Batch

ACCOUNTS = "process_account_commands"
STATE = "account_to_state"


class BehindSink:
    """A sink whose task has not caught up yet; its changelog holds `tail` past the local table."""

    def __init__(self, tail):
        self.tail = tail
        self.asked: list = []
        self.done: set = set()
        self.committed: list = []

    def needs_catch_up(self, agent, partition):
        return (agent, partition) not in self.done

    async def catch_up(self, agent, partition, applied):
        self.asked.append((agent, partition, applied))
        self.done.add((agent, partition))
        changelog = next(iter(applied))
        return {changelog: self.tail}

    def accepts(self, agent, topic, partition, offset):
        return True

    async def commit(self, agent, effects):
        self.committed.extend(effects)
        return effects


def command(offset: int):
    message = SimpleNamespace(topic=topics.ACCOUNT_COMMANDS.name, partition=1, offset=offset, timestamp=0)
    return SimpleNamespace(message=message, key=b"A", value=b"a command")


@scenario
async def test_given_a_table_behind_its_changelog_when_the_first_batch_comes_then_it_decides_on_the_changelogs_end(bank):
    pipeline = bank.pipeline
    state = pipeline.writers[STATE]
    seen = []

    def handle(key, value, origin):
        seen.append(state.get("state:A"))
        return []
    sink = BehindSink([(7, b"state:A", b"v1"), (8, b"state:A", b"v2"), (9, b"state:B", b"b1")])
    batch = Batch(pipeline, ACCOUNTS, handle, [state], sink)

    await batch.run([command(0)])

    assert seen == [b"v2"]  # the changelog's last value, not the (empty) local table's
    assert [(agent, partition) for agent, partition, _ in sink.asked] == [(ACCOUNTS, 1)]
    assert sink.asked[0][2] == {state.changelog: None}  # the in-memory table holds no offset: from the start
    assert pipeline.tables[STATE].get("state:B") == b"b1"


@scenario
async def test_given_a_task_caught_up_when_more_batches_come_then_its_changelogs_are_not_read_again(bank):
    pipeline = bank.pipeline
    state = pipeline.writers[STATE]
    sink = BehindSink([])
    batch = Batch(pipeline, ACCOUNTS, lambda key, value, origin: [], [state], sink)

    await batch.run([command(0)])
    await batch.run([command(1)])

    assert len(sink.asked) == 1
    assert [effect.offsets for effect in sink.committed] == [{topics.ACCOUNT_COMMANDS.name: 1},
                                                            {topics.ACCOUNT_COMMANDS.name: 2}]
