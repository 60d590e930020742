"""`bms-gateway demo` includes a CAN rack: a real capture replayed onto an in-process virtual bus."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.can_support import stored_samples, stored_statuses


def test_demo_shows_the_can_rack(tmp_path: Path) -> None:
    store = tmp_path / "demo.db"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "BMS_GATEWAY__HTTP__PORT": "0"}
    out = subprocess.run(
        [sys.executable, "-m", "gateway", "demo", "--store", str(store), "--duration", "4"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stdout + out.stderr
    can_lines = [line for line in out.stdout.splitlines() if line.startswith("rack-can") and "samples" in line]
    assert len(can_lines) >= 2, out.stdout
    assert " V " in can_lines[-1] and "SoC" in can_lines[-1]
    stored = stored_samples(store, rack="rack-can")
    quantities = {k[0] for k in stored}
    assert {"rack_voltage", "rack_current", "soc", "cell_voltage_max", "cell_temperature_max"} <= quantities
    assert all(k[2] == "good" for k in stored if k[0] == "rack_voltage")
    assert ("rack-can", "online") in stored_statuses(store)
