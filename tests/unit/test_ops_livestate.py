"""The live state: latest value per point, device states, active alarms; no event loop."""

from __future__ import annotations

import pytest

from gateway.model import Batch, BatchKind, DeviceState, DeviceStatus, Quality, Sample
from gateway.ops import livestate
from gateway.ops.livestate import LiveState, json_value

S = 1_000_000_000


def batch(source: str, rack: str, ts: int, soc: float, cell_v: float, status: DeviceStatus | None = None) -> Batch:
    samples = [
        Sample(ts, "soc", soc, "%", Quality.GOOD, rack),
        Sample(ts, "rack_voltage", 700.0, "V", Quality.GOOD, rack),
        Sample(ts, "cell_voltage", cell_v, "V", Quality.STALE, rack, 1, 2),
        Sample(ts, "cell_voltage", 3.3, "V", Quality.GOOD, rack, 1, 1),
    ]
    return Batch.of_samples(source, samples, device=source, status=status, created=ts)


def test_keeps_the_latest_sample_of_every_point() -> None:
    live = LiveState()
    online = DeviceStatus("r1", DeviceState.ONLINE, "", 1 * S)
    live([batch("r1", "rack-1", 1 * S, 50.0, 3.2, online), batch("r2", "rack-2", 1 * S, 70.0, 3.4)])
    live([batch("r1", "rack-1", 2 * S, 51.0, 3.25)])
    rows = live.point_rows(now=3 * S)
    assert len(rows) == 8  # 4 points per rack, not one row per sample
    soc = next(r for r in rows if r[0] == "rack-1" and r[1] == "soc")
    assert soc == ["rack-1", "soc", None, None, 51.0, "%", "good", 1.0]
    cell = next(r for r in rows if r[0] == "rack-1" and r[3] == 2)
    assert cell[4:7] == [3.25, "V", "stale"]
    # rack-level points first, then by module and cell
    assert [r[3] for r in rows if r[0] == "rack-1"] == [None, None, 1, 2]
    assert live.point_rows(now=3 * S, rack="rack-2")[0][0] == "rack-2"
    assert live.samples == 12


def test_rack_overview_with_device_state_and_age() -> None:
    live = LiveState()
    live([batch("r1", "rack-1", 1 * S, 50.0, 3.2, DeviceStatus("r1", DeviceState.ONLINE, "", 1 * S))])
    live(
        [Batch("r1", device="r1", status=DeviceStatus("r1", DeviceState.OFFLINE, "timeout", 4 * S), created=4 * S)]
    )
    (rack,) = live.racks(now=5 * S)
    assert rack["rack"] == "rack-1" and rack["device"] == "r1"
    assert rack["state"] == "offline" and rack["reason"] == "timeout"
    assert rack["soc"] == 50.0 and rack["rack_voltage"] == 700.0 and rack["rack_current"] is None
    assert rack["age_s"] == 4.0
    assert live.devices["r1"].since == 4 * S


def test_active_alarms_follow_the_latest_active_record_per_rack() -> None:
    live = LiveState()
    active = [
        {"id": "cell_over_voltage:rack-1:1:2", "name": "cell_over_voltage", "severity": "critical", "value": 3.71},
        {"id": "soc_low:rack-1", "name": "soc_low", "severity": "warning"},
    ]
    alarm_batch = Batch(
        "alarms",
        kind=BatchKind.ALARM,
        records=[
            {"type": "raised", "rack": "rack-1", "id": "x"},  # events are not the active set
            {"type": "active", "rack": "rack-1", "active": active},
            {"type": "active", "rack": "rack-2", "active": ["door_open"]},
        ],
    )
    live([alarm_batch])
    assert live.alarm_counts() == {"critical": 1, "warning": 1, "unknown": 1}
    alarms = live.active_alarms()
    assert [a["rack"] for a in alarms] == ["rack-1", "rack-1", "rack-2"]
    assert alarms[2] == {"name": "door_open", "rack": "rack-2"}
    assert live.rack_names() == ["rack-1", "rack-2"]
    live([Batch("alarms", kind=BatchKind.ALARM, records=[{"type": "active", "rack": "rack-1", "active": []}])])
    assert live.alarm_counts() == {"unknown": 1}


def test_non_finite_values_stay_json() -> None:
    assert json_value(float("nan")) == "nan"
    assert json_value(float("inf")) == "inf"
    assert json_value(3.5) == 3.5
    assert json_value(True) is True


def test_forget_device_after_a_reload_removed_it() -> None:
    live = LiveState()
    live([batch("r1", "rack-1", 1 * S, 50.0, 3.2)])
    live.forget_device("r1")
    assert "r1" not in live.devices
    assert live.racks(now=2 * S)[0]["state"] == "unknown"


