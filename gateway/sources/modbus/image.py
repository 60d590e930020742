"""Pure register images for the simulator: truth values encoded exactly as a profile says.

`encode_point` is the inverse of a point's decoding (`decode.BlockDecoder`), so gateway -> simulator -> gateway returns
the truth (to the resolution of the point's scale). A point scaled by another register is encoded with
the factor that register holds in the image (a register never written is given the neutral factor:
exponent 0, multiplier 1); the registers read for others (`aux` points) are not written by their
points. The device's clock registers are not simulated (they read 0: no device time).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from gateway.model import Sample, Value
from gateway.sources.modbus.codec import encode, from_bytes, int_range, to_bytes
from gateway.sources.modbus.plan import Point
from gateway.sources.modbus.refs import scale_factor

NEUTRAL_SCALE = {"exponent": 0, "multiplier": 1}  # what a scale register never written is given


class TruthKey(NamedTuple):
    """Which point of a rack a truth value is for."""

    quantity: str
    module: int | None
    cell: int | None


IDENTITY: dict[str, str] = {
    "manufacturer": "bms-gateway",
    "model": "simulated rack",
    "firmware_version": "1.0.0",
}


@dataclass
class Image:
    """The registers and bits of one device by table (absent addresses read as 0)."""

    tables: dict[str, dict[int, int]] = field(default_factory=dict)

    def write(self, table: str, address: int, words: Iterable[int]) -> None:
        t = self.tables.setdefault(table, {})
        for i, w in enumerate(words):
            t[address + i] = int(w)

    def read(self, table: str, address: int, count: int) -> list[int]:
        t = self.tables.get(table, {})
        return [t.get(a, 0) for a in range(address, address + count)]


def truth_map(samples: Iterable[Sample]) -> dict[TruthKey, Value]:
    return {TruthKey(s.quantity, s.module, s.cell): s.value for s in samples}


def raw_of(p: Point, value: Value) -> int | float | str | None:
    """The raw (unscaled) number a device would hold for a value; None when it has none."""
    if value is None:
        return None
    if isinstance(value, str):
        if p.dtype == "string":
            return value
        inverse = {name: raw for raw, name in p.states}
        return inverse.get(value, 0)
    number = (float(value) - p.offset) / p.scale if p.scale else 0.0
    if p.dtype.startswith("float"):
        return number
    return round(number)


def encode_point(p: Point, value: Value) -> list[int]:
    """Registers (or one 0/1 bit) holding `value` as the point is decoded; sentinel or NaN when None."""
    if p.dtype in ("bool", "bit"):
        if isinstance(value, str):
            value = raw_of(p, value)
        return [1 if value else 0]
    raw = raw_of(p, value)
    if raw is None:
        if p.missing:
            n = min(p.missing)
            return from_bytes(n.to_bytes(2 * p.width, "big"), p.order)
        raw = math.nan if p.dtype.startswith("float") else 0
    if p.dtype == "string":
        return encode(str(raw), "string", p.order, p.width)
    if not p.dtype.startswith("float"):
        lo, hi = int_range(p.dtype)
        raw = min(hi, max(lo, int(raw)))
    return encode(raw, p.dtype, p.order)


def value_for(p: Point, truth: Mapping[TruthKey, Value], unit_id: int) -> Value:
    """The truth value of a point; identity strings and bit fields get plausible values."""
    key = TruthKey(p.quantity, p.module, p.cell)
    if key in truth:
        value = truth[key]
    elif p.quantity == "serial_number":
        value = f"SIM-{unit_id:04d}"
    else:
        value = IDENTITY.get(p.quantity, 0)
    if p.flags:
        word = int(value) if isinstance(value, int | float) else 0
        for bit, name in p.flags:
            if truth.get(TruthKey(name, p.module, p.cell)):
                word |= 1 << bit
        value = word * p.scale + p.offset if p.scale != 1.0 or p.offset else word
    return value


def with_image_scale(image: Image, p: Point) -> Point:
    """The point with a fixed scale: its own times the factor its scale register holds in the image."""
    ref = p.scale_ref
    if ref is None:
        return p
    if ref.address not in image.tables.get(ref.table, {}):
        image.write(ref.table, ref.address, [NEUTRAL_SCALE[ref.kind]])
    factor = scale_factor(image.read(ref.table, ref.address, 1)[0], ref.kind) or 1.0
    return replace(p, scale=p.scale * factor, scale_ref=None)


def fill(image: Image, points: Iterable[Point], truth: Mapping[TruthKey, Value], unit_id: int) -> None:
    """Write every point's value into the image (bits and fields OR-ed into their shared registers)."""
    for p in points:
        if p.aux:
            continue
        p = with_image_scale(image, p)
        value = value_for(p, truth, unit_id)
        if p.bits is not None:  # a multi-bit field: its bits of the register(s), the others kept
            mask = p.mask or 0
            old = int.from_bytes(to_bytes(image.read(p.table, p.address, p.width), p.order), "big")
            raw = raw_of(p, value)
            new = (old & ~mask) | (((int(raw) if isinstance(raw, int | float) else 0) << p.bits[0]) & mask)
            image.write(p.table, p.address, from_bytes(new.to_bytes(2 * p.width, "big"), p.order))
        elif p.dtype == "bit":
            assert p.bit is not None
            old = image.read(p.table, p.address, 1)[0]
            mask = 1 << p.bit
            image.write(p.table, p.address, [(old | mask) if encode_point(p, value)[0] else (old & ~mask)])
        else:
            image.write(p.table, p.address, encode_point(p, value))
