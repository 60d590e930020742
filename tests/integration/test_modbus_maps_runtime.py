"""The example register map (module blocks, bit fields, scale registers, a clock) over real Modbus TCP:
`bms-gateway run`'s runtime against the simulator, what reaches the store."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.config.settings import load_config
from gateway.model import Batch, Quality
from gateway.runtime.core import Runtime
from gateway.sources.modbus.validate import load_modbus_profile
from gateway.tools.modbussim import ModbusSimulator
from tests.modbus_support import ROOT, site
from tests.servers import free_port
from tests.support.store import runtime_batches
from tests.support.waits import await_for

PROFILE = ROOT / "config" / "profiles" / "modbus-example-module-blocks.yaml"
# 2026-03-01 12:00:00 UTC on a clock kept at +01:00: local epoch seconds 1,772,366,400 + 3,600 = 0x69A4_3850.
CLOCK_WORDS = [0x69A4, 0x3850]
CLOCK_NS = 1_772_366_400 * 1_000_000_000


async def test_the_example_map_over_modbus_tcp(tmp_path: Path) -> None:
    sim = ModbusSimulator.from_profile(load_modbus_profile(PROFILE), [1])
    dev = sim.devices[1]
    dev.image.write("holding", 23, [0xFFFD])  # the cells' exponent: -3 (mV)
    dev.refresh(0.0)  # the simulator encodes the cells with the factor the register holds
    dev.image.write("holding", 40, CLOCK_WORDS)
    # register 4: bits 0-1 = 2 welded, bits 2-3 = 1 closed, bits 4-5 = 0 open, bit 8 e-stop, bits 12-15 = 2 run
    dev.image.write("holding", 4, [0x2106])
    await sim.start(free_port())
    text = PROFILE.read_text(encoding="utf-8")
    cfg = site(
        tmp_path,
        f"- {{type: modbus, name: rack-a, profile: blocks, host: 127.0.0.1, port: {sim.port}}}\n",
        text,
        "blocks",
    )
    rt = Runtime(load_config(cfg))

    def polled() -> list[Batch]:
        return [b for b in runtime_batches(rt) if b.source == "rack-a" and b.n]

    def has_cells() -> bool:
        return any(s.quantity == "cell_voltage" for b in polled() for s in b.samples())

    task = asyncio.create_task(rt.run())
    try:
        await await_for(lambda: len(polled()) >= 2 and has_cells(), timeout=60, what="polls with the cells")
    finally:
        rt.request_stop("test")
        await task
        await sim.stop()
    batches = polled()
    assert all(b.device_ts is not None and set(b.device_ts.tolist()) == {CLOCK_NS} for b in batches)
    last = {(s.quantity, s.module, s.cell): s for b in batches for s in b.samples()}
    states = {q: last[(q, None, None)].value for q in ("contactor_positive", "contactor_negative", "bms_state")}
    assert states == {"contactor_positive": "welded", "contactor_negative": "closed", "bms_state": "run"}
    assert last[("contactor_precharge", None, None)].value == "open"
    assert last[("interlock_estop", None, None)].value == 1.0
    cells = [s for k, s in last.items() if k[0] == "cell_voltage"]
    assert {(s.module, s.cell) for s in cells} == {(m, c) for m in range(1, 17) for c in range(1, 25)}
    assert all(s.quality == Quality.GOOD and 2.0 <= float(s.value or 0) <= 4.0 for s in cells)
    assert any(float(s.value or 0) != round(float(s.value or 0)) for s in cells)  # mV, not whole volts: x 10^-3
    assert "scale_register" not in {k[0] for k in last} and "clock" not in {k[0] for k in last}
