"""`bms-gateway demo` shows its Modbus racks (a register map and a SunSpec device) read over real
Modbus TCP on loopback, even when the configured port is taken."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from gateway.model import Quality
from tests.support.store import batches as stored_batches


def test_demo_reads_modbus_racks_over_loopback(tmp_path: Path) -> None:
    store = tmp_path / "demo.db"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "BMS_GATEWAY__HTTP__PORT": "0"}
    with socket.socket() as taken:  # another program holds the demo's Modbus port
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            taken.bind(("127.0.0.1", 15020))
            taken.listen()
        except OSError:
            pass  # already taken by something else: the same situation
        done = subprocess.run(
            [sys.executable, "-m", "gateway", "demo", "--store", str(store), "--duration", "3"],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=60,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert any(x.startswith("mb-rack-01") and "samples" in x for x in lines)
    assert any(x.startswith("mb-rack-02") and "samples" in x for x in lines)
    batches = [b for b in stored_batches(store) if b.source in ("mb-rack-01", "mb-rack-02") and b.samples()]
    by_rack = {b.source: b for b in batches}
    assert set(by_rack) == {"mb-rack-01", "mb-rack-02"}
    sunspec = [s for b in batches if b.source == "mb-rack-02" for s in b.samples()]
    assert {s.quantity for s in sunspec} >= {"cell_voltage", "soc", "rack_voltage", "manufacturer"}
    assert all(s.quality == Quality.GOOD for s in sunspec)
    cells = {
        (s.module, s.cell)
        for b in batches
        if b.source == "mb-rack-01"
        for s in b.samples()
        if s.quantity == "cell_voltage"
    }
    assert len(cells) == 240
