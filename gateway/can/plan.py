"""A rack's decode plan: DBC signals → catalog samples, compiled once from a profile and a DBC.

`compile_rack` checks every mapping against the DBC (signal exists, template expands, message known)
and returns a `RackPlan`, or problems with the path of the profile entry they come from.
`RackPlan.decode` turns one frame into samples; it never raises on bad input and says why a frame
was not decoded.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from cantools.database.namedsignalvalue import NamedSignalValue

from gateway.can.config import CanPoint, CanProfile
from gateway.can.decode import DECODE_ERROR, OUT_OF_RANGE, SHORT, UNKNOWN_ID, FrameTable, message_key
from gateway.can.fastdecode import FastDecoder, fast_decoder
from gateway.can.sampler import Sampler, build_sampler
from gateway.can.values import (
    BITS,
    NUMBER,
    STATE,
    PointPlan,
    bit_names,
    emit,
    j1939_limits,
    point_factor,
    point_mode,
    value_range,
)
from gateway.model import Quality, Sample
from gateway.profiles import expand

_GOOD, _OUT = Quality.GOOD, Quality.OUT_OF_RANGE


@dataclass(slots=True)
class MessagePlan:
    key: int
    name: str
    length: int
    message: Any  # cantools Message
    cycle: float | None  # seconds, None = not supervised
    stale_after: float  # missed cycles
    mux_signal: str | None
    plain: list[PointPlan] = field(default_factory=list)
    by_mux: dict[int, list[PointPlan]] = field(default_factory=dict)
    fast: FastDecoder | None = None  # the signals the points read, without cantools (None: cantools)
    sampler: Sampler | None = None  # bytes -> samples in one call (None: through `fast` or cantools)

    def all_points(self) -> list[PointPlan]:
        out = list(self.plain)
        for pts in self.by_mux.values():
            out.extend(pts)
        return out


@dataclass(frozen=True, slots=True)
class PlanProblem:
    loc: tuple[int | str, ...]  # path in the profile (e.g. ("points", 3, "signal"))
    message: str


class RackPlan:
    """The compiled decoders of one rack: frame key → message plan."""

    def __init__(self, rack: str, table: FrameTable, messages: dict[int, MessagePlan]) -> None:
        self.rack = rack
        self.table = table
        self.messages = messages
        self.last: dict[tuple[int, int], list[Sample]] = {}  # (key, mux) -> last samples, for stale/comm_loss

    def key(self, arbitration_id: int, is_extended: bool) -> int:
        return self.table.key(arbitration_id, is_extended)

    def decode(
        self, key: int, arbitration_id: int, is_extended: bool, data: bytes | bytearray, ts: int
    ) -> tuple[list[Sample], str]:
        """Samples of one frame and a reason ("" when decoded cleanly) for the hygiene counters."""
        plan = self.messages.get(key)
        if plan is None:
            return [], UNKNOWN_ID
        sampler = plan.sampler
        if sampler is not None and not (self.table.j1939 and self._wrong_source(arbitration_id, is_extended)):
            sampled = sampler(data, ts)
            if sampled is not None:
                return sampled
        if len(data) < plan.length:
            return self._flag_bad(plan, data, ts), SHORT
        if self.table.j1939:
            result = self.table.decode(arbitration_id, is_extended, data)
            if isinstance(result, str):
                return (self._flag_bad(plan, data, ts) if result == DECODE_ERROR else []), result
            signals = result.signals
        else:
            fast = plan.fast
            got = fast(data) if fast is not None else None
            if got is not None:
                signals = got
            else:
                try:
                    signals = plan.message.decode(bytes(data), decode_choices=True, scaling=True, allow_excess=True)
                except Exception:  # cantools raises DecodeError, KeyError (unknown mux value), ...
                    return self._flag_bad(plan, data, ts), DECODE_ERROR
        points = plan.plain
        mux = 0
        if plan.mux_signal is not None:
            mv = signals.get(plan.mux_signal)
            mux = int(mv.value if isinstance(mv, NamedSignalValue) else (mv or 0))
            extra = plan.by_mux.get(mux)
            if extra:
                points = points + extra if points else extra
        out: list[Sample] = []
        append = out.append
        reason = ""
        rack = self.rack
        get = signals.get
        new = tuple.__new__
        for p in points:
            v = get(p.signal)
            if v is None:
                continue
            kind = v.__class__
            # the common case inline: a plain finite number (NaN fails v == v)
            if p.mode == NUMBER and not p.special and (kind is int or (kind is float and v == v and v - v == 0)):
                lo = p.lo
                quality = _GOOD
                if lo is not None and (v < lo or v > p.hi):
                    quality = _OUT
                    reason = OUT_OF_RANGE
                if p.scaled:
                    v = round(v * p.factor + p.offset, 9)
                # Sample(ts, quantity, v, unit, quality, rack, module, cell), without the NamedTuple __new__ frame
                append(new(Sample, (ts, p.quantity, v, p.unit, quality, rack, p.module, p.cell, None)))
            elif emit(out, p, v, ts, rack):
                reason = OUT_OF_RANGE
        self.last[(key, mux)] = out
        return out, reason

    def _wrong_source(self, arbitration_id: int, is_extended: bool) -> bool:
        """J1939: a frame from another source address than the rack's (`FrameTable.decode` refuses it)."""
        sa = self.table.source_address
        return sa is not None and is_extended and (arbitration_id & 0xFF) != sa

    def _flag_bad(self, plan: MessagePlan, data: bytes | bytearray, ts: int) -> list[Sample]:
        """Bad-quality samples (value None) for the points a damaged frame would have carried."""
        points = list(plan.plain)
        if plan.mux_signal is not None and data:
            try:
                raw = plan.message.decode(bytes(data), decode_choices=False, scaling=False, allow_truncated=True)
                mux = int(raw.get(plan.mux_signal, -1))
            except Exception:  # the mux signal itself is damaged: flag the plain points only
                mux = -1
            points.extend(plan.by_mux.get(mux, ()))
        out: list[Sample] = []
        for p in points:
            if p.mode == BITS:
                out.extend(Sample(ts, name, None, "", Quality.BAD, self.rack, p.module, p.cell) for _, name in p.bits)
            out.append(Sample(ts, p.quantity, None, p.unit, Quality.BAD, self.rack, p.module, p.cell))
        return out


