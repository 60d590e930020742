"""Rate histories held as columns give `RateTracker`'s rates and histories; gathered bounds give `spread`'s width."""

from __future__ import annotations

import random

import pytest

from gateway.alarms import rules as r
from gateway.alarms.fastpath import Gatherer
from gateway.alarms.ratecolumns import ColumnTracker, Element, RateColumns, Tracker
from gateway.model import Quality, Sample

NS = r.NS
ELEMENTS: list[Element] = [("r", 1, c) for c in range(5)]


def readings(seed: int, count: int) -> list[tuple[int, list[float]]]:
    """Times with repeats and steps back (no rate for those), values of every element."""
    rnd = random.Random(seed)
    out, ts = [], 0
    for _ in range(count):
        ts += rnd.choice([0, -NS // 2, NS, NS, NS, 2 * NS, NS // 3])
        out.append((ts, [round(rnd.uniform(-5, 5), 2) for _ in ELEMENTS]))
    return out


@pytest.mark.parametrize("window", [0, NS, 3 * NS, 10 * NS])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_columns_give_the_trackers_rates_and_histories(window: int, seed: int) -> None:
    trackers = [r.RateTracker(window) for _ in ELEMENTS]
    cols = RateColumns({}, ELEMENTS, window)
    assert cols.take_over()
    for ts, values in readings(seed, 60):
        expected = [t.update(ts, v) for t, v in zip(trackers, values, strict=True)]
        got = cols.update(ts, list(values))
        if got is None:
            assert expected == [None] * len(ELEMENTS)
            continue
        diffs, dt = got
        assert [d * NS / dt for d in diffs] == expected  # the same floats, not close ones
    cols.release()
    assert not cols.active
    assert [list(cols.trackers[e].history) for e in ELEMENTS] == [list(t.history) for t in trackers]


def test_an_element_updated_alone_gets_its_own_tracker_back_with_the_history() -> None:
    dict_: dict[Element, Tracker] = {}
    cols = RateColumns(dict_, ELEMENTS, 10 * NS)
    assert cols.take_over()
    for k in range(4):
        cols.update(k * NS, [float(k + c) for c in range(5)])
    assert all(isinstance(t, ColumnTracker) for t in dict_.values())
    rate = dict_[ELEMENTS[2]].update(4 * NS, 10.0)  # what the per-sample path does
    assert rate == (10.0 - 2.0) * NS / (4 * NS)
    assert not cols.active and all(isinstance(t, r.RateTracker) for t in dict_.values())
    assert list(dict_[ELEMENTS[0]].history) == [(k * NS, float(k)) for k in range(4)]
    assert len(dict_[ELEMENTS[2]].history) == 5


def test_columns_take_over_only_histories_with_the_same_times() -> None:
    dict_: dict[Element, Tracker] = {e: r.RateTracker(10 * NS) for e in ELEMENTS}
    for k in range(3):
        for c, e in enumerate(ELEMENTS):
            if not (k == 1 and c == 3):  # element 3 skipped a reading (a NaN, a bad sample)
                dict_[e].update(k * NS, float(c))
    cols = RateColumns(dict_, ELEMENTS, 10 * NS)
    assert not cols.take_over()
    assert all(isinstance(t, r.RateTracker) for t in dict_.values())
    dict_[ELEMENTS[3]] = r.RateTracker(10 * NS, dict_[ELEMENTS[0]].history.copy())
    assert cols.take_over()
    assert list(cols.history) == [(k * NS, [0.0, 1.0, 2.0, 0.0, 4.0]) for k in range(3)]


def test_columns_of_another_layout_give_their_elements_back_first() -> None:
    dict_: dict[Element, Tracker] = {}
    first = RateColumns(dict_, ELEMENTS, 0)
    assert first.take_over()
    first.update(NS, [1.0] * 5)
    second = RateColumns(dict_, ELEMENTS[1:], 0)  # a new layout with some of the same elements
    assert second.take_over()
    assert not first.active and isinstance(dict_[ELEMENTS[0]], r.RateTracker)
    assert list(second.history) == [(NS, [1.0] * 4)]


def _samples(values: list[float]) -> list[Sample]:
    return [Sample(1, "cell_voltage", v, "V", Quality.GOOD, "r", 1, i) for i, v in enumerate(values)]


@pytest.mark.parametrize(
    "runs",
    [
        [[3.3, 3.5, 3.1, 3.5, 3.1]],
        [[3.3, 3.1], [3.5, 3.1, 3.6], [3.0]],
        [[0.0, -0.0], [-0.0, 0.0]],  # equal values of different sign: the first one, as max/min pick
        [[-0.0], [0.0, -0.0]],
    ],
)
def test_bounds_of_runs_give_the_width_spread_gives(runs: list[list[float]]) -> None:
    g = Gatherer("cell_voltage")
    for values in runs:
        g.extend("r", list(values), _samples(values), min(values), max(values))
    n, lo, hi = g.bounds["r"]
    assert n == len(g.values["r"])
    assert repr(hi - lo) == repr(r.spread(g.values["r"])[0])


def test_bounds_are_dropped_when_values_came_another_way() -> None:
    g = Gatherer("cell_voltage")
    g.extend("r", [3.3, 3.4], _samples([3.3, 3.4]), 3.3, 3.4)
    g.good(_samples([2.0])[0])  # a sample of the per-sample path
    assert g.bounds["r"][0] != len(g.values["r"])  # stale: not used
    g.extend("r", [3.5], _samples([3.5]), 3.5, 3.5)
    assert "r" not in g.bounds
    g.clear()
    assert g.bounds == {} and g.values == {}
