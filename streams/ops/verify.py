"""`bank verify`: read the whole log from Kafka and check every ledger invariant by an independent fold.

Two halves:

* `read_log(settings)` is the only I/O: a confluent-kafka consumer `assign()`s every partition of the
  event topics, the command topics, `bank.command-outcomes` and the view tables' changelog topics
  from the beginning up to the high watermark seen at start (no group, no commits), and decodes
  each record with the `Codec`.
* `check(log)` / `audit(log)` are pure: they fold the log with their own code (never the domain's
  `evolve`/`decide` nor the projections in `streams.domain.views`), and return one human-readable
  line per violation, prefixed with the number of the contract's ledger invariant it breaks:

  [1] money is conserved (and every event's `balance` is the folded balance)
  [2] no balance is ever negative
  [3] every transfer ends COMPLETED, FAILED or REFUNDED and its account legs are applied once
  [4] each command has exactly one outcome in effect, and a command takes effect once
  [5] per aggregate, versions are 1..n without gaps or duplicates in effect
  [6] every view equals the fold
  [email] each email belongs to one customer, the one the email registry reserved it for
  [privacy] a forgotten customer's key is gone from bank.customer-keys; any other sealed customer's is
            there, and its personal data (the CustomerCreated's sealed blob) opens with it
  [state] each aggregate's latest `state:<id>` entry on its command processor's table changelog equals
          the fold of its events, and every aggregate with events has one

and, on the same changelogs, [4] every command with an outcome has its dedup record `command:<id>`
(but for the rejection of a record whose key is not its aggregate id, refused before dedup), and
[6] the account statements (`account_version_to_entry`: one entry per account version) and the
outcome view (`command_to_outcome`: the first outcome of each command) equal the fold.

The log is assumed quiet while it is read (no commands in flight): verify cannot tell, so anything
still being processed is a violation: a missing outcome, a transfer not yet COMPLETED, FAILED or
REFUNDED, a view or state entry behind the fold. `allow_in_flight` (`bank verify --allow-in-flight`)
counts unfinished transfers instead of reporting them, for callers that check while work runs.
"""
from __future__ import annotations

import dataclasses
import json
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .. import topology
from ..contract import topics
from ..contract.topics import changelog_topic
from ..contract.avro import Codec, DecodeError
from ..config import Settings
from ..domain.accounts import (
    Account,
    AccountClosed,
    AccountCredited,
    AccountDebited,
    AccountOpened,
    AccountRefunded,
    MoneyDeposited,
    MoneyWithdrawn,
)
from ..domain.base import Command, Event, Reply
from ..domain.customers import (
    Customer,
    CustomerCreated,
    CustomerForgotten,
    ToAccount,
    ToAccountAdded,
    ToAccountRemoved,
)
from ..domain.emails import EmailReservation, EmailReserved
from ..domain.outcomes import ACCEPTED, REJECTED, CommandOutcome, ProcessedCommand
from ..domain.transfers import (
    Transfer,
    TransferCompleted,
    TransferCreditFailed,
    TransferDebited,
    TransferFailed,
    TransferInitiated,
    TransferRefunded,
)
from ..contract.records import COMMAND_TYPES
from ..kafka.pointer import PointerUnavailable, read_pointer
from ..kafka.reader import Reader, ReadError, ReadTimeout
from ..services.generations import strip

ZERO = Decimal("0.00")

# States, spelled here on purpose: this module shares no code with the fold it checks.
OPEN, CLOSED = "OPEN", "CLOSED"
INITIATED, DEBITED, COMPLETED, FAILED, REFUNDED = "INITIATED", "DEBITED", "COMPLETED", "FAILED", "REFUNDED"
TERMINAL = (COMPLETED, FAILED, REFUNDED)

ACCOUNT_VIEWS = "account_to_view"
TRANSFER_VIEWS = "transfer_to_view"
CUSTOMER_VIEWS = "customer_to_view"
EMAIL_INDEX = "email_to_customer"
HISTORY_VIEW = "account_version_to_entry"
OUTCOME_VIEW = "command_to_outcome"
#: Every view table the workers keep (streams.topology): each is read, and each needs an audit rule below
#: (`check_all_views`); a view without one fails verify ("no audit rule for view table ...").
VIEW_TABLES = topology.VIEW_TABLES
RAW_TEXT_TABLES = frozenset({EMAIL_INDEX})  # values are raw UTF-8, not Avro

#: Each command processor's table (state and dedup records, one changelog) → the events its state folds.
STATE_TABLES = {
    "customer_to_state": topics.CUSTOMER_EVENTS.name,
    "account_to_state": topics.ACCOUNT_EVENTS.name,
    "transfer_to_state": topics.TRANSFER_EVENTS.name,
    "email_to_reservation": topics.EMAIL_EVENTS.name,
}
#: Which processor's table holds the dedup records of the commands on each command topic.
_STATE_TABLE_OF_COMMANDS = {
    topics.CUSTOMER_COMMANDS.name: "customer_to_state",
    topics.ACCOUNT_COMMANDS.name: "account_to_state",
    topics.TRANSFER_COMMANDS.name: "transfer_to_state",
    topics.EMAIL_COMMANDS.name: "email_to_reservation",
}
#: The event types this module has rules for, spelled here like the states above. An event of any other
#: type fails verify ("no audit rule for ..."): a new event type needs its rule here before verify passes.
AUDITED_EVENTS = frozenset({
    "AccountOpened", "MoneyDeposited", "MoneyWithdrawn", "AccountClosed", "AccountDebited", "AccountCredited",
    "AccountRefunded",
    "TransferInitiated", "TransferDebited", "TransferCompleted", "TransferFailed", "TransferCreditFailed",
    "TransferRefunded",
    "CustomerCreated", "ToAccountAdded", "ToAccountRemoved", "CustomerForgotten",
    "EmailReserved",
})
# The keys of those tables, spelled here like the states above (tests check they are the processors').
STATE_KEY, DEDUP_KEY = "state:", "command:"
#: The one outcome a processor writes without a dedup record: a record whose key is not its aggregate id
#: is refused before dedup (it may sit on another partition than its aggregate's dedup records).
WRONG_KEY = ("INVALID_FIELD", "key")


