"""Dataclasses to JSON and back, for what the daemon hands a command whole (the status it
builds for `cronsup status`): the command rebuilds the very objects it would have read
itself, so both render the same.

A dataclass travels as the list of its fields' values in order, so 2,000 runs cost little
either way; `signature` names every field and type reachable from a record, for both sides
to check that they mean the same list. Fields may hold None, bool, int, float, str (a
StrEnum too), dataclasses, enums, and lists, tuples and dicts of them. Floats survive
exactly (JSON keeps repr's digits).
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import operator
import types
import typing
import zlib


class WireError(ValueError):
    """Data that does not fit the record it should be."""


def encode(value):
    """JSON-ready data for a dataclass instance."""
    return _plan(type(value)).encode(value)


def decode(kind: type, data):
    """An instance of the dataclass `kind` from encode's data (through JSON)."""
    try:
        return _plan(kind).decode(data)
    except (TypeError, ValueError, IndexError, KeyError, AttributeError) as e:
        raise WireError(f"not a {kind.__name__}: {e}") from None


def signature(kind: type) -> str:
    """A short digest of the fields and types of `kind` and every dataclass in them."""
    seen: dict[type, str] = {}

    def walk(cls: type) -> None:
        if cls in seen:
            return
        hints = _hints(cls)
        seen[cls] = f"{cls.__qualname__}({', '.join(f'{n}: {h}' for n, h in hints.items())})"
        for hint in hints.values():
            for inner in _inner(hint):
                walk(inner)

    walk(kind)
    return format(zlib.crc32("; ".join(seen.values()).encode()), "08x")


class _Plan:
    def __init__(self, kind: type):
        hints = _hints(kind)
        self.kind = kind
        self.get = operator.attrgetter(*hints) if len(hints) > 1 else (lambda v, n=next(iter(hints)): (getattr(v, n),))
        self.size = len(hints)
        self.encoders = [(i, f) for i, h in enumerate(hints.values()) if (f := _encoder(h))]
        self.decoders = [(i, f) for i, h in enumerate(hints.values()) if (f := _decoder(h))]

    def encode(self, value) -> list:
        values = list(self.get(value))
        for i, f in self.encoders:
            values[i] = f(values[i])
        return values

    def decode(self, data: list):
        if type(data) is not list or len(data) != self.size:
            raise WireError(f"{type(data).__name__} of {len(data)} where {self.size} fields belong")
        values = list(data)
        for i, f in self.decoders:
            values[i] = f(values[i])
        return self.kind(*values)


@functools.cache
def _plan(kind: type) -> _Plan:
    return _Plan(kind)


@functools.cache
def _hints(kind: type) -> dict:
    if not dataclasses.is_dataclass(kind):
        raise TypeError(f"{kind} is not a dataclass")
    every = typing.get_type_hints(kind)
    return {f.name: every[f.name] for f in dataclasses.fields(kind) if f.init}


def _inner(hint) -> list[type]:
    """The dataclasses a type hint names."""
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return [hint]
    return [c for arg in typing.get_args(hint) for c in _inner(arg)]


def _optional(hint):
    """X for `X | None`, else None."""
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return None


def _same(value):
    return value


def _homogeneous(origin, args) -> bool:
    """tuple[X, ...]"""
    return origin is tuple and len(args) == 2 and args[1] is Ellipsis


def _encoder(hint):
    """How a field's value becomes JSON data; None where json takes it as it is."""
    if (inner := _optional(hint)) is not None:
        f = _encoder(inner)
        return f and (lambda v: None if v is None else f(v))
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return encode
    if isinstance(hint, type) and issubclass(hint, enum.Enum) and not issubclass(hint, (str, int)):
        return operator.attrgetter("value")
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is list or _homogeneous(origin, args):
        f = _encoder(args[0])
        return f and (lambda v: [f(x) for x in v])
    if origin is tuple and args:
        fs = [_encoder(a) or _same for a in args]
        return lambda v: [f(x) for f, x in zip(fs, v, strict=True)]
    if origin is dict and args:
        f = _encoder(args[1])
        return f and (lambda v: {k: f(x) for k, x in v.items()})
    return None


def _decoder(hint):
    """How a field's JSON data becomes its value again; None where it already is."""
    if (inner := _optional(hint)) is not None:
        f = _decoder(inner)
        return f and (lambda v: None if v is None else f(v))
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _plan(hint).decode
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return hint
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is list and args:
        f = _decoder(args[0])
        return f and (lambda v: [f(x) for x in v])
    if _homogeneous(origin, args):
        f = _decoder(args[0]) or _same
        return lambda v: tuple(f(x) for x in v)
    if origin is tuple and args:
        fs = [_decoder(a) or _same for a in args]
        return lambda v: tuple(f(x) for f, x in zip(fs, v, strict=True))
    if origin is dict and args:
        f = _decoder(args[1])
        return f and (lambda v: {k: f(x) for k, x in v.items()})
    return None
