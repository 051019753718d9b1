"""The check from outside: what any consumer of the log and any user of the HTTP API can see.

Independent of `bank verify` (streams/ops/verify.py) on purpose, so that the fault tests do not judge the
workers with the code they judge `bank verify` with: its own read of the topics (confluent-kafka,
`isolation.level=read_committed`, no consumer group, from the first offset to the end seen at start),
its own fold of the events, and the HTTP views compared with that fold. Shared by the fault tests
(test_zombie_sigstop, test_churn, test_customers_crash_loop); nothing here restarts or heals anything.

Every check returns violations as strings (an empty list when all hold) so that a test can report all
it found, not only the first.
"""
from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Iterable

import httpx
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from streams.contract import topics
from streams.contract.avro import Codec, DecodeError
from streams.kafka.reader import fatal_read_error
from streams.config import Settings
from streams.domain.accounts import (
    AccountClosed,
    AccountCredited,
    AccountDebited,
    AccountOpened,
    AccountRefunded,
    MoneyDeposited,
    MoneyWithdrawn,
)
from streams.domain.base import Event
from streams.domain.customers import CustomerCreated, CustomerForgotten, ToAccountAdded, ToAccountRemoved
from streams.domain.outcomes import CommandOutcome
from streams.domain.transfers import (
    TransferCompleted,
    TransferCreditFailed,
    TransferDebited,
    TransferFailed,
    TransferInitiated,
    TransferRefunded,
)

ZERO = Decimal("0.00")
TERMINAL = ("COMPLETED", "FAILED", "REFUNDED")  # spelled here: no state names borrowed from the domain
EVENT_TOPICS = [spec.name for spec in topics.EVENT_TOPICS]
OUTCOMES = topics.COMMAND_OUTCOMES.name


# Reading the log --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Rec:
    topic: str
    partition: int
    offset: int
    key: str | None
    value: Any  # the decoded record; None for a tombstone or when undecodable (then `error` says why)
    error: str | None = None

    @property
    def where(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


def read_committed(settings: Settings, names: Iterable[str], *, timeout: float = 60.0) -> dict[str, list[Rec]]:
    """Every record of `names`, partition by partition in offset order, as a read_committed consumer
    sees them: aborted and fenced writes never show. Stops at the end offsets seen at start.

    Fails (AssertionError) when the read does not get there in `timeout`: a read_committed consumer
    cannot pass an open transaction, so a zombie's transaction left hanging shows up here."""
    names = list(names)
    codec = Codec()
    consumer = Consumer(settings.confluent_config(**{
        "group.id": f"faults-outside-{uuid.uuid4().hex}", "isolation.level": "read_committed",
        "enable.auto.commit": False, "enable.auto.offset.store": False, "auto.offset.reset": "earliest",
        "enable.partition.eof": False}))
    out: dict[str, list[Rec]] = {name: [] for name in names}
    deadline = time.monotonic() + timeout
    try:
        metadata = consumer.list_topics(timeout=15)
        ends: dict[tuple[str, int], int] = {}
        for name in names:
            assert name in metadata.topics and metadata.topics[name].error is None, f"topic {name} is missing"
            for partition in metadata.topics[name].partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(name, partition), timeout=15, cached=False)
                if high > low:
                    ends[(name, partition)] = high
        pending = dict(ends)
        received: dict[tuple[str, int], list[Rec]] = defaultdict(list)
        if pending:
            consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in pending])
        while pending:
            if time.monotonic() > deadline:
                positions = {f"{tp.topic}[{tp.partition}]": (tp.offset, ends[(tp.topic, tp.partition)])
                             for tp in consumer.position([TopicPartition(t, p) for t, p in pending])}
                raise AssertionError(f"a read_committed read did not reach the end offsets within {timeout:g}s "
                                     f"(an open transaction holds it back?): (position, end) {positions}")
            messages = consumer.consume(num_messages=5000, timeout=0.5)
            for message in messages:
                error = message.error()
                if error is not None:
                    if fatal_read_error(error):
                        raise AssertionError(f"reading {message.topic()}: {error}")
                    continue
                where = (message.topic(), message.partition())
                if where not in pending or message.offset() >= ends[where]:
                    continue
                key = message.key().decode("utf-8", "replace") if message.key() is not None else None
                value, problem = None, None
                if message.value() is not None:
                    try:
                        value = codec.decode(message.value())
                    except DecodeError as exc:
                        problem = str(exc)
                received[where].append(Rec(where[0], where[1], message.offset(), key, value, problem))
                if message.offset() + 1 >= ends[where]:
                    del pending[where]
            if pending and not messages:  # transaction markers (or aborted records) may end a partition
                for tp in consumer.position([TopicPartition(t, p) for t, p in pending]):
                    if tp.offset >= ends[(tp.topic, tp.partition)]:
                        pending.pop((tp.topic, tp.partition), None)
        for (name, partition) in sorted(received):
            out[name].extend(received[(name, partition)])
        return out
    finally:
        consumer.close()


