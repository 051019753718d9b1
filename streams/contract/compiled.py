"""Avro writers and readers compiled from a record's schema and its dataclass: Python source made once per
record type, with one line per field, that reads the dataclass's attributes and writes the Avro binary
body (and back).

fastavro walks the schema for every record it writes or reads, and `Codec` first turns a dataclass into a
dict for it (and a dict back into a dataclass): a third to a quarter of a deposit's encode time went to
that walk and the dicts. The compiled forms write the same bytes and read the same records; the tests
hold every record type to fastavro's output, both ways.

Only the shapes our schemas use compile (strings, longs, ints, booleans, bytes and decimals as bytes,
unions of null and one of those, arrays of them or of records, nested records): `compile_writer` and
`compile_reader` raise `NotCompilable` for the rest, and `Codec` uses fastavro for those. A compiled
reader serves one writer schema only when it is the record's current one; older versions go through
fastavro's schema resolution.

A compiled form is fast at the cost of fastavro's checks: the `Codec` calls fastavro again whenever a
compiled form raises, so a bad value or corrupt bytes get fastavro's error (or its result), never ours.
"""
from __future__ import annotations

import dataclasses
import typing
from decimal import Decimal

_SMALL = [bytes([z]) for z in range(128)]
_LONG_LIMIT = 1 << 63
_INT_LIMIT = 1 << 31


class NotCompilable(ValueError):
    """A schema shape the compiler does not handle; fastavro does."""


def long_bytes(n: int) -> bytes:
    """`n` as Avro writes a long: zig-zag, then base-128 varint, least significant group first."""
    if not -_LONG_LIMIT <= n < _LONG_LIMIT:
        raise OverflowError(f"{n} does not fit an Avro long")
    z = (n << 1) ^ (n >> 63)
    if z < 128:
        return _SMALL[z]
    out = bytearray()
    while z > 127:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def int_bytes(n: int) -> bytes:
    if not -_INT_LIMIT <= n < _INT_LIMIT:
        raise OverflowError(f"{n} does not fit an Avro int")
    return long_bytes(n)


def read_long(data: bytes, i: int) -> tuple[int, int]:
    """The long at `data[i]` and the offset after it."""
    shift = z = 0
    while True:
        byte = data[i]
        i += 1
        z |= (byte & 0x7F) << shift
        if byte < 0x80:
            return (z >> 1) ^ -(z & 1), i
        shift += 7
        if shift > 63:
            raise ValueError("a varint longer than a long")


class _Source:
    """Python source being written, with fresh local names."""

    def __init__(self):
        self.lines: list[str] = []
        self._n = 0

    def name(self, stem: str) -> str:
        self._n += 1
        return f"{stem}{self._n}"

    def add(self, indent: int, line: str) -> None:
        self.lines.append("    " * indent + line)


_PRIMITIVES = frozenset({"string", "long", "int", "boolean", "bytes", "null"})


def _resolve(schema, named: dict):
    """A schema with a named reference replaced by its definition, and records remembered by name."""
    if isinstance(schema, str):
        if schema in _PRIMITIVES:
            return schema
        if schema in named:
            return named[schema]
        raise NotCompilable(f"unknown type {schema!r}")
    if isinstance(schema, dict):
        kind = schema.get("type")
        if kind == "record":
            full = schema["name"] if "." in schema["name"] or not schema.get("namespace") \
                else f"{schema['namespace']}.{schema['name']}"
            named[full] = named[schema["name"]] = schema
            return schema
        if "logicalType" in schema:
            raise NotCompilable(f"logical type {schema['logicalType']} (Codec's schemas have them plain)")
        if isinstance(kind, str) and kind in _PRIMITIVES:
            return kind
        if kind == "array":
            return schema
        raise NotCompilable(f"type {kind!r}")
    if isinstance(schema, list):
        return schema
    raise NotCompilable(f"schema {schema!r}")


def _optional(schema) -> object | None:
    """The branch of a `["null", X]` union, or None for any other union."""
    if len(schema) == 2 and schema[0] == "null" and schema[1] != "null":
        return schema[1]
    return None


def _field_types(record_type: type) -> dict[str, object]:
    hints = typing.get_type_hints(record_type)
    return {f.name: hints[f.name] for f in dataclasses.fields(record_type)}


