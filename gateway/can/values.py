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
    scaled: bool = field(init=False, default=False)  # factor or offset apply

    def __post_init__(self) -> None:
        object.__setattr__(self, "scaled", self.factor != 1.0 or self.offset != 0.0)


def emit(out: list[Sample], p: PointPlan, v: Any, ts: int, rack: str) -> bool:
    """Append the samples of one point; True when the value is outside its DBC range."""
    named = isinstance(v, NamedSignalValue)
    num = v.value if named else v
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
