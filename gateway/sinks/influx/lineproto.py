"""InfluxDB line protocol for samples: measurements by level, low-cardinality tags, quantities as fields.

    <level>,site=<site>,rack=<rack>[,module=<m>][,cell=<c>],quality=<q>,source=<source> <quantity>=<value>,... <ts>

`level` is `cell`, `module` or `rack` (from the catalog); samples with the same tags and time share
one line. Numbers are always written as floats (so a field never changes type), booleans as
booleans, states and text as strings.
"""

from __future__ import annotations

from collections.abc import Iterable

from gateway.catalog import level_of
from gateway.model import Batch, BatchKind, Sample
from gateway.sinks.floatrepr import float_repr, float_reprs_cache

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


# Tag prefixes (`<level>,site=..,rack=..[,module=..][,cell=..],quality=..,source=..`) rendered once per
# (site, source) and (quantity, rack, module, cell, quality). Samples whose prefixes have the same tail
# (rack, module, cell, quality, level) share a line: each tail has a number in its table, so grouping
# hashes (time, number) instead of the tail. Bounded: past its size everything starts over, only
# between two renderings (so a rendering never sees one tail under two numbers).
_PREFIX_ENTRIES_MAX = 262_144  # in all tables together (a 100-rack site of 1,000 points: 100,000)
PrefixKey = tuple[str, str, int | None, int | None, str]  # quantity, rack, module, cell, quality
# (number of the tail, tag prefix, `<escaped quantity>=`, prefix has no backslash)
PrefixEntry = tuple[int, str, str, bool]
_INF = float("inf")
_NINF = float("-inf")

# A group of one batch: (prefix, prefix has no backslash, first sample time, field strings).
Group = tuple[str, bool, int, list[str]]


class PrefixTable:
    """The prefixes of one (site, source)."""

    __slots__ = ("entries", "heads", "levels", "numbers", "site", "source", "tails")

    def __init__(self, site: str, source: str) -> None:
        self.site = site
        self.source = source
        self.entries: dict[PrefixKey, PrefixEntry] = {}
        self.numbers: dict[tuple[object, ...], int] = {}  # tail → its number
        # parts of the prefixes, escaped once: (quantity, has module, has cell) → level;
        # (level, rack) → `<level>,site=..,rack=..`; quality → `,quality=..,source=..`
        self.levels: dict[tuple[str, bool, bool], str] = {}
        self.heads: dict[tuple[str, str], str] = {}
        self.tails: dict[str, str] = {}

    def entry(self, ck: PrefixKey) -> PrefixEntry:
        """The prefix of a sample's line (see PrefixEntry)."""
        entry = self.entries.get(ck)
        return self._new(ck) if entry is None else entry

    def _new(self, ck: PrefixKey) -> PrefixEntry:
        quantity, rack, module, cell, quality = ck
        lk = (quantity, module is None, cell is None)
        level = self.levels.get(lk)
        if level is None:
            level = self.levels[lk] = str(level_of(quantity, module, cell))
        head = self.heads.get((level, rack))
        if head is None:
            head = self.heads[(level, rack)] = f"{level},site={tag(self.site)},rack={tag(str(rack))}"
        tail_tags = self.tails.get(quality)
        if tail_tags is None:
            tail_tags = self.tails[quality] = f",quality={quality},source={tag(self.source)}"
        if module is None:
            tags = head + tail_tags if cell is None else f"{head},cell={cell}{tail_tags}"
        else:
            tags = (
                f"{head},module={module}{tail_tags}"
                if cell is None
                else f"{head},module={module},cell={cell}{tail_tags}"
            )
        tail = (rack, module, cell, quality, level)
        number = self.numbers.get(tail)
        if number is None:
            number = self.numbers[tail] = len(self.numbers)
        entry = (number, tags, f"{tag(quantity)}=", "\\" not in tags)
        self.entries[ck] = entry
        return entry


_prefix_tables: dict[tuple[str, str], PrefixTable] = {}


def prefix_table(site: str, source: str) -> PrefixTable:
    """The shared table of a (site, source), at the start of a rendering (when the tables may start over)."""
    if sum(len(t.entries) for t in _prefix_tables.values()) >= _PREFIX_ENTRIES_MAX:
        _prefix_tables.clear()
    table = _prefix_tables.get((site, source))
    if table is None:
        table = _prefix_tables[(site, source)] = PrefixTable(site, source)
    return table


def sample_groups(batch: Batch, site: str) -> list[Group]:
    """The lines of a sample batch as groups, in order: samples with the same tags and time share one."""
    return groups_of(batch.samples, site, batch.source)


def groups_of(samples: Iterable[Sample], site: str, source: str) -> list[Group]:
    """`sample_groups` of some samples of a batch from `source`."""
    table = prefix_table(site, source)
    entries = table.entries
    order: list[Group] = []  # groups in the order they first appear
    by_time: dict[object, dict[int, Group]] = {}  # time → tail number → group
    last_ts: object = None
    groups: dict[int, Group] = {}
    cached_repr = float_reprs_cache.get
    for s in samples:
        ts, quantity, v, _unit, quality, rack, module, cell, _dts = s
        t = type(v)
        if t is float:
            fv = cached_repr(v)  # type: ignore[arg-type]  # type(v) is float
            if fv is None:
                if v != v or v == _INF or v == _NINF:
                    continue
                fv = float_repr(v)  # type: ignore[arg-type]
        else:
            fv_ = field_value(v)
            if fv_ is None:
                continue
            fv = fv_
        ck: PrefixKey = (quantity, rack, module, cell, quality)
        entry = entries.get(ck)
        if entry is None:
            entry = table.entry(ck)
        if ts != last_ts or last_ts is None:  # samples of one read or frame come together
            got = by_time.get(ts)
            if got is None:
                got = by_time[ts] = {}
            groups, last_ts = got, ts
        g = groups.get(entry[0])
        if g is None:
            g = groups[entry[0]] = (entry[1], entry[3], ts, [entry[2] + fv])
            order.append(g)
        else:
            g[3].append(entry[2] + fv)
    return order


def encode_batches(batches: Iterable[Batch], site: str, precision: str = "ns") -> list[str]:
    """Line protocol lines for the sample batches (other kinds are encoded by their owners)."""
    div = precision_divisor(precision)
    lines: list[str] = []
    for batch in batches:
        lines += [
            f"{tags} {','.join(fields)} {int(ts) // div}" for tags, _plain, ts, fields in sample_groups(batch, site)
        ]
    return lines


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


def encode_batch(batch: Batch, site: str, precision: str = "ns") -> list[str]:
    """Every line of one stored batch, whatever its kind."""
    if batch.kind == BatchKind.SAMPLES:
        return encode_batches([batch], site, precision) + encode_device_status(batch, site, precision)
    lines: list[str | None]
    if batch.kind == BatchKind.ALARM:
        lines = [encode_alarm_record(r, site, batch.created, precision) for r in batch.records]
    else:
        lines = [line for r in batch.records for line in encode_gateway_record(r, site, batch.created, precision)]
    return [line for line in lines if line is not None] + encode_device_status(batch, site, precision)
