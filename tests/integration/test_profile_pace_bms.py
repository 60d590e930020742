"""The PACE BMS profile end to end over Modbus RTU: three packs on one serial bus (a pseudo-terminal; unit
ids 1..3) serving the hand-made register image of the conformance test, read by the whole runtime with the
shipped profile and the serial settings of the example site, the normalized samples read back from the
store."""

from __future__ import annotations

import json
from pathlib import Path

from gateway.config.settings import load_config
from gateway.config.yamlpos import load_yaml, to_plain
from gateway.model import DeviceState, Quality
from gateway.runtime.core import Runtime
from gateway.sources.modbus.image import Image
from gateway.sources.modbus.plan import READ_FUNCTION_CODES, compile_points
from gateway.sources.modbus.transport import SerialLine
from gateway.sources.modbus.validate import load_modbus_profile
from gateway.tools.modbussim import ModbusSimulator, SimDevice
from tests.modbus_support import of, write
from tests.runtime_support import run_until
from tests.support.store import batches
from tests.unit.test_profile_conformance_pace_bms import IMAGE, PROFILE, ROOT, expected

EXAMPLE = ROOT / "config" / "examples" / "pace-bms-rs485-site.yaml"
UNITS = (1, 2, 3)


def pack_image(unit: int) -> Image:
    """The conformance image, told apart per pack by its cycle count (register 0007): 150 + unit id."""
    image = Image()
    for address, word in {**IMAGE, 7: 150 + unit}.items():
        image.write("holding", address, [word])
    return image


def pace_site(tmp_path: Path, tty: str) -> Path:
    """The example site on the pty: its three sources with their serial settings as they are, the port
    the simulator's pty, a shorter interval and a timeout for a busy machine; the store under tmp_path."""
    config = to_plain(load_yaml(EXAMPLE))
    config["site"]["profiles_dir"] = str(PROFILE.parent)
    config["store"] = {"path": str(tmp_path / "store.db"), "commit_interval": 0.02}
    config["http"] = {"enabled": False}
    config["alarms"] = {"enabled": False}
    for src in config["sources"]:
        assert (src["transport"], src["baudrate"], src["parity"]) == ("rtu", 9600, "N")
        src.update(port=tty, interval=0.5, timeout=3.0)
    return write(tmp_path / "gateway.yaml", json.dumps(config, indent=1))  # JSON is YAML


async def test_three_packs_on_one_rtu_bus_reach_the_store_as_the_document_says(tmp_path: Path) -> None:
    points, _ = compile_points(load_modbus_profile(PROFILE))
    sim = ModbusSimulator([SimDevice(u, points, image=pack_image(u)) for u in UNITS])
    tty = await sim.start_serial(line=SerialLine(baudrate=9600, parity="N", stopbits=1, bytesize=8))
    try:
        rt = Runtime(load_config(pace_site(tmp_path, tty)))
        await run_until(rt, lambda: all(len(of(rt, f"pack-{u}")) >= 3 for u in UNITS))
    finally:
        await sim.stop()
    assert len(rt.sources) == 1  # one serial link for the three unit ids
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
