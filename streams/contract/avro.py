"""Avro single-object encoding of every record, with writer-schema lookup by fingerprint.

A value is `C3 01`, the 8-byte little-endian CRC-64-AVRO fingerprint of the writer's schema
(Parsing Canonical Form), then the Avro binary body. Readers resolve the writer's schema from
`schemas/` by that fingerprint and read into the current schema of the same name, so records
written by any schema version ever kept in `schemas/` stay readable. A schema whose name no longer has
a record type (renamed or split) is read as written and handed to its upcaster (`streams.contract.upcasters`).

Every reader also accepts the Confluent wire format: `00`, the 4-byte big-endian schema id, the body.
The writer's schema is then fetched from the Schema Registry by id (`streams.contract.schema_registry`, cached),
and read exactly as above: a schema that is one of `schemas/` (same fingerprint) goes the same way,
upcasters included. Writers frame records as `BANK_RECORD_FORMAT` says (`single-object`, the default,
or `confluent`, which registers each current schema under its record's full name on first use).
"""
from __future__ import annotations

import dataclasses
import io
import json
import struct
import types
import typing
from decimal import Decimal
from pathlib import Path

import fastavro
from fastavro.schema import to_parsing_canonical_form

from . import records
from . import schema_registry as registry_api
from .compiled import NotCompilable, compile_reader, compile_writer

MAGIC = b"\xc3\x01"
HEADER_SIZE = 10
CONFLUENT_MAGIC = 0  # the Confluent wire format: 00, the schema id (4 bytes, big-endian), the body
CONFLUENT_HEADER_SIZE = 5
SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"
TIMESTAMP_FIELDS = frozenset({"occurred_at", "issued_at"})


class DecodeError(ValueError):
    """Bytes that are not a record we can read: bad header, unknown schema, corrupt body."""


# CRC-64-AVRO, as the Avro specification defines it.
_EMPTY = 0xC15D213AA4D7A795
_TABLE = []
for _i in range(256):
    _fp = _i
    for _ in range(8):
        _fp = (_fp >> 1) ^ (_EMPTY & -(_fp & 1))
    _TABLE.append(_fp)


def fingerprint(canonical_form: str) -> bytes:
    fp = _EMPTY
    for byte in canonical_form.encode("utf-8"):
        fp = (fp >> 8) ^ _TABLE[(fp ^ byte) & 0xFF]
    return struct.pack("<Q", fp)


# Schemas derived from the dataclasses --------------------------------------------------

DECIMAL = {"type": "bytes", "logicalType": "decimal", "precision": 18, "scale": 2}


def _avro_type(annotation, field_name: str, defined: set):
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        return ["null", _avro_type(inner[0], field_name, defined)]
    if annotation is str:
        return "string"
    if annotation is int:
        if field_name in TIMESTAMP_FIELDS:
            return {"type": "long", "logicalType": "timestamp-millis"}
        return "long"
    if annotation is bool:
        return "boolean"
    if annotation is bytes:
        return "bytes"
    if annotation is Decimal:
        return dict(DECIMAL)
    if typing.get_origin(annotation) is tuple:
        return {"type": "array", "items": _avro_type(typing.get_args(annotation)[0], field_name, defined)}
    if dataclasses.is_dataclass(annotation):
        return record_schema(annotation, defined)
    raise TypeError(f"no Avro type for {annotation!r} ({field_name})")


def _avro_default(field: dataclasses.Field):
    value = field.default
    if isinstance(value, Decimal):  # Avro writes a bytes default as a string of code points 0-255
        return decimal_bytes(value).decode("latin-1")
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, bytes):  # Avro writes a bytes default as a string of code points 0-255
        return value.decode("latin-1")
    return value


