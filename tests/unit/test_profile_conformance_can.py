"""Conformance of the shipped CAN profiles: frames written out byte by byte from each protocol
document, decoded through the gateway's own CAN path (profile + DBC -> RackPlan -> samples), against
values computed by hand from the document's layout (little-endian, scale, sign, unit)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.model import Quality
from gateway.sources.can.dbcload import load_dbc
from gateway.sources.can.plan import RackPlan
from tests.can_support import FIX, LIBRARY, LIBRARY_DBC, PROFILES, project_plan

PYLON_DBC = LIBRARY_DBC / "pylontech-sma-can.dbc"
VICTRON_DBC = LIBRARY_DBC / "victron-can-bms.dbc"

Decoded = dict[str, tuple[Any, Quality]]


def decode(plan: RackPlan, frame_id: int, data: bytes) -> Decoded:
    """quantity -> (value, quality) of one frame; the frame must decode without a counted reason."""
    samples, reason = plan.decode_frame(frame_id, False, data, 1)
    assert reason == "", (hex(frame_id), reason)
    out: Decoded = {}
    for s in samples:
        assert s.module is None and s.cell is None  # these protocols are pack-level only
        assert s.quantity not in out, s.quantity
        out[s.quantity] = (s.value, s.quality)
    return out


def good(value: Any) -> tuple[Any, Quality]:
    return (value, Quality.GOOD)


def close(value: float) -> tuple[Any, Quality]:
    return (pytest.approx(value, abs=1e-9), Quality.GOOD)


# ---------------------------------------------------------------- Pylontech / SMA-compatible (V1.2)


@pytest.fixture(scope="module")
def pylon() -> RackPlan:
    return project_plan("can-pylontech-sma", PYLON_DBC)


def test_pylon_every_document_frame_is_in_the_dbc_with_its_length() -> None:
    db = load_dbc(PYLON_DBC).db
    lengths = {m.frame_id: m.length for m in db.messages}
    # the document's frames: the inverter's reply, and the six the BMS sends once a second
    assert lengths == {0x305: 8, 0x351: 8, 0x355: 4, 0x356: 6, 0x359: 7, 0x35C: 2, 0x35E: 8}
    assert all(not m.is_extended_frame for m in db.messages)  # 11-bit ids
    assert {m.frame_id: m.cycle_time for m in db.messages if m.cycle_time} == dict.fromkeys(
        (0x351, 0x355, 0x356, 0x359, 0x35C, 0x35E), 1000
    )


def test_pylon_limits_0x351(pylon: RackPlan) -> None:
    # 0x0214 = 532 -> 53.2 V; 0x03E8 = 1000 -> 100.0 A; 0x01F4 = 500 -> 50.0 A; 0x01CC = 460 -> 46.0 V
    got = decode(pylon, 0x351, bytes([0x14, 0x02, 0xE8, 0x03, 0xF4, 0x01, 0xCC, 0x01]))
    assert got == {
        "charge_voltage_limit": close(53.2),
        "charge_current_limit": close(100.0),
        "discharge_current_limit": close(50.0),
        "discharge_voltage_limit": close(46.0),
    }


def test_pylon_soc_soh_0x355(pylon: RackPlan) -> None:
    assert decode(pylon, 0x355, bytes([0x50, 0x00, 0x63, 0x00])) == {"soc": good(80.0), "soh": good(99.0)}


def test_pylon_voltage_current_temperature_0x356(pylon: RackPlan) -> None:
    # 0x1514 = 5396 -> 53.96 V; 0xFEF2 = -270 (signed) -> -27.0 A, discharging; 0x016B = 363 -> 36.3 °C
    got = decode(pylon, 0x356, bytes([0x14, 0x15, 0xF2, 0xFE, 0x6B, 0x01]))
    assert got == {
        "rack_voltage": close(53.96),
        "rack_current": close(-27.0),
        "raw.battery_temperature": close(36.3),
    }
    # charging is positive: 0x00C8 = 200 -> +20.0 A; a temperature below zero: 0xFF9C = -100 -> -10.0 °C
    got = decode(pylon, 0x356, bytes([0x14, 0x15, 0xC8, 0x00, 0x9C, 0xFF]))
    assert got["rack_current"] == close(20.0) and got["raw.battery_temperature"] == close(-10.0)


def test_pylon_protection_and_alarm_bits_0x359(pylon: RackPlan) -> None:
    # byte 0 = 0x82: bit 1 cell/module over voltage, bit 7 discharge over current (protection)
    # byte 1 = 0x08: bit 3 system error (protection)
    # byte 2 = 0x10: bit 4 cell low temperature (alarm); byte 3 = 0x08: bit 3 internal communication fail
    # byte 4 = 3 modules; bytes 5-6 = "PN"
    got = decode(pylon, 0x359, bytes([0x82, 0x08, 0x10, 0x08, 0x03, 0x50, 0x4E]))
    set_bits = {q for q, (v, quality) in got.items() if q.startswith(("alarm.", "warning.")) and v == 1}
    assert set_bits == {
        "alarm.cell_overvoltage",
        "alarm.overcurrent_discharge",
        "alarm.system_error",
        "warning.cell_undertemperature",
        "warning.internal_communication",
    }
    assert {q for q in got if q.startswith("alarm.")} == {
        "alarm.cell_overvoltage", "alarm.cell_undervoltage", "alarm.cell_overtemperature",
        "alarm.cell_undertemperature", "alarm.overcurrent_discharge", "alarm.overcurrent_charge",
        "alarm.system_error",
    }  # fmt: skip
    assert got["alarm.cell_undervoltage"] == good(0) and got["warning.cell_overvoltage"] == good(0)
    assert got["raw.module_count"] == good(3.0)
    assert all(quality == Quality.GOOD for _, quality in got.values())
    # each bit alone: the other protection bits of byte 0 and byte 1, the other alarm bits
    for byte, bit, name in [
        (0, 2, "alarm.cell_undervoltage"),
        (0, 3, "alarm.cell_overtemperature"),
        (0, 4, "alarm.cell_undertemperature"),
        (1, 0, "alarm.overcurrent_charge"),
        (2, 1, "warning.cell_overvoltage"),
        (2, 2, "warning.cell_undervoltage"),
        (2, 3, "warning.cell_overtemperature"),
        (2, 7, "warning.overcurrent_discharge"),
        (3, 0, "warning.overcurrent_charge"),
    ]:
        data = bytearray([0, 0, 0, 0, 1, 0x50, 0x4E])
        data[byte] = 1 << bit
        got = decode(pylon, 0x359, bytes(data))
        assert {q for q, (v, _) in got.items() if "." in q and not q.startswith("raw.") and v == 1} == {name}


def test_pylon_requests_0x35c_are_states(pylon: RackPlan) -> None:
    # 0xC0: bit 7 charge enable, bit 6 discharge enable
    assert decode(pylon, 0x35C, bytes([0xC0, 0x00])) == {
        "raw.charge_enable": good("enabled"),
        "raw.discharge_enable": good("enabled"),
        "raw.force_charge_request_1": good("none"),
        "raw.force_charge_request_2": good("none"),
        "raw.full_charge_request": good("none"),
    }
    # 0x38: bit 5 force charge I, bit 4 force charge II, bit 3 full charge; charging and discharging off
    assert decode(pylon, 0x35C, bytes([0x38, 0x00])) == {
        "raw.charge_enable": good("disabled"),
        "raw.discharge_enable": good("disabled"),
        "raw.force_charge_request_1": good("requested"),
        "raw.force_charge_request_2": good("requested"),
        "raw.full_charge_request": good("requested"),
    }


def test_pylon_name_frame_is_known_but_not_stored(pylon: RackPlan) -> None:
    # "PYLON   ": a frame of the protocol (never an unknown id), that yields no sample
    samples, reason = pylon.decode_frame(0x35E, False, b"PYLON   ", 1)
    assert (samples, reason) == ([], "unknown_id")  # not mapped, so not in the rack's plan
    assert load_dbc(PYLON_DBC).db.decode_message(0x35E, b"PYLON   ")["ManufacturerName"] == int.from_bytes(
        b"PYLON   ", "little"
    )


# ---------------------------------------------------------------- Victron-compatible


@pytest.fixture(scope="module")
def victron() -> RackPlan:
    return project_plan("can-victron-bms", VICTRON_DBC)


def test_victron_every_document_frame_is_in_the_dbc_with_its_length() -> None:
    db = load_dbc(VICTRON_DBC).db
    lengths = {m.frame_id: m.length for m in db.messages}
    assert lengths == {
        0x351: 8, 0x355: 6, 0x356: 6, 0x35A: 8, 0x35E: 8, 0x35F: 6,
        0x370: 8, 0x371: 8, 0x372: 8, 0x373: 8, 0x374: 8, 0x375: 8, 0x376: 8, 0x377: 8,
    }  # fmt: skip
    # the required frames are supervised at about once a second; the optional ones are not
    assert {m.frame_id for m in db.messages if m.cycle_time} == {0x351, 0x355, 0x356, 0x35A}
    alarms = db.get_message_by_frame_id(0x35A)
    pairs = [s for s in alarms.signals]
    assert len(pairs) == 27 and all(s.length == 2 and s.start % 2 == 0 for s in pairs)
    assert all(dict(s.choices or {}).get(1) in ("active", "offline") for s in pairs)


def test_victron_shared_frames_decode_as_in_the_sma_set(victron: RackPlan) -> None:
    got = decode(victron, 0x351, bytes([0x14, 0x02, 0xE8, 0x03, 0xF4, 0x01, 0xCC, 0x01]))
    assert got["charge_voltage_limit"] == close(53.2) and got["discharge_voltage_limit"] == close(46.0)
    got = decode(victron, 0x356, bytes([0x14, 0x15, 0xF2, 0xFE, 0x6B, 0x01]))
    assert got == {
        "rack_voltage": close(53.96),
        "rack_current": close(-27.0),
        "raw.battery_temperature": close(36.3),
    }
    # 0x355: SoC 0x55 = 85 %, SoH 0x60 = 96 %, high-resolution SoC 0x21E5 = 8677 -> 86.77 %
    got = decode(victron, 0x355, bytes([0x55, 0x00, 0x60, 0x00, 0xE5, 0x21]))
    assert got == {"soc": good(85.0), "soh": good(96.0), "raw.soc_high_resolution": close(86.77)}


def test_victron_two_bit_alarm_fields_0x35a(victron: RackPlan) -> None:
    # byte 0 = 0xA9 = 10 10 10 01: general alarm 01 (active), high V 10, low V 10, high T 10 (ok)
    # byte 1 = 0x02: low temperature 10 (ok); the rest 00 (not supported)
    # byte 2 = 0x80: BMS internal 10 (ok); byte 3 = 0x03: cell imbalance 11 (reserved)
    # byte 4 = 0x04: high voltage warning 01 (active); byte 7 = 0x08: system status 10 (online)
    got = decode(victron, 0x35A, bytes([0xA9, 0x02, 0x80, 0x03, 0x04, 0x00, 0x00, 0x08]))
    assert got["raw.general_alarm"] == good("active") and got["alarm.general"] == good(1)
    assert got["raw.high_voltage_alarm"] == good("ok") and got["alarm.battery_overvoltage"] == good(0)
    assert got["raw.low_voltage_alarm"] == good("ok") and got["alarm.battery_undervoltage"] == good(0)
    assert got["raw.high_temperature_alarm"] == good("ok") and got["alarm.overtemperature"] == good(0)
    assert got["raw.low_temperature_alarm"] == good("ok") and got["alarm.undertemperature"] == good(0)
    assert got["raw.bms_internal_alarm"] == good("ok") and got["alarm.bms_internal"] == good(0)
    assert got["raw.high_voltage_warning"] == good("active") and got["warning.battery_overvoltage"] == good(1)
    assert got["raw.system_status"] == good("online")
    # not supported (00) and reserved (11): no value, quality missing, for the state and its bit
    for q in ("raw.contactor_alarm", "alarm.contactor", "raw.cell_imbalance_alarm", "alarm.cell_imbalance",
              "raw.general_warning", "warning.general", "warning.short_circuit"):  # fmt: skip
        assert got[q] == (None, Quality.MISSING), q
    fields = [q for q in got if q.startswith("raw.") and q != "raw.system_status"]
    assert len(fields) == 26  # 13 alarms and 13 warnings, each with its alarm./warning. bit
    assert sum(q.startswith(("alarm.", "warning.")) for q in got) == 26
    # the byte order of a field's two bits: 0x01 in byte 2 is the high charge current alarm, active
    got = decode(victron, 0x35A, bytes([0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x04]))
    assert got["alarm.overcurrent_charge"] == good(1) and got["raw.system_status"] == good("offline")


def test_victron_battery_info_modules_and_cell_extremes(victron: RackPlan) -> None:
    # 0x35F: model 0x494C, firmware 0x0301, online capacity 0x023C = 572 Ah
    got = decode(victron, 0x35F, bytes([0x4C, 0x49, 0x01, 0x03, 0x3C, 0x02]))
    assert got == {
        "raw.battery_model": good(18764.0),
        "raw.firmware_version": good(769.0),
        "raw.online_capacity": good(572.0),
    }
    # 0x372: 4 modules ok, 1 blocking charge, 0 blocking discharge, 1 offline
    got = decode(victron, 0x372, bytes([0x04, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00]))
    assert got == {
        "raw.modules_ok": good(4.0),
        "raw.modules_blocking_charge": good(1.0),
        "raw.modules_blocking_discharge": good(0.0),
        "raw.modules_offline": good(1.0),
    }
    # 0x373: 0x0CE4 = 3300 mV -> 3.3 V, 0x0D1C = 3356 mV -> 3.356 V, 0x012A = 298 K -> 24.85 °C,
    # 0x0134 = 308 K -> 34.85 °C
    got = decode(victron, 0x373, bytes([0xE4, 0x0C, 0x1C, 0x0D, 0x2A, 0x01, 0x34, 0x01]))
    assert got == {
        "cell_voltage_min": good(3.3),
        "cell_voltage_max": good(3.356),
        "cell_temperature_min": close(24.85),
        "cell_temperature_max": close(34.85),
    }
    units = {s.quantity: s.unit for s in victron.decode_frame(0x373, False, bytes(8), 1)[0]}
    assert units == dict.fromkeys(("cell_voltage_min", "cell_voltage_max"), "V") | dict.fromkeys(
        ("cell_temperature_min", "cell_temperature_max"), "°C"
    )


def test_victron_short_soc_frame_is_counted_not_misread(victron: RackPlan) -> None:
    # a BMS that sends 0x355 without the high-resolution SoC (4 bytes): counted, values bad, never wrong
    samples, reason = victron.decode_frame(0x355, False, bytes([0x55, 0x00, 0x60, 0x00]), 1)
    assert reason == "short_frame"
    assert {(s.quantity, s.value, s.quality) for s in samples} == {
        (q, None, Quality.BAD) for q in ("soc", "soh", "raw.soc_high_resolution")
    }


# ---------------------------------------------------------------- foxBMS 2 (kept profile)


def test_foxbms_limits_and_temperature_extremes_from_hand_made_frames() -> None:
    plan = project_plan("can-foxbms", FIX / "foxbms.dbc")
    # f_PackLimits (0x232), big-endian (Motorola) fields of foxBMS's DBC:
    # MaximumDischargeCurrent 12 bits from bit 7: byte 0 and the high nibble of byte 1 = 0x190 = 400 -> 100.0 A
    # MaximumChargeCurrent 12 bits from bit 11: the low nibble of byte 1 and byte 2 = 0x0C8 = 200 -> 50.0 A
    # MaximumBatteryVoltage byte 6 = 100 x 4 V = 400 V; MinimumBatteryVoltage byte 7 = 75 x 4 V = 300 V
    got = decode(plan, 0x232, bytes([0x19, 0x00, 0xC8, 0x00, 0x00, 0x00, 0x64, 0x4B]))
    assert got == {
        "charge_current_limit": good(50.0),
        "discharge_current_limit": good(100.0),
        "charge_voltage_limit": good(400.0),
        "discharge_voltage_limit": good(300.0),
    }
    # f_PackMinMaxCellTemperature (0x230): signed bytes 4 (minimum) and 5 (maximum): 0xEC = -20, 0x23 = 35 °C
    got = decode(plan, 0x230, bytes([0x00, 0x00, 0x00, 0x00, 0xEC, 0x23, 0x00, 0x00]))
    assert got == {"cell_temperature_min": good(-20.0), "cell_temperature_max": good(35.0)}


def test_every_shipped_profile_names_its_document() -> None:
    for path in sorted([*LIBRARY.glob("*.yaml"), *PROFILES.glob("*.yaml")]):
        head = path.read_text(encoding="utf-8").splitlines()[:3]
        assert any(line.startswith("# source: ") for line in head), path.name
