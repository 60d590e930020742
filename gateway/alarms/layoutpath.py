"""Alarm evaluation of batches with a `Layout`: per-sample lookups done once per shape, values checked in bulk.

A layout fixes the quantity, rack and element of every index, so what the other paths look up per
sample (the handlers of a quantity, the rate tracker of a cell, whether an element has an alarm) is
prepared once per layout as a list of runs: consecutive samples of one quantity and rack (and of
one segment, where a rate rule reads the quantity). Per batch, a run whose handlers are only a
threshold group, a gatherer and rate rules (cell voltages and temperatures) costs a few passes at C
speed over its values (quality count, types, sum, min, max) and, with rate rules, one more over the
rate columns (`RateColumns`). The calls the per-sample path would make (`check`, `judge`) are made
only for the samples that can raise or clear something, in the same order. Anything unusual in a run
(a sample that is not GOOD, a value that is not a finite float, timestamps that differ within a
rate run, a quality alarm in view) sends the run through the per-sample path instead, the reference
by construction. A batch whose samples do not fit its layout goes through the plain path.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import groupby
from operator import itemgetter

from gateway.alarms import rules as r
from gateway.alarms.compiled import BitsHandler, RateHandler, StateHandler
from gateway.alarms.fastpath import Gatherer, Indexed, ThresholdGroup
from gateway.alarms.rackrules import DisagreementHandler, LimitHandler
from gateway.alarms.ratecolumns import Element, RateColumns
from gateway.model import Layout, LayoutKey, Quality, Sample

GOOD = Quality.GOOD
NS = r.NS
_ts = itemgetter(0)
_value = itemgetter(2)
_quality = itemgetter(4)
_element_key = itemgetter(0, 2, 3, 4)  # of a layout key: (quantity, rack, module, cell)
_run_key = itemgetter(0, 2)  # (quantity, rack)
_FLOATS = {float}
# Handlers whose `sample` returns at once for a sample that is not GOOD (only quality rules and the
# comm-loss flag see those).
IGNORE_NOT_GOOD = (ThresholdGroup, Gatherer, RateHandler, StateHandler, BitsHandler, LimitHandler,
                   DisagreementHandler)  # fmt: skip


@dataclass(slots=True, eq=False)
class RateColumn:
    """A rate rule over a run: its handler and the elements' histories as columns."""

    handler: RateHandler
    columns: RateColumns


@dataclass(slots=True, eq=False)
class Run:
    """Samples `start:stop` of a layout: one quantity, one rack."""

    start: int
    stop: int
    quantity: str
    rack: str
    first: tuple[str, str, int | None, int | None]  # (quantity, rack, module, cell) of the first sample
    last: tuple[str, str, int | None, int | None]  # and of the last: a cheap check that a batch fits
    bulk: bool  # False: the handlers need the per-sample path
    inert: bool  # every handler ignores samples that are not GOOD
    keys: Sequence[LayoutKey]  # the layout's (shared)
    elements: list[Element] | None = None  # (rack, module, cell) by index: kept only for rate columns
    index: dict[Element, int] | None = None  # element -> index, built when an element has an instance
    group: ThresholdGroup | None = None
    gatherer: Gatherer | None = None
    rates: tuple[RateColumn, ...] = ()
    order: tuple[ThresholdGroup | RateColumn, ...] = ()  # who may raise events, in the handlers' order


@dataclass(slots=True, eq=False)
class LayoutPlan:
    runs: tuple[Run, ...]
    size: int


def plan_layout(layout: Layout, handlers_of: Callable[[str], Sequence[Indexed]]) -> LayoutPlan | None:
    """The runs of a layout with their handlers; None when an element repeats (the plain path takes it)."""
    keys = layout.keys
    if len(set(map(_element_key, keys))) != len(keys):
        return None
    cuts = sorted({a for a, _ in layout.segments} | {len(keys)})
    runs: list[Run] = []
    start = 0
    for (q, _), same in groupby(keys, key=_run_key):
        stop = start + sum(1 for _ in same)
        hs = handlers_of(q)
        if any(isinstance(h, RateHandler) for h in hs):  # a rate run keeps to one segment (one ts)
            at = start
            for cut in cuts[bisect_right(cuts, start) : bisect_left(cuts, stop) + 1]:
                runs.append(_run(keys, at, min(cut, stop), hs))
                at = min(cut, stop)
        else:
            runs.append(_run(keys, start, stop, hs))
        start = stop
    return LayoutPlan(tuple(runs), len(keys))


def _elements(keys: Sequence[LayoutKey], start: int, stop: int) -> list[Element]:
    return [(k[2], k[3], k[4]) for k in keys[start:stop]]


def _index(run: Run) -> dict[Element, int]:
    if run.index is None:
        elements = run.elements if run.elements is not None else _elements(run.keys, run.start, run.stop)
        run.index = {e: i for i, e in enumerate(elements)}
    return run.index


