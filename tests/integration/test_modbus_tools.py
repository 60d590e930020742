"""Record, replay, read-only guard and simulator faults against real pymodbus servers and clients."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from pymodbus.client import AsyncModbusTcpClient

from gateway.model import Batch, DeviceState, Quality
from gateway.sources.base import SourceContext
from gateway.sources.modbus.config import ModbusSourceConfig
from gateway.sources.modbus.device import DeviceRun
from gateway.sources.modbus.plan import READ_FUNCTION_CODES
from gateway.sources.modbus.poller import ModbusEndpoint, WriteRefused
from gateway.sources.modbus.validate import load_modbus_profile
from gateway.tools.modbusrecord import Recorder, apply_cycle, read_recording, replay_simulator
from gateway.tools.modbussim import ModbusSimulator
from tests.modbus_support import TINY, write
from tests.servers import free_port
from tests.support.waits import await_for
from tests.unit.test_modbus_cycle import batches_checked  # noqa: F401  (a fixture)

# every batch a device makes is columnar over the key table of its shape
pytestmark = pytest.mark.usefixtures("batches_checked")

SUNSPEC = "protocol: modbus\nsunspec: true\ninterval: 0.1\n"


def device(port: int, unit: int = 1, name: str = "rack-a", text: str = TINY, **kw: object) -> DeviceRun:
    with tempfile.TemporaryDirectory() as tmp:
        profile = load_modbus_profile(write(Path(tmp) / "p.yaml", text))
    cfg = ModbusSourceConfig(name=name, profile="tiny", host="127.0.0.1", port=port, unit_id=unit, **kw)
    return DeviceRun(cfg, profile)


async def poll(ep: ModbusEndpoint, until: Callable[[list[Batch]], bool], limit: float = 15.0) -> list[Batch]:
    batches: list[Batch] = []

    async def emit(b: Batch) -> None:
        batches.append(b)

    task = asyncio.create_task(ep.run(SourceContext(emit, lambda: None, "t")))
    try:
        await await_for(lambda: until(batches), limit, step=0.01, task=task)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return batches


def snapshot(b: Batch) -> tuple[tuple[object, ...], ...]:
    return tuple((s.quantity, s.module, s.cell, s.value, s.quality) for s in b.samples())


@pytest.mark.parametrize("kind", ["register-map", "sunspec"])
async def test_a_replayed_recording_gives_the_same_samples_as_the_live_run(tmp_path: Path, kind: str) -> None:
    text = TINY if kind == "register-map" else SUNSPEC
    if kind == "sunspec":
        live_sim = ModbusSimulator.sunspec([1], modules=2, cells=4)
    else:
        live_sim = ModbusSimulator.from_profile(load_modbus_profile(write(tmp_path / "tiny.yaml", TINY)), [1])
    await live_sim.start(free_port())
    models = asyncio.create_task(live_sim.run_models(0.05, speed=60))
    out = io.StringIO()
    dev = device(live_sim.port, interval=0.2, text=text)
    ep = ModbusEndpoint("127.0.0.1", live_sim.port, [dev])
    ep.on_response = Recorder(out, [dev], {"rack-a": "tiny"})
    try:
        live = await poll(ep, lambda bs: len(bs) >= 8)
    finally:
        models.cancel()
        await live_sim.stop()
    path = tmp_path / "rec.jsonl"
    path.write_text(out.getvalue(), encoding="utf-8")
    header, cycles = read_recording(path)
    assert header["devices"] == [{"name": "rack-a", "unit_id": 1, "profile": "tiny"}]
    assert len(cycles) >= 8 and all(c.unit == 1 for c in cycles)
    assert [c.t for c in cycles] == sorted(c.t for c in cycles)
    first_frame = json.loads(path.read_text().splitlines()[1])
    assert {"t", "ts", "unit", "cycle", "table", "start", "count", "words"} <= set(first_frame)

    sim = replay_simulator(header)
    await sim.start(free_port())
    # Replayed one cycle at a time, in step with the poller (what `replay` does on the recorded timing): a
    # poll running while a cycle becomes visible reads blocks of two cycles, so for each cycle the poll that
    # began after it was applied is compared. On a busy machine the recorded timing alone made such mixes.
    partial = len(cycles[-1].frames) < len(cycles[-2].frames)  # the live poll was cancelled in a cycle
    complete = cycles[:-1] if partial else cycles
    apply_cycle(sim.devices[1], complete[0])
    ep2 = ModbusEndpoint("127.0.0.1", sim.port, [device(sim.port, interval=0.05, text=text)])
    batches: list[Batch] = []

    async def emit(b: Batch) -> None:
        batches.append(b)

    task = asyncio.create_task(ep2.run(SourceContext(emit, lambda: None, "t")))
    replayed: list[Batch] = []
    try:
        for i, cycle in enumerate(complete):
            if i:
                apply_cycle(sim.devices[1], cycle)
            n = len(batches)
            await await_for(lambda n=n: len(batches) >= n + 2, 30, "the replayed device polled", step=0.01, task=task)
            replayed.append(batches[n + 1])  # polled wholly after the cycle was applied
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await sim.stop()
    live_snaps = [snapshot(b) for b in live]
    values = {s[3] for snap in live_snaps for s in snap}
    assert len(values) > 10  # the live values changed over the run
    seen: list[tuple[tuple[object, ...], ...]] = []
    for b in replayed:
        snap = snapshot(b)
        assert snap in live_snaps  # every replayed cycle is a live cycle, sample for sample
        if not seen or seen[-1] != snap:
            seen.append(snap)
    order = [live_snaps.index(s) for s in seen]
    assert order == sorted(order)  # in the original order
    assert set(seen) == set(live_snaps)  # and all of them


async def test_the_poller_refuses_to_send_a_write(tmp_path: Path) -> None:
    profile = load_modbus_profile(write(tmp_path / "tiny.yaml", TINY))
    sim = ModbusSimulator.from_profile(profile, [1])
    await sim.start(free_port())
    ep = ModbusEndpoint("127.0.0.1", sim.port, [device(sim.port)])
    try:
        assert await ep.link.connect()
        client = ep.link.client
        assert client is not None
        with pytest.raises(WriteRefused):
            await client.write_register(0, 1, device_id=1)
        with pytest.raises(WriteRefused):
            await client.write_coil(0, True, device_id=1)
        rr = await client.read_input_registers(0, count=2, device_id=1)
        assert not rr.isError()
    finally:
        ep.link.close()
        await sim.stop()
    assert sim.function_codes == [4]  # the writes never left the process
    # a plain client can write to the simulator's server; it answers "illegal function" and stays read-only
    sim2 = ModbusSimulator.from_profile(profile, [1])
    await sim2.start(free_port())
    client = AsyncModbusTcpClient("127.0.0.1", port=sim2.port, timeout=10)
    try:
        await client.connect()
        rr = await client.write_register(0, 1, device_id=1)
        assert rr.isError() and rr.exception_code == 1
    finally:
        client.close()
        await sim2.stop()
    assert sim2.function_codes == [6] and sim2.writes == 1


async def test_only_read_function_codes_reach_the_device(tmp_path: Path) -> None:
    profile = load_modbus_profile(write(tmp_path / "tiny.yaml", TINY))
    sim = ModbusSimulator.from_profile(profile, [1, 2])
    await sim.start(free_port())
    ep = ModbusEndpoint("127.0.0.1", sim.port, [device(sim.port, 1), device(sim.port, 2, name="rack-b")])
    try:
        await poll(ep, lambda bs: len(bs) >= 10)
    finally:
        await sim.stop()
    assert set(sim.function_codes) == READ_FUNCTION_CODES  # all four tables read, nothing else
    assert sim.writes == 0


async def test_workarounds_one_request_per_point_and_close_after_cycle(tmp_path: Path) -> None:
    profile = load_modbus_profile(write(tmp_path / "tiny.yaml", TINY))
    sim = ModbusSimulator.from_profile(profile, [1])
    await sim.start(free_port())
    dev = device(sim.port, one_request_per_point=True, close_after_cycle=True, pause_between_requests=0.001)
    ep = ModbusEndpoint("127.0.0.1", sim.port, [dev])
    try:
        batches = await poll(ep, lambda bs: len(bs) >= 3)
    finally:
        await sim.stop()
    assert sum(len(v) for v in dev.blocks.values()) == 24  # one read per point
    assert sim.connections >= 3  # a new connection every cycle
    assert all(s.quality == Quality.GOOD for s in batches[-1].samples())


async def test_simulator_faults_delay_drop_and_one_client(tmp_path: Path) -> None:
    profile = load_modbus_profile(write(tmp_path / "tiny.yaml", TINY))
    sim = ModbusSimulator.from_profile(profile, [1])
    await sim.start(free_port())
    try:
        sim.faults.one_client = True
        # The client's timeout is generous for the replies it should get on a busy machine (2 s).
        first = AsyncModbusTcpClient("127.0.0.1", port=sim.port, timeout=2, retries=0, reconnect_delay=0)
        second = AsyncModbusTcpClient("127.0.0.1", port=sim.port, timeout=2, retries=0, reconnect_delay=0)
        await first.connect()
        await second.connect()
        await await_for(lambda: sim.refused == 1)  # the second connection was turned away
        assert not (await first.read_input_registers(0, count=1, device_id=1)).isError()
        with pytest.raises(Exception, match="onnect"):
            await second.read_input_registers(0, count=1, device_id=1)
        # a delay longer than the client's timeout: a timeout, then a dropped connection
        sim.faults.delay = 2.5
        with pytest.raises(Exception, match="No response"):
            await first.read_input_registers(0, count=1, device_id=1)
        sim.faults.delay = 0.0
        sim.drop_connections()
        await await_for(lambda: not first.connected)
        first.close()
        second.close()
    finally:
        await sim.stop()


async def test_a_dropped_connection_is_recovered_without_losing_the_device(tmp_path: Path) -> None:
    profile = load_modbus_profile(write(tmp_path / "tiny.yaml", TINY))
    sim = ModbusSimulator.from_profile(profile, [1])
    await sim.start(free_port())
    dropped: dict[str, bool] = {}

    def until(bs: list[Batch]) -> bool:
        if len(bs) >= 3 and not dropped:
            sim.drop_connections()
            dropped["at"] = True
        states = [b.status.state for b in bs if b.status is not None]
        return bool(dropped) and states[-1:] == [DeviceState.ONLINE] and len(bs) >= 8

    ep = ModbusEndpoint("127.0.0.1", sim.port, [device(sim.port, reconnect_initial=0.05)])
    try:
        batches = await poll(ep, until)
    finally:
        await sim.stop()
    assert sim.connections >= 2
    assert all(s.quality == Quality.GOOD for s in batches[-1].samples())
