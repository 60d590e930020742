"""CAN frames that carry the device's time: `device_time:` stamps the samples of its own message's frames
(through the real decode path: DBC, compiled plan, the bus source's window, the rack's batch)."""

from __future__ import annotations

from typing import Any

import cantools
import numpy as np
import pytest
from structlog.testing import capture_logs

from gateway.config.yamlpos import to_plain
from gateway.sources.can.config import CanProfile, CanSourceConfig
from gateway.sources.can.devicetime import INVALID_TIME, TimeRule, device_times
from gateway.sources.can.plan import PlanProblem, RackPlan, compile_rack
from gateway.sources.can.rack import Rack
from gateway.sources.can.source import CanBusSource
from tests.can_support import FIX

DBC = FIX / "device-time.dbc"
DB: Any = cantools.database.load_file(DBC)
T0 = 1_790_000_000  # 2026-09-21, seconds since 1970
Y2000 = 946_684_800

PROFILE: dict[str, Any] = {
    "protocol": "can",
    "dbc": "device-time.dbc",
    "points": [
        {"signal": "PackVoltage", "quantity": "rack_voltage"},
        {"signal": "PackSoC", "quantity": "soc"},
        {"signal": "TempMax", "quantity": "cell_temperature_max"},
        {"signal": "ChargeLimit", "quantity": "charge_current_limit"},
    ],
    "device_time": [
        {"message": "PackStatus", "signal": "DeviceTime", "unit": "s", "epoch": "unix"},
        {"signal": "TimeMs", "unit": "ms", "epoch": "2000"},
    ],
}


def plan_of(profile: dict[str, Any], rack: str = "r1") -> RackPlan | list[PlanProblem]:
    return compile_rack(CanProfile.model_validate(to_plain(profile)), DB, rack=rack)


def plan() -> RackPlan:
    p = plan_of(PROFILE)
    assert isinstance(p, RackPlan), p
    return p


def frame(name: str, **values: float) -> tuple[int, bytes]:
    msg = DB.get_message_by_name(name)
    full: dict[str, float] = {s.name: 0 for s in msg.signals}
    full.update(values)
    return msg.frame_id, bytes(msg.encode(full))


# -- the pure rule -------------------------------------------------------------------------------------


def test_device_times_units_epochs_and_invalid_values() -> None:
    ok = np.ones(5, dtype=bool)
    s = device_times(np.array([T0, T0 + 0.25, 0, 2.0**32 - 1, np.nan]), ok, TimeRule("t", 10**9, 0))
    assert s.ns.tolist() == [T0 * 10**9, T0 * 10**9 + 250_000_000, 0, 0, 0]
    assert (s.valid, s.invalid, s.example) == (2, 3, 0.0)
    ms = device_times(np.array([(T0 - Y2000) * 1000.0 + 7]), ok[:1], TimeRule("t", 10**6, Y2000 * 10**9))
    assert ms.ns.tolist() == [T0 * 10**9 + 7_000_000] and ms.invalid == 0
    us = device_times(np.array([T0 * 1e6 + 3]), ok[:1], TimeRule("t", 10**3, 0))
    assert us.ns.tolist() == [T0 * 10**9 + 3000]
    short = device_times(np.array([T0, 0.0]), np.array([True, False]), TimeRule("t", 10**9, 0))
    assert short.ns.tolist() == [T0 * 10**9, 0] and short.invalid == 0  # a short frame is counted as short


# -- one frame (the `can decode` path) ---------------------------------------------------------------------


def test_samples_of_the_timed_message_carry_its_time_and_no_other() -> None:
    p = plan()
    aid, data = frame("PackStatus", PackVoltage=800.0, PackSoC=50, DeviceTime=T0)
    samples, reason = p.decode_frame(aid, False, data, 5)
    assert reason == ""
    assert {s.quantity: s.device_ts for s in samples} == {"rack_voltage": T0 * 10**9, "soc": T0 * 10**9}
    assert all(s.ts == 5 for s in samples)
    aid, data = frame("PackTemps", TempMax=30, TimeMs=(T0 - Y2000) * 1000 + 500)
    samples, _ = p.decode_frame(aid, False, data, 5)
    assert [s.device_ts for s in samples] == [T0 * 10**9 + 500_000_000]
    aid, data = frame("PackLimits", ChargeLimit=100, LimitsTime=T0)  # a time signal no entry names
    samples, _ = p.decode_frame(aid, False, data, 5)
    assert [s.device_ts for s in samples] == [None]


