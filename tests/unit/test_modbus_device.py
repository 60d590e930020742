"""The poll state of one device, without I/O: the on-delay of a missed cycle (`offline_after`), and
a reply fault that gives `bad` points, logged once per change."""

from __future__ import annotations

from pathlib import Path

import structlog

from gateway.model import DeviceState, Quality
from gateway.sources.modbus.config import ModbusSourceConfig
from gateway.sources.modbus.cycle import Cycle
from gateway.sources.modbus.device import DeviceRun, Outcome
from tests.modbus_support import TINY, profile_from


def device(tmp_path: Path, offline_after: int) -> DeviceRun:
    cfg = ModbusSourceConfig(name="rack-a", profile="p", host="h", unit_id=3, offline_after=offline_after)
    dev = DeviceRun(cfg, profile_from(tmp_path, TINY))
    dev.start(0.0)
    return dev


def test_missed_cycles_are_stale_until_offline_after_then_comm_loss_once(tmp_path: Path) -> None:
    dev = device(tmp_path, offline_after=3)
    intervals = list(dev.blocks)
    got = [dev.missed(intervals, "no connection") for _ in range(4)]
    for b in got[:2]:  # within the on-delay: every point stale, no value, no state change
        assert b is not None and b.status is None and b.n > 0
        assert {s.quality for s in b.samples()} == {Quality.STALE} and {s.value for s in b.samples()} == {None}
    offline = got[2]
    assert offline is not None and offline.status is not None and offline.status.state == DeviceState.OFFLINE
    assert offline.status.reason == "no connection" and {s.quality for s in offline.samples()} == {Quality.COMM_LOSS}
    assert got[3] is None  # once per outage
    back = dev.cycle_batch(Cycle(), answered=True)
    assert back is not None and back.status is not None and back.status.state == DeviceState.ONLINE


def test_an_answered_cycle_restarts_the_on_delay(tmp_path: Path) -> None:
    dev = device(tmp_path, offline_after=2)
    intervals = list(dev.blocks)
    seen = []
    for answered in (False, True, False, False):
        batch = dev.missed(intervals, "x") if not answered else dev.cycle_batch(Cycle(), answered=True)
        assert batch is not None
        seen.append(dev.state)
    assert seen == [DeviceState.STARTING, DeviceState.ONLINE, DeviceState.ONLINE, DeviceState.OFFLINE]


def test_a_reply_fault_gives_bad_points_and_is_logged_when_it_changes(tmp_path: Path) -> None:
    dev = device(tmp_path, offline_after=1)
    block = next(b for bs in dev.blocks.values() for b in bs if b.table == "input")
    wrong = Outcome(5, mismatch="wrong_function", error="function 6, asked 4")
    garbage = Outcome(5, mismatch="malformed", error="protocol id 7")
    good = Outcome(6, words=[0] * block.count)
    with structlog.testing.capture_logs() as logs:
        for outcome in (wrong, wrong, garbage, wrong, good, Outcome(7, code=4)):
            cycle = Cycle()
            dev.take(cycle, block, outcome)
            samples = dev.cycle_batch(cycle, answered=True).samples()  # type: ignore[union-attr]
            bad = {s.quality for s in samples} == {Quality.BAD}
            assert bad == (outcome.words is None) and cycle.bad == bad
            assert bad == all(s.value is None for s in samples)
    assert [(e["event"], e.get("kind") or e.get("code")) for e in logs] == [
        ("modbus reply does not answer its request", "wrong_function"),
        ("modbus block readable again", None),
        ("modbus exception", 4),
    ]
    where = {k: logs[0][k] for k in ("device", "unit_id", "function", "table", "address", "count")}
    place = {"device": "rack-a", "unit_id": 3, "function": 4, "table": "input"}
    assert where == {**place, "address": block.start, "count": block.count}
    assert logs[0]["received"] == "function 6, asked 4"
