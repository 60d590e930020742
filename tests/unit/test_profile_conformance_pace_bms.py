"""Conformance of the shipped profile modbus-rtu-pace-bms.yaml with "PACE BMS Modbus Protocol for RS485" V1.3
(2017-06-27): a register image written by hand from the document's section 4.1 and its bit tables,
decoded through the gateway's own read plan and block decoders, against values worked out by hand.

Holding registers (function 03), decimal addresses as in the document:

    0000 current        INT16  10 mA   positive charging, negative discharging
    0001 pack voltage   UINT16 10 mV
    0002 SOC, 0003 SOH  UINT8 in the low byte (LSB; the MSB is 00H), %
    0004 remain, 0005 full, 0006 design capacity  UINT16 10 mAh
    0007 cycle count    UINT16
    0009 warning flag, 0010 protection flag, 0011 status/fault flag, 0012 balance status
    0015-0030 cell voltage 1..16  UINT16 mV
    0031-0034 cell temperature 1..4, 0035 MOSFET, 0036 environment  INT16 0.1 degC
    0150-0159 version, 0160-0169 model SN, 0170-0179 pack SN  ASCII, two characters a register
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.model import Quality, Sample, Value
from gateway.sources.modbus.cycle import Cycle, keys_of
from gateway.sources.modbus.decode import BlockDecoder
from gateway.sources.modbus.plan import Block, compile_points, plan_reads, unreadable_ranges
from gateway.sources.modbus.validate import load_modbus_profile

ROOT = Path(__file__).resolve().parents[2]
PROFILE = ROOT / "gateway" / "data" / "profiles" / "modbus-rtu-pace-bms.yaml"

# A pack discharging at 12.5 A, a cell over its warning and protection voltage, the MOSFETs hot, one
# temperature sensor failed, cells 3 and 16 balancing. Every word as the BMS sends it.
IMAGE: dict[int, int] = {
    0: 0xFB1E,  # current: -1250 x 10 mA = -12.50 A (discharging; two's complement)
    1: 0x14C0,  # pack voltage: 5312 x 10 mV = 53.12 V
    2: 0x0057,  # SOC 87 %
    3: 0x0062,  # SOH 98 %
    4: 0x214E,  # remaining: 8526 x 10 mAh = 85.26 Ah
    5: 0x2648,  # full: 9800 x 10 mAh = 98.00 Ah
    6: 0x2710,  # design: 10000 x 10 mAh = 100.00 Ah
    7: 0x0098,  # 152 cycles
    8: 0xFFFF,  # reserved: whatever it holds, nothing is made of it
    9: 0x4001,  # warning flag: BIT0 cell overvoltage, BIT14 MOSFET high temperature
    10: 0x1001,  # protection flag: BIT0 cell overvoltage, BIT12 MOSFET high temperature
    11: 0x0E04,  # status/fault: BIT2 temperature sensor fault, BIT9 discharging, BIT10/11 both MOSFETs on
    12: 0x8004,  # balance status: cells 3 and 16
    13: 0xFFFF,  # reserved
    14: 0xFFFF,  # reserved
    # cell voltages 1..16, mV
    15: 0x0CF0,  # 3312
    16: 0x0CF3,  # 3315
    17: 0x0CED,  # 3309
    18: 0x0CF8,  # 3320
    19: 0x0CEF,  # 3311
    20: 0x0CF6,  # 3318
    21: 0x0CEE,  # 3310
    22: 0x0CF1,  # 3313
    23: 0x0CF4,  # 3316
    24: 0x0CEC,  # 3308
    25: 0x0CF2,  # 3314
    26: 0x0CF5,  # 3317
    27: 0x0CF0,  # 3312
    28: 0x0CF7,  # 3319
    29: 0x0CEF,  # 3311
    30: 0x0D11,  # 3345 (over the cell-overvoltage warning set above)
    # temperatures, 0.1 degC, signed
    31: 0x00FD,  # 25.3
    32: 0x00F8,  # 24.8
    33: 0xFFCC,  # -5.2
    34: 0x0104,  # 26.0
    35: 0x01A1,  # MOSFET 41.7
    36: 0xFFDD,  # environment -3.5
    # 0150 version information "P16S100A-1B470-4.07"
    150: 0x5031, 151: 0x3653, 152: 0x3130, 153: 0x3041, 154: 0x2D31,
    155: 0x4234, 156: 0x3730, 157: 0x2D34, 158: 0x2E30, 159: 0x3700,
    # 0160 model SN "PACE P16S100A"
    160: 0x5041, 161: 0x4345, 162: 0x2050, 163: 0x3136, 164: 0x5331, 165: 0x3030, 166: 0x4100,
    # 0170 pack SN "SOK48100-2309-0042"
    170: 0x534F, 171: 0x4B34, 172: 0x3831, 173: 0x3030, 174: 0x2D32,
    175: 0x3330, 176: 0x392D, 177: 0x3030, 178: 0x3432, 179: 0x0000,
}  # fmt: skip

Key = tuple[str, int | None, int | None]  # quantity, module, cell

WARNINGS = {  # warning flag, description-1 (BIT6 and BIT7 reserved)
    0: "cell_overvoltage", 1: "cell_undervoltage", 2: "pack_overvoltage", 3: "pack_undervoltage",
    4: "charge_overcurrent", 5: "discharge_overcurrent", 8: "charge_overtemperature",
    9: "discharge_overtemperature", 10: "charge_undertemperature", 11: "discharge_undertemperature",
    12: "ambient_overtemperature", 13: "ambient_undertemperature", 14: "mosfet_overtemperature", 15: "soc_low",
}  # fmt: skip
PROTECTIONS = {  # protection flag, description-2 (BIT15 reserved)
    0: "cell_overvoltage", 1: "cell_undervoltage", 2: "pack_overvoltage", 3: "pack_undervoltage",
    4: "charge_overcurrent", 5: "discharge_overcurrent", 6: "short_circuit", 7: "charger_overvoltage",
    8: "charge_overtemperature", 9: "discharge_overtemperature", 10: "charge_undertemperature",
    11: "discharge_undertemperature", 12: "mosfet_overtemperature", 13: "ambient_overtemperature",
    14: "ambient_undertemperature",
}  # fmt: skip
FAULTS = {  # status/fault flag, description-3, the fault half and BIT14
    0: "charge_mosfet_fault", 1: "discharge_mosfet_fault", 2: "temperature_sensor_fault", 4: "cell_fault",
    5: "sampling_communication_fault", 14: "charger_reversed",
}  # fmt: skip

CELLS_MV = [3312, 3315, 3309, 3320, 3311, 3318, 3310, 3313, 3316, 3308, 3314, 3317, 3312, 3319, 3311, 3345]


def expected() -> dict[Key, tuple[Value, str]]:
    """Every sample the image must give, worked out by hand from the comments above."""
    good = Quality.GOOD
    out: dict[Key, tuple[Value, str]] = {
        ("rack_current", None, None): (-12.5, good),
        ("rack_voltage", None, None): (53.12, good),
        ("soc", None, None): (87, good),
        ("soh", None, None): (98, good),
        ("capacity_remaining", None, None): (85.26, good),
        ("capacity_full", None, None): (98.0, good),
        ("raw.capacity_design", None, None): (100.0, good),
        ("cycle_count", None, None): (152, good),
        ("warning_word", None, None): (0x4001, good),
        ("alarm_word", None, None): (0x1001, good),
        ("bms_state", None, None): ("discharging", good),
        ("raw.charge_mosfet", None, None): ("on", good),
        ("raw.discharge_mosfet", None, None): ("on", good),
        ("raw.charge_limiter", None, None): ("off", good),
        ("raw.heater", None, None): ("off", good),
        ("raw.mosfet_temperature", None, None): (41.7, good),
        ("raw.ambient_temperature", None, None): (-3.5, good),
        ("firmware_version", None, None): ("P16S100A-1B470-4.07", good),
        ("model", None, None): ("PACE P16S100A", good),
        ("serial_number", None, None): ("SOK48100-2309-0042", good),
    }
    for bit, name in WARNINGS.items():
        out[(f"warning.{name}", None, None)] = (int(bit in (0, 14)), good)
    for bit, name in PROTECTIONS.items():
        out[(f"alarm.{name}", None, None)] = (int(bit in (0, 12)), good)
    for bit, name in FAULTS.items():
        out[(f"alarm.{name}", None, None)] = (int(bit == 2), good)
    for cell in range(1, 17):
        out[("cell_balancing", None, cell)] = (int(cell in (3, 16)), good)
        out[("cell_voltage", None, cell)] = (CELLS_MV[cell - 1] / 1000, good)
    for sensor, celsius in enumerate([25.3, 24.8, -5.2, 26.0], start=1):
        out[("cell_temperature", None, sensor)] = (celsius, good)
    return out


def decode(image: dict[int, int], rack: str = "pack-1") -> list[Sample]:
    """The samples of one poll cycle over `image`: the profile's read plan, each block's words as a
    device answers them, the block decoders the poller uses, one batch."""
    profile = load_modbus_profile(PROFILE)
    points, problems = compile_points(profile)
    assert not problems
    blocks = plan_reads(
        points,
        max_registers=profile.max_registers,
        max_bits=profile.max_bits,
        max_gap=profile.max_gap,
        unreadable=unreadable_ranges(profile),
    )
    cycle = Cycle()
    for b in blocks:
        assert b.table == "holding"  # function 03 only, as the document says
        cycle.decoded(BlockDecoder(b), [image.get(a, 0) for a in range(b.start, b.start + b.count)], 1)
    return cycle.batch(rack, keys_of(cycle.decoders, rack), None, 0).samples()


def test_the_profile_names_its_document_and_version() -> None:
    profile = load_modbus_profile(PROFILE)
    head = PROFILE.read_text(encoding="utf-8").split("\nprotocol:")[0]
    for text in (head, profile.description):
        assert "PACE BMS Modbus Protocol for RS485" in " ".join(text.split())
        assert "V1.3" in text and "2017-06-27" in text


def test_the_hand_made_image_decodes_to_the_documented_values() -> None:
    samples = decode(IMAGE)
    got = {(s.quantity, s.module, s.cell): (s.value, s.quality) for s in samples}
    assert len(got) == len(samples)  # one sample per key
    assert got == expected()
    units = {s.quantity: s.unit for s in samples}
    assert units["rack_current"] == "A" and units["rack_voltage"] == "V" and units["cell_voltage"] == "V"
    assert units["capacity_remaining"] == "Ah" and units["raw.capacity_design"] == "Ah"
    assert units["cell_temperature"] == "°C" and units["raw.mosfet_temperature"] == "°C"


def test_the_blocks_are_the_two_documented_ranges() -> None:
    profile = load_modbus_profile(PROFILE)
    points, _ = compile_points(profile)
    blocks: list[Block] = plan_reads(points, max_gap=profile.max_gap)
    assert [(b.table, b.start, b.count) for b in blocks] == [("holding", 0, 37), ("holding", 150, 30)]


@pytest.mark.parametrize(
    ("word", "amps"),
    [
        (0xFB1E, -12.5),  # discharging
        (0x04E2, 12.5),  # charging: positive, the gateway's convention without `invert`
        (0x0000, 0.0),
        (0x8000, -327.68),  # the most negative the register holds
        (0x7FFF, 327.67),
    ],
)
def test_the_current_is_signed_in_10_ma(word: int, amps: float) -> None:
    by = {s.quantity: s.value for s in decode({**IMAGE, 0: word})}
    assert by["rack_current"] == amps


def test_every_flag_bit_lands_on_its_documented_name() -> None:
    """One bit at a time in each flag register: exactly the documented name goes to 1."""
    for address, names, prefix in ((9, WARNINGS, "warning."), (10, PROTECTIONS, "alarm."), (11, FAULTS, "alarm.")):
        for bit, name in names.items():
            image = {**IMAGE, 9: 0, 10: 0, 11: 0, 12: 0, address: 1 << bit}
            on = {s.quantity for s in decode(image) if s.quantity.startswith(("alarm.", "warning.")) and s.value == 1}
            assert on == {prefix + name}, (address, bit)


def test_balance_bits_are_cells_one_to_sixteen() -> None:
    for bit in range(16):
        samples = decode({**IMAGE, 12: 1 << bit})
        assert [s.cell for s in samples if s.quantity == "cell_balancing" and s.value == 1] == [bit + 1]


def test_status_bits_are_states() -> None:
    by = {s.quantity: (s.value, s.quality) for s in decode({**IMAGE, 11: 0x9500})}  # BIT8, BIT10, BIT12, BIT15
    assert by["bms_state"] == ("charging", Quality.GOOD)
    assert (by["raw.charge_mosfet"], by["raw.discharge_mosfet"]) == (("on", Quality.GOOD), ("off", Quality.GOOD))
    assert (by["raw.charge_limiter"], by["raw.heater"]) == (("on", Quality.GOOD), ("on", Quality.GOOD))
    assert by["alarm.charger_reversed"] == (0, Quality.GOOD)
    assert {s.quantity: s.value for s in decode({**IMAGE, 11: 0x0000})}["bms_state"] == "idle"
    # charging and discharging at once is no state the document gives: unknown, quality bad
    assert {s.quantity: (s.value, s.quality) for s in decode({**IMAGE, 11: 0x0300})}["bms_state"] == (
        "unknown(3)",
        Quality.BAD,
    )


def test_soc_and_soh_are_the_low_byte() -> None:
    """UINT8 in the LSB: a high byte that is not the documented 00H does not change the value."""
    by = {s.quantity: s.value for s in decode({**IMAGE, 2: 0xA557, 3: 0x0162})}
    assert (by["soc"], by["soh"]) == (87, 98)