def _run(keys: Sequence[LayoutKey], start: int, stop: int, hs: Sequence[Indexed]) -> Run:
    a, b = keys[start], keys[stop - 1]
    q, rack = a[0], a[2]
    inert = all(type(h) in IGNORE_NOT_GOOD for h in hs)
    run = Run(start, stop, q, rack, (q, rack, a[3], a[4]), (b[0], b[2], b[3], b[4]), False, inert, keys)
    if not all(type(h) in (ThresholdGroup, Gatherer, RateHandler) for h in hs):
        return run
    order: list[ThresholdGroup | RateColumn] = []
    rates: list[RateColumn] = []
    for h in hs:
        if isinstance(h, ThresholdGroup):
            run.group = h
            order.append(h)
        elif isinstance(h, Gatherer):
            run.gatherer = h
        elif isinstance(h, RateHandler) and h.wants(rack):  # a rack the rule skips: no call at all
            if run.elements is None:
                run.elements = _elements(keys, start, stop)
            col = RateColumn(h, RateColumns(h.trackers, run.elements, h.window_ns))
            col.columns.take_over()
            rates.append(col)
            order.append(col)
    run.rates, run.order, run.bulk = tuple(rates), tuple(order), True
    return run


def fits(plan: LayoutPlan, samples: Sequence[Sample]) -> bool:
    """The batch has the layout's size and every run starts and ends with the layout's samples."""
    if len(samples) != plan.size:
        return False
    for run in plan.runs:
        s, t = samples[run.start], samples[run.stop - 1]
        if (s[1], s[5], s[6], s[7]) != run.first or (t[1], t[5], t[6], t[7]) != run.last:
            return False
    return True


def watched(run: Run, quality_elements: dict[tuple[str, str, int | None, int | None], int]) -> bool:
    """Whether a quality alarm is in view for an element of the run: then each good sample of the run
    must be shown to the quality rules (for any other, `_quality` does nothing)."""
    q = run.quantity
    if len(quality_elements) <= run.stop - run.start:
        mine = [(rack, m, c) for qe, rack, m, c in quality_elements if qe == q and rack == run.rack]
        return bool(mine) and any(e in _index(run) for e in mine)
    return any((q, *e) in quality_elements for e in _index(run))


def one_quality(samples: list[Sample]) -> str | None:
    """The quality every sample has when it is one and not GOOD (a block not read, a device offline)."""
    q = samples[0][4]
    if q == GOOD or list(map(_quality, samples)).count(q) != len(samples):
        return None
    return q


def evaluate(run: Run, samples: list[Sample]) -> bool:
    """Evaluate a bulk run of GOOD finite floats; False (having changed nothing) when the run is not one."""
    n = len(samples)
    if list(map(_quality, samples)).count(GOOD) != n:
        return False
    if not (run.group or run.gatherer or run.rates):
        return True  # no rule reads the quantity
    values = list(map(_value, samples))
    if set(map(type, values)) != _FLOATS:
        return False
    total = sum(values)
    if total - total != 0:
        return False  # NaN or infinite somewhere (or a sum beyond the float range): the rate rule skips those
    ts = samples[0][0]
    if run.rates:
        if list(map(_ts, samples)).count(ts) != n:
            return False
        if not all(col.columns.take_over() for col in run.rates):
            return False  # the elements' histories differ (a sample was skipped): per sample until they agree
    g = run.group
    checks: set[int] = set()  # indices the threshold group must look at
    if g is not None or run.gatherer is not None:
        low, high = min(values), max(values)
        if g is not None:
            lo, hi = g.low_max, g.high_min
            if not (lo <= low and high <= hi):
                checks.update(i for i, v in enumerate(values) if not lo <= v <= hi)
            if g.tracked:
                checks.update(_indices(g.tracked, _index(run)))
        if run.gatherer is not None:
            run.gatherer.extend(run.rack, values, samples, low, high)
    rates = [_rates(col, ts, values, run) for col in run.rates]
    if checks or any(rates):
        _events(run, samples, values, checks, rates)
    return True


def _indices(tracked: dict[Element, int], index: dict[Element, int]) -> list[int]:
    """The indices of the run's elements that are in `tracked`."""
    if len(tracked) <= len(index):
        return [index[e] for e in tracked if e in index]
    return [i for e, i in index.items() if e in tracked]


def _rates(col: RateColumn, ts: int, values: list[float], run: Run) -> dict[int, float]:
    """The rates `RateHandler.judge` must see (beyond a limit, or of an element with an instance), by index."""
    got = col.columns.update(ts, values)
    if got is None:
        return {}
    diffs, dt = got
    h = col.handler
    out: dict[int, float] = {}
    # x * NS / dt is monotonic in x: the extreme differences give the extreme rates
    if not (h.low <= min(diffs) * NS / dt and max(diffs) * NS / dt <= h.high):
        for i, d in enumerate(diffs):
            rate = d * NS / dt
            if not h.low <= rate <= h.high:
                out[i] = rate
    if h.tracked:
        for i in _indices(h.tracked, _index(run)):
            out[i] = diffs[i] * NS / dt
    return out


def _events(run: Run, samples: list[Sample], values: list[float], checks: set[int],
            rates: list[dict[int, float]]) -> None:  # fmt: skip
    """The per-sample calls that can raise or clear alarms, in the per-sample path's order.

    Only the indices found beyond a limit or with an instance: any other sample would pass the
    group's bound check and the rate's early return (only its own element's calls change those)."""
    g = run.group
    for i in sorted(checks.union(*rates)):
        s, v = samples[i], values[i]
        k = 0
        for who in run.order:
            if isinstance(who, RateColumn):
                rate = rates[k].get(i)
                k += 1
                if rate is not None:
                    who.handler.judge(s, rate)
            elif i in checks and g is not None:
                tracked = g.tracked
                if not (g.low_max <= v <= g.high_min and (not tracked or (s[5], s[6], s[7]) not in tracked)):
                    for m in g.members:
                        m.check(s, v)
