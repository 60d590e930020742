"""Converting one decoded DBC signal into samples: units, scale, ranges, value tables, alarm bits.

`PointPlan` is one compiled profile point; `emit` appends its samples for a decoded value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from cantools.database.namedsignalvalue import NamedSignalValue

from gateway import catalog
from gateway.can.config import CanPoint
from gateway.model import Quality, Sample

# (DBC unit, catalog unit) → factor, applied when a point gives no `scale`. Case matters: m is milli, M mega.
UNIT_FACTORS: dict[tuple[str, str], float] = {
    **{(u, "V"): f for u, f in (("mV", 1e-3), ("kV", 1e3), ("KV", 1e3))},
    **{(u, "A"): f for u, f in (("mA", 1e-3), ("kA", 1e3), ("KA", 1e3))},
    **{(u, "W"): f for u, f in (("mW", 1e-3), ("kW", 1e3), ("KW", 1e3), ("MW", 1e6))},
    **{(u, "Wh"): f for u, f in (("kWh", 1e3), ("KWh", 1e3), ("MWh", 1e6))},
    **{(u, "Ah"): f for u, f in (("mAh", 1e-3),)},
    **{(u, "Ω"): f for u, f in (("mOhm", 1e-3), ("mΩ", 1e-3), ("kOhm", 1e3), ("KOhm", 1e3), ("kohm", 1e3),
                                ("kΩ", 1e3), ("MOhm", 1e6), ("Mohm", 1e6), ("MΩ", 1e6))},
}  # fmt: skip

NUMBER, STATE, BITS = 0, 1, 2


@dataclass(frozen=True, slots=True)
class PointPlan:
    signal: str
    quantity: str
    unit: str
    module: int | None
    cell: int | None
    mode: int  # NUMBER, STATE or BITS
    factor: float
    offset: float
    lo: float | None  # DBC physical range; None when the DBC gives none
    hi: float | None
    bits: tuple[tuple[int, str], ...] = ()
    missing: frozenset[float] = frozenset()  # decoded values meaning "not available"
    na_from: float | None = None  # J1939: decoded values from here up are "not available"
    error_from: float | None = None  # J1939: from here up to na_from an "error indicator"
    scaled: bool = field(init=False, default=False)  # factor or offset apply
    special: bool = field(init=False, default=False)  # has not-available or error values

    def __post_init__(self) -> None:
        object.__setattr__(self, "scaled", self.factor != 1.0 or self.offset != 0.0)
        object.__setattr__(self, "special", bool(self.missing) or self.na_from is not None)


def j1939_limits(sig: Any) -> tuple[float | None, float | None]:
    """Where the J1939 "error indicator" and "not available" ranges of an unsigned signal begin.

    One byte or more: the top byte 0xFE is an error, 0xFF not available (0xFE00.., 0xFF00.. for two
    bytes); shorter discrete signals: the highest value is not available, the one below an error.
    """
    n = int(sig.length)
    if sig.is_signed or n < 2 or not sig.scale or sig.scale < 0:
        return None, None
    if n >= 8:
        err_raw, na_raw = 0xFE << (n - 8), 0xFF << (n - 8)
    else:
        err_raw, na_raw = (1 << n) - 2, (1 << n) - 1
    return err_raw * sig.scale + sig.offset, na_raw * sig.scale + sig.offset


def _unavailable(p: PointPlan, num: float) -> Quality | None:
    """MISSING or BAD when the value is a "not available" or "error" code, else None."""
    if num in p.missing or (p.na_from is not None and num >= p.na_from):
        return Quality.MISSING
    if p.error_from is not None and num >= p.error_from:
        return Quality.BAD
    return None


def emit(out: list[Sample], p: PointPlan, v: Any, ts: int, rack: str) -> bool:
    """Append the samples of one point; True when the value is outside its DBC range."""
    named = isinstance(v, NamedSignalValue)
    num = v.value if named else v
    if p.special and isinstance(num, int | float):
        flag = _unavailable(p, num)
        if flag is not None:
            if p.mode == BITS:
                out.extend(Sample(ts, name, None, "", flag, rack, p.module, p.cell) for _, name in p.bits)
            out.append(Sample(ts, p.quantity, None, p.unit, flag, rack, p.module, p.cell))
            return False
    if p.mode == STATE:
        out.append(Sample(ts, p.quantity, str(v.name) if named else num, p.unit, Quality.GOOD, rack, p.module, p.cell))
        return False
    if not isinstance(num, int | float) or (isinstance(num, float) and not math.isfinite(num)):
        out.append(Sample(ts, p.quantity, None, p.unit, Quality.BAD, rack, p.module, p.cell))
        return False
    bad_range = (p.lo is not None and num < p.lo) or (p.hi is not None and num > p.hi)
    quality = Quality.OUT_OF_RANGE if bad_range else Quality.GOOD
    if p.mode == BITS:
        raw = int(num)
        for bit, name in p.bits:
            out.append(Sample(ts, name, (raw >> bit) & 1, "", quality, rack, p.module, p.cell))
    value = num * p.factor + p.offset if (p.factor != 1.0 or p.offset) else num
    if isinstance(value, float):
        value = round(value, 9)
    out.append(Sample(ts, p.quantity, value, p.unit, quality, rack, p.module, p.cell))
    return bad_range


def value_range(sig: Any) -> tuple[float | None, float | None]:
    lo, hi = sig.minimum, sig.maximum
    if lo is None or hi is None or lo >= hi:  # [0|0] means "not given" in most DBC tools
        return None, None
    return float(lo), float(hi)


def point_factor(point: CanPoint, sig: Any, unit: str) -> float:
    if point.scale is not None:
        factor = point.scale
    else:
        factor = UNIT_FACTORS.get(((sig.unit or "").strip(), unit), 1.0)
    return -factor if point.invert else factor


def point_mode(point: CanPoint) -> int:
    if point.bits:
        return BITS
    q = catalog.lookup(point.quantity)
    if q is not None and q.kind in (catalog.Kind.STATE, catalog.Kind.TEXT):
        return STATE
    return NUMBER


def bit_names(point: CanPoint) -> tuple[tuple[int, str], ...]:
    if not point.bits:
        return ()
    return tuple(sorted((b, n if "." in n else f"alarm.{n}") for b, n in point.bits.items()))
