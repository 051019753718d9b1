"""Upcasters: records written under a name that no longer exists in code, read as today's types.

A schema whose full name has no record type in `streams.contract.records` (a renamed or split event) is kept in
`schemas/` as `<old.full.name>.v1.avsc`. The codec decodes such bytes with that writer schema into a
plain dict (decimals as `Decimal`, timestamps as int milliseconds) and hands the dict to the upcaster
registered here under the old full name; the upcaster returns the current dataclass. Domain code,
projections and `bank verify` then only ever see current types.

To retire a record name: write its last schema beside the others by hand (never delete a schema that
was ever written to Kafka), add a function below and register it in `UPCASTERS`.
"""
from __future__ import annotations

import typing

from ..domain.accounts import MoneyDeposited
from ..domain.customers import CustomerCreated

Upcaster = typing.Callable[[dict], object]

_ENVELOPE = ("event_id", "aggregate_id", "version", "command_id", "occurred_at")


def _envelope(old: dict) -> dict:
    return {name: old[name] for name in _ENVELOPE}


def funds_deposited_v1(old: dict) -> MoneyDeposited:
    """`streambank.account.FundsDeposited` (v1) was renamed `MoneyDeposited`; `new_balance` became `balance`."""
    return MoneyDeposited(**_envelope(old), amount=old["amount"], balance=old["new_balance"])


def split_name(name: str) -> tuple[str, str]:
    """'Ada King Lovelace' → ('Ada', 'King Lovelace'); one word is a first name; blanks collapse."""
    first, _, last = " ".join(name.split()).partition(" ")
    return first, last


def customer_registered_v1(old: dict) -> CustomerCreated:
    """`streambank.customer.CustomerRegistered` (v1) had one `name`; `CustomerCreated` splits it in two."""
    first_name, last_name = split_name(old["name"])
    return CustomerCreated(**_envelope(old), first_name=first_name, last_name=last_name, email=old["email"],
                           phone=old.get("phone"), address=None)


#: old Avro full name → function(dict decoded with the old schema) → current record.
UPCASTERS: dict[str, Upcaster] = {
    "streambank.account.FundsDeposited": funds_deposited_v1,
    "streambank.customer.CustomerRegistered": customer_registered_v1,
}
