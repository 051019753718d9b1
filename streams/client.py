"""A typed producer of commands, and a reader of their outcomes, on confluent-kafka.

Used by `bank send`, the HTTP API and the tests. Keys are partitioned with murmur2, exactly as
the workers (aiokafka) and the Java client do.
"""
from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Iterable

from .contract import topics
from .contract.avro import Codec, DecodeError
from .config import Settings
from .domain import accounts, customers, transfers
from .domain.base import Command
from .domain.outcomes import CommandOutcome
from .contract.jsonio import new_id
from .kafka.producer import Producer, ProduceError, produce_when_room, producer_config
from .kafka.reader import Reader


@dataclass(frozen=True)
class CommandIds:
    command_id: str
    aggregate_id: str
    command_type: str


class BankClient:
    """One method per command; each returns the command's ids once the command is handed to the producer."""

    def __init__(self, settings: Settings, codec: Codec | None = None, producer: Producer | None = None):
        self.settings = settings
        self.codec = codec or Codec()
        self.producer = producer or Producer(producer_config(settings))
        self._errors: list[str] = []
        self._poller: threading.Thread | None = None
        self._stop = threading.Event()

    # -- generic ------------------------------------------------------------------------------
    def send(self, command: Command, on_delivery=None) -> CommandIds:
        topic = topics.command_topic_for(type(command)).name
        value = self.codec.encode(command)
        callback = on_delivery or self._remember_error
        produce_when_room(self.producer, topic, value=value, key=command.aggregate_id.encode(), on_delivery=callback)
        self.producer.poll(0)
        return CommandIds(command.command_id, command.aggregate_id, type(command).__name__)

    async def send_async(self, command: Command, timeout: float = 30.0) -> CommandIds:
        """Sends and returns once the broker has acknowledged the command (for the HTTP API)."""
        loop = asyncio.get_running_loop()
        delivered = loop.create_future()

        def on_delivery(err, msg):
            def settle():
                if delivered.done():
                    return
                if err is not None:
                    delivered.set_exception(ProduceError(err))
                else:
                    delivered.set_result(None)
            loop.call_soon_threadsafe(settle)

        self._ensure_poller()
        ids = self.send(command, on_delivery=on_delivery)
        await asyncio.wait_for(delivered, timeout)
        return ids

    def flush(self, timeout: float = 30.0) -> None:
        remaining = self.producer.flush(timeout)
        if remaining:
            raise TimeoutError(f"{remaining} commands were not delivered within {timeout}s")
        if self._errors:
            errors, self._errors = self._errors, []
            raise ProduceError(f"{len(errors)} commands failed: {errors[0]}")

    def close(self) -> None:
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout=5)
        self.producer.flush(10)

    def _remember_error(self, err, msg):
        if err is not None:
            self._errors.append(str(err))

    def _ensure_poller(self):
        # Delivery callbacks only run inside poll(); a thread serves them for asyncio callers.
        if self._poller is None:
            def poll_forever():
                while not self._stop.is_set():
                    self.producer.poll(0.05)
            self._poller = threading.Thread(target=poll_forever, name="bank-client-poll", daemon=True)
            self._poller.start()

    # -- one method per command -------------------------------------------------------------
    def create_customer(self, first_name: str, last_name: str, email: str, phone: str | None = None,
                        address: str | None = None, *, customer_id: str | None = None,
                        command_id: str | None = None) -> CommandIds:
        return self.send(customers.CreateCustomer(
            command_id=command_id or new_id(), customer_id=customer_id or new_id(), first_name=first_name,
            last_name=last_name, email=email, phone=phone, address=address))

    def add_to_account(self, customer_id: str, account_id: str, title: str = "", owner: str = "", *,
                       command_id: str | None = None, expected_version: int | None = None) -> CommandIds:
        return self.send(customers.AddToAccount(
            command_id=command_id or new_id(), customer_id=customer_id, account_id=account_id, title=title,
            owner=owner, expected_version=expected_version))

    def remove_to_account(self, customer_id: str, account_id: str, *, command_id: str | None = None,
                          expected_version: int | None = None) -> CommandIds:
        return self.send(customers.RemoveToAccount(
            command_id=command_id or new_id(), customer_id=customer_id, account_id=account_id,
            expected_version=expected_version))

    def forget_customer(self, customer_id: str, *, command_id: str | None = None) -> CommandIds:
        """Erase the customer's personal data for good (its key is deleted); accounts stay."""
        return self.send(customers.ForgetCustomer(command_id=command_id or new_id(), customer_id=customer_id))

    def open_account(self, customer_id: str, title: str, initial_balance: Decimal | str = "0.00",
                     description: str = "", *, account_id: str | None = None,
                     command_id: str | None = None) -> CommandIds:
        return self.send(accounts.OpenAccount(
            command_id=command_id or new_id(), account_id=account_id or new_id(), customer_id=customer_id,
            title=title, description=description, initial_balance=Decimal(initial_balance)))

    def deposit(self, account_id: str, amount: Decimal | str, *, command_id: str | None = None,
                expected_version: int | None = None) -> CommandIds:
        return self.send(accounts.Deposit(command_id=command_id or new_id(), account_id=account_id,
                                          amount=Decimal(amount), expected_version=expected_version))

    def withdraw(self, account_id: str, amount: Decimal | str, *, command_id: str | None = None,
                 expected_version: int | None = None) -> CommandIds:
        return self.send(accounts.Withdraw(command_id=command_id or new_id(), account_id=account_id,
                                           amount=Decimal(amount), expected_version=expected_version))

    def close_account(self, account_id: str, *, command_id: str | None = None,
                      expected_version: int | None = None) -> CommandIds:
        return self.send(accounts.CloseAccount(command_id=command_id or new_id(), account_id=account_id,
                                               expected_version=expected_version))

    def transfer_money(self, from_account_id: str, to_account_id: str, amount: Decimal | str, description: str = "",
                       *, transfer_id: str | None = None, command_id: str | None = None) -> CommandIds:
        return self.send(transfers.TransferMoney(
            command_id=command_id or new_id(), transfer_id=transfer_id or new_id(), from_account_id=from_account_id,
            to_account_id=to_account_id, amount=Decimal(amount), description=description))


