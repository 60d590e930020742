"""Readiness rules, the STATUS= line and redaction of secrets: plain functions."""

from __future__ import annotations

from gateway.config.redaction import redact_text as redact
from gateway.model import Batch, DeviceState, DeviceStatus, Sample
from gateway.ops.livestate import LiveState
from gateway.ops.status import SinkView, racks_summary, readiness_problems, status_line


def sink(name: str, connected: bool, failures: int = 0) -> SinkView:
    return SinkView(name, connected, failures, 0, 0, 0.0, "")


def test_ready_when_sources_started_store_open_and_sinks_connected() -> None:
    assert readiness_problems(["a", "b"], {"a", "b"}, True, False, [sink("influx", True)]) == []


def test_not_ready_names_every_reason() -> None:
    problems = readiness_problems(
        ["a", "b"], {"a"}, False, True, [sink("influx", False), sink("mqtt", False, failures=3)]
    )
    assert problems == [
        "stopping",
        "store not open",
        "sources not started: b",
        "sink influx not connected (connecting)",
        "sink mqtt not connected (3 failed attempts)",
    ]


def test_status_line_summarises_racks_sinks_and_alarms() -> None:
    doc = {
        "ready": True,
        "racks": [{"state": "online"}, {"state": "offline"}],
        "samples_seen": 1234,
        "sinks": [{"name": "influx", "connected": True}, {"name": "mqtt", "connected": False}],
        "alarms": [{"name": "x"}],
    }
    assert status_line(doc) == (
        "ready, 1 online, 0 degraded, 1 offline of 2 racks, 1234 samples stored, sinks influx:ok mqtt:down, "
        "1 alarm active"
    )
    assert status_line({}) == "starting, 0 online, 0 degraded, 0 offline of 0 racks, 0 samples stored, 0 alarms active"


def test_racks_are_counted_by_their_state_degraded_is_not_offline() -> None:
    # Two racks answer with some points failing (degraded): they are polled, not offline.
    live = LiveState()
    for name, state in (("r1", DeviceState.ONLINE), ("r2", DeviceState.DEGRADED), ("r3", DeviceState.DEGRADED),
                        ("r4", DeviceState.ONLINE)):  # fmt: skip
        status = DeviceStatus(name, state, "2 points failing" if state == DeviceState.DEGRADED else "", 1)
        live([Batch.of_samples(name, [Sample(1, "soc", 50.0, "%", "good", name)], device=name, status=status)])
    racks = live.racks(2)
    assert racks_summary(racks) == "2 online, 2 degraded, 0 offline of 4 racks"
    assert status_line({"ready": True, "racks": racks}).startswith("ready, 2 online, 2 degraded, 0 offline of 4 racks")
    starting = [{"state": "online"}, {"state": "starting"}, {}]
    assert racks_summary(starting) == "1 online, 0 degraded, 0 offline, 1 starting, 1 unknown of 3 racks"
    assert racks_summary([{"state": "offline"}]) == "0 online, 0 degraded, 1 offline of 1 rack"


def test_redact_removes_credentials() -> None:
    assert (
        redact("cannot connect to https://user:hunter2@influx:8086/api")
        == "cannot connect to https://***@influx:8086/api"
    )
    assert "hunter2" not in redact("auth failed: token=hunter2 for org x")
    assert "hunter2" not in redact("Authorization: hunter2")
    assert redact("connection refused") == "connection refused"