class _Index:
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


def compile_rack(
    profile: CanProfile,
    db: Any,
    *,
    rack: str,
    id_offset: int = 0,
    source_address: int | None = None,
    fast: bool = True,
) -> RackPlan | list[PlanProblem]:
    """`fast`: decode with per-message fast decoders where the DBC allows (same values as cantools)."""
    index = _Index(db)
    problems: list[PlanProblem] = []
    plans: dict[str, MessagePlan] = {}
    for name in profile.messages:
        if name not in index.messages:
            problems.append(PlanProblem(("messages", name), f"message {name!r} is not in the DBC"))
    for i, point in enumerate(profile.points):
        for sig_name, module, cell, mux_of in _expand_point(point):
            found = index.find(sig_name, point.message)
            if isinstance(found, str):
                problems.append(PlanProblem(("points", i, "signal"), found))
                break
            msg, sig = found
            mplan = plans.get(msg.name)
            if mplan is None:
                mplan = plans[msg.name] = _message_plan(msg, profile, id_offset)
            if sig.multiplexer_signal is not None and sig.multiplexer_signal != mplan.mux_signal:
                problems.append(
                    PlanProblem(
                        ("points", i, "signal"),
                        f"signal {sig_name!r} is under the nested multiplexer {sig.multiplexer_signal}: "
                        "only one multiplexer level is supported",
                    )
                )
                break
            unit = point.resolved_unit() or (sig.unit or "" if point.quantity.startswith("raw.") else "")
            lo, hi = value_range(sig)
            err_from, na_from = j1939_limits(sig) if profile.j1939 else (None, None)
            pp = PointPlan(
                sig_name,
                point.quantity,
                unit,
                module,
                cell,
                point_mode(point),
                point_factor(point, sig, unit),
                point.offset,
                lo,
                hi,
                bit_names(point),
                frozenset(point.missing),
                na_from,
                err_from,
            )
            if mux_of is not None:
                ids = sig.multiplexer_ids or []
                for mux in ids:
                    index_ = mux * mux_of[0] + mux_of[1]
                    tags = mux_of[2].get(index_)
                    if tags is not None:
                        mplan.by_mux.setdefault(mux, []).append(
                            replace(pp, module=tags[0], cell=tags[1]),
                        )
            elif sig.multiplexer_ids:
                for mux in sig.multiplexer_ids:
                    mplan.by_mux.setdefault(mux, []).append(pp)
            else:
                mplan.plain.append(pp)
    if profile.unmapped == "raw":
        _add_unmapped(plans, profile.j1939)
    if problems:
        return problems
    table = FrameTable(db, id_offset=id_offset, j1939=profile.j1939, source_address=source_address, only=set(plans))
    by_key = {message_key(m.message, id_offset, profile.j1939): m for m in plans.values()}
    plan = RackPlan(rack, table, by_key)
    for m in by_key.values():
        m.key = message_key(m.message, id_offset, profile.j1939)
        if fast and not profile.j1939:
            m.fast = fast_decoder(
                m.message,
                m.mux_signal,
                [p.signal for p in m.plain],
                {mux: [p.signal for p in pts] for mux, pts in m.by_mux.items()},
            )
        if fast:  # J1939 too: the source address is checked first, the special values are the points'
            m.sampler = build_sampler(m.message, m.mux_signal, m.plain, m.by_mux, rack, (m.key, plan.last))
    return plan


