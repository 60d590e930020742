"""InfluxDB line protocol for samples: measurements by level, low-cardinality tags, quantities as fields.

    <level>,site=<site>,rack=<rack>[,module=<m>][,cell=<c>],quality=<q>,source=<source> <quantity>=<value>,... <ts>

`level` is `cell`, `module` or `rack` (from the catalog); samples with the same tags and time share
one line. Numbers are always written as floats (so a field never changes type), booleans as
booleans, states and text as strings. A batch is rendered from its columns; what its key table fixes
(the tags, the field names, which points may share a line) is prepared once per table (`LinePlan`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from gateway.catalog import level_of
from gateway.keys import distinct_keys
from gateway.lru import LruCache
from gateway.model import GOOD, I64, QUALITIES, U8, Batch, BatchKind, Keys, Place
from gateway.sinks.columns import (
    SHAPES_MAX,
    PlanCache,
    Texts,
    every,
    rack_shape,
    run_texts,
    shared_texts,
    some,
    texts_of,
    value_texts,
)
from gateway.sinks.influx.linegroups import GroupsCache, LineGroups

_TAG_ESCAPE = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})
_MEAS_ESCAPE = str.maketrans({",": r"\,", " ": r"\ "})


def tag(value: str) -> str:
    return value.translate(_TAG_ESCAPE)


def field_value(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        f = float(value)
        if f != f or f in (float("inf"), float("-inf")):
            return None  # InfluxDB has no NaN/Inf; the point is left out (quality says why)
        return repr(f)
    s = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{s}"'


def precision_divisor(precision: str) -> int:
    return {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}[precision]


@dataclass(frozen=True, slots=True)
class LinePlan:
    """What the lines of one key table from one source share, prepared once."""

    tails: tuple[str, ...]  # per quality code: `,quality=..,source=..`
    plain: bool  # no tag holds a backslash (so the first unescaped space of a line is after its tags)
    # per quality code: the series key of every point, `<level>,site=..,rack=..[,module=..][,cell=..]` and
    # the code's tail; good's made with the plan, the others from it when first needed
    keys: dict[int, Texts]
    groups: GroupsCache  # which points share a line, by the batches' time runs (one for a rack shape)


Shapes = LruCache[tuple[Place, ...], GroupsCache]


def line_plan(keys: Keys, site: str, source: str, shapes: Shapes | None = None) -> LinePlan:
    """The plan of a key table; a table of one rack whose shape (`rack_shape`) is in `shapes` shares that
    shape's series, field numbers, fields and line groupings (only the series keys name the rack)."""
    site_t, source_t = tag(site), tag(source)
    distinct, inverse = distinct_keys(keys)  # texts once per distinct key (a CAN window repeats its keys)
    heads: list[str] = []
    fields: list[str] = []
    numbers: dict[tuple[str, object, object, object], int] = {}
    field_ids: dict[str, int] = {}
    series: list[int] = []
    for k in distinct:
        level = str(level_of(k.quantity, k.module, k.cell))
        head = f"{level},site={site_t},rack={tag(str(k.rack))}"
        if k.module is not None:
            head += f",module={k.module}"
        if k.cell is not None:
            head += f",cell={k.cell}"
        field = f" {tag(k.quantity)}="
        field_ids.setdefault(field, len(field_ids))
        heads.append(head)
        fields.append(field)
        series.append(numbers.setdefault((level, k.rack, k.module, k.cell), len(numbers)))
    tails = tuple(f",quality={q},source={source_t}" for q in QUALITIES)
    plain = not any("\\" in h for h in heads) and "\\" not in tails[0]
    made: dict[int, str] = {}  # a series' key is one string for all its points (voltage and temperature of a cell)
    good = texts_of([made.setdefault(n, h + tails[GOOD]) for n, h in zip(series, heads, strict=True)])[inverse]
    shape = rack_shape(keys) if shapes is not None else None
    groups = None if shapes is None or shape is None else shapes.get(shape.places)
    if groups is None:
        ids = np.asarray([field_ids[f] for f in fields], dtype=np.int64)[inverse]
        groups = GroupsCache(np.asarray(series, dtype=np.int64)[inverse], ids, shared_texts(fields)[inverse])
        if shapes is not None and shape is not None:
            shapes.put(shape.places, groups)
    return LinePlan(tails, plain, {GOOD: good}, groups)


def _series_keys(plan: LinePlan, code: int) -> Texts:
    got = plan.keys.get(code)
    if got is None:
        cut, tail = len(plan.tails[GOOD]), plan.tails[code]
        made: dict[str, str] = {}  # one string per series, as good's
        got = plan.keys[code] = texts_of([made.setdefault(k, k[:-cut] + tail) for k in plan.keys[GOOD].tolist()])
    return got


