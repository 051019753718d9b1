"""Records that carry a rebuilt read model to the workers (`bank replay views`).

Plain data, no I/O: the CLI folds the log into table entries and ships them in these; the worker's
projecting agents write them under the new generation's key prefix.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class ViewEntries:
    """A batch of one view table's entries (raw table keys and values) for one generation."""

    generation: int
    table: str
    keys: tuple[str, ...]
    values: tuple[bytes, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ViewHandoff:
    """After the entries of one partition: the new generation covers `topics` up to `offsets`
    (exclusive) on `partition`; the agent projects every later record into it too."""

    generation: int
    view: str
    partition: int
    topics: tuple[str, ...]
    offsets: tuple[int, ...]
