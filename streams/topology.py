"""Every command processor and every view, declared once, here: its agent, the topics it reads, the
tables it writes, what it emits and the service that does the work.

In the spirit of Confluent's `Schemas.java` (every topic and serde in one place) and pyeventsourcing's
`EventProcessor` (a projection is one declaration): `streams.worker.wiring.wire` builds the agents and
tables from it, `bank replay views` folds with its projectors, the metrics know the view agents by it,
`bank verify` reads (and must have a rule for) every view table it names, the view generation pointer
covers its views, and `topology.md`'s agents and tables sections are written from it
(`python -m streams.topology` rewrites them; `tests/unit/test_topology.py` checks they agree).
Adding a view or a command: see "How to add a view" / "How to add a command" in `topology.md`.
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Callable, MutableMapping

from .contract import topics
from .contract.avro import Codec
from .contract.topics import TopicSpec
from .domain import accounts, customers, emails, transfers
from .services.handling import Origin, Outgoing
from .services.projections import AccountProjector, CustomerProjector, EmailIndexer, OutcomeRecorder, TransferProjector

#: A projecting service's handling of one record: the records to emit.
Project = Callable[[bytes | None, bytes | None, Origin], list[Outgoing]]


@dataclass(frozen=True)
class Table:
    """A Faust table (RocksDB, changelogged to `streambank-<name>-changelog` unless it has a topic of its own)."""

    name: str
    holds: str  #: key → value, as `topology.md` and the table's Faust `help` say it
    changelog: TopicSpec | None = None  #: its own changelog topic, declared in `streams.contract.topics`
    route: str | None = None  #: the HTTP path (as the OpenAPI description names it) that serves its entries
    routed_by: str = ""  #: what that route routes a GET by (the table's key)
    #: What the route answers: the view's record, when `streams.http.openapi` is to describe the route
    #: from it (its schema `view_schema(record)`, its summary `holds`); None where it is described by hand.
    record: type | None = None

    @property
    def changelog_topic(self) -> str:
        return self.changelog.name if self.changelog is not None else topics.changelog_topic(self.name)


@dataclass(frozen=True)
class Processor:
    """A command processor: decides its aggregate's commands (and replies) into events and outcomes."""

    agent: str
    doc: str
    aggregate: ModuleType  #: the pure domain module: `decide`, `evolve`, `react`
    sources: tuple[TopicSpec, ...]  #: co-partitioned (same key, same partition count); the first names its partitions
    events: TopicSpec
    state: Table  #: `state:<id>` → the aggregate, `command:<id>` → the dedup record
    emits: tuple[TopicSpec, ...]
    pending: Table | None = None  #: id → the steps a process waits on (sagas, reservations)
    keys: Table | None = None  #: id → the key sealing its personal data (streams.services.privacy)

    @property
    def tables(self) -> tuple[Table, ...]:
        return tuple(t for t in (self.state, self.pending, self.keys) if t is not None)

    @property
    def agent_sources(self) -> tuple[TopicSpec, ...]:
        return self.sources


@dataclass(frozen=True)
class View:
    """A read model: one agent folds its sources into its tables (and `bank replay views` the same way)."""

    name: str  #: as the view generation pointer names it
    agent: str
    doc: str
    sources: tuple[TopicSpec, ...]  #: what it folds (co-partitioned); its agent reads `bank.view-rebuild` too
    tables: tuple[Table, ...]  #: the first is the view's own: served, waited on (`?wait=`), freshness metric
    make: Callable[..., Project]  #: (codec, *its tables as mappings) → the projecting service
    emits: tuple[TopicSpec, ...] = ()

    @property
    def table(self) -> str:
        return self.tables[0].name

    @property
    def table_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tables)

    @property
    def source_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.sources)

    @property
    def agent_sources(self) -> tuple[TopicSpec, ...]:
        return self.sources + (topics.VIEW_REBUILD,)

    def projector(self, codec: Codec, table: Callable[[str], MutableMapping]) -> Project:
        return self.make(codec, *(table(name) for name in self.table_names))


def _ledger(aggregate: str, holds: str) -> Table:
    return Table(f"{aggregate}_to_state", f"state:<{aggregate} id> → {holds}; command:<command id> → ProcessedCommand (dedup)")


