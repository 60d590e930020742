"""Device clock offsets and the host's time sync state: the pure rules, the kernel's struct, the watch's
alarms and log lines (without an event loop)."""

from __future__ import annotations

import ctypes
import time
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from structlog.testing import capture_logs

from gateway.alarms.gatewayalarm import GatewayAlarms
from gateway.metrics import REGISTRY
from gateway.model import Batch, Keys
from gateway.ops.clockconfig import ClockConfig
from gateway.ops.clockoffset import batch_offset, offset_alarm, unsynchronized_alarm
from gateway.ops.clockwatch import ClockWatch
from gateway.ops.hostclock import STA_UNSYNC, TIME_ERROR, HostClock, Timex, parse, read_host_clock

S = 10**9
T = 1_790_000_000 * S


def batch(device: str, ts: list[int], dts: list[int] | None) -> Batch:
    n = len(ts)
    keys = Keys.of(("soc", "%", device, None, i) for i in range(n))
    return Batch(
        device, keys, np.array(ts, dtype=np.int64), np.zeros(n), np.zeros(n, dtype=np.uint8),
        None if dts is None else np.array(dts, dtype=np.int64), device=device,
    )  # fmt: skip


# -- the offset estimate ---------------------------------------------------------------------------------


def test_the_offset_is_the_median_of_device_minus_receive_time() -> None:
    ts = [T, T, T + S, T + S, T + 2 * S]
    dts = [T + 30 * S, T + 30 * S + 10**6, T + 31 * S, 0, T + 2 * S - 3600 * S]  # one far off, one without
    off = batch_offset(batch("pack", ts, dts))
    assert off is not None
    assert off.device == "pack" and off.points == 4
    assert off.offset_s == 30.0  # (-3600, 30, 30, 30.001): the garbled point does not move it
    assert off.ts == T + 2 * S


def test_no_offset_without_device_time() -> None:
    assert batch_offset(batch("pack", [T, T], None)) is None
    assert batch_offset(batch("pack", [T, T], [0, 0])) is None
    assert batch_offset(batch("pack", [], [])) is None


def test_a_device_behind_has_a_negative_offset() -> None:
    off = batch_offset(batch("pack", [T], [T - 90 * S]))
    assert off is not None and off.offset_s == -90.0


def test_the_offset_alarm_has_hysteresis() -> None:
    series = [0.0, 4.9, 5.1, 4.5, 4.1, 3.9, 4.5, -5.5, 0.0]
    active, seen = False, []
    for x in series:
        active = offset_alarm(active, x, 5.0, 1.0)
        seen.append(active)
    assert seen == [False, False, True, True, True, False, False, True, False]
    assert offset_alarm(True, 100.0, None, 1.0) is False  # no bound: no alarm


def test_the_unsynchronized_alarm_after_its_bound() -> None:
    assert unsynchronized_alarm(None, T, 60) is False
    assert unsynchronized_alarm(T, T + 59 * S, 60) is False
    assert unsynchronized_alarm(T, T + 60 * S, 60) is True
    assert unsynchronized_alarm(T, T + 10**6 * S, None) is False


# -- the host's state ------------------------------------------------------------------------------------


def test_parse_the_kernel_fields() -> None:
    synced = parse(0, 0x2001, 1500, 250_000)  # TIME_OK, STA_PLL | STA_NANO
    assert synced == HostClock(True, True, 0, 0x2001, 0.0015, 0.25)
    assert parse(TIME_ERROR, 0, 0, 0).synchronized is False
    assert parse(0, STA_UNSYNC, 16_000_000, 16_000_000).synchronized is False
    assert parse(0, STA_UNSYNC, 16_000_000, 16_000_000).max_error_s == 16.0
    assert HostClock(False, reason="no").as_dict() == {"synchronized": None, "state": "unknown", "reason": "no"}


def test_the_struct_is_the_kernels_size() -> None:
    assert ctypes.sizeof(Timex) == (208 if ctypes.sizeof(ctypes.c_long) == 8 else 128)


def test_the_real_adjtimex_on_this_machine_is_sane() -> None:
    host = read_host_clock()
    assert host.known, host.reason
    assert 0 <= host.state <= 5
    assert 0.0 <= host.est_error_s <= host.max_error_s or host.max_error_s == 0.0
    assert host.max_error_s <= 16.0 + 1e-6  # the kernel caps maxerror at NTP_PHASE_LIMIT (16 s)
    assert host.synchronized == (host.state != TIME_ERROR and not host.status & STA_UNSYNC)


