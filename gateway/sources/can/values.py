"""Converting one decoded DBC signal into samples: units, scale, ranges, value tables, alarm bits.

`PointPlan` is one compiled profile point; `gateway.sources.can.block` applies the rules below to
the columns of a window of frames (the one place they are written):

A point's value is the DBC's scaled (physical) number, as cantools decodes it with
`decode_choices=False`; a value-table entry's name travels beside it. In order:

1. a "not available" code (`missing`, J1939's reserved ranges): no value, quality `missing` (or `bad`
   for a J1939 error indicator);
2. a non-finite float (a float signal's NaN or infinity): no value, quality `bad`;
3. the DBC range `[min|max]` (when min < max): outside it, quality `out_of_range`, else `good`, in
   every mode;
4. the stored value: a value-table name for a point that keeps names (state quantities, `names:
   true`), else the number times the point's factor (scale, unit conversion, invert) plus its offset,
   never rounded (a factor whose inverse is a whole number divides by it: 0.001 divides by 1000);
   with `bits:` each named bit of the number's integer part as its own sample.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway import catalog
from gateway.sources.can.config import CanPoint

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
    mode: int  # NUMBER, STATE (keeps value-table names) or BITS (named bits, and the number)
    factor: float
    offset: float
    lo: float | None  # DBC physical range; None when the DBC gives none
    hi: float | None
    bits: tuple[tuple[int, str], ...] = ()
    missing: frozenset[int | float] = frozenset()  # decoded values meaning "not available" (ints exact)
    na_from: float | None = None  # J1939: decoded values from here up are "not available"
    error_from: float | None = None  # J1939: from here up to na_from an "error indicator"
    # a point that keeps the names of a value-table signal: raw value -> name (None: numbers only)
    choices: Mapping[int, str] | None = field(default=None, compare=False)
    scaled: bool = field(init=False, default=False)  # factor or offset apply
    special: bool = field(init=False, default=False)  # has not-available or error values
    divisor: float = field(init=False, default=0.0)  # 1 / factor when that is a whole number (0: none)

    def __post_init__(self) -> None:
        object.__setattr__(self, "scaled", self.factor != 1.0 or self.offset != 0.0)
        object.__setattr__(self, "special", bool(self.missing) or self.na_from is not None)
        inverse = 1.0 / self.factor if self.factor else 0.0
        if abs(inverse) > 1.0 and inverse.is_integer() and 1.0 / inverse == self.factor:
            object.__setattr__(self, "divisor", inverse)  # 0.001: / 1000, so 3300 mV is 3.3 V, not 3.3000000000000003


def j1939_limits(sig: Any) -> tuple[float | None, float | None]:
    """Where the J1939 "error indicator" and "not available" ranges of an unsigned integer signal begin.

    One byte or more: the top byte 0xFE is an error, 0xFF not available (0xFE00.., 0xFF00.. for two
    bytes); shorter discrete signals: the highest value is not available, the one below an error.
    """
    n = int(sig.length)
    if sig.is_signed or sig.is_float or n < 2 or not sig.scale or sig.scale < 0:
        return None, None
    if n >= 8:
        err_raw, na_raw = 0xFE << (n - 8), 0xFF << (n - 8)
    else:
        err_raw, na_raw = (1 << n) - 2, (1 << n) - 1
    return err_raw * sig.scale + sig.offset, na_raw * sig.scale + sig.offset


def value_range(sig: Any) -> tuple[float | None, float | None]:
    """The DBC's [min|max] as cantools reads it: integers stay exact (a 64-bit range end is no float)."""
    lo, hi = sig.minimum, sig.maximum
    if lo is None or hi is None or lo >= hi:  # [0|0] means "not given" in most DBC tools
        return None, None
    return lo, hi


def point_factor(point: CanPoint, sig: Any, unit: str) -> float:
    if point.scale is not None:
        factor = point.scale
    else:
        factor = UNIT_FACTORS.get(((sig.unit or "").strip(), unit), 1.0)
    return -factor if point.invert else factor


def keeps_names(point: CanPoint) -> bool:
    """Whether value-table entries are stored as their names: `names:`, else yes for state quantities."""
    if point.names is not None:
        return point.names
    q = catalog.lookup(point.quantity)
    return not point.bits and q is not None and q.kind in (catalog.Kind.STATE, catalog.Kind.TEXT)


def point_mode(point: CanPoint) -> int:
    if point.bits:
        return BITS
    return STATE if keeps_names(point) else NUMBER


def point_choices(names: bool, sig: Any) -> dict[int, str] | None:
    """Raw value → name for a point that keeps the names of a value-table signal (None: numbers only)."""
    if not names or not sig.choices:
        return None
    return {int(k): str(v) for k, v in sig.choices.items()}


def bit_names(point: CanPoint) -> tuple[tuple[int, str], ...]:
    if not point.bits:
        return ()
    return tuple(sorted((b, n if "." in n else f"alarm.{n}") for b, n in point.bits.items()))