PROCESSORS: tuple[Processor, ...] = (
    Processor(
        "process_customer_commands", "Decide customer commands into events and one outcome each; reserve emails first.",
        customers, (topics.CUSTOMER_COMMANDS, topics.CUSTOMER_REPLIES), topics.CUSTOMER_EVENTS,
        _ledger("customer", "Customer"),
        emits=(topics.EMAIL_COMMANDS, topics.CUSTOMER_EVENTS, topics.COMMAND_OUTCOMES, topics.DEADLETTER),
        pending=Table("customer_to_pending_steps",
                      "customer id → PendingSteps: the email reservation a new customer waits on"),
        keys=Table("customer_to_key", "customer id → AES key (streams.services.privacy)", topics.CUSTOMER_KEYS)),
    Processor(
        "process_account_commands", "Decide account commands into events and one outcome each.",
        accounts, (topics.ACCOUNT_COMMANDS,), topics.ACCOUNT_EVENTS, _ledger("account", "Account"),
        emits=(topics.ACCOUNT_EVENTS, topics.TRANSFER_REPLIES, topics.COMMAND_OUTCOMES, topics.DEADLETTER)),
    Processor(
        "process_transfer_commands",
        "Run each transfer's saga: initiate, then debit, credit or refund as the accounts answer.",
        transfers, (topics.TRANSFER_COMMANDS, topics.TRANSFER_REPLIES), topics.TRANSFER_EVENTS,
        _ledger("transfer", "Transfer"),
        emits=(topics.TRANSFER_EVENTS, topics.ACCOUNT_COMMANDS, topics.COMMAND_OUTCOMES, topics.DEADLETTER),
        pending=Table("transfer_to_pending_steps", "transfer id → PendingSteps: the account step a transfer waits on")),
    Processor(
        "process_email_commands", "Reserve each email for exactly one customer.",
        emails, (topics.EMAIL_COMMANDS,), topics.EMAIL_EVENTS,
        Table("email_to_reservation",
              "state:<email> → EmailReservation (the reservations); command:<command id> → ProcessedCommand"),
        emits=(topics.EMAIL_EVENTS, topics.CUSTOMER_REPLIES, topics.COMMAND_OUTCOMES, topics.DEADLETTER)),
)

VIEWS: tuple[View, ...] = (
    View(
        "accounts", "project_accounts", "Project account events into the account view and statement.",
        (topics.ACCOUNT_EVENTS,),
        (Table("account_to_view", "account id → AccountView: the account view", route="/api/accounts/{account_id}",
               routed_by="account id"),
         Table("account_version_to_entry", "account id#version → HistoryEntry: the account statement",
               route="/api/accounts/{account_id}/history", routed_by="account id")),
        lambda codec, views, statement: AccountProjector(codec, views, statement).project,
        emits=(topics.CUSTOMER_ACCOUNTS, topics.DEADLETTER)),
    View(
        "transfers", "project_transfers", "Project transfer events into the transfer view.",
        (topics.TRANSFER_EVENTS,), (Table("transfer_to_view", "transfer id → Transfer: the transfer view", route="/api/transfers/{transfer_id}",
                routed_by="transfer id"),),
        lambda codec, views: TransferProjector(codec, views).project, emits=(topics.DEADLETTER,)),
    View(
        "customers", "project_customers", "Project customer events and account summaries into the customer view.",
        (topics.CUSTOMER_EVENTS, topics.CUSTOMER_ACCOUNTS),
        (Table("customer_to_view", "customer id → CustomerView: profile, to-accounts, accounts with balances",
                route="/api/customers/{customer_id}", routed_by="customer id"),),
        lambda codec, views: CustomerProjector(codec, views).project,
        emits=(topics.CUSTOMER_EMAILS, topics.DEADLETTER)),
    View(
        "emails", "index_emails", "Index customers by email.",
        (topics.CUSTOMER_EMAILS,), (Table("email_to_customer", "email → customer id: the email lookup", route="/api/customers",
                routed_by="email (`?email=`), then customer id"),),
        lambda codec, index: EmailIndexer(codec, index).index, emits=(topics.DEADLETTER,)),
    View(
        "outcomes", "record_outcomes", "Record each command's outcome for queries and waits.",
        (topics.COMMAND_OUTCOMES,),
        (Table("command_to_outcome", "command id → CommandOutcome: answers GET /api/commands/{id}",
                route="/api/commands/{command_id}", routed_by="command id"),),
        lambda codec, outcomes: OutcomeRecorder(codec, outcomes).record, emits=(topics.DEADLETTER,)),
)

