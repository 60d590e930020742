"""Pure decoding of a block response into columns: types, orders, scale, sentinels, ranges, bit fields, states.

A `BlockDecoder` is compiled once per block of a plan. It groups the block's points by how they are
decoded (one numeric type and byte order, register bits, coils, strings) and decodes each group over
the whole response at once with numpy: the registers become a uint64 array, each group gathers its
points' registers, assembles them in the point's order, and scales, checks sentinels and ranges in
vectorised steps. Enum names and strings (values that are not numbers) go to `objects`. A multi-bit
field is its bits of the raw integer (sentinels compare the whole register). A point scaled by another
register comes out as its raw number, scaled once the cycle is read (`scaled.ScaledRows`); the
registers read for others (`aux` points: scale factors, the clock) give no row but their raw words.

The rows a block gives are its points in order, each followed by its bit-field flags: the same rows
whether the block was read, refused or missed, so a cycle's key table depends only on its blocks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from gateway.model import F64, QUALITY_CODE, U8, Key, Quality, Value
from gateway.sources.modbus.codec import WIDTH, text
from gateway.sources.modbus.plan import Block, Point
from gateway.sources.modbus.refs import RegKey
from gateway.sources.modbus.scaled import ScaledRows

ALL_BITS = np.uint64(0xFFFF_FFFF_FFFF_FFFF)
GOOD, MISSING, RANGE, BAD = (
    QUALITY_CODE[q] for q in (Quality.GOOD, Quality.MISSING, Quality.OUT_OF_RANGE, Quality.BAD)
)
IntArr = npt.NDArray[np.intp]
U64 = npt.NDArray[np.uint64]
# A block's response: registers (an array from `wire`, or ints) or bits
Words = npt.NDArray[np.uint16] | Sequence[int] | Sequence[bool]


def _ints(xs: Sequence[int]) -> IntArr:
    return np.asarray(xs, dtype=np.intp)


def _divisor(scale: float) -> int | None:
    """10 for 0.1, 1000 for 0.001, 1 for 1: dividing by an exact integer gives the correctly rounded
    decimal (3291 / 1000 == 3.291, where 3291 * 0.001 == 3.2910000000000004)."""
    if scale <= 0:
        return None
    inv = round(1.0 / scale)
    return inv if inv >= 1 and abs(inv * scale - 1.0) < 1e-12 else None


@dataclass(frozen=True, slots=True)
class State:
    """An enum point of a group: its index in the group, its output row and its names by raw value."""

    index: int
    row: int
    names: dict[int, str]


def _swap_bytes(regs: U64) -> U64:
    swapped: U64 = ((regs & np.uint64(0xFF)) << np.uint64(8)) | (regs >> np.uint64(8))
    return swapped


class Numbers:
    """The points of one numeric type and byte order in a block, decoded together.

    An integer point with an exact decimal scale (0.1, 0.001) and no offset is `raw / divisor`; any
    other scaled point is `round(raw * scale + offset, 9)`. A raw value among the point's sentinels
    (or a NaN float) is `missing`; a value outside the point's range is `out_of_range`."""

    __slots__ = (
        *("affine", "divisor", "dtype", "flag_bit", "flag_of", "flag_row", "high", "low", "offset", "ranged"),
        *("row", "scale", "sentinel", "sentinel_of", "src", "states", "swap_bytes", "swap_words", "width"),
        *("fields", "shift", "mask"),
    )

    def __init__(self, dtype: str, order: str, points: Sequence[tuple[int, int, Point, list[tuple[int, int]]]]) -> None:
        """`points`: (register offset, output row, point, [(flag bit, flag row)]) of one dtype and order."""
        self.dtype, self.width = dtype, WIDTH[dtype]
        self.swap_bytes, self.swap_words = order in ("BADC", "DCBA"), order in ("CDAB", "DCBA")
        ps = [p for _, _, p, _ in points]
        self.src, self.row = _ints([s for s, *_ in points]), _ints([r for _, r, *_ in points])
        integer = not dtype.startswith("float")
        divisors = [_divisor(p.scale) if integer and p.offset == 0.0 else None for p in ps]
        self.divisor = np.asarray([d or 1 for d in divisors], dtype=np.float64)
        affine = [j for j, p in enumerate(ps) if divisors[j] is None and (p.scale != 1.0 or p.offset != 0.0)]
        self.affine = _ints(affine)  # points (by index in the group) valued round(raw * scale + offset, 9)
        self.scale = np.asarray([ps[j].scale for j in affine], dtype=np.float64)
        self.offset = np.asarray([ps[j].offset for j in affine], dtype=np.float64)
        self.ranged = any(p.range is not None for p in ps)
        self.low = np.asarray([p.range[0] if p.range else -math.inf for p in ps], dtype=np.float64)
        self.high = np.asarray([p.range[1] if p.range else math.inf for p in ps], dtype=np.float64)
        sentinels = [(j, m) for j, p in enumerate(ps) for m in sorted(p.missing)]  # raw values meaning "none"
        self.sentinel_of = _ints([j for j, _ in sentinels])
        self.sentinel = np.asarray([m for _, m in sentinels], dtype=np.uint64)
        self.states = tuple(State(j, r, dict(p.states)) for j, (_, r, p, _) in enumerate(points) if p.states)
        flags = [(j, bit, row) for j, (*_, fl) in enumerate(points) for bit, row in fl]  # bit fields
        self.flag_of = _ints([j for j, _, _ in flags])
        self.flag_bit = np.asarray([b for _, b, _ in flags], dtype=np.uint64)
        self.flag_row = _ints([r for _, _, r in flags])
        self.fields = any(p.bits is not None for p in ps)  # multi-bit fields: (raw >> first) & mask
        self.shift = np.asarray([p.bits[0] if p.bits else 0 for p in ps], dtype=np.uint64)
        masks = [(1 << (p.bits[1] - p.bits[0] + 1)) - 1 if p.bits else None for p in ps]
        self.mask = np.asarray([ALL_BITS if m is None else m for m in masks], dtype=np.uint64)

    def raw(self, words: U64) -> U64:
        """Each point's registers as one unsigned integer in its order (what sentinels compare against)."""
        if self.width == 1:
            regs: U64 = words[self.src]
            return _swap_bytes(regs) if self.swap_bytes else regs
        m = words[self.src[:, None] + np.arange(self.width)]
        if self.swap_words:
            m = m[:, ::-1]
        if self.swap_bytes:
            m = _swap_bytes(m)
        raw: U64 = m[:, 0].copy()
        for k in range(1, self.width):
            raw = (raw << np.uint64(16)) | m[:, k]
        return raw

    def number(self, raw: U64) -> F64:
        """The raw integers as the point's type says, as float64."""
        bits = 16 * self.width
        if self.dtype == "float32":
            return raw.astype(np.uint32).view(np.float32).astype(np.float64)
        if self.dtype == "float64":
            return raw.view(np.float64).copy()
        if self.dtype.startswith("u"):
            return raw.astype(np.float64)
        if bits == 64:
            return raw.view(np.int64).astype(np.float64)
        signed = raw.astype(np.int64) - ((raw >> (bits - 1)).astype(np.int64) << bits)
        return signed.astype(np.float64)

    def into(self, words: U64, values: F64, quality: U8, objects: dict[int, Value]) -> list[int]:
        """Decode into the columns; the rows of states with an unknown raw value."""
        raw = self.raw(words)
        x = self.number((raw >> self.shift) & self.mask if self.fields else raw)
        v = x / self.divisor
        if self.affine.size:
            a = self.affine
            v[a] = np.round(x[a] * self.scale + self.offset, 9)
        if self.ranged:
            q = np.logical_not((self.low <= v) & (v <= self.high)).view(np.uint8) * np.uint8(RANGE)
        else:
            q = np.zeros(len(v), dtype=np.uint8)
        missing = None
        if self.dtype.startswith("float"):
            missing = np.isnan(x)
        if self.sentinel.size:
            missing = np.zeros(len(v), dtype=np.bool_) if missing is None else missing
            missing[self.sentinel_of[raw[self.sentinel_of] == self.sentinel]] = True
        if missing is not None:
            q[missing] = MISSING
            v[missing] = math.nan
        unknown: list[int] = []
        for st in self.states:
            if missing is not None and missing[st.index]:
                continue
            n = int(x[st.index])
            name = st.names.get(n)
            objects[st.row] = name if name is not None else f"unknown({n})"
            q[st.index] = GOOD if name is not None else BAD
            v[st.index] = math.nan
            if name is None:
                unknown.append(st.row)
        values[self.row] = v
        quality[self.row] = q
        if self.flag_of.size:
            values[self.flag_row] = ((raw[self.flag_of] >> self.flag_bit) & np.uint64(1)).astype(np.float64)
            quality[self.flag_row] = GOOD
        return unknown


