"""Pure decoding of a block response into Samples: types, scale, sentinels, ranges, bit fields, states."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

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


_new_sample = tuple.__new__  # Sample(...) through tuple.__new__: a third of the cost of the NamedTuple call
# The fast path builds all of Sample's fields positionally: fail at import, not in the data, if they change.
if Sample._fields != ("ts", "quantity", "value", "unit", "quality", "rack", "module", "cell", "device_ts"):
    raise ImportError("gateway.model.Sample changed: update BlockDecoder's positional samples")


class BlockDecoder:
    """A block's decoding recipe, compiled once: single-register integers (the bulk of a BMS map:
    cells, sensors) take a tight path with their scale folded in; the rest go through `point_value`."""

    __slots__ = ("block", "fast", "slow")

    def __init__(self, block: Block) -> None:
        self.block = block
        fast: list[tuple[Any, ...]] = []
        slow: list[tuple[int, Point]] = []
        for p in block.points:
            i = p.address - block.start
            if p.dtype in ("uint16", "int16") and p.order in ("ABCD", "CDAB") and not p.states and not p.flags:
                div = _divisor(p.scale) if p.offset == 0.0 else None
                whole = p.offset == 0.0 and float(p.scale).is_integer()
                lo, hi = p.range if p.range is not None else (-math.inf, math.inf)
                signed = p.dtype == "int16"
                fast.append((i, p, signed, p.missing, div, whole, p.scale, p.offset, lo, hi))
            else:
                slow.append((i, p))
        self.fast = fast
        self.slow = slow

    def __call__(self, words: Sequence[int | bool], ts: int, rack: str) -> list[Sample]:
        out: list[Sample] = []
        append = out.append
        n = len(words)
        for i, p, signed, missing, div, whole, scale, offset, lo, hi in self.fast:
            if i >= n:
                append(Sample(ts, p.quantity, None, p.unit, BAD, rack, p.module, p.cell))
                continue
            w = int(words[i])
            if w in missing:
                append(_new_sample(Sample, (ts, p.quantity, None, p.unit, MISSING, rack, p.module, p.cell, None)))
                continue
            raw = w - 0x10000 if signed and w & 0x8000 else w
            if div is not None:
                v: int | float = raw if div == 1 else raw / div
            elif whole:
                v = raw * int(scale)
            else:
                v = round(raw * scale + offset, 9)
            q = GOOD if lo <= v <= hi else RANGE
            append(_new_sample(Sample, (ts, p.quantity, v, p.unit, q, rack, p.module, p.cell, None)))
        for i, p in self.slow:
            own = words[i : i + p.width]
            if len(own) < p.width:
                append(Sample(ts, p.quantity, None, p.unit, BAD, rack, p.module, p.cell))
                continue
            value, quality, raw_word = point_value(p, own)
            append(Sample(ts, p.quantity, value, p.unit, quality, rack, p.module, p.cell))
            for bit, name in p.flags:
                flag: Value = None if raw_word is None else (raw_word >> bit) & 1
                append(Sample(ts, name, flag, "", quality if raw_word is None else GOOD, rack, p.module, p.cell))
        return out


def _divisor(scale: float) -> int | None:
    """10 for 0.1, 1000 for 0.001, 1 for 1: dividing by an exact integer gives the correctly rounded
    decimal (3291 / 1000 == 3.291, where 3291 * 0.001 == 3.2910000000000004)."""
    if scale <= 0:
        return None
    inv = round(1.0 / scale)
    return inv if inv >= 1 and abs(inv * scale - 1.0) < 1e-12 else None


def decode_block(block: Block, words: Sequence[int | bool], ts: int, rack: str) -> list[Sample]:
    """Every sample of a block read that returned `words` (registers or bits from `block.start`)."""
    return BlockDecoder(block)(words, ts, rack)


def quality_samples(points: Sequence[Point], ts: int, rack: str, quality: str) -> list[Sample]:
    """Value-less samples of every point (and flag) with one quality: comm_loss, bad."""
    out: list[Sample] = []
    for p in points:
        out.append(Sample(ts, p.quantity, None, p.unit, quality, rack, p.module, p.cell))
        out.extend(Sample(ts, name, None, "", quality, rack, p.module, p.cell) for _, name in p.flags)
    return out
