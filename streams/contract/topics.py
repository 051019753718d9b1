"""Every topic: its name, key, value types, single writer and readers. Declared once, here.

`topology.md` describes the same table in prose; `bank topics create` creates these.
"""
from __future__ import annotations

from dataclasses import dataclass

from aiokafka.partitioner import murmur2

from ..domain import accounts, customers, emails, rebuild, outcomes, transfer_steps, transfers, views


@dataclass(frozen=True)
class TopicSpec:
    name: str
    key: str
    values: tuple[type, ...]
    writer: str
    readers: tuple[str, ...]
    compacted: bool = False

    @property
    def value_names(self) -> frozenset[str]:
        return frozenset(t.__name__ for t in self.values)


CLIENTS = "clients (HTTP API, bank send, streams.client, any producer)"

CUSTOMER_COMMANDS = TopicSpec(
    "bank.customers.commands", "customer_id", customers.CUSTOMER_COMMANDS,
    writer=CLIENTS, readers=("process_customer_commands",))
ACCOUNT_COMMANDS = TopicSpec(
    "bank.accounts.commands", "account_id", accounts.ACCOUNT_COMMANDS,
    writer=CLIENTS + "; process_transfer_commands for the debit, credit and refund steps",
    readers=("process_account_commands",))
TRANSFER_COMMANDS = TopicSpec(
    "bank.transfers.commands", "transfer_id", transfers.TRANSFER_COMMANDS,
    writer=CLIENTS, readers=("process_transfer_commands",))
EMAIL_COMMANDS = TopicSpec(
    "bank.emails.commands", "email", emails.EMAIL_COMMANDS,
    writer="process_customer_commands", readers=("process_email_commands",))
CUSTOMER_REPLIES = TopicSpec(
    "bank.customers.replies", "customer_id", customers.CUSTOMER_REPLIES,
    writer="process_email_commands", readers=("process_customer_commands",))
TRANSFER_REPLIES = TopicSpec(
    "bank.transfers.replies", "transfer_id", transfer_steps.STEP_REPLIES,
    writer="process_account_commands", readers=("process_transfer_commands",))
CUSTOMER_EVENTS = TopicSpec(
    "bank.customers.events", "customer_id", customers.CUSTOMER_EVENTS,
    writer="process_customer_commands", readers=("project_customers", "bank verify"))
ACCOUNT_EVENTS = TopicSpec(
    "bank.accounts.events", "account_id", accounts.ACCOUNT_EVENTS,
    writer="process_account_commands", readers=("project_accounts", "bank verify"))
TRANSFER_EVENTS = TopicSpec(
    "bank.transfers.events", "transfer_id", transfers.TRANSFER_EVENTS,
    writer="process_transfer_commands", readers=("project_transfers", "bank verify"))
EMAIL_EVENTS = TopicSpec(
    "bank.emails.events", "email", emails.EMAIL_EVENTS,
    writer="process_email_commands", readers=("bank verify",))
COMMAND_OUTCOMES = TopicSpec(
    "bank.command-outcomes", "command_id", (outcomes.CommandOutcome,),
    writer="the command processors, each for its own commands",
    readers=("record_outcomes", "bank send --wait", "bank verify"))
DEADLETTER = TopicSpec(
    "bank.deadletter", "the original record's key", (),
    writer="every agent, for records it cannot decode or handle", readers=("operators",))
CUSTOMER_ACCOUNTS = TopicSpec(
    "bank.customer-accounts", "customer_id", (views.AccountSummary,),
    writer="project_accounts", readers=("project_customers",))
CUSTOMER_EMAILS = TopicSpec(
    "bank.customer-emails", "email's keyed hash", (views.EmailRegistered,),
    writer="project_customers", readers=("index_emails",), compacted=True)
#: The changelog of the `customer_to_key` table (streams.services.privacy): raw 32-byte AES keys, a tombstone
#: once the customer is forgotten. Not Avro: a key is not a record.
CUSTOMER_KEYS = TopicSpec(
    "bank.customer-keys", "customer_id", (),
    writer="process_customer_commands (the customer_to_key table)",
    readers=("bank verify",), compacted=True)  # and the table itself: its recovery, GET /api/customers

VIEW_REBUILD = TopicSpec(
    "bank.view-rebuild", "the view's name (records are sent to an explicit partition)",
    (rebuild.ViewEntries, rebuild.ViewHandoff),
    writer="bank replay views",
    readers=("project_accounts", "project_transfers", "project_customers", "index_emails", "record_outcomes"))
VIEW_GENERATIONS = TopicSpec(
    "bank.view-generations", "\"views\"", (),
    writer="bank replay views, bank replay state", readers=("bank verify",), compacted=True)  # and every worker, outside its agents

ALL_TOPICS: tuple[TopicSpec, ...] = (
    CUSTOMER_COMMANDS, ACCOUNT_COMMANDS, TRANSFER_COMMANDS, EMAIL_COMMANDS,
    CUSTOMER_REPLIES, TRANSFER_REPLIES,
    CUSTOMER_EVENTS, ACCOUNT_EVENTS, TRANSFER_EVENTS, EMAIL_EVENTS,
    COMMAND_OUTCOMES, DEADLETTER, CUSTOMER_ACCOUNTS, CUSTOMER_EMAILS, CUSTOMER_KEYS,
    VIEW_REBUILD, VIEW_GENERATIONS,
)
EVENT_TOPICS = (CUSTOMER_EVENTS, ACCOUNT_EVENTS, TRANSFER_EVENTS, EMAIL_EVENTS)
COMMAND_TOPICS = (CUSTOMER_COMMANDS, ACCOUNT_COMMANDS, TRANSFER_COMMANDS, EMAIL_COMMANDS)


APP_ID = "streambank"

def changelog_topic(table: str) -> str:
    return f"{APP_ID}-{table}-changelog"


def command_topic_for(command_type: type) -> TopicSpec:
    """Where a command (or a reply) of this type is sent."""
    for spec in COMMAND_TOPICS + (CUSTOMER_REPLIES, TRANSFER_REPLIES):
        if command_type in spec.values:
            return spec
    raise KeyError(f"no command topic carries {command_type.__name__}")


def partition_for(key: bytes, partitions: int) -> int:
    """The partition of `key`, as aiokafka, the Java client and librdkafka's murmur2_random compute it."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
