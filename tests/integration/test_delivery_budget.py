"""Disk budget exceeded during a long outage: the drop count in the metric equals the samples missing at
the sink, exactly, and what is kept is the newest data, delivered in order."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from gateway.sinks.config import InfluxSinkConfig
from gateway.sinks.influx.sink import InfluxSink
from gateway.sinks.runner import SinkRunner
from gateway.store.outbox import Outbox
from tests.delivery_support import metric, running, sample_batch, vm_series, vm_wait_points
from tests.servers import VictoriaMetrics
from tests.support.waits import await_for


async def test_budget_drops_equal_the_samples_missing_at_the_sink(tmp_path: Path, victoria: VictoriaMetrics) -> None:
    ob = Outbox(tmp_path / "store.db", max_bytes=250_000)
    cfg = InfluxSinkConfig(url=victoria.url, token="t", batch_max_age=0.05, backoff_initial=0.05, backoff_max=0.3)
    runner = SinkRunner("influx", InfluxSink("influx", cfg, "s1"), ob, cfg)
    before = metric("bms_gateway_samples_dropped_total", consumer="influx", reason="disk_budget")
    start = (time.time_ns() // 1_000_000) * 1_000_000
    produced = 0
    async with running(runner):
        victoria.stop()
        for i in range(600):  # about 0.6 MB of rows against a 250 kB budget
            ob.append([sample_batch("r1", start + i * 1_000_000, 50, base=i)])
            produced += 50
            runner.notify()
            if i % 50 == 0:
                await asyncio.sleep(0.01)
        dropped = metric("bms_gateway_samples_dropped_total", consumer="influx", reason="disk_budget") - before
        assert dropped > 0
        victoria.start()
        await await_for(runner.caught_up, timeout=60)
    delivered = await vm_wait_points(victoria, '{__name__=~"rack_raw.v.*"}', produced - int(dropped))
    print(f"produced {produced}, dropped (metric) {int(dropped)}, delivered {delivered}")
    assert produced - delivered == dropped  # exactly: every missing sample is counted, nothing else is missing
    assert ob.dropped_total["influx"] == dropped
    kept = vm_series(victoria, '{__name__="rack_raw.v0"}')["rack_raw.v0"]
    first = 600 - len(kept)
    assert kept == [((start + i * 1_000_000) // 1_000_000, float(i)) for i in range(first, 600)]  # newest, in order
    ob.close()
