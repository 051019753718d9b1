"""The one outcome every command gets: accepted (with the version it produced) or rejected."""
from __future__ import annotations

from dataclasses import dataclass

from .base import Command, Event, Rejection, Reply

ACCEPTED = "ACCEPTED"
REJECTED = "REJECTED"
PENDING = "PENDING"


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandOutcome:
    command_id: str
    command_type: str
    aggregate_id: str
    status: str
    reason: str | None = None
    message: str | None = None
    field: str | None = None
    version: int | None = None  # the aggregate's version after the command, when accepted
    occurred_at: int = 0


def outcome_of(command: Command, result: tuple[Event, ...] | Rejection, now_ms: int) -> CommandOutcome | None:
    """The outcome `result` gives: the command's own, or for a reply the outcome of the command it
    settles (None when it settles nothing: replies are not commands a user waits for)."""
    command_id, command_type = command.command_id, type(command).__name__
    if isinstance(command, Reply):
        if command.settles_command_id is None:
            return None
        command_id, command_type = command.settles_command_id, command.settles_command_type
    if isinstance(result, Rejection):
        return CommandOutcome(command_id=command_id, command_type=command_type, aggregate_id=command.aggregate_id,
                              status=REJECTED, reason=result.reason, message=result.message, field=result.field,
                              occurred_at=now_ms)
    return CommandOutcome(command_id=command_id, command_type=command_type, aggregate_id=command.aggregate_id,
                          status=ACCEPTED, version=result[-1].version if result else None, occurred_at=now_ms)


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessedCommand:
    """What a command produced (encoded), kept so a redelivery re-emits exactly the same records."""

    aggregate_id: str
    outcome: bytes | None = None  # None while the outcome is deferred, and for replies that settle nothing
    events: tuple[bytes, ...] = ()
    commands: tuple[bytes, ...] = ()  # follow-up commands and replies it issued


@dataclass(frozen=True, slots=True, kw_only=True)
class PendingSteps:
    """Follow-up commands a process waits on (a transfer's next step, a customer's email reservation).

    If no answer arrives, they are issued again with the same ids: a lost message delays the
    process, it never strands it.
    """

    commands: tuple[bytes, ...]
    issued_at: int
