"""Conformance of the kept Modbus profiles on register images written by hand from their documents:
BYD Battery-Box (the BMU's holding registers 0x0500..) and SunSpec (models 1 and 802), decoded
through the gateway's own read plan and block decoders, against values computed by hand."""

from __future__ import annotations

import asyncio
import json
from importlib import resources
from typing import Any

import pytest

from gateway.model import Quality
from gateway.sources.modbus import sunspec
from gateway.sources.modbus.cycle import Cycle, keys_of
from gateway.sources.modbus.decode import BlockDecoder
from gateway.sources.modbus.image import Image
from gateway.sources.modbus.plan import Point, compile_points, plan_reads
from gateway.sources.modbus.validate import load_modbus_profile
from tests.modbus_support import GENERIC

Decoded = dict[str, tuple[Any, Quality]]


def decode(points: list[Point], image: Image, max_gap: int = 16) -> Decoded:
    """One poll cycle over the image (a scale-factor register may be in another block than its points)."""
    cycle = Cycle()
    for b in plan_reads(points, max_gap=max_gap):
        cycle.decoded(BlockDecoder(b), image.read(b.table, b.start, b.count), 1)
    return {s.quantity: (s.value, s.quality) for s in cycle.batch("r", keys_of(cycle.decoders, "r"), None, 0).samples()}


def good(value: Any) -> tuple[Any, Quality]:
    return (pytest.approx(value, abs=1e-9) if isinstance(value, float) else value, Quality.GOOD)


def test_byd_battery_box_registers() -> None:
    profile = load_modbus_profile(GENERIC.parent / "modbus-byd-battery-box.yaml")
    points, problems = compile_points(profile)
    assert problems == []
    image = Image()
    image.write("holding", 1280, [
        76,      # 0x0500 SoC 76 %
        334,     # 0x0501 max cell voltage, 0.01 V: 3.34 V
        329,     # 0x0502 min cell voltage: 3.29 V
        98,      # 0x0503 SoH 98 %
        0xFF85,  # 0x0504 current, int16, 0.1 A: -123 -> -12.3 A
        40560,   # 0x0505 pack voltage, 0.01 V: 405.6 V
        31,      # 0x0506 max cell temperature 31 °C
        24,      # 0x0507 min cell temperature 24 °C
        35,      # 0x0508 BMU temperature 35 °C
        0, 0, 0, 0,
        0x0004,  # 0x050D error bits
        0, 0,
        40500,   # 0x0510 output voltage: 405.0 V
        152,     # 0x0511 cycles
        0,
        148,     # 0x0513 discharge cycles
    ])  # fmt: skip
    assert decode(points, image, profile.max_gap) == {
        "soc": good(76.0),
        "cell_voltage_max": good(3.34),
        "cell_voltage_min": good(3.29),
        "soh": good(98.0),
        "rack_current": good(-12.3),
        "rack_voltage": good(405.6),
        "cell_temperature_max": good(31.0),
        "cell_temperature_min": good(24.0),
        "raw.bmu_temperature": good(35.0),
        "alarm_word": good(4.0),
        "raw.output_voltage": good(405.0),
        "cycle_count": good(152.0),
        "raw.discharge_cycles": good(148.0),
    }


def offsets(model_id: int) -> dict[str, int]:
    """Register offset of each top-level point of a SunSpec model (from its published JSON), 0 = ID."""
    text = (resources.files("gateway") / "data" / "sunspec" / f"model_{model_id}.json").read_text("utf-8")
    out, at = {}, 0
    for p in json.loads(text)["group"]["points"]:
        out[p["name"]] = at
        at += int(p.get("size", 1))
    out["_length"] = at - 2
    return out


def test_sunspec_battery_models_1_and_802() -> None:
    base = 40000
    m1 = [0] * 68
    m1[0], m1[1] = 1, 66
    m1[2:4] = [0x4142, 0x4300]  # Mn "ABC" (string, two characters a register)
    o = offsets(802)
    m802 = [0] * (o["_length"] + 2)
    m802[0], m802[1] = 802, o["_length"]
    for name, word in {
        "SoC": 7550, "SoC_SF": 0xFFFE,        # 7550 x 10^-2 = 75.50 %
        "SoH": 97, "SoH_SF": 0,               # 97 %
        "V": 8123, "V_SF": 0xFFFF,            # 8123 x 10^-1 = 812.3 V
        "A": 0xFF06, "A_SF": 0xFFFF,          # int16 -250 x 10^-1 = -25.0 A
        "CellVMax": 3412, "CellVMin": 3298, "CellV_SF": 0xFFFD,   # 3.412 V, 3.298 V
        "AChaMax": 120, "ADisChaMax": 150, "AMax_SF": 0,          # 120 A, 150 A
        "AHRtg": 280, "AHRtg_SF": 0,          # 280 Ah
        "State": 3,                           # enum: "connected"
    }.items():  # fmt: skip
        m802[o[name]] = word
    words = [*sunspec.MARKER, *m1, *m802, sunspec.END, 0]
    image = Image()
    image.write("holding", base, words)

    async def read(address: int, count: int) -> list[int] | None:
        return image.read("holding", address, count)

    models = asyncio.run(sunspec.discover(read, [base]))
    assert models is not None and [m.model_id for m in models] == [1, 802]
    got = decode(sunspec.points_from_models(models, 1.0), image)
    assert got["soc"] == good(75.5)
    assert got["soh"] == good(97.0)
    assert got["rack_voltage"] == good(812.3)
    assert got["rack_current"] == good(-25.0)
    assert got["cell_voltage_max"] == good(3.412) and got["cell_voltage_min"] == good(3.298)
    assert got["charge_current_limit"] == good(120.0) and got["discharge_current_limit"] == good(150.0)
    assert got["capacity_full"] == good(280.0)
    assert got["bms_state"] == good("connected")
    assert got["manufacturer"] == good("ABC")