def _present(hint):
    """`X` of `X | None` (the hint of a union's second branch)."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if len(args) == 1 and type(None) in typing.get_args(hint) else hint


def _item_type(hint):
    """The item type of `tuple[X, ...]`, or None."""
    if typing.get_origin(hint) is tuple:
        return typing.get_args(hint)[0]
    return None


# --- writing -------------------------------------------------------------------------------------------

def _write(src: _Source, env: dict, schema, hint, value: str, indent: int, named: dict) -> None:
    schema = _resolve(schema, named)
    if schema == "string":
        encoded = src.name("s")
        src.add(indent, f"{encoded} = {value}.encode()")
        src.add(indent, f"put(LONG(len({encoded}))); put({encoded})")
    elif schema == "long":
        src.add(indent, f"put(LONG({value}))")
    elif schema == "int":
        src.add(indent, f"put(INT({value}))")
    elif schema == "boolean":
        src.add(indent, f"put(TRUE if {value} else FALSE)")
    elif schema == "null":
        src.add(indent, f"if {value} is not None: raise TypeError('not null')")
    elif schema == "bytes":
        if hint is Decimal:
            body = src.name("d")
            src.add(indent, f"{body} = DECIMAL({value})")
            src.add(indent, f"put(LONG(len({body}))); put({body})")
        else:
            src.add(indent, f"put(LONG(len({value}))); put({value})")
    elif isinstance(schema, list):
        branch = _optional(schema)
        if branch is None:
            raise NotCompilable(f"union {schema!r}")
        src.add(indent, f"if {value} is None:")
        src.add(indent + 1, "put(NULL)")
        src.add(indent, "else:")
        src.add(indent + 1, "put(SECOND)")
        _write(src, env, branch, _present(hint), value, indent + 1, named)
    elif schema.get("type") == "array":
        items, item = src.name("items"), src.name("item")
        src.add(indent, f"{items} = {value}")
        src.add(indent, f"if {items}:")
        src.add(indent + 1, f"put(LONG(len({items})))")
        src.add(indent + 1, f"for {item} in {items}:")
        _write(src, env, schema["items"], _item_type(hint), item, indent + 2, named)
        src.add(indent, "put(NULL)")  # the array's end: a block of 0 items
    elif schema.get("type") == "record":
        _write_fields(src, env, schema, hint, value, indent, named)
    else:
        raise NotCompilable(f"schema {schema!r}")


def _record_hints(schema: dict, record_type) -> dict:
    """The dataclass's field types, once its fields are the record schema's (else it cannot be compiled)."""
    if record_type is None or not dataclasses.is_dataclass(record_type):
        raise NotCompilable(f"record {schema['name']} without its dataclass")
    hints = _field_types(record_type)
    if sorted(f["name"] for f in schema["fields"]) != sorted(hints):
        raise NotCompilable(f"{schema['name']}'s fields are not {record_type.__name__}'s")
    return hints


def _write_fields(src: _Source, env: dict, schema: dict, record_type: type, value: str, indent: int,
                  named: dict) -> None:
    hints = _record_hints(schema, record_type)
    for field in schema["fields"]:
        _write(src, env, field["type"], hints[field["name"]], f"{value}.{field['name']}", indent, named)


def compile_writer(schema: dict, record_type: type, header: bytes, decimal_bytes) -> typing.Callable[[object], bytes]:
    """`encode(record) -> header + Avro body`, for a `schema` (decimals plain bytes, timestamps plain
    longs) whose fields are exactly `record_type`'s; `decimal_bytes` writes a Decimal's body."""
    if not isinstance(schema, dict) or schema.get("type") != "record":
        raise NotCompilable("not a record schema")
    src = _Source()
    env = {"HEADER": header, "LONG": long_bytes, "INT": int_bytes, "DECIMAL": decimal_bytes,
           "NULL": b"\x00", "SECOND": b"\x02", "TRUE": b"\x01", "FALSE": b"\x00"}
    src.add(0, "def encode(record):")
    src.add(1, "parts = [HEADER]")
    src.add(1, "put = parts.append")
    named: dict = {}
    _resolve(schema, named)
    _write_fields(src, env, schema, record_type, "record", 1, named)
    src.add(1, "return b''.join(parts)")
    return _build(src, env, "encode", record_type)


# --- reading -------------------------------------------------------------------------------------------

def _read_long_into(src: _Source, target: str, indent: int) -> None:
    """`target = <the long at data[i]>`, one byte inline (most of ours are small)."""
    byte = src.name("b")
    src.add(indent, f"{byte} = data[i]")
    src.add(indent, f"if {byte} < 128:")
    src.add(indent + 1, f"{target} = ({byte} >> 1) ^ -({byte} & 1); i += 1")
    src.add(indent, "else:")
    src.add(indent + 1, f"{target}, i = READ_LONG(data, i)")


def _read(src: _Source, env: dict, schema, hint, target: str, indent: int, named: dict) -> None:
    schema = _resolve(schema, named)
    if schema in ("string", "bytes"):
        size = src.name("n")
        _read_long_into(src, size, indent)
        src.add(indent, f"if {size} < 0: raise ValueError('a negative length')")
        if schema == "string":
            src.add(indent, f"{target} = data[i:i + {size}].decode(); i += {size}")
        elif hint is Decimal:
            src.add(indent, f"{target} = DECIMAL_OF(data[i:i + {size}]); i += {size}")
        else:
            src.add(indent, f"{target} = data[i:i + {size}]; i += {size}")
    elif schema in ("long", "int"):
        _read_long_into(src, target, indent)
        if schema == "int":
            src.add(indent, f"if not -INT_LIMIT <= {target} < INT_LIMIT: raise ValueError('not an int')")
    elif schema == "boolean":
        src.add(indent, f"{target} = data[i] == 1; i += 1")
    elif schema == "null":
        src.add(indent, f"{target} = None")
    elif isinstance(schema, list):
        branch = _optional(schema)
        if branch is None:
            raise NotCompilable(f"union {schema!r}")
        src.add(indent, "index = data[i]; i += 1")
        src.add(indent, "if index == 0:")
        src.add(indent + 1, f"{target} = None")
        src.add(indent, "elif index == 2:")
        _read(src, env, branch, _present(hint), target, indent + 1, named)
        src.add(indent, "else: raise ValueError('a union branch out of range')")
    elif schema.get("type") == "array":
        items, count, item = src.name("items"), src.name("count"), src.name("item")
        src.add(indent, f"{items} = []")
        src.add(indent, "while True:")
        _read_long_into(src, count, indent + 1)
        src.add(indent + 1, f"if {count} == 0: break")
        src.add(indent + 1, f"if {count} < 0:")  # a block with its size in bytes after the count
        src.add(indent + 2, f"{count} = -{count}")
        src.add(indent + 2, "_, i = READ_LONG(data, i)")
        src.add(indent + 1, f"for _ in range({count}):")
        _read(src, env, schema["items"], _item_type(hint), item, indent + 2, named)
        src.add(indent + 2, f"{items}.append({item})")
        src.add(indent, f"{target} = tuple({items})")
    elif schema.get("type") == "record":
        _read_fields(src, env, schema, hint, target, indent, named)
    else:
        raise NotCompilable(f"schema {schema!r}")


def _read_fields(src: _Source, env: dict, schema: dict, record_type: type, target: str, indent: int,
                 named: dict) -> None:
    hints = _record_hints(schema, record_type)
    names = [f["name"] for f in schema["fields"]]
    values = {name: src.name("v") for name in names}
    for field in schema["fields"]:
        _read(src, env, field["type"], hints[field["name"]], values[field["name"]], indent, named)
    constructor = src.name("T")
    env[constructor] = record_type
    args = ", ".join(f"{name}={values[name]}" for name in names)
    src.add(indent, f"{target} = {constructor}({args})")


def compile_reader(schema: dict, record_type: type, decimal_of) -> typing.Callable[[bytes, int], tuple[object, int]]:
    """`decode(data, offset) -> (record, offset after it)`, reading bytes `schema` wrote into
    `record_type` (the same fields); `decimal_of` turns a decimal's body into a Decimal."""
    if not isinstance(schema, dict) or schema.get("type") != "record":
        raise NotCompilable("not a record schema")
    src = _Source()
    env = {"READ_LONG": read_long, "DECIMAL_OF": decimal_of, "INT_LIMIT": _INT_LIMIT}
    src.add(0, "def decode(data, i):")
    named: dict = {}
    _resolve(schema, named)
    _read_fields(src, env, schema, record_type, "record", 1, named)
    src.add(1, "return record, i")
    return _build(src, env, "decode", record_type)


def _build(src: _Source, env: dict, name: str, record_type: type):
    text = "\n".join(src.lines) + "\n"
    code = compile(text, f"<avro {name} {record_type.__module__}.{record_type.__qualname__}>", "exec")
    exec(code, env)
    function = env[name]
    function.source = text  # for a reader of tracebacks and tests
    return function
