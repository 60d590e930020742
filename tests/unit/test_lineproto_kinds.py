"""Line protocol of every batch kind: samples, device status, alarm events, active alarms, gateway status."""

from __future__ import annotations

from gateway.model import Batch, BatchKind, DeviceState, DeviceStatus, Sample
from gateway.sinks.influx.lineproto import encode_batch

T = 1_700_000_000_123_456_789


def test_samples_by_level_with_tags_and_precision() -> None:
    b = Batch.of_samples(
        "rack-01",
        [
            Sample(T, "soc", 55.5, "%", "good", "r1"),
            Sample(T, "rack_voltage", 800, "V", "good", "r1"),
            Sample(T, "cell_voltage", 3.301, "V", "stale", "r1", 2, 7),
            Sample(T, "contactor_state", "closed", "", "good", "r1"),
            Sample(T, "cell_balancing", True, "", "good", "r1", 2, 7),
            Sample(T, "raw.x", float("nan"), "", "bad", "r1"),
        ],
    )
    assert encode_batch(b, "site a", "ms") == [
        'rack,site=site\\ a,rack=r1,quality=good,source=rack-01 soc=55.5,rack_voltage=800.0,contactor_state="closed"'
        " 1700000000123",
        "cell,site=site\\ a,rack=r1,module=2,cell=7,quality=stale,source=rack-01 cell_voltage=3.301 1700000000123",
        "cell,site=site\\ a,rack=r1,module=2,cell=7,quality=good,source=rack-01 cell_balancing=true 1700000000123",
    ]


def test_device_status_rides_on_a_sample_batch() -> None:
    st = DeviceStatus("rack-01", DeviceState.OFFLINE, 'timeout "5 s"', T)
    b = Batch("rack-01", device="rack-01", status=st)
    assert encode_batch(b, "s1", "ns") == [
        f'device_status,site=s1,rack=rack-01 state="offline",online=false,reason="timeout \\"5 s\\"" {T}'
    ]


def test_alarm_event_contract() -> None:
    rec: dict[str, object] = {
        "type": "event",
        "ts": T,
        "rack": "r1",
        "alarm_id": "cell_overvoltage",
        "severity": "critical",
        "state": "active_unack",
        "previous": "normal",
        "message": "cell 7 at 3.71 V",
        "value": 3.71,
        "rule": "cell_voltage > 3.65",
        "user": None,
        "reason": None,
    }
    b = Batch("alarms", kind=BatchKind.ALARM, device="r1", records=[rec])
    assert encode_batch(b, "s1", "ns") == [
        "alarm,site=s1,rack=r1,alarm_id=cell_overvoltage,severity=critical "
        'state="active_unack",previous="normal",message="cell 7 at 3.71 V",rule="cell_voltage > 3.65",value=3.71 '
        f"{T}"
    ]
    ack = dict(rec, state="active_ack", previous="active_unack", value="open", user="op1", reason="seen")
    line = encode_batch(Batch("alarms", kind=BatchKind.ALARM, records=[ack]), "s1", "s")[0]
    assert 'value_text="open",user="op1",reason="seen"' in line
    assert line.endswith(" 1700000000")


def test_active_alarms_become_a_count() -> None:
    rec: dict[str, object] = {
        "type": "active",
        "ts": T,
        "rack": "r1",
        "active": [{"alarm_id": "a", "severity": "major", "state": "active_unack", "since": T, "message": "m"}] * 2,
    }
    b = Batch("alarms", kind=BatchKind.ALARM, device="r1", records=[rec])
    assert encode_batch(b, "s1", "ms") == ["alarms_active,site=s1,rack=r1 count=2i 1700000000123"]


def test_gateway_status_record() -> None:
    rec: dict[str, object] = {"ts": T, "component": "runtime", "uptime": 12, "ready": True, "note": "x", "d": {}}
    b = Batch("gateway", kind=BatchKind.STATUS, records=[rec])
    assert encode_batch(b, "s1", "ns") == [f'gateway,site=s1,component=runtime note="x",ready=true,uptime=12.0 {T}']