# The log ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Record:
    """One record read from Kafka: where it was, its key, and its decoded value.

    `value` is the decoded dataclass (a `str` for raw-text tables), None for a tombstone or when
    decoding failed; `error` then says why.
    """

    topic: str
    partition: int
    offset: int
    key: str | None
    value: Any
    error: str | None = None


@dataclass
class Log:
    """Everything `bank verify` reads, per topic, each list in partition order then offset order.

    `views` maps a view table's name to its changelog records (keys without their generation, only the
    serving generation's); `states` maps a command processor's table to its changelog records (`state:`
    and `command:` keys). Each is None when the changelogs were not read.
    `missing_topics` names the topics that do not exist on the cluster.
    """

    events: dict[str, list[Record]] = field(default_factory=dict)
    commands: dict[str, list[Record]] = field(default_factory=dict)
    outcomes: list[Record] = field(default_factory=list)
    views: dict[str, list[Record]] | None = None
    missing_topics: list[str] = field(default_factory=list)
    #: customer id → its live key in bank.customer-keys, None once tombstoned (the whole map None: the
    #: keys were not read). The raw key bytes, used only to check that sealed data opens.
    keys: dict[str, bytes | None] | None = None
    states: dict[str, list[Record]] | None = None


@dataclass
class Report:
    """What `audit` found: the violations and the numbers of the fold."""

    violations: list[str]
    accounts: int = 0
    customers: int = 0
    transfers: dict[str, int] = field(default_factory=dict)  # by state
    events: int = 0  # event records read (re-emissions included)
    re_emissions: int = 0
    commands: int = 0  # distinct command ids on the command topics
    command_records: int = 0
    outcomes: int = 0
    skipped_commands: int = 0  # undecodable or foreign records on command topics (dead-lettered by workers)
    total_balance: Decimal = ZERO
    in_transit: Decimal = ZERO
    in_flight: int = 0  # transfers not COMPLETED, FAILED or REFUNDED (violations unless allowed)
    views_checked: bool = False
    # What was compared on the tables' changelogs and bank.customer-keys:
    state_entries: int = 0  # latest `state:<id>` entries compared with the fold
    dedup_records: int = 0  # outcomes whose `command:<id>` dedup record was looked up
    history_entries: int = 0  # account statement entries compared
    outcome_entries: int = 0  # outcome view entries compared
    sealed_customers: int = 0  # sealed personal data opened with the customer's key

    @property
    def ok(self) -> bool:
        return not self.violations

    def summary_line(self) -> str:
        states = ", ".join(f"{state} {count}" for state, count in sorted(self.transfers.items())) or "none"
        line = (f"{'OK' if self.ok else 'FAILED'}: {self.accounts} accounts, {self.customers} customers, "
                f"{sum(self.transfers.values())} transfers ({states}), {self.events} events, "
                f"{self.commands} commands, {self.outcomes} outcomes, total balance {self.total_balance}, "
                f"{len(self.violations)} violations")
        if self.in_flight:
            line += f", {self.in_flight} transfers in flight"
        if self.views_checked:
            line += (f"; checked {self.state_entries} state entries, {self.dedup_records} dedup records, "
                     f"{self.history_entries} history entries, {self.outcome_entries} outcome entries, "
                     f"{self.sealed_customers} sealed customers")
        else:
            line += f"; checked {self.sealed_customers} sealed customers (views not checked)"
        return line

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["total_balance"] = str(self.total_balance)
        data["in_transit"] = str(self.in_transit)
        data["ok"] = self.ok
        return data


# Reading Kafka ----------------------------------------------------------------------------------

class KafkaUnavailable(RuntimeError):
    """The cluster could not be reached (or did not answer in time)."""


def read_log(settings: Settings, *, views: bool = True, timeout: float = 30.0, codec: Codec | None = None) -> Log:
    """Reads and decodes every topic `check` needs, from the beginning to the end offsets seen at start.

    Raises `KafkaUnavailable` when the cluster does not answer or the read does not finish in `timeout`.
    """

    codec = codec or Codec()
    deadline = time.monotonic() + timeout
    wanted: dict[str, str] = {}  # topic → role
    for spec in topics.EVENT_TOPICS:
        wanted[spec.name] = "events"
    for spec in topics.COMMAND_TOPICS:
        wanted[spec.name] = "commands"
    wanted[topics.COMMAND_OUTCOMES.name] = "outcomes"
    wanted[topics.CUSTOMER_KEYS.name] = "keys"
    if views:  # after the outcomes: what an outcome was seen for was written to the changelogs before it
        for table in VIEW_TABLES:
            wanted[changelog_topic(table)] = "views"
        for table in STATE_TABLES:
            wanted[changelog_topic(table)] = "states"

    received: dict[tuple[str, int], list] = defaultdict(list)
    with Reader(settings, "verify", timeout, **{"enable.partition.eof": False}) as reader:
        try:
            partitions, missing = reader.ends(wanted)
            ends = {where: high for where, (low, high) in partitions.items() if high > low}
            for message in reader.read(ends):
                received[(message.topic(), message.partition())].append(
                    (message.offset(), message.key(), message.value()))
        except ReadTimeout as exc:
            behind = ", ".join(f"{t}[{p}]" for t, p in exc.pending)
            raise KafkaUnavailable(f"timed out after {timeout:g}s reading the log; not finished: {behind}") from None
        except ReadError as exc:  # unreachable, offsets unreadable, a fatal error: the message says which
            raise KafkaUnavailable(str(exc)) from None

    if views:  # the views' tables hold every generation; the one served is the one to check
        try:
            pointer = read_pointer(settings, timeout=max(0.1, deadline - time.monotonic()))
        except PointerUnavailable as exc:
            raise KafkaUnavailable(str(exc)) from None
    log = Log(views={} if views else None, states={} if views else None, missing_topics=sorted(missing))
    for name, role in wanted.items():
        if name in missing:
            continue
        if role == "keys":  # raw key bytes, not Avro: kept only to try them on the sealed data, never shown
            log.keys = {}
            for (topic, partition) in sorted(k for k in received if k[0] == name):
                for _, key, value in received[(topic, partition)]:
                    if key is not None:
                        log.keys[key.decode("utf-8", "replace")] = value
            continue
        records = []
        for (topic, partition) in sorted(k for k in received if k[0] == name):
            for offset, key, value in received[(topic, partition)]:
                records.append(_record(codec, topic, partition, offset, key, value,
                                       raw_text=role == "views" and name == changelog_topic(EMAIL_INDEX)))
        if role == "events":
            log.events[name] = records
        elif role == "commands":
            log.commands[name] = records
        elif role == "outcomes":
            log.outcomes = records
        elif role == "states":  # no generations: the processors' tables are rebuilt in place
            log.states[_table_of(name)] = records
        else:
            generation = pointer.serving_of(topology.VIEW_OF_TABLE[_table_of(name)])
            log.views[_table_of(name)] = [
                dataclasses.replace(r, key=strip(r.key, generation)) for r in records
                if r.key is not None and strip(r.key, generation) is not None]
    return log


