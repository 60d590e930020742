"""The whole runtime with Modbus sources against the simulator on a real pymodbus server (loopback)."""

from __future__ import annotations

import asyncio
import itertools
import math
import statistics
from pathlib import Path

import pytest

from gateway.catalog import lookup
from gateway.config.settings import load_config
from gateway.metrics import REGISTRY
from gateway.model import DeviceState, Quality
from gateway.runtime.core import Runtime
from gateway.sources.modbus.image import truth_map
from gateway.sources.modbus.plan import READ_FUNCTION_CODES
from gateway.sources.modbus.poller import ModbusEndpoint
from gateway.sources.modbus.validate import load_modbus_profile
from gateway.tools.modbussim import ModbusSimulator
from tests.modbus_support import TINY, of, site, source, write
from tests.runtime_support import run_until
from tests.servers import free_port
from tests.unit.test_modbus_cycle import batches_checked  # noqa: F401  (a fixture)

# every batch a device makes is columnar over the key table of its shape
pytestmark = pytest.mark.usefixtures("batches_checked")


async def tiny_sim(tmp_path: Path, units: list[int], port: int | None = None) -> ModbusSimulator:
    profile = load_modbus_profile(write(tmp_path / "sim" / "tiny.yaml", TINY))
    sim = ModbusSimulator.from_profile(profile, units)
    await sim.start(port or free_port())
    return sim


async def test_samples_reach_the_outbox_with_the_simulators_values(tmp_path: Path) -> None:
    sim = await tiny_sim(tmp_path, [1])
    try:
        loaded = load_config(site(tmp_path, source("rack-a", sim.port, rack="A1")))
        rt = Runtime(loaded)
        await run_until(rt, lambda: len(of(rt, "rack-a")) >= 3)
    finally:
        await sim.stop()
    model = sim.devices[1].model
    assert model is not None
    truth = truth_map(model.samples(0, ""))
    batches = of(rt, "rack-a")
    assert batches[0].status is not None and batches[0].status.state == DeviceState.ONLINE
    samples = batches[-1].samples()
    assert len(samples) == 8 + 4 + 12 + 2  # points + the two named flags
    tolerance = {"rack_voltage": 0.05, "rack_current": 0.05, "soc": 0.005, "cell_voltage_max": 5e-5}
    checked = 0
    for s in samples:
        assert s.rack == "A1"
        assert s.quality == Quality.GOOD, s
        q = lookup(s.quantity)
        assert q is not None and s.unit == q.unit
        key = (s.quantity, s.module, s.cell)
        if key in truth and isinstance(s.value, int | float):
            expected = truth[key]
            assert isinstance(expected, int | float)
            tol = tolerance.get(s.quantity, 5e-4 if s.quantity == "cell_voltage" else 0.05)
            if s.quantity == "rack_power":
                tol = abs(expected) * 1e-6 + 1e-3  # float32
            assert math.isclose(s.value, expected, abs_tol=tol), (s, expected)
            checked += 1
    assert checked >= 16
    by = {(s.quantity, s.module, s.cell): s.value for s in samples}
    assert by[("contactor_positive", None, None)] == "closed"
    assert by[("serial_number", None, None)] == "SIM-0001"
    assert by[("alarm.insulation_fault", None, None)] == 0
    assert by[("cell_voltage", 2, 4)] == round(truth[("cell_voltage", 2, 4)], 3)  # type: ignore[arg-type]
    # read-only toward the BMS: only read function codes ever reached the device
    assert sim.function_codes and set(sim.function_codes) <= READ_FUNCTION_CODES
    assert sim.writes == 0


async def test_illegal_address_isolates_one_point_and_the_rest_keeps_flowing(tmp_path: Path) -> None:
    sim = await tiny_sim(tmp_path, [1])
    sim.faults.exceptions[("input", 23)] = 2  # module 1 cell 4
    try:
        rt = Runtime(load_config(site(tmp_path, source("rack-a", sim.port))))
        await run_until(rt, lambda: len(of(rt, "rack-a")) >= 20)
    finally:
        await sim.stop()
    batches = of(rt, "rack-a")
    for b in batches:
        bad = [s for s in b.samples() if s.quality != Quality.GOOD]
        assert [(s.quantity, s.module, s.cell, s.quality) for s in bad] == [("cell_voltage", 1, 4, Quality.BAD)]
        assert len(b.samples()) == 26
    assert any(b.status is not None and b.status.state == DeviceState.DEGRADED for b in batches)
    ep = rt.sources[0]
    assert isinstance(ep, ModbusEndpoint)
    dev = ep.devices[0]
    isolated = [b for bl in dev.blocks.values() for b in bl if b.table == "input" and b.start == 23]
    assert len(isolated) == 1 and isolated[0].count == 1  # the plan remembers the bad register
    assert [p.label for p in dev.bad] == ["cell_voltage[m1 c4] @input:23"]
    # the refused register is retried after 1, 2, 4 ... cycles, not every cycle
    tries = [r for r in sim.reads if r[1] == 4 and r[2] <= 23 < r[2] + r[3]]
    assert len(tries) <= 12 < len(batches)
    # the split happened once: later cycles send the same number of requests each
    per_cycle = len(dev.blocks[0.1])
    assert sim.requests <= per_cycle * len(batches) + 4
    from gateway.metrics import REGISTRY

    labels = {"device": "rack-a", "kind": "exception_2"}
    assert (REGISTRY.get_sample_value("bms_gateway_modbus_errors_total", labels) or 0) >= len(tries)
    assert REGISTRY.get_sample_value("bms_gateway_modbus_bad_points", {"device": "rack-a"}) == 1
    assert (REGISTRY.get_sample_value("bms_gateway_modbus_polls_total", {"device": "rack-a"}) or 0) >= len(batches)