def end_offsets(admin: AdminClient) -> dict[tuple[str, int], int]:
    """The end offset of every partition of every topic but Kafka's own (`__*`)."""
    metadata = admin.list_topics(timeout=10)
    wanted = [TopicPartition(name, p) for name, t in metadata.topics.items() if not name.startswith("__")
              for p in t.partitions]
    futures = admin.list_offsets({tp: OffsetSpec.latest() for tp in wanted}, request_timeout=10)
    return {(tp.topic, tp.partition): future.result().offset for tp, future in futures.items()}


# Folding the events -------------------------------------------------------------------------------

def _same(a: Event, b: Event) -> bool:
    """The same event written again (a re-emission): equal in everything but when it was written."""
    return dataclasses.replace(a, occurred_at=0) == dataclasses.replace(b, occurred_at=0)


@dataclass
class Account:
    customer_id: str
    balance: Decimal
    version: int
    status: str = "OPEN"


@dataclass
class Transfer:
    from_account_id: str
    to_account_id: str
    amount: Decimal
    state: str
    reason: str | None
    version: int


@dataclass
class Customer:
    version: int
    to_accounts: list[tuple[str, str, str]] = field(default_factory=list)
    forgotten: bool = False


@dataclass
class Fold:
    """The log folded from outside, each (aggregate, version) once."""

    accounts: dict[str, Account] = field(default_factory=dict)
    transfers: dict[str, Transfer] = field(default_factory=dict)
    customers: dict[str, Customer] = field(default_factory=dict)
    #: command id → the (topic, aggregate, version, event type) of every event in effect that it caused
    effects: dict[str, list[tuple[str, str, int, str]]] = field(default_factory=lambda: defaultdict(list))
    totals: Counter = field(default_factory=Counter)  # initial, deposits, withdrawals (Decimals)
    events: int = 0
    re_emissions: int = 0
    violations: list[str] = field(default_factory=list)

    @property
    def total_balance(self) -> Decimal:
        return sum((a.balance for a in self.accounts.values()), ZERO)

    def deposits_of(self, command_id: str) -> list[tuple[str, int]]:
        """(account, version) of each MoneyDeposited in effect caused by `command_id`."""
        return [(aggregate, version) for topic, aggregate, version, kind in self.effects.get(command_id, ())
                if kind == "MoneyDeposited"]


def in_effect(records: list[Rec], violations: list[str]) -> dict[str, list[tuple[Event, Rec]]]:
    """Per aggregate, its events in version order, each version once. A version held by two different
    events, versions that are not 1..n, or out of order in the log, or one event id at two versions,
    are violations; the same event written twice (same id and content) is not."""
    first: dict[str, dict[int, tuple[Event, Rec]]] = defaultdict(dict)
    order: dict[str, list[int]] = defaultdict(list)
    event_ids: dict[tuple[str, str], tuple[int, Rec]] = {}
    for record in records:
        event = record.value
        if record.error is not None or not isinstance(event, Event):
            violations.append(f"not an event at {record.where} (key {record.key}): "
                              f"{record.error or type(event).__name__}")
            continue
        aggregate = event.aggregate_id
        seen = first[aggregate].get(event.version)
        if seen is None:
            first[aggregate][event.version] = (event, record)
            order[aggregate].append(event.version)
            other = event_ids.get((aggregate, event.event_id))
            if other is not None:
                violations.append(f"{aggregate}: event {event.event_id} (command {event.command_id}) in effect "
                                  f"twice, at v{other[0]} ({other[1].where}) and v{event.version} ({record.where})")
            else:
                event_ids[(aggregate, event.event_id)] = (event.version, record)
        elif not (seen[0].event_id == event.event_id and _same(seen[0], event)):
            violations.append(f"{aggregate} v{event.version}: two different events: {type(seen[0]).__name__} "
                              f"{seen[0].event_id} ({seen[1].where}) and {type(event).__name__} {event.event_id} "
                              f"({record.where})")
    result = {}
    for aggregate, versions in order.items():
        if sorted(versions) != list(range(1, len(versions) + 1)):
            violations.append(f"{aggregate}: versions are not 1..n: {sorted(versions)[:5]}... up to v{max(versions)}, "
                              f"{len(versions)} in all")
        elif versions != sorted(versions):
            violations.append(f"{aggregate}: versions out of order in the log")
        result[aggregate] = [first[aggregate][v] for v in sorted(versions)]
    return result


