"""Every schema version kept in `schemas/`, in order, and its registration with a Schema Registry.

`schemas/<full.name>.avsc` is a record's current schema; `schemas/<full.name>.vN.avsc` are the versions
before it (v1 the oldest), also those of retired names (read through `streams.upcasters`). Each full name
is one subject (RecordNameStrategy). Registering goes oldest first with the subject's compatibility set to
BACKWARD, so the registry checks each version against the one before, as Confluent's tools would.
"""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

from .avro import SCHEMA_DIR
from .schema_registry import (COMPATIBILITY, Incompatible, RegistryClient, RegistryError, client_from_settings,
                              subject_for)

_VERSIONED = re.compile(r"^(?P<name>.+)\.v(?P<version>\d+)\.avsc$")


class RegistrationError(RuntimeError):
    """The registry could not be asked (unreachable, or an error other than an incompatible schema)."""


@dataclasses.dataclass
class Version:
    subject: str
    path: Path
    schema: str  # the file's text, stripped as confluent-kafka strips it (Apicurio looks up exact text)
    order: int  # 1, 2, ... for vN files; a current schema comes after all of them


@dataclasses.dataclass
class Row:
    subject: str
    file: str
    ok: bool
    status: str  # registered | already registered | compatible | new subject | refused | not checked
    schema_id: int | None = None
    detail: str = ""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def line(self) -> str:
        what = f"{self.status} (id {self.schema_id})" if self.schema_id is not None else self.status
        return f"{'ok     ' if self.ok else 'REFUSED'} {self.file:<52} {what}" + (f": {self.detail}" if self.detail else "")


def history(schema_dir: Path = SCHEMA_DIR) -> dict[str, list[Version]]:
    """Subject → its versions, oldest first."""
    subjects: dict[str, list[Version]] = {}
    for path in sorted(schema_dir.glob("*.avsc")):
        raw = json.loads(path.read_text())
        name = raw["name"] if "." in raw["name"] or not raw.get("namespace") else f"{raw['namespace']}.{raw['name']}"
        match = _VERSIONED.match(path.name)
        if match:
            if match["name"] != name:
                raise RegistrationError(f"{path.name} holds the schema of {name}")
            order = int(match["version"])
        elif path.name == f"{name}.avsc":
            order = 1 << 30
        else:
            raise RegistrationError(f"{path.name}: neither <full.name>.avsc nor <full.name>.vN.avsc")
        subjects.setdefault(subject_for(name), []).append(
            Version(subject_for(name), path, path.read_text().strip(), order))
    return {s: sorted(v, key=lambda version: version.order) for s, v in sorted(subjects.items())}


def register_all(settings, check: bool = False, report=lambda row: None, schema_dir: Path = SCHEMA_DIR,
                 client: RegistryClient | None = None) -> list[Row]:
    client = client or client_from_settings(settings)
    rows: list[Row] = []
    try:
        if not check and client.compatibility() != COMPATIBILITY:
            client.set_compatibility(COMPATIBILITY)
        for subject, versions in history(schema_dir).items():
            rows += _subject(client, subject, versions, check, report)
    except RegistryError as exc:
        raise RegistrationError(str(exc)) from None
    return rows


def _subject(client: RegistryClient, subject: str, versions: list[Version], check: bool, report) -> list[Row]:
    rows = []
    known = bool(client.versions(subject))
    if known and not check and client.compatibility(subject) != COMPATIBILITY:
        client.set_compatibility(COMPATIBILITY, subject)
    gap = False  # --check: an earlier version is not registered, so the registry cannot judge the later ones
    for version in versions:
        name = version.path.name
        schema_id = client.lookup(subject, version.schema) if known else None
        if schema_id is not None:
            row = Row(subject, name, True, "already registered", schema_id)
        elif check:
            if gap:
                row = Row(subject, name, True, "not checked", detail="an earlier version is not registered yet")
            elif not known:
                row = Row(subject, name, True, "new subject")
            else:
                ok = client.is_compatible(subject, version.schema)
                row = Row(subject, name, ok, "compatible" if ok else "refused",
                          detail="" if ok else f"not {COMPATIBILITY} compatible with the latest registered version")
            gap = True
        else:
            try:
                schema_id = client.register(subject, version.schema)
                row = Row(subject, name, True, "registered", schema_id)
            except Incompatible as exc:
                row = Row(subject, name, False, "refused", detail=str(exc))
            if row.ok and not known:
                client.set_compatibility(COMPATIBILITY, subject)  # explicitly: Apicurio's default is NONE
                known = True
        report(row)
        rows.append(row)
        if not row.ok:
            break  # the later versions of this subject would be judged against the wrong one
    return rows
