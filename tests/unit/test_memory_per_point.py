"""Memory per point that a 100-rack site holds for as long as it runs: the live state keeps no object per
point of a key table (only its racks and rack-level indices), counted exactly with tracemalloc."""

from __future__ import annotations

import tracemalloc

import numpy as np

from gateway.model import Batch, Key, Keys
from gateway.ops.livestate import LiveState

POINTS = 20_000


def big_batch(rack: str) -> Batch:
    keys = Keys.of(Key("cell_voltage", "V", rack, m, c) for m in range(POINTS // 100) for c in range(100))
    n = len(keys)
    ts = np.full(n, 1_760_000_000_000_000_000, dtype=np.int64)
    return Batch(rack, keys, ts, np.full(n, 3.3), np.zeros(n, dtype=np.uint8), device=rack)


def test_the_live_state_holds_no_object_per_point_of_a_table() -> None:
    batches = [big_batch("rack-mem-1")]
    live = LiveState()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        live(batches)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = sum(s.size_diff for s in after.compare_to(before, "filename") if s.size_diff > 0)
    assert grown < 200 * 1024, f"the live state took {grown} bytes for a table of {POINTS} points"
    # what it serves is still there: every point's newest sample on demand
    assert len(live.points) == POINTS


def test_a_series_key_of_the_line_protocol_is_one_string_for_all_its_points() -> None:
    from gateway.model import GOOD, QUALITY_CODE
    from gateway.sinks.influx.lineproto import _series_keys, line_plan

    rows = [Key(q, u, "r1", m, c) for q, u in (("cell_voltage", "V"), ("cell_temperature", "°C")) for m in (1, 2)
            for c in (1, 2, 3)]  # fmt: skip
    plan = line_plan(Keys.of(rows), "site", "src")
    for code in (GOOD, QUALITY_CODE["stale"]):
        texts = _series_keys(plan, code).tolist()
        assert len(set(texts)) == 6  # a line per (module, cell): the voltage's and the temperature's share it
        assert len({id(t) for t in texts}) == 6, "equal series keys are one object"
        assert texts[0] is texts[6] and texts[0].startswith("cell,site=site,rack=r1,module=1,cell=1,quality=")
