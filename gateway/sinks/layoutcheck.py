"""Whether a batch really has the shape its `Layout` vouches for, and which of its segments are plain.

The sinks render a batch with a layout from work prepared once per layout. Before they do, the batch
is checked against the layout in a few C-level comparisons (its samples transposed into columns): a
batch that does not fit is rendered the plain way, so a wrong layout can never change the output.

A segment is *plain* when every sample in it is `good`, has a finite float value and no device time:
then its output is the prepared text with the values and the segment's time filled in. Any other
segment is rendered sample by sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

from gateway.model import Batch, Layout, Quality, Sample
from gateway.sinks.bydigest import ByDigest
from gateway.sinks.floatrepr import float_reprs

GOOD = Quality.GOOD
_FLOATS = {float}


@dataclass(frozen=True, slots=True)
class Shape:
    """A layout's keys as columns."""

    quantities: tuple[object, ...]
    units: tuple[object, ...]
    racks: tuple[object, ...]
    modules: tuple[object, ...]
    cells: tuple[object, ...]


@dataclass(frozen=True, slots=True)
class Segment:
    """One segment of a fitted batch: samples [start, stop), their common time, and for a plain
    segment the values as `float.__repr__` strings (None when the segment is not plain)."""

    start: int
    stop: int
    ts: int
    reprs: list[str] | None


_shapes: ByDigest[Shape] = ByDigest()


def shape_of(layout: Layout) -> Shape:
    shape = _shapes.get(layout)
    if shape is None:
        cols = tuple(zip(*layout.keys, strict=True)) if layout.keys else ((),) * 5
        shape = _shapes.put(layout, Shape(*cols))
    return shape


# The answers for the batches that fitted last: both sinks render the same stored rows (which nothing
# changes), usually soon after each other, while the store's decoded-row cache holds them. id →
# (batch, its samples list, its layout, answer, samples); the batch is held so that its id is not
# reused. Bounded by samples.
RECENT_MAX_SAMPLES = 30_000
_recent: dict[int, tuple[Batch, list[Sample], Layout | None, list[Segment], int]] = {}
_recent_samples = [0]


def fitted_segments(batch: Batch) -> list[Segment] | None:
    """The batch's segments when its samples fit its layout and the segments have distinct integer
    times (so no line or message spans two segments); None when it must be rendered the plain way.
    The segments are shared: read them, never change them."""
    hit = _recent.get(id(batch))
    if hit is not None and hit[0] is batch and hit[1] is batch.samples and hit[2] is batch.layout:
        return hit[3]
    segments = _fitted_segments(batch)
    if segments is None:
        return None  # (the plain way costs more than checking again)
    n = len(batch.samples)
    while _recent and _recent_samples[0] + n > RECENT_MAX_SAMPLES:
        _recent_samples[0] -= _recent.pop(next(iter(_recent)))[4]
    old = _recent.pop(id(batch), None)
    if old is not None:
        _recent_samples[0] -= old[4]
    _recent[id(batch)] = (batch, batch.samples, batch.layout, segments, n)
    _recent_samples[0] += n
    return segments


def _fitted_segments(batch: Batch) -> list[Segment] | None:
    layout = batch.layout
    samples = batch.samples
    if layout is None or not samples or len(samples) != len(layout.keys):
        return None
    try:
        ts_col, quantities, values, units, qualities, racks, modules, cells, device_ts = zip(*samples, strict=True)
    except (TypeError, ValueError):
        return None
    shape = shape_of(layout)
    if (
        quantities != shape.quantities
        or modules != shape.modules
        or cells != shape.cells
        or racks != shape.racks
        or units != shape.units
    ):
        return None
    out: list[Segment] = []
    times = set()
    for a, b in layout.segments:
        if b <= a:
            return None
        ts = ts_col[a]
        if type(ts) is not int or ts_col[a:b].count(ts) != b - a:
            return None
        times.add(ts)
        out.append(Segment(a, b, ts, _plain_reprs(values[a:b], qualities[a:b], device_ts[a:b])))
    if len(times) != len(out):
        return None
    return out


Column = tuple[object, ...]


def _plain_reprs(values: Column, qualities: Column, device_ts: Column) -> list[str] | None:
    n = len(values)
    if qualities.count(GOOD) != n or device_ts.count(None) != n:
        return None
    if set(map(type, values)) != _FLOATS:
        return None
    floats = cast(tuple[float, ...], values)
    if not math.isfinite(sum(floats, 0.0)):
        return None  # a NaN or an infinity (or a sum past the float range: the plain way, to be safe)
    return float_reprs(floats)