def test_an_invalid_time_gives_no_device_time_and_is_counted() -> None:
    aid, data = frame("PackStatus", PackVoltage=800.0, PackSoC=50, DeviceTime=0xFFFFFFFF)
    samples, reason = plan().decode_frame(aid, False, data, 5)
    assert reason == INVALID_TIME
    assert [(s.quantity, s.value, s.device_ts) for s in samples] == [("rack_voltage", 800.0, None), ("soc", 50.0, None)]


# -- a window through the bus source and the rack ------------------------------------------------------------


def source() -> tuple[CanBusSource, Rack]:
    cfg = CanSourceConfig(name="r1", profile="p", interface="virtual", channel="unused")
    rack = Rack(cfg, plan(), 5.0)
    return CanBusSource("r1", [cfg], [rack]), rack


def raw_frame(name: str, **values: float) -> tuple[int, bool, bool, bool, bytes, int, bool, float]:
    aid, data = frame(name, **values)
    return aid, False, False, False, data, len(data), False, 0.0


def test_a_window_batch_has_each_points_device_time() -> None:
    src, rack = source()
    frames = [
        raw_frame("PackStatus", PackVoltage=800.0, PackSoC=50, DeviceTime=T0),
        raw_frame("PackLimits", ChargeLimit=100),
        raw_frame("PackStatus", PackVoltage=801.0, PackSoC=50, DeviceTime=T0 + 1),
        raw_frame("PackStatus", PackVoltage=802.0, PackSoC=50, DeviceTime=0),  # invalid: before 2000
        raw_frame("PackTemps", TempMax=30, TimeMs=(T0 - Y2000) * 1000 + 250),
    ]
    src._decode(frames)  # type: ignore[arg-type]
    (batch,) = rack.take(0, flush=True)
    got = sorted((s.quantity, s.value, s.device_ts or 0) for s in batch.samples())
    t = T0 * 10**9
    assert got == sorted([
        ("rack_voltage", 800.0, t), ("soc", 50.0, t), ("rack_voltage", 801.0, t + 10**9), ("soc", 50.0, t + 10**9),
        ("rack_voltage", 802.0, 0), ("soc", 50.0, 0), ("charge_current_limit", 100.0, 0),
        ("cell_temperature_max", 30.0, t + 250_000_000),
    ])  # fmt: skip
    assert batch.device_ts is not None and batch.device_ts.dtype == np.int64


def test_a_window_without_device_time_has_no_column() -> None:
    src, rack = source()
    src._decode([raw_frame("PackLimits", ChargeLimit=100)])  # type: ignore[list-item]
    (batch,) = rack.take(0, flush=True)
    assert batch.n == 1 and batch.device_ts is None


def test_one_log_line_when_the_time_turns_invalid_and_one_when_valid_again() -> None:
    src, rack = source()
    bad = raw_frame("PackStatus", PackVoltage=800.0, PackSoC=50, DeviceTime=0xFFFFFFFF)
    good = raw_frame("PackStatus", PackVoltage=800.0, PackSoC=50, DeviceTime=T0)
    with capture_logs() as logs:
        for frames in ([bad], [bad, bad], [bad], [good], [good], [bad]):
            src._decode(frames)  # type: ignore[arg-type]
            rack.take(0, flush=True)
    events = [(e["event"], e.get("message")) for e in logs if "device time" in e["event"]]
    assert events == [
        ("CAN device time not valid: those samples are stored without device time", "PackStatus"),
        ("CAN device time valid again", "PackStatus"),
        ("CAN device time not valid: those samples are stored without device time", "PackStatus"),
    ]
    assert logs[0]["value"] == float(0xFFFFFFFF) and logs[0]["source"] == "r1"


# -- the profile is checked against the DBC -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ({"signal": "NoSuchTime"}, "signal 'NoSuchTime' is not in the DBC"),
        ({"signal": "LimitsTime", "message": "PackStatus"}, "signal 'LimitsTime' is not in message PackStatus"),
        ({"signal": "CellVoltage1"}, "is multiplexed"),
        ({"signal": "CellTime"}, "message PackCells has no mapped points"),
    ],
)
def test_a_device_time_the_dbc_or_the_points_do_not_support_is_a_problem(entry: dict[str, Any], says: str) -> None:
    problems = plan_of({**PROFILE, "device_time": [entry]})
    assert isinstance(problems, list)
    assert [p.loc for p in problems] == [("device_time", 0, "signal")]
    assert says in problems[0].message


def test_two_times_for_one_message_is_a_problem() -> None:
    twice = [{"signal": "DeviceTime"}, {"signal": "DeviceTime", "unit": "ms"}]
    problems = plan_of({**PROFILE, "device_time": twice})
    assert isinstance(problems, list) and [p.loc for p in problems] == [("device_time", 1)]
    assert "PackStatus has a device_time already" in problems[0].message
