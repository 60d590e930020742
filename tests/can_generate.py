"""Seeded generator of DBC message definitions, the frames to feed them, and profiles in every mapping mode.

The DBC text is written here, not through cantools: bit positions, lengths 1-64, both byte orders,
signed, unsigned and float signals, scales (negative too) and offsets, value tables, ranges whose
ends are exact raw values, multiplexers (with value tables, and SG_MUL_VAL_ ranges), CAN FD and odd
lengths, J1939 ids (a PGN defined once per source address, too). `tests.can_oracle` says from
cantools' own decoding what the gateway must store for each frame.
"""

from __future__ import annotations

import math
import random
import struct
from dataclasses import dataclass, field
from typing import Any

LENGTHS = (1, 2, 3, 4, 5, 6, 7, 8, 8, 8, 8, 12, 13, 16, 20, 24, 32, 33, 48, 64)
SCALES: tuple[tuple[Any, Any], ...] = (
    (1, 0), (1, 0), (1, 0), (2, -40), (-1, 0), (0.1, 0), (0.001, 0), (-0.5, 0), (0.05, -1000.5),
    (0.00001, 3.25), (3.7, 0.2), (-0.25, 12.5), (1000, 0),
)  # fmt: skip
UNITS = ("", "", "mV", "V", "A", "kW", "%", "degC")
FLOAT_SPECIALS = (math.nan, math.inf, -math.inf, 1.76e-36, -1.76e-36, -0.0, 0.0, 3.4e38, -5e-324, 1.0)


@dataclass
class Sig:
    name: str
    start: int  # DBC start bit (LSB for little endian, MSB in sawtooth numbering for big endian)
    length: int
    big: bool
    signed: bool
    float_type: int  # 0: integer, 1: float32, 2: float64
    scale: Any
    offset: Any
    unit: str
    lo: Any = None  # DBC [min|max] (physical), None: [0|0]
    hi: Any = None
    choices: dict[int, str] = field(default_factory=dict)
    is_mux: bool = False
    mux_ids: list[int] = field(default_factory=list)  # values of the multiplexer it sits under

    def bits(self) -> list[int]:
        if not self.big:
            return list(range(self.start, self.start + self.length))
        out, pos = [], self.start
        for _ in range(self.length):
            out.append(pos)
            pos = pos + 15 if pos % 8 == 0 else pos - 1
        return out

    def raw_limits(self) -> tuple[int, int]:
        if self.signed:
            return -(1 << (self.length - 1)), (1 << (self.length - 1)) - 1
        return 0, (1 << self.length) - 1

    def pattern(self, raw: Any) -> int:
        """The signal's bits (unsigned, `length` wide) for a raw value."""
        if self.float_type == 1:
            return int.from_bytes(struct.pack(">f", raw), "big")
        if self.float_type == 2:
            return int.from_bytes(struct.pack(">d", raw), "big")
        return int(raw) & ((1 << self.length) - 1)


@dataclass
class Msg:
    name: str
    frame_id: int  # without the extended flag
    extended: bool
    length: int
    signals: list[Sig]
    mux: Sig | None = None

    @property
    def dbc_id(self) -> int:
        return self.frame_id | (0x80000000 if self.extended else 0)

    def put(self, data: bytearray, sig: Sig, raw: Any) -> None:
        """Write a raw value into the frame's bits."""
        value = sig.pattern(raw)
        for i, bit in enumerate(sig.bits()):  # bits() runs from the LSB (little) or the MSB (big)
            b = (value >> i) & 1 if not sig.big else (value >> (sig.length - 1 - i)) & 1
            byte, pos = divmod(bit, 8)
            data[byte] = (data[byte] & ~(1 << pos)) | (b << pos)


def _num(x: Any) -> str:
    if isinstance(x, int):
        return str(x)
    text = repr(float(x))
    return text if "e" not in text else f"{x:.20f}".rstrip("0")


def dbc_text(messages: list[Msg]) -> str:
    out = ['VERSION ""', "", "NS_ :", "", "BS_:", "", "BU_: ECU", ""]
    tail: list[str] = []
    for m in messages:
        out.append(f"BO_ {m.dbc_id} {m.name}: {m.length} ECU")
        for s in m.signals:
            mux = " M" if s.is_mux else (f" m{s.mux_ids[0]}" if s.mux_ids else "")
            rng = f"[{_num(s.lo)}|{_num(s.hi)}]" if s.lo is not None else "[0|0]"
            out.append(
                f" SG_ {s.name}{mux} : {s.start}|{s.length}@{0 if s.big else 1}{'-' if s.signed else '+'} "
                f'({_num(s.scale)},{_num(s.offset)}) {rng} "{s.unit}" ECU'
            )
            if s.float_type:
                tail.append(f"SIG_VALTYPE_ {m.dbc_id} {s.name} : {s.float_type};")
            if s.choices:
                entries = " ".join(f'{k} "{v}"' for k, v in s.choices.items())
                tail.append(f"VAL_ {m.dbc_id} {s.name} {entries} ;")
            if len(s.mux_ids) > 1 and m.mux is not None:
                ranges = ", ".join(f"{v}-{v}" for v in s.mux_ids)
                tail.append(f"SG_MUL_VAL_ {m.dbc_id} {s.name} {m.mux.name} {ranges};")
        out.append("")
    return "\n".join(out + tail) + "\n"


