"""Line protocol of a batch with a layout, from text prepared once per (layout, site, source).

For a plain segment (see `gateway.sinks.layoutcheck`) the lines are known but for the values and the
time: the plan holds the text between them, so a segment is rendered by filling the holes and one
join. The plan is made by the same grouping as `gateway.sinks.influx.lineproto.groups_of` (quality `good`), so the
lines are the plain rendering's, byte for byte; the tests compare the two.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from gateway.model import Layout, LayoutKey, Quality
from gateway.sinks.bydigest import ByDigest, BySegment
from gateway.sinks.influx.lineproto import PrefixTable


@dataclass(frozen=True, slots=True)
class SegmentPlan:
    """The lines of one plain segment: series keys in order, and the text around the holes (the values
    and the time)."""

    keys: tuple[str, ...]
    template: tuple[str | None, ...]  # a tuple of strings: the collector stops tracking it
    # Per hole (the odd positions of `template`): the index of the value in the segment, or the
    # segment's length for the time. None for a line per sample, in order: then each line is
    # `key, " <field>=", value, " ", time, "\n"` (the key and field strings shared, not copied).
    slots: tuple[int, ...] | None

    def text(self, reprs: list[str], ts: str) -> str:
        """The segment's lines, each ending in a newline."""
        parts = list(self.template)
        if self.slots is None:
            parts[2::6] = reprs
            parts[4::6] = [ts] * len(reprs)
        else:
            parts[1::2] = map([*reprs, ts].__getitem__, self.slots)
        return "".join(parts)  # type: ignore[arg-type]  # every hole is filled


@dataclass(frozen=True, slots=True)
class LinePlan:
    segments: tuple[SegmentPlan | None, ...]  # None: a segment whose tags need escaping (the plain way)


_plans: ByDigest[dict[tuple[str, str], LinePlan]] = ByDigest()
_PLANS_PER_LAYOUT = 16  # (site, source) pairs; more starts over


def plan_for(layout: Layout, site: str, source: str) -> LinePlan:
    plans = _plans.get(layout)
    if plans is None:
        plans = _plans.put(layout, {})
    plan = plans.get((site, source))
    if plan is None:
        if len(plans) >= _PLANS_PER_LAYOUT:
            plans.clear()
        segments = tuple(_segment_plan(layout.keys[a:b], site, source) for a, b in layout.segments)
        plan = plans[(site, source)] = LinePlan(segments)
    return plan


_segments: BySegment[tuple[str, str, tuple[LayoutKey, ...]], SegmentPlan | None] = BySegment()


def _segment_plan(keys: tuple[LayoutKey, ...], site: str, source: str) -> SegmentPlan | None:
    key = (site, source, keys)
    plan = _segments.get(key)
    if plan is None and key not in _segments:
        plan = _segments.put(key, segment_plan(keys, site, source), len(keys))
    return plan


def segment_plan(keys: tuple[LayoutKey, ...], site: str, source: str) -> SegmentPlan | None:
    """The plan of a segment of good finite values with these keys (None if its tags have a backslash:
    such lines are split by parsing them, so they take the plain way)."""
    table = PrefixTable(site, source)  # its own: the plan keeps what it needs
    groups: dict[int, tuple[str, list[tuple[int, str]]]] = {}
    for i, (quantity, _unit, rack, module, cell) in enumerate(keys):
        tail, tags, field, plain = table.entry((quantity, rack, module, cell, Quality.GOOD))
        if not plain:
            return None
        g = groups.get(tail)
        if g is None:
            groups[tail] = (tags, [(i, field)])
        else:
            g[1].append((i, field))
    series = tuple(tags for tags, _ in groups.values())
    n = len(keys)
    if len(groups) == n and all(fields[0][0] == i for i, (_t, fields) in enumerate(groups.values())):
        template: list[str | None] = []
        for tags, [(_i, field)] in groups.values():
            template += [tags, sys.intern(" " + field), None, " ", None, "\n"]
        return SegmentPlan(series, tuple(template), None)
    template = []
    slots: list[int] = []
    text = ""  # fixed text before the next hole
    for tags, fields in groups.values():
        text += tags + " "
        for j, (i, field) in enumerate(fields):
            template += [text + ("," if j else "") + field, None]
            slots.append(i)
            text = ""
        template += [" ", None]
        slots.append(n)
        text = "\n"
    template.append(text)
    return SegmentPlan(series, tuple(template), tuple(slots))
