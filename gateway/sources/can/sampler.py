"""Per-message sample builders: a frame's bytes → its samples in one call, generated once per rack plan.

For a message whose signals shifts and masks can decode (`fastdecode.message_bits`), `build_sampler`
writes the chain bytes → raw value → the point's samples out as straight-line Python, one function
per mux value, compiled at start-up: a frame costs two calls and no intermediate dict.

For a plain number (the common point) the value and quality are a pure function of the raw bits,
the signal's conversion and the point's range and scale, so they are kept per raw value in a bounded
table shared by the points with the same parameters (`values.number_entry` computes them). Every
other point (value tables, bits, not-available codes, non-finite values) goes through `values.emit`
with the decoded number and, for a point that keeps names, the value-table name: the rules are the
plan's own, written once in `gateway.sources.can.values`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.model import Quality, Sample
from gateway.sources.can.decode import OUT_OF_RANGE
from gateway.sources.can.fastdecode import IDENT, LINEAR, MessageBits, Spec, message_bits
from gateway.sources.can.values import NUMBER, PointPlan, emit, number_entry

# data, ts -> (samples, reason), or None for a frame it does not take (shorter than the message, or a
# mux value the DBC does not define: the caller decodes it the general way, which reports it)
Sampler = Callable[[bytes | bytearray, int], tuple[list[Sample], str] | None]
Entry = tuple[Any, str]  # (value, quality) of a plain number
TABLE_MAX = 4096  # raw values remembered per table (about 0.6 MB when full)
_OUT = Quality.OUT_OF_RANGE
_new = tuple.__new__


def _tabled(p: PointPlan, spec: Spec) -> bool:
    """Whether the point's (value, quality) can be kept per raw value: a plain number, linear conversion."""
    kind, scale, offset = spec.kind, spec.scale, spec.offset
    if p.mode != NUMBER or p.special or p.choices is not None or kind not in (IDENT, LINEAR):
        return False
    return kind == IDENT or (type(scale) in (int, float) and type(offset) in (int, float))


class RawTable:
    """Raw value → (value, quality) of a plain number, for every point with the same parameters."""

    def __init__(self, p: PointPlan, spec: Spec) -> None:
        self.linear = spec.kind == LINEAR
        self.scale, self.offset = spec.scale, spec.offset
        self.p = p
        self.entries: dict[int, Entry] = {}

    @staticmethod
    def key(p: PointPlan, spec: Spec) -> str:
        # repr keeps apart what == merges: 1 and 1.0, 0.0 and -0.0
        return repr((spec.kind == LINEAR, spec.scale, spec.offset, p.lo, p.hi, p.scaled, p.factor, p.offset))

    def miss(self, raw: int) -> Entry | None:
        """Compute, remember and return the entry; None for a non-finite value (the general path)."""
        entry = number_entry(self.p, raw * self.scale + self.offset if self.linear else raw)
        if entry is not None and len(self.entries) < TABLE_MAX:
            self.entries[raw] = entry
        return entry


# tables by parameters, shared by every rack of the process: racks of one profile share their tables,
# and a reload that compiles the same profile again finds them filled
SHARED: dict[str, RawTable] = {}


class _Writer:
    """Source text of one message's functions, and the namespace their names refer to."""

    def __init__(self, rack: str, tables: dict[str, RawTable]) -> None:
        self.ns: dict[str, Any] = {
            "new": _new,
            "S": Sample,
            "RACK": rack,
            "OUTQ": _OUT,
            "OUT": OUT_OF_RANGE,
            "point": emit,
            "from_bytes": int.from_bytes,
        }
        self.tables = tables
        self.lines: list[str] = []
        self.n = 0

    def const(self, value: Any) -> str:
        self.n += 1
        name = f"K{self.n}"
        self.ns[name] = value
        return name

    def raw(self, spec: Spec) -> list[str]:
        out = [f"raw = ({'be' if spec.big else 'le'} >> {spec.shift}) & {spec.mask}"]
        if spec.sign:
            out.append(f"if raw & {spec.sign}: raw -= {spec.mask + 1}")
        return out

    def point(self, p: PointPlan, spec: Spec) -> list[str]:
        body = self.raw(spec)
        tail = f"{self.const(p.module)}, {self.const(p.cell)}, None"
        if _tabled(p, spec):
            key = RawTable.key(p, spec)
            table = self.tables.get(key) or self.tables.setdefault(key, RawTable(p, spec))
            t, miss = self.const(table.entries), self.const(table.miss)
            q, u = self.const(p.quantity), self.const(p.unit)
            return [
                *body,
                f"t = {t}.get(raw) or {miss}(raw)",
                "if t is None:",
                f"    if point(out, {self.const(p)}, {self.value(spec)}, ts, RACK): reason = OUT",
                "else:",
                f"    append(new(S, (ts, {q}, t[0], {u}, t[1], RACK, {tail})))",
                "    if t[1] is OUTQ: reason = OUT",
            ]
        name = f", {self.const(p.choices)}.get(raw)" if p.choices is not None else ""
        return [*body, f"if point(out, {self.const(p)}, {self.value(spec)}, ts, RACK{name}): reason = OUT"]

    def value(self, spec: Spec) -> str:
        """The decoded number (never a value-table name: `emit` gets the name beside it)."""
        if spec.kind == IDENT:
            return "raw"
        if spec.kind == LINEAR:
            return f"raw * {self.const(spec.scale)} + {self.const(spec.offset)}"
        return f"{self.const(spec.conv)}(raw, False)"

    def function(self, name: str, points: list[tuple[PointPlan, Spec]]) -> None:
        self.lines += [f"def {name}(le, be, ts):", "    out = []", "    append = out.append", '    reason = ""']
        for p, spec in points:
            self.lines += ["    " + line for line in self.point(p, spec)]
        self.lines += ["    return out, reason", ""]