@dataclass(frozen=True, slots=True)
class Bits:
    """Register bits (`bit`: one bit of a register) or coils and discrete inputs (`bool`); 0 or 1, or
    the state's name."""

    src: IntArr
    row: IntArr
    bit: U64  # 0 for coils and discrete inputs
    states: tuple[State, ...]

    @classmethod
    def of(cls, points: Sequence[tuple[int, int, Point]]) -> Bits:
        return cls(
            _ints([s for s, _, _ in points]),
            _ints([r for _, r, _ in points]),
            np.asarray([p.bit or 0 for _, _, p in points], dtype=np.uint64),
            tuple(State(j, r, dict(p.states)) for j, (_, r, p) in enumerate(points) if p.states),
        )

    def into(self, words: U64, values: F64, quality: U8, objects: dict[int, Value]) -> list[int]:
        flag = (words[self.src] >> self.bit) & np.uint64(1)
        values[self.row] = flag.astype(np.float64)
        quality[self.row] = GOOD
        for st in self.states:
            n = int(flag[st.index])
            objects[st.row] = st.names.get(n, str(n))
            values[st.row] = math.nan
        return []


@dataclass(frozen=True, slots=True)
class Text:
    """A string point: its registers decoded to text (an object)."""

    src: int
    row: int
    point: Point

    def into(self, words: U64, values: F64, quality: U8, objects: dict[int, Value]) -> list[int]:
        regs = [int(w) for w in words[self.src : self.src + self.point.width]]
        objects[self.row] = text(regs, self.point.order)
        values[self.row] = math.nan
        quality[self.row] = GOOD
        return []


