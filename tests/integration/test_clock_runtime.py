"""Device time in the real runtime: a CAN rack whose clock runs 30 s ahead (frames on a python-can `virtual`
bus, decoded through its profile's `device_time:`) shows the offset as a metric and on the status page and
raises `gateway:device_clock_offset:<rack>` through the alarm engine (journal, store); setting its clock
right clears it. A host clock the kernel calls unsynchronised raises `gateway:host_clock_unsynchronized`."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import shutil
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import can
import cantools

from gateway.alarms.journal import Journal
from gateway.alarms.service import AlarmService, service_of
from gateway.config.settings import load_config
from gateway.metrics import REGISTRY
from gateway.model import BatchKind
from gateway.ops.clockwatch import watch_of
from gateway.ops.hostclock import STA_UNSYNC, TIME_ERROR, parse
from gateway.ops.service import operations
from gateway.runtime.core import Runtime
from tests.can_support import FIX, make_site
from tests.support.store import batches
from tests.support.waits import await_for

DBC = FIX / "device-time.dbc"
Y2000 = 946_684_800
_n = itertools.count()

PROFILE = """\
protocol: can
dbc: device-time.dbc
points:
  - {signal: TempMax, quantity: cell_temperature_max}
device_time:
  - {message: PackTemps, signal: TimeMs, unit: ms, epoch: "2000"}
"""


def temps_frame(ahead_s: float) -> can.Message:
    """A PackTemps frame stamped with the device's clock: the wall clock plus `ahead_s`."""
    db: Any = cantools.database.load_file(DBC)
    msg = db.get_message_by_name("PackTemps")
    ms = int((time.time() + ahead_s - Y2000) * 1000)
    return can.Message(
        arbitration_id=msg.frame_id, data=msg.encode({"TempMax": 25, "TimeMs": ms}), is_extended_id=False
    )


@asynccontextmanager
async def device(bus: can.BusABC, ahead: list[float]) -> AsyncIterator[None]:
    """A BMS sending PackTemps every 20 ms with its clock `ahead[0]` seconds ahead (change it to reset)."""

    async def send() -> None:
        while True:
            bus.send(temps_frame(ahead[0]))
            await asyncio.sleep(0.02)

    task = asyncio.create_task(send())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def state_of(svc: AlarmService, alarm_id: str) -> str:
    inst = svc.engine.by_id.get(alarm_id)
    return "normal" if inst is None else str(inst.alarm.state)


def offset_metric(rack: str) -> float | None:
    return REGISTRY.get_sample_value("bms_gateway_device_clock_offset_seconds", {"device": rack})


async def test_a_device_clock_30_s_ahead_raises_the_offset_alarm_and_clears_when_set_right(tmp_path: Path) -> None:
    ch = f"clock-it-{time.monotonic_ns()}-{next(_n)}"
    rack = f"pack-{next(_n)}"
    alarm = f"gateway:device_clock_offset:{rack}"
    cfg = make_site(
        tmp_path,
        f"  - {{type: can, name: {rack}, profile: can-timed, interface: virtual, channel: {ch}}}\n",
        profiles={"can-timed": PROFILE},
        extra="http:\n  enabled: false\nalarms: {tick_interval: 0.05}\nclock: {device_offset_alarm: 5}\n",
    )
    shutil.copy(DBC, tmp_path / "dbc" / DBC.name)
    rt = Runtime(load_config(cfg))
    svc, watch, ops = service_of(rt), watch_of(rt), operations(rt)
    assert svc is not None and watch is not None and ops is not None
    ahead = [30.0]
    tx = can.Bus(interface="virtual", channel=ch)
    task = asyncio.create_task(rt.run())
    try:
        async with device(tx, ahead):
            await await_for(lambda: state_of(svc, alarm) == "active_unack", timeout=60, what="the offset alarm")
            offset = offset_metric(rack)
            assert offset is not None and 29.0 < offset <= 30.0  # ahead by 30 s, less the way to the gateway
            (row,) = ops.status(points=False)["clock"]["devices"]
            assert row["device"] == rack and row["alarm"] is True and 29.0 < row["offset_s"] <= 30.0

            def on_page() -> list[tuple[object, object]]:
                found = [a for a in ops.status(points=False)["alarms"] if a.get("alarm_id") == alarm]
                return [(a["rack"], a["severity"]) for a in found]

            # the page shows the alarm once its record has passed the pipeline, a little after the engine
            await await_for(lambda: on_page() == [("gateway", "warning")], timeout=60, what="the alarm on the page")
            ahead[0] = 0.0  # the device's clock set right
            await await_for(lambda: state_of(svc, alarm) == "rtn_unack", timeout=60, what="the alarm cleared")
            offset = offset_metric(rack)
            assert offset is not None and -1.0 < offset <= 0.0
    finally:
        tx.shutdown()
        rt.request_stop("test")
        assert await asyncio.wait_for(task, 60) == 0
    store = tmp_path / "store.db"
    journal = Journal(store, readonly=True)
    try:
        history = [e.body["state"] for e in journal.entries() if e.kind == "event" and e.body.get("alarm_id") == alarm]
    finally:
        journal.close()
    assert history == ["active_unack", "rtn_unack"]
    stored = [r["state"] for b in batches(store, kind=BatchKind.ALARM) for r in b.records
              if r.get("type") == "event" and r.get("alarm_id") == alarm]  # fmt: skip
    assert stored == ["active_unack", "rtn_unack"]
    timed = [
        s for b in batches(store, kind=BatchKind.SAMPLES) for s in b.samples() if s.quantity == "cell_temperature_max"
    ]
    assert timed and all(s.device_ts is not None for s in timed if s.quality == "good")


async def test_an_unsynchronised_host_clock_raises_its_alarm(tmp_path: Path) -> None:
    alarm = "gateway:host_clock_unsynchronized"
    cfg = make_site(
        tmp_path,
        "  []\n",
        extra="http:\n  enabled: false\nalarms: {tick_interval: 0.05}\n"
        "clock: {host_unsynchronized_alarm: 0, host_check_interval: 0.05}\n",
    )
    rt = Runtime(load_config(cfg))
    svc, watch, ops = service_of(rt), watch_of(rt), operations(rt)
    assert svc is not None and watch is not None and ops is not None
    watch.read = lambda: parse(TIME_ERROR, STA_UNSYNC, 0, 16_000_000)  # the kernel's word for a lost sync
    task = asyncio.create_task(rt.run())
    try:
        await await_for(lambda: state_of(svc, alarm) == "active_unack", timeout=60, what="the host clock alarm")
        host = ops.status(points=False)["clock"]["host"]
        assert (host["synchronized"], host["state"], host["max_error_s"], host["alarm"]) == (
            False, "unsynchronized", 16.0, True,
        )  # fmt: skip
        assert REGISTRY.get_sample_value("bms_gateway_host_clock_synchronized") == 0.0
        watch.read = lambda: parse(0, 0, 2000, 50_000)
        await await_for(lambda: state_of(svc, alarm) == "rtn_unack", timeout=60, what="the alarm cleared")
        assert REGISTRY.get_sample_value("bms_gateway_host_clock_error_seconds") == 0.002
    finally:
        rt.request_stop("test")
        assert await asyncio.wait_for(task, 60) == 0