def fold(log: dict[str, list[Rec]]) -> Fold:
    """Folds the event topics in `log` (as `read_committed` returns them)."""
    result = Fold()
    bad = result.violations.append
    per_topic: dict[str, dict[str, list[tuple[Event, Rec]]]] = {}
    for topic in EVENT_TOPICS:
        records = log.get(topic, [])
        result.events += len(records)
        per_topic[topic] = in_effect(records, result.violations)
        result.re_emissions += len(records) - sum(len(v) for v in per_topic[topic].values())
        for aggregate, events in per_topic[topic].items():
            for event, _ in events:
                result.effects[event.command_id].append((topic, aggregate, event.version, type(event).__name__))

    legs: dict[str, list[tuple[str, str, Decimal]]] = defaultdict(list)  # transfer → (kind, account, amount)
    for account_id, events in per_topic[topics.ACCOUNT_EVENTS.name].items():
        account = None
        for event, record in events:
            what = f"account {account_id} v{event.version} {type(event).__name__} ({record.where})"
            if isinstance(event, AccountOpened):
                if account is not None:
                    bad(f"{what}: opened twice")
                    continue
                account = Account(event.customer_id, event.initial_balance, event.version)
                result.totals["initial"] += event.initial_balance
                continue
            if account is None:
                bad(f"{what}: the account was never opened")
                break
            account.version = event.version
            if isinstance(event, AccountClosed):
                account.status = "CLOSED"
                continue
            if isinstance(event, MoneyDeposited):
                account.balance += event.amount
                result.totals["deposits"] += event.amount
            elif isinstance(event, MoneyWithdrawn):
                account.balance -= event.amount
                result.totals["withdrawals"] += event.amount
            elif isinstance(event, AccountDebited):
                account.balance -= event.amount
            elif isinstance(event, (AccountCredited, AccountRefunded)):
                account.balance += event.amount
            if isinstance(event, (AccountDebited, AccountCredited, AccountRefunded)):
                legs[event.transfer_id].append((type(event).__name__, account_id, event.amount))
            if event.balance != account.balance:
                bad(f"{what}: says balance {event.balance}, the fold has {account.balance}")
            if account.balance < 0:
                bad(f"{what}: negative balance {account.balance}")
        if account is not None:
            result.accounts[account_id] = account

    for transfer_id, events in per_topic[topics.TRANSFER_EVENTS.name].items():
        transfer = None
        for event, record in events:
            if isinstance(event, TransferInitiated):
                transfer = Transfer(event.from_account_id, event.to_account_id, event.amount, "INITIATED", None,
                                    event.version)
                continue
            if transfer is None:
                bad(f"transfer {transfer_id} v{event.version} ({record.where}): never initiated")
                break
            transfer.version = event.version
            if isinstance(event, TransferDebited):
                transfer.state = "DEBITED"
            elif isinstance(event, TransferCompleted):
                transfer.state = "COMPLETED"
            elif isinstance(event, TransferFailed):
                transfer.state, transfer.reason = "FAILED", event.reason
            elif isinstance(event, TransferCreditFailed):
                transfer.reason = event.reason
            elif isinstance(event, TransferRefunded):
                transfer.state = "REFUNDED"
        if transfer is not None:
            result.transfers[transfer_id] = transfer

    # Each transfer's account legs, once each: what its final state says happened, nothing more.
    wanted_legs = {"COMPLETED": Counter(AccountDebited=1, AccountCredited=1), "FAILED": Counter(),
                   "REFUNDED": Counter(AccountDebited=1, AccountRefunded=1)}
    in_transit = ZERO
    for transfer_id, transfer in result.transfers.items():
        mine = legs.get(transfer_id, [])
        for kind, account_id, amount in mine:
            where = transfer.to_account_id if kind == "AccountCredited" else transfer.from_account_id
            if account_id != where or amount != transfer.amount:
                bad(f"transfer {transfer_id}: {kind} of {amount} on {account_id}, not {transfer.amount} on {where}")
        if transfer.state in wanted_legs:
            if Counter(kind for kind, _, _ in mine) != wanted_legs[transfer.state]:
                bad(f"transfer {transfer_id} is {transfer.state} but its account legs are "
                    f"{sorted(kind for kind, _, _ in mine)}")
        else:
            in_transit += sum((a if k == "AccountDebited" else -a for k, _, a in mine), ZERO)
    for transfer_id in legs.keys() - result.transfers.keys():
        bad(f"account legs of transfer {transfer_id}, which was never initiated")
    result.totals["in_transit"] = in_transit

    expected = result.totals["initial"] + result.totals["deposits"] - result.totals["withdrawals"] - in_transit
    if result.total_balance != expected:
        bad(f"money not conserved: the accounts hold {result.total_balance}; initial {result.totals['initial']} "
            f"+ deposits {result.totals['deposits']} - withdrawals {result.totals['withdrawals']} - in transit "
            f"{in_transit} = {expected}")

    for customer_id, events in per_topic[topics.CUSTOMER_EVENTS.name].items():
        customer = None
        for event, record in events:
            if isinstance(event, CustomerCreated):
                if customer is not None:
                    bad(f"customer {customer_id} v{event.version} ({record.where}): created twice")
                    continue
                customer = Customer(event.version)
                continue
            if customer is None:
                bad(f"customer {customer_id} v{event.version} ({record.where}): never created")
                break
            customer.version = event.version
            if isinstance(event, ToAccountAdded):
                customer.to_accounts.append((event.account_id, event.title, event.owner))
            elif isinstance(event, ToAccountRemoved):
                customer.to_accounts = [a for a in customer.to_accounts if a[0] != event.account_id]
            elif isinstance(event, CustomerForgotten):
                customer.forgotten = True
        if customer is not None:
            result.customers[customer_id] = customer
    return result