async def test_a_silent_unit_goes_offline_while_its_neighbour_keeps_its_schedule(tmp_path: Path) -> None:
    sim = await tiny_sim(tmp_path, [1, 2])
    opts = {"retries": 0, "reconnect_initial": 0.4, "reconnect_max": 0.8}
    # each device has its own timeout on the shared connection: the silent one's is short
    cfg = site(
        tmp_path, source("rack-a", sim.port, 1, timeout=2, **opts) + source("rack-b", sim.port, 2, timeout=0.1, **opts)
    )
    rt = Runtime(load_config(cfg))
    phase: dict[str, int] = {}

    def progress() -> bool:
        a, b = of(rt, "rack-a"), of(rt, "rack-b")
        if "silent" not in phase and len(b) >= 2:
            sim.faults.silent.add(2)
            phase["silent"] = len(a)
            phase["probes0"] = sim.requests_by_unit.get(2, 0)
        offline = [x for x in b if x.status is not None and x.status.state == DeviceState.OFFLINE]
        if offline and "offline_at" not in phase:
            phase["offline_at"] = len(a)
        if "offline_at" in phase and "restored" not in phase and len(a) >= phase["offline_at"] + 30:
            phase["probes"] = sim.requests_by_unit.get(2, 0) - phase["probes0"]
            phase["restored"] = len(a)
            sim.faults.silent.clear()
        back = [x for x in b if x.status is not None and x.status.state == DeviceState.ONLINE]
        return "restored" in phase and len(back) >= 2

    try:
        await run_until(rt, progress)
    finally:
        await sim.stop()
    a, b = of(rt, "rack-a"), of(rt, "rack-b")
    offline = next(x for x in b if x.status is not None and x.status.state == DeviceState.OFFLINE)
    assert offline.samples() and {s.quality for s in offline.samples()} == {Quality.COMM_LOSS}
    assert all(s.value is None for s in offline.samples())
    assert len(offline.samples()) == 26
    # the healthy unit never lost a sample or its online state
    assert all(s.quality == Quality.GOOD for x in a for s in x.samples())
    assert not any(x.status is not None and x.status.state != DeviceState.ONLINE for x in a)
    # while unit 2 was silent it was probed once per backoff step, not every cycle
    window_cycles = phase["restored"] - phase["offline_at"]
    assert phase["probes"] * 3 <= window_cycles
    # the cycle jitter of the healthy unit during the outage (reported, not a pass/fail timing)
    created = [x.created for x in a[phase["offline_at"] : phase["restored"]]]
    gaps = [(t1 - t0) / 1e6 for t0, t1 in itertools.pairwise(created)]
    print(
        f"\nhealthy unit during neighbour outage: {len(gaps)} cycles, interval 100 ms, "
        f"mean {statistics.mean(gaps):.1f} ms, stdev {statistics.pstdev(gaps):.1f} ms, max {max(gaps):.1f} ms, "
        f"probes of the silent unit {phase['probes']}"
    )
    # recovery by itself: unit 2 delivers good samples again
    assert b[-1].samples() and all(s.quality == Quality.GOOD for s in b[-1].samples())


async def test_polling_resumes_after_an_outage_longer_than_the_backoff_ceiling(tmp_path: Path) -> None:
    port = free_port()
    sim = await tiny_sim(tmp_path, [1], port)
    opts: dict[str, object] = {"timeout": 0.3, "reconnect_initial": 0.05, "reconnect_max": 0.2}
    rt = Runtime(load_config(site(tmp_path, source("rack-a", port, 1, **opts))))
    state: dict[str, object] = {}

    def failed_connects() -> float:
        labels = {"endpoint": f"127.0.0.1:{port}", "result": "failed"}
        return REGISTRY.get_sample_value("bms_gateway_modbus_connects_total", labels) or 0.0

    def progress() -> bool:
        batches = of(rt, "rack-a")
        states = [x.status.state for x in batches if x.status is not None]
        if "stopped" not in state and len(batches) >= 2:
            state["stopped"] = asyncio.ensure_future(sim.stop())
        # Past the ceiling (0.2 s): the device is back only after several reconnect attempts have failed.
        if DeviceState.OFFLINE in states and "restarted" not in state and failed_connects() >= 3:
            state["restarted"] = asyncio.ensure_future(sim.start(port))
        return states[-1:] == [DeviceState.ONLINE] and len(states) >= 3

    try:
        await run_until(rt, progress)
    finally:
        await sim.stop()
    batches = of(rt, "rack-a")
    states = [x.status.state for x in batches if x.status is not None]
    assert states == [DeviceState.ONLINE, DeviceState.OFFLINE, DeviceState.ONLINE]
    last = batches[-1]
    assert last.samples() and all(s.quality == Quality.GOOD for s in last.samples())
    assert failed_connects() >= 3
