"""The command processors: decode a command, decide it against its aggregate's state, store the
state and the dedup record, say which events, follow-up commands and outcome to emit.

They work over plain mappings (Faust tables in a worker, dicts in tests).
"""
from __future__ import annotations

import logging
from typing import Callable, MutableMapping

from ..contract import topics
from ..contract.avro import Codec
from ..domain.base import DEFERRED, Reason, Rejection, Reply, derived_id_error, reply_id_for
from ..domain.outcomes import CommandOutcome, PendingSteps, ProcessedCommand, outcome_of
from .handling import Origin, Outgoing, dead_letter, decode_expected, now_ms

log = logging.getLogger(__name__)

STATE_PREFIX = "state:"
COMMAND_PREFIX = "command:"

class CommandProcessor:
    """Turns the commands (and replies) of one aggregate type into events, follow-up commands and
    one outcome per command.

    Dedup by `command_id`: a command seen before re-emits the records it produced the first time
    (same event ids, same versions, same follow-ups), so a crash between the state write and the
    send loses nothing and a duplicate changes nothing.
    """

    def __init__(self, codec: Codec, aggregate, sources: tuple[topics.TopicSpec, ...], event_topic: topics.TopicSpec,
                 states: MutableMapping[str, bytes], processed: MutableMapping[str, bytes],
                 clock: Callable[[], int] = now_ms, pending: MutableMapping[str, bytes] | None = None,
                 prepare: Callable | None = None, applied: Callable | None = None):
        self.codec = codec
        # Adapter hooks around the pure domain (streams.services.privacy for customers): `prepare(state, command,
        # waiting, redelivered)` runs for every command handled. Before `decide` it may rewrite a new command
        # (sealing personal data); `waiting` holds the encoded steps the aggregate still waits on once this
        # command is handled (a reply's own step left out). For a redelivery (`redelivered=True`: its records
        # are re-emitted, nothing is decided) its return is ignored: it only writes again what it keeps
        # (the customer's key), as `_answer_redelivery` does with the dedup and state entries.
        # `applied(events, origin)` runs after its events are stored, and again when a redelivery re-emits
        # them (deleting a forgotten key).
        self.prepare = prepare or (lambda state, command, waiting, redelivered=False: command)
        self.applied = applied
        self.pending = pending  # aggregate id → PendingSteps, for processes that wait on answers
        self.decide = aggregate.decide
        self.evolve = aggregate.evolve
        self.react = aggregate.react
        self.command_types = tuple(t for spec in sources for t in spec.values)
        self.event_topic = event_topic.name
        self.states = states
        self.processed = processed
        self.clock = clock

    #: Told (command type, ACCEPTED / REJECTED / DUPLICATE, reason) of each outcome; streams.worker.metrics sets it.
    observe: Callable[[str, str, str | None], None] = staticmethod(lambda command_type, outcome, reason: None)

    def process(self, key: bytes | None, value: bytes | None, origin: Origin) -> list[Outgoing]:
        command, rejected = decode_expected(self.codec, key, value, origin, self.command_types)
        if rejected:
            return [rejected]
        aggregate_id = command.aggregate_id
        if key is None or key.decode("utf-8", "replace") != aggregate_id:
            # On another key it may sit on another partition than its aggregate: refuse, don't guess.
            if isinstance(command, Reply):
                return [dead_letter(key, value, origin, "a reply's key must be its aggregate id")]
            rejection = Rejection(Reason.INVALID_FIELD, "the record key must be the aggregate id", "key")
            return [self._outcome_record(outcome_of(command, rejection, self.clock()))]
        if rejection := derived_id_error(command):
            # Before the dedup lookup, and not recorded: a client command under a derived id must be
            # neither taken for the step that owns the id nor remembered in the step's place.
            return [self._outcome_record(outcome_of(command, rejection, self.clock()))]

        seen = self.processed.get(command.command_id)
        if seen is not None:
            self.observe(type(command).__name__, "DUPLICATE", None)
            return self._answer_redelivery(command, seen, origin)

        state_bytes = self.states.get(aggregate_id)
        state = self.codec.decode(state_bytes) if state_bytes is not None else None
        waiting = self._waiting(aggregate_id, command)
        command = self.prepare(state, command, waiting[1])
        at = self.clock()
        result = self.decide(state, command, at)
        encoded_events = ()
        new_state = None
        if isinstance(result, tuple) and result:
            for event in result:
                state = self.evolve(state, event)
            encoded_events = tuple(self.codec.encode(e) for e in result)
            new_state = self.codec.encode(state)
        if isinstance(command, Reply) and isinstance(result, Rejection) and not command.settles_command_id:
            log.warning("reply %s to %s refused: %s %s", type(command).__name__, aggregate_id, result.reason,
                        result.message)
        follow_ups = self.react(state, command, result)
        outcome = None if result is DEFERRED else outcome_of(command, result, at)
        if outcome is not None:
            self.observe(outcome.command_type, outcome.status, outcome.reason)
        processed = ProcessedCommand(
            aggregate_id=aggregate_id, outcome=self.codec.encode(outcome) if outcome else None,
            events=encoded_events, commands=tuple(self.codec.encode(c) for c in follow_ups))
        encoded = self.codec.encode(processed)
        self.processed[command.command_id] = encoded
        if isinstance(command, Reply) and command.settles_command_id:
            # A duplicate of the settled command now re-emits the final outcome, not the request.
            self.processed[command.settles_command_id] = encoded
        if new_state is not None:  # after the dedup records: see KeyPrefixed
            self.states[aggregate_id] = new_state
            if self.applied is not None:
                self.applied(result, origin)
        if self.pending is not None:
            self._wait_on(aggregate_id, waiting, processed.commands, at)
        return self._records(processed, follow_ups, outcome.command_id if outcome else None)

    def _waiting(self, aggregate_id: str, command) -> tuple[PendingSteps | None, tuple[bytes, ...]]:
        """The aggregate's pending steps, and those of them still waited on once `command` is handled:
        all but the one a reply answers (`<step>.reply`), whether the reply was accepted or refused."""
        data = self.pending.get(aggregate_id) if self.pending is not None else None
        if data is None:
            return None, ()
        before: PendingSteps = self.codec.decode(data)
        if not isinstance(command, Reply):
            return before, before.commands
        return before, tuple(step for step in before.commands
                             if reply_id_for(self.codec.decode(step).command_id) != command.command_id)

    def _wait_on(self, aggregate_id: str, waiting: tuple[PendingSteps | None, tuple[bytes, ...]],
                 issued: tuple[bytes, ...], at: int) -> None:
        """Keeps what the aggregate still waits on: the steps not answered yet and those just issued.

        An answered step is never waited on again, even when its answer was a refusal (an email taken, a
        refund refused) that changes no state: the redrive would otherwise ask it again every few seconds
        forever. A stray reply (answering no pending step) leaves the steps as they are.
        """
        before, still = waiting
        steps = still + tuple(step for step in issued if step not in still)
        if not steps:
            if before is not None:
                del self.pending[aggregate_id]  # answered, and nothing more to wait for
        elif before is None or steps != before.commands:
            issued_at = at if issued or before is None else before.issued_at
            self.pending[aggregate_id] = self.codec.encode(PendingSteps(commands=steps, issued_at=issued_at))

    def _records(self, processed: ProcessedCommand, follow_ups, outcome_id: str | None) -> list[Outgoing]:
        """What to send; `outcome_id` keys the outcome (a reply's outcome is the settled command's)."""
        out = [Outgoing(self.event_topic, processed.aggregate_id, e) for e in processed.events]
        for command, encoded in zip(follow_ups, processed.commands):
            out.append(Outgoing(topics.command_topic_for(type(command)).name, command.aggregate_id, encoded))
        if processed.outcome is not None:
            out.append(Outgoing(topics.COMMAND_OUTCOMES.name, outcome_id, processed.outcome))
        return out

    def _answer_redelivery(self, command, seen: bytes, origin: Origin) -> list[Outgoing]:
        processed: ProcessedCommand = self.codec.decode(seen)
        # Write both entries again: if the first writes reached local RocksDB but not the
        # changelog before a crash (or with an aborted transaction), this puts them on the changelog too.
        self.processed[command.command_id] = seen
        state_bytes = self.states.get(processed.aggregate_id)
        events = [self.codec.decode(e) for e in processed.events]
        state = self.codec.decode(state_bytes) if state_bytes is not None else None
        self.prepare(state, command, (), redelivered=True)
        behind = [e for e in events if e.version > (state.version if state else 0)]
        if behind:
            # The dedup record reached the changelog but the state written after it did not (a crash
            # between the two): apply the recorded events, never deciding again.
            for event in behind:
                state = self.evolve(state, event)
            self.states[processed.aggregate_id] = self.codec.encode(state)
        elif state_bytes is not None:
            self.states[processed.aggregate_id] = state_bytes
        if self.applied is not None and events:
            self.applied(tuple(events), origin)
        outcome_id = self.codec.decode(processed.outcome).command_id if processed.outcome else None
        return self._records(processed, [self.codec.decode(c) for c in processed.commands], outcome_id)

    def _outcome_record(self, outcome: CommandOutcome) -> Outgoing:
        self.observe(outcome.command_type, outcome.status, outcome.reason)
        return Outgoing(topics.COMMAND_OUTCOMES.name, outcome.command_id, self.codec.encode(outcome))

