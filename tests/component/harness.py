"""Harness for the component tests: the real `wire`d agents, run in Faust's test_context (no broker).

Each test gets a fresh app on a fresh event loop: `@scenario` turns an `async def test_...(bank)`
into a plain test that runs it with `asyncio.run` (pytest-asyncio is not used). The `bank` is
built lazily inside that loop, with an in-memory store and a recording emitter instead of the
producer, so every record an agent would send lands in `bank.emitted`.

    @scenario
    async def test_something(bank):
        async with bank.agent("process_account_commands") as agent:
            sent = await agent.put("A", OpenAccount(...))   # records (or raw bytes) in, Outgoing out
            sent = await agent.put("T", reply_bytes, topic="bank.transfers.replies")  # for multi-topic agents
        assert bank.view("account_to_state", "A").balance == ...
"""
from __future__ import annotations

import asyncio
import functools
import inspect
from contextlib import asynccontextmanager
from typing import Any

import pytest

from streams.worker.app import create_app
from streams.worker.wiring import wire
from streams.config import Settings
from streams.services.commands import COMMAND_PREFIX, STATE_PREFIX
from streams.services.handling import Outgoing

NOW = 1_700_000_000_000


class RecordingEmitter:
    """Stands in for the producer: keeps every record an agent asks to send."""

    def __init__(self):
        self.records: list[Outgoing] = []

    async def emit(self, records) -> None:
        self.records.extend(records)


class AgentDriver:
    """Puts records into one running agent and returns what that put emitted."""

    def __init__(self, bank: "Bank", name: str, context):
        self.bank = bank
        self.name = name
        self.context = context

    async def _handled(self, count: int) -> None:
        """Agents take records in batches: Faust's test context answers a put once the record is in
        the agent's stream, so wait until the agent has handled it (and emitted what it makes)."""
        handled = self.bank.pipeline.handled
        while handled[self.name] < count:
            if self.context._crash_reason:
                raise self.context._crash_reason
            await asyncio.sleep(0.001)

    async def put(self, key: str | bytes | None, value: Any, *, topic: str | None = None) -> list[Outgoing]:
        """`topic` names the source topic the record seems to come from; without it, Faust names the
        agent's one topic, or `<internal>` for an agent that reads several."""
        raw_key = key.encode() if isinstance(key, str) else key
        if value is None:  # a tombstone
            raw_value = None
        else:
            raw_value = bytes(value if isinstance(value, (bytes, bytearray)) else self.bank.codec.encode(value))
        before = len(self.bank.emitted)
        count = self.bank.pipeline.handled[self.name] + 1
        if topic is None:
            await self.context.put(key=raw_key, value=raw_value)
        else:
            to_message = self.context.to_message

            def from_topic(*args, **kwargs):
                message = to_message(*args, **kwargs)
                message.topic = topic
                return message

            self.context.to_message = from_topic
            try:
                await self.context.put(key=raw_key, value=raw_value)
            finally:
                del self.context.to_message
        await self._handled(count)
        return self.bank.emitted[before:]


class Bank:
    """One wired pipeline (built on first use, inside the running loop)."""

    def __init__(self, tmp_path):
        self.settings = Settings(home=tmp_path)
        self.emitter = RecordingEmitter()
        self._pipeline = None

    @property
    def pipeline(self):
        if self._pipeline is None:
            app = create_app(self.settings, store="memory://")
            self._pipeline = wire(app, self.settings, emitter=self.emitter, web=False)
            app.finalize()
        return self._pipeline

    @property
    def codec(self):
        return self.pipeline.codec

    @property
    def emitted(self) -> list[Outgoing]:
        return self.emitter.records

    @asynccontextmanager
    async def agent(self, name: str):
        async with self.pipeline.agents[name].test_context() as context:
            yield AgentDriver(self, name, context)

    def raw(self, table: str, key: str) -> bytes | None:
        """`table[key]`; a command processor's state and dedup records share one table under prefixes,
        named here as they read: `account_to_state` and `account_command_to_result`."""
        if table in LEDGERS:
            return self.pipeline.tables[table].get(STATE_PREFIX + key)
        if table.endswith("_command_to_result"):
            return self.pipeline.tables[LEDGER_OF[table]].get(COMMAND_PREFIX + key)
        return self.pipeline.tables[table].get(key)

    def view(self, table: str, key: str):
        """The decoded value of `table[key]`, or None."""
        data = self.raw(table, key)
        return None if data is None else self.codec.decode(data)

    def decode(self, record: Outgoing):
        return self.codec.decode(record.value)


LEDGERS = {"customer_to_state", "account_to_state", "transfer_to_state", "email_to_reservation"}
LEDGER_OF = {"customer_command_to_result": "customer_to_state", "account_command_to_result": "account_to_state",
             "transfer_command_to_result": "transfer_to_state", "email_command_to_result": "email_to_reservation"}


@pytest.fixture
def bank(tmp_path) -> Bank:
    return Bank(tmp_path)


def scenario(test):
    """Runs an `async def` test on a fresh event loop with `asyncio.run`."""
    assert inspect.iscoroutinefunction(test), f"{test.__name__} must be async"

    @functools.wraps(test)
    def run(*args, **kwargs):
        asyncio.run(asyncio.wait_for(test(*args, **kwargs), timeout=30))
    return run
