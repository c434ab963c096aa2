"""Summary dataclasses as JSON and back: the schema of a report section is its dataclass.

:func:`to_json` writes a summary dataclass's fields in their order, under the key a field's
metadata names (``field(metadata={"key": "khat_above_0.7"})``) or its own name, leaving out the
optional sections (``metadata={"optional": True}``) that are None. :func:`from_json` reads such
a dict back into the typed value, nested summaries included, with the defaults of fields an
older file lacks; a value of the wrong kind is a ValueError naming its key.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from .tables import jsonable


def _key(field: dataclasses.Field) -> str:
    return field.metadata.get("key", field.name)


def to_json(value) -> Any:
    """A summary dataclass (or a structure of them) as plain JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        if hasattr(value, "to_dict"):
            return value.to_dict()
        return {
            _key(f): to_json(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if not (f.metadata.get("optional") and getattr(value, f.name) is None)
        }
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    return jsonable(value)


def from_json(cls, data, where: str = ""):
    """The dataclass ``cls`` read from its JSON dict ``data``."""
    if hasattr(cls, "from_dict"):
        return cls.from_dict(_mapping(data, where))
    data = _mapping(data, where)
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        key = _key(f)
        if key in data:
            values[f.name] = _decode(hints[f.name], data[key], f"{where}{key}.")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise KeyError(f"{where}{key}")
    return cls(**values)


def _mapping(data, where: str) -> dict:
    if not isinstance(data, dict):
        raise ValueError(f"{where.rstrip('.') or 'the section'}: expected an object")
    return data


def _decode(hint, value, where: str):
    """``value`` read as the type ``hint``: nested summaries, lists and dicts of them."""
    if value is None:
        return None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return _decode(next(a for a in args if a is not type(None)), value, where)
    if origin is dict and dataclasses.is_dataclass(args[1]):
        return {k: from_json(args[1], v, f"{where}{k}.") for k, v in _mapping(value, where).items()}
    if origin is list and dataclasses.is_dataclass(args[0]):
        if not isinstance(value, list):
            raise ValueError(f"{where.rstrip('.')}: expected a list")
        return [from_json(args[0], v, where) for v in value]
    if dataclasses.is_dataclass(hint):
        return from_json(hint, value, where)
    return value
