"""A rack's decode plan: DBC signals → catalog samples, compiled once from a profile and a DBC.

`compile_rack` checks every mapping against the DBC (signal exists, template expands, message known,
no two messages a frame cannot tell apart) and returns a `RackPlan`, or problems with the path of the
profile entry they come from. `RackPlan.decode_frame` turns one received frame into the samples the
gateway stores (the daemon's CAN source and `can decode --profile` both go through it); it never
raises on bad input and says why a frame was counted instead of decoded.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from cantools.database.namedsignalvalue import NamedSignalValue

from gateway.model import Quality, Sample
from gateway.sources.can.config import CanProfile
from gateway.sources.can.decode import BY_SOURCE, DECODE_ERROR, OUT_OF_RANGE, REMOTE, SHORT, WRONG_SOURCE, FrameTable
from gateway.sources.can.profilemap import MuxArray, SignalIndex, expand_point, point_plan, unmapped_point
from gateway.sources.can.sampler import Sampler, build_sampler
from gateway.sources.can.values import PointPlan, emit, flagged


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
    sampler: Sampler | None = None  # bytes -> samples in one call (None: through cantools)
    names: bool = False  # some point keeps value-table names (the cantools path decodes them too)
    first_point: int = 0  # index of the first profile point that maps the message (for problems)

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

    def decode_frame(
        self, arbitration_id: int, is_extended: bool, data: bytes | bytearray, ts: int, *, is_remote: bool = False
    ) -> tuple[list[Sample], str]:
        """The samples stored for one received frame, and why it was counted ("" when decoded cleanly)."""
        key = self.table.key(arbitration_id, is_extended)
        return self.decode(key, arbitration_id, is_extended, data, ts, is_remote=is_remote)

    def decode(
        self,
        key: int,
        arbitration_id: int,
        is_extended: bool,
        data: bytes | bytearray,
        ts: int,
        *,
        is_remote: bool = False,
    ) -> tuple[list[Sample], str]:
        """`decode_frame` for a frame whose key (`key()`) the caller has already computed."""
        plan = self.messages.get(key)
        if plan is None:
            return [], self.table.unmatched(key)
        if is_remote:
            return [], REMOTE
        if self.table.j1939 and not self.table.accepts(key, arbitration_id, is_extended):
            return [], WRONG_SOURCE
        sampler = plan.sampler
        if sampler is not None:
            sampled = sampler(data, ts)
            if sampled is not None:
                return sampled
        if len(data) < plan.length:
            return self._flag_bad(plan, data, ts), SHORT
        try:  # cantools raises DecodeError, KeyError, ValueError (a NaN mux) ...
            frame = bytes(data)
            signals = plan.message.decode(frame, decode_choices=False, scaling=True, allow_excess=True)
            names = {}
            if plan.names:  # value-table names for the points that keep them, as cantools gives them
                names = plan.message.decode(frame, decode_choices=True, scaling=True, allow_excess=True)
            mux = 0 if plan.mux_signal is None else int(signals[plan.mux_signal])
        except Exception:
            return self._flag_bad(plan, data, ts), DECODE_ERROR
        points = plan.plain
        extra = plan.by_mux.get(mux) if plan.mux_signal is not None else None
        if extra:
            points = points + extra if points else extra
        out: list[Sample] = []
        reason = ""
        for p in points:
            v = signals.get(p.signal)
            if v is None:
                continue
            name = _name(names.get(p.signal)) if p.choices is not None else None
            if emit(out, p, v, ts, self.rack, name):
                reason = OUT_OF_RANGE
        self.last[(key, mux)] = out
        return out, reason

    def _flag_bad(self, plan: MessagePlan, data: bytes | bytearray, ts: int) -> list[Sample]:
        """Bad-quality samples (value None) for the points a damaged frame would have carried."""
        points = list(plan.plain)
        if plan.mux_signal is not None and data:
            try:
                got = plan.message.decode(bytes(data), decode_choices=False, allow_truncated=True, allow_excess=True)
                points.extend(plan.by_mux.get(int(got[plan.mux_signal]), ()))
            except Exception:  # the mux signal itself is damaged or cut off: flag the plain points only
                pass
        out: list[Sample] = []
        for p in points:
            flagged(out, p, ts, self.rack, Quality.BAD)
        return out


def _name(value: Any) -> str | None:
    """A value-table entry's name as cantools decodes it (a NamedSignalValue, or a plain string)."""
    if isinstance(value, NamedSignalValue):
        return str(value.name)
    return value if isinstance(value, str) else None