def _table_of(changelog: str) -> str:
    return changelog[len("streambank-"):-len("-changelog")]


def _record(codec: Codec, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None,
            raw_text: bool = False) -> Record:
    text_key = key.decode("utf-8", "replace") if key is not None else None
    if value is None:
        return Record(topic, partition, offset, text_key, None)
    if raw_text:
        return Record(topic, partition, offset, text_key, value.decode("utf-8", "replace"))
    try:
        return Record(topic, partition, offset, text_key, codec.decode(value))
    except DecodeError as exc:
        return Record(topic, partition, offset, text_key, None, error=str(exc))


# Checking ---------------------------------------------------------------------------------------

def check(log: Log, *, check_views: bool = True, allow_in_flight: bool = False) -> list[str]:
    """Every violation of the ledger invariants in `log`, one line each (empty when all hold)."""
    return audit(log, check_views=check_views, allow_in_flight=allow_in_flight).violations


def audit(log: Log, *, check_views: bool = True, allow_in_flight: bool = False) -> Report:
    """The violations and the summary numbers of `log`.

    `check_views`: compare the tables' changelogs (views, aggregate state, dedup records) with the fold.
    `allow_in_flight`: a transfer not yet terminal is counted (`Report.in_flight`), not a violation.
    """
    return _Audit(log, check_views, allow_in_flight).run()


#: Where the events of the commands on each command topic go.
_EVENTS_OF_COMMANDS = {
    topics.CUSTOMER_COMMANDS.name: topics.CUSTOMER_EVENTS.name,
    topics.ACCOUNT_COMMANDS.name: topics.ACCOUNT_EVENTS.name,
    topics.TRANSFER_COMMANDS.name: topics.TRANSFER_EVENTS.name,
    topics.EMAIL_COMMANDS.name: topics.EMAIL_EVENTS.name,
}


def _where(record: Record) -> str:
    return f"{record.topic}[{record.partition}]@{record.offset}"


def _same_event(a: Event, b: Event) -> bool:
    """Equal apart from the timestamp: a re-emission."""
    return dataclasses.replace(a, occurred_at=0) == dataclasses.replace(b, occurred_at=0)


@dataclass
class _Account:
    account_id: str
    customer_id: str
    title: str
    description: str
    balance: Decimal
    status: str
    version: int


@dataclass
class _Transfer:
    transfer_id: str
    from_account_id: str
    to_account_id: str
    amount: Decimal
    description: str
    state: str
    reason: str | None
    version: int


@dataclass
class _Customer:
    customer_id: str
    first_name: str
    last_name: str
    email: str
    phone: str | None
    address: str | None
    to_accounts: list[tuple[str, str, str]]
    version: int
    email_key: str = ""  # what the registry is keyed by: the keyed hash (the email, before sealing)
    email_hash: str = ""
    personal_data: bytes = b""
    key_id: str = ""
    forgotten: bool = False


@dataclass(frozen=True)
class _Leg:
    kind: str  # AccountDebited, AccountCredited, AccountRefunded
    account_id: str
    version: int
    amount: Decimal


