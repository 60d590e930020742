"""A rack's decode plan: DBC signals → catalog samples, compiled once from a profile and a DBC.

`compile_rack` checks every mapping against the DBC (signal exists, template expands, message known,
no two messages a frame cannot tell apart) and returns a `RackPlan`, or problems with the path of the
profile entry they come from. `RackPlan.decode_window` turns the frames of one id in a window into
columns, block by block (`gateway.sources.can.block`): the daemon's CAN source decodes windows, `can
decode --profile` one frame at a time (`decode_frame`), through the same call. It never raises on bad
input and says why frames were counted instead of decoded.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from gateway.model import QUALITIES, Sample
from gateway.sources.can.block import OUT, Block, Part
from gateway.sources.can.config import CanProfile
from gateway.sources.can.decode import BY_SOURCE, DECODE_ERROR, OUT_OF_RANGE, REMOTE, SHORT, WRONG_SOURCE, FrameTable
from gateway.sources.can.devicetime import INVALID_TIME, DeviceTimes, TimeRule, device_times, resolve
from gateway.sources.can.profilemap import MuxArray, SignalIndex, expand_point, point_plan, unmapped_point
from gateway.sources.can.signals import MessageSignals
from gateway.sources.can.values import PointPlan

PLAIN = -(2**63)  # the block of a multiplexed message's plain points only (a frame whose mux is unreadable)


@dataclass(slots=True)
class Window:
    """What the frames of one id in a window gave: the blocks' rows, and why frames were counted."""

    parts: list[Part] = field(default_factory=list)
    reasons: Counter[str] = field(default_factory=Counter)
    decoded: int = 0  # frames that gave samples
    heard: bool = False  # some frame decoded (cleanly or out of range): the message is alive
    times: DeviceTimes | None = None  # the frames' device times (a message with `device_time:`)


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
    first_point: int = 0  # index of the first profile point that maps the message (for problems)
    signals: MessageSignals | None = None
    blocks: dict[int, Block] = field(default_factory=dict)  # mux value (0: not multiplexed; PLAIN) -> block
    # the blocks in order; per block its decoder (the first block of its signature) and its index in the rack
    order: list[Block] = field(default_factory=list)
    position: dict[int, int] = field(default_factory=dict)  # mux value -> position in `order`
    decoder_of: npt.NDArray[np.intp] = field(default_factory=lambda: np.zeros(0, dtype=np.intp))
    rack_index: npt.NDArray[np.intp] = field(default_factory=lambda: np.zeros(0, dtype=np.intp))
    time_rule: TimeRule | None = None  # the signal that carries the device's time (`device_time:`)

    def all_points(self) -> list[PointPlan]:
        out = list(self.plain)
        for pts in self.by_mux.values():
            out.extend(pts)
        return out

    def compile(self, rack: str, start: int) -> list[Block]:
        """The signals and blocks of this message (block indexes from `start`)."""
        names = sorted({p.signal for p in self.all_points()} | ({self.mux_signal} if self.mux_signal else set())
                       | ({self.time_rule.signal} if self.time_rule else set()))  # fmt: skip
        sig = self.signals = MessageSignals(self.message, names)
        shapes: dict[int, list[PointPlan]] = {0: self.plain}
        if self.mux_signal is not None:
            # the values cantools accepts: those of signals under the multiplexer, and its value-table entries
            ids = {i for s in self.message.signals if s.multiplexer_signal == self.mux_signal
                   for i in (s.multiplexer_ids or ())}  # fmt: skip
            ids |= set(self.message.get_signal_by_name(self.mux_signal).choices or ())
            if ids:  # else cantools reads the frame as if the multiplexer were a plain signal
                shapes = {PLAIN: self.plain} | {m: self.plain + self.by_mux.get(m, []) for m in sorted(ids)}
        decoders: dict[tuple[object, ...], int] = {}
        for i, (mux, points) in enumerate(shapes.items()):
            block = self.blocks[mux] = Block(start + i, self.key, mux, points, sig, rack)
            self.position[mux] = i
            self.order.append(block)
            decoders.setdefault(block.signature(), i)
        self.decoder_of = np.array([decoders[b.signature()] for b in self.order], dtype=np.intp)
        self.rack_index = np.array([b.index for b in self.order], dtype=np.intp)
        return list(self.order)

    def decode_window(self, datas: list[bytes], ts: int) -> Window:
        """The frames of this message in one window (in arrival order) as rows of its blocks: one
        `columns` call per signature of the blocks the frames belong to."""
        sig = self.signals
        assert sig is not None
        n, length = len(datas), self.length
        lengths = np.fromiter(map(len, datas), dtype=np.intp, count=n)
        if (lengths == length).all():
            data = np.frombuffer(b"".join(datas), dtype=np.uint8).reshape(n, length)
        else:
            data = np.zeros((n, length), dtype=np.uint8)
            for i, d in enumerate(datas):
                row = d[:length]
                data[i, : len(row)] = np.frombuffer(row, dtype=np.uint8)
        ok = lengths >= length
        out = Window()
        short = int(n - ok.sum())
        if short:
            out.reasons[SHORT] = short
        times = self._times(out, data, ok)
        if len(self.order) == 1:  # not multiplexed
            self._rows(out, self.order[0], data, ok, np.full(n, self.rack_index[0], dtype=np.intp), ts, times)
            return out
        col = sig.index[self.mux_signal or ""]
        visible = sig.present(lengths)[:, col] & (lengths > 0)
        mux = np.where(visible, sig.numbers(data, np.array([col], dtype=np.intp)).raw[:, 0], PLAIN)
        values, inverse = np.unique(mux, return_inverse=True)
        known = np.array([self.position.get(v, -1) for v in values.tolist()], dtype=np.intp)[inverse]
        unknown = known < 0  # a mux value the DBC does not define: plain points, bad
        if unknown.any():
            bad = int((ok & unknown).sum())
            if bad:
                out.reasons[DECODE_ERROR] += bad
            known[unknown] = self.position[PLAIN]
            ok &= ~unknown
        decoder = self.decoder_of[known]
        decoders = np.unique(decoder).tolist()
        for d in decoders:
            rows = np.flatnonzero(decoder == d) if len(decoders) > 1 else np.arange(n)
            rows_times = None if times is None else times[rows]
            self._rows(out, self.order[d], data[rows], ok[rows], self.rack_index[known[rows]], ts, rows_times)
        return out

    def _times(self, out: Window, data: Any, ok: Any) -> Any:
        """The frames' device times (None without `device_time:`); invalid ones counted."""
        rule, sig = self.time_rule, self.signals
        if rule is None or sig is None:
            return None
        phys = sig.numbers(data, np.array([sig.index[rule.signal]], dtype=np.intp)).phys[:, 0]
        out.times = device_times(phys, ok, rule)
        if out.times.invalid:
            out.reasons[INVALID_TIME] += out.times.invalid
        return out.times.ns

    def _rows(
        self, out: Window, block: Block, data: Any, ok: Any, blocks: npt.NDArray[np.intp], ts: int, times: Any = None
    ) -> None:
        """Rows of `block`'s signature (the frames of `blocks`, each of that signature) decoded as `block`."""
        if not block.width:
            out.heard |= bool(ok.any())
            return
        if ok.all():
            values, quality, objects = block.columns(data)
        else:
            values, quality = block.flagged(len(data))
            objects = None
            good = np.flatnonzero(ok)
            if len(good):
                v, q, o = block.columns(data[good])
                values[good], quality[good] = v, q
                objects = {(int(good[i]), c): x for (i, c), x in o.items()} if o else None
        oor = int((quality[ok] == OUT).any(axis=1).sum())
        if oor:
            out.reasons[OUT_OF_RANGE] += oor
        out.decoded += len(data)
        out.heard |= bool(ok.any())
        out.parts.append(Part(blocks, values, quality, objects, np.full(len(data), ts, dtype=np.int64), ok, times))


