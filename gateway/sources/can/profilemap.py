"""Profile points resolved against a DBC: which signals an entry names, and the compiled `PointPlan`s.

`SignalIndex.find` resolves a point's signal (and `message:`); `expand_point` lists the signals an
array entry covers; `point_plan` compiles one mapped signal, `unmapped_point` one kept by `unmapped:
raw` (as raw.<signal>, value-table entries as their names).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from gateway.config.profiles import expand
from gateway.sources.can.config import CanPoint
from gateway.sources.can.values import (
    NUMBER,
    STATE,
    PointPlan,
    bit_names,
    j1939_limits,
    keeps_names,
    point_choices,
    point_factor,
    point_mode,
    value_range,
)


class MuxArray(NamedTuple):
    """An array sent through a multiplexed signal: which slot of each step is which element."""

    mux_step: int
    mux_slot: int
    tags: dict[int, tuple[int | None, int | None]]  # element index -> (module, cell)


class CoveredSignal(NamedTuple):
    """One signal a profile entry covers, with its tags (or its mux mapping)."""

    signal: str
    module: int | None
    cell: int | None
    mux: MuxArray | None


class SignalIndex:
    """Signal name → [(message, signal)] over the DBC, for resolving profile entries."""

    def __init__(self, db: Any) -> None:
        self.by_name: dict[str, list[tuple[Any, Any]]] = {}
        self.messages = {m.name: m for m in db.messages}
        for m in db.messages:
            for s in m.signals:
                self.by_name.setdefault(s.name, []).append((m, s))

    def find(self, signal: str, message: str | None) -> tuple[Any, Any] | str:
        if message is not None:
            msg = self.messages.get(message)
            if msg is None:
                return f"message {message!r} is not in the DBC"
            for s in msg.signals:
                if s.name == signal:
                    return msg, s
            return f"signal {signal!r} is not in message {message}"
        hits = self.by_name.get(signal, [])
        if not hits:
            return f"signal {signal!r} is not in the DBC"
        if len(hits) > 1:
            names = ", ".join(m.name for m, _ in hits)
            return f"signal {signal!r} is in several messages ({names}): add `message:`"
        return hits[0]


def expand_point(point: CanPoint) -> list[CoveredSignal]:
    """Every signal a profile entry covers."""
    if point.array is None:
        return [CoveredSignal(point.signal, point.module, None, None)]
    elements = expand(point.array, point.module)
    if point.mux_step is not None:
        tags = {e.index: (e.module, e.cell) for e in elements}
        return [CoveredSignal(point.signal, None, None, MuxArray(point.mux_step, point.mux_slot, tags))]
    out: list[CoveredSignal] = []
    for e in elements:
        try:
            name = point.signal.format(i=e.offset + point.index_start)
        except (KeyError, IndexError, ValueError):
            name = point.signal  # reported as "not in the DBC"
        out.append(CoveredSignal(name, e.module, e.cell, None))
    return out


def point_plan(point: CanPoint, sig: Any, name: str, module: int | None, cell: int | None, j1939: bool) -> PointPlan:
    """One mapped signal of a profile entry: unit, range, mode, factor, sentinels, J1939 limits, names."""
    unit = point.resolved_unit() or (sig.unit or "" if point.quantity.startswith("raw.") else "")
    lo, hi = value_range(sig)
    err_from, na_from = j1939_limits(sig) if j1939 else (None, None)
    mode = point_mode(point)
    factor = point_factor(point, sig, unit)
    missing = frozenset(v for v in point.missing if not isinstance(v, str))  # strings: made numbers by CanPoint
    return PointPlan(
        name, point.quantity, unit, module, cell, mode, factor, point.offset, lo, hi, bit_names(point), missing,
        na_from, err_from, point_choices(keeps_names(point), sig),
    )  # fmt: skip


def unmapped_point(sig: Any, j1939: bool) -> PointPlan:
    """A signal kept by `unmapped: raw`: raw.<signal> in the DBC unit, value-table entries as names."""
    lo, hi = value_range(sig)
    mode = STATE if sig.choices else NUMBER
    err_from, na_from = j1939_limits(sig) if j1939 else (None, None)
    return PointPlan(
        sig.name, f"raw.{sig.name}", sig.unit or "", None, None, mode, 1.0, 0.0, lo, hi, (), frozenset(),
        na_from, err_from, point_choices(True, sig),
    )  # fmt: skip
