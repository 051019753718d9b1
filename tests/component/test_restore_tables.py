"""Tables brought to their changelogs' end: every partition assigned, before anything runs
(`restore_tables`), and a restarted task's before its first batch (`Transactions.catch_up`)."""
from __future__ import annotations

from types import SimpleNamespace

from faust.types import TP

from harness import scenario
from streams.contract import topics
from streams.worker.pipeline import Batch, restore_tables

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

    async def catch_up(self, agent, partition, applied, apply):
        self.asked.append((agent, partition, applied))
        self.done.add((agent, partition))
        changelog = next(iter(applied))
        if self.tail:
            apply(changelog, self.tail)
        return {changelog: len(self.tail)}

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


class Restoring:
    """The transactions' side of restore_tables: what was asked, and a changelog tail to hand back."""

    def __init__(self, tails):
        self.tails = tails
        self.asked: dict = {}
        self.restored_partitions: set = set()

    async def restore(self, applied, apply, still_wanted):
        self.asked = dict(applied)
        for where, records in self.tails.items():
            apply(where, records)
        return {where: len(self.tails.get(where, ())) for where in applied}

    def restored(self, partitions):
        self.restored_partitions |= set(partitions)

    async def topic_ids(self, names, still_wanted):
        return {name: f"id-of-{name}" for name in names}


@scenario
async def test_given_partitions_assigned_then_their_tables_are_restored_to_the_changelogs_end_before_anything_runs(bank):
    state = bank.pipeline.writers[STATE]
    transactions = Restoring({(state.changelog, 2): [(4, b"state:A", b"a1"), (9, b"state:A", b"a2")]})
    actives = {TP(state.changelog, 2), TP(topics.ACCOUNT_COMMANDS.name, 2)}  # a source partition is not a table

    await restore_tables(bank.pipeline.writers.values(), transactions, actives, lambda: True)

    assert transactions.asked == {(state.changelog, 2): None}
    assert transactions.restored_partitions == {2}
    assert bank.pipeline.tables[STATE].get("state:A") == b"a2"
