"""Pure decoding of a block response into Samples: types, scale, sentinels, ranges, bit fields, states."""

from __future__ import annotations

import math
from collections.abc import Sequence

from gateway.model import Quality, Sample, Value
from gateway.sources.modbus.codec import decode, is_nan, raw_unsigned
from gateway.sources.modbus.plan import Block, Point

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


# A fast point's decoding recipe: (index in the block, point, signed, missing, divisor, whole, scale,
# offset, low, high).
Entry = tuple[int, Point, bool, frozenset[int], int | None, bool, float, float, float, float]
# The (quantity, unit, module, cell) of each sample a block gives, in order (the rack is the device's).
Keys = list[tuple[str, str, int | None, int | None]]


class BlockDecoder:
    """A block's decoding recipe, compiled once: single-register integers (the bulk of a BMS map:
    cells, sensors) take a tight path with their scale folded in; the rest go through `point_value`.

    The tight path goes by runs: consecutive points of one recipe at evenly spaced registers (800 cell
    voltages are a few runs) are scaled by one comprehension each, and a run whose registers hold a
    sentinel, fall outside the range or are missing from a short response is decoded point by point,
    as with `fast=False` (the reference the runs are tested against)."""

    __slots__ = ("block", "fast", "runs", "slow")

    def __init__(self, block: Block, fast: bool = True) -> None:
        self.block = block
        entries: list[Entry] = []
        slow: list[tuple[int, Point]] = []
        for p in block.points:
            i = p.address - block.start
            if p.dtype in ("uint16", "int16") and p.order in ("ABCD", "CDAB") and not p.states and not p.flags:
                div = _divisor(p.scale) if p.offset == 0.0 else None
                whole = p.offset == 0.0 and float(p.scale).is_integer()
                lo, hi = p.range if p.range is not None else (-math.inf, math.inf)
                signed = p.dtype == "int16"
                entries.append((i, p, signed, p.missing, div, whole, p.scale, p.offset, lo, hi))
            else:
                slow.append((i, p))
        self.fast = entries
        self.slow = slow
        self.runs = _runs(entries) if fast else [_Run(entries, 0, 0, 0)]

    def __call__(self, words: Sequence[int | bool], ts: int, rack: str) -> list[Sample]:
        out: list[Sample] = []
        self.into(out, words, ts, rack)
        return out

    def into(self, out: list[Sample], words: Sequence[int | bool], ts: int, rack: str) -> bool:
        """Append the block's samples to `out`; whether any of them is `bad`."""
        bad = False
        n = len(words)
        for run in self.runs:
            if run.step and run.stop <= n:
                values = run.values(words)
                if values is not None:
                    out += [
                        _new_sample(Sample, (ts, q, v, u, GOOD, rack, m, c, None))
                        for (q, u, m, c), v in zip(run.keys, values, strict=True)
                    ]
                    continue
            bad = _point_by_point(run.entries, words, ts, rack, out) or bad
        for i, p in self.slow:
            own = words[i : i + p.width]
            if len(own) < p.width:
                out.append(Sample(ts, p.quantity, None, p.unit, BAD, rack, p.module, p.cell))
                bad = True
                continue
            value, quality, raw_word = point_value(p, own)
            bad = bad or quality == BAD
            out.append(Sample(ts, p.quantity, value, p.unit, quality, rack, p.module, p.cell))
            for bit, name in p.flags:
                flag: Value = None if raw_word is None else (raw_word >> bit) & 1
                out.append(Sample(ts, name, flag, "", quality if raw_word is None else GOOD, rack, p.module, p.cell))
        return bad

    def quality_into(self, out: list[Sample], ts: int, rack: str, quality: str) -> None:
        """Append the block's value-less samples of one quality (as `quality_samples` of its points)."""
        out += quality_samples(self.block.points, ts, rack, quality)

    def decoded_keys(self) -> Keys:
        """The (quantity, unit, module, cell) of each sample `into` appends, in order."""
        keys: Keys = [(p.quantity, p.unit, p.module, p.cell) for _, p, *_ in self.fast]
        for _, p in self.slow:
            keys.append((p.quantity, p.unit, p.module, p.cell))
            keys += [(name, "", p.module, p.cell) for _, name in p.flags]
        return keys

    def quality_keys(self) -> Keys:
        """The (quantity, unit, module, cell) of each sample `quality_into` appends, in order."""
        return point_keys(self.block.points)


