"""Clocks in the runtime: each device's clock against the gateway's, and the host's own time sync.

Installed into every runtime (after the alarm engine, see `gateway.app.RUNTIME_PARTS`):

- a processor over the live batches: a batch whose points carry a device time gives its device's clock
  offset (`gateway.ops.clockoffset`: the median of device time minus receive time), published as
  `bms_gateway_device_clock_offset_seconds{device}` and on the status page; past `clock.
  device_offset_alarm` the gateway alarm `gateway:device_clock_offset:<device>` is raised, and it
  clears once the offset is back within the bound minus `clock.device_offset_hysteresis`;
- the service `host-clock`: every `clock.host_check_interval` it reads the kernel's time sync state
  (`gateway.ops.hostclock`) into `bms_gateway_host_clock_synchronized` (1, 0, NaN when unknown),
  `bms_gateway_host_clock_error_seconds` and `..._max_error_seconds` and the status page; a host
  unsynchronised for `clock.host_unsynchronized_alarm` raises `gateway:host_clock_unsynchronized`.

Alarms go through `GatewayAlarms` like the gateway's other alarms (alarm engine, journal, MQTT, the
store); each change is logged once. Batches without device time cost one attribute test.
"""

from __future__ import annotations

import asyncio
import math
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog
from prometheus_client import Gauge

from gateway import metrics
from gateway.model import Batch
from gateway.ops.clockoffset import ClockOffset, batch_offset, offset_alarm, unsynchronized_alarm
from gateway.ops.hostclock import UNKNOWN, HostClock, read_host_clock

if TYPE_CHECKING:
    from gateway.runtime.core import Runtime

log = structlog.get_logger("clock")

DEVICE_CLOCK_OFFSET = "device_clock_offset"  # gateway alarm `device_clock_offset:<device>`
HOST_CLOCK_UNSYNCHRONIZED = "host_clock_unsynchronized"
SEVERITY = "warning"  # a wrong clock makes timestamps doubtful; the readings themselves are still right

device_offset_gauge = Gauge(
    "bms_gateway_device_clock_offset_seconds",
    "A device's clock minus the gateway's receive time (median over its last batch with a device time)",
    ["device"],
    registry=metrics.REGISTRY,
)
host_synchronized_gauge = Gauge(
    "bms_gateway_host_clock_synchronized",
    "1 while the kernel says the host clock is synchronised, 0 when not, NaN when adjtimex cannot be read",
    registry=metrics.REGISTRY,
)
host_error_gauge = Gauge(
    "bms_gateway_host_clock_error_seconds", "The kernel's estimated error of the host clock", registry=metrics.REGISTRY
)
host_max_error_gauge = Gauge(
    "bms_gateway_host_clock_max_error_seconds",
    "The kernel's maximum error of the host clock",
    registry=metrics.REGISTRY,
)


def device_alarm(device: str) -> str:
    return f"{DEVICE_CLOCK_OFFSET}:{device}"


@dataclass(frozen=True, slots=True)
class DeviceClock:
    """A device's last measured offset, and whether its alarm is active."""

    offset: ClockOffset
    alarm: bool


