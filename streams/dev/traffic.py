"""Workloads for tests and benchmarks: accounts to start from and storms of random transfers."""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from decimal import Decimal

from ..cli import progress
from ..client import BankClient, CommandIds, OutcomeReader
from ..domain.transfers import TransferMoney
from ..contract.jsonio import new_id


@dataclass
class Ledger:
    """What a workload set up: the accounts and the money it started with."""

    customer_id: str
    account_ids: list[str]
    initial: dict[str, Decimal]
    transfers: list[str] = field(default_factory=list)

    @property
    def total(self) -> Decimal:
        return sum(self.initial.values(), Decimal("0.00"))


def open_accounts(client: BankClient, reader: OutcomeReader, customer_id: str, count: int, *,
                  seed: int = 7, zero_every: int = 0, timeout: float = 60.0) -> Ledger:
    """Opens `count` accounts with random balances (every `zero_every`-th at 0.00) and waits for them."""
    rng = random.Random(seed)
    initial = {}
    sent: list[CommandIds] = []
    with progress.bar(count, "opening accounts") as shown:
        for index in range(count):
            balance = Decimal("0.00") if zero_every and index % zero_every == 0 else \
                Decimal(rng.randint(0, 100_000)).scaleb(-2)
            account_id = f"acc-{new_id()}"
            sent.append(client.open_account(customer_id, f"account {index}", balance, account_id=account_id))
            initial[account_id] = balance
            shown.tick()
        client.flush()
    with progress.bar(count, "waiting for the accounts") as shown:
        outcomes = reader.wait([ids.command_id for ids in sent], timeout, progress=shown.set)
    refused = [o for o in outcomes.values() if o.status != "ACCEPTED"]
    if len(outcomes) != count or refused:
        raise RuntimeError(f"{count - len(outcomes)} accounts pending, {len(refused)} refused")
    return Ledger(customer_id, list(initial), initial)


def transfer_storm(client: BankClient, ledger: Ledger, count: int, *, seed: int = 11, rate: float | None = None,
                   sources: list[str] | None = None, targets: list[str] | None = None,
                   max_amount: int = 20_000, flush_timeout: float = 30.0) -> list[TransferMoney]:
    """`count` random transfers from `sources` to `targets` (default: all the ledger's accounts), at most
    `rate` per second, all delivered within `flush_timeout` seconds of the last send.

    Amounts go up to `max_amount` cents, so some overdraw their source and fail.
    """
    rng = random.Random(seed)
    sources = sources or ledger.account_ids
    destinations = targets or ledger.account_ids
    sent = []
    started = time.monotonic()
    with progress.bar(count, "sending transfers", every=max(1, count // 200)) as shown:
        for index in range(count):
            shown.tick()
            source = rng.choice(sources)
            target = rng.choice(destinations)
            while target == source:
                target = rng.choice(destinations)
            amount = Decimal(rng.randint(1, max_amount)).scaleb(-2)
            command = TransferMoney(command_id=new_id(), transfer_id=f"tr-{new_id()}", from_account_id=source,
                                    to_account_id=target, amount=amount, description=f"storm {index}")
            client.send(command)
            ledger.transfers.append(command.transfer_id)
            sent.append(command)
            if rate:
                ahead = (index + 1) / rate - (time.monotonic() - started)
                if ahead > 0:
                    client.producer.poll(0)
                    time.sleep(ahead)
        client.flush(flush_timeout)
    return sent


def resend_unanswered(client: BankClient, reader: OutcomeReader, commands: list, *, patience: float = 30.0,
                      rounds: int = 3) -> int:
    """What a careful client does: wait for every outcome, send again (same ids) what got none.

    Returns how many commands had to be sent again; duplicates take effect once by design.
    """
    resent = 0
    for _ in range(rounds):
        answered = reader.wait([c.command_id for c in commands], timeout=patience)
        missing = [c for c in commands if c.command_id not in answered]
        if not missing:
            break
        for command in missing:
            client.send(command)
        client.flush()
        resent += len(missing)
    return resent
