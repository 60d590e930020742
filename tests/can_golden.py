"""Golden CAN decoding: what cantools' own decoding of a frame says a rack plan must store.

Independent of the gateway's decoder: each frame is decoded by cantools (`decode_message` of the
plan's message, scaled, with and without value-table names), and each compiled profile point's rules
(README, "CAN"): a "not available" code or J1939 reserved value is `missing` (a J1939 error indicator
`bad`) without a value, a non-finite float `bad`, outside the DBC range `out_of_range`, the value a
value-table name for a point that keeps names, else the number times the point's factor plus its
offset; named bits as samples of their own. A short or undecodable frame gives its points `bad`.
"""

from __future__ import annotations

import math
from typing import Any

from cantools.database.namedsignalvalue import NamedSignalValue

from gateway.sources.can.plan import RackPlan

Got = dict[tuple[str, int | None, int | None], tuple[Any, str]]


def _flag(out: Got, p: Any, quality: str) -> None:
    for _, name in p.bits:
        out[(name, p.module, p.cell)] = (None, quality)
    out[(p.quantity, p.module, p.cell)] = (None, quality)


def _point(out: Got, p: Any, v: Any, named: Any) -> bool:
    if v in p.missing or (p.na_from is not None and v >= p.na_from):
        _flag(out, p, "missing")
        return False
    if (p.error_from is not None and v >= p.error_from) or (isinstance(v, float) and not math.isfinite(v)):
        _flag(out, p, "bad")
        return False
    bad = p.lo is not None and (v < p.lo or v > p.hi)
    quality = "out_of_range" if bad else "good"
    for bit, name in p.bits:
        out[(name, p.module, p.cell)] = ((int(v) >> bit) & 1, quality)
    if p.choices is not None and isinstance(named, NamedSignalValue | str):
        value: Any = str(named.name) if isinstance(named, NamedSignalValue) else named
    elif p.factor != 1.0 or p.offset != 0.0:
        value = v * p.factor + p.offset
    else:
        value = v
    out[(p.quantity, p.module, p.cell)] = (value, quality)
    return bad


def expected(plan: RackPlan, aid: int, ext: bool, data: bytes, remote: bool = False) -> tuple[Got, str]:
    """The samples (by quantity, module, cell) and the reason cantools' decoding says one frame gives."""
    key = plan.key(aid, ext)
    m = plan.messages.get(key)
    if m is None:
        return {}, plan.table.unmatched(key)
    if remote:
        return {}, "remote_frame"
    if plan.table.j1939 and not plan.table.accepts(key, aid, ext):
        return {}, "wrong_source_address"
    out: Got = {}
    try:
        if len(data) < m.length:
            raise ValueError("short")
        values = m.message.decode(data, decode_choices=False, scaling=True, allow_excess=True)
        names = m.message.decode(data, decode_choices=True, scaling=True, allow_excess=True)
    except Exception:
        points = list(m.plain)
        if m.mux_signal is not None and data:
            try:
                got = m.message.decode(data, decode_choices=False, allow_truncated=True, allow_excess=True)
                points += m.by_mux.get(int(got[m.mux_signal]), [])
            except Exception:
                pass
        for p in points:
            _flag(out, p, "bad")
        return out, "short_frame" if len(data) < m.length else "decode_error"
    mux = None if m.mux_signal is None else values.get(m.mux_signal)
    points = m.plain + (m.by_mux.get(int(mux), []) if mux is not None else [])
    reason = ""
    for p in points:
        if p.signal in values and _point(out, p, values[p.signal], names[p.signal]):
            reason = "out_of_range"
    return out, reason


def close(got: Any, want: Any) -> bool:
    if want is None or isinstance(want, str) or isinstance(got, str | None):
        return bool(got == want)
    return bool(got == want or abs(got - want) <= 1e-12 * max(abs(want), 1.0))


def assert_golden(plan: RackPlan, frames: list[tuple[int, bool, bytes]], remote: bool = False) -> set[str]:
    """Every frame through `plan.decode_frame` against cantools; the reasons seen."""
    reasons = set()
    for aid, ext, data in frames:
        samples, reason = plan.decode_frame(aid, ext, data, 7, is_remote=remote)
        want, want_reason = expected(plan, aid, ext, data, remote)
        got = {(s.quantity, s.module, s.cell): (s.value, str(s.quality)) for s in samples}
        assert len(got) == len(samples), samples
        assert reason == want_reason, (hex(aid), data.hex(), reason, want_reason)
        assert got.keys() == want.keys(), (hex(aid), data.hex())
        for k, (v, q) in want.items():
            assert q == got[k][1] and close(got[k][0], v), (hex(aid), data.hex(), k, got[k], (v, q))
        reasons.add(reason)
    return reasons