class OutcomeReader:
    """Reads `bank.command-outcomes` directly, from the end offsets it saw when created.

    Create it *before* sending, so no outcome can slip past it.
    """

    def __init__(self, settings: Settings, codec: Codec | None = None):
        self.codec = codec or Codec()
        self.reader = Reader(settings, "outcome-reader", 10.0, **{"enable.partition.eof": False})
        name = topics.COMMAND_OUTCOMES.name
        existing = self.reader.topics(name, timeout=10)
        if name not in existing or existing[name].error is not None:
            raise RuntimeError(f"topic {name} does not exist: run `bank topics create`")
        self.reader.assign({(name, partition): self.reader.watermarks(name, partition, timeout=10)[1]
                            for partition in existing[name].partitions})
        self.outcomes: dict[str, CommandOutcome] = {}

    def wait(self, command_ids: Iterable[str], timeout: float = 30.0, progress=None) -> dict[str, CommandOutcome]:
        """The outcomes of `command_ids` seen within `timeout` (missing ones are still pending).

        `progress(n)`, when given, is told how many of them are known after each read."""
        wanted = set(command_ids)
        deadline = time.monotonic() + timeout
        while not wanted <= self.outcomes.keys() and time.monotonic() < deadline:
            if progress is not None:
                progress(len(wanted & self.outcomes.keys()))
            for message in self.reader.poll(1000, timeout=min(0.2, max(0.0, deadline - time.monotonic()))):
                try:
                    outcome = self.codec.decode(message.value())
                except DecodeError:
                    continue
                self.outcomes.setdefault(outcome.command_id, outcome)
        return {cid: self.outcomes[cid] for cid in wanted if cid in self.outcomes}

    def close(self) -> None:
        self.reader.close()