def compile_rack(
    profile: CanProfile,
    db: Any,
    *,
    rack: str,
    id_offset: int = 0,
    source_address: int | None = None,
    fast: bool = True,
) -> RackPlan | list[PlanProblem]:
    """`fast`: decode with generated per-message samplers where the DBC allows (the same samples as
    the cantools path; False: every frame through cantools, the reference)."""
    index = SignalIndex(db)
    problems = _message_problems(profile, index)
    plans: dict[str, MessagePlan] = {}
    for i, point in enumerate(profile.points):
        for sig_name, module, cell, mux_of in expand_point(point):
            found = index.find(sig_name, point.message)
            if isinstance(found, str):
                problems.append(PlanProblem(("points", i, "signal"), found))
                break
            msg, sig = found
            mplan = plans.get(msg.name)
            if mplan is None:
                mplan = plans[msg.name] = _message_plan(msg, profile, i)
            if sig.multiplexer_signal is not None and sig.multiplexer_signal != mplan.mux_signal:
                problems.append(
                    PlanProblem(
                        ("points", i, "signal"),
                        f"signal {sig_name!r} is under the nested multiplexer {sig.multiplexer_signal}: "
                        "only one multiplexer level is supported",
                    )
                )
                break
            _place(mplan, sig, point_plan(point, sig, sig_name, module, cell, profile.j1939), mux_of)
    if profile.unmapped == "raw":
        _add_unmapped(plans, profile.j1939)
    sources = {n: o.source_address for n, o in profile.messages.items() if o.source_address is not None}
    table = FrameTable(
        db, id_offset=id_offset, j1939=profile.j1939, source_address=source_address, only=set(plans), sources=sources
    )
    for kept, other in table.clashes:
        loc = ("points", plans[other.name].first_point, "signal")
        problems.append(PlanProblem(loc, _clash(kept, other, table.keys[other.name], profile.j1939)))
    if problems:
        return problems
    by_key = {table.keys[m.name]: m for m in plans.values()}
    plan = RackPlan(rack, table, by_key)
    for key, m in by_key.items():
        m.key = key
        m.names = any(p.choices is not None for p in m.all_points())
        if fast:  # J1939 too: the source address is checked first, the special values are the points'
            m.sampler = build_sampler(m.message, m.mux_signal, m.plain, m.by_mux, rack, (key, plan.last))
    return plan


def _message_problems(profile: CanProfile, index: SignalIndex) -> list[PlanProblem]:
    out = []
    for name, override in profile.messages.items():
        msg = index.messages.get(name)
        if msg is None:
            out.append(PlanProblem(("messages", name), f"message {name!r} is not in the DBC"))
        elif override.source_address is not None and not (profile.j1939 and msg.is_extended_frame):
            why = "the profile is not j1939: true" if not profile.j1939 else "its frame id is not a 29-bit J1939 id"
            out.append(PlanProblem(("messages", name, "source_address"), f"a source address needs J1939: {why}"))
    return out


def _clash(kept: Any, other: Any, key: int, j1939: bool) -> str:
    if j1939 and other.is_extended_frame:
        sa = f" from source address 0x{key & 0xFF:02X}" if key & BY_SOURCE else ""
        what = f"PGN 0x{(key >> 8) & 0x3FFFF:05X}{sa}"
    else:
        what = f"frame id 0x{key & 0x1FFFFFFF:X}"
    return (
        f"messages {kept.name} and {other.name} are both {what}: a frame cannot tell them apart "
        "(map one of them, or give each its own source address under `messages:`)"
    )


def _place(mplan: MessagePlan, sig: Any, pp: PointPlan, mux_of: MuxArray | None) -> None:
    """Put a point among the message's plain points or under the mux values of its signal."""
    if mux_of is not None:
        step, slot, tags = mux_of
        for mux in sig.multiplexer_ids or ():
            tag = tags.get(mux * step + slot)
            if tag is not None:
                mplan.by_mux.setdefault(mux, []).append(replace(pp, module=tag[0], cell=tag[1]))
    elif sig.multiplexer_ids:
        for mux in sig.multiplexer_ids:
            mplan.by_mux.setdefault(mux, []).append(pp)
    else:
        mplan.plain.append(pp)


def _message_plan(msg: Any, profile: CanProfile, first_point: int) -> MessagePlan:
    override = profile.messages.get(msg.name)
    cycle: float | None = (msg.cycle_time / 1000.0) if msg.cycle_time else None
    stale = profile.stale_after_cycles
    if override is not None:
        if override.cycle_time is not None:
            cycle = override.cycle_time or None
        if override.stale_after_cycles is not None:
            stale = override.stale_after_cycles
    mux = next((s.name for s in msg.signals if s.is_multiplexer and s.multiplexer_signal is None), None)
    return MessagePlan(0, msg.name, msg.length, msg, cycle, stale, mux, first_point=first_point)


def _add_unmapped(plans: dict[str, MessagePlan], j1939: bool) -> None:
    """`unmapped: raw`: every other signal of a mapped message (see `profilemap.unmapped_point`)."""
    for mplan in plans.values():
        mapped = {p.signal for p in mplan.all_points()}
        for sig in mplan.message.signals:
            if sig.name not in mapped and sig.multiplexer_signal in (None, mplan.mux_signal):
                _place(mplan, sig, unmapped_point(sig, j1939), None)
