"""A worker's local RocksDB state against Kafka: find what cannot be right, and drop it.

The local state is a cache of the tables' changelog topics. When a changelog was deleted or
recreated (a disaster recovery, `bank replay state`, a wiped broker) the local databases keep
offsets past the changelog's end; Faust then stops with "persisted offset is higher than the last
offset in that topic (highwater)" or waits in recovery for offsets that never come (faust #158,
#432). A database whose persisted offset is at or past its changelog's end is deleted before the
worker starts, so Faust recovers that partition from the changelog as on a fresh machine.
"""
from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from rocksdict import AccessType, Options, Rdict

from ..contract import topics
from ..config import Settings
from ..kafka.reader import Reader, Unreachable
from ..topology import TABLES

log = logging.getLogger(__name__)

OFFSET_KEY = b"__faust\0offset__"  # where faust's rocksdb store keeps a partition's changelog offset


@dataclass(frozen=True)
class Mismatch:
    table: str
    partition: int
    path: Path
    persisted: int | None
    end: int | None  # the changelog partition's end offset; None when the topic does not exist
    why: str


def tables_dir(settings: Settings) -> Path:
    return settings.worker_dir / "v1" / "tables"


def persisted_offset(path: Path) -> int | None:
    # raw_mode as Faust opens it: keys and values are plain bytes, not pickles
    db = Rdict(str(path), options=Options(raw_mode=True), access_type=AccessType.read_only())
    try:
        value = db.get(OFFSET_KEY)
        return int(value) if value is not None else None
    finally:
        db.close()


def local_partitions(settings: Settings) -> list[tuple[str, int, Path]]:
    found = []
    for path in sorted(tables_dir(settings).glob("*-*.db")):
        name, _, partition = path.name[:-len(".db")].rpartition("-")
        if name in TABLES and partition.isdigit():
            found.append((name, int(partition), path))
    return found


def inconsistent(settings: Settings, timeout: float = 30.0) -> list[Mismatch]:
    """The local table partitions that do not match their changelog on Kafka."""
    partitions = local_partitions(settings)
    if not partitions:
        return []
    with Reader(settings, "localstate-check", timeout) as reader:
        try:
            existing = reader.topics(timeout=timeout)
        except Unreachable as exc:
            raise RuntimeError(str(exc)) from None
        out = []
        for table, partition, path in partitions:
            try:
                persisted = persisted_offset(path)
            except Exception as exc:  # unreadable: it is only a cache, so it goes
                out.append(Mismatch(table, partition, path, None, None, f"unreadable ({exc})"))
                continue
            changelog = topics.changelog_topic(table)
            if changelog not in existing:
                if persisted is not None:
                    out.append(Mismatch(table, partition, path, persisted, None, "its changelog topic is gone"))
                continue
            _, end = reader.watermarks(changelog, partition, timeout=timeout)
            if persisted is not None and persisted >= end:
                out.append(Mismatch(table, partition, path, persisted, end,
                                    f"persisted offset {persisted} is past the changelog's last offset {end - 1}"))
        return out


def drop(mismatches: list[Mismatch]) -> None:
    for mismatch in mismatches:
        shutil.rmtree(mismatch.path, ignore_errors=True)


def reset(settings: Settings) -> Path:
    """Deletes every local table of this worker (it recovers them all from the changelogs)."""
    path = settings.worker_dir / "v1"
    shutil.rmtree(path, ignore_errors=True)
    return path


def repair(settings: Settings) -> list[Mismatch]:
    """Drops what `inconsistent` finds, logging each; returns what was dropped."""
    found = inconsistent(settings)
    for mismatch in found:
        log.warning("local state %s[%d] dropped, Faust recovers it from the changelog: %s",
                    mismatch.table, mismatch.partition, mismatch.why)
    drop(found)
    return found