class Decoded(NamedTuple):
    """The columns of one block read: a value and a quality per row, the rows' objects, whether any
    row is `bad` (an unknown state, a value a short response cut off), the rows of unknown states,
    and the raw words of the block's `aux` registers."""

    values: F64
    quality: U8
    objects: dict[int, Value]
    bad: bool
    unknown: tuple[int, ...] = ()
    aux: dict[RegKey, int] | None = None


class BlockDecoder:
    """A block's decoding recipe, compiled once: `rows` are the (quantity, unit, module, cell) of its
    output (the rack is the device's), `points` the point of each row (a flag's is its word's);
    calling it with a response gives their columns."""

    __slots__ = ("aux", "block", "ends", "groups", "points", "rows", "scaled")

    def __init__(self, block: Block) -> None:
        self.block = block
        rows: list[Key] = []
        points: list[Point] = []
        ends: list[int] = []  # one past the last register of each row's point (short responses)
        numbers: dict[tuple[str, str], list[tuple[int, int, Point, list[tuple[int, int]]]]] = {}
        bits: list[tuple[int, int, Point]] = []
        texts: list[Text] = []
        aux: list[tuple[RegKey, int]] = []
        scaled: list[tuple[int, Point]] = []
        for p in block.points:
            src, row = p.address - block.start, len(rows)
            if p.aux:
                aux.append((RegKey(p.table, p.address), src))
                continue
            if p.scale_ref is not None:  # decoded to its raw number, scaled when the cycle is read
                scaled.append((row, p))
                p = replace(p, scale=1.0, offset=0.0, range=None)
            rows.append(Key(p.quantity, p.unit, "", p.module, p.cell))
            if p.dtype in ("bit", "bool"):
                bits.append((src, row, p))
            elif p.dtype == "string":
                texts.append(Text(src, row, p))
            else:
                flags = [(bit, row + 1 + k) for k, (bit, _) in enumerate(p.flags)]
                numbers.setdefault((p.dtype, p.order), []).append((src, row, p, flags))
            rows += [Key(name, "", "", p.module, p.cell) for _, name in p.flags]
            points += [p] * (1 + len(p.flags))
            ends += [src + p.width] * (1 + len(p.flags))
        self.rows = tuple(rows)
        self.points = tuple(points)
        self.aux = tuple(aux)
        self.scaled = ScaledRows.of(scaled) if scaled else None
        self.ends = _ints(ends)
        groups: list[Numbers | Bits | Text] = [Numbers(d, o, pts) for (d, o), pts in numbers.items()]
        if bits:
            groups.append(Bits.of(bits))
        groups += texts
        self.groups = tuple(groups)

    def __len__(self) -> int:
        return len(self.rows)

    def __call__(self, words: Words) -> Decoded:
        n, count = len(words), self.block.count
        if n >= count:
            w = np.array(words, dtype=np.uint64)
        else:
            w = np.zeros(count, dtype=np.uint64)
            w[:n] = words
        values = np.empty(len(self.rows), dtype=np.float64)
        quality = np.empty(len(self.rows), dtype=np.uint8)
        objects: dict[int, Value] = {}
        unknown: list[int] = []
        for group in self.groups:
            unknown += group.into(w, values, quality, objects)
        bad = bool(unknown)
        if n < count:  # a short response: the values it does not hold are bad
            cut = np.flatnonzero(self.ends > n).tolist()
            values[cut] = math.nan
            quality[cut] = BAD
            for row in cut:
                objects.pop(row, None)
            bad = bad or bool(cut)
            unknown = [r for r in unknown if r not in cut]
        aux = {key: int(w[src]) for key, src in self.aux if src < n} if self.aux else None
        return Decoded(values, quality, objects, bad, tuple(unknown), aux)
