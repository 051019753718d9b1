"""The projecting agents' side of view generations (see `streams/services/generations.py`).

Each projecting agent reads its topics plus `bank.view-rebuild`. It projects every record into the
serving generation and, once a new generation has been handed the partition, into that one too.
The new generation's entries (folded by `bank replay views`) and then its handoff arrive on the
same agent, in order, so the new generation has one writer at a time and never misses a record:
at the handoff the agent first folds what arrived after the CLI's snapshot (`[offset, end)`, read
straight from Kafka), then keeps projecting every later record into both generations. Projections
apply only the next version of each aggregate, so a record applied twice changes nothing.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Callable, MutableMapping

from ..contract import topics
from ..contract.avro import Codec, DecodeError
from ..config import Settings
from ..kafka.reader import read_range
from ..domain.rebuild import ViewEntries, ViewHandoff
from ..services.generations import ServedGenerations, handoff_key, prefix
from ..topology import VIEW_BY_NAME
from ..services.handling import KeyPrefixed, Origin, Outgoing

log = logging.getLogger(__name__)

Project = Callable[[bytes | None, bytes | None, Origin], list[Outgoing]]


class ViewAgent:
    """One view's projection across generations."""

    def __init__(self, view: str, tables: dict[str, MutableMapping], registry: ServedGenerations, codec: Codec,
                 settings: Settings, make: Callable[[Callable[[str], MutableMapping]], Project]):
        self.view = view
        self.tables = tables
        self.registry = registry
        self.codec = codec
        self.settings = settings
        self.make = make
        self._projectors: dict[int, Project] = {}
        self._handoffs: dict[tuple[int, str, int], int] = {}

    def table(self, name: str, generation: int) -> MutableMapping:
        return self.tables[name] if generation == 0 else KeyPrefixed(self.tables[name], prefix(generation))

    def projector(self, generation: int) -> Project:
        if generation not in self._projectors:
            self._projectors[generation] = self.make(lambda name: self.table(name, generation))
        return self._projectors[generation]

    @property
    def marker_table(self) -> MutableMapping:
        return self.tables[VIEW_BY_NAME[self.view].table]

    def handoff_offset(self, generation: int, topic: str, partition: int) -> int | None:
        where = (generation, topic, partition)
        if where not in self._handoffs:
            stored = self.marker_table.get(handoff_key(generation, topic, partition))
            if stored is None:
                return None  # not handed off (yet): look again next time
            self._handoffs[where] = int(stored)
        return self._handoffs[where]

    async def handle(self, key: bytes | None, value: bytes | None, origin: Origin) -> list[Outgoing]:
        if origin.topic == topics.VIEW_REBUILD.name:
            if key == self.view.encode():
                await self.rebuild(value, origin)
            return []
        out = self.projector(self.registry.serving(self.view))(key, value, origin)
        building = self.registry.building(self.view)
        if building is not None:
            start = self.handoff_offset(building, origin.topic, origin.partition)
            if start is not None and origin.offset >= start:
                self.projector(building)(key, value, origin)  # its outputs are the serving one's
        return out

    async def rebuild(self, value: bytes | None, origin: Origin) -> None:
        try:
            record = self.codec.decode(value)
        except DecodeError as exc:
            log.error("undecodable record on %s[%d]@%d: %s", origin.topic, origin.partition, origin.offset, exc)
            return
        if record.generation <= self.registry.serving(self.view):
            return  # a retired build read again (redelivery): never write into the serving generation
        self.registry.note_building(self.view, record.generation)
        if record.generation != self.registry.building(self.view):
            return  # an abandoned build, superseded by a newer one
        if isinstance(record, ViewEntries):
            table = self.table(record.table, record.generation)
            for entry_key, entry_value in zip(record.keys, record.values):
                table[entry_key] = entry_value
        elif isinstance(record, ViewHandoff):
            project = self.projector(record.generation)
            for topic, start in zip(record.topics, record.offsets):
                tail = await self._read_tail(topic, record.partition, start)
                for offset, tail_key, tail_value in tail:
                    project(tail_key, tail_value, Origin(topic, record.partition, offset))
                self.marker_table[handoff_key(record.generation, topic, record.partition)] = str(start).encode()
                self._handoffs[(record.generation, topic, record.partition)] = start
                log.warning("view %s generation %d took over %s[%d] at %d (%d records after the snapshot)",
                            self.view, record.generation, topic, record.partition, start, len(tail))

    async def _read_tail(self, topic: str, partition: int, start: int):
        """The records after the snapshot; retried, because the handoff must not go on without them."""
        delay = 1.0
        while True:
            try:
                return await asyncio.to_thread(read_range, self.settings, topic, partition, start)
            except Exception as exc:  # Kafka unreachable for a while: the new generation waits, the old serves
                log.warning("reading %s[%d] from %d for the view handoff failed (%s); retrying", topic, partition,
                            start, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
