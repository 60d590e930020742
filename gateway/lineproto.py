"""InfluxDB line protocol for samples: measurements by level, low-cardinality tags, quantities as fields.

    <level>,site=<site>,rack=<rack>[,module=<m>][,cell=<c>],quality=<q>,source=<source> <quantity>=<value>,... <ts>

`level` is `cell`, `module` or `rack` (from the catalog); samples with the same tags and time share
one line. Numbers are always written as floats (so a field never changes type), booleans as
booleans, states and text as strings.
"""

from __future__ import annotations

from collections.abc import Iterable

from gateway.catalog import level_of
from gateway.model import Batch

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