# -- the watch: alarms through GatewayAlarms, one log line per change ------------------------------------------


def runtime(**clock: Any) -> Any:
    return SimpleNamespace(cfg=SimpleNamespace(clock=ClockConfig(**clock)), gateway_alarms=GatewayAlarms(engine=False))


def gauge(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def alarm_states(events: list[Batch]) -> list[tuple[str, str]]:
    return [(str(r["alarm_id"]), str(r["state"])) for b in events for r in b.records]


def test_a_device_clock_offset_raises_and_clears_its_alarm_once() -> None:
    rt = runtime()
    watch = ClockWatch(rt)
    dev = "clock-unit-rack"
    out: list[Batch] = []
    with capture_logs() as logs:
        for offset in (0, 30, 30, 4.5, 3.5, 3.0):
            out += watch.process([batch(dev, [T], [T + int(offset * S)]), batch(dev, [T], None)])
    assert alarm_states(out) == [
        (f"gateway:device_clock_offset:{dev}", "active_unack"),
        (f"gateway:device_clock_offset:{dev}", "rtn_unack"),
    ]
    assert [(e["event"], e["alarm"]) for e in logs] == [("device clock offset", True), ("device clock offset", False)]
    assert gauge("bms_gateway_device_clock_offset_seconds", device=dev) == 3.0
    assert watch.view(T)["devices"][0]["offset_s"] == 3.0
    watch.forget(set())
    assert gauge("bms_gateway_device_clock_offset_seconds", device=dev) is None
    assert watch.view(T)["devices"] == []


def test_a_restored_offset_alarm_of_a_device_no_longer_configured_clears() -> None:
    rt = runtime()
    rt.gateway_alarms.set("device_clock_offset:gone", True, "restored", severity="warning")
    rt.gateway_alarms.take_events()
    ClockWatch(rt).forget({"other"})
    assert "device_clock_offset:gone" not in rt.gateway_alarms.active


def test_the_host_unsynchronized_for_its_bound_raises_the_alarm() -> None:
    now = [T]
    states = iter([parse(0, 0, 100, 1000), parse(5, STA_UNSYNC, 0, 16_000_000), parse(5, STA_UNSYNC, 0, 16_000_000),
                   parse(5, STA_UNSYNC, 0, 16_000_000), parse(0, 0, 100, 1000)])  # fmt: skip
    rt = runtime(host_unsynchronized_alarm=60)
    watch = ClockWatch(rt, read=lambda: next(states), clock=lambda: now[0])
    out: list[Batch] = []
    with capture_logs() as logs:
        for step in (0, 10, 40, 40, 10):
            now[0] += step * S
            out += watch.check_host()
    assert alarm_states(out) == [
        ("gateway:host_clock_unsynchronized", "active_unack"),
        ("gateway:host_clock_unsynchronized", "rtn_unack"),
    ]
    assert [e["event"] for e in logs] == [
        "host clock synchronized", "host clock not synchronized", "host clock synchronized",
    ]  # fmt: skip
    assert gauge("bms_gateway_host_clock_synchronized") == 1.0
    assert gauge("bms_gateway_host_clock_error_seconds") == pytest.approx(0.0001)
    assert watch.view(T)["host"]["state"] == "synchronized"


def test_an_unknown_host_state_is_logged_once_and_never_raises() -> None:
    rt = runtime(host_unsynchronized_alarm=0)
    watch = ClockWatch(rt, read=lambda: HostClock(False, reason="adjtimex is not available"), clock=time.time_ns)
    with capture_logs() as logs:
        out = [b for _ in range(3) for b in watch.check_host()]
    assert out == []
    assert [e["event"] for e in logs] == ["host time sync state unknown"]
    assert gauge("bms_gateway_host_clock_synchronized") != gauge("bms_gateway_host_clock_synchronized")  # NaN
    assert watch.view(T)["host"] == {"synchronized": None, "state": "unknown", "reason": "adjtimex is not available",
                                     "alarm": False}  # fmt: skip


def test_the_hysteresis_must_be_below_the_bound() -> None:
    with pytest.raises(ValueError, match="device_offset_hysteresis"):
        ClockConfig(device_offset_alarm=1.0, device_offset_hysteresis=1.0)