class ClockWatch:
    """The clock offsets of the devices and the host's sync state of one runtime."""

    def __init__(
        self, rt: Runtime, read: Callable[[], HostClock] = read_host_clock, clock: Callable[[], int] = time.time_ns
    ) -> None:
        self.rt = rt
        self.read = read
        self.clock = clock
        self.devices: dict[str, DeviceClock] = {}
        self.host: HostClock = UNKNOWN
        self.host_checked = False
        self.unsynced_since: int | None = None  # ns; the host clock unsynchronised since
        self.host_alarm = False
        self._unknown_logged = False

    # -- devices -----------------------------------------------------------------------------------

    def process(self, batches: list[Batch]) -> list[Batch]:
        """Processor: the offsets of the batches with device time; events to store when no engine takes them."""
        for b in batches:
            if b.device_ts is not None:
                off = batch_offset(b)
                if off is not None:
                    self._device(off)
        return self._events()

    def _device(self, off: ClockOffset) -> None:
        cfg = self.rt.cfg.clock
        last = self.devices.get(off.device)
        was = last.alarm if last is not None else False
        now = offset_alarm(was, off.offset_s, cfg.device_offset_alarm, cfg.device_offset_hysteresis)
        self.devices[off.device] = DeviceClock(off, now)
        device_offset_gauge.labels(off.device).set(off.offset_s)
        if last is not None and now == was:
            return
        # (the first offset of a device in this process is reported either way: it confirms or clears
        # an alarm restored from before a restart)
        if now:
            message = (f"device {off.device}: clock {off.offset_s:+.1f} s off the gateway's "
                       f"(bound {cfg.device_offset_alarm:g} s)")  # fmt: skip
        else:
            message = f"device {off.device}: clock within bounds ({off.offset_s:+.1f} s off the gateway's)"
        if self.rt.gateway_alarms.set(device_alarm(off.device), now, message, severity=SEVERITY) or now != was:
            (log.warning if now else log.info)(
                "device clock offset", device=off.device, offset_s=round(off.offset_s, 3), alarm=now,
                bound_s=cfg.device_offset_alarm,
            )  # fmt: skip

    def forget(self, configured: set[str]) -> None:
        """Devices no longer configured: their gauge goes, and an alarm of theirs (perhaps restored from
        before a restart) returns to normal, since nothing would ever clear it."""
        for device in [d for d in self.devices if d not in configured]:
            del self.devices[device]
            try:
                device_offset_gauge.remove(device)
            except KeyError:
                pass
        prefix = f"{DEVICE_CLOCK_OFFSET}:"
        for name in [n for n in self.rt.gateway_alarms.active if n.startswith(prefix)]:
            device = name[len(prefix) :]
            if device not in configured:
                self.rt.gateway_alarms.set(name, False, f"device {device} is no longer configured", severity=SEVERITY)

    # -- the host ------------------------------------------------------------------------------------

    def check_host(self) -> list[Batch]:
        """Read the host's sync state: metrics, one log line per change, the unsynchronised alarm."""
        host, now = self.read(), self.clock()
        first = not self.host_checked
        changed = first or host.known != self.host.known or host.synchronized != self.host.synchronized
        self.host, self.host_checked = host, True
        if not host.known:
            for g in (host_synchronized_gauge, host_error_gauge, host_max_error_gauge):
                g.set(math.nan)
            if not self._unknown_logged:
                self._unknown_logged = True
                log.warning("host time sync state unknown", reason=host.reason)
        else:
            host_synchronized_gauge.set(1 if host.synchronized else 0)
            host_error_gauge.set(host.est_error_s)
            host_max_error_gauge.set(host.max_error_s)
            if changed:
                (log.info if host.synchronized else log.warning)(
                    "host clock synchronized" if host.synchronized else "host clock not synchronized",
                    est_error_s=host.est_error_s, max_error_s=host.max_error_s,
                )  # fmt: skip
        if host.known and not host.synchronized:
            self.unsynced_since = self.unsynced_since or now
        else:
            self.unsynced_since = None  # synchronised, or not known: no evidence against the clock
        bound = self.rt.cfg.clock.host_unsynchronized_alarm
        alarm = unsynchronized_alarm(self.unsynced_since, now, bound)
        if first or alarm != self.host_alarm:
            self.host_alarm = alarm
            message = (
                f"the host clock has not been synchronised for {bound:g} s: timestamps are doubtful"
                if alarm
                else "the host clock is synchronised (or its state is not known)"
            )
            self.rt.gateway_alarms.set(HOST_CLOCK_UNSYNCHRONIZED, alarm, message, severity=SEVERITY)
        return self._events()

    async def run(self) -> None:
        """Service `host-clock`: the host's sync state every `clock.host_check_interval` seconds."""
        while True:
            for b in self.check_host():
                await self.rt.emit(b)
            await asyncio.sleep(self.rt.cfg.clock.host_check_interval)

    def _events(self) -> list[Batch]:
        """Alarm event records to store when no alarm engine takes the changes (else none)."""
        alarms = self.rt.gateway_alarms
        return [] if alarms.engine else alarms.take_events()

    # -- views ---------------------------------------------------------------------------------------

    def view(self, now: int) -> dict[str, Any]:
        """The `clock` part of the status document."""
        devices = [
            {
                "device": name,
                "offset_s": round(d.offset.offset_s, 6),
                "points": d.offset.points,
                "alarm": d.alarm,
                "age_s": round(max(0, now - d.offset.ts) / 1e9, 1),
            }
            for name, d in sorted(self.devices.items())
        ]
        host = {**self.host.as_dict(), "alarm": self.host_alarm}
        return {"host": host, "devices": devices}


WATCHES: weakref.WeakKeyDictionary[Runtime, ClockWatch] = weakref.WeakKeyDictionary()


def watch_of(rt: Runtime) -> ClockWatch | None:
    """The clock watch installed in a runtime, if any."""
    return WATCHES.get(rt)


def configured_devices(loaded: Any) -> set[str]:
    return {s.name for s in loaded.enabled_sources}


def install(rt: Runtime) -> None:
    watch = ClockWatch(rt)
    WATCHES[rt] = watch
    watch.forget(configured_devices(rt.loaded))
    rt.processors.append(watch.process)
    rt.services.append(("host-clock", watch.run))

    def reloaded(result: Any) -> None:
        if getattr(result, "ok", False) and getattr(result, "loaded", None) is not None:
            watch.forget(configured_devices(result.loaded))

    rt.on_reload.append(reloaded)
