"""InfluxDB line protocol for samples: measurements by level, low-cardinality tags, quantities as fields.

    <level>,site=<site>,rack=<rack>[,module=<m>][,cell=<c>],quality=<q>,source=<source> <quantity>=<value>,... <ts>

`level` is `cell`, `module` or `rack` (from the catalog); samples with the same tags and time share
one line. Numbers are always written as floats (so a field never changes type), booleans as
booleans, states and text as strings.
"""

from __future__ import annotations

from collections.abc import Iterable

from gateway.catalog import level_of
from gateway.model import Batch, BatchKind

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


def encode_batches(batches: Iterable[Batch], site: str, precision: str = "ns") -> list[str]:
    """Line protocol lines for the sample batches (other kinds are encoded by their owners)."""
    div = precision_divisor(precision)
    site_t = tag(site)
    lines: list[str] = []
    for batch in batches:
        groups: dict[tuple[int, str, int | None, int | None, str, str], list[str]] = {}
        src = tag(batch.source)
        for s in batch.samples:
            fv = field_value(s.value)
            if fv is None:
                continue
            key = (s.ts, s.rack, s.module, s.cell, s.quality, level_of(s.quantity, s.module, s.cell))
            groups.setdefault(key, []).append(f"{tag(s.quantity)}={fv}")
        for (ts, rack, module, cell, quality, level), fields in groups.items():
            tags = f"{level},site={site_t},rack={tag(str(rack))}"
            if module is not None:
                tags += f",module={module}"
            if cell is not None:
                tags += f",cell={cell}"
            tags += f",quality={quality},source={src}"
            lines.append(f"{tags} {','.join(fields)} {int(ts) // div}")
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


def encode_gateway_record(rec: dict[str, object], site: str, fallback_ts: int, precision: str = "ns") -> str | None:
    """A gateway status record → measurement `gateway`: scalar entries become fields (numbers as floats);
    a string `component` (or `name`) entry becomes a tag."""
    ts = _ts(rec.get("ts"), fallback_ts) // precision_divisor(precision)
    tags = f"gateway,site={tag(site)}"
    component = rec.get("component", rec.get("name"))
    if isinstance(component, str) and component:
        tags += f",component={tag(component)}"
    pairs = [
        (k, v)
        for k, v in sorted(rec.items())
        if k not in ("ts", "component", "name") and (v is None or isinstance(v, str | int | float | bool))
    ]
    fields = _fields(pairs)
    return f"{tags} {fields} {ts}" if fields else None


def encode_batch(batch: Batch, site: str, precision: str = "ns") -> list[str]:
    """Every line of one stored batch, whatever its kind."""
    if batch.kind == BatchKind.SAMPLES:
        return encode_batches([batch], site, precision) + encode_device_status(batch, site, precision)
    lines: list[str | None]
    if batch.kind == BatchKind.ALARM:
        lines = [encode_alarm_record(r, site, batch.created, precision) for r in batch.records]
    else:
        lines = [encode_gateway_record(r, site, batch.created, precision) for r in batch.records]
    return [line for line in lines if line is not None] + encode_device_status(batch, site, precision)
