"""`bms-gateway run` on a store file with a truncated tail: it starts, reports what it set aside, and keeps
delivering (the kept backlog and the new data reach VictoriaMetrics)."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from pathlib import Path

from gateway.outbox import Outbox
from tests.delivery_support import sample_batch, vm_wait_points
from tests.servers import VictoriaMetrics


async def test_gateway_starts_on_a_truncated_store(tmp_path: Path, victoria: VictoriaMetrics) -> None:
    db = tmp_path / "store.db"
    start = (time.time_ns() // 1_000_000 - 3_600_000) * 1_000_000  # an hour ago
    ob = Outbox(db, consumers=["influx"])
    for i in range(600):
        ob.append([sample_batch("old", start + i * 1_000_000, 20, base=i)])
    ob.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    ob.close()
    with db.open("r+b") as f:
        f.truncate(int(db.stat().st_size * 0.7))
    cfg = tmp_path / "gateway.yaml"
    cfg.write_text(
        "site: {name: t}\n"
        "sources:\n  - {type: simulated, name: rack-0, interval: 0.1, modules: 1, cells_per_module: 4}\n"
        f"sinks:\n  influx: {{type: influxdb, url: '{victoria.url}', token: t, batch_max_age: 0.05}}\n"
        f"store: {{path: {db}}}\n"
        "http: {enabled: false}\n"
    )
    log_path = tmp_path / "gateway.log"
    with log_path.open("ab") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "run", "-c", str(cfg), stdout=log, stderr=log
        )
    try:
        new = await vm_wait_points(victoria, '{__name__="rack_soc",rack="rack-0"}', 10, timeout=30)
        assert new >= 10, log_path.read_text()[-2000:]
        proc.send_signal(signal.SIGTERM)
        assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    events = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    repair = next(e for e in events if e.get("event") == "damaged store set aside; readable rows kept")
    assert repair["recovered_rows"] + repair["unreadable_rows"] == 600
    kept = await vm_wait_points(victoria, '{__name__=~"rack_raw.v.*",rack="old"}', repair["recovered_rows"] * 20)
    print(f"set aside {repair['unreadable_rows']} rows, delivered the {kept // 20} kept ones, lost: 0")
    assert kept == repair["recovered_rows"] * 20
    assert await asyncio.to_thread(Path(repair["damaged_file"]).exists)