# Outcomes -----------------------------------------------------------------------------------------

def outcome_key(outcome: CommandOutcome) -> tuple:
    """What makes two outcome records different outcomes (not when they were written)."""
    return (outcome.status, outcome.reason, outcome.version, outcome.aggregate_id)


def outcomes_in(records: list[Rec], violations: list[str]) -> dict[str, set[tuple]]:
    """command id → its distinct outcomes on bank.command-outcomes."""
    found: dict[str, set[tuple]] = defaultdict(set)
    for record in records:
        if record.error is not None or not isinstance(record.value, CommandOutcome):
            violations.append(f"not an outcome at {record.where}: {record.error or type(record.value).__name__}")
            continue
        found[record.value.command_id].add(outcome_key(record.value))
    return found


def one_outcome_each(outcomes: dict[str, set[tuple]], command_ids: Iterable[str]) -> list[str]:
    """Every command has exactly one distinct outcome, and no command in the log has two."""
    violations = []
    for command_id in command_ids:
        if not outcomes.get(command_id):
            violations.append(f"command {command_id} has no outcome")
    for command_id, distinct in outcomes.items():
        if len(distinct) > 1:
            violations.append(f"command {command_id} has {len(distinct)} different outcomes: {sorted(map(str, distinct))}")
    return violations


