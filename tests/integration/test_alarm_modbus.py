"""BMS alarm bits and interlocks read over real Modbus TCP (the simulator on a pymodbus server) become alarms
by name; acknowledging them writes nothing to the device."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from gateway.alarms.commands import Command
from gateway.alarms.service import service_of
from gateway.config.settings import load_config
from gateway.model import BatchKind
from gateway.runtime.core import Runtime
from gateway.sources.modbus.validate import load_modbus_profile
from gateway.tools.modbussim import ModbusSimulator
from tests.modbus_support import TINY, write
from tests.servers import free_port
from tests.support.store import batches as stored_batches
from tests.support.waits import await_for

WATCHED = ("bms_alarm", "door_open")


async def test_bms_bits_and_interlocks_over_modbus(tmp_path: Path) -> None:
    sim = ModbusSimulator.from_profile(load_modbus_profile(write(tmp_path / "sim" / "tiny.yaml", TINY)), [1])
    await sim.start(free_port())
    write(tmp_path / "profiles" / "tiny.yaml", TINY)
    cfg = write(tmp_path / "gateway.yaml", f"""\
        site: {{name: t, profiles_dir: profiles}}
        sources:
          - {{type: modbus, name: rack-a, profile: tiny, host: 127.0.0.1, port: {sim.port}, unit_id: 1}}
        store: {{path: {tmp_path / "store.db"}, commit_interval: 0.02}}
        http: {{enabled: false}}
        alarms:
          tick_interval: 0.05
          overrides:
            door_open: {{on_delay: 0}}
            bms_alarm: {{severities: {{cell_overvoltage: critical}}}}
        """)  # fmt: skip
    rt = Runtime(load_config(cfg))
    dev = sim.devices[1]

    def events() -> list[tuple[str, str]]:
        records = [r for row in rt.outbox.query() if row.batch.kind == BatchKind.ALARM for r in row.batch.records]
        return [(r["alarm_id"], r["state"]) for r in records if r["type"] == "event" and r["rule"] in WATCHED]

    def polls() -> int:
        return sum(1 for row in rt.outbox.query() if row.batch.source == "rack-a" and row.batch.samples())

    task = asyncio.create_task(rt.run())
    try:
        await await_for(lambda: polls() >= 3, what="first polls")
        dev.image.write("holding", 1, [0b1001])  # BMS alarm bits 0 and 3
        dev.image.write("discrete", 0, [1])  # enclosure door open
        bits = ("rack-a:bms_alarm:cell_overvoltage", "rack-a:bms_alarm:insulation_fault", "rack-a:door_open")
        raised = {(a, "active_unack") for a in bits}
        await await_for(lambda: raised <= set(events()), what="alarms from the BMS bits")
        dev.image.write("holding", 1, [0])
        dev.image.write("discrete", 0, [0])
        await await_for(lambda: ("rack-a:door_open", "rtn_unack") in events(), what="door closed")
        svc = service_of(rt)
        assert svc is not None
        reply: dict[str, Any] = await svc.command(Command("ack", "rack-a", ("*",), "alice", "seen", None, "1"))
        await await_for(lambda: events().count(("rack-a:door_open", "normal")) == 1, what="acknowledged")
    finally:
        rt.request_stop("test")
        await task
        await sim.stop()
    assert reply["ok"] is True and len(reply["alarm_ids"]) == 3
    ov = next(r for row in rt_rows(rt) for r in row if r.get("alarm_id") == "rack-a:bms_alarm:cell_overvoltage")
    assert ov["severity"] == "critical" and ov["message"] == "BMS alarm.cell_overvoltage set"
    assert sim.writes == 0  # read-only toward the BMS, acknowledgements included


def rt_rows(rt: Runtime) -> list[list[dict[str, Any]]]:
    return [b.records for b in stored_batches(rt.cfg.store.path, kind=BatchKind.ALARM)]