class Lines(NamedTuple):
    """The sample lines of a batch (each line `<key> <fields> <time>` and a newline): what the clock guard
    reads of each line, and what makes their text (`text`, or `text_at` other times)."""

    keys: Texts
    times: I64  # in units of the precision
    plain: bool  # see LinePlan.plain
    rows: npt.NDArray[np.intp]  # each line's row in its plan's key columns
    codes: U8  # each line's quality code
    columns: dict[int, Texts]  # the plan's key column of each code (a line's key: columns[code][row])
    distinct: bool  # no series (with its quality) has two lines
    groups: LineGroups | None  # which points make each line (None: no lines)
    values: Texts  # the value text of each point of the lines

    @property
    def text(self) -> str:
        return self.text_at(self.times)

    def text_at(self, times: I64) -> str:
        """The lines' text with these times (one per line, in units of the precision)."""
        if self.groups is None:
            return ""
        return _line_text(self.groups, self.keys, self.values, run_texts(times, " ", "\n"))


NO_LINES = Lines(
    texts_of([]), np.zeros(0, dtype=np.int64), True, np.zeros(0, dtype=np.intp), np.zeros(0, np.uint8), {}, True, None,
    texts_of([]),
)


def _line_text(lines: LineGroups, keys: Texts, values: Texts, times: Texts) -> str:
    """The lines' text: per point of a line its field and value, after the line's key (its first point)
    and before its time (its last point)."""
    n = len(lines.members)
    parts = np.empty(4 * n, dtype=object)
    parts[1::4], parts[2::4] = lines.heads, values
    if lines.starts is None or lines.ends is None:
        parts[0::4], parts[3::4] = keys, times
    else:
        parts[0::4] = parts[3::4] = ""
        parts[4 * lines.starts] = keys
        parts[4 * lines.ends + 3] = times
    return "".join(parts.tolist())


class LineRenderer:
    """The line protocol of one site at one precision, with its plans per key table (bounded)."""

    def __init__(self, site: str, precision: str = "ns", max_points: int = 400_000) -> None:
        self.site = site
        self.precision = precision
        self.div = precision_divisor(precision)
        self.plans: PlanCache[LinePlan] = PlanCache(max_points)
        self.shapes: Shapes = LruCache(SHAPES_MAX)

    def plan(self, batch: Batch) -> LinePlan:
        plan = self.plans.get(batch.keys, batch.source)
        if plan is None:
            plan = self.plans.put(batch.keys, batch.source, line_plan(batch.keys, self.site, batch.source, self.shapes))
        return plan

    def sample_lines(self, batch: Batch) -> Lines:
        """Points with the same tags and time (in units of the precision) share a line, in the order they
        first appear, unless a field would come twice in it (then only points of the same nanosecond share
        one); numbers are floats, NaN and infinities are left out (their quality says why), other values
        from `objects`."""
        if batch.n == 0:
            return NO_LINES
        plan = self.plan(batch)
        valid = np.isfinite(batch.values)
        texts = value_texts(batch)
        if batch.objects:
            texts = texts.copy()
        for i, v in (batch.objects or {}).items():
            fv = field_value(v)
            valid[i] = fv is not None
            texts[i] = fv
        if not some(valid):
            return NO_LINES
        groups = plan.groups.of(valid, batch.quality, batch.ts, self.div)
        firsts = groups.firsts
        codes = batch.quality[firsts]
        code = int(codes[0])
        if every(codes == code):
            keys = _series_keys(plan, code)
            keys = keys if groups.whole else keys[firsts]
        else:
            keys = np.empty(len(firsts), dtype=object)
            for c in np.unique(codes).tolist():
                at = codes == c
                keys[at] = _series_keys(plan, c)[firsts[at]]
        times = batch.ts[firsts] // self.div
        values = texts if groups.whole else texts[groups.members]
        return Lines(keys, times, plan.plain, firsts, codes, plan.keys, groups.distinct, groups, values)

    def lines(self, batch: Batch) -> list[str]:
        """Every line of one stored batch, whatever its kind."""
        site, precision = self.site, self.precision
        if batch.kind == BatchKind.SAMPLES:
            text = self.sample_lines(batch).text
            out = text[:-1].split("\n") if text else []
            return out + encode_device_status(batch, site, precision)
        lines: list[str | None]
        if batch.kind == BatchKind.ALARM:
            lines = [encode_alarm_record(r, site, batch.created, precision) for r in batch.records]
        else:
            lines = [line for r in batch.records for line in encode_gateway_record(r, site, batch.created, precision)]
        return [line for line in lines if line is not None] + encode_device_status(batch, site, precision)


def encode_batch(batch: Batch, site: str, precision: str = "ns") -> list[str]:
    """Every line of one stored batch, whatever its kind (for tools and tests: no plan is kept)."""
    return LineRenderer(site, precision).lines(batch)


