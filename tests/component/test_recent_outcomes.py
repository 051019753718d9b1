"""A POST's `?wait=` answers from the outcomes this worker's processors committed (RecentOutcomes),
not only from the outcome view a hop and a transaction later."""
from __future__ import annotations

import asyncio
from decimal import Decimal
from types import SimpleNamespace

from harness import scenario
from streams.contract import topics
from streams.domain.accounts import OpenAccount
from streams.domain.outcomes import ACCEPTED
from streams.services.handling import Outgoing
from streams.worker.pipeline import Batch, OUTCOME_TABLE, RecentOutcomes

ACCOUNTS = "process_account_commands"


def open_account(command_id: str) -> OpenAccount:
    return OpenAccount(command_id=command_id, account_id="A", customer_id="C", title="Checking",
                       initial_balance=Decimal("5.00"))


@scenario
async def test_given_a_processor_batch_committed_then_its_outcome_is_known_before_the_outcome_view_has_it(bank):
    async with bank.agent(ACCOUNTS) as agent:
        await agent.put("A", open_account("open-1"))

    outcome = bank.codec.decode(bank.pipeline.recent_outcomes.get("open-1"))
    assert (outcome.command_id, outcome.status, outcome.version) == ("open-1", ACCEPTED, 1)
    assert bank.pipeline.tables["command_to_outcome"].get("open-1") is None  # the view agent did not run


@scenario
async def test_given_a_waiter_on_the_outcome_when_the_processor_commits_then_it_is_woken(bank):
    waiting = asyncio.ensure_future(bank.pipeline.waiters.changed(OUTCOME_TABLE, "open-1", timeout=5.0))
    await asyncio.sleep(0)
    async with bank.agent(ACCOUNTS) as agent:
        await agent.put("A", open_account("open-1"))
    assert await waiting is True


class CommitsNothing:
    """A sink whose transactions all fail (fenced, or aborted)."""

    def accepts(self, agent, topic, partition, offset):
        return True

    def needs_catch_up(self, agent, partition):
        return False

    async def commit(self, agent, effects):
        return []


@scenario
async def test_given_a_batch_whose_transaction_did_not_commit_then_its_outcomes_are_not_known(bank):
    def handle(key, value, origin):
        return [Outgoing(topics.COMMAND_OUTCOMES.name, "open-2", b"outcome bytes")]
    pipeline = bank.pipeline
    processor_batch = Batch(pipeline, ACCOUNTS, handle, [], CommitsNothing(), answers=True)
    message = SimpleNamespace(topic=topics.ACCOUNT_COMMANDS.name, partition=0, offset=0, timestamp=0)
    await processor_batch.run([SimpleNamespace(message=message, key=b"A", value=b"a command")])
    assert pipeline.recent_outcomes.get("open-2") is None


def test_given_more_outcomes_than_it_holds_then_the_oldest_go_first():
    recent = RecentOutcomes(size=2)
    for command_id in ("c1", "c2", "c3"):
        recent.add(command_id, command_id.encode())
    assert (recent.get("c1"), recent.get("c2"), recent.get("c3")) == (None, b"c2", b"c3")


def test_given_many_more_outcomes_than_it_holds_then_it_keeps_exactly_the_newest():
    recent = RecentOutcomes(size=100)
    for index in range(10_000):
        recent.add(f"c{index}", b"%d" % index)
    assert recent.get("c9899") is None and recent.get("c9900") == b"9900" and recent.get("c9999") == b"9999"
    assert len(recent._by_command) == 100