def build_sampler(
    message: Any,
    mux_signal: str | None,
    plain: list[PointPlan],
    by_mux: dict[int, list[PointPlan]],
    rack: str,
    last: tuple[int, dict[tuple[int, int], list[Sample]]],
    tables: dict[str, RawTable] | None = None,
) -> Sampler | None:
    """The sampler of one message of a rack plan, or None when `fastdecode` cannot take its signals.

    `last` is (the message's key, the plan's `last`): each frame's samples are kept there under (key,
    mux) as `RackPlan.decode` keeps them. `tables`: where the raw-value tables are kept (`SHARED`)."""
    bits = message_bits(message, mux_signal)
    if bits is None:
        return None
    specs: dict[str, Spec] = {}
    for p in [*plain, *(p for pts in by_mux.values() for p in pts)]:
        spec = bits.spec(p.signal)
        if spec is None:
            return None
        specs[p.signal] = spec
    w = _Writer(rack, SHARED if tables is None else tables)
    w.function("plain", [(p, specs[p.signal]) for p in plain])
    for i, mux in enumerate(sorted(by_mux)):  # named by position: a mux value may be any integer
        w.function(f"mux_{i}", [(p, specs[p.signal]) for p in [*plain, *by_mux[mux]]])
    key, w.ns["LAST"] = last
    w.lines += _dispatcher(bits, list(specs.values()), sorted(by_mux), key)
    code = compile("\n".join(w.lines), f"<CAN sampler {message.name} of {rack}>", "exec")
    exec(code, w.ns)  # our own text: names and integer literals only
    return w.ns["sample"]  # type: ignore[no-any-return]


def _dispatcher(bits: MessageBits, specs: list[Spec], muxes: list[int], key: int) -> list[str]:
    need_big = any(s.big for s in specs) or (bits.mux is not None and bits.mux.big)
    lines = [
        "def sample(data, ts):",
        f"    if len(data) < {bits.length}:",
        "        return None",  # short: the plan flags its points
        '    le = from_bytes(data, "little")',  # excess bytes land above every signal
        f'    be = from_bytes(data[:{bits.length}], "big")' if need_big else "    be = 0",
    ]
    if bits.mux is None:
        return [*lines, "    out, reason = plain(le, be, ts)", f"    LAST[({key}, 0)] = out", "    return out, reason"]
    mux = bits.mux
    lines.append(f"    raw = ({'be' if mux.big else 'le'} >> {mux.shift}) & {mux.mask}")
    if mux.sign:
        lines.append(f"    if raw & {mux.sign}: raw -= {mux.mask + 1}")
    fns = [f"{m}: (mux_{i}, ({key}, {m}))" for i, m in enumerate(muxes)]
    fns += [f"{m}: (plain, ({key}, {m}))" for m in sorted(bits.mux_ids - set(muxes))]
    return [
        f"FNS = {{{', '.join(fns)}}}",
        *lines,
        "    fn = FNS.get(raw)",
        "    if fn is None:",
        "        return None",  # a mux value the DBC does not define: cantools reports it
        "    out, reason = fn[0](le, be, ts)",
        "    LAST[fn[1]] = out",
        "    return out, reason",
    ]