def test_a_bus_with_several_racks_and_devices_apart_from_sources() -> None:
    live = LiveState()
    bus = Batch.of_samples(
        "can0",
        [Sample(1 * S, "soc", 40.0, "%", Quality.GOOD, "r1"), Sample(1 * S, "soc", 41.0, "%", Quality.GOOD, "r2")],
        device="can0",
        status=DeviceStatus("can0", DeviceState.ONLINE, "", 1 * S),
        created=1 * S,
    )
    unit = Batch.of_samples(
        "modbus@10.0.0.5:502", [Sample(1 * S, "soc", 70.0, "%", Quality.GOOD, "r3")], device="mb-3", created=1 * S
    )
    live([bus, unit])
    assert [(r["rack"], r["device"], r["state"]) for r in live.racks(now=2 * S)] == [
        ("r1", "can0", "online"),
        ("r2", "can0", "online"),
        ("r3", "mb-3", "starting"),
    ]
    assert live.sources["modbus@10.0.0.5:502"].samples == 1 and live.sources["can0"].racks == {"r1", "r2"}
    rows = live.device_rows(now=2 * S)
    assert [(d["device"], d["racks"]) for d in rows] == [("can0", ["r1", "r2"]), ("mb-3", ["r3"])]


def views(live: LiveState) -> object:
    sources = {k: (v.samples, v.racks, v.last_batch) for k, v in live.sources.items()}
    now = 9 * S
    return (live.point_rows(now), live.racks(now), live.device_rows(now), live.rack_names(), live.samples, sources)


@pytest.mark.parametrize("keep", [400_000, 5])
def test_the_newest_reading_of_every_point_wins_across_key_tables(keep: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(livestate, "MAX_KEPT_POINTS", keep)  # 5: only the newest batch is kept apart
    r1 = [batch("r1", "rack-1", t * S, 50.0 + t, 3.2 + t / 100) for t in range(4)]
    r2 = [batch("r2", "rack-2", t * S, 60.0 + t, 3.3) for t in range(4)]
    # newer than r1[1], older than r1[2]; a key table of its own that shares a point with r1's
    bus_samples = [Sample(2 * S, "soc", 99.0, "%", "bad", "rack-1"), Sample(2 * S, "raw.x", "on", "", "good", "r3")]
    bus = Batch.of_samples("can0", bus_samples, device="can0", created=2 * S)
    short = Batch.of_samples("r2", batch("r2", "rack-2", 5 * S, 1.0, 1.0).samples()[:3], device="r2", created=5 * S)
    live = LiveState()
    for group in [[r1[0], r2[0]], [r1[1]], [bus]]:
        live(group)
    assert live.points[("rack-1", "soc", None, None)].value == 99.0  # the bus's reading is the newest
    assert next(r for r in live.racks(now=3 * S) if r["rack"] == "rack-1")["soc"] == 99.0
    for group in [[r2[1], r1[2]], [short], [r1[3]]]:
        live(group)
    rows = live.point_rows(now=9 * S)
    assert rows == [
        ["r3", "raw.x", None, None, "on", "", "good", 7.0],
        ["rack-1", "rack_voltage", None, None, 700.0, "V", "good", 6.0],
        ["rack-1", "soc", None, None, 53.0, "%", "good", 6.0],
        ["rack-1", "cell_voltage", 1, 1, 3.3, "V", "good", 6.0],
        ["rack-1", "cell_voltage", 1, 2, 3.2 + 3 / 100, "V", "stale", 6.0],
        ["rack-2", "rack_voltage", None, None, 700.0, "V", "good", 4.0],
        ["rack-2", "soc", None, None, 1.0, "%", "good", 4.0],
        ["rack-2", "cell_voltage", 1, 1, 3.3, "V", "good", 8.0],
        ["rack-2", "cell_voltage", 1, 2, 1.0, "V", "stale", 4.0],
    ]
    assert live.rack_points() == {k: v for k, v in live.points.items() if k[2] is None and k[3] is None}
    assert [(r["rack"], r["soc"], r["rack_voltage"]) for r in live.racks(now=9 * S)] == [
        ("r3", None, None), ("rack-1", 53.0, 700.0), ("rack-2", 1.0, 700.0)]  # fmt: skip
    assert live.samples == 4 * 6 + 2 + 3
    assert {k: (v.samples, v.last_batch) for k, v in live.sources.items()} == {
        "r1": (16, 3 * S), "r2": (11, 5 * S), "can0": (2, 2 * S)}  # fmt: skip


def test_only_the_newest_batch_of_a_key_table_is_held() -> None:
    live = LiveState()
    for t in range(1, 6):
        live([batch("r1", "rack-1", t * S, 50.0 + t, 3.2)])
    assert live._latest_points == 4 and len(live._latest) == 1 and not live._points
    assert live.racks(now=6 * S)[0]["soc"] == 55.0
