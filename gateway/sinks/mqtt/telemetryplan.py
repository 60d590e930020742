"""MQTT telemetry and retained-state entries of a batch with a layout, from text prepared once per
(layout, levels).

For a plain segment (see `gateway.sinks.layoutcheck`) every sample's telemetry document and state
entry is fixed text around its value and the segment's time: the plan holds that text per rack, so a
segment is rendered by filling the holes and one join (the state entries of a rack in one string,
split at a separator JSON never holds). The pieces are those of the sample-by-sample rendering
(`gateway.sinks.mqtt.payloads`), so the bytes are the same; the tests compare the two.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from gateway.model import Layout, LayoutKey
from gateway.sinks.bydigest import ByDigest, BySegment

# Between the state entries of one rendering: JSON text never holds a raw control character.
SEPARATOR = "\x00"
_ENTRY_END = "}" + SEPARATOR

Pieces = tuple[str, str, str, str, str, str]  # see mqttpayloads._piece
PieceOf = Callable[[LayoutKey], Pieces]  # the pieces of a good sample with this key


@dataclass(frozen=True, slots=True)
class RackPart:
    """The samples of one rack in one plain segment."""

    rack: str
    index: tuple[int, ...] | None  # the samples' positions in the segment; None: all, in order
    # Telemetry documents, 5 items each: `{"ts":` (`,{"ts":` after the first), time, `,"q":..,"v":`,
    # value, `,"u":..}`; the fixed items are the pieces' strings, shared by every rack.
    docs: tuple[str | None, ...]  # (tuples of strings: the collector stops tracking them)
    # State entries, 5 items each: `"<key>":{"v":`, value, `,"u":..,"ts":`, time, `}` + separator.
    entries: tuple[str | None, ...]
    keys: tuple[str, ...]  # state keys of the entries
    quantities: frozenset[str]  # rack-level quantities (for Home Assistant discovery)

    def render(self, reprs: list[str], ts: str) -> tuple[str, list[str]]:
        """The comma-joined telemetry documents and the state entries of these samples."""
        values = reprs if self.index is None else list(map(reprs.__getitem__, self.index))
        times = [ts] * len(values)
        docs = list(self.docs)
        docs[1::5] = times
        docs[3::5] = values
        entries = list(self.entries)
        entries[1::5] = values
        entries[3::5] = times
        return "".join(docs), "".join(entries)[:-1].split(SEPARATOR)  # type: ignore[arg-type]  # holes filled


SegmentParts = tuple[RackPart, ...]  # in the order the racks first appear


@dataclass(frozen=True, slots=True)
class TelemetryPlan:
    segments: tuple[SegmentParts, ...]


_plans: ByDigest[dict[frozenset[str] | None, TelemetryPlan]] = ByDigest()


def plan_for(layout: Layout, levels: frozenset[str] | None, piece: PieceOf) -> TelemetryPlan:
    """The plan for the layout's batches, with the levels published (None: every level)."""
    plans = _plans.get(layout)
    if plans is None:
        plans = _plans.put(layout, {})
    plan = plans.get(levels)
    if plan is None:
        if len(plans) >= 8:
            plans.clear()
        segments = tuple(_segment_parts(layout.keys[a:b], levels, piece) for a, b in layout.segments)
        plan = plans[levels] = TelemetryPlan(segments)
    return plan


_segments: BySegment[tuple[frozenset[str] | None, tuple[LayoutKey, ...]], SegmentParts] = BySegment()


def _segment_parts(keys: tuple[LayoutKey, ...], levels: frozenset[str] | None, piece: PieceOf) -> SegmentParts:
    key = (levels, keys)
    parts = _segments.get(key)
    if parts is None:
        parts = _segments.put(key, segment_parts(keys, levels, piece), len(keys))
    return parts


def segment_parts(keys: tuple[LayoutKey, ...], levels: frozenset[str] | None, piece: PieceOf) -> SegmentParts:
    by_rack: dict[str, list[tuple[int, Pieces, LayoutKey]]] = {}
    for i, key in enumerate(keys):
        p = piece(key)
        if levels is not None and p[3] not in levels:
            continue
        by_rack.setdefault(key[2], []).append((i, p, key))
    parts = []
    for rack, members in by_rack.items():
        docs: list[str | None] = []
        entries: list[str | None] = []
        for _i, (head, tail, _skey, _level, entry_head, entry_tail), _key in members:
            docs += [',{"ts":' if docs else '{"ts":', None, head, None, tail]
            entries += [entry_head, None, entry_tail, None, _ENTRY_END]
        index = tuple(i for i, _p, _k in members)
        parts.append(
            RackPart(
                rack,
                None if index == tuple(range(len(keys))) else index,
                tuple(docs),
                tuple(entries),
                tuple(p[2] for _i, p, _k in members),
                frozenset(k[0] for _i, _p, k in members if k[3] is None and k[4] is None),
            )
        )
    return tuple(parts)
