"""What the gateway must store for a CAN frame, from cantools' own scaled decoding of it and the README.

Independent of the gateway's decoders: a profile point here (`Expect`) is what the generator meant
(factor, offset, names, missing values, bits), and each frame is decoded by cantools. Per point, in
order: a "not available" code (`missing`, J1939's reserved top byte) is `missing` without a value (a
J1939 error indicator `bad`); a non-finite float is `bad` without a value; outside the DBC range is
`out_of_range` (every mode); the value is the value-table name for a point that keeps names, else
cantools' scaled value times the factor plus the offset (never rounded); each named bit of the
value's integer part is a sample of its own. A short frame gives its points (and those of the mux
branch it still shows) as `bad` without values, a remote frame nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from cantools.database.namedsignalvalue import NamedSignalValue

from tests.can_generate import Msg, Sig


@dataclass
class Expect:
    """One profile point as the generator meant it."""

    message: str
    signal: str
    quantity: str
    unit: str
    module: int | None
    names: bool = False  # keeps value-table names
    factor: float = 1.0
    offset: float = 0.0
    bits: list[tuple[int, str]] = field(default_factory=list)
    missing: list[Any] = field(default_factory=list)
    j1939: bool = False  # J1939's reserved values apply (a j1939 profile)


@dataclass(frozen=True)
class Want:
    value: Any
    quality: str
    unit: str
    mag: float = 0.0  # size of the terms that made the value (for a tolerance of float rounding)


Key = tuple[str, int | None]  # (quantity, module) of a sample


def _reserved(sig: Sig, raw: Any) -> str | None:
    """J1939: an unsigned integer parameter's top byte 0xFF is not available, 0xFE an error indicator."""
    if sig.signed or sig.float_type or sig.length < 2 or not sig.scale or sig.scale < 0:
        return None
    n = sig.length
    top = raw >> (n - 8) if n >= 8 else raw
    na, err = (0xFF, 0xFE) if n >= 8 else ((1 << n) - 1, (1 << n) - 2)
    return "missing" if top == na else "bad" if top == err else None


def _flagged(out: dict[Key, Want], p: Expect, quality: str) -> None:
    for _, name in p.bits:
        out[(name, p.module)] = Want(None, quality, "")
    out[(p.quantity, p.module)] = Want(None, quality, p.unit)


def _point(out: dict[Key, Want], p: Expect, sig: Sig, v: Any, raw: Any, named: Any) -> bool:
    """The samples of one decoded point; True when out of range."""
    reserved = _reserved(sig, raw) if p.j1939 else None
    if v in p.missing or reserved == "missing":
        _flagged(out, p, "missing")
        return False
    if reserved == "bad":
        _flagged(out, p, "bad")
        return False
    if isinstance(v, float) and not math.isfinite(v):
        _flagged(out, p, "bad")
        return False
    bad = sig.lo is not None and (v < sig.lo or v > sig.hi)
    quality = "out_of_range" if bad else "good"
    for bit, name in p.bits:
        out[(name, p.module)] = Want((int(v) >> bit) & 1, quality, "")
    if p.names and isinstance(named, NamedSignalValue | str):
        out[(p.quantity, p.module)] = Want(str(named), quality, p.unit)
        return bad
    value = v * p.factor + p.offset if (p.factor != 1 or p.offset != 0) else v
    mag = (abs(raw * sig.scale) + abs(sig.offset)) * abs(p.factor) + abs(p.offset)
    out[(p.quantity, p.module)] = Want(value, quality, p.unit, mag)
    return bad


def expect(cmsg: Any, msg: Msg, points: list[Expect], data: bytes) -> tuple[dict[Key, Want], str]:
    """The samples (by quantity and module) and the reason of one frame of `msg` that was not remote."""
    sigs = {s.name: s for s in msg.signals}
    out: dict[Key, Want] = {}
    try:
        if len(data) < msg.length:
            raise ValueError("short")
        values = cmsg.decode(data, decode_choices=False, scaling=True, allow_excess=True)
        names = cmsg.decode(data, decode_choices=True, scaling=True, allow_excess=True)
        raws = cmsg.decode(data, decode_choices=False, scaling=False, allow_excess=True)
    except Exception:
        for p in _damaged(cmsg, msg, points, data):
            _flagged(out, p, "bad")
        return out, "short_frame" if len(data) < msg.length else "decode_error"
    reason = ""
    for p in points:
        if p.signal in values and _point(out, p, sigs[p.signal], values[p.signal], raws[p.signal], names[p.signal]):
            reason = "out_of_range"
    return out, reason


def _damaged(cmsg: Any, msg: Msg, points: list[Expect], data: bytes) -> list[Expect]:
    """The points of a frame that could not be decoded: plain ones, and the mux branch it still shows."""
    sigs = {s.name: s for s in msg.signals}
    mux = None
    if msg.mux is not None and data:
        try:
            got = cmsg.decode(data, decode_choices=False, allow_truncated=True, allow_excess=True)
            mux = int(got[msg.mux.name])
        except Exception:
            mux = None
    return [p for p in points if not sigs[p.signal].mux_ids or mux in sigs[p.signal].mux_ids]


def same(got: Any, want: Want) -> bool:
    """A stored value against the expected one: names and None exactly, numbers to float rounding."""
    if want.value is None or isinstance(want.value, str) or isinstance(got, str | None):
        return bool(got == want.value)
    if isinstance(got, bool) or not isinstance(got, int | float):
        return False
    if isinstance(got, int) and isinstance(want.value, int):
        return got == want.value
    return bool(abs(got - want.value) <= 1e-12 * want.mag)