# -- derived: nothing below is declared ----------------------------------------------------------

AGENTS: tuple[Processor | View, ...] = PROCESSORS + VIEWS
ALL_TABLES: tuple[Table, ...] = tuple(t for spec in AGENTS for t in spec.tables)
#: Every table changelogged to `streambank-<name>-changelog`, name → what it maps (its Faust `help`).
TABLES: dict[str, str] = {t.name: t.holds for t in ALL_TABLES if t.changelog is None}
#: Tables whose changelog is a topic of our own (declared in `streams.contract.topics`).
OWN_CHANGELOG_TABLES: dict[str, Table] = {t.name: t for t in ALL_TABLES if t.changelog is not None}
#: agent → the topics it reads (co-partitioned); the first names its transactional tasks' partitions.
AGENT_SOURCES: dict[str, tuple[TopicSpec, ...]] = {spec.agent: spec.agent_sources for spec in AGENTS}
WRITER_OF_TABLE: dict[str, str] = {t.name: spec.agent for spec in AGENTS for t in spec.tables}
VIEW_BY_NAME: dict[str, View] = {view.name: view for view in VIEWS}
VIEW_OF_TABLE: dict[str, str] = {t: view.name for view in VIEWS for t in view.table_names}
#: Every view table: what `bank verify` must have an audit rule for.
VIEW_TABLES: tuple[str, ...] = tuple(VIEW_OF_TABLE)
#: View agent → its view's own table: its freshness is the agent's (streams.worker.metrics).
VIEW_AGENTS: dict[str, str] = {view.agent: view.table for view in VIEWS}
#: Each command processor's table → the events its state folds.
STATE_TABLES: dict[str, str] = {p.state.name: p.events.name for p in PROCESSORS}


# -- topology.md --------------------------------------------------------------------------------

def _code(names) -> str:
    return ", ".join(f"`{n}`" for n in names) or "—"


def agents_markdown() -> str:
    rows = ["| agent | reads | writes tables | emits |", "|---|---|---|---|"]
    for spec in AGENTS:
        reads = " + ".join(f"`{s.name}`" for s in spec.agent_sources)
        rows.append(f"| `{spec.agent}` | {reads} | {_code(t.name for t in spec.tables)} | {_code(s.name for s in spec.emits)} |")
    return "\n".join(rows)


def tables_markdown() -> str:
    rows = ["| table | key → value | changelog | written by |", "|---|---|---|---|"]
    for table in ALL_TABLES:
        rows.append(f"| `{table.name}` | {table.holds} | `{table.changelog_topic}` | `{WRITER_OF_TABLE[table.name]}` |")
    return "\n".join(rows)


def routes_markdown() -> str:
    rows = ["| route | table | routed by |", "|---|---|---|"]
    for table in ALL_TABLES:
        if table.route is not None:
            rows.append(f"| `GET {table.route}` | `{table.name}` | {table.routed_by} |")
    return "\n".join(rows)


#: Each view table's HTTP path (the OpenAPI description has a GET for each).
ROUTES: dict[str, str] = {t.name: t.route for t in ALL_TABLES if t.route is not None}

SECTIONS = {"agents": agents_markdown, "tables": tables_markdown, "routes": routes_markdown}
_MARKED = re.compile(r"(<!-- generated: (\w+) \(python -m streams.topology\) -->\n)(.*?)(\n<!-- end: \2 -->)", re.S)


def written_sections(text: str) -> dict[str, str]:
    """The generated sections of `topology.md` as they stand in `text`."""
    return {m.group(2): m.group(3) for m in _MARKED.finditer(text)}


def rewrite(text: str) -> str:
    return _MARKED.sub(lambda m: m.group(1) + SECTIONS[m.group(2)]() + m.group(4), text)


TOPOLOGY_MD = Path(__file__).resolve().parents[1] / "topology.md"

if __name__ == "__main__":
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else TOPOLOGY_MD
    path.write_text(rewrite(path.read_text()))
    print(f"rewrote {', '.join(written_sections(path.read_text()))} in {path}")
