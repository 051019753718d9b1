"""The messages between a transfer and its two accounts: steps the saga asks for, and their replies.

Step command ids derive from the transfer id (`<transfer>.debit`, `.credit`, `.refund`), reply ids
from the step's (`<step>.reply`): asking twice or answering twice is applied once.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import ClassVar

from .base import Command, Reply, reply_id_for


@dataclass(frozen=True, slots=True, kw_only=True)
class _AccountStep(Command):
    account_id: str
    transfer_id: str
    amount: Decimal
    issued_by_process: ClassVar[bool] = True  # by the transfer saga only

    @property
    def aggregate_id(self) -> str:
        return self.account_id


@dataclass(frozen=True, slots=True, kw_only=True)
class DebitAccount(_AccountStep):
    """Take a transfer's amount from its source account."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CreditAccount(_AccountStep):
    """Give a transfer's amount to its target account."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RefundAccount(_AccountStep):
    """Give a debited amount back to the source account after the credit failed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class _StepReply(Reply):
    transfer_id: str
    account_id: str
    accepted: bool
    reason: str | None = None

    @property
    def aggregate_id(self) -> str:
        return self.transfer_id


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordDebit(_StepReply):
    """The source account's answer to `DebitAccount`."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordCredit(_StepReply):
    """The target account's answer to `CreditAccount`."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordRefund(_StepReply):
    """The source account's answer to `RefundAccount`."""


ACCOUNT_STEPS = (DebitAccount, CreditAccount, RefundAccount)
STEP_REPLIES = (RecordDebit, RecordCredit, RecordRefund)
REPLY_TO_STEP = {DebitAccount: RecordDebit, CreditAccount: RecordCredit, RefundAccount: RecordRefund}


def reply_to(step: Command, rejection_reason: str | None) -> _StepReply:
    """The reply an account sends to the transfer for `step`: accepted, or refused with a reason."""
    return REPLY_TO_STEP[type(step)](
        command_id=reply_id_for(step.command_id), transfer_id=step.transfer_id, account_id=step.account_id,
        accepted=rejection_reason is None, reason=rejection_reason)
