"""State as of a time: an account's view and statement as they were at an instant, folded from the log.

`GET /api/accounts/{id}?as_of=T` and `bank state account ID --as-of T` use it. Two halves:

- the pure fold (`parse_instant`, `account_as_of`): events in, `AccountAsOf` out, with the same
  projections the workers use (`project_account`, `history_entry` in `streams.domain.views`);
- the Kafka read (`read_account_events`): only the key's partition of `bank.accounts.events`, from the
  beginning up to the high watermark captured at the start, with confluent-kafka, filtered by key.

The fold applies events in log order, each only when it is the next version (redeliveries change
nothing, as in the views), and stops at the first next event that occurred after T: the answer is
always a state the account really had, the one after its last event at or before T.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Iterable

from ..contract import topics
from ..contract.avro import Codec, DecodeError
from ..contract.jsonio import to_plain
from ..config import Settings
from ..domain.accounts import ACCOUNT_EVENTS
from ..domain.base import Event
from ..domain.views import AccountView, HistoryEntry, history_entry, is_next, project_account
from ..kafka.reader import FatalRead, Reader, ReadError, ReadTimeout

log = logging.getLogger(__name__)

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class HistoryUnavailable(RuntimeError):
    """Kafka did not answer, or the partition was not read to its end in time."""


@dataclass(frozen=True, slots=True)
class AccountAsOf:
    """The account view and its statement after the last event at or before `as_of` (epoch ms)."""

    as_of: int
    view: AccountView
    history: tuple[HistoryEntry, ...]


# The pure half ----------------------------------------------------------------------------

def parse_instant(text: str) -> int:
    """ISO-8601 (`2024-05-01T12:00:00Z`, with an offset, fractions, or a date) → epoch milliseconds.

    A time without an offset is UTC. Raises ValueError on anything else.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("as_of must be an ISO-8601 date-time")
    cleaned = text.strip()
    if cleaned[-1:] in ("z", "Z"):
        cleaned = cleaned[:-1] + "+00:00"
    try:
        instant = datetime.fromisoformat(cleaned)
    except ValueError:
        raise ValueError(f"as_of is not an ISO-8601 date-time: {text!r}") from None
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=timezone.utc)
    try:
        return (instant - EPOCH) // timedelta(milliseconds=1)  # floor: T=...:00.9995 includes events at ...:00.999
    except OverflowError:
        raise ValueError(f"as_of is out of range: {text!r}") from None


def format_instant(epoch_ms: int) -> str:
    """epoch milliseconds → `2024-05-01T12:00:00.000Z`."""
    return (EPOCH + timedelta(milliseconds=epoch_ms)).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def account_as_of(events: Iterable[Event], as_of: int) -> AccountAsOf | None:
    """The account after its last event with `occurred_at <= as_of`; None if it had none by then.

    `events` are one account's events in log order (duplicates allowed); other types are ignored.
    """
    view: AccountView | None = None
    history: list[HistoryEntry] = []
    for event in events:
        if not isinstance(event, ACCOUNT_EVENTS) or not is_next(view.version if view else 0, event):
            continue
        if event.occurred_at > as_of:
            break
        view = project_account(view, event)
        history.append(history_entry(view, event))
    return None if view is None else AccountAsOf(as_of=as_of, view=view, history=tuple(history))


def as_json(state: AccountAsOf) -> dict:
    """The answer of `GET /api/accounts/{id}?as_of=` and `bank state account --json` (money as strings)."""
    return {**to_plain(state.view), "as_of": format_instant(state.as_of),
            "history": [to_plain(entry) for entry in state.history]}


# The Kafka half ---------------------------------------------------------------------------

def read_account_events(settings: Settings, account_id: str, *, timeout: float = 10.0,
                        codec: Codec | None = None) -> list[Event]:
    """Every event of `account_id` in `bank.accounts.events`, in log order, up to the end seen at start.

    Blocking (run it in a thread from async code). Raises HistoryUnavailable when Kafka does not answer
    or the partition is not read to its end within `timeout` seconds.
    """
    codec = codec or Codec()
    topic = topics.ACCOUNT_EVENTS.name
    key = account_id.encode("utf-8")
    events: list[Event] = []
    with Reader(settings, "history", timeout, **{"enable.partition.eof": False}) as reader:
        try:
            described = reader.topics(topic).get(topic)
            if described is None or described.error is not None or not described.partitions:
                raise HistoryUnavailable(f"topic {topic} does not exist; run `bank topics create`")
            partition = topics.partition_for(key, len(described.partitions))
            low, high = reader.watermarks(topic, partition)
            if high <= low:
                return events
            for message in reader.read({(topic, partition): high}, {(topic, partition): low}):
                if message.key() == key:
                    try:
                        event = codec.decode(message.value())
                    except DecodeError as exc:
                        log.warning("skipping %s[%d]@%d: %s", topic, partition, message.offset(), exc)
                    else:
                        if isinstance(event, Event):
                            events.append(event)
        except ReadTimeout:
            raise HistoryUnavailable(f"timed out after {timeout:g}s reading {topic}[{partition}]") from None
        except FatalRead as exc:
            raise HistoryUnavailable(f"error reading {topic}[{partition}]: {exc.error}") from None
        except ReadError as exc:
            raise HistoryUnavailable(str(exc)) from None
    return events


def account_state_at(settings: Settings, account_id: str, as_of: int, *, timeout: float = 10.0,
                     codec: Codec | None = None) -> AccountAsOf | None:
    """Reads the account's events from Kafka and folds them up to `as_of` (blocking)."""
    return account_as_of(read_account_events(settings, account_id, timeout=timeout, codec=codec), as_of)
