"""The PACE BMS profile end to end: three packs on one bus (unit ids 1..3) serving the hand-made register
image of the conformance test, read by the whole runtime with the shipped profile, the normalized samples
read back from the store."""

from __future__ import annotations

from pathlib import Path

from gateway.config.settings import load_config
from gateway.model import DeviceState, Quality
from gateway.runtime.core import Runtime
from gateway.sources.modbus.image import Image
from gateway.sources.modbus.plan import READ_FUNCTION_CODES, compile_points
from gateway.sources.modbus.validate import load_modbus_profile
from gateway.tools.modbussim import ModbusSimulator, SimDevice
from tests.modbus_support import of, write
from tests.runtime_support import run_until
from tests.servers import free_port
from tests.support.store import batches
from tests.unit.test_profile_conformance_pace_bms import IMAGE, PROFILE, expected

UNITS = (1, 2, 3)


def pack_image(unit: int) -> Image:
    """The conformance image, told apart per pack by its cycle count (register 0007): 150 + unit id."""
    image = Image()
    for address, word in {**IMAGE, 7: 150 + unit}.items():
        image.write("holding", address, [word])
    return image


def pace_site(tmp_path: Path, port: int) -> Path:
    sources = "".join(
        f"  - {{type: modbus, name: pack-{u}, profile: modbus-rtu-pace-bms, host: 127.0.0.1, port: {port}, "
        f"unit_id: {u}, interval: 0.2, timeout: 2}}\n"
        for u in UNITS
    )
    return write(
        tmp_path / "gateway.yaml",
        f"site:\n  name: t\n  profiles_dir: {PROFILE.parent}\n"
        f"store:\n  path: {tmp_path / 'store.db'}\n  commit_interval: 0.02\n"
        "http:\n  enabled: false\nalarms:\n  enabled: false\n"
        f"sources:\n{sources}",
    )


async def test_three_packs_on_one_bus_reach_the_store_as_the_document_says(tmp_path: Path) -> None:
    points, _ = compile_points(load_modbus_profile(PROFILE))
    sim = ModbusSimulator([SimDevice(u, points, image=pack_image(u)) for u in UNITS])
    await sim.start(free_port())
    try:
        rt = Runtime(load_config(pace_site(tmp_path, sim.port)))
        await run_until(rt, lambda: all(len(of(rt, f"pack-{u}")) >= 3 for u in UNITS))
    finally:
        await sim.stop()
    stored = batches(tmp_path / "store.db")
    for u in UNITS:
        mine = [b for b in stored if b.source == f"pack-{u}"]
        assert len(mine) >= 3
        assert mine[0].status is not None and mine[0].status.state == DeviceState.ONLINE
        first = mine[0].samples()  # the first cycle reads both blocks (pack and identity)
        assert {s.rack for s in first} == {f"pack-{u}"}
        got = {(s.quantity, s.module, s.cell): (s.value, s.quality) for s in first}
        want = expected()
        want[("cycle_count", None, None)] = (150 + u, Quality.GOOD)
        assert got == want
        for later in mine[1:]:  # later cycles: the pack block at its interval, every value as before
            assert all((s.value, s.quality) == want[(s.quantity, s.module, s.cell)] for s in later.samples())
    # read-only toward the BMS: function 03, as the document's only read
    assert set(sim.function_codes) == {3} and set(sim.function_codes) <= READ_FUNCTION_CODES
    assert sim.writes == 0
