"""View generations: which copy of each read model the workers serve.

A view (`accounts`, `transfers`, `customers`, `emails`, `outcomes`) keeps its entries in its Faust
tables under a key prefix per generation: generation 0 is the bare key (what every worker wrote before
generations existed), generation N > 0 is `\\x1fgN\\x1f<key>`. `bank replay views` builds generation
N+1 beside the serving one and then moves the pointer, a JSON record in the compacted topic
`bank.view-generations`: `{"serving": {"accounts": 2, ...}, "building": {"accounts": 3}}`.
Workers read it when they start and follow it in a background thread (`streams.kafka.pointer`).
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field


POINTER_KEY = b"views"
POINTER_PARTITION = 0
SEPARATOR = "\x1f"  # not in any id a client sends, so a prefixed key never meets a bare one


def prefix(generation: int) -> str:
    return "" if generation == 0 else f"{SEPARATOR}g{generation}{SEPARATOR}"


def strip(key: str, generation: int) -> str | None:
    """The view key of a table key of `generation`, None when the key belongs to another generation."""
    if generation == 0:
        return None if key.startswith(SEPARATOR) else key
    wanted = prefix(generation)
    return key[len(wanted):] if key.startswith(wanted) else None


def handoff_key(generation: int, topic: str, partition: int) -> str:
    """Where an agent keeps "generation G takes every record of topic[partition] from offset O on"."""
    return f"{SEPARATOR}handoff{SEPARATOR}{generation}{SEPARATOR}{topic}{SEPARATOR}{partition}"


@dataclass
class Pointer:
    serving: dict[str, int] = field(default_factory=dict)
    building: dict[str, int] = field(default_factory=dict)

    def serving_of(self, view: str) -> int:
        return self.serving.get(view, 0)

    def to_json(self) -> bytes:
        return json.dumps({"serving": self.serving, "building": self.building}, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes | None) -> "Pointer":
        if not data:
            return cls()
        parsed = json.loads(data)
        return cls({k: int(v) for k, v in parsed.get("serving", {}).items()},
                   {k: int(v) for k, v in parsed.get("building", {}).items()})


class ServedGenerations:
    """What this worker knows of the pointer; the projecting agents and the HTTP API read it."""

    def __init__(self, pointer: Pointer | None = None):
        self.pointer = pointer or Pointer()
        self._stop = threading.Event()

    def serving(self, view: str) -> int:
        return self.pointer.serving_of(view)

    def building(self, view: str) -> int | None:
        generation = self.pointer.building.get(view)
        return generation if generation is not None and generation > self.serving(view) else None

    def note_building(self, view: str, generation: int) -> None:
        """An agent met the new generation's records before the pointer reached this worker."""
        if generation > self.serving(view) and self.pointer.building.get(view, -1) < generation:
            self.pointer = Pointer(dict(self.pointer.serving), {**self.pointer.building, view: generation})

    def stop(self) -> None:
        self._stop.set()