def record_schema(record_type: type, defined: set | None = None) -> dict | str:
    """The Avro schema of a dataclass; a nested type already defined is referred to by name."""
    defined = set() if defined is None else defined
    name = records.full_name(record_type)
    if name in defined:
        return name
    defined.add(name)
    hints = typing.get_type_hints(record_type)
    fields = []
    for field in dataclasses.fields(record_type):
        avro_field = {"name": field.name, "type": _avro_type(hints[field.name], field.name, defined)}
        if field.default is not dataclasses.MISSING:
            avro_field["default"] = _avro_default(field)
        fields.append(avro_field)
    namespace, _, short = name.rpartition(".")
    doc = (record_type.__doc__ or "").strip().splitlines()[0] if record_type.__doc__ else ""
    schema = {"type": "record", "name": short, "namespace": namespace, "fields": fields}
    if doc and not doc.startswith(record_type.__name__ + "("):
        schema["doc"] = doc
    return schema


def schema_file(record_type: type, schema_dir: Path = SCHEMA_DIR) -> Path:
    return schema_dir / f"{records.full_name(record_type)}.avsc"


def write_schemas(schema_dir: Path = SCHEMA_DIR) -> list[Path]:
    """(Re)writes the current schema of every record type; older versions stay untouched."""
    written = []
    for record_type in records.RECORD_TYPES:
        path = schema_file(record_type, schema_dir)
        path.write_text(json.dumps(record_schema(record_type), indent=2) + "\n")
        written.append(path)
    return written


# The codec --------------------------------------------------------------------------------

def _plain(schema, decimals: bool = True):
    """The schema fastavro reads and writes with: timestamps stay plain ints of milliseconds (no
    datetime objects on hot paths) and, with `decimals`, money's decimal(18,2) is plain bytes that the
    record converters turn into `Decimal` and back (`decimal_bytes`, `decimal_of`): fastavro's
    logical-type dispatch cost a fifth of each encode and a third of each decode of a money record.
    Upcasters keep fastavro's decimals: they are handed dicts with `Decimal` values."""
    if isinstance(schema, dict):
        if schema.get("logicalType") == "timestamp-millis":
            return schema["type"]
        if decimals and schema.get("logicalType") == "decimal" and schema.get("type") == "bytes" \
                and schema.get("precision") == DECIMAL["precision"] and schema.get("scale", 0) == DECIMAL["scale"]:
            return "bytes"
        return {k: _plain(v, decimals) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_plain(s, decimals) for s in schema]
    return schema


_SCALE = DECIMAL["scale"]
_UNSCALED_LIMIT = 10 ** DECIMAL["precision"]