def encode_batches(batches: Iterable[Batch], site: str, precision: str = "ns") -> list[str]:
    """Every line of the batches (for tools: plans kept for this call only)."""
    renderer = LineRenderer(site, precision)
    return [line for b in batches for line in renderer.lines(b)]


def _fields(pairs: Iterable[tuple[str, object]]) -> str:
    out = []
    for key, value in pairs:
        fv = field_value(value)
        if fv is not None:
            out.append(f"{tag(key)}={fv}")
    return ",".join(out)


def _ts(value: object, fallback: int) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else fallback


def encode_device_status(batch: Batch, site: str, precision: str = "ns") -> list[str]:
    """`device_status,site=,rack= state="online|offline|degraded|starting",reason="..." <ts>`."""
    st = batch.status
    if st is None:
        return []
    ts = st.ts or batch.created
    online = str(st.state) == "online"
    fields = _fields([("state", str(st.state)), ("online", online), ("reason", st.reason)])
    return [f"device_status,site={tag(site)},rack={tag(st.device)} {fields} {ts // precision_divisor(precision)}"]


def encode_alarm_record(rec: dict[str, object], site: str, fallback_ts: int, precision: str = "ns") -> str | None:
    """An alarm event → measurement `alarm`; an active list → measurement `alarms_active` (a count).

    `value` is a float field when numeric and `value_text` when text, so a field never changes type."""
    div = precision_divisor(precision)
    ts = _ts(rec.get("ts"), fallback_ts) // div
    rack = tag(str(rec.get("rack") or "gateway"))
    kind = rec.get("type")
    if kind == "active":
        active = rec.get("active")
        n = len(active) if isinstance(active, list) else 0
        return f"alarms_active,site={tag(site)},rack={rack} count={n}i {ts}"
    if kind != "event":
        return None
    tags = f"alarm,site={tag(site)},rack={rack},alarm_id={tag(str(rec.get('alarm_id', '')) or '-')}"
    tags += f",severity={tag(str(rec.get('severity', '')) or '-')}"
    value = rec.get("value")
    pairs: list[tuple[str, object]] = [(k, rec.get(k)) for k in ("state", "previous", "message", "rule")]
    if isinstance(value, int | float) and not isinstance(value, bool):
        pairs.append(("value", float(value)))
    elif value is not None:
        pairs.append(("value_text", str(value)))
    pairs += [("user", rec.get("user")), ("reason", rec.get("reason"))]
    fields = _fields((k, v if v is None or isinstance(v, float) else str(v)) for k, v in pairs)
    return f"{tags} {fields} {ts}" if fields else None


# Mappings in a gateway record whose entries are points of their own: key → the entries' component
# (a heartbeat's `sinks: {influx: {...}}` → `gateway,site=..,component=sink,sink=influx ...`).
GATEWAY_PARTS = {"sinks": "sink"}


def encode_gateway_record(rec: dict[str, object], site: str, fallback_ts: int, precision: str = "ns") -> list[str]:
    """A gateway status record (info, heartbeat; see gateway.runtime.gatewayinfo) → measurement `gateway`.

    Its string `component` (or `name`) is a tag; scalar entries are fields (numbers as floats), a list
    of scalars one comma-separated string; `type` and `ts` are not fields. Each entry of a mapping in
    GATEWAY_PARTS is a point of its own, tagged with its component and name."""
    ts = _ts(rec.get("ts"), fallback_ts) // precision_divisor(precision)
    tags = f"gateway,site={tag(site)}"
    component = rec.get("component", rec.get("name"))
    out = [_gateway_line(tags, component, rec, ts)]
    for key, part in GATEWAY_PARTS.items():
        entries = rec.get(key)
        if isinstance(entries, dict):
            out += [
                _gateway_line(f"{tags},component={part},{part}={tag(str(name))}", None, fields, ts)
                for name, fields in entries.items()
                if isinstance(fields, dict) and name
            ]
    return [line for line in out if line is not None]


def _gateway_line(tags: str, component: object, rec: dict[str, object], ts: int) -> str | None:
    if isinstance(component, str) and component:
        tags += f",component={tag(component)}"
    pairs = [(k, _scalar(v)) for k, v in sorted(rec.items()) if k not in ("ts", "type", "component", "name")]
    fields = _fields((k, v) for k, v in pairs if v is not _NOT_SCALAR)
    return f"{tags} {fields} {ts}" if fields else None


_NOT_SCALAR = object()


def _scalar(value: object) -> object:
    """A field's value: a scalar as it is, a list of scalars joined by commas; anything else is none."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list | tuple) and all(isinstance(v, str | int | float) for v in value):
        return ",".join(str(v) for v in value)
    return _NOT_SCALAR