class OutcomeTail:
    """Follows bank.command-outcomes in a thread from the end it sees when created (create it before
    sending), noting when each command's first outcome arrived and every distinct outcome seen.

    `also` names more topics to follow (command topics): `seen` then holds when a record with each
    command id first appeared there (e.g. the ReserveEmail a worker sends while taking a CreateCustomer)."""

    def __init__(self, settings: Settings, also: Iterable[str] = ()):
        self.codec = Codec()
        self.consumer = Consumer(settings.confluent_config(**{
            "group.id": f"faults-tail-{uuid.uuid4().hex}", "isolation.level": "read_committed",
            "enable.auto.commit": False, "auto.offset.reset": "earliest", "enable.partition.eof": False}))
        names = [OUTCOMES, *also]
        metadata = self.consumer.list_topics(timeout=15)
        start = []
        for name in names:
            for partition in metadata.topics[name].partitions:
                _, high = self.consumer.get_watermark_offsets(TopicPartition(name, partition), timeout=15)
                start.append(TopicPartition(name, partition, high))
        self.consumer.assign(start)
        self.first: dict[str, CommandOutcome] = {}
        self.arrived: dict[str, float] = {}  # time.monotonic() of the first outcome
        self.distinct: dict[str, set[tuple]] = defaultdict(set)
        self.seen: dict[str, float] = {}  # command id on an `also` topic → time.monotonic() it first appeared
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="outcome-tail", daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            for message in self.consumer.consume(2000, timeout=0.2):
                if message.error() is not None or message.value() is None:
                    continue
                try:
                    record = self.codec.decode(message.value())
                except DecodeError:
                    continue
                if message.topic() != OUTCOMES:
                    if getattr(record, "command_id", None):
                        self.seen.setdefault(record.command_id, time.monotonic())
                    continue
                if not isinstance(record, CommandOutcome):
                    continue
                if record.command_id not in self.first:
                    self.first[record.command_id] = record
                    self.arrived[record.command_id] = time.monotonic()
                self.distinct[record.command_id].add(outcome_key(record))

    def wait(self, command_ids: Iterable[str], timeout: float) -> set[str]:
        """Waits until every one of `command_ids` has an outcome or `timeout` passes; returns those without."""
        wanted = set(command_ids)
        deadline = time.monotonic() + timeout
        while True:
            missing = wanted - self.first.keys()
            if not missing or time.monotonic() > deadline:
                return missing
            time.sleep(0.2)

    def status(self, command_id: str) -> str | None:
        outcome = self.first.get(command_id)
        return outcome.status if outcome else None

    def close(self):
        self._stop.set()
        self._thread.join(10)
        self.consumer.close()


# The HTTP views against the fold --------------------------------------------------------------------

def _get_all(urls: list[str], paths: list[str], threads: int = 6) -> list[tuple[str, int, Any]]:
    """GETs every path, spread over the workers (any worker answers for any key), retrying 503s (each
    says Retry-After) for 30 s. Returns (path, status, JSON body or text)."""
    clients = [httpx.Client(base_url=url, timeout=60) for url in urls]

    def get(indexed):
        index, path = indexed
        client = clients[index % len(clients)]
        deadline = time.monotonic() + 30
        while True:
            try:
                response = client.get(path)
            except httpx.HTTPError as exc:
                if time.monotonic() > deadline:
                    return path, 0, repr(exc)
                time.sleep(0.5)
                continue
            if response.status_code != 503 or time.monotonic() > deadline:
                try:
                    return path, response.status_code, response.json()
                except ValueError:
                    return path, response.status_code, response.text
            time.sleep(0.25)

    try:
        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(get, enumerate(paths)))
    finally:
        for client in clients:
            client.close()


def check_account_views(urls: list[str], folded: Fold, account_ids: Iterable[str]) -> tuple[list[str], Decimal]:
    """Each account's view (GET /api/accounts/{id}, read once it reaches the log's version) equals the
    fold of its events: balance, version, status. Returns the violations and the views' total balance."""
    account_ids = list(account_ids)
    violations, total = [], ZERO
    missing = [a for a in account_ids if a not in folded.accounts]
    violations += [f"account {a} has no events" for a in missing]
    present = [a for a in account_ids if a in folded.accounts]
    paths = [f"/api/accounts/{a}?min_version={folded.accounts[a].version}&wait=10" for a in present]
    for account_id, (path, status, body) in zip(present, _get_all(urls, paths)):
        want = folded.accounts[account_id]
        if status != 200:
            violations.append(f"GET {path}: {status} {body}")
            continue
        total += Decimal(body["balance"])
        have = (Decimal(body["balance"]), body["version"], body["status"])
        if have != (want.balance, want.version, want.status):
            violations.append(f"account {account_id}: the view has balance {have[0]} v{have[1]} {have[2]}, the "
                              f"events fold to {want.balance} v{want.version} {want.status}")
    return violations, total