def _expand_point(
    point: CanPoint,
) -> list[tuple[str, int | None, int | None, tuple[int, int, dict[int, tuple[int | None, int | None]]] | None]]:
    """(signal name, module, cell, mux mapping) for every signal a profile entry covers."""
    if point.array is None:
        return [(point.signal, point.module, None, None)]
    elements = expand(point.array, point.module)
    if point.mux_step is not None:
        tags = {e.index: (e.module, e.cell) for e in elements}
        return [(point.signal, None, None, (point.mux_step, point.mux_slot, tags))]
    out: list[tuple[str, int | None, int | None, Any]] = []
    for e in elements:
        try:
            name = point.signal.format(i=e.offset + point.index_start)
        except (KeyError, IndexError, ValueError):
            name = point.signal  # reported as "not in the DBC"
        out.append((name, e.module, e.cell, None))
    return out


def _message_plan(msg: Any, profile: CanProfile, id_offset: int) -> MessagePlan:
    override = profile.messages.get(msg.name)
    cycle: float | None = (msg.cycle_time / 1000.0) if msg.cycle_time else None
    stale = profile.stale_after_cycles
    if override is not None:
        if override.cycle_time is not None:
            cycle = override.cycle_time or None
        if override.stale_after_cycles is not None:
            stale = override.stale_after_cycles
    mux = next((s.name for s in msg.signals if s.is_multiplexer and s.multiplexer_signal is None), None)
    return MessagePlan(message_key(msg, id_offset, profile.j1939), msg.name, msg.length, msg, cycle, stale, mux)


def _add_unmapped(plans: dict[str, MessagePlan], j1939: bool) -> None:
    for mplan in plans.values():
        mapped = {p.signal for p in mplan.all_points()}
        for sig in mplan.message.signals:
            if sig.name in mapped or sig.is_multiplexer:
                continue
            lo, hi = value_range(sig)
            mode = STATE if sig.choices else NUMBER
            err_from, na_from = j1939_limits(sig) if j1939 else (None, None)
            pp = PointPlan(
                sig.name, f"raw.{sig.name}", sig.unit or "", None, None, mode, 1.0, 0.0, lo, hi, (), frozenset(),
                na_from, err_from,
            )  # fmt: skip
            if sig.multiplexer_ids:
                for mux in sig.multiplexer_ids:
                    mplan.by_mux.setdefault(mux, []).append(pp)
            else:
                mplan.plain.append(pp)