def decimal_bytes(value) -> bytes:
    """A Decimal as Avro's decimal(18,2) body: the unscaled value, big-endian two's complement, in the
    fewest bytes (as fastavro writes it). Refused (ValueError) when it does not fit decimal(18,2):
    digits past the second place that are not zero, or 16 digits or more before the point."""
    if value.__class__ is not Decimal:
        return value  # bytes already (a record copied as it was read)
    scaled = value.scaleb(_SCALE)
    unscaled = int(scaled)
    if unscaled != scaled:
        raise ValueError(f"{value} has more than {_SCALE} decimal places")
    if not -_UNSCALED_LIMIT < unscaled < _UNSCALED_LIMIT:
        raise ValueError(f"{value} has more digits than decimal({DECIMAL['precision']},{_SCALE}) holds")
    return unscaled.to_bytes((unscaled.bit_length() + 8) // 8, "big", signed=True)


def decimal_of(value) -> Decimal:
    """A decimal(18,2) field as read: its body (bytes), its schema default (fastavro hands a bytes
    default over as a str of code points 0-255), or a Decimal (a writer schema of another scale)."""
    if isinstance(value, str):
        value = value.encode("latin-1")
    if value.__class__ is bytes:
        return Decimal(int.from_bytes(value, "big", signed=True)).scaleb(-_SCALE)
    return value


def _to_python_factory(record_type: type):
    """dict → dataclass: arrays back to tuples (of records where nested), decimal defaults to Decimal."""
    hints = typing.get_type_hints(record_type)
    converters = {}
    for field in dataclasses.fields(record_type):
        hint = hints[field.name]
        if typing.get_origin(hint) is tuple:
            item = typing.get_args(hint)[0]
            if dataclasses.is_dataclass(item):
                inner = _to_python_factory(item)
                converters[field.name] = lambda items, inner=inner: tuple(inner(i) for i in items)
            else:
                converters[field.name] = tuple
        elif hint is Decimal:
            converters[field.name] = decimal_of
        elif hint is bytes:  # a bytes field's default comes over as a str, like a decimal's
            converters[field.name] = lambda v: v.encode("latin-1") if isinstance(v, str) else v
    if not converters:
        return lambda d: record_type(**d)

    def convert(d: dict):
        for name, to_python in converters.items():
            d[name] = to_python(d[name])
        return record_type(**d)
    return convert


def _to_avro_factory(record_type: type):
    """dataclass → dict: arrays of records as lists of dicts, decimals as their bodies (`decimal_bytes`)."""
    hints = typing.get_type_hints(record_type)
    names = [f.name for f in dataclasses.fields(record_type)]
    nested = {}
    money = [name for name in names if hints[name] is Decimal]
    for name in names:
        hint = hints[name]
        if typing.get_origin(hint) is tuple and dataclasses.is_dataclass(typing.get_args(hint)[0]):
            nested[name] = _to_avro_factory(typing.get_args(hint)[0])
    if not nested and not money:
        return lambda obj: {name: getattr(obj, name) for name in names}

    def convert(obj):
        d = {name: getattr(obj, name) for name in names}
        for name in money:
            d[name] = decimal_bytes(d[name])
        for name, inner in nested.items():
            d[name] = [inner(item) for item in d[name]]
        return d
    return convert


def _compiled_writer(schema: dict, record_type: type, header: bytes, enabled: bool = True):
    if not enabled:
        return None
    try:
        return compile_writer(schema, record_type, header, decimal_bytes)
    except NotCompilable:
        return None


def _compiled_reader(schema: dict, record_type: type, enabled: bool = True):
    if not enabled:
        return None
    try:
        return compile_reader(schema, record_type, decimal_of)
    except NotCompilable:
        return None


_FROM_ENV = object()


class Codec:
    """Encodes dataclass records to Avro (single-object or Confluent-framed) and back from either.

    `registry` is a `schema_registry.RegistryClient` (or None: no registry, framed records are
    undecodable); by default it and `record_format` come from the environment (`Settings.from_env`).
    With `compiled` (the default) each record type is written and, in its current schema, read by code
    compiled from its schema (`streams.contract.compiled`); without it, by fastavro alone.
    """

    def __init__(self, schema_dir: Path = SCHEMA_DIR, record_types=records.RECORD_TYPES,
                 upcasters: dict[str, typing.Callable[[dict], object]] | None = None,
                 registry=_FROM_ENV, record_format: str | None = None, cache_size: int = 1024,
                 compiled: bool = True):
        from .upcasters import UPCASTERS  # old full name → function(dict) → current record
        upcasters = UPCASTERS if upcasters is None else upcasters
        if registry is _FROM_ENV or record_format is None:
            from ..config import Settings  # config imports nothing of contract: no circle
            settings = Settings.from_env()
            registry = registry_api.client_from_settings(settings) if registry is _FROM_ENV else registry
            record_format = record_format or settings.record_format
        if record_format == "confluent" and registry is None:
            raise RuntimeError("BANK_RECORD_FORMAT=confluent needs a schema registry: set BANK_SCHEMA_REGISTRY_URL "
                               "(`bank registry start` runs one on 127.0.0.1:8081)")
        self.record_format = record_format
        self.registry = registry
        self._upcasters = upcasters
        self._schema_texts: dict[type, tuple[str, str]] = {}  # record type → (full name, current schema JSON)
        # record type → (header, fastavro schema, dataclass → dict, compiled writer or None)
        self._by_type: dict[type, tuple[bytes, object, typing.Callable, typing.Callable | None]] = {}
        # fingerprint → (writer schema, reader schema or None, dict → record, compiled reader or None)
        self._readers: dict[bytes, tuple[object, object | None, typing.Callable, typing.Callable | None]] = {}
        self._plains: dict[type, dict] = {}
        self._compiled = compiled
        current: dict[str, tuple[bytes, object]] = {}
        types_by_name = {records.full_name(t): t for t in record_types}
        writers: dict[bytes, tuple[str, object]] = {}
        plains: dict[str, dict] = {}  # full name → its current schema, as `_plain` gives it
        for path in sorted(schema_dir.glob("*.avsc")):
            raw = json.loads(path.read_text())
            full = f"{raw.get('namespace')}.{raw['name']}" if raw.get("namespace") else raw["name"]
            plain = _plain(raw, decimals=full in types_by_name)
            parsed = fastavro.parse_schema(plain, _force=True)
            canonical = to_parsing_canonical_form(raw)
            fp = fingerprint(canonical)
            writers[fp] = (full, parsed)
            if path.name == f"{full}.avsc":
                current[full] = (fp, parsed)
                plains[full] = plain
                if full in types_by_name:
                    # The file's text as it is: Apicurio matches a lookup by exact text, so a producer that
                    # sends the .avsc file (AvroSerializer, auto.register.schemas=False) finds this id.
                    self._schema_texts[types_by_name[full]] = (full, path.read_text().strip())
        for full, record_type in types_by_name.items():
            if full not in current:
                raise RuntimeError(f"schemas/ has no {full}.avsc; run `python -m streams.contract.avro` to write it")
            fp, parsed = current[full]
            self._plains[record_type] = plains[full]
            self._by_type[record_type] = (MAGIC + fp, parsed, _to_avro_factory(record_type),
                                          _compiled_writer(plains[full], record_type, MAGIC + fp, compiled))
        for fp, (full, parsed) in writers.items():
            if full not in types_by_name:
                if full in upcasters:  # a retired (renamed or split) record: read as written, then upcast
                    self._readers[fp] = (parsed, None, upcasters[full], None)
                continue
            record_type = types_by_name[full]
            if current[full][0] == fp:  # the current schema: compiled, no resolution to do
                self._readers[fp] = (parsed, None, _to_python_factory(record_type),
                                     _compiled_reader(plains[full], record_type, compiled))
            else:
                self._readers[fp] = (parsed, current[full][1], _to_python_factory(record_type), None)
        self._current = {full: current[full] for full in types_by_name}
        self._types_by_name = types_by_name
        self._ids = None if registry is None else registry_api.IdLookup(registry, self._reader_for_text,
                                                                        max_entries=cache_size)
        # What encode() writes each type with: single-object headers now, Confluent ones on first use.
        self._writers = dict(self._by_type) if record_format == "single-object" else {}

    @classmethod
    def from_settings(cls, settings, **kwargs) -> "Codec":
        return cls(registry=registry_api.client_from_settings(settings), record_format=settings.record_format,
                   **kwargs)

    # --- the Confluent wire format
    def _confluent_writer(self, record_type: type):
        """Registers the type's current schema under its full name (idempotent): its id frames the records."""
        _, schema, to_avro, _ = self._by_type[record_type]
        full, text = self._schema_texts[record_type]
        schema_id = self.registry.register(registry_api.subject_for(full), text)
        self._ids.pin(schema_id, self._readers[self._current[full][0]])
        header = bytes([CONFLUENT_MAGIC]) + schema_id.to_bytes(4, "big")
        writer = (header, schema, to_avro, _compiled_writer(self._plains[record_type], record_type, header,
                                                                  self._compiled))
        self._writers[record_type] = writer
        return writer

    def prepare(self) -> None:
        """Resolves every writer's schema id now (a worker does this at start: no lookup mid-stream later)."""
        if self.record_format == "confluent":
            for record_type in self._by_type:
                if record_type not in self._writers:
                    self._confluent_writer(record_type)

    def schema_id(self, record_type: type) -> int:
        """The registry id this codec frames the type with (registering its schema if need be)."""
        header = (self._writers.get(record_type) or self._confluent_writer(record_type))[0]
        return int.from_bytes(header[1:5], "big")

    def _reader_for_text(self, text: str):
        """A registry schema → the reader entry of `decode`; a schema of `schemas/` reuses its own."""
        try:
            raw = json.loads(text)
            canonical = to_parsing_canonical_form(raw)
        except Exception as exc:  # not JSON, or not a valid Avro schema
            raise registry_api.RegistryError(f"the registry's schema is not a valid Avro schema: {exc}") from exc
        entry = self._readers.get(fingerprint(canonical))
        if entry is not None:
            return entry
        if not isinstance(raw, dict) or raw.get("type") != "record":
            raise registry_api.RegistryError("the registry's schema is not a named Avro record")
        full = f"{raw.get('namespace')}.{raw['name']}" if raw.get("namespace") and "." not in raw["name"] else raw["name"]
        try:
            parsed = fastavro.parse_schema(_plain(raw, decimals=full in self._types_by_name), _force=True)
        except Exception as exc:
            raise registry_api.RegistryError(f"the registry's schema of {full} does not parse: {exc}") from exc
        if full in self._types_by_name:  # a version not kept in schemas/: read into today's schema
            return (parsed, self._current[full][1], _to_python_factory(self._types_by_name[full]), None)
        if full in self._upcasters:
            return (parsed, None, self._upcasters[full], None)
        raise registry_api.RegistryError(f"the registry's schema is {full}, no record type of this pipeline")

    def encode(self, record) -> bytes:
        try:
            header, schema, to_avro, compiled = self._writers[type(record)]
        except KeyError:
            header, schema, to_avro, compiled = self._confluent_writer(type(record))
        if compiled is not None:
            try:
                return compiled(record)
            except Exception:  # a value the compiled form cannot write: fastavro says what is wrong
                pass
        out = io.BytesIO()
        out.write(header)
        fastavro.schemaless_writer(out, schema, to_avro(record))
        return out.getvalue()

    def decode(self, data: bytes):
        if isinstance(data, (bytes, bytearray, memoryview)) and len(data) >= CONFLUENT_HEADER_SIZE \
                and data[0] == CONFLUENT_MAGIC:
            schema_id = int.from_bytes(data[1:CONFLUENT_HEADER_SIZE], "big")
            if self._ids is None:
                raise DecodeError(f"a Confluent-framed record (schema id {schema_id}) but no schema registry is "
                                  "configured (BANK_SCHEMA_REGISTRY_URL)")
            try:
                entry = self._ids.get(schema_id)
            except registry_api.RegistryError as exc:
                raise DecodeError(f"schema id {schema_id}: {exc}") from exc
            return self._read(data, CONFLUENT_HEADER_SIZE, entry)
        if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) < HEADER_SIZE or data[:2] != MAGIC:
            raise DecodeError("not an Avro single-object encoded record (missing C3 01 header), nor Confluent-framed (00)")
        entry = self._readers.get(bytes(data[2:HEADER_SIZE]))
        if entry is None:
            raise DecodeError(f"unknown schema fingerprint {bytes(data[2:HEADER_SIZE]).hex()}")
        return self._read(data, HEADER_SIZE, entry)

    def _read(self, data, offset: int, entry):
        writer, reader, to_python, compiled = entry
        if compiled is not None and data.__class__ is bytes:
            try:
                record, end = compiled(data, offset)
                if end == len(data):
                    return record
            except Exception:  # corrupt bytes: fastavro's reading below names the fault
                pass
        stream = io.BytesIO(data)
        stream.seek(offset)
        try:
            value = fastavro.schemaless_reader(stream, writer, reader)
        except Exception as exc:  # fastavro raises many types on corrupt input
            raise DecodeError(f"corrupt Avro body: {exc.__class__.__name__}: {exc}") from exc
        if stream.tell() != len(data):
            raise DecodeError("trailing bytes after the Avro body")
        try:
            return to_python(value)
        except (TypeError, KeyError, ValueError) as exc:
            raise DecodeError(f"record does not fit its type: {exc}") from exc


if __name__ == "__main__":
    for written in write_schemas():
        print(written.relative_to(SCHEMA_DIR.parent))