@dataclass(frozen=True, slots=True)
class PlanProblem:
    loc: tuple[int | str, ...]  # path in the profile (e.g. ("points", 3, "signal"))
    message: str


class RackPlan:
    """The compiled decoders of one rack: frame key → message plan, and the rack's blocks in order."""

    def __init__(self, rack: str, table: FrameTable, messages: dict[int, MessagePlan]) -> None:
        self.rack = rack
        self.table = table
        self.messages = messages
        self.blocks: list[Block] = []
        for m in messages.values():
            self.blocks += m.compile(rack, len(self.blocks))

    def key(self, arbitration_id: int, is_extended: bool) -> int:
        return self.table.key(arbitration_id, is_extended)

    def route(self, key: int, arbitration_id: int, is_extended: bool, is_remote: bool) -> MessagePlan | str:
        """The message plan a frame goes to, or why it is counted instead (unknown id, remote, source)."""
        plan = self.messages.get(key)
        if plan is None:
            return self.table.unmatched(key)
        if is_remote:
            return REMOTE
        if self.table.j1939 and not self.table.accepts(key, arbitration_id, is_extended):
            return WRONG_SOURCE
        return plan

    def decode_frame(
        self, arbitration_id: int, is_extended: bool, data: bytes | bytearray, ts: int, *, is_remote: bool = False
    ) -> tuple[list[Sample], str]:
        """The samples stored for one received frame, and why it was counted ("" when decoded cleanly)."""
        plan = self.route(self.key(arbitration_id, is_extended), arbitration_id, is_extended, is_remote)
        if isinstance(plan, str):
            return [], plan
        window = plan.decode_window([bytes(data)], ts)
        reason = next(iter(window.reasons), "")
        return [s for part in window.parts for s in part_samples(part, self.blocks)], reason


def part_samples(part: Part, blocks: list[Block]) -> list[Sample]:
    """The rows of a part as `Sample`s (the command line and tests; the source hands on columns).
    `blocks`: the rack's blocks, by index."""
    out = []
    objects = part.objects or {}
    for i, b in enumerate(part.blocks.tolist()):
        ts = int(part.ts[i])
        dts = None if part.device_ts is None else int(part.device_ts[i]) or None
        for c, k in enumerate(blocks[b].rows):
            v = part.values[i, c]
            value = objects.get((i, c), None if v != v else float(v))
            quality = QUALITIES[part.quality[i, c]]
            out.append(Sample(ts, k.quantity, value, k.unit, quality, k.rack, k.module, k.cell, dts))
    return out


def compile_rack(
    profile: CanProfile,
    db: Any,
    *,
    rack: str,
    id_offset: int = 0,
    source_address: int | None = None,
) -> RackPlan | list[PlanProblem]:
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
    for i, spec in enumerate(profile.device_time):
        timed = resolve(spec, index, set(plans))
        if isinstance(timed, str):
            problems.append(PlanProblem(("device_time", i, "signal"), timed))
        elif plans[timed[0]].time_rule is not None:
            problems.append(PlanProblem(("device_time", i), f"message {timed[0]} has a device_time already"))
        else:
            plans[timed[0]].time_rule = timed[1]
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
    for key, m in by_key.items():
        m.key = key
    return RackPlan(rack, table, by_key)


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