def check_transfers(urls: list[str], folded: Fold, transfer_ids: Iterable[str]) -> list[str]:
    """Each transfer is terminal in its events and in GET /api/transfers/{id}, and the view equals the fold."""
    transfer_ids = list(transfer_ids)
    violations = []
    present = []
    for transfer_id in transfer_ids:
        transfer = folded.transfers.get(transfer_id)
        if transfer is None:
            violations.append(f"transfer {transfer_id} has no events")
        else:
            present.append(transfer_id)
            if transfer.state not in TERMINAL:
                violations.append(f"transfer {transfer_id} is {transfer.state} in its events, not terminal")
    paths = [f"/api/transfers/{t}?min_version={folded.transfers[t].version}&wait=10" for t in present]
    for transfer_id, (path, status, body) in zip(present, _get_all(urls, paths)):
        want = folded.transfers[transfer_id]
        if status != 200:
            violations.append(f"GET {path}: {status} {body}")
            continue
        if body.get("state") not in TERMINAL:
            violations.append(f"transfer {transfer_id}: the view says {body.get('state')}, not terminal")
        have = (body.get("state"), Decimal(body["amount"]), body.get("reason"), body.get("version"))
        if have != (want.state, want.amount, want.reason, want.version):
            violations.append(f"transfer {transfer_id}: the view has {have}, the events fold to "
                              f"{(want.state, want.amount, want.reason, want.version)}")
    return violations


def check_command_views(urls: list[str], outcomes: dict[str, set[tuple]], command_ids: Iterable[str]) -> list[str]:
    """GET /api/commands/{id} says ACCEPTED or REJECTED, as the command's outcome on the log does."""
    command_ids = list(command_ids)
    violations = []
    for command_id, (path, status, body) in zip(command_ids, _get_all(urls, [f"/api/commands/{c}" for c in command_ids])):
        logged = {o[0] for o in outcomes.get(command_id, ())}
        if status != 200 or body.get("status") not in ("ACCEPTED", "REJECTED"):
            violations.append(f"GET {path}: {status} {body}")
        elif logged and body["status"] not in logged:
            violations.append(f"command {command_id}: the API says {body['status']}, the log {sorted(logged)}")
    return violations


def check_customers(urls: list[str], expected: dict[str, dict]) -> list[str]:
    """Each customer reads back over HTTP exactly as posted: `expected` maps a customer id to its
    name ({first_name, last_name}), email, phone, to_accounts ([{account_id, title, owner}]) and accounts
    (ids of the accounts opened for it); the email lookup finds it too."""
    ids = list(expected)
    violations = []
    answers = _get_all(urls, [f"/api/customers/{c}" for c in ids])
    for customer_id, (path, status, body) in zip(ids, answers):
        want = expected[customer_id]
        if status != 200:
            violations.append(f"GET {path}: {status} {body}")
            continue
        have = {"name": body.get("name"), "email": body.get("email"), "phone": body.get("phone"),
                "to_accounts": body.get("to_accounts"),
                "accounts": sorted(a["account_id"] for a in body.get("accounts") or ())}
        if have != {k: want[k] for k in have}:
            violations.append(f"customer {customer_id}: reads back as {have}, was posted as "
                              f"{ {k: want[k] for k in have} }")
    by_email = _get_all(urls, [f"/api/customers?email={expected[c]['email']}" for c in ids])
    for customer_id, (path, status, body) in zip(ids, by_email):
        if status != 200 or body.get("customer_id") != customer_id:
            violations.append(f"GET {path}: {status}, customer {body.get('customer_id') if status == 200 else body}, "
                              f"not {customer_id}")
    return violations


# The report -----------------------------------------------------------------------------------------

@dataclass
class Summary:
    """What each fault test prints: commands sent, faults injected, violations found, time to quiescence."""

    test: str
    commands: Counter = field(default_factory=Counter)
    faults: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    quiescence: dict[str, float] = field(default_factory=dict)  # phase → seconds
    notes: list[str] = field(default_factory=list)

    def check(self, what: str, violations: list[str]) -> None:
        self.violations += [f"{what}: {v}" for v in violations]

    def print(self) -> None:
        lines = [f"\n=== {self.test} ===",
                 f"commands sent: {sum(self.commands.values())} ({', '.join(f'{k} {v}' for k, v in sorted(self.commands.items()))})",
                 f"faults injected: {len(self.faults)}"] + [f"  - {f}" for f in self.faults]
        lines.append("time to quiescence: " + (", ".join(f"{k} {v:.1f}s" for k, v in self.quiescence.items()) or "-"))
        lines += [f"note: {n}" for n in self.notes]
        lines.append(f"violations found: {len(self.violations)}")
        lines += [f"  ! {v}" for v in self.violations[:40]]
        if len(self.violations) > 40:
            lines.append(f"  ... and {len(self.violations) - 40} more")
        print("\n".join(lines), flush=True)
