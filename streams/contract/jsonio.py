"""JSON at the edges (HTTP, `bank send`): commands in, records out. Money is a string, never a float."""
from __future__ import annotations

import dataclasses
import json
import types
import typing
import uuid
from decimal import Decimal, InvalidOperation

import orjson

from . import records


class InputError(ValueError):
    """Input a client can fix: it becomes a 400 with `{error: {code, message, field}}`."""

    def __init__(self, message: str, field: str | None = None, code: str = "INVALID_INPUT"):
        super().__init__(message)
        self.message = message
        self.field = field
        self.code = code


def new_id() -> str:
    return str(uuid.uuid4())


def parse_json(body: bytes | str) -> typing.Any:
    """Parses JSON keeping numbers exact (a JSON 12.5 becomes Decimal('12.5'), never a float)."""
    try:
        return json.loads(body, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"the body is not valid JSON: {exc}", code="INVALID_JSON") from None


def as_money(value, field: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (str, int, Decimal)):
        raise InputError(f"{field} must be a decimal string such as \"12.50\"", field)
    try:
        amount = Decimal(value.strip()) if isinstance(value, str) else Decimal(value)
    except InvalidOperation:
        raise InputError(f"{field} is not a decimal number", field) from None
    if not amount.is_finite():
        raise InputError(f"{field} must be a finite number", field)
    return amount


def _field_value(hint, value, field: str):
    optional = isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
    if optional:
        if value is None:
            return None
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if hint is Decimal:
        return as_money(value, field)
    if hint is str:
        if not isinstance(value, str):
            raise InputError(f"{field} must be a string", field)
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(f"{field} must be an integer", field)
        return value
    raise InputError(f"{field} cannot be given as JSON", field)  # pragma: no cover


def command_from_json(type_name: str, data: dict, *, id_fields: tuple[str, ...] = ()):
    """Builds a command from JSON fields; generates `command_id` and the named id fields when absent."""
    command_type = records.COMMAND_TYPES.get(type_name)
    if command_type is None:
        raise InputError(f"unknown command type {type_name!r}; one of {', '.join(sorted(records.COMMAND_TYPES))}",
                         "type", code="UNKNOWN_COMMAND")
    if not isinstance(data, dict):
        raise InputError("a command must be a JSON object")
    hints = typing.get_type_hints(command_type)
    fields = {f.name: f for f in dataclasses.fields(command_type)}
    unknown = sorted(set(data) - set(fields) - {"type"})
    if unknown:
        raise InputError(f"unknown field {unknown[0]!r} for {type_name}", unknown[0], code="UNKNOWN_FIELD")
    values = {}
    for name, field in fields.items():
        if name in data:
            values[name] = _field_value(hints[name], data[name], name)
        elif name == "command_id" or name in id_fields:
            values[name] = new_id()
        elif field.default is dataclasses.MISSING:
            raise InputError(f"{name} is required for {type_name}", name, code="MISSING_FIELD")
    return command_type(**values)


def _default(value):
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError


def to_plain(record) -> dict:
    """A dataclass record as a JSON-ready dict (money as strings)."""
    return orjson.loads(dumps(record))


def dumps(value) -> bytes:
    return orjson.dumps(value, default=_default)
