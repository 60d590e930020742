"""A store file with a truncated tail: it is repaired at start, and the readable rows and the new ones reach
VictoriaMetrics."""

from __future__ import annotations

import time
from pathlib import Path

from gateway.sinks.config import InfluxSinkConfig
from gateway.sinks.influx.sink import InfluxSink
from gateway.sinks.runner import SinkRunner
from gateway.store.outbox import Outbox
from tests.delivery_support import metric, running, sample_batch, vm_wait_points
from tests.servers import VictoriaMetrics
from tests.support.waits import await_for


async def test_truncated_store_starts_reports_and_keeps_delivering(tmp_path: Path, victoria: VictoriaMetrics) -> None:
    db = tmp_path / "store.db"
    start = (time.time_ns() // 1_000_000) * 1_000_000
    ob = Outbox(db, consumers=["influx"])
    for i in range(800):
        ob.append([sample_batch("r1", start + i * 1_000_000, 20, base=i)])
    ob.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    ob.close()
    with db.open("r+b") as f:
        f.truncate(int(db.stat().st_size * 0.7))
    set_aside_before = metric("bms_gateway_store_set_aside_rows_total")
    ob = Outbox(db)
    rep = ob.repair_report
    assert rep is not None and rep.unreadable_rows > 0
    assert rep.recovered_rows + rep.unreadable_rows == 800  # every row accounted for
    assert metric("bms_gateway_store_set_aside_rows_total") - set_aside_before == rep.unreadable_rows
    cfg = InfluxSinkConfig(url=victoria.url, token="t", batch_max_age=0.05)
    runner = SinkRunner("influx", InfluxSink("influx", cfg, "s1"), ob, cfg)
    async with running(runner):
        for i in range(800, 810):
            assert ob.append([sample_batch("r1", start + i * 1_000_000, 20, base=i)]) == i + 1
        runner.notify()
        await await_for(runner.caught_up)
    expected = (rep.recovered_rows + 10) * 20
    got = await vm_wait_points(victoria, '{__name__=~"rack_raw.v.*"}', expected)
    print(f"kept {rep.recovered_rows} rows, set aside {rep.unreadable_rows}; delivered {got} of {expected}, lost: 0")
    assert got == expected
    ob.close()
