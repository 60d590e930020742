"""A SunSpec battery served by the simulator (models 1, 802, 805) is discovered and mapped with no
register list in its profile."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from gateway.config.settings import load_config
from gateway.model import DeviceState, Quality
from gateway.runtime.core import Runtime
from gateway.sources.modbus.image import truth_map
from gateway.sources.modbus.poller import ModbusEndpoint
from gateway.tools.modbussim import ModbusSimulator
from tests.modbus_support import of, site, source
from tests.runtime_support import run_until
from tests.servers import free_port
from tests.unit.test_modbus_cycle import batches_checked  # noqa: F401  (a fixture)

# every batch a device makes is columnar over the key table of its shape
pytestmark = pytest.mark.usefixtures("batches_checked")

SUNSPEC = "protocol: modbus\nsunspec: true\ninterval: 0.1\n"


async def test_sunspec_battery_is_discovered_and_mapped(tmp_path: Path) -> None:
    sim = ModbusSimulator.sunspec([3], modules=3, cells=8, base=0)  # the second base the gateway tries
    await sim.start(free_port())
    try:
        cfg = site(tmp_path, source("ss", sim.port, 3).replace("profile: tiny", "profile: ss"), SUNSPEC, "ss")
        rt = Runtime(load_config(cfg))
        await run_until(rt, lambda: len(of(rt, "ss")) >= 3)
    finally:
        await sim.stop()
    ep = rt.sources[0]
    assert isinstance(ep, ModbusEndpoint)
    dev = ep.devices[0]
    assert not dev.needs_discovery and len(dev.points) > 30
    batches = of(rt, "ss")
    assert batches[0].status is not None and batches[0].status.state == DeviceState.ONLINE
    samples = batches[-1].samples()
    assert all(s.quality == Quality.GOOD for s in samples), [s for s in samples if s.quality != Quality.GOOD]
    model = sim.devices[3].model
    assert model is not None
    truth = truth_map(model.samples(0, ""))
    cells = {(s.module, s.cell): s.value for s in samples if s.quantity == "cell_voltage"}
    assert len(cells) == 24
    for key, value in cells.items():
        expected = truth[("cell_voltage", *key)]
        assert isinstance(value, float) and isinstance(expected, float)
        assert math.isclose(value, expected, abs_tol=0.0005)
    temps = [s for s in samples if s.quantity == "cell_temperature"]
    assert len(temps) == 24 and all(s.unit == "°C" for s in temps)
    by = {s.quantity: s.value for s in samples if s.module is None}
    assert by["manufacturer"] == "bms-gateway" and by["serial_number"] == "SIM-0003"
    assert by["bms_state"] == "connected"
    assert isinstance(by["soc"], float) and abs(by["soc"] - float(truth[("soc", None, None)])) <= 0.05  # type: ignore[arg-type]
    assert by["alarm.over_temp"] == 0
    assert {s.quantity for s in samples if s.module is not None and s.cell is None} == {"module_voltage"}
