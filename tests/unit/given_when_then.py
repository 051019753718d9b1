"""Given / when / then for the pure deciders.

    account.given(opened(), deposited("10.00", "10.00", 2)).when(Withdraw(...)).then_rejected(Reason.X)

`given(*events)` folds the events with `evolve` into a state, `when(command)` calls
`decide(state, command, now_ms)`, and `then(...)` / `then_rejected(...)` / `then_deferred()` assert
the result. With `react`, `then_issues(...)` asserts the follow-up commands `react` asks for.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import reduce
from typing import Any, Callable

from streams.domain.base import DEFERRED, Event, Rejection

NOW = 1_700_000_000_000  # a fixed "now" in ms; tests never read the clock


def fold(evolve: Callable, events, state=None):
    return reduce(evolve, events, state)


@dataclass(frozen=True)
class Aggregate:
    decide: Callable
    evolve: Callable
    react: Callable | None = None

    def given(self, *events: Event) -> "Given":
        return Given(self, fold(self.evolve, events))

    def given_nothing(self) -> "Given":
        return Given(self, None)

    def run(self, *commands, now_ms: int = NOW) -> tuple[Event, ...]:
        """Decides and applies each command in turn (all must be accepted or DEFERRED); every event emitted."""
        state, emitted = None, []
        for command in commands:
            result = self.decide(state, command, now_ms)
            assert not isinstance(result, Rejection), f"{command} was rejected: {result}"
            if result is DEFERRED:
                continue
            emitted.extend(result)
            state = fold(self.evolve, result, state)
        return tuple(emitted)


@dataclass(frozen=True)
class Given:
    aggregate: Aggregate
    state: Any

    def when(self, command, now_ms: int = NOW) -> "Then":
        return Then(self.aggregate, self.state, self.aggregate.decide(self.state, command, now_ms), command)


@dataclass(frozen=True)
class Then:
    aggregate: Aggregate
    state_before: Any
    result: tuple[Event, ...] | Rejection
    command: Any = None

    @property
    def events(self) -> tuple[Event, ...]:
        assert not isinstance(self.result, Rejection), f"expected events, got {self.result}"
        assert isinstance(self.result, tuple), f"decide must return a tuple, got {type(self.result)}"
        return self.result

    @property
    def state(self):
        """The state after folding the emitted events into the given state."""
        return fold(self.aggregate.evolve, self.events, self.state_before)

    @property
    def reactions(self) -> tuple:
        """What `react` issues for this command and result, given the state after the result."""
        assert self.aggregate.react is not None, "this aggregate was given no react"
        after = self.state if isinstance(self.result, tuple) else self.state_before
        reactions = self.aggregate.react(after, self.command, self.result)
        assert isinstance(reactions, tuple), f"react must return a tuple, got {type(reactions)}"
        return reactions

    def then_issues(self, *expected) -> "Then":
        assert self.reactions == expected
        return self

    def then_deferred(self) -> "Then":
        assert self.result is DEFERRED, f"expected DEFERRED, got {self.result}"
        return self

    def then(self, *expected: Event) -> "Then":
        assert self.events == expected
        return self

    def then_state(self, expected) -> "Then":
        assert self.state == expected
        return self

    def then_rejected(self, reason: str, field: str | None = ...) -> Rejection:
        assert isinstance(self.result, Rejection), f"expected a {reason} rejection, got {self.result}"
        assert self.result.reason == reason, self.result
        if field is not ...:
            assert self.result.field == field, self.result
        assert self.result.message, "a rejection always explains itself"
        return self.result