class Generator:
    """Message definitions from one seed."""

    def __init__(self, seed: int) -> None:
        self.rnd = random.Random(seed)
        self.n = 0

    def _place(self, used: set[int], length: int, nbits: int) -> tuple[int, bool] | None:
        """A free (start, big endian) for `nbits` bits in a `length`-byte frame, or None."""
        rnd = self.rnd
        for _ in range(60):
            big = rnd.random() < 0.5
            first = rnd.randrange(0, 8 * length - nbits + 1)  # LSB (little) / network MSB index (big)
            start = first if not big else 8 * (first // 8) + 7 - first % 8
            probe = Sig("", start, nbits, big, False, 0, 1, 0, "")
            bits = set(probe.bits())
            if not bits & used and max(bits) < 8 * length:
                used |= bits
                return start, big
        return None

    def signal(self, used: set[int], length: int, j1939: bool = False) -> Sig | None:
        rnd = self.rnd
        self.n += 1
        name = f"S{self.n}"
        if not j1939 and rnd.random() < 0.1 and 8 * length >= 32:
            float_type = 2 if 8 * length >= 64 and rnd.random() < 0.5 else 1
            nbits = 32 * float_type
        else:
            float_type = 0
            top = min(32 if j1939 else 64, 8 * length)
            nbits = rnd.choice([1, 2, 3, 4, 7, 8, 8, 10, 12, 16, 16, 24, 31, 32, 33, 48, 63, 64])
            nbits = max(1, min(nbits, top))
        where = self._place(used, length, nbits)
        if where is None:
            return None
        scale, offset = rnd.choice(SCALES)
        signed = float_type == 0 and rnd.random() < 0.4
        if j1939 and rnd.random() < 0.6:
            signed, scale, offset = False, rnd.choice([1, 0.05, 0.4, 2]), rnd.choice([0, 0, -40])
        sig = Sig(name, where[0], nbits, where[1], signed, float_type, scale, offset, rnd.choice(UNITS))
        self._range(sig)
        if float_type == 0 and rnd.random() < 0.25:
            lo, hi = sig.raw_limits()
            keys = {rnd.randint(lo, hi) for _ in range(rnd.randint(1, 5))} | {lo, hi}
            sig.choices = {k: f"v{k}_{i}".replace("-", "n") for i, k in enumerate(sorted(keys))}
        return sig

    def _range(self, sig: Sig) -> None:
        """A DBC range whose ends are the physical values of raw values (as cantools computes them)."""
        rnd = self.rnd
        if rnd.random() < 0.3:
            return
        if sig.float_type:
            sig.lo, sig.hi = -1e6, rnd.choice([1e6, 2.5])
            return
        lo, hi = sig.raw_limits()
        a, b = sorted((rnd.randint(lo, hi), rnd.randint(lo, hi)))
        if a == b:
            return
        ends = sorted((phys(sig, a), phys(sig, b)))
        if ends[0] < ends[1]:
            sig.lo, sig.hi = ends

    def message(self, frame_id: int, extended: bool, j1939: bool = False) -> Msg:
        rnd = self.rnd
        length = rnd.choice(LENGTHS if not j1939 else (8, 8, 8, 3, 6, 12))
        used: set[int] = set()
        self.n += 1
        msg = Msg(f"M{self.n}", frame_id, extended, length, [])
        if not j1939 and length >= 2 and rnd.random() < 0.35:
            self._multiplexed(msg, used)
        for _ in range(rnd.randint(1, 6)):
            sig = self.signal(used, length, j1939)
            if sig is not None:
                msg.signals.append(sig)
        if not msg.signals:
            msg.signals.append(Sig(f"S{self.n}_x", 0, 1, False, False, 0, 1, 0, ""))
        return msg

    def _multiplexed(self, msg: Msg, used: set[int]) -> None:
        rnd = self.rnd
        nbits = rnd.choice([2, 3, 4, 8])
        where = self._place(used, msg.length, nbits)
        if where is None:
            return
        self.n += 1
        mux = Sig(f"Mux{self.n}", where[0], nbits, where[1], False, 0, 1, 0, "", is_mux=True)
        values = sorted(rnd.sample(range(1 << nbits), min(1 << nbits, rnd.randint(2, 5))))
        if rnd.random() < 0.3:
            mux.choices = {v: f"mode{v}" for v in values}
        msg.mux = mux
        msg.signals.append(mux)
        branches: dict[int, set[int]] = {v: set(used) for v in values}
        for _ in range(rnd.randint(1, 6)):
            ids = sorted(rnd.sample(values, rnd.choice([1, 1, 1, 2, min(3, len(values))])))
            taken = set().union(*(branches[v] for v in ids))
            sig = self.signal(taken, msg.length)
            if sig is None:
                continue
            sig.mux_ids = ids
            for v in ids:
                branches[v] |= set(sig.bits())
            msg.signals.append(sig)
        used |= set().union(*branches.values())  # the plain signals placed next share every frame


def phys(sig: Sig, raw: Any) -> Any:
    """raw * scale + offset as cantools computes it (identity: the raw value itself)."""
    if sig.scale == 1 and sig.offset == 0 and isinstance(sig.scale, int) and isinstance(sig.offset, int):
        return raw
    return raw * sig.scale + sig.offset


def edge_raws(sig: Sig) -> list[Any]:
    """Raw values at the edges: limits, zero, sign changes, the range's ends and their neighbours,
    every value-table entry; for a float, NaN, infinities, tiny and signed zeros."""
    if sig.float_type:
        return list(FLOAT_SPECIALS)
    lo, hi = sig.raw_limits()
    out = {lo, hi, 0, 1, -1, lo + 1, hi - 1, *sig.choices}
    if sig.lo is not None and not sig.float_type:
        for end in (sig.lo, sig.hi):
            guess = round((end - sig.offset) / sig.scale)
            out |= {guess - 1, guess, guess + 1}
    return sorted(v for v in out if lo <= v <= hi)
