"""The shipped Pylontech/SMA and Victron CAN profiles in a running gateway: a sender plays a short
hand-made sequence of each protocol's frames on python-can `virtual` buses, and the samples reach the
store, value for value."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import can
import pytest

from tests.can_support import LIBRARY_DBC, make_site, offline_samples, project_plan
from tests.integration.test_can_runtime import NO_HTTP, channel, metric, running, until
from tests.support.store import samples_by_quantity as stored_samples


def frame(frame_id: int, data: bytes) -> can.Message:
    return can.Message(arbitration_id=frame_id, data=data, is_extended_id=False)


LIMITS = frame(0x351, bytes([0x14, 0x02, 0xE8, 0x03, 0xF4, 0x01, 0xCC, 0x01]))  # 53.2 V, 100 A, 50 A, 46 V
PYLON = [
    LIMITS,
    frame(0x355, bytes([0x50, 0x00, 0x63, 0x00])),  # SoC 80 %, SoH 99 %
    frame(0x356, bytes([0x14, 0x15, 0xF2, 0xFE, 0x6B, 0x01])),  # 53.96 V, -27.0 A, 36.3 °C
    frame(0x359, bytes([0x82, 0x08, 0x10, 0x08, 0x03, 0x50, 0x4E])),  # protection/alarm bits, 3 modules
    frame(0x35C, bytes([0xC0, 0x00])),  # charge and discharge enabled
    frame(0x35E, b"PYLON   "),  # the name: a frame of the protocol the profile does not store
    frame(0x355, bytes([0x51, 0x00, 0x63, 0x00])),  # SoC 81 %
    frame(0x356, bytes([0x18, 0x15, 0xC8, 0x00, 0x6B, 0x01])),  # 54.0 V, +20.0 A (charging)
    frame(0x35C, bytes([0x38, 0x00])),  # force charge I and II, full charge; charge/discharge disabled
]
VICTRON = [
    LIMITS,
    frame(0x355, bytes([0x55, 0x00, 0x60, 0x00, 0xE5, 0x21])),  # 85 %, 96 %, 86.77 %
    frame(0x356, bytes([0x14, 0x15, 0xF2, 0xFE, 0x6B, 0x01])),
    frame(0x35A, bytes([0xA9, 0x02, 0x80, 0x03, 0x04, 0x00, 0x00, 0x08])),  # 2-bit alarm/warning fields
    frame(0x35F, bytes([0x4C, 0x49, 0x01, 0x03, 0x3C, 0x02])),  # model, firmware, 572 Ah online
    frame(0x370, b"GW-TEST "),  # the BMS name: not stored
    frame(0x372, bytes([0x04, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00])),  # modules 4 ok, 1, 0, 1 offline
    frame(0x373, bytes([0xE4, 0x0C, 0x1C, 0x0D, 0x2A, 0x01, 0x34, 0x01])),  # 3.3 V, 3.356 V, 298 K, 308 K
]
STORED = {0x35E, 0x370}  # ids the profiles leave out (text)


async def test_pylontech_and_victron_sequences_reach_the_store(tmp_path: Path) -> None:
    ch_pylon, ch_victron = channel(), channel()
    cfg = make_site(
        tmp_path,
        f"  - {{type: can, name: pylon, profile: can-pylontech-sma, interface: virtual, channel: {ch_pylon}}}\n"
        f"  - {{type: can, name: victron, profile: can-victron-bms, interface: virtual, channel: {ch_victron}}}\n",
        extra=NO_HTTP,
    )
    async with running(cfg):
        for ch, frames in ((ch_pylon, PYLON), (ch_victron, VICTRON)):
            tx = can.Bus(interface="virtual", channel=ch)
            try:
                for f in frames:
                    tx.send(f)
            finally:
                tx.shutdown()
        for ch, rack, frames in ((ch_pylon, "pylon", PYLON), (ch_victron, "victron", VICTRON)):
            mapped = sum(f.arbitration_id not in STORED for f in frames)
            await until(lambda ch=ch, rack=rack, n=mapped: metric(
                "bms_gateway_can_decoded_total", bus=f"virtual:{ch}", rack=rack) >= n)  # fmt: skip
    store = tmp_path / "store.db"
    for rack, profile, dbc, frames in (
        ("pylon", "can-pylontech-sma", "pylontech-sma-can.dbc", PYLON),
        ("victron", "can-victron-bms", "victron-can-bms.dbc", VICTRON),
    ):
        stored = stored_samples(store, rack=rack)
        fresh = Counter({k: n for k, n in stored.items() if k[2] in ("good", "missing")})
        # every sample of every frame, as the gateway's own decoding of those frames gives it, nothing extra
        assert fresh == offline_samples(project_plan(profile, LIBRARY_DBC / dbc, rack=rack), frames), rack
    # and the values the documents give, computed by hand
    pylon = stored_samples(store, rack="pylon")
    for key in [
        ("soc", 80.0), ("soc", 81.0), ("rack_voltage", 53.96), ("rack_voltage", 54.0),
        ("rack_current", -27.0), ("rack_current", 20.0), ("charge_voltage_limit", 53.2),
        ("discharge_current_limit", 50.0), ("alarm.cell_overvoltage", 1), ("alarm.system_error", 1),
        ("warning.cell_undertemperature", 1), ("raw.module_count", 3.0), ("raw.charge_enable", "enabled"),
        ("raw.charge_enable", "disabled"), ("raw.force_charge_request_2", "requested"),
    ]:  # fmt: skip
        assert pylon[(*key, "good", None, None)] == 1, key
    assert pylon[("soh", 99.0, "good", None, None)] == 2  # in both 0x355 frames
    victron = stored_samples(store, rack="victron")
    for key in [
        ("soc", 85.0), ("soh", 96.0), ("alarm.general", 1), ("raw.general_alarm", "active"),
        ("warning.battery_overvoltage", 1), ("alarm.battery_overvoltage", 0), ("raw.system_status", "online"),
        ("cell_voltage_min", 3.3), ("cell_voltage_max", 3.356), ("raw.modules_ok", 4.0),
        ("raw.online_capacity", 572.0),
    ]:  # fmt: skip
        assert victron[(*key, "good", None, None)] == 1, key
    assert victron[("alarm.contactor", None, "missing", None, None)] == 1  # "not supported": no value
    temps = [k.value for k in victron if k.quantity == "cell_temperature_min" and k.quality == "good"]
    assert temps == [pytest.approx(24.85)]  # 298 K
