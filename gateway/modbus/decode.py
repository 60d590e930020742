"""Pure decoding of a block response into Samples: types, scale, sentinels, ranges, bit fields, states."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.modbus.codec import decode, is_nan, raw_unsigned
from gateway.modbus.plan import Block, Point
from gateway.model import Quality, Sample, Value

GOOD, MISSING, RANGE, BAD = Quality.GOOD, Quality.MISSING, Quality.OUT_OF_RANGE, Quality.BAD


def point_value(p: Point, words: Sequence[int | bool]) -> tuple[Value, str, int | None]:
    """(value, quality, raw integer or None) of one point from its own registers or bit."""
    if p.dtype == "bool":
        flag = int(bool(words[0]))
        return (dict(p.states).get(flag, str(flag)) if p.states else flag), GOOD, None
    regs = [int(w) for w in words]
    if p.dtype == "bit":
        assert p.bit is not None
        bit = (regs[0] >> p.bit) & 1
        if p.states:
            return dict(p.states).get(bit, str(bit)), GOOD, bit
        return bit, GOOD, bit
    raw = raw_unsigned(regs, p.order)
    if raw in p.missing:
        return None, MISSING, raw
    decoded = decode(regs, p.dtype, p.order)
    if isinstance(decoded, str):
        return decoded, GOOD, None
    if is_nan(decoded):
        return None, MISSING, None
    if p.states:
        name = dict(p.states).get(int(decoded))
        return (name, GOOD, raw) if name is not None else (f"unknown({int(decoded)})", BAD, raw)
    value: int | float = decoded
    if p.scale != 1.0 or p.offset != 0.0:
        value = round(decoded * p.scale + p.offset, 9)
        if value == int(value) and isinstance(decoded, int) and float(p.scale).is_integer() and p.offset == 0:
            value = int(value)
    quality = GOOD
    if p.range is not None and not p.range[0] <= value <= p.range[1]:
        quality = RANGE
    return value, quality, raw


def decode_block(block: Block, words: Sequence[int | bool], ts: int, rack: str) -> list[Sample]:
    """Every sample of a block read that returned `words` (registers or bits from `block.start`)."""
    out: list[Sample] = []
    start = block.start
    for p in block.points:
        own = words[p.address - start : p.end - start]
        if len(own) < p.width:
            out.append(Sample(ts, p.quantity, None, p.unit, BAD, rack, p.module, p.cell))
            continue
        value, quality, raw = point_value(p, own)
        out.append(Sample(ts, p.quantity, value, p.unit, quality, rack, p.module, p.cell))
        for bit, name in p.flags:
            flag: Value = None if raw is None else (raw >> bit) & 1
            out.append(Sample(ts, name, flag, "", quality if raw is None else GOOD, rack, p.module, p.cell))
    return out


def quality_samples(points: Sequence[Point], ts: int, rack: str, quality: str) -> list[Sample]:
    """Value-less samples of every point (and flag) with one quality: comm_loss, bad."""
    out: list[Sample] = []
    for p in points:
        out.append(Sample(ts, p.quantity, None, p.unit, quality, rack, p.module, p.cell))
        out.extend(Sample(ts, name, None, "", quality, rack, p.module, p.cell) for _, name in p.flags)
    return out
