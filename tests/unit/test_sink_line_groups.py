"""Which points share a line is worked out once per time-run pattern of a key table (the times of a
poll's blocks) and kept with the table's plan: a later batch of the same pattern takes it again, and renders
exactly what a renderer with nothing kept renders, whichever blocks fell in one unit of the precision."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.model import GOOD, QUALITY_CODE, Batch
from gateway.sinks.influx import linegroups
from gateway.sinks.influx.linegroups import KEPT_POINTS, MAX_RUNS
from gateway.sinks.influx.lineproto import LineRenderer
from tests.unit.test_sink_render import T, modbus_batch

MS = 1_000_000


def poll(ts: int, gaps: list[int], seed: int = 0) -> Batch:
    """The bench rack's poll: its 8 blocks read `gaps` ns after the one before (7 gaps), other values."""
    b = modbus_batch("r1", ts)
    at = np.cumsum([0, *gaps]).astype(np.int64)
    values = b.values + seed / 1000
    return Batch(b.source, b.keys, ts + at[np.arange(1000) // 125], values, b.quality, device="r1", created=ts)


def counted(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = linegroups.line_groups

    def line_groups(*args: object, **kw: object) -> linegroups.LineGroups:
        out = real(*args, **kw)  # type: ignore[arg-type]
        calls.append(len(out.firsts))
        return out

    monkeypatch.setattr(linegroups, "line_groups", line_groups)
    return calls


def test_a_steady_poll_is_laid_out_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = counted(monkeypatch)
    r = LineRenderer("s", "ms")
    texts = [r.sample_lines(poll(T + k * 10**9, [1_370_000] * 7, seed=k)).text for k in range(5)]
    assert calls == [1000]  # a line per point, found once for the five polls
    assert len({t.count("\n") for t in texts}) == 1 and len(set(texts)) == 5  # new values, same lines


def test_racks_of_one_shape_share_their_line_groupings(monkeypatch: pytest.MonkeyPatch) -> None:
    """50 racks of one profile whose polls take turns with two time-run patterns (every block in its own
    millisecond, or all in one): two groupings laid out for the site, kept once, not two per rack."""
    calls = counted(monkeypatch)
    r = LineRenderer("s", "ms")
    racks = [f"r{k}" for k in range(50)]
    gaps = ([MS] * 7, [100] * 7)
    for cycle in range(4):
        for k, rack in enumerate(racks):
            b = poll(T + cycle * 10**9, gaps[(k + cycle) % 2], seed=cycle)
            b = Batch(f"modbus:{rack}", modbus_batch(rack, T).keys, b.ts, b.values, b.quality, device=rack)
            lines = r.sample_lines(b).text.splitlines()
            assert lines[0].startswith(f"cell,site=s,rack={rack},module=1,cell=1,quality=good,source=modbus:{rack} ")
    assert sorted(calls) == [800, 1000]  # all in one unit: a cell's voltage and temperature share a line
    plans = {id(r.plan(modbus_batch(rack, T)).groups) for rack in racks}
    assert len(plans) == 1


def test_blocks_in_one_unit_that_share_no_series_keep_their_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = counted(monkeypatch)
    r = LineRenderer("s", "ms")
    apart = T - T % MS  # the first block at the start of a millisecond
    r.sample_lines(poll(apart, [1_370_000] * 7))
    # blocks 0 and 1 in one millisecond (voltages of other cells): the same lines
    r.sample_lines(poll(apart + 10**9, [300_000] + [1_370_000] * 6))
    assert calls == [1000]
    # blocks 6 and 7 in one millisecond: the temperatures of cells 1-5 of modules 39 and 40 join the lines
    # of their voltages (read in block 6)
    merged = r.sample_lines(poll(apart + 2 * 10**9, [1_370_000] * 6 + [300_000]))
    assert calls == [1000, 990]
    line = next(x for x in merged.text.split("\n") if "module=40,cell=5," in x)
    assert " cell_voltage=" in line and ",cell_temperature=" in line


@pytest.mark.parametrize("seed", range(6))
def test_kept_groupings_render_what_a_fresh_renderer_does(seed: int) -> None:
    rng = np.random.default_rng(seed)
    kept = LineRenderer("s", "ms")
    for k in range(40):  # a few gaps, so that patterns come again, and more than are kept
        gaps = rng.choice([0, 150_000, 400_000, 1_370_000], size=7).tolist()
        b = poll(T + k * 10**9 + int(rng.integers(0, MS)), gaps, seed=k)
        if k % 9 == 4:  # now and then a point without a value, or of another quality
            b.values[int(rng.integers(0, 1000))] = np.nan
        if k % 7 == 3:
            b.quality[int(rng.integers(0, 1000))] = QUALITY_CODE["stale"]
        assert kept.sample_lines(b).text == LineRenderer("s", "ms").sample_lines(b).text
        assert len(kept.plan(b).groups.groups) <= KEPT_POINTS // 1000  # 8 groupings of a 1,000-point rack


def test_many_time_runs_are_laid_out_each_time() -> None:
    """A batch with more runs than MAX_RUNS (a CAN window, a time per frame) keeps no grouping."""
    b = modbus_batch("r1", T)
    each = Batch(b.source, b.keys, T + np.arange(1000, dtype=np.int64) * 2 * MS, b.values, b.quality, device="r1")
    r = LineRenderer("s", "ms")
    assert r.sample_lines(each).text.count("\n") == 1000 and MAX_RUNS < 1000
    assert len(r.plan(each).groups.groups) == 0
    assert all(q == GOOD for q in each.quality.tolist())
