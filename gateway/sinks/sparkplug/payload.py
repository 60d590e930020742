"""Sparkplug B payloads (pure): the protobuf wire format of the few fields the edge node sends and reads.

The schema is Eclipse Tahu's `sparkplug_b.proto` (proto2, package `org.eclipse.tahu.protobuf`). Only
these fields are written (field number, wire type):

    Payload        timestamp 1 varint (ms), metrics 2 bytes (Metric), seq 3 varint
    Metric         name 1 bytes, alias 2 varint, timestamp 3 varint (ms), datatype 4 varint,
                   is_null 7 varint, properties 9 bytes (PropertySet), int_value 10 varint,
                   long_value 11 varint, double_value 13 fixed64, boolean_value 14 varint,
                   string_value 15 bytes
    PropertySet    keys 1 bytes (repeated), values 2 bytes (PropertyValue, repeated)
    PropertyValue  type 1 varint, int_value 3 varint

An encoder this small needs no protobuf runtime; the tests decode its output with Google's protobuf
and a schema declared apart from this module. `read_fields` is the bounded reader of what a host sends
(NCMD): it raises `ValueError` on anything malformed, never reads past the buffer.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from gateway.model import Value

# Sparkplug B data types (the values of Metric.datatype) that the gateway sends.
INT32 = 3
INT64 = 4
DOUBLE = 10
BOOLEAN = 11
STRING = 12

# Wire types.
VARINT = 0
FIXED64 = 1
BYTES = 2
FIXED32 = 5

_double = struct.Struct("<d").pack
_QUALITY_KEY = b"\x0a\x07Quality"  # PropertySet.keys = "Quality"


def varint(n: int) -> bytes:
    """An unsigned varint; a negative number is sent as its 64-bit two's complement (as protobuf does)."""
    if n < 0:
        n += 1 << 64
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def field_bytes(number: int, data: bytes) -> bytes:
    """A length-delimited field."""
    return varint(number << 3 | BYTES) + varint(len(data)) + data


@dataclass(frozen=True, slots=True)
class Metric:
    """One metric of a payload: `name` only in births, `alias` always; `value` None is sent as is_null."""

    datatype: int
    value: Value
    timestamp: int | None = None  # ms since the epoch
    alias: int | None = None
    name: str | None = None
    quality: int | None = None  # the Sparkplug quality code when the value is not good


def datatype_of(value: Value, default: int = DOUBLE) -> int:
    """The Sparkplug datatype a gateway value is sent as (None: `default`, the metric's own)."""
    if value is None:
        return default
    if isinstance(value, bool):
        return BOOLEAN
    if isinstance(value, int):
        return INT64
    if isinstance(value, float):
        return DOUBLE
    return STRING


def _value_field(datatype: int, value: Value) -> bytes:
    """The value field of a metric (is_null when the value is None or does not fit the datatype)."""
    if value is None or (datatype == DOUBLE and isinstance(value, float) and math.isnan(value)):
        return b"\x38\x01"
    if datatype == DOUBLE and isinstance(value, int | float) and not isinstance(value, bool):
        return b"\x69" + _double(float(value))
    if datatype == BOOLEAN and isinstance(value, bool):
        return b"\x70\x01" if value else b"\x70\x00"
    if datatype == INT64 and isinstance(value, int) and not isinstance(value, bool):
        return b"\x58" + varint(value)
    if datatype == INT32 and isinstance(value, int) and not isinstance(value, bool):
        return b"\x50" + varint(value & 0xFFFFFFFF)
    if datatype == STRING:
        return field_bytes(15, str(value).encode())
    return b"\x38\x01"


def quality_properties(code: int) -> bytes:
    """Metric.properties = {"Quality": Int32 code}."""
    value = b"\x08" + varint(INT32) + b"\x18" + varint(code)
    return field_bytes(9, _QUALITY_KEY + field_bytes(2, value))


def encode_metric(m: Metric) -> bytes:
    """The Metric message (without its field tag in the payload)."""
    out = b""
    if m.name is not None:
        out += field_bytes(1, m.name.encode())
    if m.alias is not None:
        out += b"\x10" + varint(m.alias)
    if m.timestamp is not None:
        out += b"\x18" + varint(m.timestamp)
    out += b"\x20" + varint(m.datatype)
    if m.quality is not None:
        out += quality_properties(m.quality)
    return out + _value_field(m.datatype, m.value)


def encode_payload(metrics: Sequence[Metric], timestamp: int | None, seq: int | None) -> bytes:
    """A Payload: its timestamp (ms), its metrics in order, its seq (none in NDEATH)."""
    parts = [] if timestamp is None else [b"\x08" + varint(timestamp)]
    parts += [field_bytes(2, encode_metric(m)) for m in metrics]
    if seq is not None:
        parts.append(b"\x18" + varint(seq))
    return b"".join(parts)


# -- reading what a host sends ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Field:
    number: int
    wire: int
    value: int | bytes  # a varint or fixed number, or the bytes of a length-delimited field


def _read_varint(data: bytes, i: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        if i >= len(data) or shift > 63:
            raise ValueError(f"truncated or overlong varint at byte {i}")
        b = data[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return n, i


def read_fields(data: bytes) -> Iterator[Field]:
    """The fields of one protobuf message, in order (ValueError on a malformed or truncated one)."""
    i = 0
    while i < len(data):
        key, i = _read_varint(data, i)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ValueError(f"field number 0 at byte {i}")
        if wire == VARINT:
            value, i = _read_varint(data, i)
            yield Field(number, wire, value)
        elif wire in (FIXED64, FIXED32):
            size = 8 if wire == FIXED64 else 4
            if i + size > len(data):
                raise ValueError(f"truncated fixed field {number} at byte {i}")
            yield Field(number, wire, int.from_bytes(data[i : i + size], "little"))
            i += size
        elif wire == BYTES:
            size, i = _read_varint(data, i)
            if i + size > len(data):
                raise ValueError(f"field {number} of {size} bytes runs past the end at byte {i}")
            yield Field(number, wire, data[i : i + size])
            i += size
        else:
            raise ValueError(f"unsupported wire type {wire} of field {number}")


@dataclass(frozen=True, slots=True)
class Command:
    """A metric of an NCMD: its name or alias and, when it is one, its boolean value."""

    name: str | None
    alias: int | None
    boolean: bool | None


def read_commands(data: bytes) -> list[Command]:
    """The metrics of an NCMD payload (ValueError when it is not a Sparkplug payload)."""
    out: list[Command] = []
    for f in read_fields(data):
        if f.number != 2 or not isinstance(f.value, bytes):
            continue
        name: str | None = None
        alias: int | None = None
        boolean: bool | None = None
        for g in read_fields(f.value):
            if g.number == 1 and isinstance(g.value, bytes):
                name = g.value.decode("utf-8")  # UnicodeDecodeError is a ValueError
            elif g.number == 2 and isinstance(g.value, int) and g.wire == VARINT:
                alias = g.value
            elif g.number == 14 and isinstance(g.value, int) and g.wire == VARINT:
                boolean = bool(g.value)
        out.append(Command(name, alias, boolean))
    return out