class _Audit:
    def __init__(self, log: Log, check_views: bool, allow_in_flight: bool = False):
        self.log = log
        self.check_views = check_views and log.views is not None
        self.allow_in_flight = allow_in_flight
        self.violations: list[str] = []
        self.report = Report(violations=self.violations)
        # topic → aggregate id → events in version order (each version once)
        self.aggregates: dict[str, dict[str, list[Event]]] = {}
        self.accounts: dict[str, _Account] = {}
        self.transfers: dict[str, _Transfer] = {}
        self.customers: dict[str, _Customer] = {}
        self.emails: dict[str, str] = {}  # email → customer id, from the registry's events
        self.legs: dict[str, list[_Leg]] = defaultdict(list)  # transfer id → account legs
        self.totals = Counter()  # initial, deposits, withdrawals (Decimals)
        # account id → its statement as the fold gives it: one entry (a dict of HistoryEntry fields) per version
        self.history: dict[str, list[dict]] = defaultdict(list)
        self.outcomes: dict[str, list[tuple[CommandOutcome, Record]]] = {}  # command id → its outcomes, in order
        self.dedup: dict[str, dict[str, Record]] = {}  # processor table → command id → its latest dedup record
        self.unaudited: set[str] = set()  # event types met that no rule here knows (each one a violation)
        self.compared: set[str] = set()  # the view tables `compare_views` checked

    def folded(self, topic: str):
        """aggregate id → its events in version order, those without an audit rule left out (already a violation)."""
        for aggregate, events in self.aggregates.get(topic, {}).items():
            yield aggregate, [e for e in events if type(e).__name__ in AUDITED_EVENTS]

    def bad(self, invariant: int | str, message: str) -> None:
        self.violations.append(f"[{invariant}] {message}")

    def run(self) -> Report:
        for name in self.log.missing_topics:
            if name.startswith("streambank-"):
                if self.check_views and _table_of(name) in STATE_TABLES:
                    self.bad("state", f"changelog topic {name} does not exist (no worker has kept the table "
                                      f"{_table_of(name)})")
                elif self.check_views:
                    self.bad(6, f"changelog topic {name} does not exist (no worker has built the view "
                                f"{_table_of(name)})")
            else:
                self.bad(5, f"topic {name} does not exist: run `bank topics create`")
        self.read_events()
        self.fold_accounts()
        self.fold_transfers()
        self.check_money()
        self.fold_customers()
        self.fold_emails()
        self.check_keys()
        self.check_sealed()
        self.check_commands()
        if self.check_views:
            self.check_all_views()
            self.check_states()
            self.check_dedup()
        r = self.report
        r.accounts, r.customers = len(self.accounts), len(self.customers)
        r.transfers = dict(Counter(t.state for t in self.transfers.values()))
        r.total_balance = sum((a.balance for a in self.accounts.values()), ZERO)
        r.views_checked = self.check_views
        return r

    # [5] versions, per aggregate ------------------------------------------------------------
    def read_events(self) -> None:
        specs = {spec.name: spec for spec in topics.EVENT_TOPICS}
        for topic, records in self.log.events.items():
            spec = specs.get(topic)
            firsts: dict[str, dict[int, tuple[Event, Record]]] = defaultdict(dict)
            order: dict[str, list[int]] = defaultdict(list)
            by_event_id: dict[str, tuple[str, int, Record]] = {}
            for record in records:
                self.report.events += 1
                event = record.value
                if record.error is not None:
                    self.bad(5, f"undecodable event at {_where(record)} (key {record.key}): {record.error}")
                    continue
                if event is None:
                    self.bad(5, f"tombstone at {_where(record)} (key {record.key}) on an event topic")
                    continue
                if not isinstance(event, Event) or (spec is not None and type(event) not in spec.values):
                    self.bad(5, f"{type(event).__name__} at {_where(record)} does not belong on {topic}")
                    continue
                if type(event).__name__ not in AUDITED_EVENTS and type(event).__name__ not in self.unaudited:
                    self.unaudited.add(type(event).__name__)
                    self.bad("audit", f"no audit rule for {type(event).__name__} (first at {_where(record)}): "
                                      f"bank verify cannot check what it does; add its rule to streams/ops/verify.py")
                aggregate = event.aggregate_id
                if record.key is not None and record.key != aggregate:
                    self.bad(5, f"{type(event).__name__} of {aggregate} v{event.version} at {_where(record)} "
                                f"is keyed {record.key!r}, not by its aggregate id")
                seen = firsts[aggregate].get(event.version)
                if seen is None:
                    firsts[aggregate][event.version] = (event, record)
                    order[aggregate].append(event.version)
                    other = by_event_id.get(event.event_id)
                    if other is not None:
                        self.bad(4, f"command {event.command_id} took effect twice: event {event.event_id} is "
                                    f"{other[0]} v{other[1]} ({_where(other[2])}) and {aggregate} v{event.version} "
                                    f"({_where(record)})")
                    else:
                        by_event_id[event.event_id] = (aggregate, event.version, record)
                    continue
                first, first_record = seen
                if first.event_id == event.event_id and _same_event(first, event):
                    self.report.re_emissions += 1
                elif first.event_id == event.event_id:
                    self.bad(5, f"{aggregate} v{event.version}: event {event.event_id} re-emitted with other "
                                f"content ({_where(first_record)} vs {_where(record)})")
                else:
                    self.bad(5, f"{aggregate} v{event.version}: duplicates in effect: {type(first).__name__} "
                                f"{first.event_id} ({_where(first_record)}) and {type(event).__name__} "
                                f"{event.event_id} ({_where(record)})")
            per_aggregate = {}
            for aggregate, versions in order.items():
                expected = list(range(1, len(versions) + 1))
                if sorted(versions) != expected:
                    missing = sorted(set(range(1, max(versions) + 1)) - set(versions))
                    self.bad(5, f"{aggregate} ({topic}): versions are not 1..n: missing "
                                f"{', '.join(f'v{v}' for v in missing) or 'none'} below v{max(versions)}")
                elif versions != expected:
                    self.bad(5, f"{aggregate} ({topic}): versions are out of order in the log: "
                                f"{', '.join(f'v{v}' for v in versions)}")
                per_aggregate[aggregate] = [firsts[aggregate][v][0] for v in sorted(versions)]
            self.aggregates[topic] = per_aggregate

    # [1] [2] accounts -----------------------------------------------------------------------
    def fold_accounts(self) -> None:
        for account_id, events in self.folded(topics.ACCOUNT_EVENTS.name):
            account: _Account | None = None
            for event in events:
                what = f"account {account_id} v{event.version} {type(event).__name__}"
                if isinstance(event, AccountOpened):
                    if account is not None:
                        self.bad(5, f"{what}: the account was already opened")
                        continue
                    account = _Account(account_id, event.customer_id, event.title, event.description,
                                       event.initial_balance, OPEN, event.version)
                    self.totals["initial"] += event.initial_balance
                    if event.initial_balance < 0:
                        self.bad(2, f"{what}: negative initial balance {event.initial_balance}")
                    self.statement_line(account, event, event.initial_balance)
                    continue
                if account is None:
                    self.bad(5, f"{what}: the account was never opened")
                    break
                account.version = event.version
                if isinstance(event, AccountClosed):
                    if account.balance != 0:
                        self.bad(1, f"{what}: closed with balance {account.balance}")
                    account.status = CLOSED
                    self.statement_line(account, event, ZERO)
                    continue
                amount = event.amount
                if amount <= 0:
                    self.bad(1, f"{what}: amount {amount} is not positive")
                if isinstance(event, MoneyDeposited):
                    account.balance += amount
                    self.totals["deposits"] += amount
                elif isinstance(event, MoneyWithdrawn):
                    account.balance -= amount
                    self.totals["withdrawals"] += amount
                elif isinstance(event, AccountDebited):
                    account.balance -= amount
                elif isinstance(event, (AccountCredited, AccountRefunded)):
                    account.balance += amount
                if isinstance(event, (AccountDebited, AccountCredited, AccountRefunded)):
                    self.legs[event.transfer_id].append(
                        _Leg(type(event).__name__, account_id, event.version, amount))
                if event.balance != account.balance:
                    self.bad(1, f"{what}: the event says balance {event.balance}, the fold gives {account.balance}")
                if account.balance < 0:
                    self.bad(2, f"{what}: balance is negative ({account.balance})")
                self.statement_line(account, event, -amount if isinstance(event, (MoneyWithdrawn, AccountDebited))
                                    else amount)
            if account is not None:
                self.accounts[account_id] = account

    def statement_line(self, account: _Account, event: Event, amount: Decimal) -> None:
        """The account statement's entry for `event`: signed amount, the balance after it."""
        self.history[account.account_id].append({
            "account_id": account.account_id, "version": event.version, "entry_type": type(event).__name__,
            "amount": amount, "balance": account.balance, "command_id": event.command_id,
            "transfer_id": getattr(event, "transfer_id", None)})

    # [3] transfers --------------------------------------------------------------------------
    _TRANSITIONS = {
        TransferDebited: ((INITIATED, False), DEBITED),
        TransferFailed: ((INITIATED, False), FAILED),
        TransferCompleted: ((DEBITED, False), COMPLETED),
        TransferCreditFailed: ((DEBITED, False), DEBITED),
        TransferRefunded: ((DEBITED, True), REFUNDED),
    }

    def fold_transfers(self) -> None:
        for transfer_id, events in self.folded(topics.TRANSFER_EVENTS.name):
            transfer: _Transfer | None = None
            for event in events:
                what = f"transfer {transfer_id} v{event.version} {type(event).__name__}"
                if isinstance(event, TransferInitiated):
                    if transfer is not None:
                        self.bad(5, f"{what}: the transfer was already initiated")
                        continue
                    transfer = _Transfer(transfer_id, event.from_account_id, event.to_account_id, event.amount,
                                         event.description, INITIATED, None, event.version)
                    if event.amount <= 0:
                        self.bad(3, f"{what}: amount {event.amount} is not positive")
                    continue
                if transfer is None:
                    self.bad(5, f"{what}: the transfer was never initiated")
                    break
                (state, refund_pending), target = self._TRANSITIONS[type(event)]
                if transfer.state != state or (transfer.reason is not None) != refund_pending:
                    self.bad(3, f"{what}: not allowed in state {transfer.state}"
                                f"{' (credit failed)' if transfer.reason is not None else ''}")
                transfer.state, transfer.version = target, event.version
                if isinstance(event, (TransferFailed, TransferCreditFailed)):
                    transfer.reason = event.reason
            if transfer is not None:
                self.transfers[transfer_id] = transfer

        for transfer_id, transfer in self.transfers.items():
            legs = self.legs.get(transfer_id, [])
            by_kind = defaultdict(list)
            for leg in legs:
                by_kind[leg.kind].append(leg)
            debits, credits, refunds = (by_kind[k] for k in ("AccountDebited", "AccountCredited", "AccountRefunded"))
            name = f"transfer {transfer_id} ({transfer.state}, {transfer.amount} from {transfer.from_account_id} " \
                   f"to {transfer.to_account_id})"
            if transfer.state not in TERMINAL:
                self.report.in_flight += 1
                in_transit = sum((l.amount for l in debits), ZERO) - sum((l.amount for l in credits + refunds), ZERO)
                if not self.allow_in_flight:  # the log is taken to be quiet: an unfinished transfer is stuck
                    self.bad(3, f"{name}: never finished, stuck in {transfer.state}"
                                + (f" with {in_transit} in transit" if in_transit else ""))
            for kind, found in (("AccountDebited", debits), ("AccountCredited", credits),
                                ("AccountRefunded", refunds)):
                if len(found) > 1:
                    self.bad(3, f"{name}: applied more than once: {len(found)} {kind} "
                                f"({', '.join(f'{l.account_id} v{l.version}' for l in found)})")
            expected = {COMPLETED: (1, 1, 0), REFUNDED: (1, 0, 1), FAILED: (0, 0, 0), DEBITED: (1, 0, 0),
                        INITIATED: (0, 0, 0)}[transfer.state]
            for kind, found, wanted in zip(("AccountDebited", "AccountCredited", "AccountRefunded"),
                                           (debits, credits, refunds), expected):
                if wanted == 0 and found:
                    self.bad(3, f"{name}: has {len(found)} {kind} but should have none "
                                f"({', '.join(f'{l.account_id} v{l.version}' for l in found)})")
                elif wanted == 1 and not found:
                    self.bad(3, f"{name}: has no {kind}")
            for leg in legs:
                account = transfer.to_account_id if leg.kind == "AccountCredited" else transfer.from_account_id
                if leg.account_id != account:
                    self.bad(3, f"{name}: {leg.kind} on account {leg.account_id} v{leg.version}, not on {account}")
                if leg.amount != transfer.amount:
                    self.bad(3, f"{name}: {leg.kind} on {leg.account_id} v{leg.version} moves {leg.amount}, "
                                f"not {transfer.amount}")
            if transfer.state in TERMINAL:
                net = sum((l.amount for l in debits), ZERO) - sum((l.amount for l in credits + refunds), ZERO)
                if net != 0:
                    self.bad(1, f"{name}: debits - credits - refunds = {net}, not 0")
        for transfer_id, legs in self.legs.items():
            if transfer_id not in self.transfers:
                for leg in legs:
                    self.bad(3, f"account {leg.account_id} v{leg.version} {leg.kind}: transfer {transfer_id} "
                                f"was never initiated")

    # [1] money ------------------------------------------------------------------------------
    def check_money(self) -> None:
        in_transit = ZERO
        for transfer_id, transfer in self.transfers.items():
            if transfer.state in TERMINAL:
                continue
            for leg in self.legs.get(transfer_id, []):
                in_transit += leg.amount if leg.kind == "AccountDebited" else -leg.amount
        self.report.in_transit = in_transit
        total = sum((a.balance for a in self.accounts.values()), ZERO)
        initial, deposits, withdrawals = (self.totals[k] or ZERO for k in ("initial", "deposits", "withdrawals"))
        expected = initial + deposits - withdrawals - in_transit
        if total != expected:
            self.bad(1, f"money not conserved: accounts hold {total}, but initial balances {initial} + deposits "
                        f"{deposits} - withdrawals {withdrawals} - in transit {in_transit} = {expected} "
                        f"(difference {total - expected})")

    # customers and emails ------------------------------------------------------------------
    def fold_customers(self) -> None:
        for customer_id, events in self.folded(topics.CUSTOMER_EVENTS.name):
            customer: _Customer | None = None
            for event in events:
                what = f"customer {customer_id} v{event.version} {type(event).__name__}"
                if isinstance(event, CustomerCreated):
                    if customer is not None:
                        self.bad(5, f"{what}: the customer was already created")
                        continue
                    customer = _Customer(customer_id, event.first_name, event.last_name, event.email, event.phone,
                                         event.address, [], event.version, event.email_hash or event.email,
                                         event.email_hash, event.personal_data, event.key_id)
                    continue
                if customer is None:
                    self.bad(5, f"{what}: the customer was never created")
                    break
                customer.version = event.version
                if isinstance(event, ToAccountAdded):
                    customer.to_accounts.append((event.account_id, event.title, event.owner))
                elif isinstance(event, ToAccountRemoved):
                    customer.to_accounts = [a for a in customer.to_accounts if a[0] != event.account_id]
                elif isinstance(event, CustomerForgotten):  # personal data erased; the email stays reserved
                    customer.first_name = customer.last_name = customer.email = ""
                    customer.phone = customer.address = None
                    customer.personal_data, customer.forgotten = b"", True
            if customer is not None:
                self.customers[customer_id] = customer

    def fold_emails(self) -> None:
        for email, events in self.folded(topics.EMAIL_EVENTS.name):
            for event in events:
                if isinstance(event, EmailReserved):
                    if email in self.emails and self.emails[email] != event.customer_id:
                        self.bad("email", f"email {email} v{event.version}: reserved again, for {event.customer_id}")
                        continue
                    self.emails.setdefault(email, event.customer_id)
        holders = defaultdict(list)
        for customer in self.customers.values():
            holders[customer.email_key].append(customer.customer_id)
        for email, customer_ids in holders.items():
            if len(customer_ids) > 1:
                self.bad("email", f"email {email} belongs to {len(customer_ids)} customers: {', '.join(customer_ids)}")
            if self.log.events.get(topics.EMAIL_EVENTS.name) is None:
                continue
            reserved = self.emails.get(email)
            for customer_id in customer_ids:
                if reserved != customer_id:
                    self.bad("email", f"customer {customer_id} has email {email}, reserved "
                                f"{'for ' + reserved if reserved else 'for nobody'} in the email registry")

    # [privacy] crypto-shredding ------------------------------------------------------------------
    def check_keys(self) -> None:
        if self.log.keys is None:
            return
        for customer in self.customers.values():
            live = self.log.keys.get(customer.customer_id) is not None
            if customer.forgotten and live:
                self.bad("privacy", f"customer {customer.customer_id} was forgotten but its key is still in "
                                    f"{topics.CUSTOMER_KEYS.name}")
            elif not customer.forgotten and customer.personal_data and not live:
                self.bad("privacy", f"customer {customer.customer_id} has sealed personal data but no key in "
                                    f"{topics.CUSTOMER_KEYS.name}: it can no longer be read")

    def check_sealed(self) -> None:
        """Each sealed customer's personal data opens with the key bank.customer-keys holds for it."""
        if self.log.keys is None:
            return
        for customer_id, customer in sorted(self.customers.items()):
            if customer.forgotten or not customer.personal_data:
                continue  # forgotten: its key is gone on purpose; not sealed: written before sealing
            key = self.log.keys.get(customer_id)
            if key is None:
                continue  # no key at all: check_keys reports it
            self.report.sealed_customers += 1
            problem = _open_sealed(key, customer.key_id, customer.personal_data)
            if problem:
                self.bad("privacy", f"customer {customer_id}: the sealed personal data of its CustomerCreated "
                                    f"does not open with its key in {topics.CUSTOMER_KEYS.name}: {problem}")

    # [4] commands and outcomes -------------------------------------------------------------
    def check_commands(self) -> None:
        specs = {spec.name: spec for spec in topics.COMMAND_TOPICS}
        commands: dict[str, list[tuple[Command, Record]]] = defaultdict(list)
        for topic, records in self.log.commands.items():
            spec = specs.get(topic)
            for record in records:
                self.report.command_records += 1
                command = record.value
                if (record.error is not None or not isinstance(command, Command) or isinstance(command, Reply)
                        or (spec is not None and type(command) not in spec.values)):
                    self.report.skipped_commands += 1  # the workers dead-letter these: no outcome is due
                    continue
                commands[command.command_id].append((command, record))
        outcomes: dict[str, list[tuple[CommandOutcome, Record]]] = defaultdict(list)
        for record in self.log.outcomes:
            self.report.outcomes += 1
            if record.error is not None or not isinstance(record.value, CommandOutcome):
                what = record.error or f"a {type(record.value).__name__}, not a CommandOutcome"
                self.bad(4, f"bad record at {_where(record)} (key {record.key}): {what}")
                continue
            outcomes[record.value.command_id].append((record.value, record))
        self.report.commands = len(commands)
        self.outcomes = outcomes

        events_by_command: dict[tuple[str, str, str], list[Event]] = defaultdict(list)
        for topic, per_aggregate in self.aggregates.items():
            for aggregate, events in per_aggregate.items():
                for event in events:
                    events_by_command[(topic, event.command_id, aggregate)].append(event)

        for command_id, sent in commands.items():
            command, record = sent[0]
            name = f"command {command_id} ({type(command).__name__} on {record.topic}, {command.aggregate_id})"
            found = outcomes.get(command_id)
            if not found:
                self.bad(4, f"{name} has no outcome")
                continue
            kinds = {(o.status, o.reason, o.version) for o, _ in found}
            if len(kinds) > 1:
                described = "; ".join(f"{o.status}{' ' + o.reason if o.reason else ''}"
                                      f"{' v' + str(o.version) if o.version is not None else ''} at {_where(r)}"
                                      for o, r in found)
                self.bad(4, f"{name} has {len(kinds)} different outcomes: {described}")
                continue
            outcome = found[0][0]
            event_topic = _EVENTS_OF_COMMANDS.get(record.topic)
            if event_topic not in self.log.events:
                continue  # its events were not read (the topic is missing): nothing to compare with
            caused = events_by_command.get((event_topic, command_id, outcome.aggregate_id), [])
            if outcome.status == REJECTED and caused:
                self.bad(4, f"{name} was rejected ({outcome.reason}) but caused "
                            f"{', '.join(f'{type(e).__name__} v{e.version}' for e in caused)}")
            elif outcome.status == ACCEPTED and outcome.version is not None:
                if not any(e.version == outcome.version for e in caused):
                    self.bad(4, f"{name} was accepted at version {outcome.version}, but no event of "
                                f"{outcome.aggregate_id} at that version comes from it")
            elif outcome.status not in (ACCEPTED, REJECTED):
                self.bad(4, f"{name} has outcome status {outcome.status!r}")

    # [6] views ------------------------------------------------------------------------------
    def check_all_views(self) -> None:
        views = self.log.views or {}
        expected_accounts = {a.account_id: {
            "account_id": a.account_id, "customer_id": a.customer_id, "title": a.title,
            "description": a.description, "balance": a.balance, "status": a.status, "version": a.version}
            for a in self.accounts.values()}
        self.compare_views(ACCOUNT_VIEWS, "account", views, expected_accounts)
        expected_transfers = {t.transfer_id: dataclasses.asdict(t) for t in self.transfers.values()}
        self.compare_views(TRANSFER_VIEWS, "transfer", views, expected_transfers)

        summaries = defaultdict(dict)
        for a in self.accounts.values():
            summaries[a.customer_id][a.account_id] = {
                "account_id": a.account_id, "customer_id": a.customer_id, "title": a.title,
                "balance": a.balance, "status": a.status, "version": a.version}
        expected_customers = {}
        for c in self.customers.values():
            expected_customers[c.customer_id] = {
                "customer_id": c.customer_id, "first_name": c.first_name, "last_name": c.last_name,
                "email": c.email, "phone": c.phone, "address": c.address, "version": c.version,
                "email_hash": c.email_hash, "personal_data": c.personal_data, "key_id": c.key_id,
                "forgotten": c.forgotten,
                "to_accounts": [ToAccount(account_id=i, title=t, owner=o) for i, t, o in c.to_accounts],
                "accounts": summaries.get(c.customer_id, {})}
        for customer_id, accounts in summaries.items():
            if customer_id not in expected_customers:  # accounts of a customer not (yet) created: a placeholder
                expected_customers[customer_id] = {"customer_id": customer_id, "version": 0, "accounts": accounts}
        self.compare_views(CUSTOMER_VIEWS, "customer", views, expected_customers)

        expected_emails = {}
        for c in self.customers.values():
            if not c.forgotten:  # forgetting removes the customer from the email lookup
                expected_emails.setdefault(c.email_key, c.customer_id)
        self.compare_views(EMAIL_INDEX, "email", views, expected_emails)

        # The account statements: one entry per version of each account, keyed `<account id>#<version>`.
        expected_history = {f"{account_id}#{line['version']:012d}": line
                            for account_id, lines in self.history.items() if account_id in self.accounts
                            for line in lines}
        self.report.history_entries = self.compare_views(HISTORY_VIEW, "history entry", views, expected_history)
        # The outcome view: each command's first outcome on bank.command-outcomes (equal re-emissions aside).
        expected_outcomes = {command_id: dataclasses.asdict(found[0][0]) for command_id, found in self.outcomes.items()}
        self.report.outcome_entries = self.compare_views(OUTCOME_VIEW, "command", views, expected_outcomes)
        for table in VIEW_TABLES:
            if table not in self.compared:
                self.bad(6, f"no audit rule for view table {table}: bank verify cannot tell whether it equals the "
                            f"fold of the log; add its rule to check_all_views in streams/ops/verify.py")

    def latest(self, records: list[Record], invariant: int | str, what: str) -> dict[str, Record]:
        """Each key's last record on a compacted changelog (last write wins; a tombstone: absent)."""
        latest: dict[str, Record] = {}
        for record in records:
            if record.error is not None:
                self.bad(invariant, f"{what} {record.key}: undecodable at {_where(record)}: {record.error}")
                continue
            if record.key is None:
                continue
            if record.value is None:
                latest.pop(record.key, None)
            else:
                latest[record.key] = record
        return latest

    def compare_views(self, table: str, noun: str, views: dict[str, list[Record]], expected: dict) -> int:
        """Compares a view with the fold; returns how many of its entries were compared."""
        self.compared.add(table)
        if table not in views:
            if changelog_topic(table) not in self.log.missing_topics:
                self.bad(6, f"view {table} was not read")
            return 0
        latest = self.latest(views[table], 6, f"view {table}")
        for key, record in sorted(latest.items()):
            if key not in expected:
                self.bad(6, f"view {table} has {noun} {key}, which the event log does not know")
                continue
            diffs = self.differences(record.value, expected[key])
            if diffs:
                self.bad(6, f"view {table} of {noun} {key} differs from the fold: {'; '.join(diffs)}")
        for key in sorted(expected.keys() - latest.keys()):
            self.bad(6, f"{noun} {key} has no view in {table}")
        return len(latest)

    # [state] the command processors' tables -----------------------------------------------------
    def expected_states(self, table: str) -> tuple[str, type, dict[str, dict]]:
        """What the fold says each aggregate's `state:<id>` entry of `table` holds: (noun, type, id → fields)."""
        if table == "account_to_state":
            return "account", Account, {a.account_id: dataclasses.asdict(a) for a in self.accounts.values()}
        if table == "transfer_to_state":
            return "transfer", Transfer, {t.transfer_id: dataclasses.asdict(t) for t in self.transfers.values()}
        if table == "customer_to_state":
            return "customer", Customer, {c.customer_id: {
                "customer_id": c.customer_id, "first_name": c.first_name, "last_name": c.last_name,
                "email": c.email, "phone": c.phone, "address": c.address,
                "to_accounts": [ToAccount(account_id=i, title=t, owner=o) for i, t, o in c.to_accounts],
                "version": c.version, "email_hash": c.email_hash, "personal_data": c.personal_data,
                "key_id": c.key_id, "forgotten": c.forgotten} for c in self.customers.values()}
        reservations = self.aggregates.get(topics.EMAIL_EVENTS.name, {})
        return "email", EmailReservation, {email: {
            "email": email, "customer_id": self.emails[email], "version": events[-1].version}
            for email, events in reservations.items() if email in self.emails}

    def check_states(self) -> None:
        states = self.log.states
        if states is None:
            return
        for table, event_topic in STATE_TABLES.items():
            changelog = changelog_topic(table)
            if table not in states:
                if changelog not in self.log.missing_topics:
                    self.bad("state", f"changelog {changelog} was not read")
                continue
            latest = self.latest(states[table], "state", changelog)
            entries = {k[len(STATE_KEY):]: r for k, r in latest.items() if k.startswith(STATE_KEY)}
            self.dedup[table] = {k[len(DEDUP_KEY):]: r for k, r in latest.items() if k.startswith(DEDUP_KEY)}
            if event_topic not in self.log.events:
                continue  # its events were not read (the topic is missing): nothing to fold
            noun, kind, expected = self.expected_states(table)
            for aggregate_id, record in sorted(entries.items()):
                self.report.state_entries += 1
                what = f"{noun} {aggregate_id}: {STATE_KEY}{aggregate_id} at {_where(record)}"
                if aggregate_id not in expected:
                    self.bad("state", f"{what}, but the event log has no such {noun}")
                elif not isinstance(record.value, kind):
                    self.bad("state", f"{what} holds a {type(record.value).__name__}, not a state ({kind.__name__})")
                elif diffs := self.differences(record.value, expected[aggregate_id]):
                    self.bad("state", f"{what} differs from the fold of its events: {'; '.join(diffs)}")
            for aggregate_id in sorted(expected.keys() - entries.keys()):
                self.bad("state", f"{noun} {aggregate_id} has events but no state entry {STATE_KEY}{aggregate_id} "
                                  f"in {changelog}")

    # [4] dedup records ------------------------------------------------------------------------
    def check_dedup(self) -> None:
        """Every command with an outcome has its dedup record in its processor's table: sent again, it is
        answered from that record, never decided again."""
        if self.log.states is None:
            return
        for command_id, found in sorted(self.outcomes.items()):
            outcome, record = found[0]
            if outcome.status == REJECTED and (outcome.reason, outcome.field) == WRONG_KEY:
                continue  # refused before dedup: nothing was decided, so nothing to remember
            name = f"command {command_id} ({outcome.command_type} on {outcome.aggregate_id}, {outcome.status})"
            command_type = COMMAND_TYPES.get(outcome.command_type)
            if command_type is None:
                self.bad(4, f"{name}: its outcome at {_where(record)} names no known command type")
                continue
            table = _STATE_TABLE_OF_COMMANDS.get(topics.command_topic_for(command_type).name)
            if table not in self.dedup:
                continue  # that changelog was not read: reported above
            self.report.dedup_records += 1
            changelog = changelog_topic(table)
            processed = self.dedup[table].get(command_id)
            if processed is None:
                self.bad(4, f"{name} has an outcome but no dedup record {DEDUP_KEY}{command_id} in {changelog}: "
                            f"sent again, it would be decided again")
            elif not isinstance(processed.value, ProcessedCommand):
                self.bad(4, f"{name}: its dedup record in {changelog} ({_where(processed)}) is a "
                            f"{type(processed.value).__name__}, not a ProcessedCommand")
            elif processed.value.aggregate_id != outcome.aggregate_id:
                self.bad(4, f"{name}: its dedup record in {changelog} ({_where(processed)}) is for "
                            f"{processed.value.aggregate_id}, not {outcome.aggregate_id}")

    @staticmethod
    def differences(view: Any, expected: Any) -> list[str]:
        if not isinstance(expected, dict):
            return [] if view == expected else [f"{view!r} != {expected!r} (fold)"]
        diffs = []
        for name, want in expected.items():
            have = getattr(view, name, None)
            if name == "accounts":
                have_by_id = {s.account_id: s for s in (have or ())}
                for account_id in sorted(want.keys() | have_by_id.keys()):
                    if account_id not in have_by_id:
                        diffs.append(f"account {account_id} missing")
                    elif account_id not in want:
                        diffs.append(f"account {account_id} is not the customer's")
                    else:
                        for key, value in want[account_id].items():
                            got = getattr(have_by_id[account_id], key, None)
                            if got != value:
                                diffs.append(f"account {account_id} {key} {got} != {value} (fold)")
                continue
            if isinstance(want, list):
                want = tuple(want)
            if have != want:
                diffs.append(f"{name} {have} != {want} (fold)")
        return diffs