class _Run:
    """Fast entries of one recipe at registers start, start+step, ... (step 0: decode point by point)."""

    __slots__ = (
        *("div", "entries", "high", "keys", "low", "missing", "offset", "scale", "signed"),
        *("start", "step", "stop", "whole"),
    )

    def __init__(self, entries: list[Entry], start: int, stop: int, step: int) -> None:
        self.entries = entries
        self.start, self.stop, self.step = start, stop, step
        self.keys = [(p.quantity, p.unit, p.module, p.cell) for _, p, *_ in entries]
        self.signed, self.missing, self.div, self.whole = False, frozenset[int](), None, False
        self.scale, self.offset, self.low, self.high = 1.0, 0.0, -math.inf, math.inf
        if step:  # a run's entries share one recipe: the first one's
            _, _, self.signed, self.missing, self.div, self.whole, self.scale, self.offset, self.low, self.high = (
                entries[0]
            )

    def values(self, words: Sequence[int | bool]) -> list[int] | list[float] | None:
        """The run's values, or None when a point needs the point-by-point path (sentinel, range)."""
        ws = words[self.start : self.stop : self.step]
        if self.missing and not self.missing.isdisjoint(ws):
            return None
        if self.signed:
            ws = [w - 0x10000 if w & 0x8000 else w for w in ws]
        div = self.div
        values: list[int] | list[float]
        if div is not None:
            values = list(ws) if div == 1 else [w / div for w in ws]
        elif self.whole:
            k = int(self.scale)
            values = [w * k for w in ws]
        else:
            scale, offset = self.scale, self.offset
            values = [round(w * scale + offset, 9) for w in ws]
        if (self.low != -math.inf or self.high != math.inf) and not (
            self.low <= min(values) and max(values) <= self.high
        ):
            return None
        return values


def _runs(entries: list[Entry]) -> list[_Run]:
    """Split the fast entries into runs: same recipe, registers evenly spaced, in order."""
    runs: list[_Run] = []
    current: list[Entry] = []

    def close() -> None:
        if len(current) == 1:
            i = current[0][0]
            runs.append(_Run(list(current), i, i + 1, 1))
        elif current:
            first, step = current[0][0], current[1][0] - current[0][0]
            runs.append(_Run(list(current), first, current[-1][0] + 1, step))
        current.clear()

    for e in entries:
        if current:
            same = e[2:] == current[0][2:]
            step = current[1][0] - current[0][0] if len(current) > 1 else e[0] - current[-1][0]
            if not same or step < 1 or e[0] - current[-1][0] != step:
                close()
        current.append(e)
    close()
    return runs


def _point_by_point(entries: list[Entry], words: Sequence[int | bool], ts: int, rack: str, out: list[Sample]) -> bool:
    """The fast entries one at a time (the reference of the runs); whether any sample is `bad`."""
    append = out.append
    bad = False
    n = len(words)
    for i, p, signed, missing, div, whole, scale, offset, lo, hi in entries:
        if i >= n:
            append(Sample(ts, p.quantity, None, p.unit, BAD, rack, p.module, p.cell))
            bad = True
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
    return bad


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


def point_keys(points: Sequence[Point]) -> Keys:
    """The (quantity, unit, module, cell) of each sample `quality_samples` gives for these points."""
    keys: Keys = []
    for p in points:
        keys.append((p.quantity, p.unit, p.module, p.cell))
        keys += [(name, "", p.module, p.cell) for _, name in p.flags]
    return keys


def quality_samples(points: Sequence[Point], ts: int, rack: str, quality: str) -> list[Sample]:
    """Value-less samples of every point (and flag) with one quality: comm_loss, bad."""
    out: list[Sample] = []
    for p in points:
        out.append(Sample(ts, p.quantity, None, p.unit, quality, rack, p.module, p.cell))
        out.extend(Sample(ts, name, None, "", quality, rack, p.module, p.cell) for _, name in p.flags)
    return out
