"""`bms-gateway demo` includes a CAN rack: a real capture replayed onto an in-process virtual bus."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from gateway.cli.can import demo_capture
from gateway.cli.demo import demo_config_path
from gateway.config.library import library_dbc_dir, library_profiles_dir
from gateway.config.settings import load_config
from gateway.sources.can.config import CanSourceConfig
from tests.support.store import samples_by_quantity as stored_samples
from tests.support.store import statuses as stored_statuses


def test_the_embedded_demo_has_a_can_rack_on_a_virtual_bus() -> None:
    loaded = load_config(demo_config_path())
    can_racks = [s for s in loaded.config.sources if isinstance(s, CanSourceConfig)]
    assert [(s.name, s.interface) for s in can_racks] == [("rack-can", "virtual")]
    assert demo_capture().exists()


def test_demo_shows_the_can_rack(tmp_path: Path) -> None:
    # The embedded demo's CAN rack alone (the other racks have their own tests), through `bms-gateway demo`.
    cfg = tmp_path / "demo-can.yaml"
    cfg.write_text(
        "site:\n  name: demo\n"  # the profile and its DBC come from the shipped library
        "sources:\n"
        "  - {type: can, name: rack-can, profile: can-redpesk-bms, interface: virtual, channel: demo-can, "
        "batch_window: 1.0}\n"
        f"store:\n  path: {tmp_path / 'unused.db'}\nhttp:\n  enabled: false\n"
    )
    store = tmp_path / "demo.db"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "gateway", "demo", "-c", str(cfg), "--store", str(store), "--duration", "4"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stdout + out.stderr
    can_lines = [line for line in out.stdout.splitlines() if line.startswith("rack-can") and "samples" in line]
    assert can_lines, out.stdout
    assert " V " in can_lines[-1] and "SoC" in can_lines[-1]
    stored = stored_samples(store, rack="rack-can")
    quantities = {k[0] for k in stored}
    assert {"rack_voltage", "rack_current", "soc", "cell_voltage_max", "cell_temperature_max"} <= quantities
    assert all(k[2] == "good" for k in stored if k[0] == "rack_voltage")
    assert ("rack-can", "online") in stored_statuses(store)


def test_the_demo_profiles_and_dbc_are_the_shipped_library() -> None:
    loaded = load_config(demo_config_path())
    assert {n: (f.path, f.origin) for n, f in loaded.profile_paths.items()} == {
        n: (library_profiles_dir() / f"{n}.yaml", "library")
        for n in ("can-redpesk-bms", "modbus-generic-rack", "modbus-sunspec-battery")
    }
    assert loaded.dbc_file("can-redpesk-bms", "BMS.dbc") == library_dbc_dir() / "BMS.dbc"