def _open_sealed(key: bytes, key_id: str, blob: bytes) -> str | None:
    """Why `blob` (version byte 1, 12-byte nonce, AES-256-GCM ciphertext and tag, bound to `key_id`) does
    not open with `key` to personal data, or None when it does. Spelled here, apart from streams.services.privacy;
    the plaintext is never returned or shown."""

    if len(key) != 32:
        return f"the key is {len(key)} bytes, not 32"
    if len(blob) <= 13 or blob[:1] != b"\x01":
        return "it is not a sealed blob (version 1, nonce, ciphertext)"
    try:
        plaintext = AESGCM(key).decrypt(blob[1:13], blob[13:], b"streambank.customer:" + key_id.encode("utf-8"))
    except InvalidTag:
        return "authentication failed (another key, or a blob of another customer)"
    try:
        data = json.loads(plaintext)
    except ValueError:
        return "the plaintext is not JSON"
    missing = [name for name in ("first_name", "last_name", "email")
               if not isinstance(data, dict) or not isinstance(data.get(name), str)]
    return f"the plaintext has no {', '.join(missing)}" if missing else None


def run(settings: Settings, *, views: bool = True, timeout: float = 30.0, allow_in_flight: bool = False) -> Report:
    """`bank verify` without the printing: read, then audit."""
    return audit(read_log(settings, views=views, timeout=timeout), check_views=views,
                 allow_in_flight=allow_in_flight)
