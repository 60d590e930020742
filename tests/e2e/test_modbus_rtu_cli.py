"""The Modbus command line over RTU end to end: `modbus simulate --transport rtu` on a pseudo-terminal ->
`modbus record` over the serial line -> the recording replayed on another pty -> `bms-gateway run` ->
the store."""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path

from gateway.model import Quality
from tests.e2e.test_modbus_cli import cli, process
from tests.modbus_support import TINY, site, write
from tests.support.store import batches as batches_of
from tests.support.waits import wait_for

PTY = re.compile(r"RTU on (\S+)")


def rtu_source(name: str, tty: str, unit: int) -> str:
    return (
        f"- type: modbus\n  name: {name}\n  profile: tiny\n  transport: rtu\n  port: {tty}\n  unit_id: {unit}\n"
        "  parity: N\n  baudrate: 115200\n  interval: 0.2\n"
    )


def test_simulate_record_and_replay_over_rtu(tmp_path: Path) -> None:
    profile = write(tmp_path / "profiles" / "tiny.yaml", TINY)
    rec = tmp_path / "rec.jsonl"
    line = ("--transport", "rtu", "--parity", "N", "--baudrate", "115200")
    with process("modbus", "simulate", "-p", str(profile), "--unit-ids", "1,2", *line, cwd=tmp_path) as sim:
        assert sim.stdout is not None
        banner = sim.stdout.readline()
        found = PTY.search(banner)
        assert found, banner
        config = site(tmp_path, rtu_source("rack-a", found[1], 1) + rtu_source("rack-b", found[1], 2))
        done = cli("modbus", "record", "-c", str(config), "--duration", "3", "-o", str(rec), cwd=tmp_path)
        sim.send_signal(signal.SIGINT)
        _, err = sim.communicate(timeout=30)
    assert done.returncode == 0, done.stderr
    assert sim.returncode == 0 and "Traceback" not in err
    assert "units [1, 2]" in banner
    frames = [json.loads(x) for x in rec.read_text().splitlines()[1:]]
    assert {f["unit"] for f in frames} == {1, 2}
    assert all("words" in f for f in frames)  # every read over the serial line was answered

    cmd = ("modbus", "simulate", "--recording", str(rec), "--loop", *line)
    with process(*cmd, cwd=tmp_path) as player:
        assert player.stdout is not None
        found = PTY.search(player.stdout.readline())
        assert found
        run_cfg = site(tmp_path / "replay", rtu_source("rack-a", found[1], 1))
        with process("run", "-c", str(run_cfg), cwd=tmp_path) as gw:
            store = tmp_path / "replay" / "store.db"

            def polled() -> int:  # a read-only look while the gateway writes
                if not store.exists():
                    return 0
                return sum(1 for b in batches_of(store, check=False) if b.source == "rack-a" and b.samples())

            wait_for(lambda: polled() >= 5, 60, "5 batches of rack-a stored", gw, step=0.2)
            gw.send_signal(signal.SIGTERM)
            _, gw_err = gw.communicate(timeout=60)
        assert gw.returncode == 0, gw_err
    batches = [b for b in batches_of(store) if b.source == "rack-a" and b.samples()]
    recorded = {f["words"][0] for f in frames if f["unit"] == 1 and f["table"] == "input" and f["start"] == 0}
    for b in batches:
        assert all(s.quality == Quality.GOOD for s in b.samples())
        by = {(s.quantity, s.module, s.cell): s.value for s in b.samples()}
        assert by[("serial_number", None, None)] == "SIM-0001"
        assert round(by[("rack_voltage", None, None)] * 10) in recorded  # the recording's values, over RTU
